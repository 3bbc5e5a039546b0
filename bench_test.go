package tier

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/codec"
	"github.com/tier-cache/tier/internal/redistest"
	"github.com/tier-cache/tier/remote"
)

// benchUser is the struct value the benchmarks cache.
type benchUser struct {
	ID    int64
	Name  string
	Email string
	Flags uint32
}

const benchKeys = 10_000

// sink keeps the benchmarks' reads from being optimised away, and makes
// both hit benchmarks wait for the value they read.
var sink int64

func benchKeyList() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	return keys
}

// benchFilledCache returns a near-only cache holding benchKeys users,
// and their keys. Both hit benchmarks use it, so that their entries lie in
// memory the same way.
func benchFilledCache(b *testing.B) (*Cache[benchUser], []string) {
	c, err := New[benchUser](Options{NearCapacity: benchKeys, NearTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	keys := benchKeyList()
	for i, k := range keys {
		c.Set(context.Background(), k, benchUser{ID: int64(i), Name: k})
	}
	return c, keys
}

// BenchmarkNearHit is a hit through tier.Cache.Get; compare it with
// BenchmarkLocalHit, the same hit on the near tier alone.
func BenchmarkNearHit(b *testing.B) {
	c, keys := benchFilledCache(b)
	ctx := context.Background()
	loader := LoaderFunc[benchUser](func(context.Context, string) (benchUser, error) {
		b.Fatal("a near hit called the loader")
		return benchUser{}, nil
	})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		u, err := c.Get(ctx, keys[i], loader)
		if err != nil {
			b.Fatal(err)
		}
		sink += u.ID
		if i++; i == benchKeys {
			i = 0
		}
	}
}

// BenchmarkLocalHit is the floor for BenchmarkNearHit: the same hits on
// the near tier of the same kind of cache, filled the same way, without
// the tier.Cache around it.
func BenchmarkLocalHit(b *testing.B) {
	c, keys := benchFilledCache(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e, ok := c.near.Get(keys[i])
		if !ok {
			b.Fatal("miss")
		}
		sink += e.value.ID
		if i++; i == benchKeys {
			i = 0
		}
	}
}

func benchRedis(b *testing.B) *redis.Client {
	srv := redistest.Start(b)
	return srv.Client(b)
}

// benchFarCache returns a cache on a real redis-server holding "user:1" in
// Redis, its client, and a loader that fails the benchmark if called.
func benchFarCache(b *testing.B) (*Cache[benchUser], *redis.Client, Loader[benchUser]) {
	client := benchRedis(b)
	c, err := New[benchUser](Options{Redis: client, FarTimeout: time.Second, DisableInvalidation: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.Set(context.Background(), "user:1", benchUser{ID: 1, Name: "Ada Lovelace", Email: "ada@example.com"}); err != nil {
		b.Fatal(err)
	}
	loader := LoaderFunc[benchUser](func(context.Context, string) (benchUser, error) {
		b.Fatal("a far hit called the loader")
		return benchUser{}, nil
	})
	return c, client, loader
}

// BenchmarkFarHit is a near miss answered by a real redis-server on
// loopback: one round trip (one plain GET), decode, near fill.
// Compare it with BenchmarkRawRedisGet of the same bytes.
func BenchmarkFarHit(b *testing.B) {
	c, _, loader := benchFarCache(b)
	b.ReportAllocs()
	for b.Loop() {
		farHitOnce(b, c, loader) // every read misses the near tier
	}
}

// farHitOnce drops "user:1" from the near tier and reads it through
// Fetch, failing b unless Redis answered.
func farHitOnce(b *testing.B, c *Cache[benchUser], loader Loader[benchUser]) {
	c.near.Delete("user:1")
	if r, err := c.Fetch(context.Background(), "user:1", loader); err != nil || r.Source != SourceFar {
		b.Fatalf("%+v, %v", r, err)
	}
}

// BenchmarkRawRedisGet is the floor for BenchmarkFarHit: a plain go-redis
// GET of the same encoded bytes, on the same kind of client.
func BenchmarkRawRedisGet(b *testing.B) {
	client := benchRedis(b)
	f, _ := codec.New(codec.Options{})
	data, _ := f.Encode(benchUser{ID: 1, Name: "Ada Lovelace", Email: "ada@example.com"})
	ctx := context.Background()
	if err := client.Set(ctx, "tier:user:1", data, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Get(ctx, "tier:user:1").Bytes(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPropagation measures how long a change on one replica takes to
// reach another: from the start of replica A's Set until replica B, which
// held the old value in its near tier, gets the new value from Get. Next
// to it, "raw-pubsub" is a plain go-redis PUBLISH until the subscriber
// receives it, on the same server. Each iteration is one round; run
// 10k rounds with -benchtime 10000x and read the p50 and p99 metrics.
func BenchmarkPropagation(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	b.Run("tier", func(b *testing.B) {
		a, r, got := propagationReplicas(b, srv)
		loader := LoaderFunc[int](func(context.Context, string) (int, error) { return -1, nil })
		if err := a.Set(ctx, "k", 0); err != nil {
			b.Fatal(err)
		}
		<-got
		lat := make([]time.Duration, 0, b.N)
		i := 0
		for b.Loop() {
			b.StopTimer()
			if v, _ := r.Get(ctx, "k", loader); v != i { // B holds the old value near
				b.Fatalf("B has %d before round %d", v, i)
			}
			i++
			b.StartTimer()
			start := time.Now()
			if err := a.Set(ctx, "k", i); err != nil {
				b.Fatal(err)
			}
			<-got
			if v, err := r.Get(ctx, "k", loader); err != nil || v != i {
				b.Fatalf("round %d: B got %d, %v", i, v, err)
			}
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
	b.Run("raw-pubsub", func(b *testing.B) {
		pub, sub := srv.Client(b), srv.Client(b)
		ps := sub.Subscribe(ctx, "raw")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			if err := pub.Publish(ctx, "raw", "k").Err(); err != nil {
				b.Fatal(err)
			}
			if _, err := ps.ReceiveMessage(ctx); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
	// The same round with the subscriber reading on its own goroutine, as
	// a replica's subscription does, and telling the publisher over a
	// channel, as the tier round's event does: the hand-off between
	// goroutines that any cross-process propagation pays, measured raw.
	b.Run("raw-pubsub-handoff", func(b *testing.B) {
		pub, got := srv.Client(b), handoffSubscriber(b, srv.Client(b), "raw")
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			if err := pub.Publish(ctx, "raw", "k").Err(); err != nil {
				b.Fatal(err)
			}
			<-got
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
	// tier's own mechanism without the cache around it: remote.Store's
	// SetNotify (the write and its message in one transaction, as Set sends
	// them) received raw on the subscriber's own goroutine, which signals
	// back. The tier round adds to it the work of both caches and the
	// writer's own subscription, which hears its message too.
	b.Run("raw-setnotify-handoff", func(b *testing.B) {
		pub, got := srv.Client(b), handoffSubscriber(b, srv.Client(b), "raw")
		store, err := remote.New(pub, remote.Options{Namespace: "raw", Timeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, b.N)
		i := 0
		for b.Loop() {
			i++
			v := []byte(strconv.Itoa(i))
			start := time.Now()
			if err := store.SetNotify(ctx, "k", v, time.Hour, remote.Notice{Channel: "raw", Payloads: [][]byte{v}}); err != nil {
				b.Fatal(err)
			}
			<-got
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
}

// BenchmarkPropagationPaired is BenchmarkPropagation with its rounds
// alternating in one loop, so that the floors and tier meet the same
// moments of a noisy machine. Each iteration runs, in a rotating order: a
// tier round (Set on A until B's Get returns the new value); a raw PUBLISH
// round received on the publisher's goroutine; one received on the
// subscriber's own goroutine; a raw SetNotify round; and the same with a
// second subscriber on the channel, as the writer's own subscription is on
// tier's.
//
// A round ends when the receiver has the change, timed on the receiver's
// goroutine: for tier, when B's Get, called as soon as B's subscription has
// applied a message, returns the new value; for the raw rounds, when the subscriber
// reads the message. That is propagation: whether the writer has its reply
// yet is not part of it, and the next round starts only once it has. The
// tier round is also reported as "tier-acked", ending only when both A's
// Set has returned and B has the value.
//
// It reports the p50 and p99 of each, tier's ratios to the PUBLISH rounds,
// and its ratio to the last round, the floor of a design that sends the
// write and its message as one transaction to a channel the writer hears
// too.
func BenchmarkPropagationPaired(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	a, r, _ := propagationReplicas(b, srv)
	expect, seen := propagationWatcher(r)

	pub := srv.Client(b)
	direct := srv.Client(b).Subscribe(ctx, "raw-direct")
	b.Cleanup(func() { direct.Close() })
	if _, err := direct.Receive(ctx); err != nil {
		b.Fatal(err)
	}
	handoff := handoffSubscriber(b, srv.Client(b), "raw-handoff")
	script := handoffSubscriber(b, srv.Client(b), "raw-script")
	two := handoffSubscriber(b, srv.Client(b), "raw-two")
	selfSubscriber(b, srv.Client(b), "raw-two")
	store, err := remote.New(pub, remote.Options{Namespace: "raw", Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}

	var acked []time.Duration
	rounds := []struct {
		name string
		run  func(i int) time.Time
	}{
		{"tier", func(i int) time.Time {
			start := time.Now()
			expect(i)
			if err := a.Set(ctx, "k", i); err != nil {
				b.Fatal(err)
			}
			done := time.Now()
			got := <-seen
			acked = append(acked, max(done.Sub(start), got.Sub(start)))
			return got
		}},
		{"publish", func(int) time.Time {
			if err := pub.Publish(ctx, "raw-direct", "k").Err(); err != nil {
				b.Fatal(err)
			}
			if _, err := direct.ReceiveMessage(ctx); err != nil {
				b.Fatal(err)
			}
			return time.Now()
		}},
		{"publish-handoff", func(int) time.Time {
			if err := pub.Publish(ctx, "raw-handoff", "k").Err(); err != nil {
				b.Fatal(err)
			}
			return <-handoff
		}},
		{"setnotify-handoff", func(i int) time.Time {
			v := []byte(strconv.Itoa(i))
			if err := store.SetNotify(ctx, "k", v, time.Hour, remote.Notice{Channel: "raw-script", Payloads: [][]byte{v}}); err != nil {
				b.Fatal(err)
			}
			return <-script
		}},
		{"setnotify-two", func(i int) time.Time {
			v := []byte(strconv.Itoa(i))
			if err := store.SetNotify(ctx, "k", v, time.Hour, remote.Notice{Channel: "raw-two", Payloads: [][]byte{v}}); err != nil {
				b.Fatal(err)
			}
			return <-two
		}},
	}
	steps := make([]func(int) time.Time, len(rounds))
	for k := range rounds {
		steps[k] = rounds[k].run
	}
	lat := alternate(b, steps)
	for k, rd := range rounds {
		b.ReportMetric(float64(percentile(lat[k], 0.50).Microseconds()), rd.name+"-p50-µs")
		b.ReportMetric(float64(percentile(lat[k], 0.99).Microseconds()), rd.name+"-p99-µs")
	}
	b.ReportMetric(float64(percentile(acked, 0.50).Microseconds()), "tier-acked-p50-µs")
	b.ReportMetric(float64(percentile(acked, 0.99).Microseconds()), "tier-acked-p99-µs")
	for _, p := range []float64{0.50, 0.99} {
		t := float64(percentile(lat[0], p))
		b.ReportMetric(t/float64(percentile(lat[1], p)), fmt.Sprintf("tier/publish-p%02.0f", p*100))
		b.ReportMetric(t/float64(percentile(lat[2], p)), fmt.Sprintf("tier/handoff-p%02.0f", p*100))
		b.ReportMetric(t/float64(percentile(lat[4], p)), fmt.Sprintf("tier/two-p%02.0f", p*100))
		b.ReportMetric(float64(percentile(acked, p))/float64(percentile(lat[1], p)), fmt.Sprintf("tier-acked/publish-p%02.0f", p*100))
	}
}

// propagationWatcher stands for B's request handlers: each time B's
// subscription has applied a change, it calls B's Get, on the goroutine
// that applied it, and the first time Get returns the value last passed to
// expect, it sends the moment Get returned. It replaces the hook that
// propagationReplicas set on r.
func propagationWatcher(r *Cache[int]) (expect func(int), seen <-chan time.Time) {
	ctx := context.Background()
	loader := LoaderFunc[int](func(context.Context, string) (int, error) { return -1, nil })
	var want atomic.Int64
	want.Store(-1)
	out := make(chan time.Time, 1)
	f := func(e string) {
		if e != "keys" {
			return
		}
		w := want.Load()
		if v, err := r.Get(ctx, "k", loader); err == nil && int64(v) == w && want.CompareAndSwap(w, -1) {
			out <- time.Now()
		}
	}
	r.busEvent.Store(&f)
	return func(i int) { want.Store(int64(i)) }, out
}

// BenchmarkNotifyRounds backs what README says of the ways to send a write
// and its message: it alternates, in one loop, rounds that each end when a
// subscriber on its own goroutine has read the message. Each way of sending
// runs twice: with that subscriber alone on its channel, and with a second
// one, subscribed after it, as the writer's own subscription is on a
// replica's channel. The ways: a bare PUBLISH; SetNotify (SET and PUBLISH
// in MULTI/EXEC); the same with a writer channel, which the second
// subscriber listens on (remote.Notice.Writer), as tier sends it; the same
// as a user denied MULTI, for whom it is one script (ACL check, SET,
// PUBLISH); and SET and PUBLISH pipelined without a transaction. It
// reports each round's p50 and its ratio to the bare PUBLISH with one
// subscriber.
func BenchmarkNotifyRounds(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	pub := srv.Client(b)
	store, err := remote.New(pub, remote.Options{Namespace: "raw", Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	if err := pub.Do(ctx, "ACL", "SETUSER", "nomulti", "on", ">pw", "~*", "&*", "+@all", "-multi").Err(); err != nil {
		b.Fatal(err)
	}
	o := srv.Options()
	o.Username, o.Password = "nomulti", "pw"
	scripter := redis.NewClient(o)
	b.Cleanup(func() { scripter.Close() })
	scripted, err := remote.New(scripter, remote.Options{Namespace: "raw", Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ways := []struct {
		name string
		send func(channel, v string) error
	}{
		{"publish", func(ch, v string) error { return pub.Publish(ctx, ch, v).Err() }},
		{"setnotify", func(ch, v string) error {
			return store.SetNotify(ctx, "k", []byte(v), time.Hour, remote.Notice{Channel: ch, Payloads: [][]byte{[]byte(v)}})
		}},
		{"writer", func(ch, v string) error {
			n := remote.Notice{Channel: ch, Payloads: [][]byte{[]byte(v)}, Writer: ch + ":writer"}
			return store.SetNotify(ctx, "k", []byte(v), time.Hour, n)
		}},
		{"script", func(ch, v string) error {
			return scripted.SetNotify(ctx, "k", []byte(v), time.Hour, remote.Notice{Channel: ch, Payloads: [][]byte{[]byte(v)}})
		}},
		{"pipeline", func(ch, v string) error {
			_, err := pub.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "raw:k", v, time.Hour)
				p.Publish(ctx, ch, v)
				return nil
			})
			return err
		}},
	}
	var (
		names []string
		steps []func(int) time.Time
	)
	for _, w := range ways {
		for _, two := range []bool{false, true} {
			name := w.name
			if two {
				name += "-two"
			}
			// The measured subscriber first: Redis then writes the
			// second's copy before its own, unless the writer channel
			// (which the second listens on) puts it last.
			got := handoffSubscriber(b, srv.Client(b), name)
			if two {
				selfSubscriber(b, srv.Client(b), name, name+":writer")
			}
			names = append(names, name)
			steps = append(steps, func(i int) time.Time {
				if err := w.send(name, strconv.Itoa(i)); err != nil {
					b.Fatal(err)
				}
				return <-got
			})
		}
	}
	if err := pub.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	lat := alternate(b, steps)
	p50 := make([]time.Duration, len(steps))
	for k := range steps {
		p50[k] = median(lat[k])
	}
	for k, name := range names {
		b.ReportMetric(float64(p50[k].Microseconds()), name+"-p50-µs")
		if k > 0 {
			b.ReportMetric(float64(p50[k])/float64(p50[0]), name+"/publish")
		}
	}
	// The server's own time per write, from INFO commandstats: a script's
	// EVALSHA, and a transaction's MULTI and EXEC (EXEC's time includes
	// the SET and PUBLISH it runs, as EVALSHA's includes the script's).
	stats, err := pub.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(usecPerCall(stats, "evalsha"), "script-server-µs")
	b.ReportMetric(usecPerCall(stats, "multi")+usecPerCall(stats, "exec"), "multi-server-µs")
}

// usecPerCall reads a command's usec_per_call from INFO commandstats.
func usecPerCall(info, command string) float64 {
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+command+":")
		if !ok {
			continue
		}
		for field := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(field, "usec_per_call="); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
	}
	return 0
}

// propagationReplicas returns two replicas A and B of an int cache on srv,
// subscribed, and a channel that hears of each change B's subscription
// applies.
func propagationReplicas(b *testing.B, srv *redistest.Server) (a, r *Cache[int], heard <-chan struct{}) {
	newReplica := func() *Cache[int] {
		c, err := New[int](Options{Redis: srv.Client(b), Namespace: "prop", FarTimeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.bus.WaitConnected(wctx); err != nil {
			b.Fatal(err)
		}
		return c
	}
	a, r = newReplica(), newReplica()
	ch := make(chan struct{}, 16)
	f := func(e string) {
		if e == "keys" {
			ch <- struct{}{}
		}
	}
	r.busEvent.Store(&f)
	return a, r, ch
}

// handoffSubscriber subscribes client to channel and reads it on a
// goroutine of its own, which signals each message it receives on the
// returned channel with the moment it read it, as a replica's
// subscription signals the tier round.
func handoffSubscriber(b *testing.B, client *redis.Client, channel string) <-chan time.Time {
	ctx := context.Background()
	ps := client.Subscribe(ctx, channel)
	b.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(ctx); err != nil { // the confirmation
		b.Fatal(err)
	}
	got := make(chan time.Time, 16)
	go func() {
		for {
			if _, err := ps.ReceiveMessage(ctx); err != nil {
				return // closed
			}
			got <- time.Now()
		}
	}()
	return got
}

// selfSubscriber subscribes client to channels (the first as a second
// subscriber of it, standing for the writer's own subscription; the rest
// as its writer channel, see remote.Notice.Writer): it reads each message
// on a goroutine of its own and drops it.
func selfSubscriber(b *testing.B, client *redis.Client, channels ...string) {
	ctx := context.Background()
	ps := client.Subscribe(ctx, channels...)
	b.Cleanup(func() { ps.Close() })
	for range channels { // the confirmations
		if _, err := ps.Receive(ctx); err != nil {
			b.Fatal(err)
		}
	}
	go func() {
		for {
			if _, err := ps.ReceiveMessage(ctx); err != nil {
				return // closed
			}
		}
	}()
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
}

// percentile returns the p-th quantile (0 to 1) of d, which it sorts.
func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[int(p*float64(len(d)-1))]
}

// alternate runs steps in turn, once each per iteration of b.Loop, and
// returns each one's latencies. It rotates which goes first, so that none
// always runs on what another has just warmed: pairing the steps so is what
// makes their ratios hold still on a noisy machine. A step is given the
// iteration's number, from 1, and returns the moment its round ended, which
// may be before it returns: the moment another goroutine received what it
// sent.
func alternate(b *testing.B, steps []func(round int) time.Time) [][]time.Duration {
	lat := make([][]time.Duration, len(steps))
	round := 0
	for b.Loop() {
		round++
		for j := range steps {
			k := (round + j) % len(steps)
			start := time.Now()
			end := steps[k](round)
			lat[k] = append(lat[k], end.Sub(start))
		}
	}
	return lat
}

// BenchmarkFarHitPaired alternates the two far reads of BenchmarkFarHit
// and BenchmarkRawRedisGet, one of each per iteration on the same client
// and server, and reports the median of each and their ratio: on a noisy
// machine, pairing is what makes the ratio mean something.
func BenchmarkFarHitPaired(b *testing.B) {
	c, client, loader := benchFarCache(b)
	ctx := context.Background()
	rk := c.far.Key("user:1")
	var tierLat, rawLat []time.Duration
	i := 0
	for b.Loop() {
		// Alternate which goes first, so that neither always runs on the
		// connection and caches the other has just warmed.
		c.near.Delete("user:1")
		i++
		if i%2 == 0 {
			rawLat = append(rawLat, timeRawGet(b, client, rk))
		}
		start := time.Now()
		if r, err := c.Fetch(ctx, "user:1", loader); err != nil || r.Source != SourceFar {
			b.Fatalf("%+v, %v", r, err)
		}
		tierLat = append(tierLat, time.Since(start))
		if i%2 == 1 {
			rawLat = append(rawLat, timeRawGet(b, client, rk))
		}
	}
	t, r := median(tierLat), median(rawLat)
	b.ReportMetric(float64(t.Nanoseconds()), "tier-ns")
	b.ReportMetric(float64(r.Nanoseconds()), "raw-ns")
	b.ReportMetric(float64(t)/float64(r), "tier/raw")
}

func timeRawGet(b *testing.B, client *redis.Client, key string) time.Duration {
	start := time.Now()
	if _, err := client.Get(context.Background(), key).Bytes(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkNearHitPaired alternates blocks of BenchmarkNearHit's and
// BenchmarkLocalHit's reads on one cache and reports the median cost of
// each and their ratio: paired, so that a noisy machine moves both alike.
func BenchmarkNearHitPaired(b *testing.B) {
	c, keys := benchFilledCache(b)
	ctx := context.Background()
	loader := LoaderFunc[benchUser](func(context.Context, string) (benchUser, error) {
		b.Fatal("a near hit called the loader")
		return benchUser{}, nil
	})
	const block = 1000
	var tierLat, localLat []time.Duration
	i := 0
	for b.Loop() {
		start := time.Now()
		for range block {
			u, err := c.Get(ctx, keys[i], loader)
			if err != nil {
				b.Fatal(err)
			}
			sink += u.ID
			if i++; i == benchKeys {
				i = 0
			}
		}
		mid := time.Now()
		for range block {
			var e nearEntry[benchUser]
			if !c.near.GetInto(keys[i], &e) {
				b.Fatal("miss")
			}
			sink += e.value.ID
			if i++; i == benchKeys {
				i = 0
			}
		}
		tierLat, localLat = append(tierLat, mid.Sub(start)/block), append(localLat, time.Since(mid)/block)
	}
	t, l := median(tierLat), median(localLat)
	b.ReportMetric(float64(t.Nanoseconds()), "tier-ns")
	b.ReportMetric(float64(l.Nanoseconds()), "local-ns")
	b.ReportMetric(float64(t)/float64(l), "tier/local")
}

// BenchmarkFarHitSteps splits BenchmarkFarHitPaired's gap into its parts:
// it alternates, in one loop, a raw GET, the same GET under a
// context.WithTimeout deadline (what Options.FarTimeout would cost with a
// timer per operation), remote.Store.GetValue (the FarTimeout bound as it
// is: shared timers for a context that cannot be cancelled), GetValue
// followed by the decode, and the whole far hit through Fetch, and reports
// the median of each.
func BenchmarkFarHitSteps(b *testing.B) {
	c, client, loader := benchFarCache(b)
	ctx := context.Background()
	rk := c.far.Key("user:1")
	steps := []struct {
		name string
		run  func()
	}{
		{"raw", func() { client.Get(ctx, rk).Bytes() }},
		{"raw-deadline", func() {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			client.Get(dctx, rk).Bytes()
			cancel()
		}},
		{"remote", func() { c.far.GetValue(ctx, "user:1") }},
		{"remote-decode", func() {
			data, _, _ := c.far.GetValue(ctx, "user:1")
			c.decode("user:1", data)
		}},
		{"tier", func() {
			farHitOnce(b, c, loader)
		}},
	}
	runs := make([]func(int) time.Time, len(steps))
	for k := range steps {
		runs[k] = func(int) time.Time {
			steps[k].run()
			return time.Now()
		}
	}
	lat := alternate(b, runs)
	for k, s := range steps {
		b.ReportMetric(float64(median(lat[k]).Nanoseconds()), s.name+"-ns")
	}
}
