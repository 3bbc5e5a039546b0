package codec

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestRoundTrip(t *testing.T) {
	big := strings.Repeat("tier caches values; ", 60000) // 1.2 MB, compressible
	tests := []struct {
		name   string
		in     any
		newOut func() any // returns a pointer to a zero value to decode into
		want   any        // nil: want in
		json   any        // what JSON gives when it differs from want
	}{
		{name: "struct", in: sampleRecord(), newOut: func() any { return new(record) }},
		{name: "struct pointer", in: &record{Name: "p"}, newOut: func() any { return new(*record) }, want: &record{Name: "p"}},
		{name: "zero struct", in: record{}, newOut: func() any { return new(record) }},
		{
			name: "map[string]any",
			in: map[string]any{
				"s": "x", "i": int64(-5), "u": uint64(7), "f": 1.5, "t": true, "n": nil,
				"l": []any{"a", int64(1)}, "m": map[string]any{"k": "v"}, "e": map[string]any{},
			},
			newOut: func() any { return new(map[string]any) },
			json: map[string]any{
				"s": "x", "i": -5.0, "u": 7.0, "f": 1.5, "t": true, "n": nil,
				"l": []any{"a", 1.0}, "m": map[string]any{"k": "v"}, "e": map[string]any{},
			},
		},
		{name: "map[string]int", in: map[string]int{"a": 1, "b": -2, "": math.MaxInt64}, newOut: func() any { return new(map[string]int) }},
		{name: "empty map", in: map[string]int{}, newOut: func() any { return new(map[string]int) }},
		{name: "nil map", in: map[string]int(nil), newOut: func() any { return new(map[string]int) }},
		{name: "nil pointer", in: (*record)(nil), newOut: func() any { p := &record{Name: "old"}; return &p }},
		{name: "nil interface", in: nil, newOut: func() any { return new(any) }},
		{name: "nil bytes", in: []byte(nil), newOut: func() any { return new([]byte) }},
		{name: "empty bytes", in: []byte{}, newOut: func() any { return new([]byte) }},
		{name: "bytes", in: []byte("\x00\xffbinary"), newOut: func() any { return new([]byte) }},
		{name: "empty string", in: "", newOut: func() any { return new(string) }},
		{name: "unicode string", in: "héllo, 世界 🎉", newOut: func() any { return new(string) }},
		{name: "int zero", in: 0, newOut: func() any { return new(int) }},
		{name: "int min", in: math.MinInt64, newOut: func() any { return new(int) }},
		{name: "int64 max", in: int64(math.MaxInt64), newOut: func() any { return new(int64) }},
		{name: "uint64 max", in: uint64(math.MaxUint64), newOut: func() any { return new(uint64) }},
		{name: "int8", in: int8(-128), newOut: func() any { return new(int8) }},
		{name: "float64", in: 0.1, newOut: func() any { return new(float64) }},
		{name: "float64 max", in: math.MaxFloat64, newOut: func() any { return new(float64) }},
		{name: "float64 tiny", in: math.SmallestNonzeroFloat64, newOut: func() any { return new(float64) }},
		{name: "negative zero", in: math.Copysign(0, -1), newOut: func() any { return new(float64) }},
		{name: "float32", in: float32(1.1), newOut: func() any { return new(float32) }},
		{name: "true", in: true, newOut: func() any { return new(bool) }},
		{name: "false", in: false, newOut: func() any { return new(bool) }},
		{name: "slice of structs", in: []inner{{Label: "a"}, {Counts: []int{1}}}, newOut: func() any { return new([]inner) }},
		{name: "large string", in: big, newOut: func() any { return new(string) }},
		{name: "large struct", in: record{Name: big, Blob: []byte(big)}, newOut: func() any { return new(record) }},
	}
	for _, c := range codecs {
		for _, compress := range []int{0, 1} {
			f := mustNew(t, Options{Codec: c, CompressAbove: compress})
			for _, tt := range tests {
				t.Run(fmt.Sprintf("%s/compress=%d/%s", c.Name(), compress, tt.name), func(t *testing.T) {
					want := tt.want
					if want == nil {
						want = tt.in
					}
					if _, ok := c.(JSON); ok && tt.json != nil {
						want = tt.json
					}
					got, data := roundTrip(t, f, tt.in, tt.newOut())
					if !same(got, want) {
						t.Errorf("got %#v, want %#v", got, want)
					}
					if data[0] != version || data[1] != c.ID() {
						t.Errorf("header % x, want version %d and codec %d", data[:headerLen], version, c.ID())
					}
				})
			}
		}
	}
}

// TestRoundTripKeepsNilAndEmpty checks the nil / empty distinctions that
// same would also catch, but says what failed more plainly.
func TestRoundTripKeepsNilAndEmpty(t *testing.T) {
	for _, c := range codecs {
		f := mustNew(t, Options{Codec: c})
		got, _ := roundTrip(t, f, []byte{}, new([]byte))
		if b := got.([]byte); b == nil || len(b) != 0 {
			t.Errorf("%s: empty []byte decoded as %#v, want empty non-nil", c.Name(), b)
		}
		got, _ = roundTrip(t, f, []byte(nil), new([]byte))
		if b := got.([]byte); b != nil {
			t.Errorf("%s: nil []byte decoded as %#v, want nil", c.Name(), b)
		}
		p := &record{Name: "old"}
		data, err := f.Encode((*record)(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Decode(data, &p); err != nil {
			t.Fatal(err)
		}
		if p != nil {
			t.Errorf("%s: nil pointer decoded as %+v, want nil", c.Name(), p)
		}
	}
}

func TestTime(t *testing.T) {
	times := map[string]time.Time{
		"now (monotonic, local)": time.Now(),
		"fixed zone":             time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 5*3600+1800)),
		"whole seconds":          time.Unix(1700000000, 0).UTC(),
		"before 1970":            time.Date(1901, 12, 13, 20, 45, 52, 999, time.UTC),
		"far future":             time.Date(2600, 1, 1, 0, 0, 0, 1, time.UTC),
		"zero":                   {},
		// Timestamps whose extension body starts with a byte that is also
		// a map header or nil.
		"fixext4 body 0x80": time.Unix(0x80000001, 0),
		"fixext4 body 0xde": time.Unix(0xde000000, 0),
		"fixext4 body 0xc0": time.Unix(0xc0000000, 0),
		"fixext8 body 0x8f": time.Unix(1, 0x8f<<22),
		"ext8 body 0xdf":    time.Unix(-1, 0xdf<<24),
	}
	for name, in := range times {
		for _, c := range codecs {
			t.Run(c.Name()+"/"+name, func(t *testing.T) {
				f := mustNew(t, Options{Codec: c})
				got, _ := roundTrip(t, f, in, new(time.Time))
				tm := got.(time.Time)
				if !tm.Equal(in) {
					t.Fatalf("got %v, want an instant Equal to %v", tm, in)
				}
				if strings.Contains(tm.String(), "m=") {
					t.Errorf("decoded time %v has a monotonic reading", tm)
				}
				_, inOffset := in.Zone()
				_, offset := tm.Zone()
				switch {
				case in.IsZero():
					if tm.Location() != time.UTC {
						t.Errorf("zero time decoded in %v, want UTC", tm.Location())
					}
				case c.ID() == msgpackID:
					// Msgpack keeps the instant, not the location.
					if tm.Location() != time.Local {
						t.Errorf("msgpack time decoded in %v, want Local", tm.Location())
					}
				case offset != inOffset:
					t.Errorf("JSON time decoded with offset %d, want %d", offset, inOffset)
				}
			})
		}
	}
}

// TestMsgpackIntegersInInterfaces pins down the documented types of
// integers decoded into interface values.
func TestMsgpackIntegersInInterfaces(t *testing.T) {
	f := mustNew(t, Options{})
	in := map[string]any{"int": 1, "int64": int64(1), "int32": int32(1), "uint8": uint8(1), "uint": uint(300), "f32": float32(1)}
	want := map[string]any{"int": int8(1), "int64": int64(1), "int32": int32(1), "uint8": uint8(1), "uint": uint16(300), "f32": float32(1)}
	got, _ := roundTrip(t, f, in, new(map[string]any))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

// TestMsgpackInternedStrings checks that the intern tag option, whose
// repeated strings msgpack writes as extensions, still round-trips.
func TestMsgpackInternedStrings(t *testing.T) {
	type row struct {
		Kind string `msgpack:",intern"`
	}
	f := mustNew(t, Options{})
	var in []row
	for i := range 128 { // 128 distinct strings, each twice
		in = append(in, row{fmt.Sprintf("kind-%03d", i)}, row{fmt.Sprintf("kind-%03d", i)})
	}
	got, data := roundTrip(t, f, in, new([]row))
	if !reflect.DeepEqual(got, in) {
		t.Errorf("got %v, want %v", got, in)
	}
	if !bytes.Contains(data, []byte{0xd4, 0x80, 0x7f}) {
		t.Errorf("no interned string reference in % x", data)
	}
	// The next value, encoded with the same pooled encoder, must not refer
	// to the strings of this one.
	other := []row{{"kind-000"}, {"other"}, {"other"}}
	got, _ = roundTrip(t, f, other, new([]row))
	if !reflect.DeepEqual(got, other) {
		t.Errorf("second value: got %v, want %v", got, other)
	}
}

// TestMsgpackJSONTags checks that msgpack names fields by their json tag
// when they have no msgpack tag, and prefers the msgpack tag.
func TestMsgpackJSONTags(t *testing.T) {
	type tagged struct {
		A int `json:"alpha"`
		B int `json:"beta" msgpack:"bravo"`
		C int
	}
	data, err := Msgpack{}.Marshal(tagged{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]int
	if err := (Msgpack{}).Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"alpha": 1, "bravo": 2, "C": 3}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("fields encoded as %v, want %v", m, want)
	}
}

// panicky is a value whose own msgpack method panics.
type panicky struct{}

func (panicky) EncodeMsgpack(*msgpack.Encoder) error { panic("broken value") }

func TestEncodePanicIsAnError(t *testing.T) {
	f, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Encode(panicky{}); err == nil || !strings.Contains(err.Error(), "broken value") {
		t.Fatalf("Encode of a panicking value: %v, want an error naming the panic", err)
	}
	// The Format still works afterwards.
	data, err := f.Encode("ok")
	var s string
	if err != nil || f.Decode(data, &s) != nil || s != "ok" {
		t.Fatalf("after a panic: %q, %v", s, err)
	}
}

// celsius is given its own msgpack coders with msgpack.Register.
type celsius struct{ Degrees float64 }

func init() {
	msgpack.Register(celsius{},
		func(e *msgpack.Encoder, v reflect.Value) error {
			return e.EncodeString(fmt.Sprintf("%gC", v.Interface().(celsius).Degrees))
		},
		func(d *msgpack.Decoder, v reflect.Value) error {
			s, err := d.DecodeString()
			if err != nil {
				return err
			}
			var c celsius
			if _, err := fmt.Sscanf(s, "%gC", &c.Degrees); err != nil {
				return err
			}
			v.Set(reflect.ValueOf(c))
			return nil
		})
}

// TestMsgpackRegister checks that Msgpack uses the coders registered with
// msgpack.Register, inside other values too.
func TestMsgpackRegister(t *testing.T) {
	type reading struct {
		Where string
		Temp  celsius
	}
	f := mustNew(t, Options{})
	in := reading{Where: "Oslo", Temp: celsius{-3.5}}
	got, data := roundTrip(t, f, in, new(reading))
	if got != in {
		t.Errorf("got %+v, want %+v", got, in)
	}
	if !bytes.Contains(data, []byte("\xa5-3.5C")) {
		t.Errorf("the registered encoder was not used: %q", data)
	}
}
