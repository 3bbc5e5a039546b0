package codec

import (
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
)

// defaultMaxSize is the [Options.MaxSize] used when it is zero.
const defaultMaxSize = 64 << 20

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
	f := &Format{codec: opts.Codec, compressAbove: opts.CompressAbove, maxSize: opts.MaxSize}
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
	names := map[uint8]string{f.id: "Options.Codec"} // the field that set each user ID
	for i, c := range opts.Codecs {
		field := "Options.Codecs[" + strconv.Itoa(i) + "]"
		if c == nil {
			return nil, fmt.Errorf("codec: %s is nil", field)
		}
		if err := checkCodec(field, c); err != nil {
			return nil, err
		}
		if builtin(c) {
			continue // always readable
		}
		id := c.ID()
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
	switch id := c.ID(); {
	case id == 0:
		return fmt.Errorf("codec: %s (%q) has ID 0; want 128 to 255", field, c.Name())
	case id < firstUserID && !builtin(c):
		return fmt.Errorf("codec: %s (%q) has ID %d, which is reserved for built-in codecs; want 128 to 255", field, c.Name(), id)
	}
	return nil
}

// Codec returns the codec that Encode uses.
func (f *Format) Codec() Codec { return f.codec }

// Encode returns the stored form of v: the header, then v encoded with the
// Format's codec and, if it is longer than [Options.CompressAbove] and S2
// makes it smaller, compressed. The caller owns the returned slice. A
// payload larger than [Options.MaxSize] is an error matching [ErrTooLarge].
func (f *Format) Encode(v any) ([]byte, error) {
	return f.EncodeExpiring(v, time.Time{})
}

// EncodeExpiring is [Format.Encode] that also records in the header the
// time at which the value expires, to the millisecond, for [Expiry] to read
// back without decoding the value. A zero expires records nothing.
func (f *Format) EncodeExpiring(v any, expires time.Time) ([]byte, error) {
	return f.EncodeTagged(v, expires, 0, nil)
}

// EncodeTagged is [Format.EncodeExpiring] that also records tags in the
// header, with born, a number the caller gives them meaning by (tier:
// the tag clock when the value's load began), for [Tags] to read back
// without decoding the value. No tags record nothing.
func (f *Format) EncodeTagged(v any, expires time.Time, born uint64, tags []string) (data []byte, err error) {
	// A value's own marshalling method may panic: the caller gets an error.
	defer func() {
		if r := recover(); r != nil {
			data, err = nil, fmt.Errorf("codec: %s: encoding %T panicked: %v", f.codec.Name(), v, r)
		}
	}()
	var payload []byte
	if f.app != nil {
		buf := getScratch()
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
	var h [headerLen + expiryLen + 64]byte
	hdr := header(h[:0], f.id, expires)
	if len(tags) > 0 {
		hdr[2] |= flagTags
		hdr = appendTags(hdr, born, tags)
	}
	if f.compressAbove > 0 && len(payload) > f.compressAbove && s2.MaxEncodedLen(len(payload)) > 0 {
		buf := getScratch()
		defer putScratch(buf)
		if c := s2.Encode((*buf)[:0], payload); len(c) < len(payload) {
			*buf, payload = c, c
			hdr[2] |= compressS2
		}
	}
	data = make([]byte, len(hdr)+len(payload))
	copy(data[copy(data, hdr):], payload)
	return data, nil
}

var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

func getScratch() *[]byte { return scratchPool.Get().(*[]byte) }

func putScratch(b *[]byte) {
	if cap(*b) <= 256<<10 { // let larger ones go
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
func (f *Format) Decode(data []byte, v any) (err error) {
	if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("codec: Decode needs a non-nil pointer, not %T", v)
	}
	c, payload, err := f.payload(data)
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = corrupt("%s: panic while decoding into %T: %v", c.Name(), v, r)
		}
	}()
	if err := c.Unmarshal(payload, v); err != nil {
		return corrupt("%s: decoding into %T: %w", c.Name(), v, err)
	}
	return nil
}
