package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
)

// With StaleGrace, an expired value is served when its reload fails,
// from the near tier or from Redis; not past the grace, and a deleted key
// never.
func TestStaleGrace(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	loader := &versionLoader{}
	opts := Options{Redis: client, Near: NearOptions{TTL: 10 * time.Second}, FarTTL: 10 * time.Second, Jitter: -1,
		Refresh: RefreshOptions{StaleGrace: time.Minute}, Clock: clock}
	c := newCache[string](t, opts)
	ctx := context.Background()
	if v, err := c.Get(ctx, "k", loader); err != nil || v != "v1" {
		t.Fatalf("first Get = %q, %v", v, err)
	}
	clock.Advance(11 * time.Second)
	m.FastForward(11 * time.Second)
	loader.fail.Store(true)
	r, err := c.Fetch(ctx, "k", loader)
	if err != nil || r.Value != "v1" || !r.Stale {
		t.Fatalf("Fetch of an expired key whose reload fails = %+v, %v; want the stale v1", r, err)
	}
	if n := loader.calls.Load(); n != 2 {
		t.Fatalf("%d loads, want 2: the expired key is reloaded", n)
	}
	if st := c.Stats(); st.StaleServed != 1 || st.LoadErrors != 1 {
		t.Fatalf("stats = %+v, want 1 stale value served and 1 load error", st)
	}
	// A replica with an empty near tier finds the stale copy in Redis.
	other := newCache[string](t, opts)
	if r, err := other.Fetch(ctx, "k", loader); err != nil || r.Value != "v1" || !r.Stale || r.Source != SourceFar {
		t.Fatalf("other replica = %+v, %v; want the stale v1 from Redis", r, err)
	}
	if st := other.Stats(); st.StaleServed != 1 {
		t.Fatalf("other replica: StaleServed = %d, want 1", st.StaleServed)
	}
	// Past the grace, nothing stale is left.
	clock.Advance(time.Minute)
	m.FastForward(time.Minute)
	if v, err := c.Get(ctx, "k", loader); err == nil {
		t.Fatalf("a value past its grace was served: %q", v)
	}
	// Only expiry earns grace: a deleted key is never served stale.
	loader.fail.Store(false)
	if _, err := c.Get(ctx, "d", loader); err != nil {
		t.Fatal(err)
	}
	clock.Advance(11 * time.Second)
	m.FastForward(11 * time.Second)
	if err := c.Delete(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	loader.fail.Store(true)
	if v, err := c.Get(ctx, "d", loader); err == nil {
		t.Fatalf("a deleted key was served stale: %q", v)
	}
}

// With SoftTimeout, a caller holding a stale value waits that long for a
// slow reload, then gets the stale value; the reload goes on and lands.
func TestStaleGraceSoftTimeout(t *testing.T) {
	clock := newFakeClock()
	release := make(chan struct{})
	var slow atomic.Bool
	loader := LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		if slow.Load() {
			select {
			case <-release:
				return "new", nil
			case <-ctx.Done(): // the test ended early
				return "", ctx.Err()
			}
		}
		return "old", nil
	})
	c := newCache[string](t, Options{Near: NearOptions{TTL: 10 * time.Second}, Jitter: -1,
		Refresh: RefreshOptions{StaleGrace: time.Minute, SoftTimeout: 20 * time.Millisecond}, Clock: clock})
	ctx := context.Background()
	if _, err := c.Get(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	clock.Advance(11 * time.Second)
	slow.Store(true)
	// The reload is held until after this Get returns: it can only return
	// the stale value, by the soft timeout. (The deadline only turns a
	// hang into a failure.)
	wctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	if r, err := c.Fetch(wctx, "k", loader); err != nil || r.Value != "old" || !r.Stale {
		t.Fatalf("Fetch during a slow reload = %+v, %v; want the stale old", r, err)
	}
	close(release)
	settle(t, c, "k")
	if r, err := c.Fetch(ctx, "k", loader); err != nil || r.Value != "new" || r.Stale || r.Source != SourceNear {
		t.Fatalf("after the reload: %+v, %v; want new from the near tier", r, err)
	}
	if st := c.Stats(); st.StaleServed != 1 {
		t.Fatalf("StaleServed = %d, want 1", st.StaleServed)
	}
}

// holdGet is a go-redis hook that, once armed, holds the next GET before
// it is sent, until released.
type holdGet struct {
	armed   atomic.Bool
	reached chan struct{}
	release chan struct{}
}

func (h *holdGet) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdGet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "get" && h.armed.CompareAndSwap(true, false) {
			close(h.reached)
			<-h.release
		}
		return next(ctx, cmd)
	}
}

func (h *holdGet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// SoftTimeout bounds the whole wait of a caller that holds a stale value,
// the read of Redis included: a GET that does not answer (held here until
// the caller has returned) does not hold the caller beyond it.
func TestSoftTimeoutBoundsTheRedisRead(t *testing.T) {
	m, _, _ := newMiniredis(t)
	hold := &holdGet{reached: make(chan struct{}), release: make(chan struct{})}
	client := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	client.AddHook(hold)
	t.Cleanup(func() { client.Close() })
	clock := newFakeClock()
	c := newCache[string](t, Options{Redis: client, Near: NearOptions{TTL: 10 * time.Second}, FarTTL: time.Hour, Jitter: -1,
		Refresh: RefreshOptions{StaleGrace: time.Minute, SoftTimeout: 20 * time.Millisecond}, Clock: clock})
	ctx := context.Background()
	if _, err := c.Get(ctx, "k", constLoader("old")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(11 * time.Second) // the near copy is stale; Redis's is fresh
	hold.armed.Store(true)
	released := false
	defer func() {
		if !released {
			close(hold.release)
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, patience) // turns a hang into a failure
	defer cancel()
	r, err := c.Fetch(wctx, "k", constLoader("unused"))
	select {
	case <-hold.reached:
	default:
		t.Fatal("the reload did not read Redis")
	}
	if err != nil || r.Value != "old" || !r.Stale {
		t.Fatalf("Fetch while Redis does not answer = %+v, %v; want the stale old", r, err)
	}
	close(hold.release)
	released = true
	settle(t, c, "k")
	if r, err := c.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != "old" || r.Stale || r.Source != SourceNear {
		t.Fatalf("after the read answered: %+v, %v; want old, fresh from the near tier", r, err)
	}
}

// With StaleGrace, a cached "not found" still lives NotFoundTTL, in Redis
// too: a key the source has made since is loaded once it is over, not
// StaleGrace later.
func TestNotFoundEarnsNoGrace(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var exists atomic.Bool
	loader := LoaderFunc[string](func(context.Context, string) (string, error) {
		if !exists.Load() {
			return "", ErrNotFound
		}
		return "made", nil
	})
	opts := Options{Redis: client, NotFoundTTL: 10 * time.Second, Jitter: -1,
		Refresh: RefreshOptions{StaleGrace: time.Hour}, Clock: clock}
	a := newCache[string](t, opts)
	b := newCache[string](t, opts)
	ctx := context.Background()
	if _, err := a.Get(ctx, "k", loader); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	if ttl := m.TTL("tier:k"); ttl != 10*time.Second {
		t.Fatalf("the Redis tombstone lives %v, want NotFoundTTL (10s)", ttl)
	}
	exists.Store(true)
	clock.Advance(11 * time.Second)
	m.FastForward(11 * time.Second)
	for _, c := range []*Cache[string]{a, b} {
		if v, err := c.Get(ctx, "k", loader); err != nil || v != "made" {
			t.Fatalf("Get past NotFoundTTL = %q, %v; want the value the source made", v, err)
		}
	}
	// Nor is an expired "not found" served for a failed reload.
	exists.Store(false)
	if _, err := a.Get(ctx, "j", loader); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	clock.Advance(11 * time.Second)
	if _, err := a.Get(ctx, "j", failLoader(errors.New("source down"))); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an expired not-found whose reload fails = %v; want the load's error", err)
	}
	if st := a.Stats(); st.StaleServed != 0 {
		t.Fatalf("StaleServed = %d, want 0", st.StaleServed)
	}
}

// With StaleGrace, GetMany treats a Redis copy past its TTL as Get does:
// it reloads it and writes over it, and serves it only when the reload
// fails.
func TestGetManyServesStale(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var failing atomic.Bool
	var loads atomic.Int64
	batch := BatchLoaderFunc[string](func(_ context.Context, keys []string) (map[string]string, error) {
		n := loads.Add(1)
		if failing.Load() {
			return nil, errors.New("source down")
		}
		out := map[string]string{}
		for _, k := range keys {
			out[k] = fmt.Sprintf("%s-%d", k, n)
		}
		return out, nil
	})
	opts := Options{Redis: client, Near: NearOptions{TTL: 10 * time.Second}, FarTTL: 10 * time.Second, Jitter: -1,
		Refresh: RefreshOptions{StaleGrace: time.Hour}, Clock: clock}
	a := newCache[string](t, opts)
	b := newCache[string](t, opts)
	ctx := context.Background()
	if got, err := a.GetMany(ctx, []string{"k"}, batch); err != nil || got["k"] != "k-1" {
		t.Fatalf("first GetMany = %v, %v", got, err)
	}
	clock.Advance(30 * time.Minute) // past FarTTL, within the grace
	m.FastForward(30 * time.Minute)

	failing.Store(true)
	// From the near tier of a, and from Redis for b.
	for name, c := range map[string]*Cache[string]{"near": a, "far": b} {
		got, err := c.GetMany(ctx, []string{"k"}, batch)
		if err != nil || got["k"] != "k-1" {
			t.Fatalf("%s: GetMany of an expired key whose reload fails = %v, %v; want the stale k-1 and no error", name, got, err)
		}
		if st := c.Stats(); st.StaleServed != 1 {
			t.Fatalf("%s: StaleServed = %d, want 1", name, st.StaleServed)
		}
	}
	got, err := b.GetMany(ctx, []string{"k", "other"}, batch)
	if err == nil || got["k"] != "k-1" {
		t.Fatalf("GetMany with a key that has nothing stale = %v, %v; want k's stale value and an error", got, err)
	}
	if _, ok := got["other"]; ok {
		t.Fatalf("GetMany = %v, want no value for other", got)
	}

	failing.Store(false)
	before := loads.Load()
	if got, err := b.GetMany(ctx, []string{"k"}, batch); err != nil || got["k"] == "k-1" {
		t.Fatalf("GetMany of an expired key with a working source = %v, %v; want a reloaded value", got, err)
	}
	if loads.Load() != before+1 {
		t.Fatalf("%d loads, want 1", loads.Load()-before)
	}
	if v, err := m.Get("tier:k"); err != nil || !strings.Contains(v, "k-") || strings.Contains(v, "k-1") {
		t.Fatalf("Redis holds %q, %v: want the reloaded value written over the expired one", v, err)
	}
}

// The stale copy in Redis, on a real redis-server: the swap script of the
// reload leaves it when the load fails, and replaces it when the load
// succeeds. (The value's header is judged by the fake clock; Redis keeps
// the key for FarTTL + StaleGrace of real time.)
func TestStaleGraceRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	clock := newFakeClock()
	var failing atomic.Bool
	loader := LoaderFunc[string](func(context.Context, string) (string, error) {
		if failing.Load() {
			return "", errors.New("source down")
		}
		return "fresh", nil
	})
	opts := Options{Redis: srv.Client(t), Namespace: "stale", Near: NearOptions{TTL: 10 * time.Second}, FarTTL: 10 * time.Second,
		Jitter: -1, Refresh: RefreshOptions{StaleGrace: time.Minute}, Clock: clock}
	a := newCache[string](t, opts)
	ctx := context.Background()
	if err := a.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	if ttl := srv.Client(t).PTTL(ctx, "stale:k").Val(); ttl <= 10*time.Second || ttl > 70*time.Second {
		t.Fatalf("Redis keeps the value %v, want FarTTL + StaleGrace (70s)", ttl)
	}
	clock.Advance(11 * time.Second)
	failing.Store(true)
	for i := range 2 { // a fresh replica each time: the stale copy stays in Redis
		opts.Redis = srv.Client(t)
		r, err := newCache[string](t, opts).Fetch(ctx, "k", loader)
		if err != nil || r.Value != "old" || !r.Stale || r.Source != SourceFar {
			t.Fatalf("replica %d: %+v, %v; want the stale old from Redis", i, r, err)
		}
	}
	failing.Store(false)
	opts.Redis = srv.Client(t)
	if r, err := newCache[string](t, opts).Fetch(ctx, "k", loader); err != nil || r.Value != "fresh" || r.Stale {
		t.Fatalf("after the source is back: %+v, %v; want a fresh load", r, err)
	}
	opts.Redis = srv.Client(t)
	if r, err := newCache[string](t, opts).Fetch(ctx, "k", loader); err != nil || r.Value != "fresh" || r.Source != SourceFar {
		t.Fatalf("the reload did not replace the stale copy in Redis: %+v, %v", r, err)
	}
}
