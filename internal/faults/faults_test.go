package faults_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newCache(t *testing.T, client redis.UniversalClient, opts tier.Options) *tier.Cache[string] {
	t.Helper()
	opts.Redis = client
	c, err := tier.New[string](opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// valueOf is the loader whose value every test expects: "v:<key>".
var valueOf = tier.LoaderFunc[string](func(_ context.Context, key string) (string, error) {
	return "v:" + key, nil
})

// eventually polls cond every few milliseconds until it holds and returns
// how long that took; the deadline turns a hang into a failure.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// usesNear reports whether the subscription is confirmed and a second
// read of a fresh key comes from the near tier.
func usesNear(c *tier.Cache[string], key string) bool {
	if c.Health().Subscription.State != tier.StateUp {
		return false
	}
	ctx := context.Background()
	if _, err := c.Get(ctx, key, valueOf); err != nil {
		return false
	}
	r, err := c.Fetch(ctx, key, valueOf)
	return err == nil && r.Source == tier.SourceNear
}

// farHit reports whether a read of key, dropped from the near tier after a
// load, is answered by Redis.
func farHit(c *tier.Cache[string], key string) bool {
	ctx := context.Background()
	if _, err := c.Get(ctx, key, valueOf); err != nil {
		return false
	}
	c.DropNear(key)
	r, err := c.Fetch(ctx, key, valueOf)
	return err == nil && r.Source == tier.SourceFar
}

// holdGets holds every far read (a GET, alone or pipelined) of a key with
// the given prefix, once armed, until release is closed: the reads are in
// flight when the test kills Redis.
type holdGets struct {
	prefix  string
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *holdGets) hold(cmds ...redis.Cmder) {
	if !h.armed.Load() {
		return
	}
	for _, cmd := range cmds {
		args := cmd.Args()
		if cmd.Name() != "get" || len(args) < 2 {
			continue
		}
		if key, _ := args[1].(string); strings.HasPrefix(key, h.prefix) {
			h.entered <- struct{}{}
			<-h.release
			return
		}
	}
}

func (h *holdGets) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *holdGets) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.hold(cmd)
		return next(ctx, cmd)
	}
}
func (h *holdGets) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.hold(cmds...)
		return next(ctx, cmds)
	}
}

type answer struct {
	key, value string
	source     tier.Source
	err        error
	took       time.Duration
}

func fetch(c *tier.Cache[string], key string, loader tier.Loader[string]) answer {
	start := time.Now()
	r, err := c.Fetch(context.Background(), key, loader)
	return answer{key: key, value: r.Value, source: r.Source, err: err, took: time.Since(start)}
}

func maxTook(as []answer) time.Duration {
	var m time.Duration
	for _, a := range as {
		m = max(m, a.took)
	}
	return m
}

func medianTook(as []answer) time.Duration {
	ds := make([]time.Duration, len(as))
	for i, a := range as {
		ds[i] = a.took
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// Redis is killed while 20 loads are under way and 20 far reads race with
// the kill: every caller gets the loader's value and no error. While Redis
// is down, reads are answered by the loader; after a restart the same
// cache, with the same client, reads Redis again and uses its near tier.
func TestRedisKilledDuringLoadsAndFarReads(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	hold := &holdGets{prefix: "kill:far-", entered: make(chan struct{}, 100), release: make(chan struct{})}
	client.AddHook(hold)
	c := newCache(t, client, tier.Options{Namespace: "kill"})
	ctx := context.Background()
	const n = 20
	for i := range n {
		key := fmt.Sprint("far-", i)
		if err := c.Set(ctx, key, "v:"+key); err != nil {
			t.Fatal(err)
		}
		c.DropNear(key)
	}
	entered, release := make(chan struct{}, n), make(chan struct{})
	held := tier.LoaderFunc[string](func(_ context.Context, key string) (string, error) {
		entered <- struct{}{}
		<-release
		return "v:" + key, nil
	})
	answers := make(chan answer, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers <- fetch(c, fmt.Sprint("load-", i), held) })
	}
	for range n {
		<-entered // every load is under way, its lease taken
	}
	hold.armed.Store(true)
	for i := range n {
		wg.Go(func() { answers <- fetch(c, fmt.Sprint("far-", i), valueOf) })
	}
	for range n {
		<-hold.entered // every far read is about to be sent
	}
	srv.Kill(t)
	close(release)
	close(hold.release)
	wg.Wait()
	close(answers)
	var all []answer
	sources := map[tier.Source]int{}
	for a := range answers {
		if a.err != nil || a.value != "v:"+a.key {
			t.Errorf("%s: got %q, %v; want the loader's value and no error", a.key, a.value, a.err)
		}
		sources[a.source]++
		all = append(all, a)
	}
	if sources[tier.SourceLoad] != 2*n {
		t.Errorf("sources %v: the far reads sent after the kill must be answered by the loader", sources)
	}
	t.Logf("kill during %d loads and %d far reads: every caller answered by the loader; slowest caller %v after the kill",
		n, n, maxTook(all))

	var down []answer
	for i := range n {
		a := fetch(c, fmt.Sprint("down-", i), valueOf)
		if a.err != nil || a.value != "v:"+a.key || a.source != tier.SourceLoad {
			t.Errorf("with Redis down, %s: %q from %v, %v; want the loader's value", a.key, a.value, a.source, a.err)
		}
		down = append(down, a)
	}
	st := c.Stats()
	if st.FarErrors == 0 {
		t.Errorf("no far error counted with Redis down: %+v", st)
	}
	t.Logf("with Redis down: %d reads answered by the loader, median %v, slowest %v; far errors counted %d, subscription losses %d",
		n, medianTook(down), maxTook(down), st.FarErrors, st.Losses)

	srv.Restart(t)
	i := 0
	farBack := eventually(t, "far hits after the restart", func() bool { i++; return farHit(c, fmt.Sprint("back-", i)) })
	nearBack := farBack + eventually(t, "near tier after the restart", func() bool { i++; return usesNear(c, fmt.Sprint("back-", i)) })
	after := c.Stats()
	if after.FarHits <= st.FarHits || after.Reconnects == 0 {
		t.Errorf("after the restart: far hits %d (before %d), reconnects %d; want far hits to resume and the subscription back",
			after.FarHits, st.FarHits, after.Reconnects)
	}
	t.Logf("after the restart: far hits resumed within %v, the near tier within %v (far hits %d -> %d, reconnects %d)",
		farBack, nearBack, st.FarHits, after.FarHits, after.Reconnects)
}

// Redis answers nothing for 3s (CLIENT PAUSE): far operations end at
// FarTimeout, so each caller is answered by the loader within a few
// FarTimeouts plus the load time, and writes fail within about FarTimeout.
func TestRedisSlow(t *testing.T) {
	srv := redistest.Start(t)
	const (
		farTimeout = 100 * time.Millisecond
		loadTime   = 20 * time.Millisecond
		pause      = 3 * time.Second
	)
	// A long HealthInterval keeps the subscription out of this test.
	c := newCache(t, srv.Client(t), tier.Options{Namespace: "slow", FarTimeout: farTimeout, Invalidation: tier.InvalidationOptions{HealthInterval: time.Minute}})
	slowSource := tier.LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		select { // a query that takes loadTime
		case <-time.After(loadTime):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return "v:" + key, nil
	})
	ctx := context.Background()
	if err := c.Set(ctx, "before", "v:before"); err != nil {
		t.Fatal(err)
	}
	c.DropNear("before")

	paused := time.Now()
	srv.Pause(t, pause)
	const n = 20
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for i := range n {
		key := fmt.Sprint("slow-", i)
		if i == 0 {
			key = "before" // in Redis, but Redis does not answer
		}
		wg.Go(func() { answers <- fetch(c, key, slowSource) })
	}
	wg.Wait()
	close(answers)
	var all []answer
	// Documented: each far operation is bounded by FarTimeout; a miss makes
	// two (the read, then the lease) before it loads. The bound asserted is
	// generous: a loaded CI machine running -race is slow.
	bound := 2*farTimeout + loadTime + time.Second
	for a := range answers {
		if a.err != nil || a.value != "v:"+a.key || a.source != tier.SourceLoad {
			t.Errorf("%s during the pause: %q from %v, %v; want the loader's value", a.key, a.value, a.source, a.err)
		}
		if a.took > bound {
			t.Errorf("%s answered after %v, over %v", a.key, a.took, bound)
		}
		all = append(all, a)
	}
	start := time.Now()
	err := c.Set(ctx, "during", "v")
	setTook := time.Since(start)
	if err == nil {
		t.Errorf("Set succeeded while Redis was paused")
	}
	if setTook > farTimeout+time.Second {
		t.Errorf("Set took %v with Redis paused, want about FarTimeout (%v)", setTook, farTimeout)
	}
	if time.Since(paused) >= pause {
		t.Fatalf("the pause (%v) ended before the measurements did (%v): the figures mean nothing", pause, time.Since(paused))
	}
	t.Logf("Redis paused, FarTimeout %v, load %v: %d concurrent misses answered by the loader, median %v, slowest %v; Set failed after %v (%v)",
		farTimeout, loadTime, n, medianTook(all), maxTook(all), setTook, err)
	back := eventually(t, "far hits after the pause", func() bool { return farHit(c, fmt.Sprint("resumed-", time.Now().UnixNano())) })
	t.Logf("far hits resumed %v after the measurements, %v after the pause began (pause %v)", back, time.Since(paused), pause)
}
