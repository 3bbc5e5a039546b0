package codec

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
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
