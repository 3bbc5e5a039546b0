package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
)

// aclUser is the least-privilege ACL user that README.md documents, for
// the namespace "app": its keys, its invalidation channel, and the
// commands tier sends, nothing else:
//
//   - GET reads a key, MGET a batch of keys (GetMany);
//   - SET takes a load's lease (SET NX PX);
//   - EVALSHA, and EVAL when the server does not have the script yet (and
//     always in pipelines: GetMany's writes), run the scripts, which call
//     SET and PUBLISH (Set), UNLINK and PUBLISH (Delete), GET, SET and
//     DEL (a load's write over its lease, or the lease given back); a
//     script's commands are checked against the ACL too;
//   - PUBLISH sends Invalidate's and InvalidateAll's messages;
//   - INCR, in InvalidateTag's script, advances the tag clock (whose key,
//     and the markers', are under "app:" too);
//   - SUBSCRIBE receives them; PING checks the subscription and, after
//     an outage, Redis.
//
// -@all says that nothing else is allowed (a new user's default); each
// other rule is needed: TestLeastPrivilegeACLUser fails without any one
// of them. With Invalidation.Sharded, +spublish +ssubscribe in place of
// +publish +subscribe; with Invalidation.WatchExternalWrites, also
// +config|get +psubscribe and the pattern of the notifications' channels,
// &__keyspace@<db>__:app:* (TestACLUserWatchingExternalWrites). On Redis
// 7.2 and later go-redis also sends CLIENT SETINFO when it connects, and
// ignores its failure.
const aclUser = "~app:* &app:invalidate -@all +get +mget +set +del +unlink +incr +publish +subscribe +ping +evalsha +eval"

// setUser creates (or resets) the user name with password "s3cret" and
// rules, and returns a client connecting as it, closed when the test ends.
func setUser(t *testing.T, srv *redistest.Server, name, rules string) *redis.Client {
	t.Helper()
	args := []any{"ACL", "SETUSER", name, "reset", "on", ">s3cret"}
	for _, r := range strings.Fields(rules) {
		args = append(args, r)
	}
	if err := srv.Client(t).Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %s: %v", rules, err)
	}
	return userClient(t, srv, name)
}

// userClient returns a client that connects as the user name.
func userClient(t *testing.T, srv *redistest.Server, name string) *redis.Client {
	o := srv.Options()
	o.Username, o.Password = name, "s3cret"
	o.MaxRetries = -1
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// aclDenials returns what the server's ACL log recorded as denied to
// user, and clears the log.
func aclDenials(t *testing.T, srv *redistest.Server, user string) []string {
	t.Helper()
	ctx := context.Background()
	admin := srv.Client(t)
	entries, err := admin.ACLLog(ctx, 100).Result()
	if err != nil {
		t.Fatal(err)
	}
	var denied []string
	for _, e := range entries {
		if e.Username == user {
			denied = append(denied, fmt.Sprintf("%s %s (%s)", e.Reason, e.Object, e.Context))
		}
	}
	if err := admin.ACLLogReset(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	return denied
}

// exerciseAsUser runs every operation of two replicas, a and b, connected
// as user, and returns the first failure: an error, a far error counted,
// or a command the server denied.
func exerciseAsUser(t *testing.T, srv *redistest.Server, user string, sharded bool) error {
	t.Helper()
	ctx := context.Background()
	// subscribe subscribes to the channel as a Bus does; a subscription
	// refused would make WaitReady below wait in vain.
	subscribe := func() *redis.PubSub {
		if sharded {
			return userClient(t, srv, user).SSubscribe(ctx, "app:invalidate")
		}
		return userClient(t, srv, user).Subscribe(ctx, "app:invalidate")
	}
	ps := subscribe()
	_, err := ps.Receive(ctx)
	ps.Close()
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	opts := Options{Namespace: "app", FarTimeout: generous, Invalidation: InvalidationOptions{Sharded: sharded}}
	opts.Redis = userClient(t, srv, user)
	a, err := New[string](opts)
	if err != nil {
		return fmt.Errorf("New: %w", err)
	}
	t.Cleanup(func() { a.Close() })
	opts.Redis = userClient(t, srv, user)
	b, err := New[string](opts)
	if err != nil {
		return fmt.Errorf("New: %w", err)
	}
	t.Cleanup(func() { b.Close() })
	for _, c := range []*Cache[string]{a, b} {
		wctx, cancel := context.WithTimeout(ctx, patience)
		err := c.WaitReady(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("WaitReady: %w", err)
		}
	}
	bEvents := events(b)
	steps := []struct {
		name string
		run  func() error
	}{
		{"Set", func() error { return a.Set(ctx, "k", "v1") }},
		{"b hears the Set", func() error { return awaitErr(bEvents, "keys") }},
		{"Get from Redis", func() error {
			r, err := b.Fetch(ctx, "k", constLoader("unused"))
			if err == nil && (r.Value != "v1" || r.Source != SourceFar) {
				err = fmt.Errorf("got %+v", r)
			}
			return err
		}},
		{"Get with a load", func() error {
			r, err := b.Fetch(ctx, "new", constLoader("loaded"))
			if err == nil && (r.Value != "loaded" || r.Source != SourceLoad) {
				err = fmt.Errorf("got %+v", r)
			}
			if err == nil && srv.Client(t).Exists(ctx, "app:new").Val() != 1 {
				err = errors.New("the load stored nothing")
			}
			return err
		}},
		{"Get of a missing key", func() error {
			if _, err := b.Get(ctx, "none", failLoader(ErrNotFound)); !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("got %v", err)
			}
			return nil
		}},
		{"a failed load gives its lease back", func() error {
			if _, err := b.Get(ctx, "failed", failLoader(errors.New("source down"))); err == nil {
				return errors.New("no error")
			}
			if n := srv.Client(t).Exists(ctx, "app:failed").Val(); n != 0 {
				return errors.New("the lease is still in Redis")
			}
			return nil
		}},
		{"Delete", func() error { return a.Delete(ctx, "k", "new") }},
		{"b hears the Delete", func() error { return awaitErr(bEvents, "keys") }},
		{"Invalidate", func() error { return a.Invalidate(ctx, "k") }},
		{"b hears the Invalidate", func() error { return awaitErr(bEvents, "keys") }},
		{"InvalidateAll", func() error { return a.InvalidateAll(ctx) }},
		{"b hears the InvalidateAll", func() error { return awaitErr(bEvents, "all") }},
		{"Set with a tag", func() error { return a.Set(ctx, "tagged", "v", "t") }},
		{"b hears the tagged Set", func() error { return awaitErr(bEvents, "keys") }},
		{"InvalidateTag", func() error { return a.InvalidateTag(ctx, "t") }},
		{"b hears the InvalidateTag", func() error { return awaitErr(bEvents, "tags") }},
		{"GetMany", func() error {
			got, err := b.GetMany(ctx, []string{"x", "y", "none"}, BatchLoaderFunc[string](func(context.Context, []string) (map[string]string, error) {
				return map[string]string{"x": "1", "y": "2"}, nil
			}))
			if err == nil && (got["x"] != "1" || got["y"] != "2" || srv.Client(t).Exists(ctx, "app:x", "app:y").Val() != 2) {
				err = fmt.Errorf("got %v, and Redis did not store them", got)
			}
			return err
		}},
		{"GetMany of far hits", func() error {
			got, err := a.GetMany(ctx, []string{"x", "y"}, BatchLoaderFunc[string](func(context.Context, []string) (map[string]string, error) {
				return nil, errors.New("no load expected")
			}))
			if err == nil && len(got) != 2 {
				err = fmt.Errorf("got %v", got)
			}
			return err
		}},
		{"PING, as the breaker's probe sends it", func() error { return a.breaker.ping(ctx) }},
		{"PING on a subscription, as the health check sends it", func() error {
			ps := subscribe()
			defer ps.Close()
			if _, err := ps.Receive(ctx); err != nil {
				return err
			}
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			_, err := ps.Receive(ctx)
			return err
		}},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if d := aclDenials(t, srv, user); len(d) > 0 {
			return fmt.Errorf("%s: the server denied %q", s.name, d)
		}
	}
	for _, c := range []*Cache[string]{a, b} {
		if st := c.Stats(); st.FarErrors != 0 {
			return fmt.Errorf("%d far errors", st.FarErrors)
		}
	}
	return nil
}

// awaitErr is await that returns its failure.
func awaitErr(ch <-chan string, want string) error {
	select {
	case got := <-ch:
		if got != want {
			return fmt.Errorf("event %q, want %q", got, want)
		}
		return nil
	case <-time.After(patience):
		return fmt.Errorf("no %q event", want)
	}
}

// The documented user works end to end on a real redis-server, with
// classic and sharded pub/sub, and is confined to its namespace; without
// any one of its rules something fails.
func TestLeastPrivilegeACLUser(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	sharded := strings.NewReplacer("+publish", "+spublish", "+subscribe", "+ssubscribe").Replace(aclUser)
	t.Run("documented", func(t *testing.T) {
		user := setUser(t, srv, "tier-app", aclUser)
		if err := exerciseAsUser(t, srv, "tier-app", false); err != nil {
			t.Fatalf("as the documented user: %v", err)
		}
		// And the user really is confined to its namespace and channel.
		if err := user.Set(ctx, "other:k", "v", 0).Err(); err == nil {
			t.Fatal("the ACL user wrote outside its namespace")
		}
		if err := user.Publish(ctx, "other:invalidate", "k").Err(); err == nil {
			t.Fatal("the ACL user published on another channel")
		}
		if err := user.FlushAll(ctx).Err(); err == nil {
			t.Fatal("the ACL user flushed the server")
		}
		aclDenials(t, srv, "tier-app")
	})
	t.Run("sharded", func(t *testing.T) {
		srv.Client(t).FlushAll(ctx)
		setUser(t, srv, "tier-sharded", sharded)
		if err := exerciseAsUser(t, srv, "tier-sharded", true); err != nil {
			t.Fatalf("as the documented user with sharded pub/sub: %v", err)
		}
	})
	for _, tc := range []struct {
		rules   string
		sharded bool
	}{{aclUser, false}, {sharded, true}} {
		for _, drop := range strings.Fields(tc.rules) {
			if drop == "-@all" {
				continue
			}
			t.Run(fmt.Sprintf("sharded=%v/without %s", tc.sharded, drop), func(t *testing.T) {
				srv.Client(t).FlushAll(ctx)
				var keep []string
				for _, r := range strings.Fields(tc.rules) {
					if r != drop {
						keep = append(keep, r)
					}
				}
				setUser(t, srv, "tier-less", strings.Join(keep, " "))
				if err := exerciseAsUser(t, srv, "tier-less", tc.sharded); err == nil {
					t.Fatalf("everything works without %s: the documented user has a rule too many", drop)
				} else {
					t.Logf("without %s: %v", drop, err)
				}
				aclDenials(t, srv, "tier-less")
			})
		}
	}
}

// A user that may write its keys but not publish on its channel gets an
// error from Set and Delete, and Redis is not written: the scripts check
// the ACL before the write (Redis 7 and later), so that no write goes
// unannounced. Nor does the near tier keep anything of the key.
func TestACLUserWithoutPublish(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	setUser(t, srv, "no-publish", strings.Replace(aclUser, "+publish", "", 1))
	c := newCache[string](t, Options{Redis: userClient(t, srv, "no-publish"), Namespace: "app"})
	admin := srv.Client(t)
	if err := c.Set(ctx, "k", "v"); err == nil || !strings.Contains(err.Error(), "PUBLISH") {
		t.Fatalf("Set by a user who may not publish = %v, want an error naming PUBLISH", err)
	}
	if n := admin.Exists(ctx, "app:k").Val(); n != 0 {
		t.Fatal("Set failed, and wrote Redis all the same: a write no replica hears of")
	}
	if _, ok := c.near.Peek("k"); ok {
		t.Fatal("the near tier holds a copy of a key whose Set failed")
	}
	// A load needs no message: it works, and stores its value.
	if v, err := c.Get(ctx, "loaded", constLoader("v")); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if n := admin.Exists(ctx, "app:loaded").Val(); n != 1 {
		t.Fatal("the load stored nothing")
	}
	if err := c.Delete(ctx, "loaded"); err == nil {
		t.Fatal("Delete by a user who may not publish succeeded")
	}
	if n := admin.Exists(ctx, "app:loaded").Val(); n != 1 {
		t.Fatal("Delete failed, and deleted all the same: a change no replica hears of")
	}
	if _, ok := c.near.Peek("loaded"); ok {
		t.Fatal("the near tier holds a copy of a key whose Delete failed")
	}
	if err := c.Invalidate(ctx, "loaded"); err == nil {
		t.Fatal("Invalidate by a user who may not publish succeeded")
	}
	if h := c.Health(); h.Degraded {
		t.Fatalf("a refused permission took Redis for down: %v", h)
	}
}

// Invalidation.WatchExternalWrites needs three rules more: +config|get
// (New checks the server's notify-keyspace-events), +psubscribe and the
// notifications' channel pattern.
func TestACLUserWatchingExternalWrites(t *testing.T) {
	srv := redistest.Start(t)
	enableKeyspaceEvents(t, srv, "K$gx")
	ctx := context.Background()
	opts := Options{Namespace: "app", Invalidation: InvalidationOptions{WatchExternalWrites: true}}
	setUser(t, srv, "watcher", aclUser)
	opts.Redis = userClient(t, srv, "watcher")
	if _, err := New[string](opts); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "+config|get") {
		t.Fatalf("New as a user without +config|get = %v, want an error naming it", err)
	}
	aclDenials(t, srv, "watcher")
	setUser(t, srv, "watcher", aclUser+" +config|get +psubscribe &__keyspace@0__:app:*")
	opts.Redis = userClient(t, srv, "watcher")
	c := newCache[string](t, opts)
	ev := events(c)
	if _, err := c.Get(ctx, "k", constLoader("v")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client(t).Del(ctx, "app:k").Err(); err != nil {
		t.Fatal(err)
	}
	// The load's lease and write, two notifications each, then the DEL.
	for range 5 {
		await(t, ev, "keys")
	}
	if _, ok := c.near.Peek("k"); ok {
		t.Fatal("an outside DEL did not drop the near copy")
	}
	if d := aclDenials(t, srv, "watcher"); len(d) != 0 {
		t.Fatalf("the server denied %q", d)
	}
}
