package codec

import (
	"bytes"
	"math"
	"reflect"
	"testing"
	"time"
)

// fastOmit has an omitempty field of every kind, and a nested struct
// whose emptiness depends on its own omitempty fields.
type fastOmit struct {
	B     bool              `msgpack:",omitempty"`
	I     int               `msgpack:",omitempty"`
	I8    int8              `msgpack:",omitempty"`
	U64   uint64            `msgpack:",omitempty"`
	F     float64           `msgpack:",omitempty"`
	S     string            `json:"s,omitempty"`
	Bytes []byte            `msgpack:",omitempty"`
	L     []int             `msgpack:",omitempty"`
	M     map[string]int    `msgpack:",omitempty"`
	P     *int              `msgpack:",omitempty"`
	T     time.Time         `msgpack:",omitempty"`
	In    fastOmitInner     `msgpack:",omitempty"`
	Plain fastInner         `msgpack:",omitempty"` // no omitempty fields: never empty
	MS    map[string]string `msgpack:",omitempty"`
	Last  string
}

type fastOmitInner struct {
	A int    `msgpack:",omitempty"`
	B string `msgpack:",omitempty"`
}

// fastDup has two fields of one name: msgpack/v5 writes both.
type fastDup struct {
	A int    `msgpack:"x"`
	B string `msgpack:"x"`
}

// encodeBoth encodes v with the compiled encoder and with msgpack/v5
// (through Format, so with the same settings) and fails t unless the
// bytes are the same: exactly, or, when v holds a map of several entries,
// which both write in Go's random order, as decoded values.
func encodeBoth(t *testing.T, v any, orderFree bool) {
	t.Helper()
	n := compileEncoder(reflect.TypeOf(v))
	if n == nil {
		t.Fatalf("the compiled encoder declined a %T", v)
	}
	p := reflect.New(reflect.TypeOf(v))
	p.Elem().Set(reflect.ValueOf(v))
	fast := encodeFast(n, nil, p.UnsafePointer())
	slow, err := Msgpack{}.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(fast, slow) {
		return
	}
	if !orderFree {
		t.Fatalf("encoding %+v:\n fast % x\n slow % x", v, fast, slow)
	}
	a, b := reflect.New(reflect.TypeOf(v)).Interface(), reflect.New(reflect.TypeOf(v)).Interface()
	if err := (Msgpack{}).Unmarshal(fast, a); err != nil {
		t.Fatalf("msgpack/v5 cannot read the compiled encoder's % x: %v", fast, err)
	}
	if err := (Msgpack{}).Unmarshal(slow, b); err != nil {
		t.Fatal(err)
	}
	if !identical(a, b) || len(fast) != len(slow) {
		t.Fatalf("encoding %+v: fast decodes to %+v, slow to %+v", v, a, b)
	}
}

func TestFastEncoderMatchesMsgpack(t *testing.T) {
	seven := -7
	when := time.Unix(1700000000, 5)
	values := []any{
		fastAll{}, fastInner{A: 1, B: "b"},
		fastOmit{}, fastOmit{B: true, I: -1, I8: 1, U64: 1, F: math.Copysign(0, -1), S: "s", Bytes: []byte{}, L: []int{},
			M: map[string]int{}, P: &seven, T: when, In: fastOmitInner{B: "x"}, MS: map[string]string{"k": "v"}},
		fastOmit{F: math.NaN(), Bytes: []byte{1}, L: []int{1}, M: map[string]int{"a": 1}, In: fastOmitInner{A: 1}},
		fastDup{A: 1, B: "two"},
		"", "short", string(make([]byte, 31)), string(make([]byte, 32)), string(make([]byte, 255)), string(make([]byte, 256)),
		string(make([]byte, 70000)),
		[]byte(nil), []byte{}, make([]byte, 255), make([]byte, 256), make([]byte, 70000),
		0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, -1, -32, -33, -128, -129, -32768, -32769,
		math.MinInt32, math.MinInt32 - 1, math.MinInt64, math.MaxInt64,
		uint(0), uint(math.MaxUint64), int8(-1), int16(5), int32(-5), int64(1), uint8(200), uint16(1), uint32(1), uint64(1),
		float32(1.5), float32(math.Inf(1)), 2.5, math.NaN(), true, false, time.Second,
		time.Time{}, time.Unix(0, 0), time.Unix(1<<34-1, 0), time.Unix(1<<34, 0), time.Unix(-1, 0), time.Unix(5, 999999999),
		[]int(nil), []int{}, make([]int, 16), make([]string, 70000), []fastInner{{A: 1}}, []*fastInner{nil, {B: "x"}},
		map[string]int(nil), map[string]int{"one": 1}, map[int8]string{-1: "m"}, (*fastInner)(nil), &fastInner{A: 3},
		&when, (*time.Time)(nil),
	}
	for _, v := range values {
		encodeBoth(t, v, false)
	}
	// Maps of several entries: the order is Go's, in both.
	many := map[string]int{}
	for i := range 40 {
		many[string(rune('a'+i%26))+string(rune('a'+i/26))] = i
	}
	encodeBoth(t, many, true)
	encodeBoth(t, fastAll{M: many, MS: map[string]string{"a": "1", "b": "2"}}, true)
	encodeBoth(t, fastSample(), true) // its MP holds two entries
}

type fastTextOut struct{ S string }

func (t fastTextOut) MarshalText() ([]byte, error) { return []byte("text:" + t.S), nil }

type fastZeroer struct{ N int }

func (z fastZeroer) IsZero() bool { return z.N < 0 }

// TestFastEncoderDeclinesTypes checks that types msgpack/v5 encodes by
// rules of their own are left to it, and that an Encoder still writes
// them as Format does.
func TestFastEncoderDeclinesTypes(t *testing.T) {
	tests := []struct {
		name  string
		value any
	}{
		{"text marshaler field", struct{ T fastTextOut }{fastTextOut{"x"}}},
		{"custom encoder", fastCustom{3}},
		{"embedded struct", fastEmbeds{fastInner{A: 1}, 2}},
		{"interface field", struct{ A any }{A: "x"}},
		{"omitempty with IsZero", struct {
			Z fastZeroer `msgpack:",omitempty"`
		}{fastZeroer{-1}}},
		{"omitempty pointer to time", struct {
			T *time.Time `msgpack:",omitempty"`
		}{&time.Time{}}},
		{"as_array", struct {
			_msgpack struct{} `msgpack:",as_array"`
			A        int
		}{A: 1}},
		{"intern option", struct {
			S string `msgpack:",intern"`
		}{"x"}},
		{"recursive type", fastTree{Kids: []fastTree{{}}}},
		{"array", [2]int{1, 2}},
	}
	f := mustNew(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if compileEncoder(reflect.TypeOf(tt.value)) != nil {
				t.Errorf("the compiled encoder took a %s", tt.name)
			}
			want, err := f.Encode(tt.value)
			if err != nil {
				t.Fatal(err)
			}
			got, err := encodeAny(f, tt.value)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("Encoder wrote % x, %v; Format.Encode % x", got, err, want)
			}
		})
	}
}

// encodeAny encodes v with an Encoder of v's own type.
func encodeAny(f *Format, v any) ([]byte, error) {
	switch v := v.(type) {
	case fastCustom:
		return NewEncoder[fastCustom](f).Encode(v)
	case fastEmbeds:
		return NewEncoder[fastEmbeds](f).Encode(v)
	case fastTree:
		return NewEncoder[fastTree](f).Encode(v)
	case [2]int:
		return NewEncoder[[2]int](f).Encode(v)
	}
	// Anonymous struct types: Format's path, which is what an Encoder of
	// a declined type takes.
	return f.Encode(v)
}

// TestEncoderMatchesFormatEncode: an Encoder writes what Format.Encode
// writes, header, expiry, compression and size limit included, for both
// built-in codecs.
func TestEncoderMatchesFormatEncode(t *testing.T) {
	when := time.UnixMilli(1700000000123)
	for _, c := range codecs {
		for _, opts := range []Options{{Codec: c}, {Codec: c, CompressAbove: 16}, {Codec: c, MaxSize: 20}} {
			f := mustNew(t, opts)
			e := NewEncoder[fastInner](f)
			for _, v := range []fastInner{{A: 1, B: "b"}, {B: string(make([]byte, 100))}} {
				for _, exp := range []time.Time{{}, when} {
					want, werr := f.EncodeExpiring(v, exp)
					got, err := e.EncodeExpiring(v, exp)
					if !bytes.Equal(got, want) || (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
						t.Errorf("%s %+v: Encoder % x, %v; Format % x, %v", c.Name(), opts, got, err, want, werr)
					}
				}
			}
		}
	}
}

// FuzzFastEncoder decodes arbitrary bytes into fastAll with msgpack/v5 and
// encodes what it gets with both encoders: they must agree.
func FuzzFastEncoder(f *testing.F) {
	for _, v := range []any{fastSample(), fastAll{}} {
		data, err := Msgpack{}.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v fastAll
		if (Msgpack{}).Unmarshal(data, &v) != nil {
			return
		}
		encodeBoth(t, v, len(v.M) > 1 || len(v.MS) > 1 || len(v.MI) > 1 || len(v.MP) > 1)
	})
}
