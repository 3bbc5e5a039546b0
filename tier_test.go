package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier/internal/clocktest"

	"github.com/tier-cache/tier/codec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newFakeClock returns a clock that moves only when told to.
func newFakeClock() *clocktest.Fake { return clocktest.New() }

// commandCounter is a go-redis hook that counts round trips and commands.
type commandCounter struct {
	trips    atomic.Int64
	mu       sync.Mutex
	commands []string
}

func (h *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isHandshake(cmd) {
			h.trips.Add(1)
			h.record(cmd)
		}
		return next(ctx, cmd)
	}
}

func (h *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		counted := false
		for _, c := range cmds {
			if !isHandshake(c) {
				counted = true
				h.record(c)
			}
		}
		if counted {
			h.trips.Add(1)
		}
		return next(ctx, cmds)
	}
}

// isHandshake tells go-redis's own commands on a new connection from the
// cache's work.
func isHandshake(cmd redis.Cmder) bool {
	switch strings.ToUpper(cmd.Name()) {
	case "HELLO", "CLIENT", "AUTH", "SELECT":
		return true
	}
	return false
}

func (h *commandCounter) record(cmd redis.Cmder) {
	h.mu.Lock()
	h.commands = append(h.commands, strings.ToUpper(cmd.Name()))
	h.mu.Unlock()
}

func (h *commandCounter) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.commands {
		if c == name {
			n++
		}
	}
	return n
}

func (h *commandCounter) reset() {
	h.trips.Store(0)
	h.mu.Lock()
	h.commands = nil
	h.mu.Unlock()
}

// newMiniredis starts a miniredis and a client for it with a command counter.
func newMiniredis(t *testing.T) (*miniredis.Miniredis, *redis.Client, *commandCounter) {
	t.Helper()
	m := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{
		Addr:                  m.Addr(),
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
	counter := &commandCounter{}
	client.AddHook(counter)
	t.Cleanup(func() { client.Close() })
	return m, client, counter
}

func newCache[V any](t *testing.T, opts Options) *Cache[V] {
	t.Helper()
	c, err := New[V](opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if c.bus != nil {
		// The near tier is used once the invalidation subscription is
		// confirmed; the deadline only turns a hang into a failure.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.bus.WaitConnected(ctx); err != nil {
			t.Fatalf("invalidation subscription: %v", err)
		}
	}
	return c
}

// countingLoader counts its calls and makes a distinct value per call.
type countingLoader struct {
	calls atomic.Int64
}

func (l *countingLoader) Load(_ context.Context, key string) (string, error) {
	n := l.calls.Add(1)
	return fmt.Sprintf("%s#%d", key, n), nil
}

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

// The seed's pytest over two tiers: hit counting.
func TestSeedHitCounting(t *testing.T) {
	_, client, _ := newMiniredis(t)
	var calls atomic.Int64
	svc := newCache[schema](t, Options{Redis: client, NearCapacity: 2})
	ctx := context.Background()
	for range 2 {
		s, err := svc.Get(ctx, "users", schemaLoader(&calls))
		if err != nil || s.Table != "users" {
			t.Fatalf("Get = %+v, %v", s, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("loader calls = %d, want 1", calls.Load())
	}
	if st := svc.Stats(); st.NearHits != 1 || st.Loads != 1 || st.Misses != 1 {
		t.Fatalf("stats = %+v, want 1 near hit, 1 miss, 1 load", st)
	}
}

// The seed's TTL scenario: the near copy expires on the fake clock and the
// far copy in Redis on miniredis's; each expiry sends the read one tier down.
func TestSeedTTLExpiry(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var calls atomic.Int64
	svc := newCache[schema](t, Options{
		Redis: client, NearCapacity: 2, NearTTL: time.Second, FarTTL: 10 * time.Second,
		DisableJitter: true, Clock: clock,
	})
	ctx := context.Background()
	get := func() Source {
		r, err := svc.Fetch(ctx, "accounts", schemaLoader(&calls))
		if err != nil || r.Value.Table != "accounts" {
			t.Fatalf("Fetch = %+v, %v", r, err)
		}
		return r.Source
	}
	if s := get(); s != SourceLoad {
		t.Fatalf("first read from %v, want load", s)
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
		t.Fatalf("loader calls = %d, want 2 (reloaded after TTL)", calls.Load())
	}
}

// The seed's LRU scenario: an entry evicted from the near tier is read
// back from Redis, not from the loader.
func TestSeedLRUEvictionReloadsFromRedis(t *testing.T) {
	_, client, _ := newMiniredis(t)
	var calls atomic.Int64
	svc := newCache[schema](t, Options{Redis: client, NearCapacity: 2})
	ctx := context.Background()
	for _, k := range []string{"a", "b", "a", "c"} {
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
	if err != nil || r.Value.Table != "b" {
		t.Fatalf("Fetch(b) = %+v, %v", r, err)
	}
	if r.Source != SourceFar {
		t.Fatalf("evicted b came from %v, want far", r.Source)
	}
	if calls.Load() != 3 {
		t.Fatalf("loader calls = %d, want still 3", calls.Load())
	}
}

// The seed's mini-exercise: many goroutines ask for one key; the loader
// runs once and Redis is read once.
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

func TestCallerCancellationDoesNotCancelTheLoad(t *testing.T) {
	_, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client})
	entered := make(chan struct{})
	release := make(chan struct{})
	var loadErr atomic.Value
	loader := LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		close(entered)
		<-release
		if err := ctx.Err(); err != nil {
			loadErr.Store(err)
		}
		return "loaded", nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := c.Get(ctx, "k", loader)
		done <- err
	}()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	close(release)
	// A second caller joins the same flight or finds its result.
	v, err := c.Get(context.Background(), "k", LoaderFunc[string](func(context.Context, string) (string, error) {
		return "", errors.New("second load must not run")
	}))
	if err != nil || v != "loaded" {
		t.Fatalf("second Get = %q, %v", v, err)
	}
	if e := loadErr.Load(); e != nil {
		t.Fatalf("the load's context was cancelled with its first caller: %v", e)
	}
}

func TestLoaderPanicBecomesError(t *testing.T) {
	c := newCache[string](t, Options{})
	_, err := c.Get(context.Background(), "k", LoaderFunc[string](func(context.Context, string) (string, error) {
		panic("boom")
	}))
	if !errors.Is(err, ErrLoaderPanic) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want ErrLoaderPanic with the panic value", err)
	}
	v, err := c.Get(context.Background(), "k", LoaderFunc[string](func(context.Context, string) (string, error) {
		return "ok", nil
	}))
	if err != nil || v != "ok" {
		t.Fatalf("Get after a panic = %q, %v; the key must not stay stuck", v, err)
	}
}

func TestLoaderErrorIsNotCached(t *testing.T) {
	c := newCache[string](t, Options{})
	boom := errors.New("source down")
	_, err := c.Get(context.Background(), "k", LoaderFunc[string](func(context.Context, string) (string, error) {
		return "", boom
	}))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"k"`) {
		t.Fatalf("err = %v, want the loader's error wrapped with the key", err)
	}
	l := &countingLoader{}
	if v, err := c.Get(context.Background(), "k", l); err != nil || v != "k#1" {
		t.Fatalf("Get after a failed load = %q, %v", v, err)
	}
	if st := c.Stats(); st.LoadErrors != 1 {
		t.Fatalf("LoadErrors = %d, want 1", st.LoadErrors)
	}
}

func TestNegativeCaching(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	opts := Options{Redis: client, NotFoundTTL: 5 * time.Second, DisableJitter: true, Clock: clock}
	a := newCache[string](t, opts)
	b := newCache[string](t, opts)
	var calls atomic.Int64
	missing := LoaderFunc[string](func(context.Context, string) (string, error) {
		calls.Add(1)
		return "", fmt.Errorf("no row: %w", ErrNotFound)
	})
	ctx := context.Background()
	for _, c := range []*Cache[string]{a, a, b} {
		if _, err := c.Get(ctx, "ghost", missing); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("loader calls = %d, want 1: the answer is cached in both tiers", calls.Load())
	}
	if ttl := m.TTL("tier:ghost"); ttl != 5*time.Second {
		t.Fatalf("Redis TTL of the not-found entry = %v, want NotFoundTTL 5s", ttl)
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

func TestTTLJitter(t *testing.T) {
	m, client, _ := newMiniredis(t)
	c := newCache[int](t, Options{Redis: client, FarTTL: 100 * time.Second, Jitter: 0.5})
	ctx := context.Background()
	distinct := map[time.Duration]bool{}
	for i := range 50 {
		k := fmt.Sprint(i)
		if err := c.Set(ctx, k, i); err != nil {
			t.Fatal(err)
		}
		ttl := m.TTL("tier:" + k)
		if ttl > 100*time.Second || ttl < 50*time.Second {
			t.Fatalf("TTL %v outside [50s, 100s]", ttl)
		}
		distinct[ttl] = true
	}
	if len(distinct) < 10 {
		t.Fatalf("only %d distinct TTLs among 50 keys: jitter is not applied", len(distinct))
	}

	exact := newCache[int](t, Options{Redis: client, Namespace: "exact", FarTTL: 100 * time.Second, DisableJitter: true})
	if err := exact.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	if ttl := m.TTL("exact:k"); ttl != 100*time.Second {
		t.Fatalf("TTL without jitter = %v, want 100s", ttl)
	}
}

func TestNearCopyNeverOutlivesFarCopy(t *testing.T) {
	// The replicas share a clock, as replicas synchronised by NTP do; the
	// deadline travels in the value's header.
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	writer := newCache[string](t, Options{Redis: client, FarTTL: 3 * time.Second, DisableJitter: true, Clock: clock})
	if err := writer.Set(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	m.FastForward(time.Second)
	reader := newCache[string](t, Options{Redis: client, NearTTL: time.Hour, Clock: clock})
	r, err := reader.Fetch(context.Background(), "k", &countingLoader{})
	if err != nil || r.Source != SourceFar {
		t.Fatalf("Fetch = %+v, %v, want a far hit", r, err)
	}
	ttl, ok := reader.near.TTL("k")
	if !ok || ttl > 2*time.Second || ttl < 2*time.Second-10*time.Millisecond {
		t.Fatalf("near TTL = %v, %v; want the 2s left in Redis", ttl, ok)
	}
	clock.Advance(2 * time.Second)
	if _, ok := reader.near.Peek("k"); ok {
		t.Fatal("the near copy outlived the far one")
	}
	// A far copy whose recorded deadline has passed (a reader whose clock
	// runs ahead) is returned but not kept.
	late := newCache[string](t, Options{Redis: client, NearTTL: time.Hour, Clock: clock})
	if err := writer.Set(context.Background(), "k2", "v"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(4 * time.Second)
	if r, err := late.Fetch(context.Background(), "k2", &countingLoader{}); err != nil || r.Source != SourceFar || r.Value != "v" {
		t.Fatalf("Fetch past the deadline = %+v, %v; want the far value", r, err)
	}
	if _, ok := late.near.Peek("k2"); ok {
		t.Fatal("a far copy past its deadline was kept near")
	}
}

// blockedGet starts a Get of key on c whose load returns value once
// released: it returns after the load has begun, with the function that
// releases it and waits for what the Get returned.
func blockedGet(c *Cache[string], key, value string) (finish func() string) {
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan string)
	go func() {
		v, _ := c.Get(context.Background(), key, LoaderFunc[string](func(context.Context, string) (string, error) {
			close(entered)
			<-release
			return value, nil
		}))
		done <- v
	}()
	<-entered
	return func() string {
		close(release)
		return <-done
	}
}

// An invalidation during a load wins: the caller gets the value it waited
// for, but the near tier does not keep it.
func TestDeleteDuringLoadKeepsValueOutOfNearTier(t *testing.T) {
	_, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client})
	finish := blockedGet(c, "k", "old")
	if err := c.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if v := finish(); v != "old" {
		t.Fatalf("the waiting caller got %q, want the value it loaded", v)
	}
	if _, ok := c.near.Peek("k"); ok {
		t.Fatal("the near tier kept a value that was deleted while it loaded")
	}
}

func TestSetDuringLoadWins(t *testing.T) {
	c := newCache[string](t, Options{})
	finish := blockedGet(c, "k", "stale")
	if err := c.Set(context.Background(), "k", "fresh"); err != nil {
		t.Fatal(err)
	}
	finish()
	if v, err := c.Get(context.Background(), "k", &countingLoader{}); v != "fresh" || err != nil {
		t.Fatalf("Get = %q, %v; the Set made during the load must stand", v, err)
	}
}

// TestNearOnlySetStoresInPlace: with no Redis, a Set of a key the near tier
// holds replaces its value where it stands, allocating nothing (a drop and
// a fresh entry cost the 90/10 mix of the bench report two shard locks and
// an allocation), and the value is what Get returns.
func TestNearOnlySetStoresInPlace(t *testing.T) {
	c := newCache[int](t, Options{})
	ctx := context.Background()
	if err := c.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	i := 1
	if n := testing.AllocsPerRun(100, func() {
		i++
		if err := c.Set(ctx, "k", i); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("a Set of a held key made %v allocations, want 0", n)
	}
	if v, err := c.Get(ctx, "k", LoaderFunc[int](func(context.Context, string) (int, error) { return -1, nil })); v != i || err != nil {
		t.Errorf("Get = %d, %v; want the last Set's %d", v, err, i)
	}
	if n := c.near.Len(); n != 1 {
		t.Errorf("the near tier holds %d entries, want 1", n)
	}
}

func TestRedisDownDegradesAndRecovers(t *testing.T) {
	m, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client, NearCapacity: 1})
	l := &countingLoader{}
	ctx := context.Background()
	m.Close()
	for i := range 3 {
		v, err := c.Get(ctx, fmt.Sprint("k", i), l)
		if err != nil || v != fmt.Sprintf("k%d#%d", i, i+1) {
			t.Fatalf("Get with Redis down = %q, %v; want the loader's value", v, err)
		}
	}
	if st := c.Stats(); st.FarErrors == 0 {
		t.Fatalf("FarErrors = 0 with Redis down: %+v", st)
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "a", l); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "b", l); err != nil { // evicts a from the one-entry near tier
		t.Fatal(err)
	}
	r, err := c.Fetch(ctx, "a", l)
	if err != nil || r.Source != SourceFar {
		t.Fatalf("after Redis came back: Fetch = %+v, %v; want a far hit", r, err)
	}
	if st := c.Stats(); st.FarHits != 1 {
		t.Fatalf("FarHits = %d after recovery, want 1", st.FarHits)
	}
}

func TestCorruptFarValueIsReloadedAndOverwritten(t *testing.T) {
	m, client, _ := newMiniredis(t)
	c := newCache[schema](t, Options{Redis: client})
	var calls atomic.Int64
	for i, raw := range []string{
		"garbage",                  // random bytes
		"\x01\x01",                 // truncated header
		"\x09\x01\x00abc",          // unknown format version
		"\x01\x01\x00\xa3str",      // a msgpack string where V is a struct
		`{"Table":"x"}`,            // JSON written by another program, no header
		"",                         // empty
		"\x01\x01\x01\xff\xff\xff", // corrupt S2 payload
	} {
		key := fmt.Sprint("bad", i)
		m.Set("tier:"+key, raw)
		s, err := c.Get(context.Background(), key, schemaLoader(&calls))
		if err != nil || s.Table != key {
			t.Fatalf("%q: Get = %+v, %v; want the loader's value", raw, s, err)
		}
		stored, _ := m.Get("tier:" + key)
		var back schema
		f, _ := codec.New(codec.Options{})
		if err := f.Decode([]byte(stored), &back); err != nil || back.Table != key {
			t.Fatalf("%q: Redis still holds undecodable bytes %q (%v)", raw, stored, err)
		}
	}
	if st := c.Stats(); st.Corrupt != 7 || st.Loads != 7 {
		t.Fatalf("stats = %+v, want 7 corrupt and 7 loads", st)
	}
}

func TestSetAndDeleteAcrossReplicas(t *testing.T) {
	m, client, counter := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	if v, ok := a.near.Peek("k"); !ok || v.value != "v1" {
		t.Fatal("Set did not store in the near tier")
	}
	r, err := b.Fetch(ctx, "k", &countingLoader{})
	if err != nil || r.Value != "v1" || r.Source != SourceFar {
		t.Fatalf("other replica: %+v, %v", r, err)
	}
	counter.reset()
	if err := a.Delete(ctx, "k", "x", "y"); err != nil {
		t.Fatal(err)
	}
	// The PING and the first PUBLISH, the empty message to a's writer
	// channel, put a's own copy of the message last (see
	// remote.Notice.Writer); the second PUBLISH is the invalidation.
	if counter.trips.Load() != 1 || fmt.Sprint(counter.commands) != "[PING PUBLISH MULTI UNLINK PUBLISH EXEC]" {
		t.Fatalf("Delete of 3 keys sent %v in %d round trips, want the writer channel's PUBLISH and one transaction (UNLINK and PUBLISH) in one",
			counter.commands, counter.trips.Load())
	}
	if m.Exists("tier:k") {
		t.Fatal("Delete left the Redis copy")
	}
	if _, ok := a.near.Peek("k"); ok {
		t.Fatal("Delete left the near copy")
	}
}

func TestValueTooLarge(t *testing.T) {
	m, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client, MaxValueBytes: 100})
	big := strings.Repeat("x", 200)
	if err := c.Set(context.Background(), "big", big); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("Set err = %v, want ErrValueTooLarge", err)
	}
	if m.Exists("tier:big") {
		t.Fatal("an oversized value was stored in Redis")
	}
	// A loaded oversized value is returned, not cached.
	v, err := c.Get(context.Background(), "big", LoaderFunc[string](func(context.Context, string) (string, error) { return big, nil }))
	if err != nil || v != big {
		t.Fatalf("Get = %d bytes, %v", len(v), err)
	}
	if _, ok := c.near.Peek("big"); ok || m.Exists("tier:big") {
		t.Fatal("an oversized loaded value was cached")
	}
	if st := c.Stats(); st.NotCached != 1 {
		t.Fatalf("NotCached = %d, want 1", st.NotCached)
	}
}

func TestGetMany(t *testing.T) {
	_, client, counter := newMiniredis(t)
	ctx := context.Background()
	other := newCache[string](t, Options{Redis: client})
	for _, k := range []string{"f1", "f2", "f3"} {
		if err := other.Set(ctx, k, "far:"+k); err != nil {
			t.Fatal(err)
		}
	}
	c := newCache[string](t, Options{Redis: client})
	for _, k := range []string{"n1", "n2"} {
		if err := c.Set(ctx, k, "near:"+k); err != nil {
			t.Fatal(err)
		}
	}
	var batches [][]string
	loader := BatchLoaderFunc[string](func(_ context.Context, keys []string) (map[string]string, error) {
		batches = append(batches, append([]string(nil), keys...))
		out := map[string]string{}
		for _, k := range keys {
			if k != "gone" {
				out[k] = "load:" + k
			}
		}
		return out, nil
	})
	counter.reset()
	keys := []string{"n1", "f1", "l1", "n2", "f2", "l2", "f3", "gone", "l1"}
	got, err := c.GetMany(ctx, keys, loader)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"n1": "near:n1", "n2": "near:n2", "f1": "far:f1", "f2": "far:f2", "f3": "far:f3",
		"l1": "load:l1", "l2": "load:l2",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("GetMany = %v\nwant %v", got, want)
	}
	if len(batches) != 1 || fmt.Sprint(batches[0]) != "[l1 l2 gone]" {
		t.Fatalf("batch loads = %v, want one load of [l1 l2 gone]", batches)
	}
	// One round trip to read the 6 near misses, one to store the loads,
	// one to store the not-found answer.
	if trips := counter.trips.Load(); trips != 3 {
		t.Fatalf("GetMany took %d round trips (%v), want 3", trips, counter.commands)
	}
	// Everything is cached now, "gone" as not found.
	counter.reset()
	again, err := c.GetMany(ctx, keys, loader)
	if err != nil || len(batches) != 1 || fmt.Sprint(again) != fmt.Sprint(want) {
		t.Fatalf("second GetMany = %v, %v, batches %d", again, err, len(batches))
	}
	if counter.trips.Load() != 0 {
		t.Fatalf("second GetMany went to Redis %d times; all keys are near", counter.trips.Load())
	}
	if _, err := c.Get(ctx, "gone", &countingLoader{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(gone) = %v, want ErrNotFound cached by GetMany", err)
	}
}

func TestWrap(t *testing.T) {
	c := newCache[string](t, Options{})
	var calls atomic.Int64
	lookup := func(_ context.Context, id string) (string, error) {
		calls.Add(1)
		return "user " + id, nil
	}
	cached := c.Wrap(lookup)
	for range 3 {
		if v, err := cached(context.Background(), "42"); err != nil || v != "user 42" {
			t.Fatalf("cached = %q, %v", v, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("wrapped function ran %d times, want 1", calls.Load())
	}
}

func TestNearOnly(t *testing.T) {
	c := newCache[string](t, Options{NearCapacity: 2})
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
	if err := c.Delete(ctx, "s"); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	_, client, _ := newMiniredis(t)
	before := goleak.IgnoreCurrent() // what runs before the cache exists
	c, err := New[string](Options{Redis: client})
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
	<-entered
	if _, err := c.Get(ctx, "k", &countingLoader{}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Fatalf("a caller waiting on a load Close cancelled got %v, want ErrClosed", err)
	}
	if _, err := c.Get(ctx, "k", &countingLoader{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get of a near-cached key after Close = %v, want ErrClosed", err)
	}
	if err := c.Set(ctx, "k", "v"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close = %v", err)
	}
	if err := c.Delete(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Delete after Close = %v", err)
	}
	if _, err := c.GetMany(ctx, []string{"k"}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetMany after Close = %v", err)
	}
	// Nothing of the cache's is left; miniredis serves each of the client's
	// pooled connections on a goroutine of its own.
	goleak.VerifyNone(t, before,
		goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer"),
		goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer.func2"))
}

func TestOptionsValidation(t *testing.T) {
	cases := []struct {
		opts  Options
		field string
	}{
		{Options{NearCapacity: -1}, "NearCapacity"},
		{Options{NearMaxBytes: -1}, "NearMaxBytes"},
		{Options{NearTTL: -time.Second}, "NearTTL"},
		{Options{FarTTL: time.Microsecond}, "FarTTL"},
		{Options{NotFoundTTL: -1}, "NotFoundTTL"},
		{Options{Jitter: 1}, "Jitter"},
		{Options{Jitter: -0.1}, "Jitter"},
		{Options{CompressAbove: -1}, "CompressAbove"},
		{Options{MaxValueBytes: -1}, "MaxValueBytes"},
		{Options{FarTimeout: -1}, "FarTimeout"},
		{Options{LoadTimeout: -1}, "LoadTimeout"},
		{Options{Redis: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true}), Namespace: "bad space"}, "Namespace"},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			if tc.opts.Redis != nil {
				defer tc.opts.Redis.Close()
			}
			c, err := New[string](tc.opts)
			if err == nil {
				c.Close()
				t.Fatal("New accepted invalid options")
			}
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v, want ErrInvalidOptions naming %s", err, tc.field)
			}
		})
	}
}

// A far hit is one round trip holding one plain GET, and a batch of far
// hits one MGET: the value's deadline comes from its header, not a PTTL.
func TestFarHitIsOnePlainGet(t *testing.T) {
	_, client, counter := newMiniredis(t)
	writer := newCache[string](t, Options{Redis: client, DisableInvalidation: true})
	reader := newCache[string](t, Options{Redis: client, DisableInvalidation: true})
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		if err := writer.Set(ctx, k, "v"+k); err != nil {
			t.Fatal(err)
		}
	}
	counter.reset()
	if r, err := reader.Fetch(ctx, "a", &countingLoader{}); err != nil || r.Source != SourceFar || r.Value != "va" {
		t.Fatalf("Fetch = %+v, %v; want a far hit", r, err)
	}
	if trips := counter.trips.Load(); trips != 1 || fmt.Sprint(counter.commands) != "[GET]" {
		t.Fatalf("a far hit cost %d round trips: %v; want 1: [GET]", trips, counter.commands)
	}
	counter.reset()
	got, err := reader.GetMany(ctx, []string{"b", "c"}, BatchLoaderFunc[string](func(context.Context, []string) (map[string]string, error) {
		t.Fatal("far hits called the batch loader")
		return nil, nil
	}))
	if err != nil || len(got) != 2 {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	if trips := counter.trips.Load(); trips != 1 || fmt.Sprint(counter.commands) != "[MGET]" {
		t.Fatalf("a batch of far hits cost %d round trips: %v; want 1: [MGET]", trips, counter.commands)
	}
}
