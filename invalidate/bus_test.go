package invalidate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is a Handler that reports each call as an event.
type recorder struct{ events chan string }

func newRecorder() *recorder { return &recorder{events: make(chan string, 10000)} }

func (r *recorder) Invalidate(keys []string) { r.events <- fmt.Sprintf("keys %q", keys) }
func (r *recorder) InvalidateAll()           { r.events <- "all" }
func (r *recorder) InvalidateTags(tags []string, clock uint64) {
	r.events <- fmt.Sprintf("tags %q at %d", tags, clock)
}
func (r *recorder) Disconnected(error) { r.events <- "down" }
func (r *recorder) Connected()         { r.events <- "up" }

// expect reads the next events and compares them with want. The deadline
// only turns a hang into a failure; nothing is timed.
func (r *recorder) expect(t *testing.T, want ...string) {
	t.Helper()
	for i, w := range want {
		select {
		case got := <-r.events:
			if got != w {
				t.Fatalf("event %d = %s, want %s", i, got, w)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("event %d: none arrived, want %s", i, w)
		}
	}
}

// quiet asserts that no event is pending once a later marker arrived.
func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-r.events:
		t.Fatalf("unexpected event %s", got)
	default:
	}
}

func newBus(t *testing.T, client redis.UniversalClient, h Handler, opts Options) *Bus {
	t.Helper()
	if opts.Channel == "" {
		opts.Channel = "ns:invalidate"
	}
	b, err := New(client, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
	return b
}

type backend struct {
	name   string
	client func(t *testing.T) redis.UniversalClient
}

var backends = []backend{
	{"miniredis", func(t *testing.T) redis.UniversalClient {
		m := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
		t.Cleanup(func() { c.Close() })
		return c
	}},
	{"redis-server", func(t *testing.T) redis.UniversalClient {
		return redistest.Start(t).Client(t)
	}},
}

func TestPublishReachesOthersNotSelf(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			client := be.client(t)
			ra, rb := newRecorder(), newRecorder()
			a := newBus(t, client, ra, Options{Namespace: "ns"})
			ra.expect(t, "up")
			b := newBus(t, client, rb, Options{Namespace: "ns"})
			rb.expect(t, "up")
			ctx := context.Background()
			if err := a.Publish(ctx, "k1", "key with spaces", "x\ny"); err != nil {
				t.Fatal(err)
			}
			if err := a.PublishAll(ctx); err != nil {
				t.Fatal(err)
			}
			rb.expect(t, `keys ["k1" "key with spaces" "x\ny"]`, "all")
			// b's own message comes back to b and is skipped; a gets it.
			if err := b.Publish(ctx, "from-b"); err != nil {
				t.Fatal(err)
			}
			ra.expect(t, `keys ["from-b"]`)
			if err := client.Publish(ctx, "ns:invalidate", "=marker").Err(); err != nil {
				t.Fatal(err)
			}
			rb.expect(t, `keys ["marker"]`)
			ra.expect(t, `keys ["marker"]`)
			ra.none(t)
			rb.none(t)
			if st := b.Stats(); st.Own != 1 || st.Received != 3 || st.Published != 1 {
				t.Fatalf("b stats = %+v, want 1 own, 3 received, 1 published", st)
			}
		})
	}
}

func TestOperatorCommands(t *testing.T) {
	client := backends[0].client(t)
	r := newRecorder()
	newBus(t, client, r, Options{})
	r.expect(t, "up")
	ctx := context.Background()
	for _, p := range []string{"user:42", "*", "=*", "=", `{"json":1}`, "a b\nc", "#12:tenant:7", "#:t", "=#x"} {
		if err := client.Publish(ctx, "ns:invalidate", p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	r.expect(t, `keys ["user:42"]`, "all", `keys ["*"]`, `keys [""]`, `keys ["{\"json\":1}"]`, `keys ["a b\nc"]`,
		`tags ["tenant:7"] at 12`, `tags ["t"] at 0`, `keys ["#x"]`)
}

func TestMalformedMessagesAreCountedAndIgnored(t *testing.T) {
	client := backends[0].client(t)
	r := newRecorder()
	b := newBus(t, client, r, Options{Namespace: "ns", MaxMessageBytes: 4096})
	r.expect(t, "up")
	ctx := context.Background()
	bad := [][]byte{
		{},                                // empty
		{0, 9, 0, 1, 2},                   // unknown version
		{0, 1, 0},                         // truncated frame
		[]byte(strings.Repeat("x", 5000)), // over MaxMessageBytes
		AppendFrame(nil, Message{Keys: []string{"k"}, Namespace: "other", Origin: ID{7}}), // another namespace
		{0, 0xff, 0xfe, 0x00, 0x13, 0x37},                                                 // random bytes
	}
	for _, p := range bad {
		if err := client.Publish(ctx, "ns:invalidate", p).Err(); err != nil {
			t.Fatal(err)
		}
		if err := client.Publish(ctx, "ns:invalidate", "after").Err(); err != nil {
			t.Fatal(err)
		}
	}
	for range bad {
		r.expect(t, `keys ["after"]`)
	}
	r.none(t)
	if st := b.Stats(); st.Malformed != uint64(len(bad)) || st.Received != uint64(len(bad)) {
		t.Fatalf("stats = %+v, want %d malformed and %d received", st, len(bad), len(bad))
	}
}

func TestPublishSplitsLargeBatches(t *testing.T) {
	client := backends[0].client(t)
	ra, rb := newRecorder(), newRecorder()
	a := newBus(t, client, ra, Options{MaxMessageBytes: 256})
	newBus(t, client, rb, Options{})
	ra.expect(t, "up")
	rb.expect(t, "up")
	var keys []string
	for i := range 100 {
		keys = append(keys, fmt.Sprintf("key-%03d", i))
	}
	if err := a.Publish(context.Background(), keys...); err != nil {
		t.Fatal(err)
	}
	frames := int(a.Stats().Published)
	if frames < 2 {
		t.Fatalf("100 keys in %d frame(s) of at most 256 bytes", frames)
	}
	var got []string
	for range frames {
		select {
		case e := <-rb.events:
			var part []string
			if _, err := fmt.Sscanf(e, "keys %q", &part); err != nil {
				// fmt cannot scan a slice; parse the quoted list by hand.
				part = strings.Fields(strings.Trim(strings.TrimPrefix(e, "keys "), "[]"))
			}
			got = append(got, part...)
		case <-time.After(20 * time.Second):
			t.Fatal("frames missing")
		}
	}
	if len(got) != 100 {
		t.Fatalf("received %d keys over %d frames, want 100", len(got), frames)
	}
	if _, err := New(client, rb, Options{Channel: "c", MaxMessageBytes: 8}); err == nil {
		t.Fatal("a MaxMessageBytes too small for any frame was accepted")
	}
	if err := a.Publish(context.Background(), strings.Repeat("k", 300)); err == nil {
		t.Fatal("a key larger than MaxMessageBytes was published")
	}
}

// A killed pub/sub connection is a gap: the handler hears Disconnected,
// then Connected once the Bus has subscribed again.
func TestGapAfterKilledSubscription(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	r := newRecorder()
	b := newBus(t, client, r, Options{HealthInterval: 200 * time.Millisecond})
	r.expect(t, "up")
	if err := client.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "down", "up")
	if st := b.Stats(); st.Losses != 1 || st.Reconnects != 1 {
		t.Fatalf("stats = %+v, want 1 loss and 1 reconnect", st)
	}
	// Messages flow again after the gap.
	if err := client.Publish(context.Background(), "ns:invalidate", "k").Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, `keys ["k"]`)
}

func TestGapAfterRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	r := newRecorder()
	newBus(t, client, r, Options{HealthInterval: 200 * time.Millisecond})
	r.expect(t, "up")
	srv.Kill(t)
	r.expect(t, "down")
	srv.Restart(t)
	r.expect(t, "up")
	if err := client.Publish(context.Background(), "ns:invalidate", "k").Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, `keys ["k"]`)
}

// A subscription that stops answering is declared dead by the health
// check: CLIENT PAUSE holds the PING's reply.
func TestHealthCheckDetectsSilentServer(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	r := newRecorder()
	b := newBus(t, client, r, Options{HealthInterval: 100 * time.Millisecond})
	r.expect(t, "up")
	if err := client.Do(context.Background(), "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "down", "up")
	if st := b.Stats(); st.Losses != 1 {
		t.Fatalf("Losses = %d, want 1", st.Losses)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	client := backends[0].client(t)
	r := newRecorder()
	b := newBus(t, client, r, Options{})
	b.Close()
	b.Close()
	if err := b.Publish(context.Background(), "k"); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
	if err := b.WaitConnected(context.Background()); err == nil {
		t.Fatal("WaitConnected after Close succeeded")
	}
}

func TestNewValidates(t *testing.T) {
	client := backends[0].client(t)
	r := newRecorder()
	for name, o := range map[string]Options{
		"no channel":       {},
		"negative health":  {Channel: "c", HealthInterval: -1},
		"negative timeout": {Channel: "c", Timeout: -1},
	} {
		if b, err := New(client, r, o); err == nil {
			b.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(nil, r, Options{Channel: "c"}); err == nil {
		t.Error("nil client accepted")
	}
	if _, err := New(client, nil, Options{Channel: "c"}); err == nil {
		t.Error("nil handler accepted")
	}
}

// A sharded Bus (SSUBSCRIBE/SPUBLISH) carries messages, skips its own, and
// notices a killed subscription and subscribes again, as a classic one.
func TestShardedBus(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	ra, rb := newRecorder(), newRecorder()
	a := newBus(t, client, ra, Options{Namespace: "ns", Sharded: true})
	ra.expect(t, "up")
	newBus(t, srv.Client(t), rb, Options{Namespace: "ns", Sharded: true})
	rb.expect(t, "up")
	ctx := context.Background()
	if err := a.Publish(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	rb.expect(t, `keys ["k1"]`)
	// An operator uses SPUBLISH; a classic PUBLISH does not reach it.
	if err := client.Publish(ctx, "ns:invalidate", "classic").Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.SPublish(ctx, "ns:invalidate", "sharded").Err(); err != nil {
		t.Fatal(err)
	}
	rb.expect(t, `keys ["sharded"]`)
	ra.expect(t, `keys ["sharded"]`)
	if err := client.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	ra.expect(t, "down", "up")
	rb.expect(t, "down", "up")
	if err := a.Publish(ctx, "k2"); err != nil {
		t.Fatal(err)
	}
	rb.expect(t, `keys ["k2"]`)
	ra.none(t)
}

// Observe receives the lag of each message from another Bus, once the
// handler has applied it, and nothing for operators' messages, which
// carry no send time.
func TestObserveLag(t *testing.T) {
	client := backends[0].client(t)
	lags := make(chan time.Duration, 10)
	rb := &countingRecorder{recorder: newRecorder()}
	newBus(t, client, rb, Options{Namespace: "ns", Observe: func(d time.Duration) {
		if rb.applied.Load() == 0 {
			t.Error("Observe was called before the handler applied the message")
		}
		lags <- d
	}})
	rb.expect(t, "up")
	ra := newRecorder()
	a := newBus(t, client, ra, Options{Namespace: "ns"})
	ra.expect(t, "up")
	ctx := context.Background()
	// The lag is measured by the wall clock (the publisher's and the
	// receiver's), so the round is too: Round(0) drops the monotonic
	// reading that Sub would otherwise use.
	before := time.Now().Round(0)
	if err := a.Publish(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	rb.expect(t, `keys ["k"]`)
	lag := <-lags
	if round := time.Now().Round(0).Sub(before); lag < 0 || lag > round {
		t.Fatalf("lag %v, want within the %v the round took", lag, round)
	}
	if err := client.Publish(ctx, "ns:invalidate", "op").Err(); err != nil {
		t.Fatal(err)
	}
	rb.expect(t, `keys ["op"]`)
	select {
	case lag := <-lags:
		t.Fatalf("an operator's message reported lag %v", lag)
	default:
	}
}

// countingRecorder is a recorder that also counts the keys messages it
// has applied.
type countingRecorder struct {
	*recorder
	applied atomic.Int64
}

func (r *countingRecorder) Invalidate(keys []string) {
	r.applied.Add(1)
	r.recorder.Invalidate(keys)
}

// With Keyspace, writes by any client to keys under the prefix reach the
// handler, once the server's notify-keyspace-events enables them.
func TestKeyspaceNotifications(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	ctx := context.Background()
	if err := client.ConfigSet(ctx, "notify-keyspace-events", "K$gx").Err(); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	newBus(t, srv.Client(t), r, Options{Namespace: "ns", Keyspace: "__keyspace@0__:ns:"})
	r.expect(t, "up")
	if err := client.Set(ctx, "ns:user 1", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, `keys ["user 1"]`)
	if err := client.Set(ctx, "other:k", "x", 0).Err(); err != nil { // not under the prefix
		t.Fatal(err)
	}
	if err := client.Expire(ctx, "ns:user 1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, `keys ["user 1"]`)
	if err := client.Del(ctx, "ns:user 1").Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, `keys ["user 1"]`)
	// A key with glob characters is still only its own.
	if err := client.Set(ctx, "ns:a*[b]", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, `keys ["a*[b]"]`)
	r.none(t)
	// Killed and back: both subscriptions are confirmed again before up.
	if err := client.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "down", "up")
	if err := client.Set(ctx, "ns:again", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, `keys ["again"]`)
}

// Sync returns once every message published before it has been applied:
// here, a message of another Bus published just before; a sync frame is
// passed to no handler.
func TestSync(t *testing.T) {
	client := backends[0].client(t)
	ra, rb := newRecorder(), newRecorder()
	a := newBus(t, client, ra, Options{Namespace: "ns"})
	b := newBus(t, client, rb, Options{Namespace: "ns"})
	ra.expect(t, "up")
	rb.expect(t, "up")
	ctx := context.Background()
	for i := range 20 {
		if err := a.Publish(ctx, fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
		if err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		select { // already applied: no waiting here
		case e := <-rb.events:
			if want := fmt.Sprintf("keys [%q]", fmt.Sprint("k", i)); e != want {
				t.Fatalf("event %s, want %s", e, want)
			}
		default:
			t.Fatalf("Sync returned before k%d was applied", i)
		}
	}
	ra.none(t)
	if st := a.Stats(); st.Malformed != 0 {
		t.Fatalf("a counted %d malformed messages", st.Malformed)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Sync(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync with a cancelled context = %v", err)
	}
}
