package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/internal/redistest"
)

// logEvents is a slog.Handler that sends the message of each record to a
// channel, so that a test can wait for the cache's "is down" and "is back"
// lines instead of polling its state.
type logEvents chan string

func (l logEvents) Enabled(context.Context, slog.Level) bool { return true }
func (l logEvents) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logEvents) WithGroup(string) slog.Handler            { return l }
func (l logEvents) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r.Message:
	default: // never block the cache; the buffer outlasts any test here
	}
	return nil
}

// awaitLog waits for a log line that contains substr.
func awaitLog(t *testing.T, events logEvents, substr string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case msg := <-events:
			if strings.Contains(msg, substr) {
				return
			}
		case <-deadline:
			t.Fatalf("no log line with %q in 30s", substr)
		}
	}
}

// get fetches path and returns its status and body.
func get(t *testing.T, base, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// aclChannels sets the channel rules of the server's default user.
func aclChannels(rule string) func(*redistest.Server, testing.TB) {
	return func(srv *redistest.Server, t testing.TB) {
		if err := srv.Client(t).Do(context.Background(), "ACL", "SETUSER", "default", rule).Err(); err != nil {
			t.Fatalf("ACL SETUSER default %s: %v", rule, err)
		}
	}
}

// A replica stays ready while Redis is down or its subscription is lost,
// says so in the body of /ready and in /health, keeps serving reads, and
// is fully up again once Redis is back, by itself.
func TestReadyWhileDegraded(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fail, mend func(*redistest.Server, testing.TB)
		down       string // what /ready says is down
	}{
		{"redis killed", (*redistest.Server).Kill, (*redistest.Server).Restart, "down since"},
		// The server drops the subscription and refuses a new one: its
		// user may no longer use any channel.
		{"subscription refused", aclChannels("resetchannels"), aclChannels("allchannels"), "subscription down since"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			events := make(logEvents, 1000)
			cache, err := tier.New[string](tier.Options{
				Redis:     srv.Client(t),
				Namespace: "demo",
				Logger:    slog.New(events),
				// A busy machine must not make Redis time out while up.
				FarTimeout: 5 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cache.Close() })
			loader := tier.LoaderFunc[string](func(_ context.Context, key string) (string, error) { return "value of " + key, nil })
			web := httptest.NewServer(newHandler(cache, loader))
			t.Cleanup(web.Close)

			if st, body := get(t, web.URL, "/ready?wait=30s"); st != http.StatusOK || body != "ready: ok\n" {
				t.Fatalf("GET /ready before the outage: %d %q, want 200 \"ready: ok\"", st, body)
			}

			tc.fail(srv, t)
			awaitLog(t, events, "is down")
			st, body := get(t, web.URL, "/ready")
			t.Logf("GET /ready while degraded: %d %s", st, body)
			if st != http.StatusOK || !strings.HasPrefix(body, "ready: degraded: ") || !strings.Contains(body, tc.down) {
				t.Errorf("GET /ready while degraded: %d %q, want 200 \"ready: degraded: ...%s...\"", st, body, tc.down)
			}
			var h struct {
				Status       string `json:"status"`
				Degraded     bool   `json:"degraded"`
				Subscription struct {
					State string `json:"state"`
					Error string `json:"error"`
				} `json:"subscription"`
			}
			if st, body := get(t, web.URL, "/health"); st != http.StatusOK || json.Unmarshal([]byte(body), &h) != nil ||
				!h.Degraded || h.Subscription.State != "down" || h.Subscription.Error == "" || !strings.HasPrefix(h.Status, "degraded") {
				t.Errorf("GET /health while degraded: %d %s", st, body)
			}
			// Reads go on: from the loader, whatever Redis does.
			if st, body := get(t, web.URL, "/v/k"); st != http.StatusOK || body != "value of k" {
				t.Errorf("GET /v/k while degraded: %d %q", st, body)
			}

			tc.mend(srv, t)
			// Each link logs when it is back, under the lock that Health
			// takes; once the last is, the cache is fully up.
			for cache.Health().Degraded {
				awaitLog(t, events, "is back")
			}
			if st, body := get(t, web.URL, "/ready"); st != http.StatusOK || body != "ready: ok\n" {
				t.Errorf("GET /ready after the outage: %d %q, want 200 \"ready: ok\"", st, body)
			}
		})
	}
}
