package remote_test

import (
	"testing"
	"time"

	"github.com/tier-cache/tier/remote"
)

// SetNotify and DeleteNotify write and publish: a subscriber receives the
// payloads, in order, and the write is done when it does.
func TestWritesWithNotice(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		c := e.client(t)
		s := mustNew(t, c, remote.Options{Timeout: 5 * time.Second})
		ctx := testCtx(t)
		sub := c.Subscribe(ctx, "news")
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // the confirmation
			t.Fatal(err)
		}
		next := func() string {
			t.Helper()
			m, err := sub.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return m.Payload
		}
		n := remote.Notice{Channel: "news", Payloads: [][]byte{[]byte("first"), []byte("second")}}
		if err := s.SetNotify(ctx, "k", []byte("v"), time.Minute, n); err != nil {
			t.Fatal(err)
		}
		if got := next() + "," + next(); got != "first,second" {
			t.Fatalf("received %s", got)
		}
		if it, ok := mustGet(t, s, "k"); !ok || string(it.Value) != "v" {
			t.Fatalf("after SetNotify: %q, %v", it.Value, ok)
		}
		keys := []string{"k", "{a}x", "{b}y"}
		for _, k := range keys[1:] {
			mustSet(t, s, k, "v", time.Minute)
		}
		if err := s.DeleteNotify(ctx, keys, remote.Notice{Channel: "news", Payloads: [][]byte{[]byte("gone")}}); err != nil {
			t.Fatal(err)
		}
		if got := next(); got != "gone" {
			t.Fatalf("received %s", got)
		}
		for _, k := range keys {
			if _, ok := mustGet(t, s, k); ok {
				t.Fatalf("%s survived DeleteNotify", k)
			}
		}
		if err := s.SetNotify(ctx, "k", []byte("v"), 0, n); err == nil {
			t.Fatal("SetNotify accepted a zero TTL")
		}
	})
}

// Add never overwrites: a value a writer stored wins over a later fill.
func TestAddKeepsExistingValues(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		s := mustNew(t, e.client(t), remote.Options{Timeout: 5 * time.Second})
		ctx := testCtx(t)
		mustSet(t, s, "k", "written", time.Minute)
		if ok, err := s.Add(ctx, "k", []byte("loaded"), time.Minute); err != nil || ok {
			t.Fatalf("Add over an existing key = %v, %v; want false", ok, err)
		}
		if ok, err := s.Add(ctx, "new", []byte("loaded"), time.Minute); err != nil || !ok {
			t.Fatalf("Add of a new key = %v, %v; want true", ok, err)
		}
		added, err := s.AddMany(ctx, map[string]remote.Item{
			"k":    {Value: []byte("loaded"), TTL: time.Minute},
			"{x}y": {Value: []byte("loaded"), TTL: time.Minute},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(added) != 1 || !added["{x}y"] {
			t.Fatalf("AddMany reported %v added, want only {x}y", added)
		}
		for k, want := range map[string]string{"k": "written", "new": "loaded", "{x}y": "loaded"} {
			if it, ok := mustGet(t, s, k); !ok || string(it.Value) != want {
				t.Fatalf("%s = %q, %v; want %q", k, it.Value, ok, want)
			}
		}
		if _, err := s.Add(ctx, "z", []byte("v"), 0); err == nil {
			t.Fatal("Add accepted a zero TTL")
		}
	})
}

// Swap writes only over the expected value, and deletes with an empty one.
func TestSwap(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		s := mustNew(t, e.client(t), remote.Options{Timeout: 5 * time.Second})
		ctx := testCtx(t)
		mustSet(t, s, "k", "lease-1", time.Minute)
		if ok, err := s.Swap(ctx, "k", []byte("lease-2"), []byte("v"), time.Minute); err != nil || ok {
			t.Fatalf("Swap with the wrong old value = %v, %v", ok, err)
		}
		if ok, err := s.Swap(ctx, "k", []byte("lease-1"), []byte("v"), time.Minute); err != nil || !ok {
			t.Fatalf("Swap with the right old value = %v, %v", ok, err)
		}
		if it, ok := mustGet(t, s, "k"); !ok || string(it.Value) != "v" || it.TTL <= 0 {
			t.Fatalf("after Swap: %q ttl %v, %v", it.Value, it.TTL, ok)
		}
		if ok, err := s.Swap(ctx, "absent", []byte("x"), []byte("v"), time.Minute); err != nil || ok {
			t.Fatalf("Swap of an absent key = %v, %v", ok, err)
		}
		mustSet(t, s, "l", "lease", time.Minute)
		if ok, err := s.Swap(ctx, "l", []byte("lease"), nil, 0); err != nil || !ok {
			t.Fatalf("Swap to delete = %v, %v", ok, err)
		}
		if _, ok := mustGet(t, s, "l"); ok {
			t.Fatal("Swap with an empty value did not delete")
		}
		mustSet(t, s, "m1", "lease", time.Minute)
		mustSet(t, s, "{m}2", "other", time.Minute)
		err := s.SwapMany(ctx, map[string]remote.SwapItem{
			"m1":   {Old: []byte("lease"), Value: []byte("v1"), TTL: time.Minute},
			"{m}2": {Old: []byte("lease"), Value: []byte("v2"), TTL: time.Minute},
		})
		if err != nil {
			t.Fatal(err)
		}
		if it, _ := mustGet(t, s, "m1"); string(it.Value) != "v1" {
			t.Fatalf("m1 = %q after SwapMany", it.Value)
		}
		if it, _ := mustGet(t, s, "{m}2"); string(it.Value) != "other" {
			t.Fatalf("{m}2 = %q: SwapMany wrote over a value it did not expect", it.Value)
		}
	})
}
