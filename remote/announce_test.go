package remote_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
	"github.com/tier-cache/tier/remote"
)

// pubsubKinds are the two ways a Store announces: PUBLISH, and SPUBLISH
// (Options.Sharded), which miniredis lacks.
var pubsubKinds = []struct {
	name    string
	sharded bool
}{{"PUBLISH", false}, {"SPUBLISH", true}}

// With a Channel, a subscriber receives exactly the payloads Announce
// returned, and nothing else: for Set, those for its key; for Delete, those
// for all its keys at once where one script can name them all (one
// server), and otherwise those for each key in turn.
func TestAnnounce(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, ps := range pubsubKinds {
			t.Run(ps.name, func(t *testing.T) {
				if ps.sharded && !e.sharded {
					t.Skip("the server has no sharded pub/sub")
				}
				for _, kind := range clientKinds {
					t.Run(kind.name, func(t *testing.T) {
						c := kind.wrap(e.client(t))
						a := &announcer{}
						s := mustNew(t, c, remote.Options{Channel: "news", Sharded: ps.sharded, Announce: a.announce})
						quiet := mustNew(t, c, remote.Options{})
						l := listen(t, e.client(t), "news", ps.sharded)
						ctx := testCtx(t)

						mustSet(t, s, "k", "v", time.Minute)
						calls, payloads := a.take()
						if want := [][]string{{"k"}}; !slices.EqualFunc(calls, want, slices.Equal) {
							t.Fatalf("Set called Announce with %q; want %q", calls, want)
						}
						l.expect(t, payloads)
						if v, _ := mustGet(t, s, "k"); string(v) != "v" {
							t.Fatalf("after Set, k = %q", v)
						}

						keys := []string{"k", "{x}a", "b", "absent"}
						mustSet(t, quiet, "{x}a", "v", time.Minute)
						mustSet(t, quiet, "b", "v", time.Minute)
						if err := s.Delete(ctx, keys...); err != nil {
							t.Fatal(err)
						}
						calls, payloads = a.take()
						// One announcement of all keys where it follows the
						// scripts; else one per script: one script on a single
						// server, one a key elsewhere.
						want := [][]string{keys}
						if !singleNode(c) && !ps.sharded {
							want = [][]string{{"k"}, {"{x}a"}, {"b"}, {"absent"}}
						}
						if !slices.EqualFunc(calls, want, slices.Equal) {
							t.Fatalf("Delete called Announce with %q; want %q", calls, want)
						}
						l.expect(t, payloads)
						for i, v := range mustGetMany(t, s, keys) {
							if v != nil {
								t.Fatalf("after Delete, %s = %q", keys[i], v)
							}
						}

						if err := s.Delete(ctx); err != nil {
							t.Fatal(err)
						}
						if calls, _ := a.take(); len(calls) != 0 {
							t.Fatalf("Delete() called Announce with %q; want no call", calls)
						}
						l.expectNothing(t)
					})
				}
			})
		}
	})
}

// Without a Channel nothing is published, on any channel, and Announce is
// never called.
func TestNothingPublishedWithoutChannel(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, kind := range clientKinds {
			t.Run(kind.name, func(t *testing.T) {
				raw := e.client(t)
				ctx := testCtx(t)
				all := raw.PSubscribe(ctx, "*")
				defer all.Close()
				if _, err := all.Receive(ctx); err != nil { // the confirmation
					t.Fatal(err)
				}
				a := &announcer{}
				s := mustNew(t, kind.wrap(e.client(t)), remote.Options{Announce: a.announce, Sharded: true})
				mustSet(t, s, "k", "v", time.Minute)
				if _, err := s.Add(ctx, "l", []byte("v"), time.Minute); err != nil {
					t.Fatal(err)
				}
				if _, err := s.AddMany(ctx, []string{"m", "n"}, [][]byte{[]byte("v"), []byte("v")}, time.Minute); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Swap(ctx, "k", []byte("v"), []byte("w"), time.Minute); err != nil {
					t.Fatal(err)
				}
				if err := s.SwapMany(ctx, []remote.SwapItem{{Key: "l", Old: []byte("v")}}); err != nil {
					t.Fatal(err)
				}
				if err := s.Delete(ctx, "k", "m", "n"); err != nil {
					t.Fatal(err)
				}
				if calls, _ := a.take(); len(calls) != 0 {
					t.Fatalf("Announce was called with %q", calls)
				}
				if err := raw.Publish(ctx, "fence", "fence").Err(); err != nil {
					t.Fatal(err)
				}
				m, err := all.ReceiveMessage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if m.Channel != "fence" {
					t.Fatalf("a Store without a Channel published %q on %q", m.Payload, m.Channel)
				}
			})
		}
	})
}

// An Announce that fails fails the write, with its error, and the write
// does not happen, except where the announcement follows the write (a
// Sharded Store on keys spread over nodes), as the doc of Set says.
func TestAnnounceErrorFailsTheWrite(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, ps := range pubsubKinds {
			t.Run(ps.name, func(t *testing.T) {
				if ps.sharded && !e.sharded {
					t.Skip("the server has no sharded pub/sub")
				}
				for _, kind := range clientKinds {
					t.Run(kind.name, func(t *testing.T) {
						c := kind.wrap(e.client(t))
						boom := errors.New("boom")
						a := &announcer{err: boom}
						s := mustNew(t, c, remote.Options{Channel: "news", Sharded: ps.sharded, Announce: a.announce})
						quiet := mustNew(t, c, remote.Options{})
						after := ps.sharded && !singleNode(c)
						ctx := testCtx(t)

						err := s.Set(ctx, "k", []byte("v"), time.Minute)
						if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), `remote: set "k": `) {
							t.Fatalf("Set with a failing Announce = %v; want boom, naming the key", err)
						}
						if _, ok := mustGet(t, quiet, "k"); ok != after {
							t.Fatalf("after a Set whose Announce failed, k present = %v; want %v", ok, after)
						}

						mustSet(t, quiet, "a", "kept", time.Minute)
						mustSet(t, quiet, "b", "kept", time.Minute)
						err = s.Delete(ctx, "a", "b")
						if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), `remote: delete "a" and 1 more: `) {
							t.Fatalf("Delete with a failing Announce = %v; want boom, naming the keys", err)
						}
						for i, v := range mustGetMany(t, quiet, []string{"a", "b"}) {
							if (v == nil) != after {
								t.Fatalf("after a Delete whose Announce failed, key %d = %q; want deleted %v", i, v, after)
							}
						}
					})
				}
			})
		}
	})
}

// A user who may write the keys but not announce on the channel gets an
// error from Set and Delete, and Redis keeps its keys as they were: the
// script checks the right to publish before it writes (Redis 7 and
// later). Granting the missing right then lets the same Store write and
// announce.
func TestAnnouncementRefusedMeansNoWrite(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	if v := serverVersion(t, admin); v < 7 {
		t.Skipf("Redis %d cannot check ACLs from a script", v)
	}
	tests := []struct {
		name    string
		sharded bool
		denied  string // rules that miss one right
		grant   string // the missing right
	}{
		{"channel not granted", false, "+publish &other", "&news"},
		{"PUBLISH not granted", false, "&news", "+publish"},
		{"shard channel not granted", true, "+spublish &other", "&news"},
		{"SPUBLISH not granted", true, "&news", "+spublish"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			user := fmt.Sprint("writer", i)
			a := &announcer{}
			s := storeAs(t, srv, user, remote.Options{Channel: "news", Sharded: tt.sharded, Announce: a.announce},
				"~ns:*", "-@all", "+get", "+set", "+unlink", "+eval", "+evalsha", tt.denied)
			l := listen(t, admin, "news", tt.sharded)
			if err := admin.Set(ctx, "ns:kept", "old", time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			if err := admin.Del(ctx, "ns:k").Err(); err != nil {
				t.Fatal(err)
			}

			for _, k := range []string{"k", "kept"} {
				err := s.Set(ctx, k, []byte("new"), time.Minute)
				if !redis.IsPermissionError(err) || !strings.HasPrefix(err.Error(), fmt.Sprintf("remote: set %q: ", k)) {
					t.Fatalf("Set(%s) by a user who may not announce = %v; want a NOPERM error naming the key", k, err)
				}
			}
			if n := admin.Exists(ctx, "ns:k").Val(); n != 0 {
				t.Fatal("Set wrote a new key although it could not announce it")
			}
			if v := admin.Get(ctx, "ns:kept").Val(); v != "old" {
				t.Fatalf("Set overwrote a key although it could not announce it: %q", v)
			}
			if err := s.Delete(ctx, "kept", "k"); !redis.IsPermissionError(err) || !strings.HasPrefix(err.Error(), `remote: delete "kept" and 1 more: `) {
				t.Fatalf("Delete by a user who may not announce = %v; want a NOPERM error naming the keys", err)
			}
			if v := admin.Get(ctx, "ns:kept").Val(); v != "old" {
				t.Fatalf("Delete removed a key although it could not announce it: %q", v)
			}
			if got := admin.PTTL(ctx, "ns:kept").Val(); got <= time.Minute {
				t.Fatalf("a refused write changed the TTL of the key to %v", got)
			}
			a.take()
			l.expectNothing(t)

			if err := admin.Do(ctx, "ACL", "SETUSER", user, tt.grant).Err(); err != nil {
				t.Fatal(err)
			}
			mustSet(t, s, "k", "new", time.Minute)
			if v := admin.Get(ctx, "ns:k").Val(); v != "new" {
				t.Fatalf("once granted %s, Set wrote %q", tt.grant, v)
			}
			if err := s.Delete(ctx, "kept"); err != nil {
				t.Fatalf("once granted %s, Delete = %v", tt.grant, err)
			}
			if n := admin.Exists(ctx, "ns:kept").Val(); n != 0 {
				t.Fatal("once granted, Delete left the key")
			}
			_, payloads := a.take()
			l.expect(t, payloads)
		})
	}
}

// A Ring keeps each key on one of several servers, and a subscriber
// (Ring.Subscribe, as invalidate.Bus does) listens on the server the
// channel's name maps to. Every Set must still be heard there.
func TestAnnounceOnRing(t *testing.T) {
	m1, m2 := miniredis.RunT(t), miniredis.RunT(t)
	ring := redis.NewRing(&redis.RingOptions{
		Addrs:                 map[string]string{"one": m1.Addr(), "two": m2.Addr()},
		ContextTimeoutEnabled: true,
	})
	defer ring.Close()
	ctx := testCtx(t)
	if err := ring.Ping(ctx).Err(); err != nil { // shards come up in the background
		t.Fatal(err)
	}
	a := &announcer{}
	s := mustNew(t, ring, remote.Options{Channel: "news", Announce: a.announce})
	ps := ring.Subscribe(ctx, "news")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = fmt.Sprint("key-", i)
		mustSet(t, s, keys[i], "v", time.Minute)
	}
	_, payloads := a.take()
	// The subscriber listens on one server; the fence reaches it from
	// either, after whatever that server published before.
	for _, m := range []*miniredis.Miniredis{m1, m2} {
		m.Publish("news", "fence")
	}
	var got []string
	for {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Payload == "fence" {
			break
		}
		got = append(got, msg.Payload)
	}
	if !slices.Equal(got, payloads) {
		t.Fatalf("on a Ring a subscriber heard %d of the %d announcements", len(got), len(payloads))
	}
}
