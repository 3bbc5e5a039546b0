package suite

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	gocache "github.com/go-redis/cache/v9"

	"github.com/tier-cache/tier"
)

// farTimeout is generous: a loaded machine must not turn a far hit into a
// timeout and a load.
const farTimeout = 2 * time.Second

var farUser = User{ID: 1, Name: "Ada Lovelace", Email: "ada@example.com", Flags: 7}

// failLoader fails a benchmark that was meant to be answered by Redis.
func failLoader(b *testing.B) tier.LoaderFunc[User] {
	return func(context.Context, string) (User, error) {
		b.Error("a far hit called the loader")
		return User{}, tier.ErrNotFound
	}
}

// newTier returns a cache on the server with the given namespace.
func newTier(env *Env, ns string, mod func(*tier.Options)) (*tier.Cache[User], error) {
	o := tier.Options{Redis: env.Client(), Namespace: ns, FarTimeout: farTimeout, DisableJitter: true}
	if mod != nil {
		mod(&o)
	}
	return tier.New[User](o)
}

func farGroups() []Group {
	ctx := context.Background()
	hit := Group{
		Section: "Far hit", ID: "far-hit", Redis: true, Metrics: timedMetrics,
		Case: "one key, near miss, Redis hit",
	}
	hit.Impls = []Impl{
		{Name: "tier", Role: Tier, Note: "DropNear, then Fetch", Setup: func(env *Env) (Runner, error) {
			c, err := newTier(env, "far", nil)
			if err != nil {
				return Runner{}, err
			}
			if err := c.Set(ctx, "user:1", farUser); err != nil {
				return Runner{}, err
			}
			return Runner{Close: func() { c.Close() }, Bench: func(b *testing.B) {
				loader := failLoader(b)
				b.ReportAllocs()
				for b.Loop() {
					c.DropNear("user:1") // every read misses the near tier
					r, err := c.Fetch(ctx, "user:1", loader)
					if err != nil || r.Source != tier.SourceFar {
						b.Fatalf("%v from %v, %v", r.Value, r.Source, err)
					}
				}
			}}, nil
		}},
		{Name: "go-redis/cache", Role: Peer, Note: "Get, no local cache", Setup: func(env *Env) (Runner, error) {
			c := gocache.New(&gocache.Options{Redis: env.Client()})
			if err := c.Set(&gocache.Item{Ctx: ctx, Key: "gc:user:1", Value: farUser, TTL: ttl}); err != nil {
				return Runner{}, err
			}
			return Runner{Bench: func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					var u User
					if err := c.Get(ctx, "gc:user:1", &u); err != nil || u.ID != 1 {
						b.Fatal(u, err)
					}
				}
			}}, nil
		}},
		{Name: "go-redis GET", Role: Floor, Note: "tier's bytes, not decoded", Setup: func(env *Env) (Runner, error) {
			cl := env.Client()
			if err := seedTierKey(env, "raw", "user:1"); err != nil {
				return Runner{}, err
			}
			return Runner{Bench: func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := cl.Get(ctx, "raw:user:1").Bytes(); err != nil {
						b.Fatal(err)
					}
				}
			}}, nil
		}},
		{Name: "go-redis pipeline GET+PTTL", Role: Floor, Note: "one round trip, two commands", Setup: func(env *Env) (Runner, error) {
			cl := env.Client()
			if err := seedTierKey(env, "raw", "user:1"); err != nil {
				return Runner{}, err
			}
			return Runner{Bench: func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p := cl.Pipeline()
					get := p.Get(ctx, "raw:user:1")
					p.PTTL(ctx, "raw:user:1")
					if _, err := p.Exec(ctx); err != nil {
						b.Fatal(err)
					}
					if _, err := get.Bytes(); err != nil {
						b.Fatal(err)
					}
				}
			}}, nil
		}},
		{Name: "go-redis PUBLISH", Role: Floor, Note: "no subscriber", Setup: func(env *Env) (Runner, error) {
			cl := env.Client()
			return Runner{Bench: func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := cl.Publish(ctx, "nobody", "k").Err(); err != nil {
						b.Fatal(err)
					}
				}
			}}, nil
		}},
		{Name: "RESP PING on a raw socket", Role: Floor, Note: "Redis without go-redis", Setup: func(env *Env) (Runner, error) {
			conn, err := net.Dial("tcp", env.Redis.Addr)
			if err != nil {
				return Runner{}, err
			}
			return Runner{Close: func() { conn.Close() }, Bench: func(b *testing.B) {
				r := bufio.NewReader(conn)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
						b.Fatal(err)
					}
					if line, err := r.ReadSlice('\n'); err != nil || string(line) != "+PONG\r\n" {
						b.Fatalf("%q, %v", line, err)
					}
				}
			}}, nil
		}},
		{Name: "TCP round trip", Role: Floor, Note: "1 byte to a Go echo server", Setup: func(*Env) (Runner, error) {
			return tcpEcho()
		}},
	}

	const batch = 100
	many := Group{
		Section: "Far hit", ID: "far-many", Redis: true, Metrics: timedMetrics,
		Case: strconv.Itoa(batch) + " keys, near misses, Redis hits",
	}
	keys := keyList(batch)
	many.Impls = []Impl{
		{Name: "tier", Role: Tier, Note: "DropNear, then GetMany", Setup: func(env *Env) (Runner, error) {
			c, err := newTier(env, "many", func(o *tier.Options) { o.NearCapacity = 10 * batch })
			if err != nil {
				return Runner{}, err
			}
			for i, k := range keys {
				if err := c.Set(ctx, k, userOf(i, k)); err != nil {
					return Runner{}, err
				}
			}
			return Runner{Close: func() { c.Close() }, Bench: func(b *testing.B) {
				loader := tier.BatchLoaderFunc[User](func(context.Context, []string) (map[string]User, error) {
					b.Error("far hits called the loader")
					return nil, nil
				})
				b.ReportAllocs()
				for b.Loop() {
					c.DropNear(keys...)
					m, err := c.GetMany(ctx, keys, loader)
					if err != nil || len(m) != batch {
						b.Fatal(len(m), err)
					}
				}
			}}, nil
		}},
		{Name: "go-redis MGET", Role: Floor, Note: "tier's bytes, not decoded", Setup: func(env *Env) (Runner, error) {
			cl := env.Client()
			full := make([]string, batch)
			for i, k := range keys {
				if err := seedTierKey(env, "rawmany", k); err != nil {
					return Runner{}, err
				}
				full[i] = "rawmany:" + k
			}
			return Runner{Bench: func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					vs, err := cl.MGet(ctx, full...).Result()
					if err != nil || len(vs) != batch || vs[batch-1] == nil {
						b.Fatal(len(vs), err)
					}
				}
			}}, nil
		}},
		{Name: "go-redis pipeline of 100 GETs", Role: Floor, Note: "one round trip", Setup: func(env *Env) (Runner, error) {
			cl := env.Client()
			full := make([]string, batch)
			for i, k := range keys {
				if err := seedTierKey(env, "rawmany", k); err != nil {
					return Runner{}, err
				}
				full[i] = "rawmany:" + k
			}
			return Runner{Bench: func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p := cl.Pipeline()
					for _, k := range full {
						p.Get(ctx, k)
					}
					if _, err := p.Exec(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}}, nil
		}},
	}
	return []Group{hit, many}
}

// seedTierKey has a tier cache under ns write key, so that the raw
// floors read the very bytes tier reads.
func seedTierKey(env *Env, ns, key string) error {
	c, err := newTier(env, ns, func(o *tier.Options) { o.DisableInvalidation = true })
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Set(context.Background(), key, farUser)
}

// tcpEcho is the floor of every Redis figure: one byte there and back on
// loopback, to a Go server that echoes it.
func tcpEcho() (Runner, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Runner{}, err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		l.Close()
		return Runner{}, err
	}
	return Runner{
		Close: func() { conn.Close(); l.Close() },
		Bench: func(b *testing.B) {
			buf := []byte{'x'}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := conn.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, buf); err != nil {
					b.Fatal(err)
				}
			}
		},
	}, nil
}
