package codec

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/klauspost/compress/s2"
)

// The header; see the package documentation.
const (
	headerLen = 3
	version   = 1 // the only format version so far
	expiryLen = 8 // Unix milliseconds, big-endian, after the header

	// Bits of the flags byte.
	flagTombstone   = 0x80
	flagReserved    = 0x40
	flagTags        = 0x20
	flagExpiry      = 0x10
	flagCompression = 0x0f // the compression ID

	compressNone = 0
	compressS2   = 1
)

// tombstone is what Tombstone returns a copy of.
var tombstone = [headerLen]byte{version, 0, flagTombstone}

// header appends to dst the header of a value written by codec id, with
// the expiry field when expires is not zero.
func header(dst []byte, id uint8, expires time.Time) []byte {
	if expires.IsZero() {
		return append(dst, version, id, compressNone)
	}
	ms := max(expires.UnixMilli(), 1) // 0 would read as "no expiry"
	return binary.BigEndian.AppendUint64(append(dst, version, id, flagExpiry), uint64(ms))
}

// payload checks data's header and returns the codec that wrote data and
// its payload, decompressed. Its errors are Decode's.
func (f *Format) payload(data []byte) (Codec, []byte, error) {
	switch {
	case len(data) == 0:
		return nil, nil, corrupt("empty input")
	case len(data) < headerLen:
		return nil, nil, corrupt("truncated header: %d bytes, want %d", len(data), headerLen)
	case data[0] != version:
		return nil, nil, corrupt("unknown format version %d", data[0])
	}
	id, flags, payload := data[1], data[2], data[headerLen:]
	if flags&flagExpiry != 0 {
		if len(payload) < expiryLen {
			return nil, nil, corrupt("truncated expiry: %d bytes, want %d", len(payload), expiryLen)
		}
		payload = payload[expiryLen:]
	}
	if flags&flagTags != 0 {
		var ok bool
		if _, _, payload, ok = readTags(payload, false); !ok {
			return nil, nil, corrupt("malformed tags field")
		}
	}
	switch {
	case flags&flagTombstone == 0:
	case id != 0 || flags&^flagExpiry != flagTombstone || len(payload) != 0:
		return nil, nil, corrupt("malformed tombstone: codec ID %d, flags 0x%02x, %d payload bytes", id, flags, len(payload))
	default:
		return nil, nil, ErrTombstone
	}
	if flags&flagReserved != 0 {
		return nil, nil, corrupt("unknown flags 0x%02x", flags&flagReserved)
	}
	c := f.decoders[id]
	if c == nil {
		return nil, nil, corrupt("unknown codec ID %d", id)
	}
	switch flags & flagCompression {
	case compressNone:
		if len(payload) > f.maxSize {
			return nil, nil, f.decodedTooLarge(len(payload))
		}
	case compressS2:
		// The size is checked before decompressing, so that a small block
		// that claims to hold a lot allocates nothing.
		n, err := s2.DecodedLen(payload)
		if err != nil {
			return nil, nil, corrupt("s2 payload: %w", err)
		}
		if n > f.maxSize {
			return nil, nil, f.decodedTooLarge(n)
		}
		if payload, err = s2.Decode(nil, payload); err != nil {
			return nil, nil, corrupt("s2 payload: %w", err)
		}
	default:
		return nil, nil, corrupt("unknown compression ID %d", flags&flagCompression)
	}
	return c, payload, nil
}

func (f *Format) decodedTooLarge(n int) error {
	return corrupt("payload is %d bytes, MaxSize is %d: %w", n, f.maxSize, ErrTooLarge)
}

// Tombstone returns the bytes that record that the source of truth has no
// value for a key (negative caching): a header with the tombstone flag and
// no payload, the same for every codec. [Format.Decode] returns
// [ErrTombstone] for them. The caller owns the returned slice.
func Tombstone() []byte {
	b := tombstone
	return b[:]
}

// TombstoneExpiring is [Tombstone] with the time at which it expires
// recorded in its header, as [Format.EncodeExpiring] does for a value. A
// zero expires records nothing.
func TombstoneExpiring(expires time.Time) []byte {
	b := header(make([]byte, 0, headerLen+expiryLen), 0, expires)
	b[2] |= flagTombstone
	return b
}

// IsTombstone reports whether data is the bytes of [Tombstone] or of
// [TombstoneExpiring].
func IsTombstone(data []byte) bool {
	switch len(data) {
	case headerLen:
		return [headerLen]byte(data) == tombstone
	case headerLen + expiryLen:
		return data[0] == version && data[1] == 0 && data[2] == flagTombstone|flagExpiry && binary.BigEndian.Uint64(data[headerLen:]) != 0
	}
	return false
}

// Expiry returns the time at which data expires, as recorded by
// [Format.EncodeExpiring] or [TombstoneExpiring], and whether data records
// one. It reads only the header, and reports false for bytes that are not
// a value of this format.
func Expiry(data []byte) (time.Time, bool) {
	if len(data) < headerLen+expiryLen || data[0] != version || data[2]&flagExpiry == 0 {
		return time.Time{}, false
	}
	ms := binary.BigEndian.Uint64(data[headerLen:])
	if ms == 0 || ms > math.MaxInt64 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(ms)), true
}

// appendTags appends the tags field: born and the tags, each as a uvarint
// length and its bytes.
func appendTags(dst []byte, born uint64, tags []string) []byte {
	dst = binary.AppendUvarint(dst, born)
	dst = binary.AppendUvarint(dst, uint64(len(tags)))
	for _, t := range tags {
		dst = binary.AppendUvarint(dst, uint64(len(t)))
		dst = append(dst, t...)
	}
	return dst
}

// readTags reads the tags field at the start of b and returns what
// follows it; the tags themselves only if want. ok is false for a field
// that does not fit in b.
func readTags(b []byte, want bool) (born uint64, tags []string, rest []byte, ok bool) {
	born, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, nil, false
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)-n) { // each tag takes a byte at least
		return 0, nil, nil, false
	}
	b = b[n:]
	if want {
		tags = make([]string, 0, count)
	}
	for range count {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return 0, nil, nil, false
		}
		if want {
			tags = append(tags, string(b[n:n+int(l)]))
		}
		b = b[n+int(l):]
	}
	return born, tags, b, true
}

// Tags returns the tags recorded in data by [Format.EncodeTagged], and the
// born number given with them, reading the header only. ok is false for
// bytes that carry no tags or are not a value of this format.
func Tags(data []byte) (born uint64, tags []string, ok bool) {
	if len(data) < headerLen || data[0] != version || data[2]&flagTags == 0 || data[2]&flagTombstone != 0 {
		return 0, nil, false
	}
	b := data[headerLen:]
	if data[2]&flagExpiry != 0 {
		if len(b) < expiryLen {
			return 0, nil, false
		}
		b = b[expiryLen:]
	}
	born, tags, _, ok = readTags(b, true)
	return born, tags, ok
}
