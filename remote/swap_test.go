package remote_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tier-cache/tier/remote"
)

// Add stores only an absent key, and says whether it did: a value already
// there wins.
func TestAdd(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		raw := e.client(t)
		s := e.store(t, remote.Options{})
		ctx := testCtx(t)
		mustSet(t, s, "k", "written", time.Hour)
		if ok, err := s.Add(ctx, "k", []byte("loaded"), time.Minute); err != nil || ok {
			t.Fatalf("Add over an existing key = %v, %v; want false, nil", ok, err)
		}
		if got := pttl(t, raw, s.Key("k")); got <= time.Minute {
			t.Fatalf("a refused Add changed the TTL to %v", got)
		}
		if ok, err := s.Add(ctx, "new", []byte("loaded"), time.Minute); err != nil || !ok {
			t.Fatalf("Add of a new key = %v, %v; want true, nil", ok, err)
		}
		if got := pttl(t, raw, s.Key("new")); got <= 0 || got > time.Minute {
			t.Fatalf("after Add for 1m, PTTL = %v", got)
		}
		if ok, err := s.Add(ctx, "new", []byte("again"), time.Minute); err != nil || ok {
			t.Fatalf("a second Add = %v, %v; want false, nil", ok, err)
		}
		if got := mustGetMany(t, s, []string{"k", "new"}); string(got[0]) != "written" || string(got[1]) != "loaded" {
			t.Fatalf("after Add: %q; want [written loaded]", got)
		}
	})
}

// AddMany adds each absent key, keeps each present one, and reports which
// it added, in the order of keys.
func TestAddMany(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, kind := range clientKinds {
			t.Run(kind.name, func(t *testing.T) {
				s := mustNew(t, kind.wrap(e.client(t)), remote.Options{Namespace: kind.name})
				ctx := testCtx(t)
				keys := make([]string, 30) // over many slots on a cluster
				values := make([][]byte, len(keys))
				var want []bool
				for i := range keys {
					keys[i] = fmt.Sprintf("key-%d", i)
					values[i] = []byte("loaded " + keys[i])
					if i%3 == 0 {
						mustSet(t, s, keys[i], "written", time.Minute)
					}
					want = append(want, i%3 != 0)
				}
				added, err := s.AddMany(ctx, keys, values, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(added, want) {
					t.Fatalf("AddMany reported %v; want %v", added, want)
				}
				for i, v := range mustGetMany(t, s, keys) {
					if w := map[bool]string{true: "loaded " + keys[i], false: "written"}[want[i]]; string(v) != w {
						t.Errorf("%s = %q; want %q", keys[i], v, w)
					}
				}
				if added, err := s.AddMany(ctx, keys, values, time.Minute); err != nil || slices.Contains(added, true) {
					t.Fatalf("AddMany of present keys = %v, %v; want none added", added, err)
				}
				// The same key twice: the first wins.
				added, err = s.AddMany(ctx, []string{"twice", "twice"}, [][]byte{[]byte("1"), []byte("2")}, time.Minute)
				if err != nil || !slices.Equal(added, []bool{true, false}) {
					t.Fatalf("AddMany(twice, twice) = %v, %v; want [true false]", added, err)
				}
				if v, _ := mustGet(t, s, "twice"); string(v) != "1" {
					t.Fatalf("twice = %q; want the first value", v)
				}

				for _, ks := range [][]string{nil, {}} {
					if added, err := s.AddMany(ctx, ks, nil, time.Minute); err != nil || len(added) != 0 {
						t.Errorf("AddMany(%#v) = %v, %v; want nothing", ks, added, err)
					}
				}
				_, err = s.AddMany(ctx, []string{"x", "y"}, [][]byte{[]byte("v")}, time.Minute)
				if err == nil || !strings.HasPrefix(err.Error(), "remote: add: ") || !strings.Contains(err.Error(), "2 keys and 1 values") {
					t.Errorf("AddMany of 2 keys and 1 value = %v; want an error counting both", err)
				}
				if got := mustGetMany(t, s, []string{"x", "y"}); got[0] != nil || got[1] != nil {
					t.Errorf("a refused AddMany stored %q", got)
				}
			})
		}
	})
}

// Swap writes only over the value it expects, deletes with an empty
// value, and reports whether it did either.
func TestSwap(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		raw := e.client(t)
		s := e.store(t, remote.Options{})
		ctx := testCtx(t)
		mustSet(t, s, "k", "lease-1", time.Hour)
		if ok, err := s.Swap(ctx, "k", []byte("lease-2"), []byte("v"), time.Minute); err != nil || ok {
			t.Fatalf("Swap with the wrong old value = %v, %v; want false", ok, err)
		}
		if v, _ := mustGet(t, s, "k"); string(v) != "lease-1" {
			t.Fatalf("a refused Swap changed the value to %q", v)
		}
		if got := pttl(t, raw, s.Key("k")); got <= time.Minute {
			t.Fatalf("a refused Swap changed the TTL to %v", got)
		}
		if ok, err := s.Swap(ctx, "k", []byte("lease-1"), []byte("v"), time.Minute); err != nil || !ok {
			t.Fatalf("Swap with the right old value = %v, %v; want true", ok, err)
		}
		if v, _ := mustGet(t, s, "k"); string(v) != "v" {
			t.Fatalf("after Swap, k = %q; want v", v)
		}
		if got := pttl(t, raw, s.Key("k")); got <= 0 || got > time.Minute {
			t.Fatalf("after Swap for 1m, PTTL = %v", got)
		}

		// An absent key holds nothing, not even the empty value.
		for _, old := range [][]byte{[]byte("x"), {}, nil} {
			if ok, err := s.Swap(ctx, "absent", old, []byte("v"), time.Minute); err != nil || ok {
				t.Fatalf("Swap of an absent key from %q = %v, %v; want false", old, ok, err)
			}
		}
		if _, ok := mustGet(t, s, "absent"); ok {
			t.Fatal("a refused Swap created the key")
		}
		// An empty value is a value like another.
		if err := s.Set(ctx, "empty", []byte{}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Swap(ctx, "empty", nil, []byte("v"), time.Minute); err != nil || !ok {
			t.Fatalf("Swap of an empty value = %v, %v; want true", ok, err)
		}

		// An empty new value deletes, and needs no TTL.
		mustSet(t, s, "l", "lease", time.Minute)
		if ok, err := s.Swap(ctx, "l", []byte("other"), nil, 0); err != nil || ok {
			t.Fatalf("Swap to delete with the wrong old value = %v, %v; want false", ok, err)
		}
		if _, ok := mustGet(t, s, "l"); !ok {
			t.Fatal("a refused Swap deleted the key")
		}
		if ok, err := s.Swap(ctx, "l", []byte("lease"), nil, 0); err != nil || !ok {
			t.Fatalf("Swap to delete = %v, %v; want true", ok, err)
		}
		if _, ok := mustGet(t, s, "l"); ok {
			t.Fatal("Swap with an empty value did not delete")
		}

		if err := raw.HSet(ctx, s.Key("h"), "f", "v").Err(); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Swap(ctx, "h", []byte("x"), []byte("v"), time.Minute); err == nil || ok || !strings.HasPrefix(err.Error(), `remote: swap "h": `) {
			t.Fatalf("Swap of a hash = %v, %v; want an error naming the key", ok, err)
		}
	})
}

// SwapMany swaps, deletes and leaves alone, each key by its own old value,
// across slots.
func TestSwapMany(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, kind := range clientKinds {
			t.Run(kind.name, func(t *testing.T) {
				s := mustNew(t, kind.wrap(e.client(t)), remote.Options{})
				ctx := testCtx(t)
				var items []remote.SwapItem
				want := map[string]string{} // "" for absent
				for i := range 24 {
					k := fmt.Sprintf("key-%d", i)
					mustSet(t, s, k, "lease", time.Minute)
					it := remote.SwapItem{Key: k, Old: []byte("lease"), Value: []byte("v" + k), TTL: time.Minute}
					want[k] = "v" + k
					switch i % 4 {
					case 1: // another writer got there first
						it.Old = []byte("other")
						want[k] = "lease"
					case 2: // a delete
						it.Value, it.TTL = nil, 0
						want[k] = ""
					case 3: // a delete that must not happen
						it.Old, it.Value, it.TTL = []byte("other"), nil, 0
						want[k] = "lease"
					}
					items = append(items, it)
				}
				items = append(items, remote.SwapItem{Key: "absent", Old: []byte("lease"), Value: []byte("v"), TTL: time.Minute})
				want["absent"] = ""
				if err := s.SwapMany(ctx, items); err != nil {
					t.Fatal(err)
				}
				for k, w := range want {
					v, ok := mustGet(t, s, k)
					if string(v) != w || ok != (w != "") {
						t.Errorf("after SwapMany, %s = %q, %v; want %q", k, v, ok, w)
					}
				}
				if err := s.SwapMany(ctx, nil); err != nil {
					t.Errorf("SwapMany(nil) = %v", err)
				}
			})
		}
	})
}

// The read-through lease: a lease written by Add is swapped for the
// loaded value; a Set or a Delete made meanwhile wins over the load.
func TestLease(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		ctx := testCtx(t)
		lease := []byte("lease:1")
		for _, tc := range []struct {
			name       string
			meanwhile  func(key string)
			wantSwap   bool
			wantValue  string
			wantExists bool
		}{
			{"nothing", func(string) {}, true, "loaded", true},
			{"Set", func(k string) { mustSet(t, s, k, "written", time.Minute) }, false, "written", true},
			{"Delete", func(k string) {
				if err := s.Delete(ctx, k); err != nil {
					t.Fatal(err)
				}
			}, false, "", false},
		} {
			key := "lease/" + tc.name
			if ok, err := s.Add(ctx, key, lease, time.Minute); err != nil || !ok {
				t.Fatalf("%s: Add(lease) = %v, %v; want true", tc.name, ok, err)
			}
			if ok, err := s.Add(ctx, key, []byte("lease:2"), time.Minute); err != nil || ok {
				t.Fatalf("%s: a second Add(lease) = %v, %v; want false", tc.name, ok, err)
			}
			tc.meanwhile(key)
			ok, err := s.Swap(ctx, key, lease, []byte("loaded"), time.Minute)
			if err != nil || ok != tc.wantSwap {
				t.Fatalf("%s meanwhile: Swap = %v, %v; want %v", tc.name, ok, err, tc.wantSwap)
			}
			if v, ok := mustGet(t, s, key); string(v) != tc.wantValue || ok != tc.wantExists {
				t.Fatalf("%s meanwhile: the key holds %q, %v; want %q, %v", tc.name, v, ok, tc.wantValue, tc.wantExists)
			}
		}
	})
}
