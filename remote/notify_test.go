package remote_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
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

// A user allowed the key but not the channel gets an error and no write,
// rather than a write that no replica hears of: in a transaction, because
// the server aborts it when it refuses the PUBLISH queued in it; in the
// script used for a user denied MULTI and EXEC, because on Redis 7 it
// checks that the user may publish before it writes.
func TestNotifyDoesBothOrNeither(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	for _, tc := range []struct{ name, rights string }{
		{"transaction", "+multi +exec"},
		{"script", "+evalsha +eval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, _ := storeAs(t, srv, "writer-"+tc.name, "~ns:*", "&allowed", "-@all", "+get", "+set", "+unlink", "+publish", tc.rights)
			if err := admin.Set(ctx, "ns:kept", "old", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if err := admin.Del(ctx, "ns:k").Err(); err != nil {
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
			if v := admin.Get(ctx, "ns:k").Val(); v != "v" {
				t.Fatalf("after SetNotify, Redis holds %q", v)
			}
		})
	}
}

// storeAs returns a Store on srv as a new ACL user with the given rules
// (after "on", the password, resetkeys and resetchannels), and the
// commands its client sends, one line per round trip.
func storeAs(t *testing.T, srv *redistest.Server, user string, rules ...string) (*remote.Store, *sentCommands) {
	t.Helper()
	args := []any{"ACL", "SETUSER", user, "on", ">pw", "resetkeys", "resetchannels"}
	for _, r := range rules {
		for _, f := range strings.Fields(r) {
			args = append(args, f)
		}
	}
	if err := srv.Client(t).Do(testCtx(t), args...).Err(); err != nil {
		t.Fatal(err)
	}
	o := srv.Options()
	o.Username, o.Password = user, "pw"
	c := redis.NewClient(o)
	sent := &sentCommands{}
	c.AddHook(sent)
	t.Cleanup(func() { c.Close() })
	return mustNew(t, c, remote.Options{Namespace: "ns"}), sent
}

// sentCommands records the commands a client sends: one line per round
// trip, its commands' names joined by spaces.
type sentCommands struct {
	mu    sync.Mutex
	trips []string
}

func (h *sentCommands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *sentCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}
func (h *sentCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.add(cmds)
		return next(ctx, cmds)
	}
}

func (h *sentCommands) add(cmds []redis.Cmder) {
	names := make([]string, 0, len(cmds))
	for _, c := range cmds {
		switch c.Name() {
		case "hello", "client", "auth", "select": // go-redis's handshake
			continue
		}
		names = append(names, c.Name())
	}
	if len(names) > 0 {
		h.mu.Lock()
		h.trips = append(h.trips, strings.Join(names, " "))
		h.mu.Unlock()
	}
}

// take returns the round trips recorded since the last take.
func (h *sentCommands) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.trips
	h.trips = nil
	return t
}

// A write and its notice go as one MULTI/EXEC once an empty one has shown
// that the server runs transactions for the user; as one script when it
// does not. Each is one round trip.
func TestNotifyWriteForms(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	n := remote.Notice{Channel: "ch", Payloads: [][]byte{[]byte("a"), []byte("b")}}
	for _, tc := range []struct {
		name, rights string
		first, then  []string
	}{
		{"transaction", "+multi +exec",
			[]string{"multi exec", "multi set publish publish exec"},
			[]string{"multi set publish publish exec", "multi unlink publish exec"}},
		{"script", "+evalsha +eval",
			// A script's first run on a server loads it: EVALSHA, then EVAL.
			[]string{"multi exec", "evalsha", "eval"},
			[]string{"evalsha", "evalsha", "eval"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, sent := storeAs(t, srv, "forms-"+tc.name, "~ns:*", "&ch", "-@all", "+set", "+unlink", "+publish", tc.rights)
			if err := s.SetNotify(ctx, "k", []byte("v"), time.Minute, n); err != nil {
				t.Fatal(err)
			}
			if got := sent.take(); !slices.Equal(got, tc.first) {
				t.Fatalf("first SetNotify sent %q, want %q", got, tc.first)
			}
			if err := s.SetNotify(ctx, "k", []byte("v"), time.Minute, n); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteNotify(ctx, []string{"k"}, remote.Notice{Channel: "ch", Payloads: [][]byte{[]byte("a")}}); err != nil {
				t.Fatal(err)
			}
			if got := sent.take(); !slices.Equal(got, tc.then) {
				t.Fatalf("then SetNotify and DeleteNotify sent %q, want %q", got, tc.then)
			}
		})
	}
}

// When the server refuses MULTI after a Store has found that it ran
// transactions (the user's rights changed), the write's commands run one by
// one; SetNotify then writes and publishes again as one script, so that
// the key's last notice is the write that Redis holds, and keeps to
// scripts.
func TestNotifyAfterMultiIsRevoked(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	admin := srv.Client(t)
	s, sent := storeAs(t, srv, "revoked", "~ns:*", "&ch", "-@all", "+set", "+publish", "+multi +exec +evalsha +eval")
	sub := admin.Subscribe(ctx, "ch")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the confirmation
		t.Fatal(err)
	}
	notice := func(p string) remote.Notice { return remote.Notice{Channel: "ch", Payloads: [][]byte{[]byte(p)}} }
	if err := s.SetNotify(ctx, "k", []byte("v1"), time.Minute, notice("v1")); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "revoked", "-multi").Err(); err != nil {
		t.Fatal(err)
	}
	sent.take()
	if err := s.SetNotify(ctx, "k", []byte("v2"), time.Minute, notice("v2")); err != nil {
		t.Fatalf("SetNotify once MULTI was revoked: %v", err)
	}
	if err := s.SetNotify(ctx, "k", []byte("v3"), time.Minute, notice("v3")); err != nil {
		t.Fatal(err)
	}
	want := []string{"multi set publish exec", "evalsha", "eval", "evalsha"}
	if got := sent.take(); !slices.Equal(got, want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
	var got []string
	for range 4 {
		m, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Payload)
	}
	// v2 twice: one by one when MULTI was refused, then in the script.
	if want := []string{"v1", "v2", "v2", "v3"}; !slices.Equal(got, want) {
		t.Fatalf("the channel carried %q, want %q", got, want)
	}
	if v := admin.Get(ctx, "ns:k").Val(); v != "v3" {
		t.Fatalf("Redis holds %q, want v3", v)
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

// A Notice's Writer channel gets an empty message first, in the round trip
// of the transaction but before it. A user who may not publish there loses
// only that: the transaction runs, and the Store's next ones leave it out.
func TestNotifyWriterChannel(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	sub := srv.Client(t).Subscribe(ctx, "ch", "ch:writer")
	defer sub.Close()
	for range 2 { // the confirmations
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	heard := func(n int) []string {
		t.Helper()
		var got []string
		for range n {
			m, err := sub.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.Channel+"="+m.Payload)
		}
		return got
	}
	n := remote.Notice{Channel: "ch", Payloads: [][]byte{[]byte("a")}, Writer: "ch:writer"}
	for _, tc := range []struct {
		name, channels string
		first, then    []string
		heard          []string // by a subscriber of both, per write
	}{
		{"allowed", "&ch &ch:writer",
			[]string{"multi exec", "ping publish multi set publish exec"},
			[]string{"ping publish multi unlink publish exec"},
			[]string{"ch:writer=", "ch=a"}},
		{"refused", "&ch",
			[]string{"multi exec", "ping publish multi set publish exec"},
			[]string{"multi unlink publish exec"},
			[]string{"ch=a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, sent := storeAs(t, srv, "writer-"+tc.name, "~ns:*", tc.channels, "-@all", "+set", "+unlink", "+publish", "+ping", "+multi +exec")
			if err := s.SetNotify(ctx, "k", []byte("v"), time.Minute, n); err != nil {
				t.Fatal(err)
			}
			if got := sent.take(); !slices.Equal(got, tc.first) {
				t.Fatalf("SetNotify sent %q, want %q", got, tc.first)
			}
			if got := heard(len(tc.heard)); !slices.Equal(got, tc.heard) {
				t.Fatalf("after SetNotify the channels carried %q, want %q", got, tc.heard)
			}
			if v := srv.Client(t).Get(ctx, "ns:k").Val(); v != "v" {
				t.Fatalf("Redis holds %q, want v", v)
			}
			if err := s.DeleteNotify(ctx, []string{"k"}, n); err != nil {
				t.Fatal(err)
			}
			if got := sent.take(); !slices.Equal(got, tc.then) {
				t.Fatalf("DeleteNotify sent %q, want %q", got, tc.then)
			}
			if got := heard(len(tc.heard)); !slices.Equal(got, tc.heard) {
				t.Fatalf("after DeleteNotify the channels carried %q, want %q", got, tc.heard)
			}
		})
	}
}
