package remote

import (
	"context"
	"sync/atomic"
	"time"
)

// minDeadlineGrain is the least grain of a deadlines: see newDeadlines.
const minDeadlineGrain = time.Millisecond

// deadlines bounds operations whose callers' contexts cannot be cancelled
// (context.Background, or values over it) without a timer for each.
//
// Why: context.WithTimeout makes a context, a timer and a channel per
// operation, and starts and stops the timer: about 3µs of a far hit of
// 55µs on a loopback redis-server (BenchmarkFarHitSteps in the root
// package), mostly cache misses right after the network wait. Here the
// operations that start within one grain share one Done channel, closed by
// one timer a grain after the first of their deadlines; a
// context with values is wrapped (one small allocation), context.Background
// is not wrapped at all. The bound is the same for every wait inside
// go-redis (pool, dial, retry back-off), since they all watch Done, and the
// socket deadlines come from Deadline.
type deadlines struct {
	timeout time.Duration
	grain   time.Duration // how much later than timeout an operation may end
	cur     atomic.Pointer[deadlineSlot]
}

// newDeadlines returns deadlines for timeout, with a grain of 1/64 of it
// (at least a millisecond): an operation ends at most that much after its
// timeout, and a slot (a timer and a channel, several microseconds once
// caches are cold) is made at most once per grain.
func newDeadlines(timeout time.Duration) *deadlines {
	return &deadlines{timeout: timeout, grain: max(timeout/64, minDeadlineGrain)}
}

// noCancel is the CancelFunc of contexts that need no cancelling.
func noCancel() {}

// bound returns ctx limited to timeout, unless ctx already ends sooner.
func (ds *deadlines) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	now := time.Now()
	if d, ok := ctx.Deadline(); ok && d.Sub(now) <= ds.timeout {
		return ctx, noCancel
	}
	if ctx.Done() != nil { // a cancellable context: derive one, as usual
		return context.WithTimeout(ctx, ds.timeout)
	}
	deadline := now.Add(ds.timeout)
	slot := ds.cur.Load()
	if slot == nil || slot.at.Before(deadline) {
		slot = newDeadlineSlot(deadline.Add(ds.grain), ds.timeout+ds.grain)
		ds.cur.Store(slot) // racing stores leave some valid slot
	}
	if ctx == context.Background() || ctx == context.TODO() {
		return slot, noCancel // no values to keep
	}
	return &valueDeadlineCtx{Context: slot, values: ctx}, noCancel
}

// deadlineSlot is the context of the operations whose deadlines fall
// before at and after the previous slot's: it is done at at.
type deadlineSlot struct {
	at    time.Time
	done  chan struct{}
	fired atomic.Bool
}

func newDeadlineSlot(at time.Time, after time.Duration) *deadlineSlot {
	s := &deadlineSlot{at: at, done: make(chan struct{})}
	time.AfterFunc(after, s.end)
	return s
}

// end closes the slot, once.
func (s *deadlineSlot) end() {
	if s.fired.CompareAndSwap(false, true) {
		close(s.done)
	}
}

// Deadline returns when the slot ends.
func (s *deadlineSlot) Deadline() (time.Time, bool) { return s.at, true }

// Done returns the channel closed when the slot ends.
func (s *deadlineSlot) Done() <-chan struct{} { return s.done }

// Err returns context.DeadlineExceeded once the slot has ended. A call at
// or after at ends the slot itself, so that an operation that failed on a
// socket deadline of at sees its context done even if the timer has not
// run yet.
func (s *deadlineSlot) Err() error {
	if !s.fired.Load() {
		if time.Now().Before(s.at) {
			return nil
		}
		s.end()
	}
	return context.DeadlineExceeded
}

// Value returns nil: a slot carries no values.
func (s *deadlineSlot) Value(any) any { return nil }

// valueDeadlineCtx is a slot's deadline with the values of a context.
type valueDeadlineCtx struct {
	context.Context // the slot
	values          context.Context
}

// Value returns the value of the wrapped context.
func (c *valueDeadlineCtx) Value(key any) any { return c.values.Value(key) }
