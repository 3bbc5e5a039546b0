package tier

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
)

// The environment of the child process of BenchmarkPropagationProcs: the
// server's address, and the namespaces of the replicas it runs.
const (
	replicaAddrEnv       = "TIER_BENCH_REPLICA_ADDR"
	replicaNamespacesEnv = "TIER_BENCH_REPLICA_NAMESPACES"
)

// BenchmarkPropagationProcs measures propagation between replicas that are
// separate processes, as they are in production: replica B runs in a child
// process (this test binary again, running only TestBenchReplicaProcess),
// the writers in this one. A round starts when a writer's Set starts and
// ends when B's Get, called as soon as B's subscription has applied a
// message, returns the new value, by B's wall clock (the two processes
// read the same clock). The raw round is a go-redis PUBLISH from this
// process until a subscriber in the child receives it; "publish-local",
// for reference, is the same to a subscriber in this process.
//
// Redis sends a message to a channel's subscribers, and the writer its
// reply, in an order set by when each subscribed (see
// remote.Notice.Writer), so each pair of replicas runs in both: "first",
// the writer subscribed before B, and "last", after it. The "plain"
// writers are the same without a writer channel, as for a user whose ACL
// names only the channel (see invalidate.Bus.WriterChannel). Each pair has
// a namespace of its own, so that a write reaches only its writer and its
// B. The rounds alternate in a rotating order (see alternate).
//
//	go test -run x -bench PropagationProcs -benchtime 10000x .
func BenchmarkPropagationProcs(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	writer := func(ns string, plain bool) *Cache[int] {
		client := srv.Client(b)
		if plain {
			client = channelOnlyClient(b, srv, ns)
		}
		c, err := New[int](Options{Redis: client, Namespace: ns, FarTimeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		if err := c.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		if has := c.bus.WriterChannel() != ""; has == plain {
			b.Fatalf("writer %s: writer channel %v", ns, has)
		}
		return c
	}
	namespaces := []string{"first", "first-plain", "last", "last-plain"}
	writers := map[string]*Cache[int]{
		"first":       writer("first", false),
		"first-plain": writer("first-plain", true),
	}
	seen := startReplicaProcess(b, srv, namespaces)
	writers["last"] = writer("last", false)
	writers["last-plain"] = writer("last-plain", true)

	pub := srv.Client(b)
	local := handoffSubscriber(b, srv.Client(b), "raw-local")
	names := append([]string{"publish", "publish-local"}, namespaces...)
	steps := []func(int) time.Time{func(i int) time.Time {
		if err := pub.Publish(ctx, "raw", strconv.Itoa(i)).Err(); err != nil {
			b.Fatal(err)
		}
		return seen.wait(b, "raw", i)
	}, func(i int) time.Time {
		if err := pub.Publish(ctx, "raw-local", strconv.Itoa(i)).Err(); err != nil {
			b.Fatal(err)
		}
		return <-local
	}}
	for _, ns := range namespaces {
		a := writers[ns]
		steps = append(steps, func(i int) time.Time {
			if err := a.Set(ctx, "k", i); err != nil {
				b.Fatal(err)
			}
			return seen.wait(b, ns, i)
		})
	}
	lat := alternate(b, steps)
	for _, p := range []float64{0.50, 0.99} {
		raw := percentile(lat[0], p)
		var pooled, plain []time.Duration
		for k, name := range names {
			d := percentile(lat[k], p)
			b.ReportMetric(float64(d.Microseconds()), fmt.Sprintf("%s-p%02.0f-µs", name, p*100))
			if k > 0 {
				b.ReportMetric(float64(d)/float64(raw), fmt.Sprintf("%s/publish-p%02.0f", name, p*100))
			}
			switch name {
			case "first", "last":
				pooled = append(pooled, lat[k]...)
			case "first-plain", "last-plain":
				plain = append(plain, lat[k]...)
			}
		}
		// Both orders together: what a replica gets when it does not
		// know whether it subscribed before the writer.
		b.ReportMetric(float64(percentile(pooled, p))/float64(raw), fmt.Sprintf("tier/publish-p%02.0f", p*100))
		b.ReportMetric(float64(percentile(plain, p))/float64(raw), fmt.Sprintf("plain/publish-p%02.0f", p*100))
	}
}

// channelOnlyClient returns a client of srv as a user whose ACL names the
// invalidation channel of ns and nothing else: no writer channel.
func channelOnlyClient(b *testing.B, srv *redistest.Server, ns string) *redis.Client {
	user := "plain-" + ns
	err := srv.Client(b).Do(context.Background(), "ACL", "SETUSER", user, "on", ">pw",
		"resetkeys", "~"+ns+":*", "resetchannels", "&"+ns+":invalidate", "+@all").Err()
	if err != nil {
		b.Fatal(err)
	}
	o := srv.Options()
	o.Username, o.Password = user, "pw"
	c := redis.NewClient(o)
	b.Cleanup(func() { c.Close() })
	return c
}

// sightings are what the child process reports: for each of its replicas
// (by namespace), each value its Get returned as soon as a message was
// applied, and for "raw", each message its subscriber received, with the
// moment, by its wall clock.
type sightings chan sighting

type sighting struct {
	kind  string
	value int
	at    time.Time
}

// wait returns the moment the child saw value under kind; earlier
// sightings are dropped.
func (s sightings) wait(b *testing.B, kind string, value int) time.Time {
	timeout := time.After(10 * time.Second) // turns a hang into a failure; nothing is timed by it
	for {
		select {
		case o, ok := <-s:
			if !ok {
				b.Fatal("the replica process ended")
			}
			if o.kind == kind && o.value == value {
				return o.at
			}
		case <-timeout:
			b.Fatalf("the replica process never saw %s = %d", kind, value)
		}
	}
}

// startReplicaProcess starts the child process of BenchmarkPropagationProcs
// with a replica for each namespace, waits until all are subscribed, and
// returns what it reports. It stops the child when the benchmark ends, by
// closing its standard input.
func startReplicaProcess(b *testing.B, srv *redistest.Server, namespaces []string) sightings {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchReplicaProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), replicaAddrEnv+"="+srv.Addr(), replicaNamespacesEnv+"="+strings.Join(namespaces, ","))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.WaitDelay = 10 * time.Second // then Wait kills it
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("replica process: %v", err)
		}
	})
	lines := bufio.NewScanner(stdout)
	ready := make(chan string, 1)
	go func() {
		lines.Scan()
		ready <- lines.Text()
	}()
	select {
	case l := <-ready:
		if l != "ready" {
			b.Fatalf("replica process: %q instead of ready", l)
		}
	case <-time.After(30 * time.Second): // turns a hang into a failure
		b.Fatal("replica process: not ready within 30s")
	}
	s := make(sightings, 1024)
	go func() {
		defer close(s)
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			if len(f) != 3 {
				continue // the test framework's own lines
			}
			v, err1 := strconv.Atoi(f[1])
			ns, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 == nil && err2 == nil {
				s <- sighting{f[0], v, time.Unix(0, ns)}
			}
		}
	}()
	return s
}

// TestBenchReplicaProcess is the child process of
// BenchmarkPropagationProcs, and is skipped otherwise. It runs a replica of
// an int cache for each namespace its environment names, each holding "k"
// near, and a raw subscriber of the channel "raw"; it prints "ready", then
// a line "<namespace or raw> <value> <Unix nanoseconds>" for each value a
// replica's Get returns right after its subscription applied a message,
// and for each message the raw subscriber receives, until its standard
// input closes.
func TestBenchReplicaProcess(t *testing.T) {
	addr := os.Getenv(replicaAddrEnv)
	if addr == "" {
		t.Skip("only as the child process of BenchmarkPropagationProcs")
	}
	// The parent closes standard input to stop this process, or by
	// ending: watched from the start, so that no wait below outlives it.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer client.Close()
	out := make(chan string, 1024)
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		w := bufio.NewWriter(os.Stdout)
		for l := range out {
			w.WriteString(l)
			if len(out) == 0 {
				w.Flush()
			}
		}
		w.Flush()
	}()
	loader := LoaderFunc[int](func(context.Context, string) (int, error) { return -1, nil })
	var replicas []*Cache[int]
	for _, ns := range strings.Split(os.Getenv(replicaNamespacesEnv), ",") {
		c, err := New[int](Options{Redis: client, Namespace: ns, FarTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, c)
		if err := c.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, "k", loader); err != nil {
			t.Fatal(err)
		}
		seen := func(e string) {
			if e != "keys" {
				return
			}
			v, err := c.Get(ctx, "k", loader)
			at := time.Now().UnixNano()
			if err == nil {
				out <- fmt.Sprintf("%s %d %d\n", ns, v, at)
			}
		}
		c.busEvent.Store(&seen)
	}
	ps := client.Subscribe(ctx, "raw")
	if _, err := ps.Receive(ctx); err != nil { // the confirmation
		t.Fatal(err)
	}
	received := make(chan struct{})
	go func() {
		defer close(received)
		for {
			m, err := ps.ReceiveMessage(ctx)
			if err != nil {
				return // closed
			}
			at := time.Now().UnixNano()
			out <- fmt.Sprintf("raw %s %d\n", m.Payload, at)
		}
	}()
	out <- "ready\n"
	<-ctx.Done()
	ps.Close()
	<-received
	for _, c := range replicas {
		c.Close()
	}
	close(out)
	<-printed
}
