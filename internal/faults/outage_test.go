package faults_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/internal/redistest"
)

// The defaults that TestOutageAtFullSpeed runs with, as Options documents
// them.
const (
	defaultFarTimeout      = 100 * time.Millisecond
	defaultHealthInterval  = time.Second
	defaultDegradedNearTTL = 2 * defaultHealthInterval
)

// outageFault is one way for Redis to fail, as TestOutageAtFullSpeed
// applies it.
type outageFault struct {
	name string
	// span is how long the workload runs between begin and end.
	span time.Duration
	// redisDown: Redis stops answering (else only the subscription is lost).
	redisDown bool
	// begin strikes; end undoes the fault and returns once Redis answers.
	begin, end func(t *testing.T, srv *redistest.Server)
}

// The issue: "Survive a Redis outage at full speed. Before: ~100k Gets/s;
// after kill -9 of redis-server: ~80 Gets/s: every Get waited the whole
// FarTimeout on a dead server. A hung server (SIGSTOP, CLIENT PAUSE) is
// the same."
//
// For each fault, 8 goroutines Get 20 keys (a loader that takes no time)
// from a cache with the default Options, before, during and after it. The
// figures (Gets/s, loads, when far hits resume, log lines) are logged;
// what is asserted is behaviour, with bounds that no busy machine comes
// near: no Get fails; once the cache has noticed, it sends Redis nothing
// but its probe's PINGs; loads during the outage stay within what
// DegradedNearTTL allows; far hits resume by themselves once Redis
// answers (within 30s; how soon is logged against its target,
// 2×HealthInterval); the near tier is used again after; the log has a
// handful of lines and names no key. Throughput and recovery time are a
// benchmark's business: they are logged, not asserted.
//
// go-redis logs failed dials to stderr by itself, outside Options.Logger;
// its lines are counted apart.
//
// With -short, the 10s outages last 5s.
func TestOutageAtFullSpeed(t *testing.T) {
	outage := 10 * time.Second // the issue's
	if testing.Short() {
		outage = 5 * time.Second
	}
	goRedisLog := &printfCounter{}
	redis.SetLogger(goRedisLog)
	defer redis.SetLogger(stderrLogger{log.New(os.Stderr, "redis: ", log.LstdFlags)})
	faults := []outageFault{
		{"kill -9, restart", outage, true,
			func(t *testing.T, srv *redistest.Server) { srv.Kill(t) },
			func(t *testing.T, srv *redistest.Server) { srv.Restart(t) }},
		{"SIGSTOP, SIGCONT", outage, true,
			func(t *testing.T, srv *redistest.Server) { srv.Suspend(t) },
			func(t *testing.T, srv *redistest.Server) { srv.Resume(t) }},
		{"CLIENT PAUSE ALL", outage, true,
			func(t *testing.T, srv *redistest.Server) { srv.Pause(t, outage) },
			func(t *testing.T, srv *redistest.Server) { srv.WaitAnswering(t) }},
		{"subscription killed", 2 * time.Second, false,
			func(t *testing.T, srv *redistest.Server) { srv.KillClients(t, "pubsub") },
			func(t *testing.T, srv *redistest.Server) {}},
	}
	var rows []string
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			before := goRedisLog.n.Load()
			row := runOutage(t, f)
			n := goRedisLog.n.Load() - before
			if n > 0 {
				t.Logf("go-redis printed %d lines of its own (to stderr by default), the last: %s", n, goRedisLog.lastLine())
			}
			rows = append(rows, fmt.Sprintf("%s | %d", row, n))
		})
	}
	t.Logf("8 goroutines, 20 keys, default Options (FarTimeout %v, HealthInterval %v, DegradedNearTTL %v):\n"+
		"%-20s | %9s | %9s | %9s | %6s | %5s | %6s | %4s | %7s | %7s | %8s | %8s | %s\n%s",
		defaultFarTimeout, defaultHealthInterval, defaultDegradedNearTTL,
		"fault", "before/s", "during/s", "after/s", "ratio", "loads", "bound", "slow", "outage", "noticed", "far back", "warn/all", "go-redis",
		strings.Join(rows, "\n"))
}

// runOutage runs one fault of TestOutageAtFullSpeed and returns its row
// of figures.
func runOutage(t *testing.T, f outageFault) string {
	const (
		keys       = 20
		goroutines = 8
		phase      = 2 * time.Second // before and after the fault
	)
	srv := redistest.Start(t)
	client := srv.Client(t)
	sent := &workCounter{}
	client.AddHook(sent)
	logs := &logCapture{}
	c := newCache(t, client, tier.Options{Namespace: "outage", Logger: slog.New(logs)})
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	w := startWorkload(t, c, keys, goroutines)

	// Before: every key is loaded once, then kept near.
	s0 := w.snapshot()
	time.Sleep(phase) // the workload runs for the phase
	s1 := w.snapshot()
	if n := s1.loads; n != keys {
		t.Errorf("%d loads of %d keys before the fault, want one each", n, keys)
	}

	// During: the fault, for its span.
	faultAt := time.Now()
	f.begin(t, srv)
	var (
		noticed, farDuring time.Duration = -1, -1
		sentSince          int64
		down               tier.Health
	)
	if f.redisDown {
		// A hung server's loss is noticed by the subscription within
		// 2×HealthInterval; then the near tier is dropped, and the Gets
		// that miss open the breaker. This only turns a cache that never
		// notices into a failure.
		eventually(t, "Health says Redis is down", func() bool { return c.Health().Redis.State == tier.StateDown })
		noticed = time.Since(faultAt)
		down = c.Health()
		sentSince = sent.work.Load()
		if !down.Degraded || down.Redis.Err == nil || down.NearTTL != defaultDegradedNearTTL {
			t.Errorf("Health during the outage = %+v; want degraded, Redis down with its cause, NearTTL %v", down, defaultDegradedNearTTL)
		}
		start := time.Now()
		err := c.Set(ctx, "probe-set", "v")
		if took := time.Since(start); !errors.Is(err, tier.ErrUnavailable) || took > time.Second {
			t.Errorf("Set during the outage returned %v after %v; want ErrUnavailable at once", err, took)
		}
		t.Logf("noticed %v after the fault; Health: %v; Set: %v", noticed.Round(time.Millisecond), down, err)
	} else {
		// Redis answers throughout: far hits go on, and the subscription
		// comes back.
		farDuring = eventually(t, "a far hit with the subscription lost", farHits(c))
		eventually(t, "the subscription lost and back", func() bool {
			st := c.Stats()
			return st.Losses > 0 && st.Reconnects > 0 && c.Health().Subscription.State == tier.StateUp
		})
	}
	time.Sleep(time.Until(faultAt.Add(f.span))) // the workload runs for the span
	if f.redisDown {
		// Commands sent since Health said down, beyond the probe's PINGs:
		// at most those already under way when the breaker opened. Counted
		// only if the breaker stayed open throughout (a CLIENT PAUSE ends
		// by itself, maybe already on a slow machine).
		n := sent.work.Load() - sentSince
		if h := c.Health(); h.Redis.State == tier.StateDown && h.Redis.Since.Equal(down.Redis.Since) {
			if n > goroutines {
				t.Errorf("%d commands other than PING sent to Redis while the breaker was open, want none but those under way (%d at most)",
					n, goroutines)
			}
			t.Logf("%d commands other than PING sent to Redis while the breaker was open", n)
		} else {
			t.Logf("the breaker closed before the end of the span (Health %v): commands sent while open not checked", h)
		}
		if st := c.Stats(); st.FarSkipped == 0 {
			t.Errorf("no Redis operation skipped during the outage: %+v", st)
		}
	}
	f.end(t, srv)
	answered := time.Now()
	s2 := w.snapshot()

	// Recovery: from Redis answering until far hits resume, and until
	// the cache is healthy.
	eventually(t, "far hits after Redis answers again", farHits(c))
	farBack := time.Since(answered)
	eventually(t, "Health ok", func() bool { return !c.Health().Degraded })
	healthy := time.Since(answered)
	// That far hits resume at all, by themselves, is asserted (eventually
	// above); how soon is a figure, logged against its target.
	target := "met"
	if farBack > 2*defaultHealthInterval {
		target = "missed"
	}
	t.Logf("far hits resumed %v after Redis answered again; target 2×HealthInterval (%v) %s",
		farBack.Round(time.Millisecond), 2*defaultHealthInterval, target)

	// After: the near tier holds every key again.
	s3 := w.snapshot()
	time.Sleep(phase) // the workload runs for the phase
	s4 := w.snapshot()
	w.stop()

	outage := answered.Sub(faultAt)
	during := s2.sub(s1)
	// DegradedNearTTL bounds each key's near life during the outage: a
	// load per key per DegradedNearTTL, with half again of slack, and a
	// load per key when the fault strikes.
	loadBound := int64(1.5*keys*outage.Seconds()/defaultDegradedNearTTL.Seconds()) + keys
	if !f.redisDown {
		loadBound = keys // Redis holds every value: a lost subscription costs far reads, not loads
	}
	if during.loads > loadBound {
		t.Errorf("%d loads during a %v outage, over %d", during.loads, outage.Round(time.Millisecond), loadBound)
	}
	if after := s4.sub(s3); after.loads > keys {
		t.Errorf("%d loads in the %v after recovery, want at most one per key: the near tier is not used again", after.loads, phase)
	}
	if n, first := w.failures(); n > 0 {
		t.Errorf("%d Gets failed; the first: %v", n, first)
	}
	warn, all := 0, 0
	for _, l := range logs.lines() {
		all++
		if l.level >= slog.LevelWarn {
			warn++
		}
		if strings.Contains(l.text, "user-") || strings.Contains(l.text, "probe-") {
			t.Errorf("a log line names a key: %s", l.text)
		}
	}
	if warn > 5 {
		t.Errorf("%d log lines at WARN and above for one outage, want at most 5:\n%s", warn, logs.String())
	}

	before, after := s1.sub(s0), s4.sub(s3)
	t.Logf("%s: Gets/s before %.0f, during %.0f (%.0f%% of before), after %.0f; during the %v outage %d loads (bound %d), %d Gets took FarTimeout or longer",
		f.name, before.rate(), during.rate(), 100*during.rate()/before.rate(), after.rate(),
		outage.Round(time.Millisecond), during.loads, loadBound, during.slow)
	if farDuring >= 0 {
		t.Logf("far hits during the fault: the first %v after it struck", farDuring.Round(time.Microsecond))
	}
	t.Logf("Redis answering again -> far hits %v, healthy %v; log lines %d at WARN+, %d at INFO+:\n%s",
		farBack.Round(time.Millisecond), healthy.Round(time.Millisecond), warn, all, logs.String())
	row := fmt.Sprintf("%-20s | %9.0f | %9.0f | %9.0f | %5.0f%% | %5d | %6d | %4d | %7s | %7s | %8s | %8s",
		f.name, before.rate(), during.rate(), after.rate(), 100*during.rate()/before.rate(),
		during.loads, loadBound, during.slow, outage.Round(10*time.Millisecond), orDash(noticed),
		farBack.Round(time.Millisecond), fmt.Sprintf("%d/%d", warn, all))
	return row
}

// orDash rounds d to the millisecond, or says "-" for a negative d: a
// figure that does not apply.
func orDash(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}

// farHits returns a condition that holds when a fresh key, loaded and
// dropped from the near tier, is read from Redis.
func farHits(c *tier.Cache[string]) func() bool {
	i := 0
	return func() bool {
		i++
		return farHit(c, fmt.Sprint("probe-", i))
	}
}

// workload runs goroutines that Get keys in turn with a loader that
// counts its calls and takes no time.
type workload struct {
	workers []worker
	loads   atomic.Int64
	failed  atomic.Int64
	first   atomic.Pointer[string]
	halt    atomic.Bool
	wg      sync.WaitGroup
	once    sync.Once
}

// worker is one goroutine's counts, padded apart from its neighbours'.
type worker struct {
	gets atomic.Int64
	slow atomic.Int64 // Gets that took defaultFarTimeout or longer
	_    [48]byte
}

func startWorkload(t *testing.T, c *tier.Cache[string], keys, goroutines int) *workload {
	w := &workload{workers: make([]worker, goroutines)}
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("user-%02d", i)
	}
	loader := tier.LoaderFunc[string](func(_ context.Context, key string) (string, error) {
		w.loads.Add(1)
		return "v:" + key, nil
	})
	ctx := context.Background()
	for g := range goroutines {
		me := &w.workers[g]
		w.wg.Go(func() {
			for i := g * keys / goroutines; !w.halt.Load(); i++ {
				key := names[i%keys]
				start := time.Now()
				v, err := c.Get(ctx, key, loader)
				if time.Since(start) >= defaultFarTimeout {
					me.slow.Add(1)
				}
				me.gets.Add(1)
				if err != nil || v != "v:"+key {
					if w.failed.Add(1) == 1 {
						msg := fmt.Sprintf("Get(%q) = %q, %v", key, v, err)
						w.first.Store(&msg)
					}
				}
			}
		})
	}
	t.Cleanup(w.stop)
	return w
}

// stop ends the workload and waits for its goroutines.
func (w *workload) stop() {
	w.once.Do(func() {
		w.halt.Store(true)
		w.wg.Wait()
	})
}

// failures returns how many Gets failed or returned a wrong value, and
// the first.
func (w *workload) failures() (int64, string) {
	n := w.failed.Load()
	if p := w.first.Load(); p != nil {
		return n, *p
	}
	return n, ""
}

// counts are a workload's totals at a moment.
type counts struct {
	at                time.Time
	gets, slow, loads int64
	span              time.Duration // for a difference of two
}

func (w *workload) snapshot() counts {
	s := counts{at: time.Now(), loads: w.loads.Load()}
	for i := range w.workers {
		s.gets += w.workers[i].gets.Load()
		s.slow += w.workers[i].slow.Load()
	}
	return s
}

// sub returns what happened between earlier and s.
func (s counts) sub(earlier counts) counts {
	return counts{at: s.at, gets: s.gets - earlier.gets, slow: s.slow - earlier.slow,
		loads: s.loads - earlier.loads, span: s.at.Sub(earlier.at)}
}

func (s counts) rate() float64 { return float64(s.gets) / s.span.Seconds() }

// workCounter is a go-redis hook that counts the commands sent, but for
// PINGs and go-redis's own handshake.
type workCounter struct{ work atomic.Int64 }

func (h *workCounter) count(cmds ...redis.Cmder) {
	for _, cmd := range cmds {
		switch strings.ToLower(cmd.Name()) {
		case "ping", "hello", "client", "auth", "select":
		default:
			h.work.Add(1)
		}
	}
}

func (h *workCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *workCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h *workCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.count(cmds...)
		return next(ctx, cmds)
	}
}

// logCapture is a slog handler that keeps the records at INFO and above,
// as a service's logger would.
type logCapture struct {
	mu      sync.Mutex
	records []logLine
}

type logLine struct {
	level slog.Level
	text  string
}

func (h *logCapture) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	text := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { text += " " + a.String(); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, logLine{r.Level, text})
	return nil
}
func (h *logCapture) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCapture) WithGroup(string) slog.Handler      { return h }

func (h *logCapture) lines() []logLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]logLine(nil), h.records...)
}

func (h *logCapture) String() string {
	var sb strings.Builder
	for _, l := range h.lines() {
		sb.WriteString("\t" + l.text + "\n")
	}
	return sb.String()
}

// printfCounter is a go-redis logger that counts its lines and keeps the
// last.
type printfCounter struct {
	n    atomic.Int64
	last atomic.Pointer[string]
}

func (p *printfCounter) Printf(_ context.Context, format string, v ...any) {
	p.n.Add(1)
	line := fmt.Sprintf(format, v...)
	p.last.Store(&line)
}

func (p *printfCounter) lastLine() string {
	if l := p.last.Load(); l != nil {
		return *l
	}
	return "(none)"
}

// stderrLogger is go-redis's default logger, as near as a user can build it.
type stderrLogger struct{ l *log.Logger }

func (s stderrLogger) Printf(_ context.Context, format string, v ...any) { s.l.Printf(format, v...) }
