package remote_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/remote"
)

// op is one Store operation on key, as the failure tests run it.
type op struct {
	verb string // the operation's name in its errors
	run  func(ctx context.Context, s *remote.Store, key string) error
}

// ops are every operation of a Store. An op that reports a result along
// with an error returns errResult: no operation may do that.
var ops = map[string]op{
	"Get": {"get", func(ctx context.Context, s *remote.Store, key string) error {
		v, ok, err := s.Get(ctx, key)
		return result(v != nil || ok, err)
	}},
	"GetMany": {"get", func(ctx context.Context, s *remote.Store, key string) error {
		vs, err := s.GetMany(ctx, []string{key, "other"})
		return result(vs != nil, err)
	}},
	"Set": {"set", func(ctx context.Context, s *remote.Store, key string) error {
		return s.Set(ctx, key, []byte("v"), time.Minute)
	}},
	"Delete": {"delete", func(ctx context.Context, s *remote.Store, key string) error {
		return s.Delete(ctx, key, "other")
	}},
	"Add": {"add", func(ctx context.Context, s *remote.Store, key string) error {
		ok, err := s.Add(ctx, key, []byte("v"), time.Minute)
		return result(ok, err)
	}},
	"AddMany": {"add", func(ctx context.Context, s *remote.Store, key string) error {
		added, err := s.AddMany(ctx, []string{key, "other"}, [][]byte{[]byte("v"), []byte("v")}, time.Minute)
		return result(added != nil, err)
	}},
	"Swap": {"swap", func(ctx context.Context, s *remote.Store, key string) error {
		ok, err := s.Swap(ctx, key, []byte("old"), []byte("v"), time.Minute)
		return result(ok, err)
	}},
	"SwapMany": {"swap", func(ctx context.Context, s *remote.Store, key string) error {
		return s.SwapMany(ctx, []remote.SwapItem{
			{Key: key, Old: []byte("old"), Value: []byte("v"), TTL: time.Minute},
			{Key: "other", Old: []byte("old")},
		})
	}},
	"Ping": {"ping", func(ctx context.Context, s *remote.Store, _ string) error {
		return s.Ping(ctx)
	}},
}

var errResult = errors.New("reported a result along with an error")

// result returns err, or errResult wrapping it if the operation also
// reported a result.
func result(reported bool, err error) error {
	if err != nil && reported {
		return fmt.Errorf("%w: %w", errResult, err)
	}
	return err
}

// With nothing listening, every operation fails at once with an error that
// wraps the refused connection and names the operation and the key.
func TestRedisDown(t *testing.T) {
	c := redis.NewClient(&redis.Options{
		Addr:                  closedAddr(t),
		ContextTimeoutEnabled: true,
		// One dial per operation: after PoolSize failed dials, go-redis
		// probes in a goroutine that outlives Close by up to a second.
		MaxRetries:    -1,
		DialerRetries: 1,
	})
	defer c.Close()
	for _, kind := range clientKinds {
		s := mustNew(t, kind.wrap(c), remote.Options{})
		for name, o := range ops {
			err := o.run(context.Background(), s, "the key")
			if !errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, errResult) {
				t.Errorf("%s (%s) with Redis down: err = %v; want a refused connection and no result", name, kind.name, err)
				continue
			}
			prefix := "remote: " + o.verb + " "
			if o.verb == "ping" {
				prefix = "remote: ping: "
			} else if !strings.Contains(err.Error(), `"the key"`) {
				t.Errorf("%s (%s) error = %q; want it to name the key", name, kind.name, err)
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("%s (%s) error = %q; want it to start with %q", name, kind.name, err, prefix)
			}
		}
	}
}

// A caller's context that has ended ends every operation with its error.
func TestEndedContext(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		for _, kind := range clientKinds {
			s := mustNew(t, kind.wrap(e.client(t)), remote.Options{})
			for name, o := range ops {
				if err := o.run(cancelled, s, "k"); !errors.Is(err, context.Canceled) || errors.Is(err, errResult) {
					t.Errorf("%s (%s) with a cancelled context: err = %v; want context.Canceled", name, kind.name, err)
				}
				if err := o.run(expired, s, "k"); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errResult) {
					t.Errorf("%s (%s) with an expired context: err = %v; want context.DeadlineExceeded", name, kind.name, err)
				}
			}
		}
	})
}

// A stalled Redis holds every operation only until Options.Timeout, or
// the caller's deadline if that comes first; the error matches
// context.DeadlineExceeded.
func TestTimeoutBoundsStalledRedis(t *testing.T) {
	bh := startBlackhole(t)
	// The client's own timeouts are a minute: if the Store's bound were not
	// applied, calls would hang far past the limit checked below.
	c := redis.NewClient(&redis.Options{
		Addr:                  bh.addr(),
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Minute,
		ReadTimeout:           time.Minute,
		WriteTimeout:          time.Minute,
	})
	defer c.Close()

	// limit is far above every bound below: it only tells a bound that
	// held, however slowly on a loaded machine, from one that did not.
	const limit = 30 * time.Second
	tests := []struct {
		name    string
		timeout time.Duration // Options.Timeout
		ctx     time.Duration // caller's deadline, 0 for none
		want    time.Duration // the bound that should end the call
	}{
		{name: "Options.Timeout", timeout: 100 * time.Millisecond, want: 100 * time.Millisecond},
		{name: "default", want: remote.DefaultTimeout},
		{name: "earlier caller deadline", timeout: time.Hour, ctx: 100 * time.Millisecond, want: 100 * time.Millisecond},
		{name: "later caller deadline", timeout: 100 * time.Millisecond, ctx: time.Hour, want: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, kind := range clientKinds {
				s, err := remote.New(kind.wrap(c), remote.Options{Timeout: tt.timeout})
				if err != nil {
					t.Fatal(err)
				}
				for name, o := range ops {
					start := time.Now() // before the deadline is set: it counts from here
					ctx, cancel := context.WithCancel(context.Background())
					if tt.ctx > 0 {
						ctx, cancel = context.WithTimeout(context.Background(), tt.ctx)
					}
					err := o.run(ctx, s, "k")
					took := time.Since(start)
					cancel()
					switch {
					case errors.Is(err, errResult):
						t.Errorf("%s (%s) on a stalled Redis: %v", name, kind.name, err)
					case errors.Is(err, context.DeadlineExceeded):
					default:
						t.Errorf("%s (%s) on a stalled Redis: err = %v; want context.DeadlineExceeded", name, kind.name, err)
					}
					if took < tt.want || took > limit {
						t.Errorf("%s (%s) on a stalled Redis took %v; want at least %v, and well under a minute", name, kind.name, took, tt.want)
					}
				}
			}
		})
	}
}

// A caller that cancels its context while an operation waits on a stalled
// Redis gets context.Canceled, no later than Options.Timeout: go-redis does
// not watch for cancellation while it waits for a reply (see the package
// documentation).
func TestCancelEndsOperationInFlight(t *testing.T) {
	bh := startBlackhole(t)
	c := redis.NewClient(&redis.Options{Addr: bh.addr(), ContextTimeoutEnabled: true})
	defer c.Close()
	const timeout = 2 * time.Second
	s := mustNew(t, c, remote.Options{Timeout: timeout})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, _, err := s.Get(ctx, "k")
		done <- err
	}()
	select {
	case <-bh.received: // the client has written and waits for an answer
	case <-time.After(waitTimeout):
		t.Fatal("the client sent nothing")
	}
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Get did not return after its context was cancelled")
	}
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Get cancelled in flight: err = %v; want context.Canceled", err)
	}
	t.Logf("cancelled in flight: returned after %v (Timeout %v)", took, timeout)
}
