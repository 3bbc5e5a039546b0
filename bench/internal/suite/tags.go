package suite

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier"
)

// tagGroups measure tags: the cost of InvalidateTag, which should not
// depend on how many entries carry the tag, and what a tag costs a hit.
func tagGroups(cfg Config) []Group {
	ctx := context.Background()
	inv := Group{
		Section: "Tags", ID: "tag-invalidate", Redis: true,
		Case: "InvalidateTag of one tag, by how many entries carry it",
		Metrics: []Metric{
			{Name: "µs/call", Ratio: true, Decimals: 0},
			{Name: "Redis commands/call", Ratio: true, Decimals: 1},
			{Name: "round trips/call", Ratio: true, Decimals: 1},
		},
	}
	for i, n := range cfg.TagEntries {
		role := Info
		if i == 0 {
			role = Tier
		}
		entries := count(n) + " entries"
		if n == 1 {
			entries = "1 entry"
		}
		inv.Impls = append(inv.Impls, Impl{
			Name: "tier", Role: role, Note: "the tag carried by " + entries + ", near and in Redis",
			Setup: func(env *Env) (Runner, error) { return tagInvalidation(env, n) },
		})
	}
	inv.Impls = append(inv.Impls, Impl{
		Name: "raw write", Role: Floor, Note: "EVALSHA of SET PX + PUBLISH of one frame, for scale",
		Setup: func(env *Env) (Runner, error) {
			cl := env.Client()
			w := newRawWriter(cl, "rawtag", "k", "rawtag:invalidate")
			value := []byte("value")
			return Runner{Run: func() ([]float64, error) {
				const calls = 200
				start := time.Now()
				for range calls {
					if err := w.write(ctx, value, time.Minute); err != nil {
						return nil, err
					}
				}
				return []float64{float64(time.Since(start).Microseconds()) / calls, 1, 1}, nil
			}}, nil
		},
	})

	hit := func(id, c string, far bool) Group {
		g := Group{Section: "Tags", ID: id, Case: c, Metrics: timedMetrics, Redis: far, Fresh: !far}
		for _, tagged := range []bool{true, false} {
			name, role, note := "tier", Tier, "each entry carries 2 tags"
			if !tagged {
				name, role, note = "tier, untagged", Info, "the same entries without tags"
			}
			g.Impls = append(g.Impls, Impl{Name: name, Role: role, Note: note, Setup: func(env *Env) (Runner, error) {
				return taggedHits(env, far, tagged)
			}})
		}
		return g
	}
	return []Group{
		inv,
		hit("tag-near-hit", "near hit, 10k entries, 1 goroutine", false),
		hit("tag-far-hit", "far hit: DropNear, then Fetch", true),
	}
}

// commandCounter is a go-redis hook that counts commands and round trips.
type commandCounter struct{ commands, trips atomic.Int64 }

func (h *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.commands.Add(1)
		h.trips.Add(1)
		return next(ctx, cmd)
	}
}

func (h *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.commands.Add(int64(len(cmds)))
		h.trips.Add(1)
		return next(ctx, cmds)
	}
}

var tagRun atomic.Int64

// tagInvalidation returns a Runner that invalidates a tag carried by n
// entries, which it first Sets, in Redis and near.
func tagInvalidation(env *Env, n int) (Runner, error) {
	ctx := context.Background()
	client := env.Client()
	ns := "tags" + strconv.FormatInt(tagRun.Add(1), 10)
	c, err := newTierOn(client, ns, func(o *tier.Options) { o.Near.Capacity = max(n, 1000) })
	if err != nil {
		return Runner{}, err
	}
	keys := keyList(n)
	if err := parallelSets(ctx, c, keys, func(int) []string { return []string{"group"} }); err != nil {
		c.Close()
		return Runner{}, err
	}
	h := &commandCounter{}
	client.AddHook(h)
	return Runner{Close: func() { c.Close() }, Run: func() ([]float64, error) {
		const calls = 200
		c0, t0 := h.commands.Load(), h.trips.Load()
		start := time.Now()
		for range calls {
			if err := c.InvalidateTag(ctx, "group"); err != nil {
				return nil, err
			}
		}
		el := time.Since(start)
		return []float64{
			float64(el.Microseconds()) / calls,
			float64(h.commands.Load()-c0) / calls,
			float64(h.trips.Load()-t0) / calls,
		}, nil
	}}, nil
}

// parallelSets Sets a user under each key, with the tags tagsOf gives,
// from a few goroutines.
func parallelSets(ctx context.Context, c *tier.Cache[User], keys []string, tagsOf func(i int) []string) error {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		errs = make(chan error, 8)
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				if err := c.Set(ctx, keys[i], userOf(i, keys[i]), tagsOf(i)...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// taggedHits returns a Runner of near hits (far: far hits) on entries
// that carry two tags each, or none.
func taggedHits(env *Env, far bool, tagged bool) (Runner, error) {
	ctx := context.Background()
	tagsOf := func(i int) []string {
		if !tagged {
			return nil
		}
		return []string{"tenant:" + strconv.Itoa(i%100), "kind:user"}
	}
	if !far {
		const n = 10_000
		c, err := tier.New[User](tier.Options{Near: tier.NearOptions{Capacity: n, TTL: ttl}, Jitter: -1})
		if err != nil {
			return Runner{}, err
		}
		keys := keyList(n)
		if err := parallelSets(ctx, c, keys, tagsOf); err != nil {
			c.Close()
			return Runner{}, err
		}
		get := func(k string) (User, bool) {
			u, err := c.Get(ctx, k, nearLoader)
			return u, err == nil
		}
		return Runner{Op: nearOp(nearCache{get: get}, keys, 1), Close: func() { c.Close() }}, nil
	}
	ns := "tagfar" + strconv.FormatInt(tagRun.Add(1), 10)
	c, err := newTier(env, ns, nil)
	if err != nil {
		return Runner{}, err
	}
	const key = "user:1"
	if err := c.Set(ctx, key, farUser, tagsOf(1)...); err != nil {
		c.Close()
		return Runner{}, err
	}
	return Runner{Close: func() { c.Close() }, Op: func(int) func(int) error {
		return func(n int) error {
			for range n {
				c.DropNear(key)
				r, err := c.Fetch(ctx, key, failLoader)
				if err != nil || r.Source != tier.SourceFar {
					return fmt.Errorf("%v from %v, %v", r.Value, r.Source, err)
				}
			}
			return nil
		}
	}}, nil
}
