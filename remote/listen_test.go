package remote_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// announcer is an Options.Announce that records its calls. For keys it
// returns two payloads, "keys=<keys joined by commas>" and "n=<count>".
type announcer struct {
	mu       sync.Mutex
	calls    [][]string
	payloads []string
	err      error // returned instead, when set
}

func (a *announcer) announce(keys []string) ([][]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return nil, a.err
	}
	a.calls = append(a.calls, slices.Clone(keys))
	p := [][]byte{[]byte("keys=" + strings.Join(keys, ",")), fmt.Appendf(nil, "n=%d", len(keys))}
	for _, b := range p {
		a.payloads = append(a.payloads, string(b))
	}
	return p, nil
}

// take returns the calls since the last take, and the payloads they
// returned, in order.
func (a *announcer) take() (calls [][]string, payloads []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	calls, payloads = a.calls, a.payloads
	a.calls, a.payloads = nil, nil
	return calls, payloads
}

// listener is a subscriber to one channel.
type listener struct {
	ps      *redis.PubSub
	publish func(ctx context.Context, payload string) error // on the same channel, through the same server
}

// listen subscribes through c to channel (with SSUBSCRIBE when sharded),
// waits for the server to confirm, and unsubscribes when the test ends.
func listen(tb testing.TB, c redis.UniversalClient, channel string, sharded bool) *listener {
	tb.Helper()
	ctx := testCtx(tb)
	l := &listener{}
	if sharded {
		l.ps = c.SSubscribe(ctx, channel)
		l.publish = func(ctx context.Context, p string) error { return c.SPublish(ctx, channel, p).Err() }
	} else {
		l.ps = c.Subscribe(ctx, channel)
		l.publish = func(ctx context.Context, p string) error { return c.Publish(ctx, channel, p).Err() }
	}
	tb.Cleanup(func() { _ = l.ps.Close() })
	if _, err := l.ps.Receive(ctx); err != nil { // the confirmation
		tb.Fatalf("subscribe to %q: %v", channel, err)
	}
	return l
}

// next returns the payload of the next message, failing the test if none
// comes within waitTimeout.
func (l *listener) next(tb testing.TB) string {
	tb.Helper()
	m, err := l.ps.ReceiveMessage(testCtx(tb))
	if err != nil {
		tb.Fatalf("waiting for a message: %v", err)
	}
	return m.Payload
}

// expect checks that the next messages carry exactly want, in order, and
// then nothing else: after them, a fence published on the channel is the
// next message. A subscriber hears a server's messages in the order it
// ran them, so any other message already sent would come before the fence.
func (l *listener) expect(tb testing.TB, want []string) {
	tb.Helper()
	got := make([]string, 0, len(want))
	for range want {
		got = append(got, l.next(tb))
	}
	if !slices.Equal(got, want) {
		tb.Fatalf("the channel carried %q, want %q", got, want)
	}
	l.expectNothing(tb)
}

// expectNothing checks that no message is waiting: a fence published now is
// the next message.
func (l *listener) expectNothing(tb testing.TB) {
	tb.Helper()
	const fence = "\x00fence"
	if err := l.publish(testCtx(tb), fence); err != nil {
		tb.Fatalf("publish the fence: %v", err)
	}
	if p := l.next(tb); p != fence {
		tb.Fatalf("the channel carried %q before the fence, want nothing", p)
	}
}
