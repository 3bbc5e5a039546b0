package tier

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// breakAfter is how many failures in a row that say Redis is not answering
// open the breaker.
const breakAfter = 3

// breaker stops callers from waiting on a Redis that does not answer.
// After breakAfter failures in a row that mean "Redis is not answering"
// (see unreachable), it opens: no caller sends anything to Redis, and one
// background probe PINGs it, with a backoff from HealthInterval/10 up to
// HealthInterval, until it answers; then the breaker closes. Any success
// resets the count.
//
// A well-kept breaker library (sony/gobreaker) counts requests through
// the breaker and lets callers probe in its half-open state; here no
// caller may wait on a dead server, so the probe is ours, and the whole
// breaker is this file.
type breaker struct {
	link     *link // up while closed; logs the changes
	ping     func(context.Context) error
	diagnose func(context.Context) error // why a timeout, if a dial can tell
	interval time.Duration
	start    func(probe func(ctx context.Context)) bool // runs the probe, unless closing

	failures atomic.Int32
	open     atomic.Bool
}

func newBreaker(ping, diagnose func(context.Context) error, l *link, interval time.Duration, start func(func(context.Context)) bool) *breaker {
	return &breaker{link: l, ping: ping, diagnose: diagnose, interval: interval, start: start}
}

// allow reports whether callers may use Redis.
func (b *breaker) allow() bool { return !b.open.Load() }

// success records an answer from Redis.
func (b *breaker) success() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
}

// failure records err, the error of an operation on Redis, and reports
// whether it means that Redis is not answering.
func (b *breaker) failure(err error) bool {
	if !unreachable(err) {
		return false
	}
	if b.failures.Add(1) >= breakAfter && b.open.CompareAndSwap(false, true) {
		b.link.down(b.why(err))
		if !b.start(b.probe) {
			b.open.Store(false) // closing: nothing will use it again
		}
	}
	return true
}

// cause is why the breaker is open.
func (b *breaker) cause() error {
	if err := b.link.status().Err; err != nil {
		return err
	}
	return errors.New("unknown")
}

// probe PINGs Redis until it answers, then closes the breaker.
func (b *breaker) probe(ctx context.Context) {
	wait := b.interval / 10
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := b.ping(ctx)
		if err == nil {
			b.failures.Store(0)
			b.open.Store(false)
			b.link.upAgain()
			return
		}
		if ctx.Err() != nil {
			return
		}
		b.link.down(b.why(err)) // keeps the latest cause
		wait = min(2*wait, b.interval)
		t.Reset(wait)
	}
}

// why is the cause of err to report: a timeout while the client's pool
// retries its dials says only "context deadline exceeded", so a dial of
// our own, bounded by a tenth of HealthInterval, names the real cause
// ("connection refused") when it can. A hung server accepts the dial: its
// cause stays the timeout.
func (b *breaker) why(err error) error {
	if errors.Is(err, context.DeadlineExceeded) && b.diagnose != nil {
		ctx, cancel := context.WithTimeout(context.Background(), b.interval/10)
		defer cancel()
		if derr := b.diagnose(ctx); derr != nil && !errors.Is(derr, context.DeadlineExceeded) {
			return derr
		}
	}
	return cause(err)
}

// cause strips err of the wrappers of this module ("tier: get "k": …",
// "remote: …"), which name keys: what remains says why Redis failed, and
// is the same for every key.
func cause(err error) error {
	for {
		msg := err.Error()
		if !strings.HasPrefix(msg, "tier:") && !strings.HasPrefix(msg, "remote:") {
			return err
		}
		var next error
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			next = u.Unwrap()
		case interface{ Unwrap() []error }:
			if us := u.Unwrap(); len(us) > 0 {
				next = us[len(us)-1]
			}
		}
		if next == nil {
			return err
		}
		err = next
	}
}

// unreachable reports whether err means that Redis is not answering: the
// connection is refused, reset or closed, an operation timed out, the
// client's pool is closed or exhausted, or the server is loading its data
// or has lost its master. A miss, a refused permission, a script error or
// any other reply of a working server is not.
func unreachable(err error) bool {
	var ne net.Error
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne):
		return true
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
	}
	return false
}
