package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// busHandler applies what the invalidation subscription receives. Every
// message only drops: it stamps its keys in the near tier (so that no
// fill guarded before it stores) and detaches their flights (so that no
// Get after it waits for a read that may predate it). Drops commute and
// are idempotent, so messages may arrive in any order, twice, or from this
// replica's own writes (the Bus skips those: the writes already dropped).
type busHandler[V any] struct{ c *Cache[V] }

func (h busHandler[V]) Invalidate(keys []string) {
	h.c.stats.invalidations.Add(uint64(len(keys)))
	h.c.DropNear(keys...)
	h.c.event("keys")
}

func (h busHandler[V]) InvalidateTags(tags []string, clock uint64) {
	h.c.stats.invalidations.Add(uint64(len(tags)))
	h.c.invalidateTags(tags, clock)
	h.c.event("tags")
}

func (h busHandler[V]) InvalidateAll() {
	h.c.stats.invalidations.Add(1)
	h.c.dropAll()
	h.c.event("all")
}

// Disconnected marks the cache degraded first, then drops everything: a
// fill guarded before the drop is refused, and one guarded after it sees
// the degraded bound (see nearBound).
func (h busHandler[V]) Disconnected(cause error) {
	h.c.sub.down(cause)
	h.c.dropAll()
	h.c.tags.reset()
	h.c.event("down")
}

// Connected drops everything cached during the gap, then lifts the bound:
// a fill guarded after the drop read Redis after the subscription was
// confirmed, so any change since will reach it.
func (h busHandler[V]) Connected() {
	h.c.dropAll()
	h.c.tags.reset()
	h.c.syncTagClock()
	h.c.sub.upAgain()
	h.c.event("up")
}

// dropAll empties the near tier, refusing every fill guarded before, and
// detaches every flight.
func (c *Cache[V]) dropAll() {
	c.near.Purge()
	c.flights.Clear()
}

func (c *Cache[V]) event(e string) {
	if f := c.onMessage.Load(); f != nil {
		(*f)(e)
	}
}

// keyspacePrefix checks what Invalidation.WatchExternalWrites needs, and
// returns the prefix of the keyspace-notification channels of the cache's
// keys, or "" when the option is off. A server that cannot be reached now
// is not an error (the cache starts degraded, as always); one that answers
// with notifications off is.
func keyspacePrefix(o Options) (string, error) {
	if !o.Invalidation.WatchExternalWrites {
		return "", nil
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: Invalidation.WatchExternalWrites %s", ErrInvalidOptions, why)
	}
	client, ok := o.Redis.(*redis.Client)
	if !ok {
		return "", bad("needs a single-server *redis.Client: keyspace notifications are per node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.FarTimeout)
	defer cancel()
	got, err := client.ConfigGet(ctx, "notify-keyspace-events").Result()
	var rerr redis.Error
	switch {
	case errors.As(err, &rerr):
		return "", bad(fmt.Sprintf("cannot read notify-keyspace-events (%v); the user needs +config|get", err))
	case err != nil:
		o.Logger.Warn("tier: cannot check notify-keyspace-events now; watching anyway", "err", err)
	default:
		flags := got["notify-keyspace-events"]
		has := func(f string) bool { return strings.Contains(flags, f) }
		if !has("K") || !(has("A") || has("$") && has("g")) {
			return "", bad(fmt.Sprintf("needs keyspace notifications of string and generic commands, and the server has notify-keyspace-events %q: run CONFIG SET notify-keyspace-events K$gx (or KA)", flags))
		}
	}
	return fmt.Sprintf("__keyspace@%d__:%s:", client.Options().DB, o.Namespace), nil
}
