package tier

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// State is the state of a link of the cache to Redis.
type State string

// The states of a [Status].
const (
	StateUp   State = "up"
	StateDown State = "down"
	StateOff  State = "off" // not configured: no Redis, or invalidation disabled
)

// Status is the state of one link of the cache to Redis.
type Status struct {
	// State is whether the link is up, down or not configured.
	State State
	// Since is when the link entered State (New's time for the first).
	Since time.Time
	// Err is why the link is down, nil while it is up.
	Err error
}

// Health says whether the cache reaches Redis and hears other replicas'
// changes, and what it does about it when not. A degraded cache still
// serves every call: reads come from the near tier and the loader, and
// only writes fail (with [ErrUnavailable]) while Redis is unreachable.
type Health struct {
	// Redis is up while Redis answers, down while the cache has stopped
	// waiting on it (the circuit breaker is open).
	Redis Status
	// Subscription is up while the invalidation subscription is confirmed.
	Subscription Status
	// Degraded is true while either is down: other replicas' changes may
	// be missed, so values are kept near at most NearTTL.
	Degraded bool
	// NearTTL is the longest a value loaded now is kept in the near tier:
	// Options.Near.TTL, or Options.Invalidation.DegradedNearTTL while
	// degraded (0 for none).
	NearTTL time.Duration
}

// String describes h in one line, for logs and health endpoints.
func (h Health) String() string {
	if !h.Degraded {
		return "ok"
	}
	var down string
	for _, s := range []struct {
		name string
		st   Status
	}{{"Redis", h.Redis}, {"subscription", h.Subscription}} {
		if s.st.State == StateDown {
			down += fmt.Sprintf("%s down since %s (%v); ", s.name, s.st.Since.Format(time.RFC3339), s.st.Err)
		}
	}
	return fmt.Sprintf("degraded: %sserving the near tier and the loader, values kept near at most %v", down, h.NearTTL)
}

// Health returns the cache's state.
func (c *Cache[V]) Health() Health {
	h := Health{Redis: Status{State: StateOff}, Subscription: Status{State: StateOff}}
	if c.breaker != nil {
		h.Redis = c.breaker.link.status()
	}
	if c.sub != nil {
		h.Subscription = c.sub.status()
		if err := c.bus.Err(); h.Subscription.State == StateDown && err != nil {
			h.Subscription.Err = err // the latest attempt's, such as a refusal
		}
	}
	h.Degraded = h.Redis.State == StateDown || h.Subscription.State == StateDown
	h.NearTTL = c.nearBound(c.opts.Near.TTL)
	return h
}

// summaryEvery is how often, at most, a link that stays down logs how
// long and how many operations.
const summaryEvery = time.Minute

// link tracks whether one link to Redis is up, and logs its changes: one
// line when it goes down, one when it comes back, and one summary a
// minute, at most, while it stays down. Nothing is logged per key.
type link struct {
	name     string
	log      *slog.Logger
	now      func() time.Time
	onChange func(up bool) // when set (by tests), called after each change

	up       atomic.Bool
	affected atomic.Uint64 // operations done without the link since it went down
	total    atomic.Uint64 // operations done without the link, ever
	lastLog  atomic.Int64  // when the outage was last logged, Unix nanoseconds

	mu     sync.Mutex
	since  time.Time
	cause  error
	everUp bool
}

func newLink(name string, up bool, log *slog.Logger, now func() time.Time) *link {
	l := &link{name: name, log: log, now: now, since: now(), everUp: up}
	l.up.Store(up)
	if !up {
		l.cause = fmt.Errorf("not yet confirmed")
	}
	return l
}

func (l *link) isUp() bool { return l.up.Load() }

// down marks the link down for cause; the first call of an outage logs it.
func (l *link) down(cause error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.up.Load() {
		l.cause = cause
		return
	}
	l.up.Store(false)
	l.affected.Store(0)
	l.since, l.cause = l.now(), cause
	l.lastLog.Store(l.since.UnixNano())
	l.log.Warn("tier: "+l.name+" is down; serving from the near tier and the loader", "err", cause)
	if l.onChange != nil {
		l.onChange(false)
	}
}

// upAgain marks the link up; the end of an outage is logged with how long
// it lasted and how many operations it affected.
func (l *link) upAgain() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.up.Load() {
		return
	}
	now := l.now()
	if l.everUp {
		l.log.Info("tier: "+l.name+" is back", "after", now.Sub(l.since).Round(time.Millisecond), "affected", l.affected.Load())
	}
	l.up.Store(true)
	l.everUp = true
	l.since, l.cause = now, nil
	if l.onChange != nil {
		l.onChange(true)
	}
}

// touch counts an operation done without the link while it is down, and
// logs a summary if none was logged for summaryEvery.
func (l *link) touch() {
	n := l.affected.Add(1)
	l.total.Add(1)
	now, last := l.now(), l.lastLog.Load()
	if now.UnixNano()-last < int64(summaryEvery) || !l.lastLog.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.up.Load() && l.everUp {
		l.log.Warn("tier: "+l.name+" is still down", "for", now.Sub(l.since).Round(time.Second), "affected", n, "err", l.cause)
	}
}

func (l *link) status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Status{State: StateUp, Since: l.since}
	if !l.up.Load() {
		st.State, st.Err = StateDown, l.cause
	}
	return st
}
