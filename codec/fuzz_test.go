package codec

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// fuzzRecord is a struct target with most kinds of field.
type fuzzRecord struct {
	S    string
	I    int64
	U    uint16
	F    float64
	B    bool
	Raw  []byte
	T    time.Time
	L    []fuzzRecord
	M    map[string]int
	A    any
	P    *fuzzRecord
	Arr  [2]int8
	F32  float32
	Strs []string
}

// fuzzTargets return pointers to fresh zero values to decode into.
var fuzzTargets = []func() any{
	func() any { return new(any) },
	func() any { return new(map[string]any) },
	func() any { return new(fuzzRecord) },
	func() any { return new(string) },
	func() any { return new([]int64) },
	func() any { return new([]byte) },
	func() any { return new(time.Time) },
}

// FuzzDecode decodes arbitrary bytes into several targets. Decode must not
// panic; every error must match ErrCorrupt (or be ErrTombstone for a
// tombstone); and a value that decodes must survive Encode and Decode again
// with the codec that wrote it.
func FuzzDecode(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	opts := Options{MaxSize: 1 << 20, CompressAbove: 64}
	reader := mustNew(f, opts)
	writers := map[uint8]*Format{}
	for _, c := range codecs {
		o := opts
		o.Codec = c
		writers[c.ID()] = mustNew(f, o)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, target := range fuzzTargets {
			v := target()
			err := reader.Decode(data, v)
			if errors.Is(err, ErrTombstone) {
				if !IsTombstone(data) || errors.Is(err, ErrCorrupt) {
					t.Fatalf("Decode(%q) = %v for bytes that are not a tombstone", data, err)
				}
				continue
			}
			if IsTombstone(data) {
				t.Fatalf("Decode(Tombstone()) = %v, want ErrTombstone", err)
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Decode(%q) into %T: error %v does not match ErrCorrupt", data, v, err)
				}
				continue
			}

			// It decoded, so the header named a known codec.
			w := writers[data[1]]
			again, err := w.Encode(reflect.ValueOf(v).Elem().Interface())
			if err != nil {
				t.Fatalf("Decode(%q) into %T gave %#v, which %s cannot encode: %v", data, v, v, w.Codec().Name(), err)
			}
			v2 := target()
			if err := reader.Decode(again, v2); err != nil {
				t.Fatalf("re-encoded %#v as %q, which does not decode: %v", v, again, err)
			}
			got, want := reflect.ValueOf(v2).Elem().Interface(), reflect.ValueOf(v).Elem().Interface()
			if !same(got, want) {
				t.Fatalf("round trip of the value of %q changed it:\n got %#v\nwant %#v", data, got, want)
			}
		}
	})
}

// fuzzSeeds returns valid values of each codec, compressed and not, a
// tombstone and a few broken ones. testdata/fuzz/FuzzDecode holds the same
// kinds of inputs.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	rec := fuzzRecord{
		S: "s", I: -1, U: 7, F: 1.5, B: true, Raw: []byte{1}, T: time.Unix(1, 2),
		L: []fuzzRecord{{S: "in"}}, M: map[string]int{"k": 1}, A: map[string]any{"x": []any{int64(1), "y"}},
		P: &fuzzRecord{I: 3}, Arr: [2]int8{-1, 1}, F32: 2.5, Strs: []string{"a"},
	}
	values := []any{rec, map[string]any{"a": 1.5, "b": "c"}, "hello", []int64{1, -2}, []byte("bytes"), time.Unix(1e9, 5), nil}
	for _, c := range codecs {
		for _, compress := range []int{0, 1} {
			f := mustNew(tb, Options{Codec: c, CompressAbove: compress})
			for _, v := range values {
				data, err := f.Encode(v)
				if err != nil {
					tb.Fatal(err)
				}
				seeds = append(seeds, data)
			}
		}
	}
	return append(seeds,
		Tombstone(),
		[]byte{},
		[]byte{1, 1},
		[]byte{2, 1, 0, 0xc0},
		[]byte{1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		hostile(0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0),
	)
}
