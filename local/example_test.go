package local_test

import (
	"fmt"
	"time"

	"github.com/tier-cache/tier/internal/clocktest"
	"github.com/tier-cache/tier/local"
)

func Example() {
	c, err := local.New(local.Options[string, int]{Capacity: 2})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Set("a", 1, 0, 1)
	c.Set("b", 2, 0, 1)
	c.Get("a")          // a is now the most recently used
	c.Set("c", 3, 0, 1) // so b, the least recently used, makes room

	_, okB := c.Get("b")
	a, okA := c.Get("a")
	fmt.Println(a, okA, okB, c.Len())
	// Output: 1 true false 2
}

func ExampleCache_Set() {
	clock := clocktest.New()
	c, err := local.New(local.Options[string, string]{Capacity: 100, TTL: time.Hour, Clock: clock})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Set("schema:users", "id,name", 0, 1)         // lives for Options.TTL
	c.Set("flag:beta", "on", time.Minute, 1)       // lives for a minute
	c.Set("flag:beta", "ignored", -time.Second, 1) // not stored: drops "on" too

	clock.Advance(2 * time.Minute)
	_, okFlag := c.Get("flag:beta")
	schema, okSchema := c.Get("schema:users")
	fmt.Println(okFlag, schema, okSchema)
	// Output: false id,name true
}

// A read-through load takes a guard before it reads the source, so that an
// invalidation that lands while it loads is not undone by its result.
func ExampleCache_Fill() {
	c, err := local.New(local.Options[string, string]{Capacity: 100})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	g := c.StartFill()
	loaded := "alice@old.example" // read from the database
	c.Delete("user:1")            // meanwhile a writer changed user 1
	fmt.Println(c.Fill(g, "user:1", loaded, 0, 1))

	g = c.StartFill() // a load that starts after the change
	fmt.Println(c.Fill(g, "user:1", "alice@new.example", 0, 1))
	v, _ := c.Get("user:1")
	fmt.Println(v)
	// Output:
	// false
	// true
	// alice@new.example
}

// A writer that stores its own write takes a guard before writing to the
// source; a load that read the source before the write cannot then replace it.
func ExampleCache_SetIfUnchanged() {
	c, err := local.New(local.Options[string, string]{Capacity: 100})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	reader := c.StartFill() // a load begins and reads "old"
	writer := c.StartFill() // a writer begins and writes "new" to the source
	fmt.Println(c.SetIfUnchanged(writer, "k", "new", 0, 1))
	fmt.Println(c.Fill(reader, "k", "old", 0, 1))
	v, _ := c.Get("k")
	fmt.Println(v)
	// Output:
	// true
	// false
	// new
}
