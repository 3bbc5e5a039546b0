package remote

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
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
	return s, nil
}

// Key returns the Redis key under which the cache key key is stored:
// "<namespace>:<key>". Any string is a valid key, including the empty one.
func (s *Store) Key(key string) string {
	return s.prefix + key
}

func (s *Store) keys(keys []string) []string {
	rks := make([]string, len(keys))
	for i, k := range keys {
		rks[i] = s.Key(k)
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
		for i, v := range vals {
			if str, ok := v.(string); ok { // nil: missing, or not a string
				values[i] = []byte(str)
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

// Set stores value under key for ttl (rounded up to a whole millisecond)
// and, with a Channel, announces key there, in one Lua script: on a single
// server and on a cluster with classic pub/sub, the write and its
// announcement happen together or not at all, so no failure can leave a
// write that subscribers never hear of, and announcements arrive in the
// order of the writes. A user who may write but not publish gets an error
// and no write (on Redis 7 and later, where scripts can check the ACL).
// On a cluster with Sharded, where the shard channel may live on another
// node than key, and on a ring, whose servers share no pub/sub, the
// announcement follows the script in a second round trip; a failure
// between them is returned.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("remote: set %q: ttl %v is not positive", key, ttl)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.write(ctx, setScript, []string{key}, value, ceilMillis(ttl).Milliseconds()); err != nil {
		return fmt.Errorf("remote: set %q: %w", key, withContext(ctx, err))
	}
	return nil
}

// Delete removes keys and, with a Channel, announces them there, as Set
// does: one script on a single server; on a cluster one script per key
// (each announcing its own key), pipelined, one round trip per node
// touched. Where the announcement follows the write (see Set), it is one
// announcement of all keys. Missing keys are not an error.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.write(ctx, deleteScript, keys); err != nil {
		return fmt.Errorf("remote: delete %s: %w", describe(keys), withContext(ctx, err))
	}
	return nil
}

// write runs script over keys with args, then the announcement of keys:
// inside the script where keys and channel may share a node, after it
// otherwise.
func (s *Store) write(ctx context.Context, script *redis.Script, keys []string, args ...any) error {
	announceAfter := s.announceAfter
	// run sends script for keys to c: with EVALSHA (falling back to EVAL)
	// alone, with EVAL in a pipeline, whose replies are read only later.
	run := func(c redis.Scripter, keys []string) (*redis.Cmd, error) {
		argv := append([]any(nil), args...)
		if s.publish == "" || announceAfter {
			argv = append(argv, "", "")
		} else {
			frames, err := s.announce(keys)
			if err != nil {
				return nil, err
			}
			argv = append(argv, s.publish, s.channel)
			for _, f := range frames {
				argv = append(argv, f)
			}
		}
		if _, piped := c.(redis.Pipeliner); piped {
			return script.Eval(ctx, c, s.keys(keys), argv...), nil
		}
		return script.Run(ctx, c, s.keys(keys), argv...), nil
	}
	if s.singleNode || len(keys) == 1 {
		cmd, err := run(s.client, keys)
		if err != nil {
			return err
		}
		if err := cmd.Err(); err != nil {
			return err
		}
	} else {
		cmds := make([]*redis.Cmd, len(keys))
		pipe := s.client.Pipeline()
		for i, k := range keys {
			var err error
			if cmds[i], err = run(pipe, []string{k}); err != nil {
				return err
			}
		}
		_, _ = pipe.Exec(ctx) // errors are read from each command below
		for _, c := range cmds {
			if err := c.Err(); err != nil {
				return err
			}
		}
	}
	if !announceAfter {
		return nil
	}
	frames, err := s.announce(keys)
	if err != nil {
		return err
	}
	// Through the client's own methods, which route by the channel, to
	// the server its subscribers are on (a pipeline would not).
	for _, f := range frames {
		if s.publish == "SPUBLISH" {
			err = s.client.SPublish(ctx, s.channel, f).Err()
		} else {
			err = s.client.Publish(ctx, s.channel, f).Err()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// The write scripts end their ARGV with the publish command ("" for none),
// the channel, and the payloads. On Redis 7 and later they first check
// that the user may publish there, so that a user who may not gets no
// write either; older servers lack redis.acl_check_cmd and skip the check.
const announceSource = `
local function announce(from)
	local cmd, channel = ARGV[from], ARGV[from + 1]
	if cmd == '' then return nil end
	if redis.acl_check_cmd ~= nil and not redis.acl_check_cmd(cmd, channel, '') then
		return 'NOPERM tier: this user may not ' .. cmd .. ' to ' .. channel
	end
	return function()
		for i = from + 2, #ARGV do redis.call(cmd, channel, ARGV[i]) end
	end
end
`

// setScript sets KEYS[1] to ARGV[1] for ARGV[2] milliseconds, then
// announces it.
var setScript = redis.NewScript(announceSource + `
local publish = announce(3)
if type(publish) == 'string' then return redis.error_reply(publish) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if publish then publish() end
return 1`)

// deleteScript unlinks KEYS, a thousand keys per UNLINK so as not to
// overflow Lua's stack, then announces them.
var deleteScript = redis.NewScript(announceSource + `
local publish = announce(1)
if type(publish) == 'string' then return redis.error_reply(publish) end
for i = 1, #KEYS, 1000 do
	redis.call('UNLINK', unpack(KEYS, i, math.min(i + 999, #KEYS)))
end
if publish then publish() end
return 1`)

// Add stores value under key for ttl only if key is absent (SET NX), and
// reports whether it stored it.
func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("remote: add %q: ttl %v is not positive", key, ttl)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ok, err := s.client.SetNX(ctx, s.Key(key), value, ceilMillis(ttl)).Result()
	if err != nil {
		return false, fmt.Errorf("remote: add %q: %w", key, withContext(ctx, err))
	}
	return ok, nil
}

// AddMany is [Store.Add] of values[i] under keys[i], all for ttl, in one
// round trip (one per cluster node touched). It reports which it stored.
func (s *Store) AddMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) ([]bool, error) {
	if len(keys) != len(values) {
		return nil, fmt.Errorf("remote: add: %d keys and %d values", len(keys), len(values))
	}
	if len(keys) == 0 {
		return nil, nil
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("remote: add %s: ttl %v is not positive", describe(keys), ttl)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cmds := make([]*redis.BoolCmd, len(keys))
	pipe := s.client.Pipeline()
	for i, k := range keys {
		cmds[i] = pipe.SetNX(ctx, s.Key(k), values[i], ceilMillis(ttl))
	}
	_, _ = pipe.Exec(ctx) // errors are read from each command below
	added := make([]bool, len(keys))
	for i, c := range cmds {
		ok, err := c.Result()
		if err != nil {
			return nil, fmt.Errorf("remote: add %q: %w", keys[i], withContext(ctx, err))
		}
		added[i] = ok
	}
	return added, nil
}

// SwapItem is one compare-and-set of [Store.SwapMany]: store Value under
// Key for TTL if Key holds Old; an empty Value deletes Key instead.
type SwapItem struct {
	Key        string
	Old, Value []byte
	TTL        time.Duration
}

// Swap stores value under key for ttl only if key still holds old, in one
// script, and reports whether it did; an empty value deletes key instead.
// It is the compare-and-set behind read-through leases: a load writes its
// value only over the lease it put under the key, which a Set or Delete
// made meanwhile has replaced or removed.
func (s *Store) Swap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if len(value) > 0 && ttl <= 0 {
		return false, fmt.Errorf("remote: swap %q: ttl %v is not positive", key, ttl)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := swapScript.Run(ctx, s.client, []string{s.Key(key)}, old, value, ceilMillis(ttl).Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("remote: swap %q: %w", key, withContext(ctx, err))
	}
	return n == 1, nil
}

// SwapMany is [Store.Swap] for many keys, in one round trip (one per
// cluster node touched).
func (s *Store) SwapMany(ctx context.Context, items []SwapItem) error {
	if len(items) == 0 {
		return nil
	}
	for _, it := range items {
		if len(it.Value) > 0 && it.TTL <= 0 {
			return fmt.Errorf("remote: swap %q: ttl %v is not positive", it.Key, it.TTL)
		}
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cmds := make([]*redis.Cmd, len(items))
	pipe := s.client.Pipeline()
	for i, it := range items {
		cmds[i] = swapScript.Eval(ctx, pipe, []string{s.Key(it.Key)}, it.Old, it.Value, ceilMillis(it.TTL).Milliseconds())
	}
	_, _ = pipe.Exec(ctx) // errors are read from each command below
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return fmt.Errorf("remote: swap %q: %w", items[i].Key, withContext(ctx, err))
		}
	}
	return nil
}

// swapScript replaces or deletes a key only while it holds an expected
// value.
var swapScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) return 1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)

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
