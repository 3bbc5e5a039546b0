package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/tier-cache/tier/codec"
	"github.com/tier-cache/tier/internal/redistest"
)

// Bytes in Redis that do not decode, whatever wrote them, are counted,
// reloaded and overwritten.
func TestCorruptFarValueIsReloadedAndOverwritten(t *testing.T) {
	m, client, _ := newMiniredis(t)
	c := newCache[schema](t, Options{Redis: client})
	f, err := codec.New(codec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	raws := []string{
		"garbage",                  // random bytes
		"\x01\x01",                 // truncated header
		"\x09\x01\x00abc",          // unknown format version
		"\x01\x01\x00\xa3str",      // a msgpack string where V is a struct
		`{"Table":"x"}`,            // JSON written by another program, no header
		"",                         // empty
		"\x01\x01\x01\xff\xff\xff", // corrupt S2 payload
	}
	for i, raw := range raws {
		key := fmt.Sprint("bad", i)
		m.Set("tier:"+key, raw)
		r, err := c.Fetch(context.Background(), key, schemaLoader(&calls))
		if err != nil || r.Value.Table != key || r.Source != SourceLoad {
			t.Fatalf("%q: Fetch = %+v, %v; want the loader's value", raw, r, err)
		}
		stored, _ := m.Get("tier:" + key)
		var back schema
		if err := f.Decode([]byte(stored), &back); err != nil || back.Table != key {
			t.Fatalf("%q: Redis still holds undecodable bytes %q (%v)", raw, stored, err)
		}
	}
	if st := c.Stats(); st.Corrupt != uint64(len(raws)) || st.Loads != uint64(len(raws)) {
		t.Fatalf("stats = %+v, want %d corrupt and %d loads", st, len(raws), len(raws))
	}
}

// panicOnEncode's encoding panics, for values other than the zero one
// (which New encodes to check the type).
type panicOnEncode struct{ X int }

func (p panicOnEncode) EncodeMsgpack(enc *msgpack.Encoder) error {
	if p.X != 0 {
		panic("encode boom")
	}
	return enc.EncodeInt(0)
}

func (p *panicOnEncode) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeInt()
	p.X = n
	return err
}

// A near-only cache without Near.MaxBytes stores values as they are: it
// never encodes them. With Near.MaxBytes it encodes them, to weigh them: a
// heavy value is not kept, the bound holds, and a value whose encoding
// panics is returned uncached from a load and refused by Set.
func TestNearOnlyEncoding(t *testing.T) {
	ctx := context.Background()
	t.Run("no Near.MaxBytes", func(t *testing.T) {
		c := newCache[panicOnEncode](t, Options{})
		if err := c.Set(ctx, "k", panicOnEncode{2}); err != nil {
			t.Fatalf("Set = %v; a near-only cache encoded the value", err)
		}
		if r, err := c.Fetch(ctx, "k", LoaderFunc[panicOnEncode](func(context.Context, string) (panicOnEncode, error) {
			return panicOnEncode{}, errors.New("loaded a key just Set")
		})); err != nil || r.Value.X != 2 || r.Source != SourceNear {
			t.Fatalf("Fetch = %+v, %v; want the Set value from the near tier", r, err)
		}
	})
	t.Run("Near.MaxBytes", func(t *testing.T) {
		c := newCache[panicOnEncode](t, Options{Near: NearOptions{Capacity: 100, MaxBytes: 1 << 20}})
		v, err := c.Get(ctx, "k", LoaderFunc[panicOnEncode](func(context.Context, string) (panicOnEncode, error) {
			return panicOnEncode{1}, nil
		}))
		if err != nil || v.X != 1 {
			t.Fatalf("Get = %+v, %v", v, err)
		}
		if _, ok := c.near.Peek("k"); ok {
			t.Fatal("a value that cannot be encoded was kept near")
		}
		if st := c.Stats(); st.NotCached != 1 {
			t.Fatalf("NotCached = %d, want 1", st.NotCached)
		}
		if err := c.Set(ctx, "k", panicOnEncode{2}); err == nil {
			t.Fatal("Set of an unencodable value succeeded")
		}
	})
	t.Run("weighs encoded bytes", func(t *testing.T) {
		// One shard (NearCapacity below 512), so the bound is exact.
		c := newCache[string](t, Options{Near: NearOptions{Capacity: 100, MaxBytes: 1000}})
		big := strings.Repeat("x", 400)
		for _, k := range []string{"a", "b", "c"} {
			if err := c.Set(ctx, k, big); err != nil {
				t.Fatal(err)
			}
		}
		if n := c.near.Len(); n != 2 {
			t.Fatalf("the near tier holds %d values of 400 bytes under Near.MaxBytes 1000, want 2", n)
		}
		// With no Redis to hold it, a value heavier than the near tier
		// may hold is refused: the next Get could not return it.
		if err := c.Set(ctx, "huge", strings.Repeat("x", 2000)); !errors.Is(err, ErrValueTooLarge) {
			t.Fatalf("Set of a value over Near.MaxBytes = %v, want ErrValueTooLarge", err)
		}
		if _, ok := c.near.Peek("huge"); ok {
			t.Fatal("a value heavier than Near.MaxBytes was kept near")
		}
	})
}

// A value over Values.MaxBytes: Set refuses it and keeps nothing of the
// key near; a loaded one is returned, not cached.
func TestValueTooLarge(t *testing.T) {
	m, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client, Values: ValueOptions{MaxBytes: 100}})
	ctx := context.Background()
	big := strings.Repeat("x", 200)
	if err := c.Set(ctx, "big", "small"); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "big", big); !errors.Is(err, ErrValueTooLarge) || !strings.Contains(err.Error(), "MaxBytes") {
		t.Fatalf("Set err = %v, want ErrValueTooLarge naming MaxBytes", err)
	}
	if _, ok := c.near.Peek("big"); ok {
		t.Fatal("the near tier holds a copy of a key whose Set failed")
	}
	if got, _ := m.Get("tier:big"); strings.Contains(got, big) {
		t.Fatal("an oversized value was stored in Redis")
	}
	if err := c.Set(ctx, "new", big); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("Set err = %v, want ErrValueTooLarge", err)
	}
	if m.Exists("tier:new") {
		t.Fatal("an oversized value was stored in Redis")
	}
	// A loaded oversized value is returned, not cached.
	v, err := c.Get(ctx, "loaded", constLoader(big))
	if err != nil || v != big {
		t.Fatalf("Get = %d bytes, %v", len(v), err)
	}
	if _, ok := c.near.Peek("loaded"); ok || m.Exists("tier:loaded") {
		t.Fatalf("an oversized loaded value was cached (Redis has it: %v)", m.Exists("tier:loaded"))
	}
	if st := c.Stats(); st.NotCached != 1 {
		t.Fatalf("NotCached = %d, want 1", st.NotCached)
	}
}

// Every string is a key: stored, read by another replica, deleted, and
// the deletion reaches the other replica's near tier, on miniredis and on
// a real redis-server.
func TestOddKeys(t *testing.T) {
	keys := []string{
		"", " ", "key with spaces", "line1\nline2", "tab\there", `say "hi"`, "'single'",
		"{user}:1", "{", "}", "*", "=", "=x", "==x", "\x00nul", "ключ", "键", "🔑",
		"a:b:c", strings.Repeat("k", 64<<10),
	}
	backends := map[string]func(t *testing.T) redis.UniversalClient{
		"miniredis": func(t *testing.T) redis.UniversalClient {
			_, c, _ := newMiniredis(t)
			return c
		},
		"redis-server": func(t *testing.T) redis.UniversalClient {
			return redistest.Start(t).Client(t)
		},
	}
	for name, client := range backends {
		t.Run(name, func(t *testing.T) {
			c := client(t)
			a := newCache[string](t, Options{Redis: c})
			b := newCache[string](t, Options{Redis: c})
			bEvents := events(b)
			ctx := context.Background()
			for _, k := range keys {
				short := k
				if len(short) > 20 {
					short = short[:20] + "..."
				}
				if err := a.Set(ctx, k, "v:"+k); err != nil {
					t.Fatalf("Set(%q): %v", short, err)
				}
				await(t, bEvents, "keys")
				if r, err := b.Fetch(ctx, k, constLoader("loaded")); err != nil || r.Value != "v:"+k || r.Source != SourceFar {
					t.Fatalf("%q: other replica read %q from %v, %v", short, r.Value, r.Source, err)
				}
				if r, err := b.Fetch(ctx, k, constLoader("loaded")); err != nil || r.Value != "v:"+k || r.Source != SourceNear {
					t.Fatalf("%q: other replica's second read %q from %v, %v", short, r.Value, r.Source, err)
				}
				if err := a.Delete(ctx, k); err != nil {
					t.Fatalf("Delete(%q): %v", short, err)
				}
				await(t, bEvents, "keys")
				if r, _ := b.Fetch(ctx, k, constLoader("loaded")); r.Value != "loaded" || r.Source != SourceLoad {
					t.Fatalf("%q: after Delete the other replica read %q from %v", short, r.Value, r.Source)
				}
			}
			for _, cc := range []*Cache[string]{a, b} {
				if st := cc.Stats(); st.Malformed != 0 || st.FarErrors != 0 {
					t.Fatalf("stats = %+v, want no malformed message and no far error", st)
				}
			}
		})
	}
}

// What Get returns is the value decoded from the bytes in Redis, not the
// value given to Set or returned by the loader: mutating those afterwards
// changes nothing cached, on the writer either.
func TestValuesAreDecodedCopies(t *testing.T) {
	_, client, _ := newMiniredis(t)
	ctx := context.Background()
	type doc struct {
		Tags  []string
		Attrs map[string]int
	}
	writer := newCache[doc](t, Options{Redis: client})
	reader := newCache[doc](t, Options{Redis: client})
	given := doc{Tags: []string{"a", "b"}, Attrs: map[string]int{"x": 1}}
	if err := writer.Set(ctx, "set", given); err != nil {
		t.Fatal(err)
	}
	given.Tags[0] = "mutated"
	given.Attrs["x"] = 99
	given.Attrs["y"] = 2
	noLoad := LoaderFunc[doc](func(context.Context, string) (doc, error) { return doc{}, errors.New("no load expected") })
	check := func(who string, c *Cache[doc], key string) {
		t.Helper()
		r, err := c.Fetch(ctx, key, noLoad)
		if err != nil || r.Value.Tags[0] != "a" || r.Value.Attrs["x"] != 1 || len(r.Value.Attrs) != 1 {
			t.Fatalf("%s reads %s = %+v (from %v), %v; want the value as it was given", who, key, r.Value, r.Source, err)
		}
	}
	check("the writer", writer, "set")
	check("another replica", reader, "set")

	loaded := doc{Tags: []string{"a"}, Attrs: map[string]int{"x": 1}}
	if v, err := writer.Get(ctx, "loaded", LoaderFunc[doc](func(context.Context, string) (doc, error) { return loaded, nil })); err != nil || v.Tags[0] != "a" {
		t.Fatalf("Get = %+v, %v", v, err)
	}
	loaded.Tags[0] = "mutated"
	loaded.Attrs["x"] = 99
	check("the loader's replica", writer, "loaded")
}
