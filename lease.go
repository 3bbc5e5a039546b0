package tier

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"time"

	"github.com/tier-cache/tier/local"
)

// A lease is what a load puts under its key in Redis before it calls the
// loader, when the key is absent: the load then writes its value only over
// its own lease (remote.Store.Swap). A Set replaces the lease and a Delete
// removes it, so a load that read the source before either never writes
// the older value back. Other replicas read a lease as a miss. It expires
// after LoadTimeout if its load never ends, and a load that fails gives it
// back.
const leasePrefix = "\x00tier-lease\x00"

// A codec value starts with its format version, never 0, so a lease is
// never mistaken for a value.
func isLease(data []byte) bool { return bytes.HasPrefix(data, []byte(leasePrefix)) }

// newLease returns a lease no other load holds.
func newLease() []byte {
	var token [16]byte
	crand.Read(token[:])
	return append([]byte(leasePrefix), hex.EncodeToString(token[:])...)
}

// takeLease puts a new lease under key, if the key is absent, and returns
// it; nil if the key held something already (busy). When Redis fails, the
// lease is returned all the same: the write may have landed and only its
// reply been lost, and a Swap over a lease that is not there writes
// nothing, so the load then gives back what may be there.
func (c *Cache[V]) takeLease(ctx context.Context, key string) (lease []byte, busy bool) {
	if !c.breaker.allow() {
		return nil, false
	}
	lease = newLease()
	ok, err := c.far.Add(ctx, key, lease, c.opts.LoadTimeout)
	if err != nil {
		c.farFailed(ctx, "lease", key, err)
		return lease, false
	}
	c.breaker.success()
	if !ok {
		return nil, true
	}
	return lease, false
}

// writeOver stores data under key for ttl in place of cl.old, if key still
// holds it; nil data removes it (a lease given back, corrupt bytes
// dropped), unless cl.keep says to leave it.
func (c *Cache[V]) writeOver(ctx context.Context, key string, cl claim, data []byte, ttl time.Duration) {
	if cl.old == nil || data == nil && cl.keep || !c.breaker.allow() {
		return
	}
	if _, err := c.far.Swap(ctx, key, cl.old, data, c.farKeep(ttl, data)); err != nil {
		c.farFailed(ctx, "swap", key, err)
		return
	}
	c.breaker.success()
}

// awaitLoad waits, up to Options.WaitForLoads, for the load of another
// replica that holds key's lease to store its value, reading Redis with a
// backoff from 1ms to 32ms. It answers as readFar does: the value, or,
// when the lease is gone without one or the wait ends, what this load may
// write over.
func (c *Cache[V]) awaitLoad(ctx context.Context, key string, g local.FillGuard, f *flight[V]) (r Result[V], cl claim, hit bool, err error) {
	c.stats.loadWaits.Add(1)
	deadline := time.NewTimer(c.opts.WaitForLoads)
	defer deadline.Stop()
	pause := time.NewTimer(time.Millisecond)
	defer pause.Stop()
	for wait := time.Millisecond; ; wait = min(2*wait, 32*time.Millisecond) {
		select {
		case <-pause.C:
		case <-deadline.C:
			return r, claim{}, false, nil // load, and write nothing
		case <-ctx.Done():
			return r, claim{}, false, nil
		}
		if !c.breaker.allow() {
			return r, claim{}, false, nil
		}
		data, ok, err := c.far.Get(ctx, key)
		if err != nil {
			c.farFailed(ctx, "get", key, err)
			return r, claim{}, false, nil
		}
		c.breaker.success()
		if !ok || !isLease(data) { // a value, or the lease given back or expired without one
			return c.farAnswer(ctx, key, data, g, f, false)
		}
		pause.Reset(wait)
	}
}
