package local

import (
	"fmt"
	"testing"
)

// otherStampKey returns a key that shares neither shard stamp with key,
// so that invalidating it must not disturb fills of key.
func otherStampKey(c *Cache[string, int], key string) string {
	_, h := c.locate(key)
	for i := 0; ; i++ {
		k := fmt.Sprint("other-", i)
		if _, h2 := c.locate(k); h2&c.stampMask != h&c.stampMask {
			return k
		}
	}
}

func TestFillGuardInterleavings(t *testing.T) {
	type step func(c *Cache[string, int])
	del := func(c *Cache[string, int]) { c.Delete("k") }
	set := func(c *Cache[string, int]) { c.Set("k", 99) }
	purge := func(c *Cache[string, int]) { c.Purge() }
	delOther := func(c *Cache[string, int]) { c.Delete(otherStampKey(c, "k")) }
	cases := []struct {
		name         string
		before       step // before StartFill
		during       step // between StartFill and Fill
		after        step // after Fill
		stored       bool // Fill's result
		want         int
		wantPresent  bool
		preloadValue bool
	}{
		{name: "no invalidation", stored: true, want: 1, wantPresent: true},
		{name: "delete before the load", before: del, stored: true, want: 1, wantPresent: true},
		{name: "delete during the load", during: del, stored: false, wantPresent: false},
		{name: "delete during, key had a value", during: del, preloadValue: true, stored: false, wantPresent: false},
		{name: "delete after the fill", after: del, stored: true, wantPresent: false},
		{name: "set during the load keeps the newer set", during: set, stored: false, want: 99, wantPresent: true},
		{name: "purge before the load", before: purge, stored: true, want: 1, wantPresent: true},
		{name: "purge during the load", during: purge, stored: false, wantPresent: false},
		{name: "purge after the fill", after: purge, stored: true, wantPresent: false},
		{name: "delete of another key during the load", during: delOther, stored: true, want: 1, wantPresent: true},
	}
	for _, tc := range cases {
		for _, shards := range []int{1, 8} {
			t.Run(fmt.Sprintf("%s/%d shards", tc.name, shards), func(t *testing.T) {
				c := newCache(t, Options[string, int]{Capacity: 64, Shards: shards})
				if tc.preloadValue {
					c.Set("k", 7)
				}
				for _, s := range []step{tc.before} {
					if s != nil {
						s(c)
					}
				}
				g := c.StartFill()
				if tc.during != nil {
					tc.during(c)
				}
				if got := c.Fill(g, "k", 1, 0, 1); got != tc.stored {
					t.Fatalf("Fill = %v, want %v", got, tc.stored)
				}
				if tc.after != nil {
					tc.after(c)
				}
				v, ok := c.Get("k")
				if ok != tc.wantPresent || (ok && v != tc.want) {
					t.Fatalf("Get = %d,%v, want %d,%v", v, ok, tc.want, tc.wantPresent)
				}
			})
		}
	}
}

func TestFillGuardOnlyRefusesOwnInvalidations(t *testing.T) {
	c := newCache(t, Options[string, int]{Capacity: 1000})
	g := c.StartFill()
	other := otherStampKey(c, "k")
	c.Set(other, 1)
	c.Delete(other)
	if !c.Fill(g, "k", 1, 0, 1) {
		t.Fatal("a write to an unrelated key refused the fill")
	}
	// A guard taken after an invalidation is not affected by it.
	c.Delete("k")
	g2 := c.StartFill()
	if !c.Fill(g2, "k", 2, 0, 1) {
		t.Fatal("a guard taken after Delete was refused")
	}
}
