package codec_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/tier-cache/tier/codec"
)

type user struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

func ExampleNew() {
	f, err := codec.New(codec.Options{
		CompressAbove: 1024, // compress payloads over 1 KiB with S2
	})
	if err != nil {
		panic(err)
	}
	data, err := f.Encode(user{ID: 7, Name: "Ada"})
	if err != nil {
		panic(err)
	}
	fmt.Printf("codec %s, header % x\n", f.Codec().Name(), data[:3])

	long, err := f.Encode(strings.Repeat("tier ", 1000))
	if err != nil {
		panic(err)
	}
	fmt.Printf("5000-byte string stored in under 100 bytes: %v, header % x\n", len(long) < 100, long[:3])

	_, err = codec.New(codec.Options{MaxSize: -1})
	fmt.Println(err)
	// Output:
	// codec msgpack, header 01 01 00
	// 5000-byte string stored in under 100 bytes: true, header 01 01 01
	// codec: Options.MaxSize is -1; want 0 (default 67108864) or more
}

func ExampleFormat_Decode() {
	f, err := codec.New(codec.Options{})
	if err != nil {
		panic(err)
	}
	data, err := f.Encode(user{ID: 7, Name: "Ada"})
	if err != nil {
		panic(err)
	}

	var u user
	if err := f.Decode(data, &u); err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", u)

	// Bytes that are not a valid value give an error matching ErrCorrupt,
	// which a cache can treat as a miss.
	err = f.Decode([]byte(`{"id":7}`), &u)
	fmt.Println(errors.Is(err, codec.ErrCorrupt), err)

	// A string stored, a struct asked for.
	data, err = f.Encode("Ada")
	if err != nil {
		panic(err)
	}
	err = f.Decode(data, &u)
	fmt.Println(errors.Is(err, codec.ErrCorrupt))
	// Output:
	// {ID:7 Name:Ada}
	// true codec: corrupt data: unknown format version 123
	// true
}

// A Format with a new codec still reads values the old one wrote, so
// replicas can switch codecs one at a time.
func ExampleFormat_Decode_migration() {
	old, err := codec.New(codec.Options{Codec: codec.Msgpack{}})
	if err != nil {
		panic(err)
	}
	data, err := old.Encode(user{ID: 1, Name: "Grace"})
	if err != nil {
		panic(err)
	}

	current, err := codec.New(codec.Options{Codec: codec.JSON{}})
	if err != nil {
		panic(err)
	}
	var u user
	if err := current.Decode(data, &u); err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", u)

	data, err = current.Encode(u)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", data)
	// Output:
	// {ID:1 Name:Grace}
	// "\x01\x02\x00{\"id\":1,\"name\":\"Grace\"}"
}

func ExampleIsTombstone() {
	f, err := codec.New(codec.Options{})
	if err != nil {
		panic(err)
	}

	// The loader said there is no such user: remember that.
	stored := codec.Tombstone()
	fmt.Printf("%q %v\n", stored, codec.IsTombstone(stored))

	var u user
	err = f.Decode(stored, &u)
	fmt.Println(errors.Is(err, codec.ErrTombstone), errors.Is(err, codec.ErrCorrupt))
	// Output:
	// "\x01\x00\x80" true
	// true false
}

// point stands for a type with generated msgpack methods, such as
// github.com/tinylib/msgp writes: MarshalMsg appends the encoding to b,
// UnmarshalMsg decodes from the front of b and returns the rest. These are
// written by hand: a fixarray of two int32s.
type point struct{ X, Y int32 }

func (p point) MarshalMsg(b []byte) ([]byte, error) {
	b = append(b, 0x92, 0xd2)
	b = binary.BigEndian.AppendUint32(b, uint32(p.X))
	b = append(b, 0xd2)
	return binary.BigEndian.AppendUint32(b, uint32(p.Y)), nil
}

func (p *point) UnmarshalMsg(b []byte) ([]byte, error) {
	if len(b) < 11 || b[0] != 0x92 || b[1] != 0xd2 || b[6] != 0xd2 {
		return b, errors.New("not a point")
	}
	p.X = int32(binary.BigEndian.Uint32(b[2:]))
	p.Y = int32(binary.BigEndian.Uint32(b[7:]))
	return b[11:], nil
}

// msgpCodec is a Codec for types with generated methods. User codecs take
// IDs 128 to 255; once values with an ID are stored, keep its meaning.
type msgpCodec struct{}

func (msgpCodec) ID() uint8    { return 200 }
func (msgpCodec) Name() string { return "msgp" }

func (msgpCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(interface{ MarshalMsg([]byte) ([]byte, error) })
	if !ok {
		return nil, fmt.Errorf("%T has no MarshalMsg method", v)
	}
	return m.MarshalMsg(nil)
}

func (msgpCodec) Unmarshal(data []byte, v any) error {
	u, ok := v.(interface{ UnmarshalMsg([]byte) ([]byte, error) })
	if !ok {
		return fmt.Errorf("%T has no UnmarshalMsg method", v)
	}
	rest, err := u.UnmarshalMsg(data)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("%d bytes after the value", len(rest))
	}
	return err
}

// A codec of your own, here one that calls a type's generated methods,
// plugs into a Format through Options.
func ExampleCodec() {
	f, err := codec.New(codec.Options{Codec: msgpCodec{}})
	if err != nil {
		panic(err)
	}
	data, err := f.Encode(point{X: 3, Y: -4})
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", data)

	var p point
	if err := f.Decode(data, &p); err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", p)

	// Its bytes are plain MessagePack, so the built-in codec reads them too.
	var xy []int32
	if err := (codec.Msgpack{}).Unmarshal(data[3:], &xy); err != nil {
		panic(err)
	}
	fmt.Println(xy)

	// A Format that has msgpCodec neither as its Codec nor in its Codecs
	// reports such values as corrupt.
	plain, _ := codec.New(codec.Options{})
	err = plain.Decode(data, &p)
	fmt.Println(errors.Is(err, codec.ErrCorrupt), err)
	// Output:
	// 01 c8 00 92 d2 00 00 00 03 d2 ff ff ff fc
	// {X:3 Y:-4}
	// [3 -4]
	// true codec: corrupt data: unknown codec ID 200
}
