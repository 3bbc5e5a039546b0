package tier_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"maps"
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

// ready waits until c hears the other replicas' changes, as a readiness
// check would; until then it keeps values near only briefly.
func ready[V any](c *tier.Cache[V]) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
}

type User struct {
	ID   string
	Name string
}

func ExampleNew() {
	client, stop := newRedis()
	defer stop()

	users, err := tier.New[User](tier.Options{
		Redis:     client,                             // the far tier, shared by every replica
		Namespace: "users",                            // keys live under "users:" in Redis
		Near:      tier.NearOptions{TTL: time.Minute}, // how long a replica keeps a value in memory
		FarTTL:    10 * time.Minute,                   // how long Redis keeps it
	})
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close()
	ready(users)
	fmt.Println(users.Health())

	_, err = tier.New[User](tier.Options{Near: tier.NearOptions{TTL: -time.Second}})
	fmt.Println(errors.Is(err, tier.ErrInvalidOptions), err)
	// Output:
	// ok
	// true tier: invalid options: Near.TTL must not be negative, got -1s
}

func ExampleCache_Get() {
	client, stop := newRedis()
	defer stop()
	users, _ := tier.New[User](tier.Options{Redis: client, Namespace: "users"})
	defer users.Close()
	ready(users)

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
	for range 2 {
		_, err := users.Get(ctx, "0", loadUser) // "not found" is cached too
		fmt.Println(errors.Is(err, tier.ErrNotFound))
	}
	// Output:
	// loading 42
	// Ada <nil>
	// Ada <nil>
	// loading 0
	// true
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
	ready(replicaA)
	ready(replicaB)

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
	ready(flags)

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
	ready(c)

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
	ready(c)
	_ = c.Set(ctx, "a", 1)

	loadMany := tier.BatchLoaderFunc[int](func(ctx context.Context, keys []string) (map[string]int, error) {
		fmt.Println("one load of", keys)
		return map[string]int{"b": 2, "c": 3}, nil // "d" has no value
	})
	got, _ := c.GetMany(ctx, []string{"a", "b", "c", "d"}, loadMany)
	for _, k := range slices.Sorted(maps.Keys(got)) {
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

// Invalidate is for a change made in Redis by other means: it drops the
// near copies of keys on every replica and leaves Redis alone.
func ExampleCache_Invalidate() {
	client, stop := newRedis()
	defer stop()
	ctx := context.Background()
	price := 10 // the source of truth
	load := tier.LoaderFunc[int](func(context.Context, string) (int, error) { return price, nil })
	a, _ := tier.New[int](tier.Options{Redis: client, Namespace: "prices"})
	defer a.Close()
	b, _ := tier.New[int](tier.Options{Redis: client, Namespace: "prices"})
	defer b.Close()
	ready(a) // both replicas hear each other's messages from now on
	ready(b)

	v, _ := a.Get(ctx, "apple", load)
	fmt.Println("a:", v)

	// A batch job changes the price at the source, removes the copy in
	// Redis itself, and drops the near copies on every replica.
	price = 12
	client.Del(ctx, "prices:apple")
	_ = a.Invalidate(ctx, "apple")

	v, _ = a.Get(ctx, "apple", load) // a's near copy is gone: loads
	fmt.Println("a:", v)
	v, _ = b.Get(ctx, "apple", load) // b reads what a's load stored in Redis
	fmt.Println("b:", v)
	// Output:
	// a: 10
	// a: 12
	// b: 12
}

// Health says whether a cache reaches Redis and hears the other replicas;
// it still serves every read when it does not.
func ExampleCache_Health() {
	client, stop := newRedis()
	defer stop()
	c, _ := tier.New[string](tier.Options{Redis: client})
	defer c.Close()
	ready(c)

	h := c.Health()
	fmt.Println(h.Redis.State, h.Subscription.State, h.Degraded, h.NearTTL)
	fmt.Println(h) // one line, for logs and health endpoints

	nearOnly, _ := tier.New[string](tier.Options{})
	defer nearOnly.Close()
	h = nearOnly.Health()
	fmt.Println(h.Redis.State, h.Subscription.State, h.Degraded)
	// Output:
	// up up false 1m0s
	// ok
	// off off false
}

// WaitReady tells when a cache hears the other replicas' changes, for a
// readiness check; a cache serves all the same before, keeping values
// near only briefly.
func ExampleCache_WaitReady() {
	client, stop := newRedis()
	defer stop()
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
