package remote_test

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/remote"
)

// newExampleClient starts an in-memory Redis and returns a client for it,
// built with ContextTimeoutEnabled as New requires, and a function that
// stops both.
func newExampleClient() (*redis.Client, func()) {
	m, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
	return c, func() {
		_ = c.Close()
		m.Close()
	}
}

func ExampleNew() {
	client, stop := newExampleClient()
	defer stop()

	store, err := remote.New(client, remote.Options{Namespace: "users"})
	if err != nil {
		panic(err)
	}
	fmt.Println(store.Namespace())
	fmt.Println(store.Key("42"))

	// A client that ignores context deadlines could not honour Timeout.
	plain := redis.NewClient(&redis.Options{Addr: client.Options().Addr})
	defer plain.Close()
	_, err = remote.New(plain, remote.Options{})
	fmt.Println(err)

	_, err = remote.New(client, remote.Options{Namespace: "a:b"})
	fmt.Println(err != nil)
	// Output:
	// users
	// users:42
	// remote: the client ignores context deadlines; build it with ContextTimeoutEnabled: true
	// true
}

func ExampleStore_Get() {
	client, stop := newExampleClient()
	defer stop()
	store, err := remote.New(client, remote.Options{Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	if err := store.Set(ctx, "greeting", []byte("hello"), time.Minute); err != nil {
		panic(err)
	}
	item, ok, err := store.Get(ctx, "greeting")
	if err != nil {
		panic(err)
	}
	// miniredis's clock stands still, so the full minute is left.
	fmt.Println(string(item.Value), item.TTL, ok)

	_, ok, err = store.Get(ctx, "farewell")
	fmt.Println(ok, err)
	// Output:
	// hello 1m0s true
	// false <nil>
}

func ExampleStore_GetMany() {
	client, stop := newExampleClient()
	defer stop()
	store, err := remote.New(client, remote.Options{Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	err = store.SetMany(ctx, map[string]remote.Item{
		"a": {Value: []byte("apple"), TTL: time.Minute},
		"c": {Value: []byte("cherry"), TTL: time.Hour},
	})
	if err != nil {
		panic(err)
	}
	found, err := store.GetMany(ctx, []string{"a", "b", "c"})
	if err != nil {
		panic(err)
	}
	keys := make([]string, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Println(k, string(found[k].Value), found[k].TTL)
	}
	// Output:
	// a apple 1m0s
	// c cherry 1h0m0s
}
