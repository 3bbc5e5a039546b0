package remote_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
	"github.com/tier-cache/tier/remote"
)

// ops runs each Store operation once on key, returning its error. Get and
// GetMany also report whether they returned a hit.
func ops(s *remote.Store, key string) map[string]func(ctx context.Context) (hit bool, err error) {
	return map[string]func(ctx context.Context) (bool, error){
		"Get": func(ctx context.Context) (bool, error) {
			_, ok, err := s.Get(ctx, key)
			return ok, err
		},
		"GetMany": func(ctx context.Context) (bool, error) {
			m, err := s.GetMany(ctx, []string{key, "other"})
			return len(m) > 0, err
		},
		"Set": func(ctx context.Context) (bool, error) {
			return false, s.Set(ctx, key, []byte("v"), time.Minute)
		},
		"SetMany": func(ctx context.Context) (bool, error) {
			return false, s.SetMany(ctx, map[string]remote.Item{key: {Value: []byte("v"), TTL: time.Minute}})
		},
		"Delete": func(ctx context.Context) (bool, error) {
			return false, s.Delete(ctx, key, "other")
		},
	}
}

func TestRedisDown(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
	defer c.Close()
	s := mustNew(t, c, remote.Options{})
	mustSet(t, s, "the key", "v", time.Minute)
	m.Close()

	for name, op := range ops(s, "the key") {
		// The client retries a refused dial until the deadline; keep it short.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		hit, err := op(ctx)
		cancel()
		if err == nil || hit {
			t.Errorf("%s with Redis down = hit %v, err %v; want an error and no hit", name, hit, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "remote: ") || !strings.Contains(err.Error(), `"the key"`) {
			t.Errorf("%s error = %q; want it to start with \"remote: \" and name the key", name, err)
		}
	}
}

func TestCancelledContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		c, rt := e.countingClient(t)
		s := mustNew(t, c, remote.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for name, op := range ops(s, "k") {
			hit, err := op(ctx)
			if !errors.Is(err, context.Canceled) || hit {
				t.Errorf("%s with a cancelled context = hit %v, err %v; want context.Canceled", name, hit, err)
			}
		}
		if n := rt.hook.Load(); n != 0 {
			t.Errorf("a cancelled context still sent %d commands", n)
		}
	})
}

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

	tests := []struct {
		name    string
		timeout time.Duration // Options.Timeout
		ctx     time.Duration // caller's deadline, 0 for none
		want    time.Duration // the bound that should end the call
	}{
		{name: "Options.Timeout", timeout: 50 * time.Millisecond, want: 50 * time.Millisecond},
		{name: "default", want: remote.DefaultTimeout},
		{name: "earlier caller deadline", timeout: time.Minute, ctx: 50 * time.Millisecond, want: 50 * time.Millisecond},
		{name: "later caller deadline", timeout: 50 * time.Millisecond, ctx: time.Minute, want: 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := remote.New(c, remote.Options{Timeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			for name, op := range ops(s, "k") {
				start := time.Now()
				ctx := context.Background()
				if tt.ctx > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.ctx)
					defer cancel()
				}
				hit, err := op(ctx)
				took := time.Since(start)
				if !errors.Is(err, context.DeadlineExceeded) || hit {
					t.Errorf("%s on a stalled Redis = hit %v, err %v; want context.DeadlineExceeded", name, hit, err)
				}
				// The upper limit leaves room for a loaded CI machine; without
				// the bound, the call would take a minute.
				if took < tt.want || took > tt.want+10*time.Second {
					t.Errorf("%s took %v; want about %v", name, took, tt.want)
				}
			}
		})
	}
}

func TestRedisKilledThenRestarted(t *testing.T) {
	srv := redistest.Start(t)
	s := mustNew(t, srv.Client(t), remote.Options{})
	mustSet(t, s, "k", "before", time.Minute)

	srv.Kill(t)
	for name, op := range ops(s, "k") {
		// The client retries a refused dial until the deadline; keep it short.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		hit, err := op(ctx)
		cancel()
		if err == nil || hit {
			t.Errorf("%s with Redis killed = hit %v, err %v; want an error", name, hit, err)
		}
	}

	srv.Restart(t)
	// The same Store works again once go-redis has redialed. After enough
	// failed dials a go-redis pool fails fast and probes the server once a
	// second in the background, so the first calls after the restart may
	// still fail; allow for that, within a bound.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, ok, err := s.Get(context.Background(), "k")
		if err == nil {
			if ok {
				t.Fatal("a key survived the restart of a server that keeps no data")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get still fails 30s after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustSet(t, s, "k", "after", time.Minute)
	if it, ok := mustGet(t, s, "k"); !ok || string(it.Value) != "after" {
		t.Fatalf("Get after restart = %q, %v; want \"after\"", it.Value, ok)
	}
}
