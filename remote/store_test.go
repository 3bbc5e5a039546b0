package remote_test

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tier-cache/tier/remote"
)

// Get reports a hit with the value and a miss as (nil, false, nil).
func TestGet(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		mustSet(t, s, "k", "hello", time.Minute)
		if v, ok, err := s.Get(testCtx(t), "k"); err != nil || !ok || string(v) != "hello" {
			t.Fatalf("Get(k) = %q, %v, %v; want \"hello\", true, nil", v, ok, err)
		}
		if v, ok, err := s.Get(testCtx(t), "absent"); err != nil || ok || v != nil {
			t.Fatalf("Get(absent) = %#v, %v, %v; want nil, false, nil", v, ok, err)
		}
		mustSet(t, s, "k", "again", time.Minute)
		if v, _ := mustGet(t, s, "k"); string(v) != "again" {
			t.Fatalf("after a second Set, Get(k) = %q; want \"again\"", v)
		}
	})
}

// Values are opaque bytes: NULs, CRLFs and RESP-like text come back as
// they went in, a large value whole, and an empty value is a hit.
func TestValuesAreBinarySafe(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		keys := []string{"empty", "nul", "binary", "big"}
		values := [][]byte{
			{},
			{0, 0, 0},
			{0xff, 0xfe, '\r', '\n', '$', '-', '1', '\r', '\n'},
			bytes.Repeat([]byte("0123456789abcdef"), 1<<15), // 512 KiB
		}
		for i, k := range keys {
			if err := s.Set(testCtx(t), k, values[i], time.Minute); err != nil {
				t.Fatalf("Set(%q): %v", k, err)
			}
		}
		for i, k := range keys {
			v, ok := mustGet(t, s, k)
			if !ok || !bytes.Equal(v, values[i]) {
				t.Errorf("Get(%q) = %d bytes, %v; want %d bytes, true", k, len(v), ok, len(values[i]))
			}
		}
		got := mustGetMany(t, s, keys)
		for i, k := range keys {
			if !bytes.Equal(got[i], values[i]) {
				t.Errorf("GetMany: %q = %d bytes; want %d", k, len(got[i]), len(values[i]))
			}
		}
		// An empty value is a hit, which GetMany tells from a miss (nil).
		if v, ok := mustGet(t, s, "empty"); !ok || v == nil {
			t.Errorf("Get(empty) = %#v, %v; want a non-nil empty value and true", v, ok)
		}
		if got[0] == nil {
			t.Error("GetMany returned nil, a miss, for an empty value")
		}
	})
}

// The caller may change the bytes Get and GetMany return.
func TestReturnedBytesAreTheCallers(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, kind := range clientKinds {
			t.Run(kind.name, func(t *testing.T) {
				s := mustNew(t, kind.wrap(e.client(t)), remote.Options{})
				mustSet(t, s, "k", "abc", time.Minute)
				mustSet(t, s, "l", "def", time.Minute)
				v, _ := mustGet(t, s, "k")
				v[0] = 'X'
				many := mustGetMany(t, s, []string{"k", "l", "k"})
				many[0][1], many[1][1] = 'Y', 'Y'
				if string(many[2]) != "abc" {
					t.Errorf("GetMany returned one buffer twice: the second k = %q after changing the first", many[2])
				}
				if v, _ := mustGet(t, s, "k"); string(v) != "abc" {
					t.Errorf("Get(k) = %q after changing earlier results; want \"abc\"", v)
				}
				if got := mustGetMany(t, s, []string{"k", "l"}); string(got[0]) != "abc" || string(got[1]) != "def" {
					t.Errorf("GetMany = %q after changing earlier results; want [abc def]", got)
				}
			})
		}
	})
}

// GetMany returns one value per key, in the order of keys, nil for a
// missing key, on every path: MGET on one server, pipelined GETs otherwise.
func TestGetMany(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, kind := range clientKinds {
			t.Run(kind.name, func(t *testing.T) {
				s := mustNew(t, kind.wrap(e.client(t)), remote.Options{})
				keys := make([]string, 40) // over many slots on a cluster
				for i := range keys {
					keys[i] = fmt.Sprintf("key-%d", i)
					if i%3 == 0 {
						mustSet(t, s, keys[i], "v"+keys[i], time.Minute)
					}
				}
				// A repeated key, and the same keys backwards.
				asked := append(append([]string{keys[3]}, keys...), keys[0])
				for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
					keys[i], keys[j] = keys[j], keys[i]
				}
				for _, ks := range [][]string{asked, keys} {
					got := mustGetMany(t, s, ks)
					for i, k := range ks {
						var n int
						fmt.Sscanf(k, "key-%d", &n)
						if n%3 == 0 {
							if string(got[i]) != "v"+k {
								t.Errorf("GetMany: [%d] (%s) = %q; want %q", i, k, got[i], "v"+k)
							}
						} else if got[i] != nil {
							t.Errorf("GetMany: [%d] (%s) = %#v; want nil for a missing key", i, k, got[i])
						}
					}
				}
				for _, ks := range [][]string{nil, {}} {
					if got, err := s.GetMany(testCtx(t), ks); err != nil || len(got) != 0 {
						t.Errorf("GetMany(%#v) = %q, %v; want no values and no error", ks, got, err)
					}
				}
				if got := mustGetMany(t, s, []string{"absent"}); got[0] != nil {
					t.Errorf("GetMany(absent) = %q; want [nil]", got)
				}
				// An empty value is not a miss, and each value is the
				// caller's: appending to one changes no other.
				mustSet(t, s, "empty", "", time.Minute)
				got := mustGetMany(t, s, []string{keys[len(keys)-1], "empty", "absent", keys[len(keys)-4]})
				if got[1] == nil || len(got[1]) != 0 || got[2] != nil {
					t.Fatalf("GetMany(..., empty, absent, ...) = %#v; want an empty value, then nil", got)
				}
				_ = append(got[0], "!!!!"...)
				_ = append(got[1], "!!!!"...)
				if string(got[0]) != "vkey-0" || string(got[3]) != "vkey-3" {
					t.Errorf("after appends to the first values: %q; want [vkey-0 ... vkey-3]", got)
				}
			})
		}
	})
}

// A value that is not a string is an error naming the key, not a miss.
func TestWrongTypeIsAnErrorNotAMiss(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, kind := range clientKinds {
			t.Run(kind.name, func(t *testing.T) {
				c := kind.wrap(e.client(t))
				s := mustNew(t, c, remote.Options{})
				if err := c.HSet(testCtx(t), s.Key("h"), "f", "v").Err(); err != nil {
					t.Fatal(err)
				}
				mustSet(t, s, "fine", "v", time.Minute)
				v, ok, err := s.Get(testCtx(t), "h")
				if err == nil || ok || v != nil || !strings.HasPrefix(err.Error(), `remote: get "h": `) || !strings.Contains(err.Error(), "WRONGTYPE") {
					t.Errorf("Get(hash) = %q, %v, %v; want a WRONGTYPE error naming the key", v, ok, err)
				}
				if singleNode(c) {
					// MGET answers nil for a key of another type, and
					// GetMany says so in its doc.
					vs, err := s.GetMany(testCtx(t), []string{"fine", "h"})
					if err != nil || string(vs[0]) != "v" || vs[1] != nil {
						t.Errorf("GetMany(fine, hash) on one server = %q, %v; want [v nil]", vs, err)
					}
					return
				}
				vs, err := s.GetMany(testCtx(t), []string{"fine", "h"})
				if err == nil || !strings.HasPrefix(err.Error(), "remote: get ") || !strings.Contains(err.Error(), `"h"`) {
					t.Errorf("GetMany(fine, hash) = %q, %v; want an error naming \"h\"", vs, err)
				}
			})
		}
	})
}

// Set stores the TTL it is given, as PTTL reads it through a raw client,
// and replaces both value and TTL of an existing key.
func TestSetSetsTTL(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		raw := e.client(t)
		s := e.store(t, remote.Options{})
		mustSet(t, s, "k", "v", time.Minute)
		got := pttl(t, raw, s.Key("k"))
		if got > time.Minute || got <= 30*time.Second {
			t.Fatalf("PTTL after Set for 1m = %v; want at most 1m and well over half of it", got)
		}
		if e.fastForward != nil && got != time.Minute {
			t.Fatalf("PTTL after Set for 1m = %v on a server whose clock stands still; want 1m exactly", got)
		}
		mustSet(t, s, "k", "w", time.Hour)
		if got := pttl(t, raw, s.Key("k")); got <= time.Minute || got > time.Hour {
			t.Fatalf("PTTL after a second Set for 1h = %v; want more than 1m and at most 1h", got)
		}
		// The longest TTL there is still expires: it is not "no expiry" (-1).
		mustSet(t, s, "forever", "v", math.MaxInt64)
		if got := pttl(t, raw, s.Key("forever")); got < 100*365*24*time.Hour {
			t.Fatalf("PTTL after Set for the longest Duration = %v; want centuries", got)
		}
		if e.fastForward == nil {
			return // a real server's clock cannot be moved
		}
		e.fastForward(time.Hour - time.Millisecond)
		if _, ok := mustGet(t, s, "k"); !ok {
			t.Fatal("the key expired before its TTL")
		}
		e.fastForward(time.Millisecond)
		if v, ok := mustGet(t, s, "k"); ok {
			t.Fatalf("after its TTL, Get = %q, true; want a miss", v)
		}
	})
}

// A TTL under a millisecond, or between two, is rounded up: never to zero,
// which would be no expiry or an error, and never cut short.
func TestSubMillisecondTTLRoundsUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		if e.fastForward == nil {
			t.Skip("needs a server clock that stands still")
		}
		raw := e.client(t)
		s := e.store(t, remote.Options{})
		ctx := testCtx(t)
		tests := []struct {
			ttl, want time.Duration
		}{
			{time.Nanosecond, time.Millisecond},
			{time.Microsecond, time.Millisecond},
			{time.Millisecond, time.Millisecond},
			{1500 * time.Microsecond, 2 * time.Millisecond},
			{time.Second + time.Nanosecond, time.Second + time.Millisecond},
		}
		for _, tt := range tests {
			writes := map[string]func(key string) error{
				"Set": func(key string) error { return s.Set(ctx, key, []byte("v"), tt.ttl) },
				"Add": func(key string) error { _, err := s.Add(ctx, key, []byte("v"), tt.ttl); return err },
				"AddMany": func(key string) error {
					_, err := s.AddMany(ctx, []string{key}, [][]byte{[]byte("v")}, tt.ttl)
					return err
				},
				"Swap": func(key string) error {
					mustSet(t, s, key, "lease", time.Hour)
					_, err := s.Swap(ctx, key, []byte("lease"), []byte("v"), tt.ttl)
					return err
				},
				"SwapMany": func(key string) error {
					mustSet(t, s, key, "lease", time.Hour)
					return s.SwapMany(ctx, []remote.SwapItem{{Key: key, Old: []byte("lease"), Value: []byte("v"), TTL: tt.ttl}})
				},
			}
			for name, write := range writes {
				key := fmt.Sprint(name, "/", tt.ttl)
				if err := write(key); err != nil {
					t.Fatalf("%s with ttl %v: %v", name, tt.ttl, err)
				}
				if got := pttl(t, raw, s.Key(key)); got != tt.want {
					t.Errorf("%s with ttl %v: PTTL = %v; want %v", name, tt.ttl, got, tt.want)
				}
			}
		}
	})
}

// Every write refuses a TTL that is not positive, names the key, and
// writes nothing.
func TestWritesRejectNonPositiveTTL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		raw := e.client(t)
		s := e.store(t, remote.Options{})
		ctx := testCtx(t)
		mustSet(t, s, "lease", "old", time.Minute)
		for _, ttl := range []time.Duration{0, -1, -time.Second, math.MinInt64} {
			writes := map[string]func() error{
				"Set": func() error { return s.Set(ctx, "k", []byte("v"), ttl) },
				"Add": func() error { _, err := s.Add(ctx, "k", []byte("v"), ttl); return err },
				"AddMany": func() error {
					_, err := s.AddMany(ctx, []string{"k", "k2"}, [][]byte{[]byte("v"), []byte("v")}, ttl)
					return err
				},
				"Swap": func() error { _, err := s.Swap(ctx, "lease", []byte("old"), []byte("v"), ttl); return err },
				"SwapMany": func() error {
					return s.SwapMany(ctx, []remote.SwapItem{
						{Key: "k", Old: []byte("x"), Value: []byte("v"), TTL: time.Minute},
						{Key: "lease", Old: []byte("old"), Value: []byte("v"), TTL: ttl},
					})
				},
			}
			for name, write := range writes {
				err := write()
				if err == nil || !strings.HasPrefix(err.Error(), "remote: ") || !strings.Contains(err.Error(), "not positive") {
					t.Errorf("%s with ttl %v: err = %v; want a remote: error saying the ttl is not positive", name, ttl, err)
				}
			}
		}
		for _, k := range []string{"k", "k2"} {
			if n := raw.Exists(ctx, s.Key(k)).Val(); n != 0 {
				t.Errorf("a rejected write stored %q", k)
			}
		}
		if v, _ := mustGet(t, s, "lease"); string(v) != "old" {
			t.Errorf("a rejected swap changed the lease to %q", v)
		}
	})
}

// Delete removes the keys it is given and no others; missing keys are not
// an error. On one server it takes more keys than Lua can unpack at once
// (8000), in one script; on a cluster, keys on many slots.
func TestDelete(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, kind := range clientKinds {
			t.Run(kind.name, func(t *testing.T) {
				c := kind.wrap(e.client(t))
				s := mustNew(t, c, remote.Options{})
				ctx := testCtx(t)
				n := 10000
				if !singleNode(c) {
					n = 300 // one script per key
				}
				keys := make([]string, n)
				values := make([][]byte, n)
				for i := range keys {
					keys[i] = fmt.Sprint("k", i)
					values[i] = []byte("v")
				}
				if _, err := s.AddMany(ctx, append(keys, "kept"), append(values, []byte("kept")), time.Minute); err != nil {
					t.Fatal(err)
				}
				if err := s.Delete(ctx, append(keys, "never-set")...); err != nil {
					t.Fatal(err)
				}
				for i, v := range mustGetMany(t, s, keys) {
					if v != nil {
						t.Fatalf("after Delete of %d keys, %s is still there", n, keys[i])
					}
				}
				if v, _ := mustGet(t, s, "kept"); string(v) != "kept" {
					t.Fatalf("Delete removed a key it was not given: kept = %q", v)
				}
				if err := s.Delete(ctx); err != nil {
					t.Errorf("Delete() = %v", err)
				}
				if err := s.Delete(ctx, "kept"); err != nil {
					t.Fatal(err)
				}
				if _, ok := mustGet(t, s, "kept"); ok {
					t.Error("Delete of one key left it")
				}
			})
		}
	})
}

// Stores with different namespaces never see or touch each other's
// entries, and each keeps its keys under "<namespace>:".
func TestNamespaceIsolation(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		raw := e.client(t)
		a := e.store(t, remote.Options{Namespace: "a"})
		b := e.store(t, remote.Options{Namespace: "b"})
		def := e.store(t, remote.Options{})
		if a.Key("k") != "a:k" || def.Key("k") != "tier:k" || def.Key("") != "tier:" {
			t.Fatalf("Key: a %q, default %q and %q; want a:k, tier:k and tier:", a.Key("k"), def.Key("k"), def.Key(""))
		}

		mustSet(t, a, "k", "from a", time.Minute)
		if got, err := raw.Get(testCtx(t), "a:k").Result(); err != nil || got != "from a" {
			t.Fatalf("raw GET a:k = %q, %v; want \"from a\"", got, err)
		}
		for name, s := range map[string]*remote.Store{"b": b, "the default": def} {
			if v, ok := mustGet(t, s, "k"); ok {
				t.Fatalf("%s namespace sees a's key: %q", name, v)
			}
			if got := mustGetMany(t, s, []string{"k"}); got[0] != nil {
				t.Fatalf("%s namespace's GetMany sees a's key: %q", name, got[0])
			}
			if ok, err := s.Swap(testCtx(t), "k", []byte("from a"), nil, 0); err != nil || ok {
				t.Fatalf("%s namespace's Swap of a's value = %v, %v; want false", name, ok, err)
			}
		}

		mustSet(t, b, "k", "from b", time.Minute)
		if ok, err := a.Add(testCtx(t), "l", []byte("from a"), time.Minute); err != nil || !ok {
			t.Fatalf("a.Add(l) = %v, %v", ok, err)
		}
		if ok, err := b.Add(testCtx(t), "l", []byte("from b"), time.Minute); err != nil || !ok {
			t.Fatalf("b.Add(l) = %v, %v; want true: a's l is another key", ok, err)
		}
		if err := b.Delete(testCtx(t), "k", "l"); err != nil {
			t.Fatal(err)
		}
		if got := mustGetMany(t, a, []string{"k", "l"}); string(got[0]) != "from a" || string(got[1]) != "from a" {
			t.Fatalf("b's Delete touched a: a has %q", got)
		}
	})
}

// oddKeys are keys that break code which builds commands from strings,
// splits on separators, assumes printable text, or forgets hash tags.
var oddKeys = []string{
	"",
	" ",
	"a b",
	"line\nbreak",
	"\r\n",
	"*1\r\n$4\r\nPING\r\n",
	"tab\there",
	"ünïcödé 🗝",
	"{tag}",
	"{tag}other",
	"}{",
	"{}",
	"{",
	"a:b:c",
	":",
	"\x00bin\xff",
	"%s %d %q",
	strings.Repeat("long", 1000),
}

// Any string is a key: each odd key is stored under its own Redis key and
// read, swapped and deleted as any other.
func TestOddKeys(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		raw := e.client(t)
		for _, kind := range clientKinds {
			t.Run(kind.name, func(t *testing.T) {
				s := mustNew(t, kind.wrap(e.client(t)), remote.Options{Namespace: "odd " + kind.name})
				ctx := testCtx(t)
				for i, k := range oddKeys {
					mustSet(t, s, k, fmt.Sprint(i), time.Minute)
				}
				for i, k := range oddKeys {
					if v, ok := mustGet(t, s, k); !ok || string(v) != fmt.Sprint(i) {
						t.Errorf("Get(%q) = %q, %v; want %q", k, v, ok, fmt.Sprint(i))
					}
					rk := "odd " + kind.name + ":" + k
					if s.Key(k) != rk {
						t.Errorf("Key(%q) = %q; want %q", k, s.Key(k), rk)
					}
					if got, err := raw.Get(ctx, rk).Result(); err != nil || got != fmt.Sprint(i) {
						t.Errorf("raw GET %q = %q, %v; want %q", rk, got, err, fmt.Sprint(i))
					}
				}
				for i, v := range mustGetMany(t, s, oddKeys) {
					if string(v) != fmt.Sprint(i) {
						t.Errorf("GetMany: %q = %q; want %q", oddKeys[i], v, fmt.Sprint(i))
					}
				}
				items := make([]remote.SwapItem, len(oddKeys))
				for i, k := range oddKeys {
					items[i] = remote.SwapItem{Key: k, Old: []byte(fmt.Sprint(i)), Value: []byte("swapped " + k), TTL: time.Minute}
				}
				if err := s.SwapMany(ctx, items); err != nil {
					t.Fatal(err)
				}
				for i, v := range mustGetMany(t, s, oddKeys) {
					if string(v) != "swapped "+oddKeys[i] {
						t.Errorf("after SwapMany, %q = %q", oddKeys[i], v)
					}
				}
				if err := s.Delete(ctx, oddKeys...); err != nil {
					t.Fatal(err)
				}
				for i, v := range mustGetMany(t, s, oddKeys) {
					if v != nil {
						t.Errorf("after Delete, %q = %q", oddKeys[i], v)
					}
				}
			})
		}
	})
}

// Ping answers when Redis does.
func TestPing(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		if err := e.store(t, remote.Options{}).Ping(testCtx(t)); err != nil {
			t.Fatalf("Ping = %v", err)
		}
	})
}

// A cluster refuses a multi-key command across slots; the keys of these
// tests span slots, so the Store's cluster paths are exercised for real.
func TestClusterRefusesCrossSlot(t *testing.T) {
	node := sharedCluster(t).Nodes()[0].Client(t)
	err := node.Del(testCtx(t), "tier:key-0", "tier:key-1").Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("DEL of two keys on different slots: err = %v; want CROSSSLOT", err)
	}
}
