package faults_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/internal/redistest"
)

// read is one read by the poller, timed from the fault.
type read struct {
	start, end time.Duration
	value      string
	source     tier.Source
}

// The staleness bound after a lost subscription, measured from outside:
// a reader holds a near copy of k; the fault strikes; a writer on another
// replica writes k; the reader is polled throughout. The reader must not
// serve the old value after the write returned (beyond the detection
// time, which for a closed connection is "at once"), and must serve from
// its near tier again once it has resubscribed.
func TestStalenessAfterSubscriptionLoss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T, srv *redistest.Server)
	}{
		{"pubsub connection killed", func(t *testing.T, srv *redistest.Server) { srv.KillClients(t, "pubsub") }},
		{"redis restarted", func(t *testing.T, srv *redistest.Server) { srv.Kill(t); srv.Restart(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			reader := newCache(t, srv.Client(t), tier.Options{Namespace: "gap"})
			writer := newCache(t, srv.Client(t), tier.Options{Namespace: "gap"})
			ctx := context.Background()
			eventually(t, "reader uses its near tier", func() bool { return usesNear(reader, "warm") })
			if err := writer.Set(ctx, "k", "old"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "reader holds old near", func() bool {
				r, err := reader.Fetch(ctx, "k", valueOf)
				return err == nil && r.Value == "old" && r.Source == tier.SourceNear
			})

			origin := time.Now()
			var (
				mu    sync.Mutex
				reads []read
			)
			stop := make(chan struct{})
			polled := make(chan struct{})
			go func() {
				defer close(polled)
				for {
					select {
					case <-stop:
						return
					default:
					}
					s := time.Since(origin)
					r, _ := reader.Fetch(ctx, "k", valueOf)
					mu.Lock()
					reads = append(reads, read{s, time.Since(origin), r.Value, r.Source})
					mu.Unlock()
					time.Sleep(time.Millisecond)
				}
			}()
			tc.fault(t, srv)
			faulted := time.Since(origin)
			// The writer retries until Redis takes the write (after a
			// restart its client reconnects).
			var wrote time.Duration
			eventually(t, "the write", func() bool {
				err := writer.Set(ctx, "k", "new")
				wrote = time.Since(origin)
				return err == nil
			})
			recovered := eventually(t, "reader resubscribed and serves new from near", func() bool {
				if reader.Health().Subscription.State != tier.StateUp {
					return false
				}
				r, err := reader.Fetch(ctx, "k", valueOf)
				return err == nil && r.Value == "new" && r.Source == tier.SourceNear
			})
			close(stop)
			<-polled

			var lastNearOld, lastOld time.Duration = -1, -1
			for _, r := range reads {
				if r.value == "old" && r.source == tier.SourceNear {
					lastNearOld = r.start
				}
				if r.value == "old" && r.start > wrote {
					lastOld = r.start
				}
			}
			st := reader.Stats()
			t.Logf("fault done at %v; write returned at %v; the old near copy last served to a read that started at %v; stale for %v after the write returned; near tier back with the new value %v after the write (losses %d, reconnects %d, %d reads polled)",
				faulted, wrote, lastNearOld, max(0, lastOld-wrote), recovered, st.Losses, st.Reconnects, len(reads))
			// Documented: a replica may serve copies between the loss and
			// its detection, at most 2×HealthInterval (default 1s).
			if bound := 2 * time.Second; lastOld-wrote > bound {
				t.Errorf("the reader served the old value at %v, %v after the write returned at %v: over the documented bound %v",
					lastOld, lastOld-wrote, wrote, bound)
			}
			if st.Losses == 0 || st.Reconnects == 0 {
				t.Errorf("stats %+v: want a loss and a reconnect counted", st)
			}
		})
	}
}
