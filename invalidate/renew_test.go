package invalidate

import (
	"context"
	"testing"
	"time"
)

// TestRenewingContext: receives share one context until it is due for
// renewal, each gets at least timeout-renewEvery of it, and stop ends the
// last one.
func TestRenewingContext(t *testing.T) {
	shared := renewingContext{parent: context.Background(), timeout: 2 * time.Hour, renewEvery: time.Hour}
	first := shared.get()
	if shared.get() != first {
		t.Error("a receive within renewEvery got a new context")
	}
	if d, ok := first.Deadline(); !ok || time.Until(d) < time.Hour {
		t.Errorf("Deadline() = %v, %v; want at least timeout-renewEvery away", d, ok)
	}
	shared.stop()
	if first.Err() == nil {
		t.Error("stop left the context running")
	}

	// renewEvery 0: every receive is past it (the monotonic clock never
	// goes back).
	renewing := renewingContext{parent: context.Background(), timeout: time.Hour}
	defer renewing.stop()
	a := renewing.get()
	if b := renewing.get(); b == a || a.Err() == nil || b.Err() != nil {
		t.Errorf("past renewEvery: same context %v, old one ended %v, new one live %v", b == a, a.Err() != nil, b.Err() == nil)
	}

	parent, cancel := context.WithCancel(context.Background())
	child := renewingContext{parent: parent, timeout: time.Hour, renewEvery: time.Hour}
	defer child.stop()
	ctx := child.get()
	cancel()
	if ctx.Err() == nil {
		t.Error("cancelling the parent did not end the shared context")
	}
}
