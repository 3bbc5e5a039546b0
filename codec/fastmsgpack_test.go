package codec

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

type fastInner struct {
	A int
	B string `msgpack:"b"`
}

type fastRole string

// fastAll has a field of every kind the compiled decoder takes.
type fastAll struct {
	Bool   bool
	I      int
	I8     int8
	I16    int16
	I32    int32
	I64    int64
	U      uint
	U8     uint8
	U16    uint16
	U32    uint32
	U64    uint64
	F32    float32
	F64    float64
	S      string `json:"s,omitempty"`
	Bytes  []byte
	Strs   []string
	Ints   []int
	Roles  []fastRole
	Inners []fastInner
	M      map[string]int
	MS     map[string]string
	MI     map[int64]string
	MP     map[fastRole]*fastInner
	P      *fastInner
	PI     *int
	T      time.Time
	PT     *time.Time
	Inner  fastInner
	Dur    time.Duration
	Skip   string `msgpack:"-"`
	hidden int
}

// fastWider is fastAll as another version of a program writes it: fields
// fastAll lacks, of every wire kind, which the decoder must skip.
type fastWider struct {
	fastAll `msgpack:",inline"`
	XNil    *int
	XTime   time.Time
	XArr    []any
	XMap    map[string]any
	XBin    []byte
	XF32    float32
	XF64    float64
	XNeg    int64
	XBig    uint64
	XStr    string
}

func fastSample() fastAll {
	seven := 7
	when := time.Unix(1700000000, 123456789)
	return fastAll{
		Bool: true, I: -1 << 40, I8: -100, I16: -30000, I32: -2e9, I64: math.MinInt64,
		U: 1 << 40, U8: 200, U16: 60000, U32: 4e9, U64: math.MaxUint64,
		F32: 1.5, F64: -2.25, S: "héllo",
		Bytes: []byte{0, 1, 2}, Strs: []string{"a", "", "c"}, Ints: []int{1, -2, 300000},
		Roles: []fastRole{"admin"}, Inners: []fastInner{{A: 1, B: "x"}, {}},
		M: map[string]int{"a": 1}, MS: map[string]string{"k": "v"}, MI: map[int64]string{-5: "neg"},
		MP: map[fastRole]*fastInner{"r": {A: 2}, "nil": nil},
		P:  &fastInner{A: 3, B: "p"}, PI: &seven, T: when, PT: &when,
		Inner: fastInner{A: 4, B: strings.Repeat("long ", 20)}, Dur: 3 * time.Second,
	}
}

// fastDecodeBoth decodes data into a fresh target of newTarget's type
// through the compiled decoder and through msgpack/v5, and fails t unless
// they agree: the compiled decoder either declines and leaves the target
// zero, or gives exactly msgpack/v5's value.
func fastDecodeBoth(t *testing.T, plans *fastPlans, data []byte, newTarget func() any) (took bool) {
	t.Helper()
	fast, slow := newTarget(), newTarget()
	took = plans.decode(data, fast)
	err := Msgpack{}.Unmarshal(data, slow)
	if !took {
		if !reflect.ValueOf(fast).Elem().IsZero() {
			t.Fatalf("declined % x into %T but left %+v", data, fast, fast)
		}
		return false
	}
	if err != nil {
		t.Fatalf("decoded % x into %T, which msgpack/v5 refuses: %v", data, fast, err)
	}
	if !identical(fast, slow) {
		t.Fatalf("decoding % x into %T:\n fast %+v\n slow %+v", data, fast, fast, slow)
	}
	return true
}

func TestFastDecoderMatchesMsgpack(t *testing.T) {
	var plans fastPlans
	full := fastSample()
	zeroTime := fastAll{T: time.Unix(0, 0).UTC()}
	// Written as msgpack/v5 writes them through Format: json as the
	// fallback tag, integers in their own widths.
	values := []any{full, fastAll{}, zeroTime, fastWider{fastAll: full, XNil: nil, XTime: time.Unix(5, 6),
		XArr: []any{1, "a", nil, []any{true}}, XMap: map[string]any{"k": map[string]any{"z": 1.5}},
		XBin: []byte{9}, XF32: 0.5, XF64: 1e300, XNeg: -1, XBig: math.MaxUint64, XStr: "x"}}
	for _, v := range values {
		data, err := Msgpack{}.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !fastDecodeBoth(t, &plans, data, func() any { return new(fastAll) }) {
			t.Errorf("the compiled decoder declined %T written by msgpack/v5", v)
		}
	}
	for _, v := range []any{"a string", []byte("bytes"), fastInner{A: 1}, -5, int8(-3), uint64(1 << 63), true,
		float32(1.5), 2.5, time.Second, map[string]int{"a": 1}, []string{"x"}, []fastInner{{A: 2}}, &fastInner{B: "p"}} {
		data, err := Msgpack{}.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		target := func() any { return reflect.New(reflect.TypeOf(v)).Interface() }
		if !fastDecodeBoth(t, &plans, data, target) {
			t.Errorf("the compiled decoder declined a %T", v)
		}
	}
}

// TestFastDecoderWireVariants feeds encodings that msgpack/v5 would not
// write for these types but does read (or refuses), to the compiled
// decoder: each must give msgpack/v5's answer or be declined.
func TestFastDecoderWireVariants(t *testing.T) {
	var plans fastPlans
	obj := func(field string, value ...byte) []byte { // {field: value}
		return append(append([]byte{0x81, 0xa0 | byte(len(field))}, field...), value...)
	}
	tests := []struct {
		name string
		data []byte
		took bool // whether the compiled decoder should take it
	}{
		{"nil struct", []byte{0xc0}, true},
		{"nil key", []byte{0x81, 0xc0, 0x01}, true},
		{"bin key", []byte{0x81, 0xc4, 0x01, 'I', 0x05}, true},
		{"uint8 into int8 wraps", obj("I8", 0xcc, 0xff), true},
		{"negative into uint", obj("U", 0xff), true},
		{"int64 into uint16 truncates", obj("U16", 0xd3, 0, 0, 0, 1, 0, 0, 0x12, 0x34), true},
		{"nil into int", obj("I", 0xc0), true},
		{"float32 into float64", obj("F64", 0xca, 0x3f, 0xc0, 0, 0), true},
		{"int into float32", obj("F32", 0x05), true},
		{"double into float32", obj("F32", 0xcb, 0, 0, 0, 0, 0, 0, 0, 0), false},
		{"nil into bool", obj("Bool", 0xc0), true},
		{"int into bool", obj("Bool", 0x01), false},
		{"bin into string", obj("s", 0xc4, 0x01, 'z'), true},
		{"str into bytes", obj("Bytes", 0xa1, 'z'), true},
		{"empty bytes", obj("Bytes", 0xc4, 0x00), true},
		{"nil bytes", obj("Bytes", 0xc0), true},
		{"empty strings", obj("Strs", 0x90), true},
		{"nil strings", obj("Strs", 0xc0), true},
		{"empty slice", obj("Ints", 0x90), true},
		{"empty map", obj("M", 0x80), true},
		{"nil pointer", obj("P", 0xc0), true},
		{"time, 4 bytes", obj("T", 0xd6, 0xff, 0, 0, 0, 9), true},
		{"time, 12 bytes", obj("T", 0xc7, 12, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9), true},
		{"time, wrong ext type", obj("T", 0xd6, 0x01, 0, 0, 0, 9), false},
		{"time as nil", obj("T", 0xc0), false},
		{"array-encoded struct", []byte{0x91, 0x01}, false},
		{"repeated field", []byte{0x82, 0xa1, 'I', 0x01, 0xa1, 'I', 0x02}, false},
		{"ext where a map goes", obj("M", 0xd4, 0x01, 0x80), false},
		{"unknown field skipped", []byte{0x82, 0xa1, 'Z', 0x92, 0xd6, 0x05, 1, 2, 3, 4, 0xc4, 0x01, 0x00, 0xa1, 'I', 0x07}, true},
		{"empty extension skipped", []byte{0x81, 0xa1, 'Z', 0xc7, 0x00, 0x05}, false},
		{"interned string skipped", []byte{0x81, 0xa1, 'Z', 0xd4, 0x80, 0x01}, false},
		{"nested as deep as allowed", nested(maxMsgpackDepth - 1), true},
		{"nested too deep", nested(maxMsgpackDepth), false},
		{"trailing bytes", []byte{0x80, 0x00}, false},
		{"truncated", obj("s", 0xa5, 'a'), false},
		{"array longer than the data", obj("Ints", 0xdd, 0xff, 0xff, 0xff, 0xff), false},
		{"string where an int goes", obj("I", 0xa1, '1'), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fastDecodeBoth(t, &plans, tt.data, func() any { return new(fastAll) }); got != tt.took {
				t.Errorf("took = %v, want %v", got, tt.took)
			}
		})
	}
}

// nested returns {"Z": [[...[1]...]]}, with depth arrays: the struct's
// map makes depth+1 containers.
func nested(depth int) []byte {
	b := []byte{0x81, 0xa1, 'Z'}
	for range depth {
		b = append(b, 0x91)
	}
	return append(b, 0x01)
}

type fastText struct{ S string }

func (t fastText) MarshalText() ([]byte, error)  { return []byte(t.S), nil }
func (t *fastText) UnmarshalText(b []byte) error { t.S = "text:" + string(b); return nil }

type fastCustom struct{ N int }

func (c fastCustom) EncodeMsgpack(e *msgpack.Encoder) error { return e.EncodeInt(int64(c.N)) }

func (c *fastCustom) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := d.DecodeInt()
	c.N = n * 10
	return err
}

type fastEmbeds struct {
	fastInner
	C int
}

type fastTree struct {
	Kids []fastTree
}

// TestFastDecoderDeclinesTypes checks that types msgpack/v5 decodes by
// rules of their own are left to it, and that Format.Decode still decodes
// them.
func TestFastDecoderDeclinesTypes(t *testing.T) {
	var plans fastPlans
	f := mustNew(t, Options{})
	tests := []struct {
		name  string
		value any
	}{
		{"text unmarshaler field", struct{ T fastText }{fastText{"x"}}},
		{"custom decoder field", struct{ C fastCustom }{fastCustom{3}}},
		{"custom decoder behind a pointer", struct{ C *fastCustom }{&fastCustom{3}}},
		{"embedded struct", fastEmbeds{fastInner{A: 1}, 2}},
		{"interface field", struct{ A any }{A: "x"}},
		{"intern option", struct {
			S string `msgpack:",intern"`
		}{"x"}},
		{"alias option", struct {
			S string `msgpack:"s,alias:t"`
		}{"x"}},
		{"recursive type", fastTree{Kids: []fastTree{{}}}},
		{"array field", struct{ A [2]int }{[2]int{1, 2}}},
		{"top-level time", time.Unix(1, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := f.Encode(tt.value)
			if err != nil {
				t.Fatal(err)
			}
			typ := reflect.TypeOf(tt.value)
			payload := data[headerLen:]
			if plans.decode(payload, reflect.New(typ).Interface()) {
				t.Errorf("the compiled decoder took a %s", tt.name)
			}
			got, want := reflect.New(typ).Interface(), reflect.New(typ).Interface()
			if err := f.Decode(data, got); err != nil {
				t.Fatal(err)
			}
			if err := (Msgpack{}).Unmarshal(payload, want); err != nil {
				t.Fatal(err)
			}
			if !identical(got, want) {
				t.Errorf("Decode = %+v, msgpack/v5 gives %+v", got, want)
			}
		})
	}
}

// TestFastDecoderNeedsZeroTarget: into a target that already holds a
// value, msgpack/v5 merges (a map keeps its other keys), so the compiled
// decoder declines and Decode gives msgpack/v5's merge.
func TestFastDecoderNeedsZeroTarget(t *testing.T) {
	f := mustNew(t, Options{})
	data, err := f.Encode(fastAll{M: map[string]int{"new": 1}})
	if err != nil {
		t.Fatal(err)
	}
	got := fastAll{M: map[string]int{"old": 2}}
	if err := f.Decode(data, &got); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"old": 2, "new": 1}; !reflect.DeepEqual(got.M, want) {
		t.Errorf("M = %v, want msgpack/v5's merge %v", got.M, want)
	}
}

// FuzzFastDecoder decodes arbitrary bytes through the compiled decoder
// and through msgpack/v5: they must agree whenever the compiled decoder
// takes the bytes, and it must leave the target zero when it does not.
func FuzzFastDecoder(f *testing.F) {
	for _, v := range []any{fastSample(), fastAll{}, fastInner{A: -1, B: "b"}, "s", []byte{1}} {
		data, err := Msgpack{}.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	targets := []func() any{
		func() any { return new(fastAll) },
		func() any { return new(fastInner) },
		func() any { return new(string) },
		func() any { return new([]byte) },
		func() any { return new(int) },
		func() any { return new(float32) },
		func() any { return new(map[string]int) },
		func() any { return new([]*fastInner) },
	}
	var plans fastPlans
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, target := range targets {
			fastDecodeBoth(t, &plans, data, target)
		}
	})
}

// TestDecoderMatchesFormatDecode checks Decoder against Format.Decode into
// a zero value, for types the compiled decoder takes and types it leaves to
// msgpack/v5, for both built-in codecs, and for their errors.
func TestDecoderMatchesFormatDecode(t *testing.T) {
	check := func(t *testing.T, data []byte, newTarget func() any, decode func([]byte) (any, error)) {
		t.Helper()
		want := newTarget()
		werr := mustNew(t, Options{}).Decode(data, want)
		got, err := decode(data)
		if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Fatalf("Decoder error %v, Format.Decode error %v", err, werr)
		}
		if err == nil && !identical(got, reflect.ValueOf(want).Elem().Interface()) {
			t.Errorf("Decoder gives %+v, Format.Decode %+v", got, want)
		}
	}
	for _, c := range codecs {
		f := mustNew(t, Options{Codec: c, CompressAbove: 64})
		all, err := f.Encode(fastSample())
		if err != nil {
			t.Fatal(err)
		}
		m, err := f.Encode(map[string]int{"a": 1})
		if err != nil {
			t.Fatal(err)
		}
		decAll, decMap := NewDecoder[fastAll](f), NewDecoder[map[string]int](f)
		for _, data := range [][]byte{all, m, Tombstone(), {version, c.ID(), 0, 0xc1}, all[:len(all)-1]} {
			check(t, data, func() any { return new(fastAll) }, func(b []byte) (any, error) { return decAll.Decode(b) })
			check(t, data, func() any { return new(map[string]int) }, func(b []byte) (any, error) { return decMap.Decode(b) })
		}
	}
}

// TestDecoderStringArena: the strings of a small payload share one
// allocation, a copy of the payload; those of a large one are allocated on
// their own, so that a short string never keeps a large payload alive.
func TestDecoderStringArena(t *testing.T) {
	type three struct {
		A, B, C string
		Blob    []byte
	}
	f := mustNew(t, Options{})
	d := NewDecoder[three](f)
	for _, tt := range []struct {
		name   string
		blob   int
		allocs float64
	}{
		{"small payload: one copy for the strings, one for the bytes", 10, 2},
		{"large payload: one for each string, one for the bytes", 2 * arenaMax, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data, err := f.Encode(three{A: "alpha", B: "beta", C: "gamma", Blob: make([]byte, tt.blob)})
			if err != nil {
				t.Fatal(err)
			}
			got := testing.AllocsPerRun(100, func() {
				v, err := d.Decode(data)
				if err != nil || v.A != "alpha" || v.B != "beta" || v.C != "gamma" || len(v.Blob) != tt.blob {
					t.Fatalf("Decode = %+v, %v", v, err)
				}
			})
			if got != tt.allocs {
				t.Errorf("%v allocations per Decode, want %v", got, tt.allocs)
			}
		})
	}
}
