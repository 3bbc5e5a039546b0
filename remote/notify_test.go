package remote_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
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

// On Redis 7, a notify script checks that the user may publish before it
// writes: a user allowed the key but not the channel gets an error and
// no write, rather than a write that no replica hears of.
func TestNotifyDoesBothOrNeither(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	admin := srv.Client(t)
	if err := admin.Do(ctx, "ACL", "SETUSER", "writer", "on", ">pw", "resetkeys", "resetchannels",
		"~ns:*", "&allowed", "-@all", "+get", "+set", "+unlink", "+publish", "+evalsha", "+eval").Err(); err != nil {
		t.Fatal(err)
	}
	o := srv.Options()
	o.Username, o.Password = "writer", "pw"
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	s := mustNew(t, c, remote.Options{Namespace: "ns"})
	if err := admin.Set(ctx, "ns:kept", "old", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}

	denied := remote.Notice{Channel: "forbidden", Payloads: [][]byte{[]byte("k")}}
	if err := s.SetNotify(ctx, "k", []byte("v"), time.Minute, denied); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("SetNotify to a forbidden channel = %v, want a NOPERM error", err)
	}
	if n := admin.Exists(ctx, "ns:k").Val(); n != 0 {
		t.Fatal("SetNotify wrote although it could not publish")
	}
	if err := s.DeleteNotify(ctx, []string{"kept"}, denied); err == nil {
		t.Fatal("DeleteNotify to a forbidden channel succeeded")
	}
	if v := admin.Get(ctx, "ns:kept").Val(); v != "old" {
		t.Fatalf("DeleteNotify deleted although it could not publish: %q", v)
	}
	allowed := remote.Notice{Channel: "allowed", Payloads: [][]byte{[]byte("k")}}
	if err := s.SetNotify(ctx, "k", []byte("v"), time.Minute, allowed); err != nil {
		t.Fatalf("SetNotify as a user that may publish: %v", err)
	}
}

// DeleteNotify of more keys than one UNLINK of the script takes.
func TestDeleteNotifyManyKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{Timeout: 10 * time.Second})
		ctx := testCtx(t)
		items := make(map[string]remote.Item)
		keys := make([]string, 2500)
		for i := range keys {
			keys[i] = fmt.Sprint("k", i)
			items[keys[i]] = remote.Item{Value: []byte("v"), TTL: time.Minute}
		}
		if err := s.SetMany(ctx, items); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteNotify(ctx, keys, remote.Notice{Channel: "news", Payloads: [][]byte{[]byte("x")}}); err != nil {
			t.Fatal(err)
		}
		left, err := s.GetValues(ctx, keys)
		if err != nil || len(left) != 0 {
			t.Fatalf("after DeleteNotify of %d keys, %d remain (%v)", len(keys), len(left), err)
		}
	})
}

// With Notice.Sharded, the notice goes out by SPUBLISH, in the script on a
// single server and after the write on a cluster.
func TestWritesWithShardedNotice(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprint("cluster=", cluster), func(t *testing.T) {
			var c redis.UniversalClient
			if cluster {
				c = redistest.StartCluster(t).ClusterClient(t)
			} else {
				c = redistest.Start(t).Client(t)
			}
			s := mustNew(t, c, remote.Options{Timeout: 5 * time.Second})
			ctx := testCtx(t)
			sub := c.SSubscribe(ctx, "news")
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			n := remote.Notice{Channel: "news", Payloads: [][]byte{[]byte("set")}, Sharded: true}
			if err := s.SetNotify(ctx, "k", []byte("v"), time.Minute, n); err != nil {
				t.Fatal(err)
			}
			m, err := sub.ReceiveMessage(ctx)
			if err != nil || m.Payload != "set" {
				t.Fatalf("received %+v, %v", m, err)
			}
			n.Payloads = [][]byte{[]byte("del")}
			if err := s.DeleteNotify(ctx, []string{"k"}, n); err != nil {
				t.Fatal(err)
			}
			if m, err := sub.ReceiveMessage(ctx); err != nil || m.Payload != "del" {
				t.Fatalf("received %+v, %v", m, err)
			}
		})
	}
}
