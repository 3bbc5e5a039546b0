package suite

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier"
)

// The stale window: replica A (this process) changes a key that replica
// B (a child process) holds near, and the window lasts from the start of
// A's Set until B no longer serves the old value: until B has dropped its
// copy, when Invalidation.OnPropagation is called. A check rides along:
// from that moment B Gets back to back until a Get does not return the
// old copy, and the start of that Get is reported too (it must be the
// first Get, and every Get that starts later reads Redis, which holds the
// new value). Next to it, the same Redis work done raw: rawWriteScript,
// from its start until a go-redis subscriber in B's process has the
// message. The two kinds of rounds alternate in one loop. Times are the
// wall clock of one machine, read in both processes.

// replicaEnv, when set in the environment, makes the binary (the report,
// or the bench module's test binary) run replica B and nothing else. It
// holds the server's address, the namespace, the raw channel and the key.
const replicaEnv = "TIER_BENCH_REPLICA"

const staleKey = "k"

// ReplicaRequested reports whether this process was started as replica B;
// main and TestMain then call ReplicaMain and exit with its code.
func ReplicaRequested() bool { return os.Getenv(replicaEnv) != "" }

// ReplicaMain runs replica B: it answers the parent's commands on stdin
// ("hold <version>": Get the key until B holds that version near, then
// watch for the change) with lines on stdout ("held"; "tier <dropped>
// <end>", when B had dropped its copy and when its first Get without the
// old copy started; "raw <received>"; "error <text>"), in Unix
// nanoseconds, until stdin ends.
func ReplicaMain() int {
	QuietRedis()
	if err := replica(os.Getenv(replicaEnv), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 1
	}
	return 0
}

func replica(spec string, in io.Reader, stdout io.Writer) error {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return fmt.Errorf("%s=%q: want address, namespace and raw channel", replicaEnv, spec)
	}
	addr, ns, rawChannel := f[0], f[1], f[2]
	ctx := context.Background()
	opts := &redis.Options{Addr: addr, ContextTimeoutEnabled: true}
	client, subClient := redis.NewClient(opts), redis.NewClient(opts)
	defer client.Close()
	defer subClient.Close()

	lines := make(chan string, 16)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		w := bufio.NewWriter(stdout)
		for l := range lines {
			w.WriteString(l + "\n")
			if len(lines) == 0 {
				w.Flush()
			}
		}
		w.Flush()
	}()
	defer func() { close(lines); <-wrote }()

	var (
		armed   atomic.Bool
		old     atomic.Int64
		heardAt atomic.Int64 // when B had dropped its copy
		heard   = make(chan struct{}, 1)
	)
	b, err := tier.New[User](tier.Options{
		Redis: client, Namespace: ns, FarTimeout: farTimeout, Jitter: -1,
		Invalidation: tier.InvalidationOptions{OnPropagation: func(time.Duration) {
			if armed.Load() {
				heardAt.Store(time.Now().UnixNano())
				select {
				case heard <- struct{}{}:
				default:
				}
			}
		}},
	})
	if err != nil {
		return err
	}
	defer b.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.WaitReady(wctx); err != nil {
		return err
	}
	ps := subClient.Subscribe(ctx, rawChannel)
	defer ps.Close()
	if _, err := ps.Receive(wctx); err != nil {
		return err
	}
	go func() {
		for {
			if _, err := ps.ReceiveMessage(ctx); err != nil {
				return
			}
			lines <- "raw " + strconv.FormatInt(time.Now().UnixNano(), 10)
		}
	}()
	// The watcher: once B has dropped its copy, Get, check that the old
	// copy is gone, and report when the drop was done and when that Get
	// started.
	go func() {
		for range heard {
			start := time.Now()
			r, err := b.Fetch(ctx, staleKey, failLoader)
			armed.Store(false)
			switch {
			case err != nil:
				lines <- "error " + err.Error()
			case r.Source == tier.SourceNear && r.Value.ID == old.Load():
				lines <- "error a Get after OnPropagation returned the old copy from the near tier"
			default:
				lines <- "tier " + strconv.FormatInt(heardAt.Load(), 10) + " " + strconv.FormatInt(start.UnixNano(), 10)
			}
		}
	}()
	lines <- "ready"
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		if cmd != "hold" {
			return fmt.Errorf("unknown command %q", sc.Text())
		}
		v, err := strconv.ParseInt(arg, 10, 64)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err := b.Fetch(ctx, staleKey, failLoader)
			if err == nil && r.Source == tier.SourceNear && r.Value.ID == v {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("B never held version %d near (last %+v from %v, %v)", v, r.Value, r.Source, err)
			}
			time.Sleep(50 * time.Microsecond)
		}
		old.Store(v)
		select {
		case <-heard: // a message from before
		default:
		}
		armed.Store(true)
		lines <- "held"
	}
	return sc.Err()
}

// child is replica B seen from the parent.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startChild(addr, ns, rawChannel string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), replicaEnv+"="+addr+" "+ns+" "+rawChannel)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(out)}
	if l, err := c.line(); err != nil || l != "ready" {
		c.close()
		return nil, fmt.Errorf("replica B did not start: %q, %v", l, err)
	}
	return c, nil
}

func (c *child) line() (string, error) {
	l, err := c.out.ReadString('\n')
	return strings.TrimSuffix(l, "\n"), err
}

// expect reads the next line, which must start with kind, and returns
// the times it carries.
func (c *child) expect(kind string) ([]int64, error) {
	l, err := c.line()
	if err != nil {
		return nil, fmt.Errorf("replica B: %w", err)
	}
	f := strings.Fields(l)
	if len(f) < 2 || f[0] != kind {
		return nil, fmt.Errorf("replica B said %q, want %s", l, kind)
	}
	var ts []int64
	for _, v := range f[1:] {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("replica B said %q: %w", l, err)
		}
		ts = append(ts, t)
	}
	return ts, nil
}

func (c *child) close() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

var staleMetrics = []Metric{
	{Name: "p50 µs", Ratio: true, Decimals: 0},
	{Name: "p99 µs", Ratio: true, Decimals: 0},
}

func staleGroups() []Group {
	return []Group{{
		Section: "Stale window", ID: "stale", Redis: true, Metrics: staleMetrics,
		Case: "Set on replica A until replica B, another process, stops serving the old value",
		Impls: []Impl{
			{Name: "tier", Role: Tier, Note: "until B has dropped its copy (Invalidation.OnPropagation, called once it has)"},
			{Name: "tier, first Get", Role: Info, Note: "until the first Get on B after the drop starts, which does not return the old copy"},
			{Name: "raw write", Role: Floor, Note: "the same script, until a go-redis subscriber in B's process has the message"},
		},
		Together: staleTogether,
	}}
}

func staleTogether(env *Env) (func() ([][]float64, error), func(), error) {
	ctx := context.Background()
	const ns, rawNS = "stale", "rawstale"
	rawChannel := rawNS + ":invalidate"
	a, err := newTier(env, ns, nil)
	if err != nil {
		return nil, nil, err
	}
	version := int64(0)
	if err := a.Set(ctx, staleKey, User{ID: version}); err != nil {
		a.Close()
		return nil, nil, err
	}
	b, err := startChild(env.Redis.Addr, ns, rawChannel)
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	w := newRawWriter(env.Client(), rawNS, staleKey, rawChannel)
	value, err := env.Client().Get(ctx, ns+":"+staleKey).Bytes()
	if err != nil {
		b.close()
		a.Close()
		return nil, nil, err
	}
	closeFn := func() { b.close(); a.Close() }

	var lat [3][]time.Duration // tier dropped, tier's first Get after, raw
	since := func(start time.Time, end int64) time.Duration { return time.Duration(end - start.UnixNano()) }
	tierRound := func() error {
		if _, err := fmt.Fprintf(b.in, "hold %d\n", version); err != nil {
			return err
		}
		if l, err := b.line(); err != nil || l != "held" {
			return fmt.Errorf("replica B: %q, %v", l, err)
		}
		version++
		start := time.Now()
		if err := a.Set(ctx, staleKey, User{ID: version}); err != nil {
			return err
		}
		ts, err := b.expect("tier")
		if err != nil || len(ts) != 2 {
			return fmt.Errorf("replica B: %v, %v", ts, err)
		}
		lat[0] = append(lat[0], since(start, ts[0]))
		lat[1] = append(lat[1], since(start, ts[1]))
		return nil
	}
	rawRound := func() error {
		start := time.Now()
		if err := w.write(ctx, value, 10*time.Minute); err != nil {
			return err
		}
		ts, err := b.expect("raw")
		if err != nil {
			return err
		}
		lat[2] = append(lat[2], since(start, ts[0]))
		return nil
	}
	run := func() ([][]float64, error) {
		for k := range lat {
			lat[k] = lat[k][:0]
		}
		rounds := [2]func() error{tierRound, rawRound}
		for i := range env.StaleRounds {
			for j := range 2 {
				if err := rounds[(i+j)%2](); err != nil {
					return nil, err
				}
			}
		}
		return [][]float64{percentiles(lat[0]), percentiles(lat[1]), percentiles(lat[2])}, nil
	}
	return run, closeFn, nil
}

// percentiles returns the p50 and p99 of lat in microseconds.
func percentiles(lat []time.Duration) []float64 {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3
	}
	return []float64{pct(0.50), pct(0.99)}
}
