package tier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier/codec"
	"github.com/tier-cache/tier/internal/redistest"
)

// schema is the value of the seed scenarios: a table's columns.
type schema struct {
	Table string
	Cols  []string
}

func schemaLoader(calls *atomic.Int64) LoaderFunc[schema] {
	return func(_ context.Context, table string) (schema, error) {
		calls.Add(1)
		return schema{Table: table, Cols: []string{"a", "b"}}, nil
	}
}

// within receives from ch, or fails the test if nothing comes within
// patience: it turns a hang into a failure.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("waited in vain for %s", what)
		panic("unreachable")
	}
}

// failLoader is a loader whose source is down.
func failLoader(err error) LoaderFunc[string] {
	return func(context.Context, string) (string, error) { return "", err }
}

// miniredisServing ignores the connection goroutines miniredis keeps for
// a client's pooled connections, which outlive a cache.
var miniredisServing = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer"),
	goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer.func2"),
}

// The seed's scenario: the second read of a key is a near hit, and the
// source is asked once.
func TestSeedHitCounting(t *testing.T) {
	_, client, _ := newMiniredis(t)
	var calls atomic.Int64
	svc := newCache[schema](t, Options{Redis: client, Near: NearOptions{Capacity: 2}})
	ctx := context.Background()
	for range 2 {
		s, err := svc.Get(ctx, "users", schemaLoader(&calls))
		if err != nil || s.Table != "users" || !slices.Equal(s.Cols, []string{"a", "b"}) {
			t.Fatalf("Get = %+v, %v", s, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("loader calls = %d, want 1", calls.Load())
	}
	if st := svc.Stats(); st.NearHits != 1 || st.Loads != 1 || st.Misses != 1 || st.FarHits != 0 {
		t.Fatalf("stats = %+v, want 1 near hit, 1 miss, 1 load, no far hit", st)
	}
}

// The seed's TTL scenario: the near copy expires on the fake clock and the
// far copy in Redis on miniredis's; each expiry sends the read one tier
// down.
func TestSeedTTLExpiry(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var calls atomic.Int64
	svc := newCache[schema](t, Options{
		Redis: client, Near: NearOptions{Capacity: 2, TTL: time.Second}, FarTTL: 10 * time.Second,
		Jitter: -1, Clock: clock,
	})
	ctx := context.Background()
	get := func() Source {
		t.Helper()
		r, err := svc.Fetch(ctx, "accounts", schemaLoader(&calls))
		if err != nil || r.Value.Table != "accounts" {
			t.Fatalf("Fetch = %+v, %v", r, err)
		}
		return r.Source
	}
	if s := get(); s != SourceLoad {
		t.Fatalf("first read from %v, want load", s)
	}
	if s := get(); s != SourceNear {
		t.Fatalf("second read from %v, want near", s)
	}
	clock.Advance(2 * time.Second) // near copy expired; Redis copy has 8s left
	m.FastForward(2 * time.Second)
	if s := get(); s != SourceFar {
		t.Fatalf("read after the near TTL from %v, want far", s)
	}
	if s := get(); s != SourceNear {
		t.Fatalf("read after a far hit from %v, want near", s)
	}
	clock.Advance(20 * time.Second)
	m.FastForward(20 * time.Second)
	if s := get(); s != SourceLoad {
		t.Fatalf("read after both TTLs from %v, want load", s)
	}
	if calls.Load() != 2 {
		t.Fatalf("loader calls = %d, want 2 (reloaded after both TTLs)", calls.Load())
	}
}

// The seed's LRU scenario: an entry evicted from the near tier is read
// back from Redis, not from the loader.
func TestSeedLRUEvictionReadsRedis(t *testing.T) {
	_, client, _ := newMiniredis(t)
	var calls atomic.Int64
	svc := newCache[schema](t, Options{Redis: client, Near: NearOptions{Capacity: 2}})
	ctx := context.Background()
	for _, k := range []string{"a", "b", "a", "c"} { // c evicts b, the least recently used
		if _, err := svc.Get(ctx, k, schemaLoader(&calls)); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 3 {
		t.Fatalf("loader calls = %d, want 3", calls.Load())
	}
	if r, _ := svc.Fetch(ctx, "a", schemaLoader(&calls)); r.Source != SourceNear {
		t.Fatalf("a (recently used) came from %v, want near", r.Source)
	}
	r, err := svc.Fetch(ctx, "b", schemaLoader(&calls))
	if err != nil || r.Value.Table != "b" || r.Source != SourceFar {
		t.Fatalf("Fetch(b) = %+v, %v; want the evicted b from far", r, err)
	}
	if calls.Load() != 3 {
		t.Fatalf("loader calls = %d, want still 3", calls.Load())
	}
	if st := svc.Stats(); st.Evictions == 0 {
		t.Fatalf("Evictions = 0 after overflowing a 2-entry near tier: %+v", st)
	}
}

// Many goroutines ask for one cold key: the loader runs once and Redis is
// read once.
func TestSingleFlight(t *testing.T) {
	for _, n := range []int{2, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			_, client, counter := newMiniredis(t)
			c := newCache[string](t, Options{Redis: client})
			var calls, started atomic.Int64
			allStarted := make(chan struct{})
			loader := LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
				calls.Add(1)
				<-allStarted // hold the load until every goroutine has asked
				return "v:" + key, nil
			})
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				wg.Go(func() {
					if started.Add(1) == int64(n) {
						close(allStarted)
					}
					v, err := c.Get(context.Background(), "hot", loader)
					if err == nil && v != "v:hot" {
						err = fmt.Errorf("got %q", v)
					}
					if err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if calls.Load() != 1 {
				t.Fatalf("loader ran %d times for %d callers, want 1", calls.Load(), n)
			}
			if got := counter.count("GET"); got != 1 {
				t.Fatalf("Redis GETs = %d for %d callers, want 1", got, n)
			}
		})
	}
}

// A caller that gives up stops waiting at once, and the load it started
// goes on for the others, its context not cancelled.
func TestCallerCancellationDoesNotCancelTheLoad(t *testing.T) {
	_, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client})
	entered := make(chan struct{})
	release := make(chan struct{})
	loadErr := make(chan error, 1)
	loader := LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		close(entered)
		select {
		case <-release:
		case <-ctx.Done(): // wrongly cancelled, or the test ended
		}
		loadErr <- ctx.Err()
		return "loaded", nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := c.Get(ctx, "k", loader)
		done <- err
	}()
	within(t, entered, "the load")
	cancel()
	if err := within(t, done, "the cancelled caller"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	close(release)
	// A second caller joins the same flight or finds its result.
	v, err := c.Get(context.Background(), "k", failLoader(errors.New("a second load must not run")))
	if err != nil || v != "loaded" {
		t.Fatalf("second Get = %q, %v", v, err)
	}
	if err := <-loadErr; err != nil {
		t.Fatalf("the load's context was cancelled with its first caller: %v", err)
	}
}

// A panicking loader fails its callers with ErrLoaderPanic; the key is not
// left stuck, and nothing is left in Redis.
func TestLoaderPanicBecomesError(t *testing.T) {
	m, client, _ := newMiniredis(t)
	for name, opts := range map[string]Options{"near only": {}, "Redis": {Redis: client}} {
		t.Run(name, func(t *testing.T) {
			c := newCache[string](t, opts)
			_, err := c.Get(context.Background(), "k", LoaderFunc[string](func(context.Context, string) (string, error) {
				panic("boom")
			}))
			if !errors.Is(err, ErrLoaderPanic) || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("err = %v, want ErrLoaderPanic with the panic value", err)
			}
			if m.Exists("tier:k") {
				t.Fatal("a panicked load left its lease in Redis")
			}
			if v, err := c.Get(context.Background(), "k", constLoader("ok")); err != nil || v != "ok" {
				t.Fatalf("Get after a panic = %q, %v; the key must not stay stuck", v, err)
			}
			m.FlushAll()
		})
	}
}

// A loader's error reaches the caller wrapped with the key, and is not
// cached: the next Get loads again.
func TestLoaderErrorIsNotCached(t *testing.T) {
	_, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client})
	boom := errors.New("source down")
	_, err := c.Get(context.Background(), "k", failLoader(boom))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"k"`) {
		t.Fatalf("err = %v, want the loader's error wrapped with the key", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v matches ErrNotFound", err)
	}
	l := &countingLoader{}
	if v, err := c.Get(context.Background(), "k", l); err != nil || v != "k#1" {
		t.Fatalf("Get after a failed load = %q, %v", v, err)
	}
	if st := c.Stats(); st.LoadErrors != 1 || st.Loads != 2 {
		t.Fatalf("stats = %+v, want 1 load error of 2 loads", st)
	}
}

// A loader's ErrNotFound is cached for NotFoundTTL, near and in Redis as a
// tombstone, so that neither this replica nor another asks the source
// again until it expires.
func TestNegativeCaching(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	opts := Options{Redis: client, NotFoundTTL: 5 * time.Second, Jitter: -1, Clock: clock}
	a := newCache[string](t, opts)
	b := newCache[string](t, opts)
	var calls atomic.Int64
	missing := LoaderFunc[string](func(context.Context, string) (string, error) {
		calls.Add(1)
		return "", fmt.Errorf("no row: %w", ErrNotFound)
	})
	ctx := context.Background()
	for i, c := range []*Cache[string]{a, a, b} {
		r, err := c.Fetch(ctx, "ghost", missing)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("read %d: err = %v, want ErrNotFound", i, err)
		}
		if want := []Source{SourceLoad, SourceNear, SourceFar}[i]; r.Source != want {
			t.Fatalf("read %d answered by %v, want %v", i, r.Source, want)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("loader calls = %d, want 1: the answer is cached in both tiers", calls.Load())
	}
	raw, err := m.Get("tier:ghost")
	if err != nil || !codec.IsTombstone([]byte(raw)) {
		t.Fatalf("Redis holds %q, %v; want a tombstone", raw, err)
	}
	if ttl := m.TTL("tier:ghost"); ttl != 5*time.Second {
		t.Fatalf("Redis TTL of the tombstone = %v, want NotFoundTTL 5s", ttl)
	}
	if v, ok := a.near.Peek("ghost"); !ok || !v.absent {
		t.Fatalf("near entry = %+v, %v; want a cached not-found", v, ok)
	}
	clock.Advance(6 * time.Second)
	m.FastForward(6 * time.Second)
	if _, err := a.Get(ctx, "ghost", missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	if calls.Load() != 2 {
		t.Fatalf("loader calls = %d after NotFoundTTL, want 2", calls.Load())
	}
}

// A nil loader, as a nil interface or a nil LoaderFunc, is an error that
// names the loader, not a panic; nothing is cached, in either tier.
func TestNilLoader(t *testing.T) {
	m, client, _ := newMiniredis(t)
	for name, opts := range map[string]Options{"near only": {}, "Redis": {Redis: client}} {
		t.Run(name, func(t *testing.T) {
			c := newCache[string](t, opts)
			ctx := context.Background()
			var nilInterface Loader[string]
			for lname, l := range map[string]Loader[string]{
				"nil interface":  nilInterface,
				"nil LoaderFunc": LoaderFunc[string](nil),
			} {
				_, err := c.Get(ctx, "k", l)
				if err == nil || !strings.Contains(err.Error(), "loader") {
					t.Fatalf("%s: Get = %v, want an error naming the loader", lname, err)
				}
				if _, err := c.Fetch(ctx, "k", l); err == nil {
					t.Fatalf("%s: Fetch succeeded", lname)
				}
			}
			if _, err := c.Wrap(nil)(ctx, "k"); err == nil || !strings.Contains(err.Error(), "loader") {
				t.Fatalf("Wrap(nil) = %v, want an error naming the loader", err)
			}
			var nilBatch BatchLoader[string]
			for _, l := range []BatchLoader[string]{nilBatch, BatchLoaderFunc[string](nil)} {
				if _, err := c.GetMany(ctx, []string{"k", "j"}, l); err == nil || !strings.Contains(err.Error(), "loader") {
					t.Fatalf("GetMany with a nil loader = %v, want an error naming the loader", err)
				}
			}
			if c.near.Len() != 0 || len(m.Keys()) != 0 {
				t.Fatalf("a nil loader cached something: %d near entries, Redis keys %q", c.near.Len(), m.Keys())
			}
			if st := c.Stats(); st.Loads != 0 {
				t.Fatalf("Loads = %d, want 0", st.Loads)
			}
			// The key is not stuck.
			if v, err := c.Get(ctx, "k", constLoader("v")); err != nil || v != "v" {
				t.Fatalf("Get with a loader after the nil ones = %q, %v", v, err)
			}
			m.FlushAll()
		})
	}
}

// Each TTL loses a random fraction, up to Jitter, so that keys written
// together expire apart; in both tiers.
func TestTTLJitter(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	c := newCache[int](t, Options{Redis: client, Near: NearOptions{TTL: 100 * time.Second}, FarTTL: 100 * time.Second, Jitter: 0.5, Clock: clock})
	ctx := context.Background()
	distinct := map[time.Duration]bool{}
	const n = 50
	for i := range n {
		k := fmt.Sprint(i)
		if err := c.Set(ctx, k, i); err != nil {
			t.Fatal(err)
		}
		ttl := m.TTL("tier:" + k)
		if ttl > 100*time.Second || ttl < 50*time.Second {
			t.Fatalf("Redis TTL %v outside [50s, 100s]", ttl)
		}
		distinct[ttl] = true
	}
	if len(distinct) < 10 {
		t.Fatalf("only %d distinct Redis TTLs among %d keys: jitter is not applied", len(distinct), n)
	}
	near := func() (held int) {
		for i := range n {
			if _, ok := c.near.Peek(fmt.Sprint(i)); ok {
				held++
			}
		}
		return held
	}
	clock.Advance(50*time.Second - time.Millisecond)
	if h := near(); h != n {
		t.Fatalf("%d of %d near copies gone before NearTTL×(1-Jitter)", n-h, n)
	}
	clock.Advance(25 * time.Second)
	if h := near(); h == 0 || h == n {
		t.Fatalf("%d of %d near copies held three quarters into NearTTL: jitter is not applied near", h, n)
	}
	clock.Advance(25*time.Second + time.Millisecond)
	if h := near(); h != 0 {
		t.Fatalf("%d near copies outlived NearTTL", h)
	}
}

// No near copy outlives the Redis copy it came from: a far hit is kept
// near only for what is left of the value's TTL in Redis, as recorded in
// its header, however long NearTTL is.
func TestNearCopyNeverOutlivesFarCopy(t *testing.T) {
	// The replicas share a clock, as replicas synchronised by NTP do; the
	// deadline travels in the value's header.
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	writer := newCache[string](t, Options{Redis: client, FarTTL: 3 * time.Second, Jitter: -1, Clock: clock})
	ctx := context.Background()
	if err := writer.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	m.FastForward(time.Second)
	reader := newCache[string](t, Options{Redis: client, Near: NearOptions{TTL: time.Hour}, Jitter: -1, Clock: clock})
	r, err := reader.Fetch(ctx, "k", &countingLoader{})
	if err != nil || r.Source != SourceFar || r.Value != "v" {
		t.Fatalf("Fetch = %+v, %v, want a far hit", r, err)
	}
	clock.Advance(2*time.Second - time.Millisecond)
	if _, ok := reader.near.Peek("k"); !ok {
		t.Fatal("the near copy expired before the far one")
	}
	clock.Advance(time.Millisecond)
	if _, ok := reader.near.Peek("k"); ok {
		t.Fatal("the near copy outlived the far one")
	}

	// A far copy whose recorded deadline has passed (a reader whose clock
	// runs ahead of Redis's) is not served: it is reloaded and written
	// over.
	if err := writer.Set(ctx, "k2", "old"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(4 * time.Second) // Redis, on its own clock, still holds k2
	if r, err := reader.Fetch(ctx, "k2", constLoader("new")); err != nil || r.Source != SourceLoad || r.Value != "new" {
		t.Fatalf("Fetch past the recorded deadline = %+v, %v; want a reload", r, err)
	}
	if got, _ := m.Get("tier:k2"); !strings.Contains(got, "new") {
		t.Fatalf("Redis holds %q after the reload, want new", got)
	}
}

// Whatever the TTLs, a value's near copy is gone by the time its Redis
// copy is: for loaded values, Set values and cached not-founds.
func TestNearTTLNeverExceedsFarTTLWritten(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	c := newCache[string](t, Options{Redis: client, NotFoundTTL: 10 * time.Second, FarTTL: 5 * time.Second, Clock: clock})
	ctx := context.Background()
	var keys []string
	for i := range 20 {
		absent, loaded, set := fmt.Sprint("absent-", i), fmt.Sprint("loaded-", i), fmt.Sprint("set-", i)
		if _, err := c.Get(ctx, absent, failLoader(ErrNotFound)); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, loaded, constLoader("v")); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, set, "v"); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, absent, loaded, set)
	}
	far := map[string]time.Duration{}
	for _, k := range keys {
		if far[k] = m.TTL("tier:" + k); far[k] <= 0 {
			t.Fatalf("%s: Redis TTL %v", k, far[k])
		}
		if _, ok := c.near.Peek(k); !ok {
			t.Fatalf("%s: no near copy", k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return int(far[a] - far[b]) })
	var elapsed time.Duration
	for _, k := range keys {
		clock.Advance(far[k] - elapsed)
		elapsed = far[k]
		if _, ok := c.near.Peek(k); ok {
			t.Fatalf("%s: the near copy outlives its Redis copy (%v)", k, far[k])
		}
	}
}

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

// A far hit is one round trip holding one plain GET: the value's deadline
// comes from its header, not a PTTL.
func TestFarHitIsOnePlainGet(t *testing.T) {
	_, client, counter := newMiniredis(t)
	writer := newCache[string](t, Options{Redis: client, Invalidation: InvalidationOptions{Disabled: true}})
	reader := newCache[string](t, Options{Redis: client, Invalidation: InvalidationOptions{Disabled: true}})
	ctx := context.Background()
	if err := writer.Set(ctx, "a", "va"); err != nil {
		t.Fatal(err)
	}
	counter.reset()
	if r, err := reader.Fetch(ctx, "a", &countingLoader{}); err != nil || r.Source != SourceFar || r.Value != "va" {
		t.Fatalf("Fetch = %+v, %v; want a far hit", r, err)
	}
	if trips := counter.trips.Load(); trips != 1 || fmt.Sprint(counter.commands) != "[GET]" {
		t.Fatalf("a far hit cost %d round trips: %v; want 1: [GET]", trips, counter.commands)
	}
	if st := reader.Stats(); st.FarHits != 1 || st.Misses != 0 || st.Loads != 0 {
		t.Fatalf("stats = %+v, want 1 far hit and no miss", st)
	}
}

// Wrap caches a function behind its own signature.
func TestWrap(t *testing.T) {
	c := newCache[string](t, Options{})
	var calls atomic.Int64
	lookup := func(_ context.Context, id string) (string, error) {
		calls.Add(1)
		if id == "0" {
			return "", ErrNotFound
		}
		return "user " + id, nil
	}
	cached := c.Wrap(lookup)
	for range 3 {
		if v, err := cached(context.Background(), "42"); err != nil || v != "user 42" {
			t.Fatalf("cached = %q, %v", v, err)
		}
		if _, err := cached(context.Background(), "0"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("cached(0) = %v, want ErrNotFound", err)
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("wrapped function ran %d times, want 2 (once per key)", calls.Load())
	}
}

// Fetch says where each value came from.
func TestFetchSources(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	for i, step := range []struct {
		c    *Cache[string]
		want Source
	}{{a, SourceLoad}, {a, SourceNear}, {b, SourceFar}, {b, SourceNear}} {
		r, err := step.c.Fetch(ctx, "k", constLoader("v"))
		if err != nil || r.Value != "v" || r.Source != step.want || r.Stale {
			t.Fatalf("step %d: Fetch = %+v, %v; want v from %v", i, r, err, step.want)
		}
	}
	for s, want := range map[Source]string{SourceNear: "near", SourceFar: "far", SourceLoad: "load", 9: "Source(9)"} {
		if s.String() != want {
			t.Errorf("Source(%d).String() = %q, want %q", uint8(s), s.String(), want)
		}
	}
}

// Without Redis, the near tier alone caches: evicted keys are loaded
// again, and Set and Delete work on it.
func TestNearOnly(t *testing.T) {
	c := newCache[string](t, Options{Near: NearOptions{Capacity: 2}})
	l := &countingLoader{}
	ctx := context.Background()
	for _, k := range []string{"a", "b", "a", "c", "b"} {
		if _, err := c.Get(ctx, k, l); err != nil {
			t.Fatal(err)
		}
	}
	if l.calls.Load() != 4 {
		t.Fatalf("loads = %d, want 4 (b reloaded after eviction)", l.calls.Load())
	}
	if err := c.Set(ctx, "s", "v"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Fetch(ctx, "s", l); err != nil || r.Value != "v" || r.Source != SourceNear {
		t.Fatalf("Fetch after Set = %+v, %v", r, err)
	}
	if err := c.Delete(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Fetch(ctx, "s", constLoader("reloaded")); err != nil || r.Value != "reloaded" || r.Source != SourceLoad {
		t.Fatalf("Fetch after Delete = %+v, %v", r, err)
	}
	if h := c.Health(); h.Redis.State != StateOff || h.Subscription.State != StateOff || h.Degraded {
		t.Fatalf("Health of a near-only cache = %+v", h)
	}
}

// With no Redis, a Set of a key the near tier holds replaces its value,
// and the value is what Get returns.
func TestNearOnlySetReplaces(t *testing.T) {
	c := newCache[int](t, Options{})
	ctx := context.Background()
	i := 0
	for range 100 {
		i++
		if err := c.Set(ctx, "k", i); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := c.Get(ctx, "k", LoaderFunc[int](func(context.Context, string) (int, error) { return -1, nil })); v != i || err != nil {
		t.Errorf("Get = %d, %v; want the last Set's %d", v, err, i)
	}
	if n := c.near.Len(); n != 1 {
		t.Errorf("the near tier holds %d entries, want 1", n)
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

// After Close every call returns ErrClosed; a caller waiting for a load
// gets ErrClosed; Close is idempotent; nothing of the cache's is left
// running.
func TestClose(t *testing.T) {
	_, client, _ := newMiniredis(t)
	before := goleak.IgnoreCurrent() // what runs before the cache exists
	c, err := New[string](Options{Redis: client, FarTimeout: generous})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	entered := make(chan struct{})
	waiting := make(chan error)
	go func() {
		_, err := c.Get(ctx, "slow", LoaderFunc[string](func(ctx context.Context, _ string) (string, error) {
			close(entered)
			<-ctx.Done()
			return "", ctx.Err()
		}))
		waiting <- err
	}()
	within(t, entered, "the load")
	if _, err := c.Get(ctx, "k", &countingLoader{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := within(t, waiting, "the waiting caller"); !errors.Is(err, ErrClosed) {
		t.Fatalf("a caller waiting on a load Close cancelled got %v, want ErrClosed", err)
	}
	calls := map[string]func() error{
		"Get of a near-cached key": func() error { _, err := c.Get(ctx, "k", &countingLoader{}); return err },
		"Fetch":                    func() error { _, err := c.Fetch(ctx, "other", &countingLoader{}); return err },
		"Set":                      func() error { return c.Set(ctx, "k", "v") },
		"Delete":                   func() error { return c.Delete(ctx, "k") },
		"Invalidate":               func() error { return c.Invalidate(ctx, "k") },
		"InvalidateAll":            func() error { return c.InvalidateAll(ctx) },
		"WaitReady":                func() error { return c.WaitReady(ctx) },
		"GetMany": func() error {
			_, err := c.GetMany(ctx, []string{"k"}, BatchLoaderFunc[string](func(context.Context, []string) (map[string]string, error) {
				return nil, nil
			}))
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	goleak.VerifyNone(t, append(miniredisServing, before)...)
}

// A Get racing with Close registers no flight after Close has started
// waiting for flights: no load starts after Close returned.
func TestCloseRacingGets(t *testing.T) {
	for round := range 300 {
		c, err := New[string](Options{})
		if err != nil {
			t.Fatal(err)
		}
		var closed atomic.Bool
		var late, loads atomic.Int64
		loader := LoaderFunc[string](func(ctx context.Context, k string) (string, error) {
			loads.Add(1)
			if closed.Load() {
				late.Add(1)
			}
			return k, nil
		})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					c.Get(context.Background(), fmt.Sprint(round, g, i), loader)
				}
			})
		}
		for loads.Load() < 16 {
			runtime.Gosched()
		}
		c.Close()
		closed.Store(true)
		wg.Wait()
		if n := late.Load(); n > 0 {
			t.Fatalf("round %d: %d loads started after Close returned", round, n)
		}
	}
}

// Close while 100 goroutines call Get and Set: every call returns a value
// or ErrClosed, and nothing of the cache's is left running.
func TestCloseUnderLoad(t *testing.T) {
	_, client, _ := newMiniredis(t)
	before := goleak.IgnoreCurrent()
	c, err := New[string](Options{Redis: client, FarTimeout: generous})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	errs := make(chan error, 100)
	var wg sync.WaitGroup
	for g := range 100 {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprint(i % 50)
				var err error
				if g%4 == 0 {
					err = c.Set(context.Background(), k, "v")
				} else {
					var v string
					v, err = c.Get(context.Background(), k, constLoader("v"))
					if err == nil && v != "v" {
						err = fmt.Errorf("got %q", v)
					}
				}
				calls.Add(1)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for calls.Load() < 1000 {
		runtime.Gosched()
	}
	c.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a call returned %v, want a value or ErrClosed", err)
	}
	goleak.VerifyNone(t, append(miniredisServing, before)...)
}

// Against a server that accepts connections and never answers, Gets are
// answered by the loader and Close returns.
func TestBlackholedRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-accepted
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	client := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ContextTimeoutEnabled: true, MaxRetries: -1, ReadTimeout: -1})
	t.Cleanup(func() { client.Close() })
	c, err := New[string](Options{Redis: client, FarTimeout: 50 * time.Millisecond,
		Invalidation: InvalidationOptions{HealthInterval: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if v, err := c.Get(context.Background(), fmt.Sprint("k", i), constLoader("v")); err != nil || v != "v" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	if err := c.Set(context.Background(), "k", "v"); err == nil {
		t.Fatal("Set against a server that never answers succeeded")
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(patience):
		t.Fatal("Close blocked")
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

// A near hit allocates nothing, with refresh and grace configured too, and
// for a value of a struct type.
func TestNearHitAllocatesNothing(t *testing.T) {
	_, client, _ := newMiniredis(t)
	ctx := context.Background()
	for name, opts := range map[string]Options{
		"Redis":               {Redis: client},
		"near only":           {},
		"refresh and grace":   {Redis: client, Refresh: RefreshOptions{Ahead: 0.1, StaleGrace: time.Minute}},
		"a NotFound answered": {Redis: client},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCache[schema](t, opts)
			var calls atomic.Int64
			loader := schemaLoader(&calls)
			if name == "a NotFound answered" {
				loader = func(context.Context, string) (schema, error) { return schema{}, ErrNotFound }
			}
			c.Get(ctx, "k", loader)
			if n := testing.AllocsPerRun(100, func() {
				if r, _ := c.Fetch(ctx, "k", loader); r.Source != SourceNear {
					t.Fatalf("Fetch from %v, want near", r.Source)
				}
			}); n != 0 {
				t.Fatalf("a near hit made %v allocations, want 0", n)
			}
		})
	}
}

// With Near.Admission, keys read often survive a scan of keys read once,
// which evicts them from a recency-only near tier.
func TestNearAdmissionResistsScans(t *testing.T) {
	ctx := context.Background()
	for _, admission := range []bool{false, true} {
		c := newCache[string](t, Options{Near: NearOptions{Capacity: 100, Admission: admission}})
		loads := &countingLoader{}
		for range 5 {
			for i := range 10 {
				if _, err := c.Get(ctx, fmt.Sprint("hot", i), loads); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := range 1000 {
			c.Get(ctx, fmt.Sprint("scan", i), loads)
		}
		kept := 0
		for i := range 10 {
			if _, ok := c.near.Peek(fmt.Sprint("hot", i)); ok {
				kept++
			}
		}
		switch {
		case admission && kept < 9:
			t.Errorf("with admission, %d of 10 hot keys survived the scan, want nearly all", kept)
		case !admission && kept > 1:
			t.Errorf("without admission, %d of 10 hot keys survived a scan of 10× capacity; the test shows nothing", kept)
		}
	}
}
