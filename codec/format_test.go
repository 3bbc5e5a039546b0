package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

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
