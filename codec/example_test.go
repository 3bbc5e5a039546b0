package codec_test

import (
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
