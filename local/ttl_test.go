package local

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tier-cache/tier/internal/clocktest"
)

func TestTTL(t *testing.T) {
	clock := clocktest.New()
	c := newTestCache(t, Options[string, int]{Capacity: 10, TTL: time.Minute, Clock: clock})
	c.Set("default", 1, 0, 1)
	c.Set("short", 2, time.Second, 1)
	clock.Advance(time.Second - 1)
	if _, ok := c.Get("short"); !ok {
		t.Fatal("Get missed an entry before its deadline")
	}
	clock.Advance(1)
	if _, ok := c.Get("short"); ok {
		t.Fatal("Get returned an entry at its deadline")
	}
	if _, ok := c.Peek("short"); ok {
		t.Fatal("Peek returned an entry at its deadline")
	}
	if _, ok := c.Peek("default"); !ok {
		t.Fatal("default-TTL entry expired after 1s of 1m")
	}
	clock.Advance(time.Minute)
	if _, ok := c.Get("default"); ok {
		t.Fatal("Get returned an expired entry")
	}
	// Expired entries are removed by the next write to their shard.
	c.Set("other", 3, 0, 1)
	if c.Len() != 1 {
		t.Fatalf("Len = %d after a write past both deadlines, want 1", c.Len())
	}
	if st := c.Stats(); st.Expirations != 2 || st.Misses != 2 || st.Hits != 1 {
		t.Fatalf("stats = %+v, want 1 hit, 2 misses, 2 expirations", st)
	}
}

func TestNoTTLNeverExpires(t *testing.T) {
	clock := clocktest.New()
	c := newTestCache(t, Options[string, int]{Capacity: 10, Clock: clock})
	c.Set("k", 1, 0, 1)
	clock.Advance(100 * 365 * 24 * time.Hour)
	if _, ok := c.Get("k"); !ok {
		t.Fatal("entry without a TTL expired")
	}
}

func TestWritesReclaimExpiredEntries(t *testing.T) {
	clock := clocktest.New()
	c := newTestCache(t, Options[string, int]{Capacity: 100, Clock: clock})
	for i := range 50 {
		c.Set(fmt.Sprint(i), i, time.Second, 1)
	}
	c.Set("long", 0, time.Hour, 1)
	clock.Advance(2 * time.Second)
	c.Set("trigger", 1, 0, 1)
	if n := c.Len(); n != 2 {
		t.Fatalf("Len = %d after a write past 50 deadlines, want 2", n)
	}
}

func TestReplacingChangesDeadline(t *testing.T) {
	clock := clocktest.New()
	c := newTestCache(t, Options[string, int]{Capacity: 10, Clock: clock})
	c.Set("k", 1, time.Second, 1)
	c.Set("k", 2, time.Hour, 1)
	clock.Advance(time.Minute)
	if v, ok := c.Get("k"); !ok || v != 2 {
		t.Fatalf("Get = %d,%v, want 2 (the replacement's TTL is an hour)", v, ok)
	}
	c.Set("k", 3, 0, 1) // no TTL at all now
	clock.Advance(48 * time.Hour)
	if v, ok := c.Get("k"); !ok || v != 3 {
		t.Fatalf("Get = %d,%v, want 3 (no deadline)", v, ok)
	}
}

func TestCloseStopsClockGoroutine(t *testing.T) {
	c, err := New(Options[string, int]{Capacity: 10, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.Set("k", 1, 0, 1)
	c.Close()
	c.Close() // idempotent
	goleak.VerifyNone(t)
	if v, ok := c.Get("k"); !ok || v != 1 {
		t.Fatalf("after Close: Get = %d,%v; the cache stays usable", v, ok)
	}
	// The stopped clock falls back to exact reads: it keeps moving.
	first := c.now()
	for c.now() == first {
	}
}

func TestDefaultClockParksAndWakes(t *testing.T) {
	cc := newCoarseClock()
	// Stopped, the clock holds the parked marker for good, as a parked one
	// does until woken: a read must go to the system clock itself (and keep
	// moving) and leave a wake-up for the goroutine. Stopping it first keeps
	// its ticks from racing with the reads below.
	cc.close()
	if cc.now.Load() != 0 {
		t.Fatal("a stopped clock does not hold the parked marker")
	}
	a := cc.read()
	if a == 0 {
		t.Fatal("read returned the parked marker")
	}
	for cc.read() == a {
	}
	select {
	case <-cc.wake:
	default:
		t.Fatal("a read of the parked clock did not leave a wake-up")
	}
}

// An entry whose TTL is within the default clock's slack is reclaimed by the
// store that inserts it. If the cache is over its bound at that moment
// (another shard's writer in flight, simulated here), the eviction loop
// must not walk past the shard's last entry into the list's sentinel.
func TestTinyTTLWhileOverBound(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 4})
	c.Set("a", 1, 0, 1)
	c.size.Add(10) // as if writers elsewhere had the cache over its bound
	c.Set("tiny", 2, time.Microsecond, 1)
	c.size.Add(-10)
	if _, ok := c.Get("tiny"); ok {
		t.Fatal("an entry past its deadline was returned")
	}
	if c.Len() < 0 || c.Len() != len(lruOrder(c)) {
		t.Fatalf("Len %d, entries %d: the count drifted", c.Len(), len(lruOrder(c)))
	}
	c.Set("b", 3, 0, 1) // the shard's list must still be intact
	if _, ok := c.Get("b"); !ok {
		t.Fatal("the shard is broken after the tiny-TTL store")
	}
}

// A TTL of centuries with a clock that reads the calendar does not wrap
// into a deadline in the past.
func TestCenturiesOfTTL(t *testing.T) {
	clock := clocktest.New()
	c := newTestCache(t, Options[string, int]{Capacity: 10, Clock: clock})
	c.Set("k", 1, 290*365*24*time.Hour, 1)
	clock.Advance(100 * 365 * 24 * time.Hour)
	if v, ok := c.Get("k"); !ok || v != 1 {
		t.Fatalf("Get after a century = %v, %v; want the value", v, ok)
	}
}
