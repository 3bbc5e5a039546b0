package tier

import (
	"context"
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
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// patience bounds every wait for an event in these tests: it only turns a
// hang into a failure, and is never what a test measures.
const patience = 30 * time.Second

// generous is the FarTimeout of tests that are not about timeouts, so that
// a busy machine never makes a Redis call time out.
const generous = 10 * time.Second

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

// count returns how many commands called name were sent.
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

// newCache returns a cache for opts, closed when the test ends, whose
// subscription (if any) is confirmed. A FarTimeout left zero is generous.
func newCache[V any](t *testing.T, opts Options) *Cache[V] {
	t.Helper()
	if opts.FarTimeout == 0 {
		opts.FarTimeout = generous
	}
	c, err := New[V](opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("invalidation subscription: %v", err)
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

func constLoader(v string) LoaderFunc[string] {
	return func(context.Context, string) (string, error) { return v, nil }
}

// events records a cache's subscription events ("keys", "all", "down",
// "up") for a test to wait on.
func events(c *Cache[string]) <-chan string {
	ch := make(chan string, 1000)
	f := func(e string) { ch <- e }
	c.onMessage.Store(&f)
	return ch
}

// await waits for the next event and checks it.
func await(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	case <-time.After(patience):
		t.Fatalf("no %q event", want)
	}
}

// blockedGet starts a Get of key whose load blocks; finish releases the
// load, which returns value, and returns what the Get returned.
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

// nearValue returns the value c holds near for key, if any.
func nearValue[V any](c *Cache[V], key string) (V, bool) {
	e, ok := c.near.Peek(key)
	return e.value, ok && !e.absent()
}

// commandHook is a go-redis hook that runs around each command sent on its
// own (pipelines pass through): it may hold, fail or slow the command, or
// call next to send it.
type commandHook func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error

func (h commandHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h commandHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { return h(ctx, cmd, next) }
}

func (h commandHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
