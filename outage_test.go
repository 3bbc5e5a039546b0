package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
)

// Which errors mean "Redis is not answering", and open the breaker.
func TestUnreachable(t *testing.T) {
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{errors.New("NOPERM this user has no permissions to run the 'get' command"), false},
		{redis.ErrPoolTimeout, true},
		{redis.ErrClosed, true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{fmt.Errorf("remote: get %q: %w", "k", opErr), true},
		{syscall.ECONNRESET, true},
		{io.EOF, true},
		{fmt.Errorf("wrapped: %w", io.ErrUnexpectedEOF), true},
	} {
		if got := unreachable(tc.err); got != tc.want {
			t.Errorf("unreachable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	// Replies of a working server, as go-redis gives them.
	srv := redistest.Start(t)
	client := srv.Client(t)
	ctx := context.Background()
	if err := client.Set(ctx, "h", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]any{{"HGET", "h", "f"}, {"EVAL", "return redis.error_reply('ERR boom')", "0"}, {"NOSUCHCOMMAND"}} {
		err := client.Do(ctx, cmd...).Err()
		if err == nil || unreachable(err) {
			t.Errorf("%v: err %v counted as unreachable", cmd, err)
		}
	}
}

// capture is a slog handler that keeps the records at Info and above.
type capture struct {
	mu      sync.Mutex
	records []string
}

func (h *capture) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *capture) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	line := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	h.records = append(h.records, line)
	return nil
}
func (h *capture) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *capture) WithGroup(string) slog.Handler      { return h }

func (h *capture) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.records...)
}

// Redis killed and restarted: after a few failures the breaker opens, and
// from then on reads never wait on Redis (no command is sent), loads write
// nothing there, and writes fail at once with ErrUnavailable wrapping the
// cause. What a replica loads is kept near for DegradedNearTTL. The probe
// closes the breaker once Redis answers, with no caller's help, and far
// hits resume. The log has one line per change and no line per key.
func TestBreaker(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	counter := &commandCounter{}
	client.AddHook(counter)
	logs := &capture{}
	clock := newFakeClock()
	c := newCache[string](t, Options{Redis: client, Logger: slog.New(logs), Clock: clock, Jitter: -1,
		Invalidation: InvalidationOptions{HealthInterval: 200 * time.Millisecond, DegradedNearTTL: time.Second}})
	heard := events(c)
	ctx := context.Background()
	if err := c.Set(ctx, "before", "v"); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	// The subscription's loss and the breaker's opening may come in
	// either order.
	got := map[string]bool{}
	deadline := time.Now().Add(patience)
	for i := 0; !got["down"] || !got["redis down"]; i++ {
		select {
		case e := <-heard:
			got[e] = true
		default:
			if time.Now().After(deadline) {
				t.Fatalf("events %v: the breaker or the subscription never went down", got)
			}
			c.Get(ctx, fmt.Sprint("open-", i), constLoader("x")) // reads that fail open the breaker
		}
	}
	if h := c.Health(); h.Redis.State != StateDown || !h.Degraded || h.Redis.Err == nil {
		t.Fatalf("Health = %+v, want Redis down with its cause", h)
	}
	counter.reset()
	loads := &countingLoader{}
	for range 100 {
		for k := range 5 {
			if _, err := c.Get(ctx, fmt.Sprint("k", k), loads); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, cmd := range []string{"GET", "SET", "EVAL", "EVALSHA"} { // the probe's PINGs aside
		if n := counter.count(cmd); n != 0 {
			t.Fatalf("%d %s sent to Redis while the breaker is open, want 0", n, cmd)
		}
	}
	if n := loads.calls.Load(); n != 5 {
		t.Fatalf("%d loads for 500 Gets of 5 keys within DegradedNearTTL, want 5", n)
	}
	clock.Advance(1100 * time.Millisecond)
	if _, err := c.Get(ctx, "k0", loads); err != nil || loads.calls.Load() != 6 {
		t.Fatalf("Get past DegradedNearTTL: %v, %d loads; want a reload", err, loads.calls.Load())
	}
	if st := c.Stats(); st.FarSkipped == 0 {
		t.Fatalf("stats = %+v, want skipped Redis operations counted", st)
	}
	err := c.Set(ctx, "k0", "new")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Set while open = %v, want ErrUnavailable wrapping connection refused", err)
	}
	if _, ok := c.near.Peek("k0"); ok {
		t.Fatal("a failed Set left k0 near")
	}
	for _, f := range []func() error{
		func() error { return c.Delete(ctx, "k1") },
		func() error { return c.Invalidate(ctx, "k1") },
		func() error { return c.InvalidateAll(ctx) },
	} {
		if err := f(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("a write while open = %v, want ErrUnavailable", err)
		}
	}
	srv.Restart(t)
	for !got["redis up"] || !got["up"] {
		select {
		case e := <-heard:
			got[e] = true
		case <-time.After(patience):
			t.Fatalf("not back within %v: %v", patience, got)
		}
	}
	if err := c.Set(ctx, "after", "v"); err != nil {
		t.Fatalf("Set after the restart: %v", err)
	}
	c.DropNear("after")
	if r, err := c.Fetch(ctx, "after", constLoader("unused")); err != nil || r.Source != SourceFar {
		t.Fatalf("read after the restart: %+v, %v; want a far hit", r, err)
	}
	var warn, info int
	for _, l := range logs.lines() {
		switch {
		case strings.HasPrefix(l, "WARN"):
			warn++
		case strings.HasPrefix(l, "INFO"):
			info++
		}
		if strings.Contains(l, "k0") || strings.Contains(l, "open-") {
			t.Errorf("a log line names a key: %s", l)
		}
	}
	if warn > 2 || info > 2 {
		t.Fatalf("%d WARN and %d INFO lines for one outage, want at most 2 each (Redis and the subscription, down and back):\n%s",
			warn, info, strings.Join(logs.lines(), "\n"))
	}
}

// While Redis stays down, a summary line comes at most once a minute (by
// the cache's clock), however many operations it affects.
func TestOutageSummaryOncePerMinute(t *testing.T) {
	srv := redistest.Start(t)
	logs := &capture{}
	clock := newFakeClock()
	c := newCache[string](t, Options{Redis: srv.Client(t), Logger: slog.New(logs), Clock: clock,
		Invalidation: InvalidationOptions{Disabled: true}})
	heard := events(c)
	srv.Kill(t)
	ctx := context.Background()
	openBreaker(t, c, heard)
	summaries := func() int {
		n := 0
		for _, l := range logs.lines() {
			if strings.Contains(l, "still down") {
				n++
			}
		}
		return n
	}
	for i := range 1000 {
		c.Get(ctx, fmt.Sprint("a", i), constLoader("v"))
	}
	if n := summaries(); n != 0 {
		t.Fatalf("%d summaries within the first minute, want 0", n)
	}
	clock.Advance(61 * time.Second)
	for i := range 1000 {
		c.Get(ctx, fmt.Sprint("b", i), constLoader("v"))
	}
	if n := summaries(); n != 1 {
		t.Fatalf("%d summaries after a minute, want 1:\n%s", n, strings.Join(logs.lines(), "\n"))
	}
}

// With the default FarTimeout, go-redis's own retries of its dials outlast
// each operation, whose error then says only "context deadline exceeded";
// the breaker still names the cause, and so does ErrUnavailable.
func TestBreakerNamesTheCause(t *testing.T) {
	srv := redistest.Start(t)
	o := srv.Options()
	o.MaxRetries = 0 // the defaults otherwise, dial retries included
	client := redis.NewClient(o)
	t.Cleanup(func() { client.Close() })
	c := newCache[string](t, Options{Redis: client, FarTimeout: 100 * time.Millisecond, Invalidation: InvalidationOptions{Disabled: true}})
	heard := events(c)
	ctx := context.Background()
	srv.Kill(t)
	openBreaker(t, c, heard)
	if h := c.Health(); h.Redis.Err == nil || !strings.Contains(h.Redis.Err.Error(), "connection refused") {
		t.Fatalf("Health().Redis.Err = %v, want connection refused", h.Redis.Err)
	}
	if err := c.Set(ctx, "k", "v"); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Set = %v, want ErrUnavailable wrapping connection refused", err)
	}
}

// The probe closes the breaker once Redis answers, even when its PING
// takes longer than FarTimeout (a new connection on a loaded machine):
// no caller waits for the probe, so it waits up to HealthInterval.
func TestProbeOutlastsFarTimeout(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	const farTimeout = 50 * time.Millisecond
	// Each PING takes three FarTimeouts (or fails when its context ends
	// first); with failGets, each GET fails with a timeout unsent.
	var failGets atomic.Bool
	client.AddHook(commandHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		switch {
		case cmd.Name() == "ping":
			select {
			case <-time.After(3 * farTimeout):
			case <-ctx.Done():
				return ctx.Err()
			}
		case cmd.Name() == "get" && failGets.Load():
			return context.DeadlineExceeded
		}
		return next(ctx, cmd)
	}))
	c := newCache[string](t, Options{Redis: client, FarTimeout: farTimeout,
		Invalidation: InvalidationOptions{HealthInterval: time.Second}})
	heard := events(c)
	failGets.Store(true)
	openBreaker(t, c, heard)
	failGets.Store(false)
	deadline := time.After(patience)
	for {
		select {
		case e := <-heard:
			if e == "redis up" {
				return
			}
		case <-deadline:
			t.Fatalf("the breaker stayed open: %+v", c.Health())
		}
	}
}

// openBreaker Gets new keys through c, whose Redis does not answer, until
// the breaker opens: until heard, c's events, says "redis down".
func openBreaker(t *testing.T, c *Cache[string], heard <-chan string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for i := 0; ; i++ {
		c.Get(context.Background(), fmt.Sprint("open-", i), constLoader("v"))
		select {
		case e := <-heard:
			if e == "redis down" {
				return
			}
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the breaker never opened: %+v", c.Health())
		}
	}
}
