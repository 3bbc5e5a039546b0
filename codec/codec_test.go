package codec

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/vmihailenco/msgpack/v5"
)

type inner struct {
	Label  string
	Counts []int
	Attrs  map[string]int
}

type record struct {
	ID      int64
	Name    string `json:"name"`
	Score   float64
	Active  bool
	Tags    []string
	Inner   inner
	Ptr     *inner
	Nothing *inner
	Blob    []byte
	When    time.Time
}

func sampleRecord() record {
	return record{
		ID:     42,
		Name:   "Zoë",
		Score:  -3.25,
		Active: true,
		Tags:   []string{"a", "", "ç"},
		Inner:  inner{Label: "in", Counts: []int{1, -2, 300000}, Attrs: map[string]int{"x": 1, "y": -1}},
		Ptr:    &inner{Label: "ptr", Counts: []int{}},
		Blob:   []byte{0, 1, 2, 255},
		When:   time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
	}
}

var codecs = []Codec{Msgpack{}, JSON{}}

// mustNew returns New(opts) or stops the test.
func mustNew(t testing.TB, opts Options) *Format {
	t.Helper()
	f, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	return f
}

// roundTrip encodes in with f and decodes the result into a new value of
// the type out points to, which it returns (dereferenced) with the bytes.
func roundTrip(t testing.TB, f *Format, in any, out any) (any, []byte) {
	t.Helper()
	data, err := f.Encode(in)
	if err != nil {
		t.Fatalf("Encode(%T): %v", in, err)
	}
	if err := f.Decode(data, out); err != nil {
		t.Fatalf("Decode(%q) into %T: %v", data, out, err)
	}
	return reflect.ValueOf(out).Elem().Interface(), data
}

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

func TestCompression(t *testing.T) {
	compressible := record{Name: strings.Repeat("abcdefgh", 1<<17), Tags: []string{strings.Repeat("z", 1<<20)}} // 2 MiB
	random := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	for _, c := range codecs {
		t.Run(c.Name(), func(t *testing.T) {
			plain := mustNew(t, Options{Codec: c})
			packed := mustNew(t, Options{Codec: c, CompressAbove: 1024})

			raw, err := plain.Encode(compressible)
			if err != nil {
				t.Fatal(err)
			}
			if raw[2] != compressNone {
				t.Errorf("CompressAbove 0: flags 0x%02x, want no compression", raw[2])
			}
			small, err := packed.Encode(compressible)
			if err != nil {
				t.Fatal(err)
			}
			if small[2] != compressS2 {
				t.Errorf("CompressAbove 1024: flags 0x%02x, want S2 (%d)", small[2], compressS2)
			}
			if len(small)*10 > len(raw) {
				t.Errorf("compressed %d bytes to %d, want under a tenth", len(raw), len(small))
			}
			for name, data := range map[string][]byte{"raw": raw, "compressed": small} {
				var got record
				// Either Format reads both.
				for _, f := range []*Format{plain, packed} {
					got = record{}
					if err := f.Decode(data, &got); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if !same(got, compressible) {
						t.Errorf("%s: round trip changed the value", name)
					}
				}
			}

			// Incompressible payloads are stored as they are.
			data, err := packed.Encode(random)
			if err != nil {
				t.Fatal(err)
			}
			if data[2] != compressNone {
				t.Errorf("random bytes: flags 0x%02x, want no compression", data[2])
			}
			var b []byte
			if err := packed.Decode(data, &b); err != nil || !bytes.Equal(b, random) {
				t.Errorf("random bytes: round trip failed: %v", err)
			}

			// Payloads of CompressAbove bytes or fewer are not compressed.
			at := mustNew(t, Options{Codec: c, CompressAbove: 1 << 30})
			data, err = at.Encode(compressible)
			if err != nil {
				t.Fatal(err)
			}
			if data[2] != compressNone {
				t.Errorf("payload under CompressAbove: flags 0x%02x, want no compression", data[2])
			}
		})
	}
}

// TestEncodeMatchesMarshal checks that Encode, which marshals into a pooled
// buffer for Msgpack, writes exactly what the codec's Marshal returns,
// after the header.
func TestEncodeMatchesMarshal(t *testing.T) {
	for _, c := range codecs {
		f := mustNew(t, Options{Codec: c})
		// Maps of one key only: the order of keys in the output is random.
		one := record{Name: "x", Inner: inner{Attrs: map[string]int{"k": 1}}, When: time.Unix(5, 6)}
		for _, v := range []any{one, "<html>&", nil, []int{1, 2}} {
			data, err := f.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			want, err := c.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data[headerLen:], want) {
				t.Errorf("%s: Encode(%T) payload %q, Marshal gives %q", c.Name(), v, data[headerLen:], want)
			}
		}
	}
}

// TestEncodeOwnership checks that the slices Encode returns do not share
// memory with each other or with pooled buffers.
func TestEncodeOwnership(t *testing.T) {
	for _, c := range codecs {
		for _, compress := range []int{0, 1} {
			f := mustNew(t, Options{Codec: c, CompressAbove: compress})
			first, err := f.Encode(strings.Repeat("a", 100))
			if err != nil {
				t.Fatal(err)
			}
			keep := bytes.Clone(first)
			for i := range 100 {
				if _, err := f.Encode(strings.Repeat("b", i*10)); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(first, keep) {
				t.Fatalf("%s compress=%d: later Encodes changed an earlier result", c.Name(), compress)
			}
			if cap(first) != len(first) {
				t.Errorf("%s compress=%d: result has cap %d for len %d", c.Name(), compress, cap(first), len(first))
			}
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, c := range codecs {
		f := mustNew(t, Options{Codec: c})
		_, err := f.Encode(make(chan int))
		if err == nil || !strings.HasPrefix(err.Error(), "codec: "+c.Name()) {
			t.Errorf("%s: Encode(chan) error %v, want one starting %q", c.Name(), err, "codec: "+c.Name())
		}
		if errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Encode error %v matches ErrCorrupt", c.Name(), err)
		}

		small := mustNew(t, Options{Codec: c, MaxSize: 10})
		_, err = small.Encode(strings.Repeat("x", 11))
		if !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Encode over MaxSize: error %v, want ErrTooLarge only", c.Name(), err)
		}
		if _, err := small.Encode("x"); err != nil {
			t.Errorf("%s: Encode under MaxSize: %v", c.Name(), err)
		}
	}
	f := mustNew(t, Options{Codec: rawCodec{id: 200}, MaxSize: 3})
	if _, err := f.Encode("four"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("user codec: Encode over MaxSize: error %v, want ErrTooLarge", err)
	}
	if _, err := f.Encode(1); err == nil || !strings.HasPrefix(err.Error(), "codec: raw") {
		t.Errorf("user codec: Encode error %v, want one starting %q", err, "codec: raw")
	}
}

// rawCodec is a user codec that stores strings as their bytes.
type rawCodec struct{ id uint8 }

func (c rawCodec) ID() uint8  { return c.id }
func (rawCodec) Name() string { return "raw" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("cannot encode %T", v)
	}
	return []byte(s), nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*string)
	if !ok {
		return fmt.Errorf("cannot decode into %T", v)
	}
	*p = string(data)
	return nil
}

// panicCodec is a user codec whose Unmarshal panics.
type panicCodec struct{ rawCodec }

func (panicCodec) Name() string                       { return "panic" }
func (panicCodec) Unmarshal(data []byte, v any) error { panic("boom") }

func TestUserCodec(t *testing.T) {
	f := mustNew(t, Options{Codec: rawCodec{id: 200}, CompressAbove: 10})
	for _, s := range []string{"", "short", strings.Repeat("long ", 1000)} {
		got, data := roundTrip(t, f, s, new(string))
		if got != s {
			t.Errorf("got %q, want %q", got, s)
		}
		if data[1] != 200 {
			t.Errorf("codec byte %d, want 200", data[1])
		}
		if len(s) > 100 && data[2] != compressS2 {
			t.Errorf("%d-byte value not compressed: flags 0x%02x", len(s), data[2])
		}
	}
}

// TestMigration checks that a Format reads values written with codecs other
// than its own: the built-ins always, user codecs when listed in Codecs.
func TestMigration(t *testing.T) {
	oldWriter := mustNew(t, Options{}) // msgpack
	newReader := mustNew(t, Options{Codec: JSON{}})
	in := sampleRecord()
	data, err := oldWriter.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	var got record
	if err := newReader.Decode(data, &got); err != nil {
		t.Fatalf("JSON Format decoding a msgpack value: %v", err)
	}
	if !same(got, in) {
		t.Errorf("got %+v, want %+v", got, in)
	}

	user := mustNew(t, Options{Codec: rawCodec{id: 130}})
	data, err = user.Encode("hello")
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := newReader.Decode(data, &s); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "unknown codec ID 130") {
		t.Errorf("reader without the user codec: error %v, want ErrCorrupt for unknown codec ID 130", err)
	}
	migrating := mustNew(t, Options{Codec: JSON{}, Codecs: []Codec{rawCodec{id: 130}}})
	if err := migrating.Decode(data, &s); err != nil || s != "hello" {
		t.Errorf("reader with the user codec in Codecs: got %q, %v", s, err)
	}
}

func TestTombstone(t *testing.T) {
	tomb := Tombstone()
	if want := []byte{0x01, 0x00, 0x80}; !bytes.Equal(tomb, want) {
		t.Fatalf("Tombstone() = % x, want % x", tomb, want)
	}
	if !IsTombstone(tomb) {
		t.Error("IsTombstone(Tombstone()) = false")
	}
	tomb[0] = 9 // the caller owns it
	if !IsTombstone(Tombstone()) {
		t.Error("changing one Tombstone() result changed the next")
	}
	for _, c := range codecs {
		f := mustNew(t, Options{Codec: c})
		var r record
		err := f.Decode(Tombstone(), &r)
		if !errors.Is(err, ErrTombstone) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode(Tombstone()) = %v, want ErrTombstone only", c.Name(), err)
		}
		for _, v := range []any{nil, "", []byte{}, record{}} {
			data, err := f.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			if IsTombstone(data) {
				t.Errorf("%s: IsTombstone(Encode(%#v)) = true", c.Name(), v)
			}
		}
	}
	for _, data := range [][]byte{nil, {}, {1, 0}, {1, 0, 0x80, 0xc0}, {1, 1, 0x80}, {1, 0, 0x81}, {2, 0, 0x80}} {
		if IsTombstone(data) {
			t.Errorf("IsTombstone(% x) = true", data)
		}
	}
}

// hostile returns msgpack-format bytes with a header.
func hostile(payload ...byte) []byte {
	return append([]byte{version, msgpackID, compressNone}, payload...)
}

func TestDecodeCorrupt(t *testing.T) {
	f := mustNew(t, Options{Codecs: []Codec{panicCodec{rawCodec{id: 201}}}})
	valid, err := f.Encode(sampleRecord())
	if err != nil {
		t.Fatal(err)
	}
	packed := mustNew(t, Options{CompressAbove: 1})
	compressed, err := packed.Encode(strings.Repeat("compress me ", 100))
	if err != nil {
		t.Fatal(err)
	}
	if compressed[2] != compressS2 {
		t.Fatal("test value did not compress")
	}
	// S2 blocks carry no checksum, so damage is detected only where it
	// breaks the block's structure, such as the announced length.
	damaged := bytes.Clone(compressed)
	damaged[headerLen]++
	jsonString, _ := mustNew(t, Options{Codec: JSON{}}).Encode("just a string")
	msgpackString, _ := f.Encode("just a string")
	deep := func(n int) []byte {
		return hostile(append(bytes.Repeat([]byte{0x91}, n), 0xc0)...)
	}

	tests := []struct {
		name string
		data []byte
		into func() any
		msg  string // the error text must contain this
	}{
		{"nil", nil, newRecord, "empty input"},
		{"empty", []byte{}, newRecord, "empty input"},
		{"one byte", []byte{1}, newRecord, "truncated header"},
		{"two bytes", []byte{1, 1}, newRecord, "truncated header"},
		{"version 0", []byte{0, 1, 0, 0xc0}, newRecord, "unknown format version 0"},
		{"version 2", []byte{2, 1, 0, 0xc0}, newRecord, "unknown format version 2"},
		{"raw JSON", []byte(`{"name":"x"}`), newRecord, "unknown format version 123"},
		{"codec 0", []byte{1, 0, 0, 0xc0}, newRecord, "unknown codec ID 0"},
		{"reserved codec", []byte{1, 9, 0, 0xc0}, newRecord, "unknown codec ID 9"},
		{"unregistered user codec", []byte{1, 200, 0, 0xc0}, newRecord, "unknown codec ID 200"},
		{"compression 2", []byte{1, 1, 2, 0xc0}, newRecord, "unknown compression ID 2"},
		{"compression 15", []byte{1, 1, 0x0f, 0xc0}, newRecord, "unknown compression ID 15"},
		{"reserved flag", []byte{1, 1, 0x40, 0xc0}, newRecord, "unknown flags 0x40"},
		{"malformed tags", []byte{1, 1, 0x20, 0xc0}, newRecord, "malformed tags field"},
		{"truncated expiry", []byte{1, 1, 0x10, 0, 0, 1}, newRecord, "truncated expiry"},
		{"expiring tombstone with payload", []byte{1, 0, 0x90, 0, 0, 0, 0, 0, 0, 0, 1, 0xc0}, newRecord, "malformed tombstone"},
		{"tombstone with payload", []byte{1, 0, 0x80, 0xc0}, newRecord, "malformed tombstone"},
		{"tombstone with codec", []byte{1, 1, 0x80}, newRecord, "malformed tombstone"},
		{"tombstone with compression", []byte{1, 0, 0x81}, newRecord, "malformed tombstone"},
		{"header only", []byte{1, 1, 0}, newRecord, "empty data"},
		{"header only JSON", []byte{1, 2, 0}, newRecord, "json"},
		{"truncated value", valid[:len(valid)-1], newRecord, "msgpack"},
		{"trailing bytes", append(bytes.Clone(valid), 0xc0), newRecord, "1 bytes after the value"},
		{"never-used byte 0xc1", hostile(0xc1), newAny, "invalid type byte 0xc1"},
		{"truncated string", hostile(0xa5, 'a'), newString, "runs past the end"},
		{"s2 empty", []byte{1, 1, 1}, newRecord, "s2"},
		{"s2 bad length", []byte{1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, newRecord, "s2"},
		{"s2 truncated", compressed[:len(compressed)-3], newString, "s2"},
		{"s2 wrong length", damaged, newString, "s2"},
		{"s2 uncompressed bytes as s2", []byte{1, 1, 1, 0xa1, 'x'}, newString, "s2"},
		{"string as struct (msgpack)", msgpackString, newRecord, "decoding into *codec.record"},
		{"string as struct (JSON)", jsonString, newRecord, "cannot unmarshal string"},
		{"string as int", msgpackString, func() any { return new(int) }, "msgpack"},
		{"bad JSON", []byte{1, 2, 0, '{'}, newAny, "json"},
		{"JSON trailing data", []byte{1, 2, 0, '1', ' ', '2'}, newAny, "json"},
		{"panicking codec", []byte{1, 201, 0, 'x'}, newString, "panic while decoding into *string: boom"},
		{"array32 of 4G items", hostile(0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0), newAny, "declares 4294967295 items"},
		{"array32 into []record", hostile(0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0), func() any { return new([]record) }, "declares"},
		{"array16 into []any", hostile(0xdc, 0xff, 0xff, 0xc0), func() any { return new([]any) }, "declares 65535 items"},
		{"map32 of 4G entries", hostile(0xdf, 0xff, 0xff, 0xff, 0xff, 0xa0, 0xc0), newAny, "declares 8589934590 items"},
		{"map32 into map[string]any", hostile(0xdf, 0x00, 0xff, 0xff, 0xff, 0xa0, 0xc0), func() any { return new(map[string]any) }, "declares"},
		{"map32 into map[string]record", hostile(0xdf, 0x00, 0xff, 0xff, 0xff, 0xa0, 0xc0), func() any { return new(map[string]record) }, "declares"},
		{"str32 of 4 GiB", hostile(0xdb, 0xff, 0xff, 0xff, 0xff, 'a'), newString, "runs past the end"},
		{"bin32 of 4 GiB", hostile(0xc6, 0xff, 0xff, 0xff, 0xff, 'a'), func() any { return new([]byte) }, "runs past the end"},
		{"ext32 of 4 GiB", hostile(0xc9, 0xff, 0xff, 0xff, 0xff, 0xff, 'a'), newAny, "runs past the end"},
		{"nested arrays claiming 65535 items", hostile(bytes.Repeat([]byte{0xdc, 0xff, 0xff}, 1000)...), newAny, "declares"},
		{"nested 10001 deep", deep(10001), newAny, "nested more than 10000 deep"},
		{"nested 1M deep", deep(1 << 20), newAny, "nested more than 10000 deep"},
		{"bad time ext", hostile(0xd5, 0xff, 0, 0), func() any { return new(time.Time) }, "msgpack"},
		{"empty ext", hostile(0x92, 0xc7, 0x00, 0x05, 0x80), newAny, "empty body"},
		{"interned index 0x85", hostile(0xd4, 0x80, 0x85), newAny, "inside an extension"},
		// msgpack/v5 reads a map header out of an extension's body where it
		// wants a map, then the map's items past the body (found by
		// FuzzDecode: a 4G-entry map[string]any).
		{"map header in ext body", hostile(0xd7, 0x30, 0xdf, 0x30, 0xff, 0x30, 0x30, 0x30, 0x30, 0x30), func() any { return new(map[string]any) }, "inside an extension"},
		{"map header in time ext body", hostile(0xd6, 0xff, 0xdf, 0xff, 0xff, 0xff), func() any { return new(map[string]int) }, "inside an extension"},
		{"nil in ext body", hostile(0x92, 0xc7, 0x06, 0x01, 0xc0, 0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0), func() any { return new([]map[string]any) }, "inside an extension"},
		// The same detour nests without limit in a type that holds itself
		// through a map, which would overflow the stack.
		{"ext-wrapped maps nested 1M deep", extNest(1 << 20), func() any { return new([]node) }, "inside an extension"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := f.Decode(tt.data, tt.into())
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode(% .20x) = %v, want ErrCorrupt", tt.data, err)
			}
			if !strings.HasPrefix(err.Error(), "codec: corrupt data: ") || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			// A hostile length must not make Decode allocate in proportion
			// to it, only to the input; 16 MiB is far below any of the
			// lengths above.
			if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20+8*uint64(len(tt.data)) {
				t.Errorf("Decode of %d bytes allocated %d bytes", len(tt.data), n)
			}
		})
	}
}

// node holds itself through a map.
type node struct {
	Kids map[string]*node
}

// extNest returns a []node whose first node msgpack/v5 would read as
// nested n deep, each Kids map wrapped in an extension whose body is the
// map's header. checkMsgpack reads it as a flat array of 2n+1 items.
func extNest(n int) []byte {
	level := []byte{0x81, 0xa4, 'K', 'i', 'd', 's', 0xd4, 0x01, 0x81, 0xa1, 'a'}
	items := binary.BigEndian.AppendUint32([]byte{0xdd}, uint32(2*n+1))
	return hostile(append(append(items, bytes.Repeat(level, n)...), 0xc0)...)
}

func newRecord() any { return new(record) }
func newAny() any    { return new(any) }
func newString() any { return new(string) }

// TestDecodeDeepNesting checks that the depth limit is not lower than
// documented: a value nested 10000 deep decodes.
func TestDecodeDeepNesting(t *testing.T) {
	f := mustNew(t, Options{})
	data := hostile(append(bytes.Repeat([]byte{0x91}, maxMsgpackDepth), 0x01)...)
	var v any
	if err := f.Decode(data, &v); err != nil {
		t.Fatal(err)
	}
	for range maxMsgpackDepth {
		s, ok := v.([]any)
		if !ok || len(s) != 1 {
			t.Fatalf("got %T, want a one-element []any", v)
		}
		v = s[0]
	}
	if v != int8(1) {
		t.Errorf("innermost value %#v, want int8(1)", v)
	}
}

func TestDecodeMaxSize(t *testing.T) {
	big := strings.Repeat("x", 1000)
	for _, compress := range []int{0, 1} {
		w := mustNew(t, Options{CompressAbove: compress})
		data, err := w.Encode(big)
		if err != nil {
			t.Fatal(err)
		}
		var s string
		r := mustNew(t, Options{MaxSize: 999})
		err = r.Decode(data, &s)
		if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrTooLarge) {
			t.Errorf("compress=%d: Decode over MaxSize = %v, want ErrCorrupt and ErrTooLarge", compress, err)
		}
		r = mustNew(t, Options{MaxSize: 1003}) // the msgpack payload: 3 bytes of length, then the string
		if err := r.Decode(data, &s); err != nil || s != big {
			t.Errorf("compress=%d: Decode at MaxSize: %v", compress, err)
		}
	}

	// An S2 block that announces 1 GiB is refused before anything is
	// allocated for it.
	bomb := append([]byte{version, msgpackID, compressS2}, s2.Encode(nil, []byte{0xc0})...)
	bomb = append(bomb[:headerLen], append([]byte{0x80, 0x80, 0x80, 0x80, 0x04}, bomb[headerLen+1:]...)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var v any
	err := mustNew(t, Options{}).Decode(bomb, &v)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "payload is 1073741824 bytes") {
		t.Errorf("S2 bomb: %v, want ErrCorrupt and ErrTooLarge for 1073741824 bytes", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("S2 bomb: Decode allocated %d bytes", n)
	}
}

func TestDecodeUnwrapsCodecError(t *testing.T) {
	f := mustNew(t, Options{Codec: JSON{}})
	data, err := f.Encode("s")
	if err != nil {
		t.Fatal(err)
	}
	err = f.Decode(data, new(int))
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) || !errors.Is(err, ErrCorrupt) {
		t.Errorf("Decode error %v does not wrap the codec's *json.UnmarshalTypeError", err)
	}
}

func TestDecodeBadTarget(t *testing.T) {
	f := mustNew(t, Options{})
	data, err := f.Encode("x")
	if err != nil {
		t.Fatal(err)
	}
	var nilPtr *string
	for _, v := range []any{nil, "x", nilPtr} {
		err := f.Decode(data, v)
		if err == nil || errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), "codec: Decode needs a non-nil pointer") {
			t.Errorf("Decode into %#v: %v, want a non-nil pointer error that is not ErrCorrupt", v, err)
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string // "" for success
	}{
		{"zero", Options{}, ""},
		{"json", Options{Codec: JSON{}}, ""},
		{"pointer codec", Options{Codec: &JSON{}}, ""},
		{"user codec", Options{Codec: rawCodec{id: 128}}, ""},
		{"user codec 255", Options{Codec: rawCodec{id: 255}}, ""},
		{"compression", Options{CompressAbove: 512, MaxSize: 1 << 20}, ""},
		{"built-ins in Codecs", Options{Codec: JSON{}, Codecs: []Codec{Msgpack{}, JSON{}}}, ""},
		{"Codecs", Options{Codecs: []Codec{rawCodec{id: 130}, rawCodec{id: 131}}}, ""},
		{"negative CompressAbove", Options{CompressAbove: -1}, "codec: Options.CompressAbove is -1"},
		{"negative MaxSize", Options{MaxSize: -5}, "codec: Options.MaxSize is -5"},
		{"codec ID 0", Options{Codec: rawCodec{id: 0}}, "codec: Options.Codec (\"raw\") has ID 0"},
		{"reserved ID", Options{Codec: rawCodec{id: 1}}, "codec: Options.Codec (\"raw\") has ID 1, which is reserved"},
		{"reserved ID 127", Options{Codec: rawCodec{id: 127}}, "reserved"},
		{"nil in Codecs", Options{Codecs: []Codec{rawCodec{id: 130}, nil}}, "codec: Options.Codecs[1] is nil"},
		{"reserved ID in Codecs", Options{Codecs: []Codec{rawCodec{id: 2}}}, "codec: Options.Codecs[0] (\"raw\") has ID 2, which is reserved"},
		{"duplicate in Codecs", Options{Codecs: []Codec{rawCodec{id: 130}, rawCodec{id: 130}}}, "codec: Options.Codecs[1] (\"raw\") has ID 130, which Options.Codecs[0] already has"},
		{"Codecs clash with Codec", Options{Codec: rawCodec{id: 140}, Codecs: []Codec{panicCodec{rawCodec{id: 140}}}}, "which Options.Codec already has"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), "codec: ") || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: %v, want an error starting \"codec: \" that says %q", err, tt.wantErr)
				}
				if f != nil {
					t.Error("New returned a Format with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			want := tt.opts.Codec
			if want == nil {
				want = Msgpack{}
			}
			if f.Codec() != want {
				t.Errorf("Codec() = %#v, want %#v", f.Codec(), want)
			}
		})
	}

	f := mustNew(t, Options{})
	if f.maxSize != 64<<20 {
		t.Errorf("default MaxSize %d, want 64 MiB", f.maxSize)
	}
	if f.compressAbove != 0 {
		t.Errorf("default CompressAbove %d, want 0", f.compressAbove)
	}
}

func TestConcurrentUse(t *testing.T) {
	f := mustNew(t, Options{CompressAbove: 256})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				in := record{ID: int64(g*1000 + i), Name: strings.Repeat("n", i*g), Tags: []string{fmt.Sprint(i)}}
				data, err := f.Encode(in)
				if err != nil {
					errs <- err
					return
				}
				var out record
				if err := f.Decode(data, &out); err != nil {
					errs <- err
					return
				}
				if !same(out, in) {
					errs <- fmt.Errorf("goroutine %d: got %+v, want %+v", g, out, in)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// same reports whether a and b hold the same value: like reflect.DeepEqual,
// except that times are compared with time.Time.Equal (codecs keep the
// instant, not the location) and floats by their bits, so NaN is the same
// as NaN and 0 is not the same as -0.
func same(a, b any) bool {
	return sameValue(reflect.ValueOf(a), reflect.ValueOf(b), time.Time.Equal)
}

// identical is same with times compared whole: instant, location and
// monotonic reading.
func identical(a, b any) bool {
	return sameValue(reflect.ValueOf(a), reflect.ValueOf(b), func(x, y time.Time) bool { return x == y })
}

var timeType = reflect.TypeFor[time.Time]()

func sameValue(a, b reflect.Value, sameTime func(x, y time.Time) bool) bool {
	if !a.IsValid() || !b.IsValid() {
		return a.IsValid() == b.IsValid()
	}
	if a.Type() != b.Type() {
		return false
	}
	if a.Type() == timeType {
		return sameTime(a.Interface().(time.Time), b.Interface().(time.Time))
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		return math.Float64bits(a.Float()) == math.Float64bits(b.Float())
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem(), sameTime)
	case reflect.Slice, reflect.Array:
		if a.Kind() == reflect.Slice && a.IsNil() != b.IsNil() {
			return false
		}
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !sameValue(a.Index(i), b.Index(i), sameTime) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !sameValue(it.Value(), bv, sameTime) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range a.NumField() {
			if !sameValue(a.Field(i), b.Field(i), sameTime) {
				return false
			}
		}
		return true
	default:
		return a.Equal(b)
	}
}

func TestSame(t *testing.T) {
	now := time.Now()
	tests := []struct {
		a, b any
		want bool
	}{
		{1, 1, true},
		{1, int64(1), false},
		{math.NaN(), math.NaN(), true},
		{0.0, math.Copysign(0, -1), false},
		{now, now.In(time.UTC).Round(0), true},
		{now, now.Add(1), false},
		{[]byte{}, []byte(nil), false},
		{map[string]int{}, map[string]int(nil), false},
		{map[string]any{"a": 1}, map[string]any{"b": 1}, false},
		{sampleRecord(), sampleRecord(), true},
		{record{Tags: []string{"a"}}, record{Tags: []string{"b"}}, false},
	}
	for _, tt := range tests {
		if got := same(tt.a, tt.b); got != tt.want {
			t.Errorf("same(%#v, %#v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
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

func TestExpiryRoundTrip(t *testing.T) {
	f, err := New(Options{CompressAbove: 16})
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1_800_000_000_123)
	for _, v := range []any{
		"short",
		strings.Repeat("compressible ", 100), // S2 path
		map[string]int{"a": 1},
	} {
		data, err := f.EncodeExpiring(v, at)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := Expiry(data)
		if !ok || !got.Equal(at) {
			t.Fatalf("Expiry of %T = %v, %v; want %v", v, got, ok, at)
		}
		if IsTombstone(data) {
			t.Fatalf("a value reads as a tombstone")
		}
		plain, _ := f.Encode(v)
		if _, ok := Expiry(plain); ok {
			t.Fatal("Encode recorded an expiry")
		}
		// The expiry field does not change the value read back.
		want := reflect.New(reflect.TypeOf(v))
		if err := f.Decode(plain, want.Interface()); err != nil {
			t.Fatal(err)
		}
		dst := reflect.New(reflect.TypeOf(v))
		if err := f.Decode(data, dst.Interface()); err != nil {
			t.Fatalf("Decode of an expiring %T: %v", v, err)
		}
		if !reflect.DeepEqual(dst.Elem().Interface(), want.Elem().Interface()) {
			t.Fatalf("Decode of an expiring %T = %v, want %v", v, dst.Elem(), want.Elem())
		}
	}
}

func TestTombstoneExpiring(t *testing.T) {
	f, _ := New(Options{})
	at := time.UnixMilli(1_800_000_000_000)
	tomb := TombstoneExpiring(at)
	if !IsTombstone(tomb) {
		t.Fatalf("IsTombstone(% x) = false", tomb)
	}
	if got, ok := Expiry(tomb); !ok || !got.Equal(at) {
		t.Fatalf("Expiry = %v, %v; want %v", got, ok, at)
	}
	var s string
	if err := f.Decode(tomb, &s); !errors.Is(err, ErrTombstone) {
		t.Fatalf("Decode = %v, want ErrTombstone", err)
	}
	if !bytes.Equal(TombstoneExpiring(time.Time{}), Tombstone()) {
		t.Fatal("TombstoneExpiring(zero) differs from Tombstone()")
	}
	// Near misses are not tombstones, and carry no expiry.
	bad := append([]byte(nil), tomb...)
	clear(bad[3:]) // expiry 0
	for _, b := range [][]byte{bad, tomb[:10], append(tomb[:len(tomb):len(tomb)], 0)} {
		if IsTombstone(b) {
			t.Errorf("IsTombstone(% x) = true", b)
		}
	}
	if _, ok := Expiry(bad); ok {
		t.Error("an expiry of 0 was read as one")
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

// Tags travel in the header: Tags reads them without decoding the value,
// Decode skips them, and a truncated or lying tags field is corrupt.
func TestTags(t *testing.T) {
	f := mustNew(t, Options{})
	exp := time.UnixMilli(1_800_000_000_000)
	for _, tags := range [][]string{{"tenant:7"}, {"a", "", strings.Repeat("t", 300)}} {
		data, err := f.EncodeTagged("value", exp, 42, tags)
		if err != nil {
			t.Fatal(err)
		}
		born, got, ok := Tags(data)
		if !ok || born != 42 || !slices.Equal(got, tags) {
			t.Fatalf("Tags = %d, %q, %v; want 42, %q", born, got, ok, tags)
		}
		if at, ok := Expiry(data); !ok || !at.Equal(exp) {
			t.Fatalf("Expiry = %v, %v", at, ok)
		}
		var v string
		if err := f.Decode(data, &v); err != nil || v != "value" {
			t.Fatalf("Decode = %q, %v", v, err)
		}
		for n := len(data) - len("value") - 2; n > headerLen+expiryLen; n-- {
			if err := f.Decode(data[:n], &v); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode of %d of %d bytes = %v, want ErrCorrupt", n, len(data), err)
			}
		}
	}
	plain, _ := f.EncodeExpiring("v", exp)
	if _, _, ok := Tags(plain); ok {
		t.Fatal("Tags of an untagged value reported tags")
	}
	lying := []byte{version, msgpackID, flagTags, 0, 0xff, 0xff, 0x03}
	if _, _, ok := Tags(lying); ok {
		t.Fatal("Tags of a field whose count lies reported tags")
	}
}
