package codec

import (
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// benchUser is a small struct, the typical cached value.
type benchUser struct {
	ID      int64
	Name    string
	Email   string
	Active  bool
	Score   float64
	Roles   []string
	Created time.Time
}

var benchValue = benchUser{
	ID: 12345, Name: "Ada Lovelace", Email: "ada@example.com", Active: true, Score: 99.5,
	Roles: []string{"admin", "dev"}, Created: time.Unix(1700000000, 0),
}

func BenchmarkEncode(b *testing.B) {
	for _, c := range codecs {
		b.Run(c.Name(), func(b *testing.B) {
			f := mustNew(b, Options{Codec: c})
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Encode(benchValue); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The cost of msgpack alone, to compare with.
	b.Run("msgpack.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := msgpack.Marshal(benchValue); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for _, c := range codecs {
		b.Run(c.Name(), func(b *testing.B) {
			f := mustNew(b, Options{Codec: c})
			data, err := f.Encode(benchValue)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				var u benchUser
				if err := f.Decode(data, &u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("msgpack.Unmarshal", func(b *testing.B) {
		data, err := msgpack.Marshal(benchValue)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			var u benchUser
			if err := msgpack.Unmarshal(data, &u); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStoredValue measures what tier does with a value that goes to
// Redis: EncodeExpiring on a write and Decode on a far hit. Run it in two
// trees, alternately, to compare versions.
func BenchmarkStoredValue(b *testing.B) {
	f := mustNew(b, Options{})
	expires := time.Unix(1_800_000_000, 0)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.EncodeExpiring(benchValue, expires); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		data, err := f.EncodeExpiring(benchValue, expires)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			var u benchUser
			if err := f.Decode(data, &u); err != nil {
				b.Fatal(err)
			}
		}
	})
}
