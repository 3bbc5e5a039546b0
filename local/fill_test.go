package local

import (
	"fmt"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/clocktest"
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

func TestSetIfUnchanged(t *testing.T) {
	for _, shards := range []int{1, 8} {
		t.Run(fmt.Sprint(shards, " shards"), func(t *testing.T) {
			c := newCache(t, Options[string, int]{Capacity: 64, Shards: shards})

			// Nothing happened since the guard: it stores, over a fill made
			// after the guard (fills do not count as changes).
			g := c.StartFill()
			c.Fill(c.StartFill(), "k", 1, 0, 1)
			if !c.SetIfUnchanged(g, "k", 2, 0, 1) {
				t.Fatal("SetIfUnchanged refused with no change since its guard")
			}
			if v, _ := c.Get("k"); v != 2 {
				t.Fatalf("Get = %d, want 2", v)
			}

			// Once it stored, older fills are refused: the stale read that
			// raced the writer cannot replace the write.
			stale := c.StartFill()
			g = c.StartFill()
			if !c.SetIfUnchanged(g, "k", 3, 0, 1) {
				t.Fatal("refused")
			}
			if c.Fill(stale, "k", 1, 0, 1) {
				t.Fatal("a fill guarded before SetIfUnchanged stored over it")
			}

			// Any change after the guard refuses it and is kept.
			for name, change := range map[string]func(){
				"delete":  func() { c.Delete("k") },
				"set":     func() { c.Set("k", 50) },
				"replace": func() { c.Replace("k", 60, 0, 1) },
				"purge":   func() { c.Purge() },
				"another SetIfUnchanged": func() {
					c.SetIfUnchanged(c.StartFill(), "k", 70, 0, 1)
				},
			} {
				c.Set("k", 4)
				g := c.StartFill()
				change()
				want, wantOK := c.Peek("k")
				if c.SetIfUnchanged(g, "k", 5, 0, 1) {
					t.Fatalf("%s after the guard: SetIfUnchanged stored", name)
				}
				if v, ok := c.Peek("k"); v != want || ok != wantOK {
					t.Fatalf("%s after the guard: Peek = %d,%v; want %d,%v", name, v, ok, want, wantOK)
				}
			}
		})
	}
}

func TestReplace(t *testing.T) {
	for _, shards := range []int{1, 8} {
		t.Run(fmt.Sprint(shards, " shards"), func(t *testing.T) {
			c := newCache(t, Options[string, int]{Capacity: 64, Shards: shards})
			// An absent key stays absent, but fills guarded before the
			// Replace are refused: they read what the news replaced.
			g := c.StartFill()
			if c.Replace("k", 1, 0, 1) {
				t.Fatal("Replace stored an absent key")
			}
			if _, ok := c.Peek("k"); ok {
				t.Fatal("Replace made an absent key present")
			}
			if c.Fill(g, "k", 0, 0, 1) {
				t.Fatal("a fill guarded before Replace stored")
			}
			if !c.Fill(c.StartFill(), "k", 0, 0, 1) {
				t.Fatal("a fill guarded after Replace was refused")
			}
			// A present key takes the value and the new TTL and weight.
			g = c.StartFill()
			if !c.Replace("k", 2, time.Hour, 3) {
				t.Fatal("Replace refused a present key")
			}
			if v, _ := c.Peek("k"); v != 2 {
				t.Fatalf("Peek = %d, want 2", v)
			}
			if ttl, _ := c.TTL("k"); ttl <= 59*time.Minute {
				t.Fatalf("TTL = %v, want about an hour", ttl)
			}
			if c.Weight() != 3 {
				t.Fatalf("Weight = %d, want 3", c.Weight())
			}
			if c.Fill(g, "k", 0, 0, 1) {
				t.Fatal("a fill guarded before Replace stored over it")
			}
		})
	}
}

func TestReplaceOfExpiredKeyDoesNotRevive(t *testing.T) {
	clock := clocktest.New()
	c := newCache(t, Options[string, int]{Capacity: 64, Clock: clock})
	c.SetWith("k", 1, time.Second, 1)
	clock.Advance(2 * time.Second)
	if c.Replace("k", 2, time.Hour, 1) {
		t.Fatal("Replace revived an expired key")
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("an expired key is present")
	}
}

func TestContains(t *testing.T) {
	clock := clocktest.New()
	c := newCache(t, Options[string, int]{Capacity: 64, Clock: clock})
	c.SetWith("k", 1, time.Second, 1)
	if !c.Contains("k") || c.Contains("other") {
		t.Fatal("Contains disagrees with what was stored")
	}
	if st := c.Stats(); st.Hits != 0 || st.Misses != 0 {
		t.Fatalf("Contains counted %d hits, %d misses", st.Hits, st.Misses)
	}
	clock.Advance(2 * time.Second)
	if c.Contains("k") {
		t.Fatal("Contains reports an expired key")
	}
}

func TestGetIntoLeft(t *testing.T) {
	clock := clocktest.New()
	c := newCache(t, Options[string, int]{Capacity: 64, Clock: clock})
	c.SetWith("k", 1, 10*time.Second, 1)
	clock.Advance(4 * time.Second)
	var v int
	left, ok := c.GetIntoLeft("k", &v)
	if !ok || v != 1 || left != 6*time.Second {
		t.Fatalf("GetIntoLeft = %v, %v (value %d); want 6s, true, 1", left, ok, v)
	}
	if _, ok := c.GetIntoLeft("absent", &v); ok {
		t.Fatal("an absent key was found")
	}
	clock.Advance(6 * time.Second)
	if _, ok := c.GetIntoLeft("k", &v); ok {
		t.Fatal("an expired key was found")
	}
	if st := c.Stats(); st.Hits != 1 || st.Misses != 2 {
		t.Fatalf("Stats = %+v; want 1 hit, 2 misses", st)
	}
}
