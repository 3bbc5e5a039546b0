package tier

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
)

// Every string is a key: stored, read by another replica, deleted, and
// the deletion reaches the other replica's near tier, on miniredis and on
// a real redis-server.
func TestOddKeys(t *testing.T) {
	keys := []string{
		"", " ", "key with spaces", "line1\nline2", "tab\there", `say "hi"`, "'single'",
		"{user}:1", "{", "}", "*", "=", "==x", "\x00nul", "ключ", "键", "🔑",
		"a:b:c", strings.Repeat("k", 64<<10),
	}
	backends := map[string]func(t *testing.T) redis.UniversalClient{
		"miniredis": func(t *testing.T) redis.UniversalClient {
			_, c, _ := newMiniredis(t)
			return c
		},
		"redis-server": func(t *testing.T) redis.UniversalClient {
			return redistest.Start(t).Client(t)
		},
	}
	for name, client := range backends {
		t.Run(name, func(t *testing.T) {
			c := client(t)
			a := newCache[string](t, Options{Redis: c})
			b := newCache[string](t, Options{Redis: c})
			bEvents := events(b)
			ctx := context.Background()
			for _, k := range keys {
				short := k
				if len(short) > 20 {
					short = short[:20] + "..."
				}
				if err := a.Set(ctx, k, "v:"+k); err != nil {
					t.Fatalf("Set(%q): %v", short, err)
				}
				await(t, bEvents, "keys")
				if r, err := b.Fetch(ctx, k, constLoader("loaded")); err != nil || r.Value != "v:"+k || r.Source != SourceFar {
					t.Fatalf("%q: other replica read %q from %v, %v", short, r.Value, r.Source, err)
				}
				if err := a.Delete(ctx, k); err != nil {
					t.Fatalf("Delete(%q): %v", short, err)
				}
				await(t, bEvents, "keys")
				if r, _ := b.Fetch(ctx, k, constLoader("loaded")); r.Value != "loaded" || r.Source != SourceLoad {
					t.Fatalf("%q: after Delete the other replica read %q from %v", short, r.Value, r.Source)
				}
			}
		})
	}
}
