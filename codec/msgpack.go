package codec

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Msgpack is the [Codec] with ID 1 and the default of [Options]: MessagePack
// through github.com/vmihailenco/msgpack/v5, with these settings, which
// are part of the stored format and so never change for ID 1:
//
//   - Struct fields are encoded as a map keyed by field name. The name comes
//     from the `msgpack` struct tag, else from the `json` tag, else it is
//     the Go field name; names are matched exactly (case-sensitively) when
//     decoding, and fields that the target struct lacks are skipped, so a
//     replica may add or drop fields.
//   - Integers keep their type: an int64 is always written in 9 bytes and
//     comes back as int64 when decoded into an interface value (int8 …
//     uint64 likewise). Go's plain int and uint are written in the fewest
//     bytes and so come back into an interface value as the smallest type
//     that holds them (int8(1) for int(1)); into a typed field any integer
//     type is accepted. float32 and float64 are kept apart the same way.
//   - time.Time is written as the MessagePack timestamp extension (seconds
//     and nanoseconds): the instant is kept exactly, the monotonic clock
//     reading and the location are not. It decodes in [time.Local] (the
//     zero Time in UTC), so compare times with [time.Time.Equal].
//   - A nil slice, map or pointer is written as nil and decodes as nil; an
//     empty []byte decodes as an empty, non-nil []byte.
//
// Types with their own msgpack methods, or registered with msgpack.Register
// or msgpack.RegisterExt, are encoded and decoded by those.
//
// Because msgpack/v5 allocates what a length prefix announces and recurses
// without limit, Unmarshal first checks that data holds exactly one
// well-formed value, nested at most 10000 deep, whose every length fits in
// data. For the same reason it refuses an extension with an empty body, and
// a value read from the start of an extension's body (msgpack/v5 reads a
// map there when it wants a map and finds an extension). Timestamps and
// msgpack.RegisterExt types are not affected; a decoder registered with
// msgpack.RegisterExtDecoder must read its body with Decoder.ReadFull; and
// a value can intern (the intern tag option) up to 128 distinct strings.
//
// The zero value is ready to use.
type Msgpack struct{}

// ID returns 1.
func (Msgpack) ID() uint8 { return msgpackID }

// Name returns "msgpack".
func (Msgpack) Name() string { return "msgpack" }

// Marshal returns the MessagePack encoding of v.
func (m Msgpack) Marshal(v any) ([]byte, error) {
	b, err := m.appendMarshal(nil, v)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Unmarshal decodes the MessagePack value in data into v, which must be a
// non-nil pointer. Bytes after the value are an error.
func (Msgpack) Unmarshal(data []byte, v any) (err error) {
	d := msgpackDecoders.Get().(*msgpackDecoder)
	if d.r.ext, err = checkMsgpack(data, d.r.ext[:0]); err != nil {
		msgpackDecoders.Put(d)
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: panic while decoding %T: %v", v, r)
		}
	}()
	d.r.Reset(data)
	d.dec.Reset(&d.r) // forgets what the last value's own methods set
	d.dec.SetCustomStructTag("json")
	err = d.dec.Decode(v)
	d.r.Reset(nil)
	if err == nil {
		// A decoder that failed may hold state that Reset does not
		// clear, such as a half-recorded raw message; let it go.
		msgpackDecoders.Put(d)
	}
	return err
}

type msgpackEncoder struct {
	w   appendWriter
	enc *msgpack.Encoder
}

var msgpackEncoders = sync.Pool{New: func() any {
	e := new(msgpackEncoder)
	e.enc = msgpack.NewEncoder(nil)
	return e
}}

func (Msgpack) appendMarshal(dst []byte, v any) ([]byte, error) {
	e := msgpackEncoders.Get().(*msgpackEncoder)
	e.w.b = dst
	e.enc.Reset(&e.w) // forgets interned strings and what v's methods set
	e.enc.SetCustomStructTag("json")
	err := e.enc.Encode(v)
	out := e.w.b
	e.w.b = nil
	msgpackEncoders.Put(e)
	return out, err
}

// appendWriter is an io.Writer (and io.ByteWriter) that appends to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

type msgpackDecoder struct {
	r   guardedReader
	dec *msgpack.Decoder
}

var msgpackDecoders = sync.Pool{New: func() any {
	return &msgpackDecoder{dec: msgpack.NewDecoder(nil)}
}}

var errValueInExt = errors.New("msgpack: a value inside an extension's body is not supported")

// guardedReader is the reader msgpack/v5 decodes from. msgpack/v5 reads a
// value's type byte with ReadByte and an extension's body with Read, so a
// ReadByte at the start of a body (at an offset in ext, ascending) is a
// value read from inside the body, where checkMsgpack's checks do not hold.
type guardedReader struct {
	bytes.Reader
	ext []int
}

func (r *guardedReader) ReadByte() (byte, error) {
	if len(r.ext) > 0 {
		if _, found := slices.BinarySearch(r.ext, int(r.Size())-r.Len()); found {
			return 0, errValueInExt
		}
	}
	return r.Reader.ReadByte()
}

// maxMsgpackDepth is how deeply arrays and maps may nest in a value that
// Msgpack.Unmarshal accepts (encoding/json has the same limit).
const maxMsgpackDepth = 10000

// msgpackFixedLen is the length of the value after the type byte for the
// type bytes 0xca (float 32) to 0xd3 (int 64).
var msgpackFixedLen = [...]uint64{4, 8, 1, 2, 4, 8, 1, 2, 4, 8}

// checkMsgpack returns an error unless data holds exactly one well-formed
// MessagePack value whose every string, binary, extension and container
// length fits in the bytes that follow it and whose arrays and maps nest at
// most maxMsgpackDepth deep. Then the items of all the containers in data
// add up to fewer than len(data). It appends to ext the offsets of the
// extension bodies that guardedReader guards.
func checkMsgpack(data []byte, ext []int) ([]int, error) {
	if len(data) == 0 {
		return ext, errors.New("msgpack: empty data")
	}
	var stackBuf [32]uint64
	stack := stackBuf[:0] // items left in each enclosing container
	left := uint64(1)     // items left in the innermost one
	pos := 0
	// length reads the big-endian length of 1<<k bytes at pos.
	length := func(k byte) (uint64, bool) {
		n := 1 << k
		if len(data)-pos < n {
			return 0, false
		}
		var v uint64
		for _, b := range data[pos : pos+n] {
			v = v<<8 | uint64(b)
		}
		pos += n
		return v, true
	}
	for {
		for left == 0 {
			if len(stack) == 0 {
				if pos != len(data) {
					return ext, fmt.Errorf("msgpack: %d bytes after the value", len(data)-pos)
				}
				return ext, nil
			}
			left, stack = stack[len(stack)-1], stack[:len(stack)-1]
		}
		left--
		if pos >= len(data) {
			return ext, fmt.Errorf("msgpack: data ends at offset %d inside a value", pos)
		}
		start, c := pos, data[pos]
		pos++
		var skip, items uint64 // bytes after the length; items of a container
		ok, isExt := true, false
		switch {
		case c <= 0x7f || c >= 0xe0: // fixint
		case c <= 0x8f: // fixmap
			items = 2 * uint64(c&0x0f)
		case c <= 0x9f: // fixarray
			items = uint64(c & 0x0f)
		case c <= 0xbf: // fixstr
			skip = uint64(c & 0x1f)
		case c == 0xc0 || c == 0xc2 || c == 0xc3: // nil, false, true
		case c >= 0xc4 && c <= 0xc6: // bin 8, 16, 32
			skip, ok = length(c - 0xc4)
		case c >= 0xc7 && c <= 0xc9: // ext 8, 16, 32: length, type, body
			skip, ok = length(c - 0xc7)
			skip, isExt = skip+1, true
		case c >= 0xca && c <= 0xd3: // floats and integers
			skip = msgpackFixedLen[c-0xca]
		case c >= 0xd4 && c <= 0xd8: // fixext 1 to 16: type, body
			skip, isExt = 1+1<<(c-0xd4), true
		case c >= 0xd9 && c <= 0xdb: // str 8, 16, 32
			skip, ok = length(c - 0xd9)
		case c == 0xdc || c == 0xdd: // array 16, 32
			items, ok = length(c - 0xdc + 1)
		case c == 0xde || c == 0xdf: // map 16, 32
			items, ok = length(c - 0xde + 1)
			items *= 2
		default: // 0xc1
			return ext, fmt.Errorf("msgpack: invalid type byte 0x%02x at offset %d", c, start)
		}
		rest := uint64(len(data) - pos)
		if !ok || skip > rest {
			return ext, fmt.Errorf("msgpack: value at offset %d (type byte 0x%02x) runs past the end of the data", start, c)
		}
		if isExt {
			if skip == 1 {
				return ext, fmt.Errorf("msgpack: extension at offset %d has an empty body", start)
			}
			// Let through the index of an interned string (extension type
			// -128), which msgpack/v5 reads from a fixext 1 with ReadByte,
			// unless it could also be read as a map's length.
			body := data[pos+1]
			if !(c == 0xd4 && data[pos] == 0x80) || body >= 0x80 && body <= 0x8f || body == 0xc0 || body == 0xde || body == 0xdf {
				ext = append(ext, pos+1)
			}
		}
		pos += int(skip)
		if items == 0 {
			continue
		}
		if items > rest { // every item takes at least one byte
			return ext, fmt.Errorf("msgpack: container at offset %d declares %d items but only %d bytes follow", start, items, rest)
		}
		if len(stack) >= maxMsgpackDepth {
			return ext, fmt.Errorf("msgpack: containers nested more than %d deep at offset %d", maxMsgpackDepth, start)
		}
		stack = append(stack, left)
		left = items
	}
}
