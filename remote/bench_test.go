package remote_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/redistest"
	"github.com/tier-cache/tier/remote"
)

// benchValue is a typical small cache entry.
var benchValue = bytes.Repeat([]byte("v"), 200)

// BenchmarkStoreGet reads a 200-byte hit through Store.Get (one GET under
// Options.Timeout) from a real redis-server. Compare with BenchmarkRawGet.
func BenchmarkStoreGet(b *testing.B) {
	srv := redistest.Start(b)
	s := mustNew(b, srv.Client(b), remote.Options{Timeout: time.Second})
	ctx := context.Background()
	if err := s.Set(ctx, "bench", benchValue, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		v, ok, err := s.Get(ctx, "bench")
		if err != nil || !ok || len(v) != len(benchValue) {
			b.Fatalf("Get = %d bytes, %v, %v", len(v), ok, err)
		}
	}
}

// BenchmarkRawGet reads the same 200 bytes with a plain GET on the same kind
// of client: the floor Store.Get is measured against.
func BenchmarkRawGet(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client(b)
	ctx := context.Background()
	if err := c.Set(ctx, "tier:bench", benchValue, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		v, err := c.Get(ctx, "tier:bench").Bytes()
		if err != nil || len(v) != len(benchValue) {
			b.Fatalf("GET = %d bytes, %v", len(v), err)
		}
	}
}

// BenchmarkRawGetWithTimeout is BenchmarkRawGet with a per-call
// context.WithTimeout, as Store.Get applies Options.Timeout: what Store.Get
// costs beyond it is the Store's own.
func BenchmarkRawGetWithTimeout(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client(b)
	ctx := context.Background()
	if err := c.Set(ctx, "tier:bench", benchValue, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		v, err := c.Get(cctx, "tier:bench").Bytes()
		cancel()
		if err != nil || len(v) != len(benchValue) {
			b.Fatalf("GET = %d bytes, %v", len(v), err)
		}
	}
}

// BenchmarkStoreGetParallel is BenchmarkStoreGet from GOMAXPROCS goroutines.
func BenchmarkStoreGetParallel(b *testing.B) {
	srv := redistest.Start(b)
	s := mustNew(b, srv.Client(b), remote.Options{Timeout: time.Second})
	ctx := context.Background()
	if err := s.Set(ctx, "bench", benchValue, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok, err := s.Get(ctx, "bench"); err != nil || !ok {
				b.Errorf("Get = %v, %v", ok, err)
				return
			}
		}
	})
}

// BenchmarkRawGetParallel is BenchmarkRawGet from GOMAXPROCS goroutines.
func BenchmarkRawGetParallel(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client(b)
	ctx := context.Background()
	if err := c.Set(ctx, "tier:bench", benchValue, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Get(ctx, "tier:bench").Err(); err != nil {
				b.Errorf("GET: %v", err)
				return
			}
		}
	})
}

// BenchmarkStoreGetMany reads 50 hits in one call (one MGET).
func BenchmarkStoreGetMany(b *testing.B) {
	srv := redistest.Start(b)
	s := mustNew(b, srv.Client(b), remote.Options{Timeout: time.Second})
	ctx := context.Background()
	keys := make([]string, 50)
	values := make([][]byte, len(keys))
	for i := range keys {
		keys[i] = "bench-" + string(rune('A'+i))
		values[i] = benchValue
	}
	if _, err := s.AddMany(ctx, keys, values, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		vs, err := s.GetMany(ctx, keys)
		if err != nil || len(vs) != len(keys) || vs[len(vs)-1] == nil {
			b.Fatalf("GetMany = %d values, %v", len(vs), err)
		}
	}
}
