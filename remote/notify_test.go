package remote_test

import (
	"testing"
	"time"

	"github.com/tier-cache/tier/remote"
)

// SetNotify and DeleteNotify write and publish: a subscriber receives the
// payloads, in order, and the write is done when it does.
func TestWritesWithNotice(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		c := e.client(t)
		s := mustNew(t, c, remote.Options{Timeout: 5 * time.Second})
		ctx := testCtx(t)
		sub := c.Subscribe(ctx, "news")
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // the confirmation
			t.Fatal(err)
		}
		next := func() string {
			t.Helper()
			m, err := sub.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return m.Payload
		}
		n := remote.Notice{Channel: "news", Payloads: [][]byte{[]byte("first"), []byte("second")}}
		if err := s.SetNotify(ctx, "k", []byte("v"), time.Minute, n); err != nil {
			t.Fatal(err)
		}
		if got := next() + "," + next(); got != "first,second" {
			t.Fatalf("received %s", got)
		}
		if it, ok := mustGet(t, s, "k"); !ok || string(it.Value) != "v" {
			t.Fatalf("after SetNotify: %q, %v", it.Value, ok)
		}
		keys := []string{"k", "{a}x", "{b}y"}
		for _, k := range keys[1:] {
			mustSet(t, s, k, "v", time.Minute)
		}
		if err := s.DeleteNotify(ctx, keys, remote.Notice{Channel: "news", Payloads: [][]byte{[]byte("gone")}}); err != nil {
			t.Fatal(err)
		}
		if got := next(); got != "gone" {
			t.Fatalf("received %s", got)
		}
		for _, k := range keys {
			if _, ok := mustGet(t, s, k); ok {
				t.Fatalf("%s survived DeleteNotify", k)
			}
		}
		if err := s.SetNotify(ctx, "k", []byte("v"), 0, n); err == nil {
			t.Fatal("SetNotify accepted a zero TTL")
		}
	})
}
