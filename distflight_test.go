package tier

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/redistest"
)

// With WaitForLoads, 5 replicas × 200 goroutines missing one cold key
// cause one load: the replica holding the lease loads, the others wait
// for its value in Redis.
func TestWaitForLoadsOneLoadAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	const replicas, perReplica = 5, 200
	var calls atomic.Int64
	release := make(chan struct{})
	loader := LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return "loaded", nil
	})
	var cs []*Cache[string]
	for range replicas {
		// A generous FarTimeout: under a loaded CI machine a Redis call
		// that timed out would make its replica load without a lease.
		cs = append(cs, newCache[string](t, Options{Redis: srv.Client(t), Namespace: "flight",
			WaitForLoads: 20 * time.Second, FarTimeout: 10 * time.Second}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, replicas*perReplica)
	for _, c := range cs {
		for range perReplica {
			wg.Go(func() {
				v, err := c.Get(context.Background(), "cold", loader)
				if err == nil && v != "loaded" {
					err = errors.New("got " + v)
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	// Every replica but the loader's waits for the load; the deadline only
	// turns a hang into a failure.
	waits := func() (n uint64) {
		for _, c := range cs {
			n += c.Stats().LoadWaits
		}
		return n
	}
	for deadline := time.Now().Add(20 * time.Second); waits() < replicas-1; {
		if time.Now().After(deadline) {
			t.Fatalf("%d replicas waiting, want %d", waits(), replicas-1)
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	close(release)
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d replicas × %d goroutines: the loader ran %d times, want 1", replicas, perReplica, n)
	}
	for i, c := range cs {
		if st := c.Stats(); st.FarErrors != 0 {
			t.Fatalf("replica %d: %d far errors", i, st.FarErrors)
		}
	}
	t.Logf("%d replicas × %d goroutines on one cold key: 1 load; %d replicas waited; all answered %v after the load returned",
		replicas, perReplica, waits(), took)
}

// A wait that outlasts WaitForLoads ends in a load of this replica's own.
func TestWaitForLoadsGivesUp(t *testing.T) {
	srv := redistest.Start(t)
	release := make(chan struct{})
	defer close(release)
	a := newCache[string](t, Options{Redis: srv.Client(t), Namespace: "flight"})
	b := newCache[string](t, Options{Redis: srv.Client(t), Namespace: "flight", WaitForLoads: 50 * time.Millisecond})
	entered := make(chan struct{})
	go a.Get(context.Background(), "k", LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		close(entered)
		<-release // holds its lease until the test ends
		return "a", nil
	}))
	<-entered
	v, err := b.Get(context.Background(), "k", constLoader("b"))
	if err != nil || v != "b" {
		t.Fatalf("b.Get = %q, %v; want its own load after the wait", v, err)
	}
	if st := b.Stats(); st.LoadWaits != 1 || st.Loads != 1 {
		t.Fatalf("b: %d waits, %d loads; want 1 and 1", st.LoadWaits, st.Loads)
	}
}

func TestWaitForLoadsValidated(t *testing.T) {
	_, err := New[string](Options{WaitForLoads: time.Minute, LoadTimeout: time.Second})
	if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "WaitForLoads") {
		t.Fatalf("New = %v, want an error naming WaitForLoads", err)
	}
}
