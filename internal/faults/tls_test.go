package faults_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/internal/redistest"
)

// tier over TLS: two replicas whose go-redis clients trust the CA that
// the test generated; Get, Set, Delete and the invalidation subscription
// all go over TLS (the server accepts nothing else).
func TestTLS(t *testing.T) {
	srv := redistest.StartTLS(t)
	connect := func() *redis.Client {
		// What a user writes: the TLS configuration on the client.
		c := redis.NewClient(&redis.Options{
			Addr:                  srv.Addr(),
			TLSConfig:             srv.TLSConfig(), // RootCAs: the CA; ServerName: 127.0.0.1
			ContextTimeoutEnabled: true,
		})
		t.Cleanup(func() { c.Close() })
		return c
	}
	a := newCache(t, connect(), tier.Options{Namespace: "tls"})
	b := newCache(t, connect(), tier.Options{Namespace: "tls"})
	ctx := context.Background()
	eventually(t, "b uses its near tier over TLS", func() bool { return usesNear(b, "warm") })
	if r, err := a.Fetch(ctx, "k", valueOf); err != nil || r.Source != tier.SourceLoad {
		t.Fatalf("a: %+v, %v", r, err)
	}
	if r, err := b.Fetch(ctx, "k", valueOf); err != nil || r.Value != "v:k" || r.Source != tier.SourceFar {
		t.Fatalf("b: %+v, %v; want a's load from Redis", r, err)
	}
	if r, _ := b.Fetch(ctx, "k", valueOf); r.Source != tier.SourceNear {
		t.Fatalf("b's second read from %v, want near", r.Source)
	}
	if err := a.Set(ctx, "k", "over tls"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sees a's Set through the invalidation", func() bool {
		r, err := b.Fetch(ctx, "k", valueOf)
		return err == nil && r.Value == "over tls"
	})
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sees a's Delete", func() bool {
		r, err := b.Fetch(ctx, "k", tier.LoaderFunc[string](func(context.Context, string) (string, error) { return "reloaded", nil }))
		return err == nil && r.Value == "reloaded"
	})
	for name, c := range map[string]*tier.Cache[string]{"a": a, "b": b} {
		if st := c.Stats(); st.FarErrors != 0 {
			t.Errorf("%s: %d far errors over TLS", name, st.FarErrors)
		}
	}
}
