package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
// Unmarshal first checks that data holds exactly one well-formed value,
// nested at most 10000 levels deep, whose every length fits in data. So a
// hostile length prefix cannot make it allocate more than data could hold
// (memory stays proportional to len(data) times the size of the target's
// element types), and deep nesting cannot overflow the stack. Because
// msgpack/v5 reads a map header out of an extension's body where it wants a
// map and finds an extension, which would escape those checks, Unmarshal
// also refuses, as corrupt:
//
//   - an extension value with an empty body;
//   - a read of a value from the start of an extension's body: the
//     bodies of timestamps and of msgpack.RegisterExt types are read whole
//     and are fine, but an extension decoder registered with
//     msgpack.RegisterExtDecoder must read its body with
//     msgpack.Decoder.ReadFull rather than decode values from it;
//   - references to interned strings number 128 to 143, 192, 222 and 223
//     (written for fields with the intern tag option), which look like
//     such a read: a value can safely intern up to 128 distinct strings.
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
	md := msgpackDecoders.Get().(*msgpackDecoder)
	md.r.ext, err = checkMsgpack(data, md.r.ext[:0])
	if err != nil {
		md.r.reset(nil)
		msgpackDecoders.Put(md)
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: panic while decoding %T: %v", v, r)
		}
	}()
	md.r.reset(data)
	md.dec.Reset(&md.r)
	md.dec.SetCustomStructTag("json")
	err = md.dec.Decode(v)
	md.r.reset(nil)
	md.dec.ResetReader(nil)
	if err == nil {
		// A decoder that failed may hold state that Reset does not clear
		// (such as a half-recorded raw message); let it go.
		msgpackDecoders.Put(md)
	}
	return err
}

// msgpackEncoder is a pooled appendWriter with a msgpack.Encoder bound to it.
type msgpackEncoder struct {
	w   appendWriter
	enc *msgpack.Encoder
}

var msgpackEncoders = sync.Pool{New: func() any {
	me := new(msgpackEncoder)
	me.enc = msgpack.NewEncoder(&me.w)
	me.enc.SetCustomStructTag("json")
	return me
}}

func (Msgpack) appendMarshal(dst []byte, v any) ([]byte, error) {
	me := msgpackEncoders.Get().(*msgpackEncoder)
	me.w.b = dst
	// Forget the interned strings of the previous value (ResetWriter keeps
	// the struct tag setting).
	me.enc.ResetWriter(&me.w)
	err := me.enc.Encode(v)
	out := me.w.b
	me.w.b = nil
	msgpackEncoders.Put(me)
	if err != nil {
		return dst, err
	}
	return out, nil
}

// msgpackDecoder is a pooled msgpack.Decoder with the reader it reads from.
type msgpackDecoder struct {
	r   guardedReader
	dec *msgpack.Decoder
}

var msgpackDecoders = sync.Pool{New: func() any {
	return &msgpackDecoder{dec: msgpack.NewDecoder(nil)}
}}

// errMapInExt is what guardedReader returns when msgpack reads a value out
// of an extension's body.
var errMapInExt = errors.New("msgpack: a value inside an extension's body is not supported")

// guardedReader is the io.Reader and io.ByteScanner over data that
// Msgpack.Unmarshal gives the msgpack decoder. It keeps the decoder's parse
// of data the same as checkMsgpack's.
//
// They differ in one place: where msgpack/v5 wants a map and finds an
// extension, it skips the extension's header and reads a map header from
// its body, and then the map's items from the bytes that follow, past the
// end of the body: bytes that checkMsgpack had parsed as something else, so
// its length and depth checks say nothing about them. When decoding
// extensions for what they are (timestamps, msgpack.RegisterExt types),
// msgpack reads their bodies with Read; only the map-header detour reads the
// first byte of a body with ReadByte. So guardedReader fails that ReadByte.
// (The one other such ReadByte, of the index of an interned string in a
// fixext 1, is let through: checkExt leaves those bodies out of ext after
// refusing the indexes that the detour could use.)
type guardedReader struct {
	data []byte
	pos  int
	ext  []int // offsets of extension bodies, ascending
	next int   // index in ext of the first offset >= pos
}

func (r *guardedReader) reset(data []byte) {
	r.data, r.pos, r.next = data, 0, 0
	if data == nil {
		r.ext = r.ext[:0]
		if cap(r.ext) > 1<<12 {
			r.ext = nil // do not keep a large one in the pool
		}
	}
}

func (r *guardedReader) Read(p []byte) (int, error) {
	if r.pos >= len(r.data) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, r.data[r.pos:])
	r.pos += n
	for r.next < len(r.ext) && r.ext[r.next] < r.pos {
		r.next++
	}
	return n, nil
}

func (r *guardedReader) ReadByte() (byte, error) {
	if r.pos >= len(r.data) {
		return 0, io.EOF
	}
	if r.next < len(r.ext) && r.ext[r.next] == r.pos {
		return 0, errMapInExt
	}
	c := r.data[r.pos]
	r.pos++
	if r.next < len(r.ext) && r.ext[r.next] < r.pos {
		r.next++
	}
	return c, nil
}

func (r *guardedReader) UnreadByte() error {
	if r.pos == 0 {
		return errors.New("msgpack: UnreadByte at the start of the data")
	}
	r.pos--
	if r.next > 0 && r.ext[r.next-1] >= r.pos {
		r.next--
	}
	return nil
}

// maxMsgpackDepth is how deeply arrays and maps may nest in a value that
// Msgpack.Unmarshal accepts (encoding/json has the same limit).
const maxMsgpackDepth = 10000

var errMsgpackEmpty = errors.New("msgpack: empty data")

// internedStringExt is the extension type msgpack/v5 writes for a repeated
// string of a field with the intern tag option; its body is the index of
// the string.
const internedStringExt = 0x80 // int8(-128)

// checkMsgpack returns an error unless data holds exactly one well-formed
// MessagePack value whose every string, binary, extension and container
// length fits in the bytes that follow it and whose arrays and maps nest at
// most maxMsgpackDepth deep. Once it passes, the items declared by all the
// containers in data add up to fewer than len(data), so a decoder that
// parses data the same way and preallocates what a length prefix says
// allocates in proportion to len(data). It works without recursion.
//
// It appends to ext the offsets of the extension bodies in data that
// guardedReader must guard, and returns it.
func checkMsgpack(data []byte, ext []int) ([]int, error) {
	if len(data) == 0 {
		return ext, errMsgpackEmpty
	}
	var stackBuf [32]uint64
	// stack holds, for each enclosing container, how many of its items are
	// still to be read after the current one; left is that count for the
	// innermost container (the top level counts as one item).
	stack := stackBuf[:0]
	left := uint64(1)
	pos := 0
	for {
		for left == 0 {
			if len(stack) == 0 {
				if pos != len(data) {
					return ext, fmt.Errorf("msgpack: %d bytes after the value", len(data)-pos)
				}
				return ext, nil
			}
			left = stack[len(stack)-1]
			stack = stack[:len(stack)-1]
		}
		left--
		if pos >= len(data) {
			return ext, fmt.Errorf("msgpack: data ends at offset %d inside a value", pos)
		}
		start := pos
		c := data[pos]
		pos++
		var (
			skip  uint64 // bytes of the value after its type byte and length
			items uint64 // items in a container
			isExt bool   // an extension: skip covers its type and body
		)
		// size reads a big-endian length of n bytes.
		size := func(n int) (uint64, bool) {
			if len(data)-pos < n {
				return 0, false
			}
			var v uint64
			switch n {
			case 1:
				v = uint64(data[pos])
			case 2:
				v = uint64(binary.BigEndian.Uint16(data[pos:]))
			case 4:
				v = uint64(binary.BigEndian.Uint32(data[pos:]))
			}
			pos += n
			return v, true
		}
		ok := true
		switch {
		case c <= 0x7f, c >= 0xe0: // positive and negative fixint
		case c <= 0x8f: // fixmap
			items = 2 * uint64(c&0x0f)
		case c <= 0x9f: // fixarray
			items = uint64(c & 0x0f)
		case c <= 0xbf: // fixstr
			skip = uint64(c & 0x1f)
		default:
			switch c {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
			case 0xc4, 0xd9: // bin 8, str 8
				skip, ok = size(1)
			case 0xc5, 0xda: // bin 16, str 16
				skip, ok = size(2)
			case 0xc6, 0xdb: // bin 32, str 32
				skip, ok = size(4)
			case 0xc7: // ext 8: length, then type
				skip, ok = size(1)
				skip, isExt = skip+1, true
			case 0xc8: // ext 16
				skip, ok = size(2)
				skip, isExt = skip+1, true
			case 0xc9: // ext 32
				skip, ok = size(4)
				skip, isExt = skip+1, true
			case 0xcc, 0xd0: // uint 8, int 8
				skip = 1
			case 0xcd, 0xd1: // uint 16, int 16
				skip = 2
			case 0xca, 0xce, 0xd2: // float 32, uint 32, int 32
				skip = 4
			case 0xcb, 0xcf, 0xd3: // float 64, uint 64, int 64
				skip = 8
			case 0xd4: // fixext 1: type, then data
				skip, isExt = 2, true
			case 0xd5: // fixext 2
				skip, isExt = 3, true
			case 0xd6: // fixext 4
				skip, isExt = 5, true
			case 0xd7: // fixext 8
				skip, isExt = 9, true
			case 0xd8: // fixext 16
				skip, isExt = 17, true
			case 0xdc: // array 16
				items, ok = size(2)
			case 0xdd: // array 32
				items, ok = size(4)
			case 0xde: // map 16
				items, ok = size(2)
				items *= 2
			case 0xdf: // map 32
				items, ok = size(4)
				items *= 2
			default: // 0xc1 is never used
				return ext, fmt.Errorf("msgpack: invalid type byte 0x%02x at offset %d", c, start)
			}
		}
		rest := uint64(len(data) - pos)
		if !ok || skip > rest {
			return ext, fmt.Errorf("msgpack: value at offset %d (type byte 0x%02x) runs past the end of the data", start, c)
		}
		if isExt {
			var err error
			if ext, err = checkExt(data, start, pos, skip-1, ext); err != nil {
				return ext, err
			}
		}
		pos += int(skip)
		if items == 0 {
			continue
		}
		// Every item takes at least one byte.
		if items > rest {
			return ext, fmt.Errorf("msgpack: container at offset %d declares %d items but only %d bytes follow", start, items, rest)
		}
		if len(stack) >= maxMsgpackDepth {
			return ext, fmt.Errorf("msgpack: containers nested more than %d deep at offset %d", maxMsgpackDepth, start)
		}
		stack = append(stack, left)
		left = items
	}
}

// checkExt checks the extension value that starts at offset start in data,
// whose type byte is at offset typ and whose body of n bytes follows it,
// and appends the offset of the body to ext for guardedReader (see there).
// It refuses an empty body, which starts where the next value does, and the
// index of an interned string in a fixext 1 if it is a byte that
// guardedReader could not tell from the map header that msgpack/v5 may read
// there.
func checkExt(data []byte, start, typ int, n uint64, ext []int) ([]int, error) {
	if n == 0 {
		return ext, fmt.Errorf("msgpack: extension at offset %d has an empty body", start)
	}
	body := typ + 1
	if data[start] == 0xd4 && data[typ] == internedStringExt {
		switch b := data[body]; {
		case b >= 0x80 && b <= 0x8f, b == 0xc0, b == 0xde, b == 0xdf:
			return ext, fmt.Errorf("msgpack: interned string index %d at offset %d is not supported", b, start)
		}
		return ext, nil // msgpack reads the index with ReadByte
	}
	return append(ext, body), nil
}
