package remote

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Add stores value under key for ttl only if key is absent (SET NX), and
// reports whether it stored it.
func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("remote: add %q: ttl %v is not positive", key, ttl)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ok, err := s.client.SetNX(ctx, s.Key(key), value, ceilMillis(ttl)).Result()
	if err != nil {
		return false, fmt.Errorf("remote: add %q: %w", key, withContext(ctx, err))
	}
	return ok, nil
}

// AddMany is [Store.Add] of values[i] under keys[i], all for ttl, in one
// round trip (one per cluster node touched). It reports which it stored.
func (s *Store) AddMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) ([]bool, error) {
	if len(keys) != len(values) {
		return nil, fmt.Errorf("remote: add: %d keys and %d values", len(keys), len(values))
	}
	if len(keys) == 0 {
		return nil, nil
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("remote: add %s: ttl %v is not positive", describe(keys), ttl)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cmds := make([]*redis.BoolCmd, len(keys))
	pipe := s.client.Pipeline()
	for i, k := range keys {
		cmds[i] = pipe.SetNX(ctx, s.Key(k), values[i], ceilMillis(ttl))
	}
	_, _ = pipe.Exec(ctx) // errors are read from each command below
	added := make([]bool, len(keys))
	for i, c := range cmds {
		ok, err := c.Result()
		if err != nil {
			return nil, fmt.Errorf("remote: add %q: %w", keys[i], withContext(ctx, err))
		}
		added[i] = ok
	}
	return added, nil
}

// SwapItem is one compare-and-set of [Store.SwapMany]: store Value under
// Key for TTL if Key holds Old; an empty Value deletes Key instead.
type SwapItem struct {
	Key        string
	Old, Value []byte
	TTL        time.Duration
}

// Swap stores value under key for ttl only if key still holds old, in one
// script, and reports whether it did; an empty value deletes key instead.
// It is the compare-and-set behind read-through leases: a load writes its
// value only over the lease it put under the key, which a Set or Delete
// made meanwhile has replaced or removed.
func (s *Store) Swap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if len(value) > 0 && ttl <= 0 {
		return false, fmt.Errorf("remote: swap %q: ttl %v is not positive", key, ttl)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := swapScript.Run(ctx, s.client, []string{s.Key(key)}, old, value, ceilMillis(ttl).Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("remote: swap %q: %w", key, withContext(ctx, err))
	}
	return n == 1, nil
}

// SwapMany is [Store.Swap] for many keys, in one round trip (one per
// cluster node touched).
func (s *Store) SwapMany(ctx context.Context, items []SwapItem) error {
	if len(items) == 0 {
		return nil
	}
	for _, it := range items {
		if len(it.Value) > 0 && it.TTL <= 0 {
			return fmt.Errorf("remote: swap %q: ttl %v is not positive", it.Key, it.TTL)
		}
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cmds := make([]*redis.Cmd, len(items))
	pipe := s.client.Pipeline()
	for i, it := range items {
		cmds[i] = swapScript.Eval(ctx, pipe, []string{s.Key(it.Key)}, it.Old, it.Value, ceilMillis(it.TTL).Milliseconds())
	}
	_, _ = pipe.Exec(ctx) // errors are read from each command below
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return fmt.Errorf("remote: swap %q: %w", items[i].Key, withContext(ctx, err))
		}
	}
	return nil
}

// swapScript replaces or deletes a key only while it holds an expected
// value.
var swapScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) return 1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)
