package tier

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/codec"
	"github.com/tier-cache/tier/local"
)

// badIDCodec is a codec whose ID is reserved.
type badIDCodec struct{ codec.JSON }

func (badIDCodec) ID() uint8 { return 0 }

// Every field's bad values are refused by New with an error that matches
// ErrInvalidOptions, starts with "tier:" and names the field; New makes
// no network call before it refuses.
func TestOptionsValidation(t *testing.T) {
	// A client of a server that does not exist: validation must not need it.
	unreachable := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	t.Cleanup(func() { unreachable.Close() })
	nan, inf := math.NaN(), math.Inf(1)
	cases := []struct {
		name   string
		opts   Options
		fields []string // what the error names
	}{
		{"NearCapacity -1", Options{Near: NearOptions{Capacity: -1}}, []string{"Near.Capacity"}},
		{"NearTTL negative", Options{Near: NearOptions{TTL: -time.Second}}, []string{"Near.TTL"}},
		{"NearTTL 1µs", Options{Near: NearOptions{TTL: time.Microsecond}}, []string{"Near.TTL"}},
		{"FarTTL negative", Options{FarTTL: -1}, []string{"FarTTL"}},
		{"FarTTL 1µs", Options{FarTTL: time.Microsecond}, []string{"FarTTL"}},
		{"NotFoundTTL negative", Options{NotFoundTTL: -1}, []string{"NotFoundTTL"}},
		{"NotFoundTTL 1ns", Options{NotFoundTTL: 1}, []string{"NotFoundTTL"}},
		{"Jitter 1", Options{Jitter: 1}, []string{"Jitter"}},
		{"Jitter 1.5", Options{Jitter: 1.5}, []string{"Jitter"}},
		{"Jitter -0.1", Options{Jitter: -0.1}, []string{"Jitter"}},
		{"Jitter -2", Options{Jitter: -2}, []string{"Jitter"}},
		{"Jitter NaN", Options{Jitter: nan}, []string{"Jitter"}},
		{"Jitter +Inf", Options{Jitter: inf}, []string{"Jitter"}},
		{"Jitter -Inf", Options{Jitter: -inf}, []string{"Jitter"}},
		{"FarTimeout negative", Options{FarTimeout: -1}, []string{"FarTimeout"}},
		{"FarTimeout 1ns", Options{FarTimeout: 1}, []string{"FarTimeout"}},
		{"FarTimeout 999µs", Options{FarTimeout: time.Millisecond - time.Microsecond}, []string{"FarTimeout"}},
		{"LoadTimeout negative", Options{LoadTimeout: -1}, []string{"LoadTimeout"}},
		{"LoadTimeout 1µs", Options{LoadTimeout: time.Microsecond}, []string{"LoadTimeout"}},
		{"WaitForLoads negative", Options{Redis: unreachable, WaitForLoads: -1}, []string{"WaitForLoads"}},
		{"WaitForLoads over LoadTimeout", Options{Redis: unreachable, WaitForLoads: time.Minute, LoadTimeout: time.Second},
			[]string{"WaitForLoads", "LoadTimeout"}},
		{"WaitForLoads without Redis", Options{WaitForLoads: time.Second}, []string{"Redis", "WaitForLoads"}},
		{"Refresh.Ahead negative", Options{Refresh: RefreshOptions{Ahead: -0.1}}, []string{"Refresh.Ahead"}},
		{"Refresh.Ahead 1", Options{Refresh: RefreshOptions{Ahead: 1}}, []string{"Refresh.Ahead"}},
		{"Refresh.Ahead NaN", Options{Refresh: RefreshOptions{Ahead: nan}}, []string{"Refresh.Ahead"}},
		{"Refresh.Ahead +Inf", Options{Refresh: RefreshOptions{Ahead: inf}}, []string{"Refresh.Ahead"}},
		{"Refresh.Ahead -Inf", Options{Refresh: RefreshOptions{Ahead: -inf}}, []string{"Refresh.Ahead"}},
		{"Refresh.StaleGrace negative", Options{Refresh: RefreshOptions{StaleGrace: -1}}, []string{"Refresh.StaleGrace"}},
		{"Refresh.SoftTimeout negative", Options{Refresh: RefreshOptions{StaleGrace: time.Second, SoftTimeout: -1}},
			[]string{"Refresh.SoftTimeout"}},
		{"Refresh.SoftTimeout without StaleGrace", Options{Refresh: RefreshOptions{SoftTimeout: time.Second}},
			[]string{"Refresh.SoftTimeout", "Refresh.StaleGrace"}},
		{"Invalidation.HealthInterval negative", Options{Invalidation: InvalidationOptions{HealthInterval: -1}},
			[]string{"Invalidation.HealthInterval"}},
		{"Invalidation.HealthInterval 1µs", Options{Invalidation: InvalidationOptions{HealthInterval: time.Microsecond}},
			[]string{"Invalidation.HealthInterval"}},
		{"Invalidation.DegradedNearTTL -2", Options{Invalidation: InvalidationOptions{DegradedNearTTL: -2}},
			[]string{"Invalidation.DegradedNearTTL"}},
		{"Invalidation.Sharded without Redis", Options{Invalidation: InvalidationOptions{Sharded: true}},
			[]string{"Redis", "Invalidation.Sharded"}},
		{"Invalidation.WatchExternalWrites without Redis", Options{Invalidation: InvalidationOptions{WatchExternalWrites: true}},
			[]string{"Redis", "Invalidation.WatchExternalWrites"}},
		{"Invalidation.WatchExternalWrites with Disabled",
			Options{Redis: unreachable, Invalidation: InvalidationOptions{WatchExternalWrites: true, Disabled: true}},
			[]string{"Invalidation.WatchExternalWrites", "Invalidation.Disabled"}},
		{"Invalidation.WatchExternalWrites with Sharded",
			Options{Redis: unreachable, Invalidation: InvalidationOptions{WatchExternalWrites: true, Sharded: true}},
			[]string{"Invalidation.WatchExternalWrites", "Invalidation.Sharded"}},
		{"Near.MaxBytes -1", Options{Near: NearOptions{MaxBytes: -1}}, []string{"Near.MaxBytes"}},
		{"Values.CompressAbove -1", Options{Values: ValueOptions{CompressAbove: -1}}, []string{"Values.CompressAbove"}},
		{"Values.MaxBytes -1", Options{Values: ValueOptions{MaxBytes: -1}}, []string{"Values.MaxBytes"}},
		{"Values.Codec with a reserved ID", Options{Redis: unreachable, Values: ValueOptions{Codec: badIDCodec{}}},
			[]string{"Values.Codec"}},
		{"Namespace with a newline", Options{Namespace: "app\nusers"}, []string{"Namespace"}},
		{"Namespace with a NUL", Options{Namespace: "app\x00"}, []string{"Namespace"}},
		{"Namespace too long", Options{Namespace: strings.Repeat("n", 257)}, []string{"Namespace"}},
		{"Redis without ContextTimeoutEnabled", Options{Redis: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})},
			[]string{"ContextTimeoutEnabled"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, ok := tc.opts.Redis.(*redis.Client); ok && c != unreachable {
				defer c.Close()
			}
			c, err := New[string](tc.opts)
			if err == nil {
				c.Close()
				t.Fatal("New accepted invalid options")
			}
			if !errors.Is(err, ErrInvalidOptions) || !strings.HasPrefix(err.Error(), "tier:") {
				t.Fatalf("err = %v, want ErrInvalidOptions, starting with tier:", err)
			}
			for _, f := range tc.fields {
				if !strings.Contains(err.Error(), f) {
					t.Fatalf("err = %v, want it to name %s", err, f)
				}
			}
		})
	}
}

// The edges of the valid ranges are accepted.
func TestOptionsAccepted(t *testing.T) {
	_, client, _ := newMiniredis(t)
	for name, opts := range map[string]Options{
		"zero":                           {},
		"Jitter -1":                      {Jitter: -1},
		"Jitter 0.99":                    {Jitter: 0.99},
		"Refresh.Ahead 0.99":             {Refresh: RefreshOptions{Ahead: 0.99}},
		"millisecond durations":          {Near: NearOptions{TTL: time.Millisecond}, FarTTL: time.Millisecond, NotFoundTTL: time.Millisecond, LoadTimeout: time.Millisecond},
		"DegradedNearTTL -1":             {Redis: client, Invalidation: InvalidationOptions{DegradedNearTTL: -1}},
		"WaitForLoads = LoadTimeout":     {Redis: client, WaitForLoads: time.Second, LoadTimeout: time.Second},
		"SoftTimeout with StaleGrace":    {Refresh: RefreshOptions{StaleGrace: time.Second, SoftTimeout: time.Millisecond}},
		"Namespace with spaces, unicode": {Redis: client, Namespace: "my app ключ {x}"},
		"Namespace of 256 bytes":         {Redis: client, Namespace: strings.Repeat("n", 256)},
	} {
		t.Run(name, func(t *testing.T) {
			if opts.FarTimeout == 0 && opts.Redis == nil {
				opts.FarTimeout = time.Millisecond // the smallest allowed
			}
			c := newCache[string](t, opts)
			if v, err := c.Get(context.Background(), "k", constLoader("v")); err != nil || v != "v" {
				t.Fatalf("Get = %q, %v", v, err)
			}
		})
	}
}

// Jitter -1 means none: every TTL is exactly the one configured.
func TestJitterMinusOneMeansNone(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	c := newCache[int](t, Options{Redis: client, Near: NearOptions{TTL: 100 * time.Second}, FarTTL: 100 * time.Second, Jitter: -1, Clock: clock})
	ctx := context.Background()
	for i, k := range []string{"a", "b", "c", "d", "e"} {
		if err := c.Set(ctx, k, i); err != nil {
			t.Fatal(err)
		}
		if ttl := m.TTL("tier:" + k); ttl != 100*time.Second {
			t.Fatalf("Redis TTL without jitter = %v, want 100s", ttl)
		}
	}
	clock.Advance(100*time.Second - time.Nanosecond)
	if n := c.near.Len(); n != 5 {
		t.Fatalf("%d near copies left just before NearTTL, want 5", n)
	}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if _, ok := c.near.Peek(k); !ok {
			t.Fatalf("%s: the near copy expired before NearTTL", k)
		}
	}
	clock.Advance(time.Nanosecond)
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if _, ok := c.near.Peek(k); ok {
			t.Fatalf("%s: the near copy outlived NearTTL", k)
		}
	}
}

// A Namespace with a colon is the key prefix and names the channel as
// documented: "app:users:k" and "app:users:invalidate".
func TestNamespaceWithColon(t *testing.T) {
	m, client, _ := newMiniredis(t)
	ctx := context.Background()
	sub := client.Subscribe(ctx, "app:users:invalidate")
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	a := newCache[string](t, Options{Redis: client, Namespace: "app:users"})
	b := newCache[string](t, Options{Redis: client, Namespace: "app:users"})
	bEvents := events(b)
	if err := a.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if !m.Exists("app:users:k") {
		t.Fatalf("Redis keys %q, want app:users:k", m.Keys())
	}
	msgs := sub.Channel()
	select {
	case <-msgs:
	case <-time.After(patience):
		t.Fatal("no message on app:users:invalidate after a Set")
	}
	await(t, bEvents, "keys")
	if r, err := b.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != "v" || r.Source != SourceFar {
		t.Fatalf("another replica reads %+v, %v", r, err)
	}
	// What an operator types: PUBLISH app:users:invalidate k.
	if err := client.Publish(ctx, "app:users:invalidate", "k").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	if _, ok := b.near.Peek("k"); ok {
		t.Fatal("an operator's message on app:users:invalidate did not drop the key")
	}
}

// funcHolder is a value the codec cannot encode.
type funcHolder struct {
	Name string
	F    func()
}

// A type the codec cannot encode fails New at once with Redis (and with
// Near.MaxBytes, which encodes to weigh), with an error naming the type;
// without either, it is cached as it is.
func TestUnencodableType(t *testing.T) {
	_, client, _ := newMiniredis(t)
	check := func(t *testing.T, err error, typ string) {
		t.Helper()
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), typ) || !strings.Contains(err.Error(), "cannot be stored") {
			t.Fatalf("New = %v, want ErrInvalidOptions naming %s and saying it cannot be stored", err, typ)
		}
	}
	_, err := New[func()](Options{Redis: client})
	check(t, err, "func()")
	_, err = New[funcHolder](Options{Redis: client})
	check(t, err, "funcHolder")
	_, err = New[chan int](Options{Near: NearOptions{MaxBytes: 1 << 20}})
	check(t, err, "chan int")

	c := newCache[func() string](t, Options{})
	f, err := c.Get(context.Background(), "k", LoaderFunc[func() string](func(context.Context, string) (func() string, error) {
		return func() string { return "called" }, nil
	}))
	if err != nil || f() != "called" {
		t.Fatalf("Get of a func in a near-only cache = %v", err)
	}
	if r, err := c.Fetch(context.Background(), "k", LoaderFunc[func() string](func(context.Context, string) (func() string, error) {
		return nil, errors.New("loaded a cached key")
	})); err != nil || r.Source != SourceNear || r.Value() != "called" {
		t.Fatalf("Fetch = %v from %v, want the func from the near tier", err, r.Source)
	}
}

// TTLs of centuries mean "practically forever", never "already expired":
// the arithmetic saturates. Values are cached near and far, the Redis copy
// with a TTL of its own (not "never"), with the fake clock (which reads
// the calendar) and the system one.
func TestCenturiesOfTTL(t *testing.T) {
	const centuries = 290 * 365 * 24 * time.Hour
	for name, clock := range map[string]local.Clock{"fake clock": newFakeClock(), "system clock": nil} {
		t.Run(name, func(t *testing.T) {
			m, client, _ := newMiniredis(t)
			ctx := context.Background()
			c := newCache[string](t, Options{Redis: client, Near: NearOptions{TTL: centuries}, FarTTL: centuries, Clock: clock})
			if r, err := c.Fetch(ctx, "loaded", constLoader("v")); err != nil || r.Value != "v" {
				t.Fatalf("Fetch = %+v, %v", r, err)
			}
			if err := c.Set(ctx, "set", "v"); err != nil {
				t.Fatalf("Set = %v", err)
			}
			for _, k := range []string{"loaded", "set"} {
				if r, err := c.Fetch(ctx, k, constLoader("reloaded")); err != nil || r.Value != "v" || r.Source != SourceNear {
					t.Fatalf("%s: Fetch = %+v, %v; want v from the near tier", k, r, err)
				}
				if ttl := m.TTL("tier:" + k); ttl <= 0 {
					t.Fatalf("%s: Redis TTL = %v, want one (not never, not gone)", k, ttl)
				}
				c.DropNear(k)
				if r, err := c.Fetch(ctx, k, constLoader("reloaded")); err != nil || r.Value != "v" || r.Source != SourceFar {
					t.Fatalf("%s: Fetch after DropNear = %+v, %v; want v from Redis", k, r, err)
				}
			}
			nearOnly := newCache[string](t, Options{Near: NearOptions{TTL: centuries}, Clock: clock})
			if err := nearOnly.Set(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
			if r, err := nearOnly.Fetch(ctx, "k", constLoader("reloaded")); err != nil || r.Source != SourceNear {
				t.Fatalf("near-only: Fetch = %+v, %v; want v from the near tier", r, err)
			}
		})
	}
}

// FarTTL of MaxInt64, with StaleGrace on top, neither overflows into an
// expired value nor makes Set fail.
func TestMaxFarTTLWithStaleGrace(t *testing.T) {
	_, client, _ := newMiniredis(t)
	ctx := context.Background()
	c := newCache[string](t, Options{Redis: client, FarTTL: math.MaxInt64, Refresh: RefreshOptions{StaleGrace: time.Hour, Ahead: 0.5}})
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set = %v", err)
	}
	if r, err := c.Fetch(ctx, "k", constLoader("reloaded")); err != nil || r.Value != "v" || r.Source != SourceNear || r.Stale {
		t.Fatalf("Fetch = %+v, %v; want v, fresh from the near tier", r, err)
	}
	if v, err := c.Get(ctx, "loaded", constLoader("l")); err != nil || v != "l" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}
