package invalidate

import (
	"context"
	"testing"
	"time"
)

// The reads of a subscription share a context for half a HealthInterval;
// each read has 1.5 to 2 HealthIntervals left, and a context replaced or
// stopped is cancelled.
func TestReadBound(t *testing.T) {
	const hi = 10 * time.Second
	var r readBound
	t0 := time.Now()
	first := r.next(context.Background(), hi, t0)
	if d, ok := first.Deadline(); !ok || !d.Equal(t0.Add(2*hi)) {
		t.Fatalf("first deadline %v, %v; want 2 HealthIntervals after the read", d, ok)
	}
	if again := r.next(context.Background(), hi, t0.Add(hi/2-time.Nanosecond)); again != first {
		t.Fatal("a read within half a HealthInterval got a new context")
	}
	second := r.next(context.Background(), hi, t0.Add(hi/2))
	if second == first {
		t.Fatal("a read half a HealthInterval later got the old context")
	}
	if first.Err() == nil {
		t.Fatal("the replaced context was not cancelled")
	}
	if d, _ := second.Deadline(); !d.Equal(t0.Add(hi/2 + 2*hi)) {
		t.Fatalf("second deadline %v after the first read; want 2.5 HealthIntervals", d.Sub(t0))
	}
	r.stop()
	if second.Err() == nil {
		t.Fatal("stop did not cancel the last context")
	}
	var unused readBound
	unused.stop() // nothing to cancel: no panic
}
