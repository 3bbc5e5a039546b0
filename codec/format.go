package codec

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
)

// Header layout; see the package documentation.
const (
	headerLen = 3

	// version is the only format version this package writes and reads.
	version = 1

	// Bits of the flags byte.
	flagTombstone   = 0x80
	flagReserved    = 0x60
	flagExpiry      = 0x10
	flagCompression = 0x0f

	// expiryLen is the length of the expiry field that follows the header
	// when flagExpiry is set: Unix milliseconds, big-endian.
	expiryLen = 8

	// Compression IDs, in the low four bits of the flags byte.
	compressNone = 0
	compressS2   = 1
)

// defaultMaxSize is the [Options.MaxSize] used when it is zero.
const defaultMaxSize = 64 << 20

// tombstone is what Tombstone returns a copy of: version 1, codec 0, the
// tombstone flag, no payload.
var tombstone = [headerLen]byte{version, 0, flagTombstone}

// Options configures a [Format]. The zero value is valid: msgpack, no
// compression, values up to 64 MiB.
type Options struct {
	// Codec encodes every value that Encode writes. Its ID must be 1 to 255,
	// and 128 to 255 unless it is [Msgpack] or [JSON].
	// Default: Msgpack{}.
	Codec Codec

	// CompressAbove is the payload size, in bytes, above which Encode
	// compresses the payload with S2 (github.com/klauspost/compress/s2, block
	// format). A payload that S2 does not make smaller is stored as it is.
	// Decode reads compressed values whatever this is set to.
	// Default: 0, never compress. A negative value is an error.
	CompressAbove int

	// MaxSize is the largest payload, in bytes after decompression, that
	// Encode writes and Decode accepts. Decode checks the size an S2 payload
	// announces before decompressing it, so MaxSize also bounds the memory a
	// decompression bomb can make Decode allocate. Readers and writers should
	// agree on it. Default: 64 MiB. A negative value is an error.
	MaxSize int

	// Codecs are further codecs that Decode accepts, by ID, besides Codec
	// and the built-in [Msgpack] and [JSON], which are always readable. List
	// here a codec that values in Redis may still be written with, for
	// example the old one while moving to a new Codec. Two codecs with the
	// same ID are an error. Default: none.
	Codecs []Codec
}

// Format writes values with a header and a codec, and reads back values
// written by any Format whose codecs it knows. It is safe for concurrent
// use. Create it with [New].
type Format struct {
	codec         Codec
	id            uint8    // codec.ID()
	app           appender // codec's appender, or nil
	compressAbove int
	maxSize       int
	decoders      [256]Codec // by codec ID; nil where unknown
}

// New returns a Format configured by opts, or an error starting with
// "codec:" that names the option that is wrong.
func New(opts Options) (*Format, error) {
	f := &Format{
		codec:         opts.Codec,
		compressAbove: opts.CompressAbove,
		maxSize:       opts.MaxSize,
	}
	if f.codec == nil {
		f.codec = Msgpack{}
	}
	if err := checkCodec("Options.Codec", f.codec); err != nil {
		return nil, err
	}
	if f.compressAbove < 0 {
		return nil, fmt.Errorf("codec: Options.CompressAbove is %d; want 0 (never compress) or more", f.compressAbove)
	}
	if f.maxSize < 0 {
		return nil, fmt.Errorf("codec: Options.MaxSize is %d; want 0 (default %d) or more", f.maxSize, defaultMaxSize)
	}
	if f.maxSize == 0 {
		f.maxSize = defaultMaxSize
	}
	f.app, _ = f.codec.(appender)
	f.id = f.codec.ID()

	f.decoders[msgpackID] = Msgpack{}
	f.decoders[jsonID] = JSON{}
	f.decoders[f.id] = f.codec
	names := make(map[uint8]string) // field that set each user ID
	names[f.id] = "Options.Codec"
	for i, c := range opts.Codecs {
		field := "Options.Codecs[" + strconv.Itoa(i) + "]"
		if c == nil {
			return nil, fmt.Errorf("codec: %s is nil", field)
		}
		if err := checkCodec(field, c); err != nil {
			return nil, err
		}
		id := c.ID()
		if builtin(c) {
			continue // always readable
		}
		if prev, ok := names[id]; ok {
			return nil, fmt.Errorf("codec: %s (%q) has ID %d, which %s already has", field, c.Name(), id, prev)
		}
		names[id] = field
		f.decoders[id] = c
	}
	return f, nil
}

// checkCodec validates the ID of c, found in field.
func checkCodec(field string, c Codec) error {
	id := c.ID()
	switch {
	case id == 0:
		return fmt.Errorf("codec: %s (%q) has ID 0; want 128 to 255", field, c.Name())
	case id < firstUserID && !builtin(c):
		return fmt.Errorf("codec: %s (%q) has ID %d, which is reserved for built-in codecs; want 128 to 255", field, c.Name(), id)
	}
	return nil
}

// Codec returns the codec that Encode uses.
func (f *Format) Codec() Codec { return f.codec }

// maxPooled is the capacity above which a scratch buffer is dropped rather
// than kept for the next Encode.
const maxPooled = 256 << 10

var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

// Encode returns the stored form of v: the header, then v encoded with the
// Format's codec and, if it is longer than [Options.CompressAbove] and S2
// makes it smaller, compressed. The caller owns the returned slice. A
// payload larger than [Options.MaxSize] is an error matching [ErrTooLarge].
func (f *Format) Encode(v any) (data []byte, err error) {
	return f.EncodeExpiring(v, time.Time{})
}

// EncodeExpiring is [Format.Encode] that also records in the header the
// time at which the value expires, to the millisecond, for [Expiry] to read
// back without decoding the value. A zero expires records nothing.
func (f *Format) EncodeExpiring(v any, expires time.Time) (data []byte, err error) {
	// A value's own marshalling method may panic; that is the value's
	// fault, and the caller gets an error rather than a crash.
	defer func() {
		if r := recover(); r != nil {
			data, err = nil, fmt.Errorf("codec: %s: encoding %T panicked: %v", f.codec.Name(), v, r)
		}
	}()
	var h [headerLen + expiryLen]byte
	return f.encode(v, header(h[:0], f.id, expires))
}

// header appends to dst the header of a value written by codec id, with
// the expiry field when expires is not zero.
func header(dst []byte, id uint8, expires time.Time) []byte {
	if expires.IsZero() {
		return append(dst, version, id, compressNone)
	}
	ms := expires.UnixMilli()
	if ms < 1 {
		ms = 1 // 0 would read as "no expiry"; the value is long gone anyway
	}
	return binary.BigEndian.AppendUint64(append(dst, version, id, flagExpiry), uint64(ms))
}

// encode returns hdr followed by the payload of v, compressed if the
// options say so and that makes it smaller.
func (f *Format) encode(v any, hdr []byte) ([]byte, error) {
	var payload []byte
	var err error
	if f.app != nil {
		// Marshal into a pooled buffer, copied below.
		buf := scratchPool.Get().(*[]byte)
		defer putScratch(buf)
		payload, err = f.app.appendMarshal((*buf)[:0], v)
		*buf = payload
	} else {
		payload, err = f.codec.Marshal(v)
	}
	if err != nil {
		return nil, fmt.Errorf("codec: %s: encoding %T: %w", f.codec.Name(), v, err)
	}
	if len(payload) > f.maxSize {
		return nil, fmt.Errorf("%w: %s encoding of %T is %d bytes, MaxSize is %d", ErrTooLarge, f.codec.Name(), v, len(payload), f.maxSize)
	}
	if f.compressAbove > 0 && len(payload) > f.compressAbove && s2.MaxEncodedLen(len(payload)) > 0 {
		buf := scratchPool.Get().(*[]byte)
		defer putScratch(buf)
		if c := s2.Encode((*buf)[:0], payload); len(c) < len(payload) {
			*buf, payload = c, c
			hdr[2] |= compressS2
		}
	}
	out := make([]byte, len(hdr)+len(payload))
	copy(out[copy(out, hdr):], payload)
	return out, nil
}

func putScratch(b *[]byte) {
	if cap(*b) <= maxPooled {
		scratchPool.Put(b)
	}
}

// Decode reads a value written by [Format.Encode] into the value v points
// to, which must be a non-nil pointer; as with encoding/json, decode into a
// zero value, since fields that data lacks keep what they held. Any codec
// known to f may have written data (see [Options.Codecs]). Decode returns
// [ErrTombstone] for the bytes of [Tombstone], an error matching
// [ErrCorrupt] when data is not a valid value of v's type, and never
// panics.
func (f *Format) Decode(data []byte, v any) error {
	if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("codec: Decode needs a non-nil pointer, not %T", v)
	}
	c, payload, err := f.payload(data)
	if err != nil {
		return err
	}
	return unmarshal(c, payload, v)
}

// payload checks data's header and returns the codec that wrote data and
// its payload, decompressed. Its errors are Decode's.
func (f *Format) payload(data []byte) (Codec, []byte, error) {
	if len(data) == 0 {
		return nil, nil, corrupt("empty input")
	}
	if len(data) < headerLen {
		return nil, nil, corrupt(fmt.Sprintf("truncated header: %d bytes, want %d", len(data), headerLen))
	}
	if data[0] != version {
		return nil, nil, corrupt(fmt.Sprintf("unknown format version %d", data[0]))
	}
	id, flags := data[1], data[2]
	payload := data[headerLen:]
	if flags&flagExpiry != 0 {
		if len(payload) < expiryLen {
			return nil, nil, corrupt(fmt.Sprintf("truncated expiry: %d bytes, want %d", len(payload), expiryLen))
		}
		payload = payload[expiryLen:]
	}
	if flags&flagTombstone != 0 {
		if id != 0 || flags&^flagExpiry != flagTombstone || len(payload) != 0 {
			return nil, nil, corrupt(fmt.Sprintf("malformed tombstone: codec ID %d, flags 0x%02x, %d payload bytes", id, flags, len(payload)))
		}
		return nil, nil, ErrTombstone
	}
	if flags&flagReserved != 0 {
		return nil, nil, corrupt(fmt.Sprintf("unknown flags 0x%02x", flags&flagReserved))
	}
	c := f.decoders[id]
	if c == nil {
		return nil, nil, corrupt(fmt.Sprintf("unknown codec ID %d", id))
	}
	switch flags & flagCompression {
	case compressNone:
		if len(payload) > f.maxSize {
			return nil, nil, f.decodedTooLarge(len(payload))
		}
	case compressS2:
		n, err := s2.DecodedLen(payload)
		if err != nil {
			return nil, nil, corruptWrap("s2 payload", err)
		}
		if n > f.maxSize {
			return nil, nil, f.decodedTooLarge(n)
		}
		if payload, err = s2.Decode(nil, payload); err != nil {
			return nil, nil, corruptWrap("s2 payload", err)
		}
	default:
		return nil, nil, corrupt(fmt.Sprintf("unknown compression ID %d", flags&flagCompression))
	}
	return c, payload, nil
}

// unmarshal calls c.Unmarshal and turns its error or panic into an error
// matching ErrCorrupt.
func unmarshal(c Codec, payload []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = corrupt(fmt.Sprintf("%s: panic while decoding into %T: %v", c.Name(), v, r))
		}
	}()
	if err := c.Unmarshal(payload, v); err != nil {
		return corruptWrap(fmt.Sprintf("%s: decoding into %T", c.Name(), v), err)
	}
	return nil
}

func (f *Format) decodedTooLarge(n int) error {
	return &corruptError{
		msg:      fmt.Sprintf("payload is %d bytes, MaxSize is %d", n, f.maxSize),
		tooLarge: true,
	}
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
// one. It reads the header only, so it costs nothing like a Decode, and it
// reports false for bytes that are not a value of this format.
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
