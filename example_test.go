package tier_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier"
)

// newRedis starts an embedded Redis for the examples; a service passes its
// own client.
func newRedis() (*redis.Client, func()) {
	m, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	client := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
	return client, func() { client.Close(); m.Close() }
}

type User struct {
	ID   string
	Name string
}

func ExampleNew() {
	client, stop := newRedis()
	defer stop()

	users, err := tier.New[User](tier.Options{
		Redis:     client,  // the far tier, shared by every replica
		Namespace: "users", // keys live under "users:" in Redis
	})
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close()
	fmt.Println(users.Stats().Loads)
	// Output: 0
}

func ExampleCache_Get() {
	client, stop := newRedis()
	defer stop()
	users, _ := tier.New[User](tier.Options{Redis: client, Namespace: "users"})
	defer users.Close()

	loadUser := tier.LoaderFunc[User](func(ctx context.Context, id string) (User, error) {
		fmt.Println("loading", id)
		if id == "0" {
			return User{}, tier.ErrNotFound
		}
		return User{ID: id, Name: "Ada"}, nil
	})
	ctx := context.Background()
	for range 2 {
		u, err := users.Get(ctx, "42", loadUser) // the second call is a near hit
		fmt.Println(u.Name, err)
	}
	_, err := users.Get(ctx, "0", loadUser)
	fmt.Println(errors.Is(err, tier.ErrNotFound))
	// Output:
	// loading 42
	// Ada <nil>
	// Ada <nil>
	// loading 0
	// true
}

func ExampleCache_Fetch() {
	client, stop := newRedis()
	defer stop()
	ctx := context.Background()
	loader := tier.LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		return "value of " + key, nil
	})
	replicaA, _ := tier.New[string](tier.Options{Redis: client})
	defer replicaA.Close()
	replicaB, _ := tier.New[string](tier.Options{Redis: client})
	defer replicaB.Close()

	r, _ := replicaA.Fetch(ctx, "k", loader)
	fmt.Println("A:", r.Value, "from", r.Source)
	r, _ = replicaB.Fetch(ctx, "k", loader)
	fmt.Println("B:", r.Value, "from", r.Source)
	r, _ = replicaB.Fetch(ctx, "k", loader)
	fmt.Println("B:", r.Value, "from", r.Source)
	// Output:
	// A: value of k from load
	// B: value of k from far
	// B: value of k from near
}

func ExampleCache_Set() {
	client, stop := newRedis()
	defer stop()
	ctx := context.Background()
	flags, _ := tier.New[bool](tier.Options{Redis: client, Namespace: "flags"})
	defer flags.Close()

	if err := flags.Set(ctx, "new-checkout", true); err != nil {
		log.Fatal(err)
	}
	on, _ := flags.Get(ctx, "new-checkout", tier.LoaderFunc[bool](func(context.Context, string) (bool, error) {
		panic("not called: Set stored the value")
	}))
	fmt.Println(on)
	// Output: true
}

func ExampleCache_Delete() {
	client, stop := newRedis()
	defer stop()
	ctx := context.Background()
	c, _ := tier.New[string](tier.Options{Redis: client})
	defer c.Close()

	version := 0
	loader := tier.LoaderFunc[string](func(context.Context, string) (string, error) {
		version++
		return fmt.Sprint("v", version), nil
	})
	v, _ := c.Get(ctx, "config", loader)
	fmt.Println(v)
	_ = c.Delete(ctx, "config") // both tiers: the next Get loads again
	v, _ = c.Get(ctx, "config", loader)
	fmt.Println(v)
	// Output:
	// v1
	// v2
}

func ExampleCache_GetMany() {
	client, stop := newRedis()
	defer stop()
	ctx := context.Background()
	c, _ := tier.New[int](tier.Options{Redis: client})
	defer c.Close()
	_ = c.Set(ctx, "a", 1)

	loadMany := tier.BatchLoaderFunc[int](func(ctx context.Context, keys []string) (map[string]int, error) {
		fmt.Println("one load of", keys)
		return map[string]int{"b": 2, "c": 3}, nil // "d" has no value
	})
	got, _ := c.GetMany(ctx, []string{"a", "b", "c", "d"}, loadMany)
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Println(k, got[k])
	}
	// Output:
	// one load of [b c d]
	// a 1
	// b 2
	// c 3
}

func ExampleCache_Wrap() {
	c, _ := tier.New[string](tier.Options{}) // near tier only
	defer c.Close()

	lookup := func(ctx context.Context, id string) (string, error) {
		fmt.Println("slow lookup of", id)
		return "user-" + id, nil
	}
	cachedLookup := c.Wrap(lookup) // same signature, now cached

	for range 3 {
		name, _ := cachedLookup(context.Background(), "7")
		fmt.Println(name)
	}
	// Output:
	// slow lookup of 7
	// user-7
	// user-7
	// user-7
}

// WaitReady tells when a cache serves from its near tier, for a readiness
// check: until its invalidation subscription is confirmed, every Get
// reads Redis.
func ExampleCache_WaitReady() {
	client, done := newRedis()
	defer done()
	users, err := tier.New[User](tier.Options{Redis: client, Namespace: "users"})
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := users.WaitReady(ctx); err != nil {
		log.Fatal(err) // Redis did not answer in time: not ready
	}
	fmt.Println("ready")
	// Output: ready
}
