package codec

import "encoding/json"

// Codec turns values into bytes and back. [Msgpack] and [JSON] are the
// built-in codecs; a user codec is any type with these methods and an ID
// from 128 to 255, passed in [Options].
//
// A Codec must be safe for concurrent use. Its wire format is part of the
// stored data: once values written with an ID are in Redis, every later
// codec with that ID must read them. A Codec is also how to use generated
// code, such as the methods tinylib/msgp writes; see the example.
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

// appender is implemented by Msgpack: it appends the encoding of v to dst,
// which lets Format.Encode marshal into a pooled buffer.
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
