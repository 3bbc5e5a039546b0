// Command schemaservice is the seed's SchemaService in Go: two replicas of a
// service read table schemas through tier, in front of a slow schema store,
// and share one Redis.
//
//	go run ./examples/schemaservice                  # embedded Redis (miniredis)
//	go run ./examples/schemaservice -redis 127.0.0.1:6379
//
// REDIS_ADDR is read when -redis is not given. It prints where each read
// was answered (near tier, Redis, or the store) and what each path costs.
package main

import (
	"context"
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
}

func (s *schemaStore) Load(ctx context.Context, table string) (Schema, error) {
	s.loads.Add(1)
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return Schema{}, ctx.Err()
	}
	if table == "missing" {
		return Schema{}, tier.ErrNotFound
	}
	return Schema{Table: table, Columns: []string{"id", "name", "created_at"}, Version: 1}, nil
}

// SchemaService is one replica: the seed's read-through service.
type SchemaService struct {
	name  string
	cache *tier.Cache[Schema]
	store *schemaStore
}

// Get returns the schema of table through the cache.
func (s *SchemaService) Get(ctx context.Context, table string) (tier.Result[Schema], error) {
	return s.cache.Fetch(ctx, table, s.store)
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
	store := &schemaStore{delay: delay}
	ctx := context.Background()

	// Start from an empty namespace so that every run tells the same story:
	// before the replicas exist, so that no replica is still hearing of
	// the deletion when the story begins.
	cleaner := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer cleaner.Close()
	if err := cleaner.Del(ctx, "schemas:users", "schemas:orders", "schemas:missing").Err(); err != nil {
		return fmt.Errorf("redis at %s: %w", addr, err)
	}

	// Two replicas, each with its own Redis client, as two processes would be.
	replicas := make([]*SchemaService, 2)
	for i := range replicas {
		client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
		defer client.Close()
		cache, err := tier.New[Schema](tier.Options{Redis: client, Namespace: "schemas", NearCapacity: 1000})
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

	fmt.Fprintln(w, "\n1. Read-through: miss, load, store in both tiers")
	for _, step := range []struct {
		svc   *SchemaService
		table string
	}{{a, "users"}, {a, "users"}, {b, "users"}, {b, "users"}} {
		start := time.Now()
		r, err := step.svc.Get(ctx, step.table)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "   %s Get(%q): %d columns from %-4s in %v\n", step.svc.name, step.table, len(r.Value.Columns), r.Source, time.Since(start).Round(time.Microsecond))
	}

	fmt.Fprintln(w, "\n2. Stampede: 100 goroutines on each replica ask for one cold key")
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
	fmt.Fprintf(w, "   200 callers, %d load(s) of the store (one per replica at most)\n", store.loads.Load()-before)

	fmt.Fprintln(w, "\n3. Not found is cached too")
	for range 2 {
		r, err := a.Get(ctx, "missing")
		fmt.Fprintf(w, "   %s Get(\"missing\"): %v from %s\n", a.name, err, r.Source)
	}

	fmt.Fprintln(w, "\n4. What each path costs")
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

	fmt.Fprintln(w, "\n5. Stats")
	for _, svc := range replicas {
		st := svc.cache.Stats()
		fmt.Fprintf(w, "   %s: near hits %d, far hits %d, misses %d, loads %d, far errors %d\n",
			svc.name, st.NearHits, st.FarHits, st.Misses, st.Loads, st.FarErrors)
	}
	fmt.Fprintf(w, "   store loads in all: %d\n", store.loads.Load())
	return nil
}
