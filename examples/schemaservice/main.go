// Command schemaservice is the seed's SchemaService in Go: two replicas of a
// service read table schemas through tier, in front of a slow schema store,
// and share one Redis. A change made on one replica reaches the other.
//
//	go run ./examples/schemaservice                  # embedded Redis (miniredis)
//	go run ./examples/schemaservice -redis 127.0.0.1:6379
//
// REDIS_ADDR is read when -redis is not given. It prints where each read
// was answered (near tier, Redis, or the store) and what each path costs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier"
)

// Schema is what the service caches: the columns of a table.
type Schema struct {
	Table   string
	Columns []string
	Version int
}

// schemaStore is the slow source of truth, e.g. a database's catalog.
type schemaStore struct {
	delay time.Duration
	loads atomic.Int64

	mu      sync.Mutex
	schemas map[string]Schema
}

func newSchemaStore(delay time.Duration) *schemaStore {
	return &schemaStore{delay: delay, schemas: map[string]Schema{
		"users":  {Table: "users", Columns: []string{"id", "name"}, Version: 1},
		"orders": {Table: "orders", Columns: []string{"id", "user_id", "total"}, Version: 1},
	}}
}

// Load reads a schema, slowly; it is the cache's loader.
func (s *schemaStore) Load(ctx context.Context, table string) (Schema, error) {
	s.loads.Add(1)
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return Schema{}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.schemas[table]
	if !ok {
		return Schema{}, tier.ErrNotFound
	}
	return sc, nil
}

// addColumn changes a schema in the store and returns the new one.
func (s *schemaStore) addColumn(table, column string) Schema {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.schemas[table]
	sc.Columns = append(sc.Columns[:len(sc.Columns):len(sc.Columns)], column)
	sc.Version++
	s.schemas[table] = sc
	return sc
}

// SchemaService is one replica of the service.
type SchemaService struct {
	name  string
	cache *tier.Cache[Schema]
	store *schemaStore
}

// Get returns the schema of table through the cache, and where it came from.
func (s *SchemaService) Get(ctx context.Context, table string) (tier.Result[Schema], error) {
	return s.cache.Fetch(ctx, table, s.store)
}

// AddColumn changes the schema in the store, then in the cache: in Redis,
// and, by one message, in every other replica's near tier.
func (s *SchemaService) AddColumn(ctx context.Context, table, column string) (Schema, error) {
	sc := s.store.addColumn(table, column)
	return sc, s.cache.Set(ctx, table, sc)
}

func main() {
	addr := flag.String("redis", os.Getenv("REDIS_ADDR"), "Redis address (default: $REDIS_ADDR, else an embedded miniredis)")
	delay := flag.Duration("delay", 50*time.Millisecond, "latency of the simulated schema store")
	flag.Parse()
	if err := run(os.Stdout, *addr, *delay); err != nil {
		log.Fatal(err)
	}
}

func run(w io.Writer, addr string, delay time.Duration) error {
	if addr == "" {
		m, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer m.Close()
		addr = m.Addr()
		fmt.Fprintf(w, "Redis: embedded miniredis at %s (pass -redis ADDR for a real one)\n", addr)
	} else {
		fmt.Fprintf(w, "Redis: %s\n", addr)
	}
	store := newSchemaStore(delay)
	ctx := context.Background()

	// Start from an empty namespace, so that every run tells the same
	// story, before the replicas exist, so that none is still hearing of
	// the deletion when the story begins.
	cleaner := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer cleaner.Close()
	if err := cleaner.Del(ctx, "schemas:users", "schemas:orders", "schemas:missing").Err(); err != nil {
		return fmt.Errorf("redis at %s: %w", addr, err)
	}

	// Two replicas, each with its own Redis client, as two processes would be.
	var lag atomic.Int64 // of the last message replica-B heard
	replicas := make([]*SchemaService, 2)
	for i := range replicas {
		client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
		defer client.Close()
		cache, err := tier.New[Schema](tier.Options{
			Redis:     client,
			Namespace: "schemas",
			// A replica that misses a key another is loading waits for
			// that load instead of loading too.
			WaitForLoads: 5 * time.Second,
			Invalidation: tier.InvalidationOptions{
				OnPropagation: func(d time.Duration) { lag.Store(int64(d)) },
			},
		})
		if err != nil {
			return err
		}
		defer cache.Close()
		// Serve from the near tier from the first Get: wait until the
		// replica hears invalidations (New waits only FarTimeout).
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = cache.WaitReady(wctx)
		cancel()
		if err != nil {
			return err
		}
		replicas[i] = &SchemaService{name: fmt.Sprintf("replica-%c", 'A'+i), cache: cache, store: store}
	}
	a, b := replicas[0], replicas[1]
	get := func(svc *SchemaService, table string) (tier.Result[Schema], error) {
		start := time.Now()
		r, err := svc.Get(ctx, table)
		if err == nil {
			fmt.Fprintf(w, "   %s Get %s: version %d from %-4s in %v\n", svc.name, table, r.Value.Version, r.Source, time.Since(start).Round(time.Microsecond))
		}
		return r, err
	}

	fmt.Fprintln(w, "\n1. Read-through: a miss loads from the store and fills both tiers")
	for _, svc := range []*SchemaService{a, a, b, b} {
		if _, err := get(svc, "users"); err != nil {
			return err
		}
	}

	fmt.Fprintln(w, "\n2. A change on one replica reaches the other")
	sc, err := a.AddColumn(ctx, "users", "email")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "   %s Set users v%d (column %q added)\n", a.name, sc.Version, "email")
	// B serves its near copy, version 1, until A's message reaches it and
	// drops that copy; its next read then goes to Redis, which A's Set
	// updated: the first version 2 it serves is from far.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := b.Get(ctx, "users")
		if err != nil {
			return err
		}
		if r.Value.Version == sc.Version {
			fmt.Fprintf(w, "   %s Get users: version %d from %s\n", b.name, r.Value.Version, r.Source)
			break
		}
		if time.Now().After(deadline) {
			return errors.New("replica-B still serves version 1 10s after the change")
		}
		time.Sleep(100 * time.Microsecond)
	}
	fmt.Fprintf(w, "   (A's message reached B %v after the Set began)\n", time.Duration(lag.Load()).Round(time.Microsecond))

	fmt.Fprintln(w, "\n3. Stampede: 100 goroutines on each replica ask for one cold key")
	before := store.loads.Load()
	var wg sync.WaitGroup
	for _, svc := range replicas {
		for range 100 {
			wg.Go(func() {
				if _, err := svc.Get(ctx, "orders"); err != nil {
					log.Print(err)
				}
			})
		}
	}
	wg.Wait()
	fmt.Fprintf(w, "   200 callers, %d load(s) of the store (one flight a replica; the later waits for the other's load)\n", store.loads.Load()-before)

	fmt.Fprintln(w, "\n4. Not found is cached too")
	for range 2 {
		r, err := a.Get(ctx, "missing")
		fmt.Fprintf(w, "   %s Get missing: %v from %s\n", a.name, err, r.Source)
	}

	fmt.Fprintln(w, "\n5. What each path costs")
	const nearReads = 100_000
	start := time.Now()
	for range nearReads {
		if _, err := a.cache.Get(ctx, "users", store); err != nil {
			return err
		}
	}
	nearCost := time.Since(start) / nearReads
	const farReads = 200
	start = time.Now()
	for range farReads {
		// Drop the near copy on one replica only, so each read goes to Redis.
		b.cache.DropNear("users")
		if _, err := b.cache.Get(ctx, "users", store); err != nil {
			return err
		}
	}
	farCost := time.Since(start) / farReads
	fmt.Fprintf(w, "   near hit: %v   Redis hit: %v   store load: %v\n", nearCost, farCost.Round(time.Microsecond), delay)

	fmt.Fprintln(w, "\n6. Stats")
	for _, svc := range replicas {
		st := svc.cache.Stats()
		fmt.Fprintf(w, "   %s: near hits %d, far hits %d, misses %d, loads %d, load waits %d, invalidations %d, far errors %d\n",
			svc.name, st.NearHits, st.FarHits, st.Misses, st.Loads, st.LoadWaits, st.Invalidations, st.FarErrors)
	}
	fmt.Fprintf(w, "   store loads in all: %d\n", store.loads.Load())
	return nil
}
