package local

import (
	"fmt"
	"testing"
)

// otherStampKey returns a key that shares no stamp with key, so that
// invalidating it must not disturb fills of key.
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
	set := func(c *Cache[string, int]) { c.Set("k", 99, 0, 1) }
	purge := func(c *Cache[string, int]) { c.Purge() }
	delOther := func(c *Cache[string, int]) { c.Delete(otherStampKey(c, "k")) }
	fillOther := func(c *Cache[string, int]) { c.Fill(c.StartFill(), "k", 5, 0, 1) }
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
		{name: "another fill during the load", during: fillOther, stored: true, want: 1, wantPresent: true},
	}
	for _, tc := range cases {
		for _, shards := range []int{1, 8} {
			t.Run(fmt.Sprintf("%s/%d shards", tc.name, shards), func(t *testing.T) {
				c := newShardedCache(t, Options[string, int]{Capacity: 64}, shards)
				if tc.preloadValue {
					c.Set("k", 7, 0, 1)
				}
				if tc.before != nil {
					tc.before(c)
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
	c := newTestCache(t, Options[string, int]{Capacity: 1000})
	g := c.StartFill()
	other := otherStampKey(c, "k")
	c.Set(other, 1, 0, 1)
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

// Two keys that share a stamp may refuse each other's fills: needlessly,
// never wrongly.
func TestFillGuardSharedStampRefuses(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 64})
	_, h := c.locate("k")
	twin := ""
	for i := 0; twin == ""; i++ {
		k := fmt.Sprint("twin-", i)
		if s, h2 := c.locate(k); s == &c.shards[h>>c.shift] && h2&c.stampMask == h&c.stampMask {
			twin = k
		}
	}
	g := c.StartFill()
	c.Delete(twin)
	if c.Fill(g, "k", 1, 0, 1) {
		t.Fatal("a fill stored although a key sharing its stamp changed")
	}
	if _, ok := c.Peek("k"); ok {
		t.Fatal("the refused fill stored")
	}
}

func TestSetIfUnchanged(t *testing.T) {
	for _, shards := range []int{1, 8} {
		t.Run(fmt.Sprint(shards, " shards"), func(t *testing.T) {
			c := newShardedCache(t, Options[string, int]{Capacity: 64}, shards)

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
				"delete": func() { c.Delete("k") },
				"set":    func() { c.Set("k", 50, 0, 1) },
				"purge":  func() { c.Purge() },
				"another SetIfUnchanged": func() {
					c.SetIfUnchanged(c.StartFill(), "k", 70, 0, 1)
				},
			} {
				c.Set("k", 4, 0, 1)
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

// A refused SetIfUnchanged is not a change: it stamps nothing.
func TestRefusedSetIfUnchangedStampsNothing(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 64})
	old := c.StartFill()
	c.Set("k", 1, 0, 1)
	g := c.StartFill()
	if c.SetIfUnchanged(old, "k", 2, 0, 1) {
		t.Fatal("SetIfUnchanged stored over a newer Set")
	}
	if !c.Fill(g, "k", 3, 0, 1) {
		t.Fatal("a refused SetIfUnchanged refused a later guard's fill")
	}
}
