// Package clocktest provides a fake clock for tests: time moves only when
// a test says so, so that expiry is tested without sleeping.
package clocktest

import (
	"sync/atomic"
	"time"
)

// Fake is a clock (it satisfies local.Clock) that reads a time the test
// sets. It is safe for concurrent use.
type Fake struct{ ns atomic.Int64 }

// New returns a Fake that reads 2026-01-01 00:00 UTC.
func New() *Fake {
	c := &Fake{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// Now returns the time the clock was set to.
func (c *Fake) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock on by d.
func (c *Fake) Advance(d time.Duration) { c.ns.Add(int64(d)) }
