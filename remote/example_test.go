package remote_test

import (
	"context"
	"errors"
	"fmt"
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
	fmt.Println(store.Key("42"))

	// A client that ignores context deadlines could not honour Timeout.
	plain := redis.NewClient(&redis.Options{Addr: client.Options().Addr})
	defer plain.Close()
	_, err = remote.New(plain, remote.Options{})
	fmt.Println(errors.Is(err, remote.ErrContextTimeoutDisabled))

	_, err = remote.New(client, remote.Options{Channel: "invalidations"})
	fmt.Println(err)
	// Output:
	// users:42
	// true
	// remote: Options.Channel needs Options.Announce
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
	value, ok, err := store.Get(ctx, "greeting")
	fmt.Printf("%s %v %v\n", value, ok, err)

	// A missing key is a miss, not an error.
	value, ok, err = store.Get(ctx, "farewell")
	fmt.Printf("%q %v %v\n", value, ok, err)
	// Output:
	// hello true <nil>
	// "" false <nil>
}

func ExampleStore_GetMany() {
	client, stop := newExampleClient()
	defer stop()
	store, err := remote.New(client, remote.Options{Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	for k, v := range map[string]string{"a": "apple", "c": "cherry"} {
		if err := store.Set(ctx, k, []byte(v), time.Minute); err != nil {
			panic(err)
		}
	}
	keys := []string{"a", "b", "c"}
	values, err := store.GetMany(ctx, keys)
	if err != nil {
		panic(err)
	}
	for i, v := range values {
		if v == nil {
			fmt.Println(keys[i], "missing")
			continue
		}
		fmt.Println(keys[i], string(v))
	}
	// Output:
	// a apple
	// b missing
	// c cherry
}

// With a Channel, every Set and Delete announces the keys it changed, in
// the same script as the write.
func ExampleStore_Set() {
	client, stop := newExampleClient()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	sub := client.Subscribe(ctx, "invalidations")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // wait until subscribed
		panic(err)
	}

	store, err := remote.New(client, remote.Options{
		Timeout: time.Second,
		Channel: "invalidations",
		Announce: func(keys []string) ([][]byte, error) {
			payloads := make([][]byte, len(keys))
			for i, k := range keys {
				payloads[i] = []byte("changed " + k)
			}
			return payloads, nil
		},
	})
	if err != nil {
		panic(err)
	}
	if err := store.Set(ctx, "user:42", []byte("Ada"), time.Minute); err != nil {
		panic(err)
	}
	if err := store.Delete(ctx, "user:42", "user:7"); err != nil {
		panic(err)
	}
	for range 3 {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Println(msg.Channel, msg.Payload)
	}
	// Output:
	// invalidations changed user:42
	// invalidations changed user:42
	// invalidations changed user:7
}

// A read-through load takes a lease with Add, and writes its value only
// over that lease: a Set made meanwhile wins.
func ExampleStore_Swap() {
	client, stop := newExampleClient()
	defer stop()
	store, err := remote.New(client, remote.Options{Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	lease := []byte("lease:7f3a")
	took, _ := store.Add(ctx, "report", lease, 10*time.Second)
	swapped, _ := store.Swap(ctx, "report", lease, []byte("loaded"), time.Minute)
	value, _, _ := store.Get(ctx, "report")
	fmt.Println(took, swapped, string(value))

	took, _ = store.Add(ctx, "chart", lease, 10*time.Second)
	_ = store.Set(ctx, "chart", []byte("written"), time.Minute) // meanwhile
	swapped, _ = store.Swap(ctx, "chart", lease, []byte("loaded"), time.Minute)
	value, _, _ = store.Get(ctx, "chart")
	fmt.Println(took, swapped, string(value))
	// Output:
	// true true loaded
	// true false written
}
