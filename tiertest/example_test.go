package tiertest_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/tiertest"
)

// Schema is what SchemaService caches: a table's columns, versioned.
type Schema struct {
	Table   string
	Columns []string
	Version int
}

// SchemaService reads table schemas through a cache in front of the
// database that holds them; each replica of the service has its own cache.
type SchemaService struct {
	cache *tier.Cache[Schema]
	db    *schemaDB
}

// Get returns the schema of table, and where it came from.
func (s *SchemaService) Get(ctx context.Context, table string) (tier.Result[Schema], error) {
	return s.cache.Fetch(ctx, table, tier.LoaderFunc[Schema](s.db.load))
}

// AddColumn changes the schema in the database, then in the cache.
func (s *SchemaService) AddColumn(ctx context.Context, table, column string) error {
	return s.cache.Set(ctx, table, s.db.addColumn(table, column))
}

// schemaDB stands in for the database.
type schemaDB struct {
	mu      sync.Mutex
	schemas map[string]Schema
}

func newSchemaDB() *schemaDB {
	return &schemaDB{schemas: map[string]Schema{"users": {Table: "users", Columns: []string{"id"}, Version: 1}}}
}

func (db *schemaDB) load(_ context.Context, table string) (Schema, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	s, ok := db.schemas[table]
	if !ok {
		return Schema{}, tier.ErrNotFound
	}
	return s, nil
}

func (db *schemaDB) addColumn(table, column string) Schema {
	db.mu.Lock()
	defer db.mu.Unlock()
	s := db.schemas[table]
	s.Columns = append(s.Columns[:len(s.Columns):len(s.Columns)], column)
	s.Version++
	db.schemas[table] = s
	return s
}

// A test of SchemaService on two replicas: a hit, a change on one replica
// seen by the other, and both tiers' TTLs moved on by the fake clock. In a
// test, t is the test's *testing.T; an example has none, so newT stands
// in for it.
func Example() {
	t, end := newT()
	defer end()
	ctx := context.Background()

	r := tiertest.NewRedis(t)
	clock := tiertest.NewClock(r)
	caches := tiertest.Replicas[Schema](t, 2, tier.Options{
		Redis: r.Client(), Clock: clock, Near: tier.NearOptions{TTL: time.Minute}, FarTTL: 10 * time.Minute,
	})
	db := newSchemaDB()
	a, b := &SchemaService{caches[0], db}, &SchemaService{caches[1], db}
	get := func(replica string, s *SchemaService) {
		res, err := s.Get(ctx, "users")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		fmt.Printf("%s: users version %d from %s\n", replica, res.Value.Version, res.Source)
	}

	get("A", a) // loaded from the database
	get("A", a) // a hit
	get("B", b) // from Redis

	if err := a.AddColumn(ctx, "users", "email"); err != nil {
		t.Fatalf("AddColumn: %v", err)
	}
	tiertest.Sync(t, caches...) // B has dropped its copy
	get("B", b)

	clock.Advance(2 * time.Minute) // past NearTTL
	get("B", b)
	clock.Advance(10 * time.Minute) // past FarTTL: Redis has dropped it too
	get("B", b)
	// Output:
	// A: users version 1 from load
	// A: users version 1 from near
	// B: users version 1 from far
	// B: users version 2 from far
	// B: users version 2 from far
	// B: users version 2 from load
}

// Advancing a clock made with a Redis moves the TTLs in Redis too.
func ExampleClock_Advance() {
	t, end := newT()
	defer end()
	r := tiertest.NewRedis(t)
	clock := tiertest.NewClock(r)
	r.Client().Set(context.Background(), "k", "v", time.Minute)

	clock.Advance(time.Minute)
	fmt.Println(clock.Now().Format(time.DateTime), r.Exists("k"))
	// Output:
	// 2026-01-01 00:01:00 false
}
