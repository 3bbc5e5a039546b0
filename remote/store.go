package remote

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrContextTimeoutDisabled is returned by [New] for a go-redis client built
// without ContextTimeoutEnabled. Such a client ignores context deadlines on
// its sockets and waits out its own ReadTimeout when Redis stalls, so
// [Options.Timeout] could not bound operations.
var ErrContextTimeoutDisabled = errors.New("remote: the client ignores context deadlines; build it with ContextTimeoutEnabled: true")

// Store is the far tier: values kept in Redis under a namespace prefix.
//
// Every method bounds its work by [Options.Timeout] and the caller's
// context, and reports a missing key as a miss, never as an error. A Store
// is safe for concurrent use; it holds no connection of its own and needs
// no closing: the caller owns the client and closes it.
type Store struct {
	client  redis.UniversalClient
	prefix  string // namespace + ":"
	timeout time.Duration

	channel  string
	publish  string // "PUBLISH" or "SPUBLISH"; "" without a channel
	announce func(keys []string) ([][]byte, error)
	// scriptArgs ends the ARGV of a write script: publish and channel
	// (see announceSource), made interface values once, not on each write.
	scriptArgs [2]any

	// singleNode is true when all keys live on one server, so that one
	// command or script may name any of them. On a cluster or a ring, a
	// multi-key command spanning slots fails or reaches the wrong shard.
	singleNode bool

	// announceAfter is true where a script on the key's server cannot
	// reach the channel's subscribers: sharded pub/sub on a cluster (the
	// shard channel may live on another node) and a ring (whose servers
	// share no pub/sub). The announcement then follows the write.
	announceAfter bool
}

// New returns a Store that keeps its entries in Redis through client, which
// may be a *redis.Client (standalone or Sentinel failover), a
// *redis.ClusterClient or a *redis.Ring. The client must be built with
// ContextTimeoutEnabled: true, or New returns [ErrContextTimeoutDisabled].
// New makes no network call.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	ctxTimeouts, singleNode, ring := true, false, false
	switch c := client.(type) {
	case nil:
		return nil, errors.New("remote: client is nil")
	case *redis.Client:
		if c == nil {
			return nil, errors.New("remote: client is nil")
		}
		ctxTimeouts, singleNode = c.Options().ContextTimeoutEnabled, true
	case *redis.ClusterClient:
		if c == nil {
			return nil, errors.New("remote: client is nil")
		}
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		if c == nil {
			return nil, errors.New("remote: client is nil")
		}
		ctxTimeouts, ring = c.Options().ContextTimeoutEnabled, true
	}
	// Another client type is a wrapper we cannot inspect: trust it with
	// deadlines, and use only commands that are correct however keys are
	// spread.
	if !ctxTimeouts {
		return nil, ErrContextTimeoutDisabled
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{
		client:     client,
		prefix:     o.Namespace + ":",
		timeout:    o.Timeout,
		channel:    o.Channel,
		announce:   o.Announce,
		singleNode: singleNode,
	}
	if s.channel != "" {
		s.publish = "PUBLISH"
		if o.Sharded {
			s.publish = "SPUBLISH"
		}
		s.announceAfter = ring || o.Sharded && !singleNode
	}
	s.scriptArgs = [2]any{"", ""} // announced after the script, or not at all
	if s.publish != "" && !s.announceAfter {
		s.scriptArgs = [2]any{s.publish, s.channel}
	}
	return s, nil
}

// Key returns the Redis key under which the cache key key is stored:
// "<namespace>:<key>". Any string is a valid key, including the empty one.
func (s *Store) Key(key string) string {
	return s.prefix + key
}

// keys returns the Redis keys of keys, cut from one string: one
// allocation for a batch rather than one a key.
func (s *Store) keys(keys []string) []string {
	n := 0
	for _, k := range keys {
		n += len(s.prefix) + len(k)
	}
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		b.WriteString(s.prefix)
		b.WriteString(k)
	}
	all, at := b.String(), 0
	rks := make([]string, len(keys))
	for i, k := range keys {
		end := at + len(s.prefix) + len(k)
		rks[i], at = all[at:end], end
	}
	return rks
}

// bound returns ctx limited to the Store's timeout.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Get reads key with one GET. A missing key is a miss: (nil, false, nil).
// The caller owns the returned bytes.
func (s *Store) Get(ctx context.Context, key string) ([]byte, bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	value, err := s.client.Get(ctx, s.Key(key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("remote: get %q: %w", key, withContext(ctx, err))
	}
	return value, true, nil
}

// GetMany reads keys in one round trip (one MGET on a single server; on a
// cluster, GETs pipelined, one round trip per node touched) and returns
// their values in the order of keys, nil for a missing key. On a single
// server a key that holds another type than a string also reads as nil,
// as MGET answers; Get reports it as an error.
func (s *Store) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	values := make([][]byte, len(keys))
	if s.singleNode {
		vals, err := s.client.MGet(ctx, s.keys(keys)...).Result()
		if err != nil {
			return nil, fmt.Errorf("remote: get %s: %w", describe(keys), withContext(ctx, err))
		}
		// The values are copied into one buffer, each capped at its end
		// so that an append to one cannot reach the next.
		n := 0
		for _, v := range vals {
			if str, ok := v.(string); ok { // nil: missing, or not a string
				n += len(str)
			}
		}
		buf := make([]byte, 0, n)
		for i, v := range vals {
			if str, ok := v.(string); ok {
				at := len(buf)
				buf = append(buf, str...)
				values[i] = buf[at:len(buf):len(buf)]
			}
		}
		return values, nil
	}
	gets := make([]*redis.StringCmd, len(keys))
	pipe := s.client.Pipeline()
	for i, k := range keys {
		gets[i] = pipe.Get(ctx, s.Key(k))
	}
	_, _ = pipe.Exec(ctx) // errors are read from each command below
	for i, get := range gets {
		value, err := get.Bytes()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, fmt.Errorf("remote: get %q: %w", keys[i], withContext(ctx, err))
		default:
			values[i] = value
		}
	}
	return values, nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("remote: ping: %w", withContext(ctx, err))
	}
	return nil
}

// withContext makes err match the context's error when the context has
// ended, so that callers can test for context.Canceled or
// context.DeadlineExceeded whatever form the client gave the failure.
func withContext(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if d, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(d) {
		// The socket's deadline is the context's: a read can time out a
		// moment before the context's own timer marks it done.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// ceilMillis rounds d up to a whole millisecond, so that a positive TTL never
// becomes zero (no expiry) or is cut short.
func ceilMillis(d time.Duration) time.Duration {
	if r := d % time.Millisecond; r != 0 && d < math.MaxInt64-time.Millisecond {
		d += time.Millisecond - r
	}
	return d
}

// describe names a batch of keys in an error: the first, quoted, and how
// many others there are.
func describe(keys []string) string {
	if len(keys) == 1 {
		return fmt.Sprintf("%q", keys[0])
	}
	return fmt.Sprintf("%q and %d more", keys[0], len(keys)-1)
}

// Diagnose tells why a single server does not answer: it dials the
// server's address and returns the dial's error (such as "connection
// refused"), or nil if the dial succeeds or the client is not a single
// server. A go-redis operation that fails while its pool retries dials
// reports only its deadline; this names the cause.
func (s *Store) Diagnose(ctx context.Context) error {
	c, ok := s.client.(*redis.Client)
	if !ok {
		return nil
	}
	o := c.Options()
	dial := o.Dialer
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, o.Network, o.Addr)
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}
