package codec

import (
	"encoding/json"
	"sync"
)

// Codec turns values into bytes and back. [Msgpack] and [JSON] are the
// built-in codecs; a user codec is any type with these methods and an ID
// from 128 to 255, passed in [Options].
//
// A Codec must be safe for concurrent use. Its wire format is part of the
// stored data: once values written with an ID are in Redis, every later
// codec with that ID must read them.
type Codec interface {
	// ID identifies the codec inside stored bytes (see the package
	// documentation for the layout). 1 to 127 are reserved for the codecs
	// of this package, 128 to 255 are for users; 0 is never a codec.
	ID() uint8

	// Name is a short lower-case name for errors and logs, such as "msgpack".
	Name() string

	// Marshal returns the encoding of v. The caller owns the returned slice.
	Marshal(v any) ([]byte, error)

	// Unmarshal decodes data into the value v points to. It must return an
	// error, not panic, for data it cannot decode ([Format.Decode] recovers
	// from a panic all the same and reports it as [ErrCorrupt]), and it must
	// not keep data after it returns.
	Unmarshal(data []byte, v any) error
}

// Codec IDs of the built-in codecs.
const (
	msgpackID uint8 = 1
	jsonID    uint8 = 2

	// firstUserID is the smallest ID a user codec may have.
	firstUserID uint8 = 128
)

// appender is implemented by the built-in codecs: it appends the encoding
// of v to dst, which lets Format.Encode write the payload right after the
// header without an intermediate copy.
type appender interface {
	appendMarshal(dst []byte, v any) ([]byte, error)
}

// builtin reports whether c is one of this package's codecs, which are the
// only ones allowed to use IDs below firstUserID.
func builtin(c Codec) bool {
	switch c.(type) {
	case Msgpack, *Msgpack, JSON, *JSON:
		return true
	}
	return false
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

func (w *appendWriter) WriteString(s string) (int, error) {
	w.b = append(w.b, s...)
	return len(s), nil
}

// JSON is the [Codec] with ID 2: encoding/json, with its usual rules
// (json struct tags, []byte as base64, numbers in interface values decoded
// as float64, time.Time as RFC 3339 text with nanoseconds and the zone
// offset). Its bytes are readable in redis-cli right after the 3-byte
// header. The zero value is ready to use.
type JSON struct{}

// ID returns 2.
func (JSON) ID() uint8 { return jsonID }

// Name returns "json".
func (JSON) Name() string { return "json" }

// Marshal returns the JSON encoding of v, as [json.Marshal] does.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON data into v, as [json.Unmarshal] does. Bytes after
// the value are an error.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// jsonWriter is a pooled appendWriter with a json.Encoder bound to it.
type jsonWriter struct {
	w   appendWriter
	enc *json.Encoder
}

var jsonWriters = sync.Pool{New: func() any {
	jw := new(jsonWriter)
	jw.enc = json.NewEncoder(&jw.w)
	return jw
}}

func (JSON) appendMarshal(dst []byte, v any) ([]byte, error) {
	jw := jsonWriters.Get().(*jsonWriter)
	jw.w.b = dst
	err := jw.enc.Encode(v)
	out := jw.w.b
	jw.w.b = nil
	jsonWriters.Put(jw)
	if err != nil {
		return dst, err
	}
	// json.Encoder ends every value with a newline that json.Marshal does
	// not write; drop it so that both give the same bytes.
	if len(out) > len(dst) && out[len(out)-1] == '\n' {
		out = out[:len(out)-1]
	}
	return out, nil
}
