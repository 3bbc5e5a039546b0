package suite

import (
	"runtime"
)

// memoryGroups measure the heap each cache takes per entry when full.
func memoryGroups(cfg Config) []Group {
	g := Group{
		Section: "Heap per entry", ID: "memory",
		Case:    count(cfg.MemEntries) + " entries of a 48-byte struct; keys not counted",
		Metrics: []Metric{{Name: "bytes/entry", Ratio: true}},
	}
	for _, p := range []struct {
		name string
		role Role
		note string
	}{
		{"tier", Tier, "tier.Cache, near-only, TTL"},
		{"tier, Near.Admission", Info, "the same with admission (S3-FIFO)"},
		{"local.Cache", Info, "tier's near tier alone, TTL"},
		{"otter", Peer, "with a TTL"},
		{"otter, no TTL", Peer, ""},
		{"golang-lru", Peer, "no TTL"},
		{"ristretto", Peer, "with a TTL; keeps key hashes, not keys"},
	} {
		g.Impls = append(g.Impls, Impl{Name: p.name, Role: p.role, Note: p.note,
			Setup: func(env *Env) (Runner, error) {
				keys := keyList(env.MemEntries)
				return Runner{Run: func() ([]float64, error) {
					b, err := heapPerEntry(p.name, keys)
					return []float64{b}, err
				}}, nil
			}})
	}
	return []Group{g}
}

// heapPerEntry fills a new cache with one user per key and returns the
// growth of the live heap divided by the number of keys.
func heapPerEntry(name string, keys []string) (float64, error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := newNear(name, len(keys))
	if err != nil {
		return 0, err
	}
	for i, k := range keys {
		c.set(k, userOf(i, k))
	}
	if c.wait != nil {
		c.wait()
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(c)
	c.close()
	return (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(len(keys)), nil
}
