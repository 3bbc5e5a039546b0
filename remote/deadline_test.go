package remote

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDeadlinesWithoutCancellation(t *testing.T) {
	ds := newDeadlines(time.Hour)
	type key struct{}
	for name, parent := range map[string]context.Context{
		"background": context.Background(),
		"values":     context.WithValue(context.Background(), key{}, "v"),
		"without cancel": context.WithoutCancel(func() context.Context {
			ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
			cancel()
			return ctx
		}()),
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			ctx, cancel := ds.bound(parent)
			defer cancel()
			d, ok := ctx.Deadline()
			if !ok || d.Before(start.Add(time.Hour)) || d.After(time.Now().Add(time.Hour+ds.grain)) {
				t.Errorf("Deadline() = %v, %v; want Timeout from now, rounded up by at most %v", d, ok, ds.grain)
			}
			if ctx.Err() != nil || isDone(ctx) {
				t.Errorf("a new context is done: %v", ctx.Err())
			}
			if got, want := ctx.Value(key{}), parent.Value(key{}); got != want {
				t.Errorf("Value = %v, want the parent's %v", got, want)
			}
		})
	}
}

// TestDeadlinesShareTimers: operations without cancellation allocate no
// context, timer or channel of their own.
func TestDeadlinesShareTimers(t *testing.T) {
	ds := newDeadlines(time.Hour)
	allocs := testing.AllocsPerRun(1000, func() {
		_, cancel := ds.bound(context.Background())
		cancel()
	})
	// One slot (three allocations) per grain (a minute here) at most,
	// over a thousand calls: well under one per call on average.
	if allocs >= 1 {
		t.Errorf("%v allocations per bound, want none", allocs)
	}
}

func TestDeadlinesEnd(t *testing.T) {
	ds := newDeadlines(5 * time.Millisecond)
	ctx, cancel := ds.bound(context.Background())
	defer cancel()
	d, _ := ctx.Deadline()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the context did not end")
	}
	if now := time.Now(); now.Before(d) {
		t.Errorf("Done closed at %v, before the deadline %v", now, d)
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("Err() = %v, want DeadlineExceeded", ctx.Err())
	}
}

// TestDeadlineSlotErrEndsIt: asked at or after its deadline, a slot whose
// timer has not run yet ends itself, so that Err and Done agree with the
// socket deadline that made an operation fail.
func TestDeadlineSlotErrEndsIt(t *testing.T) {
	s := newDeadlineSlot(time.Now().Add(-time.Millisecond), time.Hour)
	if isDone(s) {
		t.Fatal("done before being asked")
	}
	if !errors.Is(s.Err(), context.DeadlineExceeded) || !isDone(s) {
		t.Errorf("past its deadline: Err() = %v, done %v; want DeadlineExceeded, done", s.Err(), isDone(s))
	}
	s.end() // the timer, late: no second close
}

func TestDeadlinesCancellableParent(t *testing.T) {
	ds := newDeadlines(time.Hour)
	parent, cancelParent := context.WithCancel(context.Background())
	ctx, cancel := ds.bound(parent)
	defer cancel()
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > time.Hour {
		t.Errorf("Deadline() = %v, %v; want within Timeout", d, ok)
	}
	cancelParent()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the parent did not end the context")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err() = %v, want Canceled", ctx.Err())
	}

	sooner, cancelSooner := context.WithTimeout(context.Background(), time.Minute)
	defer cancelSooner()
	if got, _ := ds.bound(sooner); got != sooner {
		t.Error("a parent that ends sooner than Timeout was wrapped")
	}
}

func isDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}
