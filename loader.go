package tier

import (
	"context"
	"fmt"
	"runtime/debug"
)

// A Loader loads the value of a key from the source of truth when neither
// tier has it. It returns ErrNotFound (or an error wrapping it) when the
// key has no value.
type Loader[V any] interface {
	Load(ctx context.Context, key string) (V, error)
}

// LoaderFunc adapts a function to a [Loader].
type LoaderFunc[V any] func(ctx context.Context, key string) (V, error)

// Load calls f(ctx, key).
func (f LoaderFunc[V]) Load(ctx context.Context, key string) (V, error) { return f(ctx, key) }

// A BatchLoader loads the values of many keys at once, for [Cache.GetMany].
// A requested key missing from the returned map has no value: it is
// cached as not found.
type BatchLoader[V any] interface {
	LoadMany(ctx context.Context, keys []string) (map[string]V, error)
}

// BatchLoaderFunc adapts a function to a [BatchLoader].
type BatchLoaderFunc[V any] func(ctx context.Context, keys []string) (map[string]V, error)

// LoadMany calls f(ctx, keys).
func (f BatchLoaderFunc[V]) LoadMany(ctx context.Context, keys []string) (map[string]V, error) {
	return f(ctx, keys)
}

// checkLoader returns an error for a nil loader, which would otherwise
// panic only once a miss calls it.
func checkLoader[V any](loader Loader[V]) error {
	if f, ok := loader.(LoaderFunc[V]); loader == nil || ok && f == nil {
		return fmt.Errorf("tier: the loader is nil")
	}
	return nil
}

// callLoader calls the loader, turning a panic into an error.
func (c *Cache[V]) callLoader(ctx context.Context, key string, loader Loader[V]) (v V, err error) {
	c.stats.loads.Add(1)
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("tier: loader panicked", "key", key, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrLoaderPanic, r)
		}
	}()
	return loader.Load(ctx, key)
}

// callBatchLoader calls the batch loader, turning a panic into an error.
func (c *Cache[V]) callBatchLoader(ctx context.Context, loader BatchLoader[V], keys []string) (m map[string]V, err error) {
	c.stats.loads.Add(1)
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("tier: batch loader panicked", "keys", len(keys), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrLoaderPanic, r)
		}
	}()
	return loader.LoadMany(ctx, keys)
}
