package remote

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrContextTimeoutDisabled is returned by [New] for a go-redis client built
// without ContextTimeoutEnabled. Such a client ignores context deadlines on
// its sockets and waits out its own ReadTimeout (seconds) when Redis stalls,
// so [Options.Timeout] could not bound operations. Build the client with
// ContextTimeoutEnabled: true.
var ErrContextTimeoutDisabled = errors.New("remote: the client ignores context deadlines; build it with ContextTimeoutEnabled: true")

// Item is a value read from Redis, with the time it has left to live there.
type Item struct {
	// Value is the stored bytes. The caller owns them.
	Value []byte

	// TTL is the time the key had left to live in Redis when it was read,
	// to the millisecond. Zero means the key never expires, which happens
	// only when something other than a Store wrote it.
	TTL time.Duration
}

// Store is the far tier: values kept in Redis under a namespace prefix.
//
// Every method costs one network round trip (one per cluster node touched;
// the first SetNotify or DeleteNotify of a Store on a single server, two),
// bounds its work by [Options.Timeout] and the caller's context, and reports
// a missing key as a miss, never as an error. A Store is safe for concurrent
// use; it holds no connection of its own and needs no closing: the caller
// owns the client and closes it.
type Store struct {
	client  redis.UniversalClient
	ns      string
	prefix  string // ns + ":"
	timeout time.Duration

	deadlines *deadlines // bounds operations by timeout

	// singleNode is true when all keys live on one server, so one multi-key
	// command may name any of them. On a cluster or a ring, a multi-key
	// command spanning slots or shards fails or reaches the wrong shard.
	singleNode bool

	// tx says whether a write and its notice go as MULTI/EXEC or as one
	// Lua script (see SetNotify): txUnknown until the server has answered
	// a probe.
	tx atomic.Int32

	// noWriterUntil is when transactions may again send the PUBLISH to a
	// Notice.Writer channel (Unix nanoseconds): the server refused one
	// writerPause before it.
	noWriterUntil atomic.Int64
}

// The states of Store.tx.
const (
	txUnknown int32 = iota
	txMulti         // the server runs transactions for this user
	txScript        // it refused MULTI or EXEC: scripts only
)

// New returns a Store that keeps its entries in Redis through client, which
// may be a *redis.Client (standalone or Sentinel failover), a
// *redis.ClusterClient or a *redis.Ring. The client must be built with
// ContextTimeoutEnabled: true, or New returns [ErrContextTimeoutDisabled].
//
// New validates opts and fills in defaults; errors start with "remote:" and
// name the field. New makes no network call.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	var ctxTimeouts bool
	singleNode := false
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
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	default:
		// A wrapper we cannot inspect: trust it with deadlines, and use
		// only commands that are correct however keys are spread.
		ctxTimeouts = true
	}
	if !ctxTimeouts {
		return nil, ErrContextTimeoutDisabled
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Store{
		client:     client,
		ns:         o.Namespace,
		prefix:     o.Namespace + ":",
		timeout:    o.Timeout,
		deadlines:  newDeadlines(o.Timeout),
		singleNode: singleNode,
	}, nil
}

// Namespace returns the namespace the Store's keys live under.
func (s *Store) Namespace() string {
	return s.ns
}

// keys returns the Redis keys of keys.
func (s *Store) keys(keys []string) []string {
	rks := make([]string, len(keys))
	for i, k := range keys {
		rks[i] = s.Key(k)
	}
	return rks
}

// Key returns the Redis key under which the cache key key is stored:
// "<namespace>:<key>". Any string is a valid key, including the empty one.
func (s *Store) Key(key string) string {
	return s.prefix + key
}

// Get reads key and the time it has left to live, in one round trip. A
// missing key is a miss: (Item{}, false, nil). A key with less than a
// millisecond left is also reported as a miss, since it is about to go. A
// key holding something other than a string (a hash, say) is an error.
func (s *Store) Get(ctx context.Context, key string) (Item, bool, error) {
	if err := ctx.Err(); err != nil {
		return Item{}, false, fmt.Errorf("remote: get %q: %w", key, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()

	rk := s.Key(key)
	pipe := s.client.Pipeline()
	get := pipe.Get(ctx, rk)
	ttl := pipe.PTTL(ctx, rk)
	_, _ = pipe.Exec(ctx) // errors are read from each command below
	item, ok, err := readItem(get, ttl)
	if err != nil {
		return Item{}, false, fmt.Errorf("remote: get %q: %w", key, withContext(ctx, err))
	}
	return item, ok, nil
}

// GetMany reads keys in one round trip (one per cluster node touched) and
// returns the ones found; a missing key is simply absent from the map. The
// map is never nil. Duplicate keys are read once per occurrence.
func (s *Store) GetMany(ctx context.Context, keys []string) (map[string]Item, error) {
	if len(keys) == 0 {
		return map[string]Item{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("remote: get many %s: %w", describe(keys), err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()

	type reply struct {
		get *redis.StringCmd
		ttl *redis.DurationCmd
	}
	replies := make([]reply, len(keys))
	pipe := s.client.Pipeline()
	for i, k := range keys {
		rk := s.Key(k)
		replies[i] = reply{get: pipe.Get(ctx, rk), ttl: pipe.PTTL(ctx, rk)}
	}
	_, _ = pipe.Exec(ctx) // errors are read from each command below

	found := make(map[string]Item, len(keys))
	for i, r := range replies {
		item, ok, err := readItem(r.get, r.ttl)
		if err != nil {
			return nil, fmt.Errorf("remote: get many %q: %w", keys[i], withContext(ctx, err))
		}
		if ok {
			found[keys[i]] = item
		}
	}
	return found, nil
}

// GetValue reads key with one plain GET: the cheapest read Redis offers,
// for callers that keep the deadline of a value inside the value itself
// (as tier does; see codec.Expiry) and so need no PTTL. A missing key is a
// miss: (nil, false, nil). The caller owns the returned bytes.
func (s *Store) GetValue(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("remote: get %q: %w", key, err)
	}
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

// GetValues is [Store.GetValue] for many keys: one MGET on a single server;
// on a cluster or a ring, GETs pipelined, one round trip per node touched.
// A missing key is absent from the map, which is never nil.
func (s *Store) GetValues(ctx context.Context, keys []string) (map[string][]byte, error) {
	if len(keys) == 0 {
		return map[string][]byte{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("remote: get many %s: %w", describe(keys), err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()

	found := make(map[string][]byte, len(keys))
	if s.singleNode {
		rks := s.keys(keys)
		vals, err := s.client.MGet(ctx, rks...).Result()
		if err != nil {
			return nil, fmt.Errorf("remote: get many %s: %w", describe(keys), withContext(ctx, err))
		}
		for i, v := range vals {
			if str, ok := v.(string); ok { // nil: missing, or not a string
				found[keys[i]] = []byte(str)
			}
		}
		return found, nil
	}
	gets := make([]*redis.StringCmd, len(keys))
	pipe := s.client.Pipeline()
	for i, k := range keys {
		gets[i] = pipe.Get(ctx, s.Key(k))
	}
	_, _ = pipe.Exec(ctx) // errors are read from each command below
	for i, get := range gets {
		value, err := get.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("remote: get many %q: %w", keys[i], withContext(ctx, err))
		}
		found[keys[i]] = value
	}
	return found, nil
}

// Set stores value under key for ttl, in one round trip. ttl must be
// positive: an entry without expiry would never leave Redis. It is rounded
// up to a whole millisecond, the precision of Redis expiry.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("remote: set %q: ttl %v is not positive", key, ttl)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remote: set %q: %w", key, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()

	if err := s.client.Set(ctx, s.Key(key), value, ceilMillis(ttl)).Err(); err != nil {
		return fmt.Errorf("remote: set %q: %w", key, withContext(ctx, err))
	}
	return nil
}

// SetMany stores every item under its key, each for its own Item.TTL, in
// one round trip (one per cluster node touched). Every TTL must be
// positive; if one is not, nothing is written. On a network error some
// items may have been written and others not.
func (s *Store) SetMany(ctx context.Context, items map[string]Item) error {
	_, err := s.writeMany(ctx, "set many", items, false)
	return err
}

// writeMany stores items in one pipeline, with SET or, if onlyNew, SET NX;
// with SET NX it returns the keys it stored.
func (s *Store) writeMany(ctx context.Context, op string, items map[string]Item, onlyNew bool) (map[string]bool, error) {
	if len(items) == 0 {
		return nil, nil
	}
	for k, it := range items {
		if it.TTL <= 0 {
			return nil, fmt.Errorf("remote: %s %q: ttl %v is not positive", op, k, it.TTL)
		}
	}
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("remote: %s %s: %w", op, describe(keys), err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()

	cmds := make([]redis.Cmder, len(keys))
	pipe := s.client.Pipeline()
	for i, k := range keys {
		it := items[k]
		if onlyNew {
			cmds[i] = pipe.SetNX(ctx, s.Key(k), it.Value, ceilMillis(it.TTL))
		} else {
			cmds[i] = pipe.Set(ctx, s.Key(k), it.Value, ceilMillis(it.TTL))
		}
	}
	_, _ = pipe.Exec(ctx) // errors are read from each command below
	var added map[string]bool
	if onlyNew {
		added = make(map[string]bool, len(keys))
	}
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return nil, fmt.Errorf("remote: %s %q: %w", op, keys[i], withContext(ctx, err))
		}
		if onlyNew && c.(*redis.BoolCmd).Val() {
			added[keys[i]] = true
		}
	}
	return added, nil
}

// Delete removes keys, in one round trip: a single UNLINK on a standalone
// server, or one UNLINK per key pipelined on a cluster or ring, where keys
// may live on different nodes (one round trip per node touched). Missing
// keys are not an error. UNLINK frees large values in the background, so
// Redis does not block on them.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remote: delete %s: %w", describe(keys), err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()

	if s.singleNode {
		rks := s.keys(keys)
		if err := s.client.Unlink(ctx, rks...).Err(); err != nil {
			return fmt.Errorf("remote: delete %s: %w", describe(keys), withContext(ctx, err))
		}
		return nil
	}

	cmds := make([]*redis.IntCmd, len(keys))
	pipe := s.client.Pipeline()
	for i, k := range keys {
		cmds[i] = pipe.Unlink(ctx, s.Key(k))
	}
	_, _ = pipe.Exec(ctx) // errors are read from each command below
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return fmt.Errorf("remote: delete %q: %w", keys[i], withContext(ctx, err))
		}
	}
	return nil
}

// bound returns ctx limited to the Store's timeout, unless ctx already ends
// sooner (see deadlines).
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return s.deadlines.bound(ctx)
}

// readItem turns the replies to GET and PTTL of one key into an item. The
// two commands travel in one pipeline but not in a transaction, so another
// client may change the key between them: a key gone by the time of PTTL
// (-2), or about to go (0), is a miss.
func readItem(get *redis.StringCmd, ttl *redis.DurationCmd) (Item, bool, error) {
	value, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return Item{}, false, nil
	}
	if err != nil {
		return Item{}, false, err
	}
	d, err := ttl.Result()
	if err != nil {
		return Item{}, false, err
	}
	switch {
	case d == noExpiry:
		return Item{Value: value}, true, nil
	case d <= 0:
		return Item{}, false, nil
	}
	return Item{Value: value, TTL: d}, true, nil
}

// noExpiry is how go-redis reports PTTL's -1 reply: the key has no expiry.
const noExpiry = time.Duration(-1)

// withContext makes err match the context's error when the context has
// ended, so that callers can test for context.Canceled or
// context.DeadlineExceeded whatever form the client gave the failure (an
// i/o timeout on the socket, say).
func withContext(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
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

// Notice is a pub/sub message sent in the same round trip as a write, so
// that the write and the news of it travel together.
type Notice struct {
	Channel  string
	Payloads [][]byte // one PUBLISH each

	// Sharded publishes with SPUBLISH, for subscribers of the sharded
	// channel (SSUBSCRIBE, Redis 7 and later).
	Sharded bool

	// Writer, when set, is a channel that only the writer's own
	// subscription listens on (see invalidate.Bus.WriterChannel). The
	// round trip of a transaction of SetNotify or DeleteNotify then sends
	// a PING and an empty message to Writer before MULTI. Redis's event
	// loop (6 and 7, without io-threads) sends what one turn produced to
	// the clients in the reverse of the order in which each got its first
	// reply of the turn, so the writer's subscription, queued before every
	// other subscriber, gets its copy of the payloads after all of them,
	// whichever subscribed first, and the writer's reply comes after that
	// (the PING queued the writer's connection first). Without it, a
	// replica that subscribed before the writer gets the message a socket
	// write later (BenchmarkPropagationProcs in the root package measures
	// both). On other servers the order may differ, and the cost is two
	// small commands. Outside the transaction, a refusal of the PUBLISH (a
	// user who may not publish to Writer) changes nothing of the write;
	// the Store then leaves it out for a minute. Ignored with Sharded, on a
	// cluster, and for scripts.
	Writer string
}

// scriptArgs returns the ARGV of a notify script: the channel, then
// between, then the payloads.
func (n Notice) scriptArgs(between ...any) []any {
	args := make([]any, 0, 1+len(between)+len(n.Payloads))
	args = append(append(args, n.Channel), between...)
	for _, p := range n.Payloads {
		args = append(args, p)
	}
	return args
}

// publish adds to pipe the PUBLISHes (or SPUBLISHes) of n.
func (n Notice) publish(ctx context.Context, pipe redis.Pipeliner) {
	for _, p := range n.Payloads {
		if n.Sharded {
			pipe.SPublish(ctx, n.Channel, p)
		} else {
			pipe.Publish(ctx, n.Channel, p)
		}
	}
}

// SetNotify is [Store.Set] that also publishes n. On a single server the
// SET and the PUBLISHes run in one MULTI/EXEC, in one round trip:
// atomically, so notices arrive in the order of the writes, and either all
// happen or none does, so no failure between them can leave a write that
// other replicas never hear of. A user who may SET but not PUBLISH there
// gets an error and no write: the server aborts a transaction when it
// refuses a command queued in it.
//
// The first such write of a Store asks the server first, with an empty
// MULTI/EXEC, whether it runs transactions for this user: a server that
// refused MULTI in a write would run the write's commands one by one. When
// it does not (a user denied MULTI or EXEC, or the commands renamed away),
// the write and its notices go as one Lua script instead, which does both
// or neither and, on Redis 7 and later, checks that the user may publish
// before it writes (on older servers a user allowed SET but not PUBLISH
// gets the write and an error). Should MULTI be refused later (the user's
// rights changed), SetNotify writes and publishes again as a script, so
// that the last notice of the key matches what Redis holds even if the
// one-by-one notice overtook a concurrent write's, and uses scripts from
// then on. (Were PUBLISH taken away at the same moment, that write would
// stay, unheard, and SetNotify would return the script's NOPERM.)
//
// A transaction rather than the script when the server allows both,
// because it costs the server far less: about 6 µs against 20 µs per write
// by INFO commandstats on the machine of README's figures, and a round
// 1.21–1.27× a bare PUBLISH round against 1.34–1.38×, with the writer's
// own subscriber on the channel (BenchmarkNotifyRounds in the root
// package reports both).
//
// On a cluster, where a transaction cannot span nodes, the PUBLISHes
// follow once the write is done: two round trips, and a failure between
// them is reported.
func (s *Store) SetNotify(ctx context.Context, key string, value []byte, ttl time.Duration, n Notice) error {
	if ttl <= 0 {
		return fmt.Errorf("remote: set %q: ttl %v is not positive", key, ttl)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remote: set %q: %w", key, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if s.singleNode {
		rk, ms := s.Key(key), ceilMillis(ttl).Milliseconds()
		err := s.atomically(ctx, n, func(pipe redis.Pipeliner) {
			pipe.Do(ctx, "set", rk, value, "px", ms)
		}, func() error {
			script := setNotifyScript
			if n.Sharded {
				script = setNotifyShardedScript
			}
			return script.Run(ctx, s.client, []string{rk}, n.scriptArgs(value, ms)...).Err()
		})
		if err != nil {
			return fmt.Errorf("remote: set %q: %w", key, withContext(ctx, err))
		}
		return nil
	}
	pipe := s.client.Pipeline()
	pipe.Set(ctx, s.Key(key), value, ceilMillis(ttl))
	if err := s.execNotify(ctx, pipe, n); err != nil {
		return fmt.Errorf("remote: set %q: %w", key, withContext(ctx, err))
	}
	return nil
}

// setNotifyScript sets KEYS[1] to ARGV[2] for ARGV[3] milliseconds and
// publishes ARGV[4:] on the channel ARGV[1].
var setNotifyScript = redis.NewScript(setNotifySource)

// deleteNotifyScript unlinks KEYS and publishes ARGV[2:] on the channel
// ARGV[1], a thousand keys per UNLINK so as not to overflow Lua's stack.
var deleteNotifyScript = redis.NewScript(deleteNotifySource)

// The same scripts with SPUBLISH, for sharded channels.
var (
	setNotifyShardedScript    = redis.NewScript(strings.ReplaceAll(setNotifySource, "'PUBLISH'", "'SPUBLISH'"))
	deleteNotifyShardedScript = redis.NewScript(strings.ReplaceAll(deleteNotifySource, "'PUBLISH'", "'SPUBLISH'"))
)

const setNotifySource = aclCheck + `
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
for i = 4, #ARGV do
	redis.call('PUBLISH', ARGV[1], ARGV[i])
end
return 1`

const deleteNotifySource = aclCheck + `
for i = 1, #KEYS, 1000 do
	redis.call('UNLINK', unpack(KEYS, i, math.min(i + 999, #KEYS)))
end
for i = 2, #ARGV do
	redis.call('PUBLISH', ARGV[1], ARGV[i])
end
return 1`

// aclCheck starts a notify script, whose ARGV[1] is the notice's channel:
// on Redis 7 and later, it refuses to write anything when the user may not
// publish there, so that the script does both or neither. Older servers
// lack redis.acl_check_cmd and skip the check.
const aclCheck = `
if redis.acl_check_cmd ~= nil and not redis.acl_check_cmd('PUBLISH', ARGV[1], '') then
	return redis.error_reply('NOPERM tier: this user may not publish to ' .. ARGV[1])
end
`

// unlinkChunk is the most keys one UNLINK of DeleteNotify names.
const unlinkChunk = 1000

// atomically runs the commands write adds and the PUBLISHes of n as one
// MULTI/EXEC, or, when the server does not run transactions for this user,
// runs script, which must do the same as one Lua script. The first call
// asks the server (see probeTx); a call that finds MULTI refused after all
// (the user's rights changed since) runs script too, and so do those after
// it.
func (s *Store) atomically(ctx context.Context, n Notice, write func(redis.Pipeliner), script func() error) error {
	if s.tx.Load() == txUnknown {
		s.probeTx(ctx)
	}
	if s.tx.Load() == txMulti {
		err := s.transaction(ctx, n, write)
		if !errors.Is(err, errNoMulti) {
			return err
		}
		// The server ran the commands one by one: run them again as one
		// step, so that the last notice of the keys matches Redis.
		s.tx.Store(txScript)
	}
	return script()
}

// probeTx asks the server whether it runs transactions for this user, with
// an empty MULTI/EXEC, and records the answer; it leaves it unknown when
// the server does not answer. A probe writes nothing, whereas a write's
// MULTI refused would run its commands one by one, the write possibly
// without its notice when the user may write but not publish there.
func (s *Store) probeTx(ctx context.Context) {
	pipe := s.client.Pipeline()
	multi := pipe.Do(ctx, "multi")
	exec := pipe.Do(ctx, "exec")
	_, _ = pipe.Exec(ctx)
	var rerr redis.Error
	switch _, err := exec.Slice(); {
	case err == nil && multi.Err() == nil:
		s.tx.CompareAndSwap(txUnknown, txMulti)
	case errors.As(multi.Err(), &rerr) || errors.As(err, &rerr):
		s.tx.Store(txScript)
	}
}

// errNoMulti marks the error of a MULTI the server refused.
var errNoMulti = errors.New("the server refused MULTI")

// transaction runs the commands write adds, then the PUBLISHes of n, between
// MULTI and EXEC, in one round trip. The commands go through Do, whose
// replies may be anything, so that the QUEUED each gets reads as a reply
// and not as a malformed one; a plain pipeline rather than go-redis's
// TxPipeline, so that a refused MULTI can be told from a refused EXEC
// (the error returned wraps errNoMulti) and all replies are read.
//
// The PUBLISH to n.Writer goes before MULTI: in the same round trip, so
// the server runs it in the same turn of its loop as the transaction (what
// the order of its writes needs, see Notice.Writer), but outside it, so
// that its refusal changes nothing of the write: go-redis reports an error
// inside EXEC's reply as the error of the whole reply, without saying
// which command it was. A refusal pauses it (see writerPause). A PING
// goes first, so that the writer's connection has its first reply of the
// turn before the writer's subscription: its reply then leaves after the
// subscription's copy of the message, as when MULTI came first, and the
// writer has heard its own message by the time the write returns.
func (s *Store) transaction(ctx context.Context, n Notice, write func(redis.Pipeliner)) error {
	pipe := s.client.Pipeline()
	var writer *redis.Cmd
	if n.Writer != "" && !n.Sharded && s.writerAllowed() {
		pipe.Do(ctx, "ping")
		writer = pipe.Do(ctx, "publish", n.Writer, "")
	}
	first := pipe.Len() // MULTI's place
	multi := pipe.Do(ctx, "multi")
	write(pipe)
	publish := "publish"
	if n.Sharded {
		publish = "spublish"
	}
	for _, p := range n.Payloads {
		pipe.Do(ctx, publish, n.Channel, p)
	}
	exec := pipe.Do(ctx, "exec")
	cmds, _ := pipe.Exec(ctx) // each command holds its own error
	if writer != nil && redis.IsPermissionError(writer.Err()) {
		s.noWriterUntil.Store(time.Now().Add(writerPause).UnixNano())
	}
	var rerr redis.Error
	if err := multi.Err(); errors.As(err, &rerr) {
		return fmt.Errorf("%w: %w", errNoMulti, err)
	}
	replies, err := exec.Slice()
	if err != nil {
		// Aborted, and nothing ran (EXECABORT), or the connection failed.
		// The reason of an abort is the error of a queued command.
		for _, c := range cmds[first+1 : len(cmds)-1] {
			if qerr := c.Err(); errors.As(qerr, &rerr) {
				return fmt.Errorf("%w: %w", qerr, err)
			}
		}
		return err
	}
	for _, r := range replies {
		if err, ok := r.(error); ok {
			return err
		}
	}
	return nil
}

// writerPause is how long a Store leaves out the PUBLISH to Notice.Writer
// after the server refused one: a Bus refused the channel stops naming it
// meanwhile (see invalidate.Bus.WriterChannel), and one granted it again
// is heard from again after it.
const writerPause = time.Minute

// writerAllowed reports whether transactions may send the PUBLISH to
// Notice.Writer: no refusal, or none within writerPause. The clock is read
// only after a refusal.
func (s *Store) writerAllowed() bool {
	until := s.noWriterUntil.Load()
	return until == 0 || time.Now().UnixNano() >= until
}

// DeleteNotify is [Store.Delete] that also publishes n, in the same round
// trip and, on a single server, in the same transaction (see SetNotify).
func (s *Store) DeleteNotify(ctx context.Context, keys []string, n Notice) error {
	if len(keys) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remote: delete %s: %w", describe(keys), err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if s.singleNode {
		rks := s.keys(keys)
		err := s.atomically(ctx, n, func(pipe redis.Pipeliner) {
			for i := 0; i < len(rks); i += unlinkChunk {
				chunk := rks[i:min(i+unlinkChunk, len(rks))]
				args := make([]any, 1, 1+len(chunk))
				args[0] = "unlink"
				for _, k := range chunk {
					args = append(args, k)
				}
				pipe.Do(ctx, args...)
			}
		}, func() error {
			script := deleteNotifyScript
			if n.Sharded {
				script = deleteNotifyShardedScript
			}
			return script.Run(ctx, s.client, rks, n.scriptArgs()...).Err()
		})
		if err != nil {
			return fmt.Errorf("remote: delete %s: %w", describe(keys), withContext(ctx, err))
		}
		return nil
	}
	pipe := s.client.Pipeline()
	for _, k := range keys {
		pipe.Unlink(ctx, s.Key(k))
	}
	if err := s.execNotify(ctx, pipe, n); err != nil {
		return fmt.Errorf("remote: delete %s: %w", describe(keys), withContext(ctx, err))
	}
	return nil
}

// NotifyInOrder reports whether SetNotify and DeleteNotify put each write
// and its notice in one transaction (true on a single server), so that
// notices arrive on their channel in the order the writes were applied.
// On a cluster a notice follows its write, and the notices of two writes
// to one key may arrive in either order.
func (s *Store) NotifyInOrder() bool { return s.singleNode }

func (s *Store) execNotify(ctx context.Context, pipe redis.Pipeliner, n Notice) error {
	if !s.singleNode {
		// On a cluster the write and the PUBLISH may go to different
		// nodes, in parallel: a receiver could hear of the write before
		// it is made and re-read the old value. So the write goes first.
		if err := execAll(ctx, pipe); err != nil {
			return err
		}
		pipe = s.client.Pipeline()
	}
	n.publish(ctx, pipe)
	return execAll(ctx, pipe)
}

// execAll runs pipe and returns the first error of its commands.
func execAll(ctx context.Context, pipe redis.Pipeliner) error {
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		return err
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Add stores value under key for ttl only if key is absent (SET NX), in
// one round trip, and reports whether it stored it. A read-through fill
// uses it, so that a value loaded from the source never overwrites one
// that a writer stored while the load ran.
func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("remote: add %q: ttl %v is not positive", key, ttl)
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("remote: add %q: %w", key, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ok, err := s.client.SetNX(ctx, s.Key(key), value, ceilMillis(ttl)).Result()
	if err != nil {
		return false, fmt.Errorf("remote: add %q: %w", key, withContext(ctx, err))
	}
	return ok, nil
}

// AddMany is [Store.Add] for many items, in one round trip (one per
// cluster node touched), and returns the keys it stored. Items whose key
// exists are left alone.
func (s *Store) AddMany(ctx context.Context, items map[string]Item) (map[string]bool, error) {
	return s.writeMany(ctx, "add many", items, true)
}

// SwapItem is one compare-and-set of [Store.SwapMany].
type SwapItem struct {
	Old   []byte // what the key must hold
	Value []byte // what to store; empty: delete the key
	TTL   time.Duration
}

// SwapMany is [Store.Swap] for many keys, in one round trip (one per
// cluster node touched).
func (s *Store) SwapMany(ctx context.Context, items map[string]SwapItem) error {
	if len(items) == 0 {
		return nil
	}
	keys := make([]string, 0, len(items))
	for k, it := range items {
		if len(it.Value) > 0 && it.TTL <= 0 {
			return fmt.Errorf("remote: swap many %q: ttl %v is not positive", k, it.TTL)
		}
		keys = append(keys, k)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remote: swap many %s: %w", describe(keys), err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cmds := make([]*redis.Cmd, len(keys))
	pipe := s.client.Pipeline()
	for i, k := range keys {
		it := items[k]
		cmds[i] = swapScript.Eval(ctx, pipe, []string{s.Key(k)}, it.Old, it.Value, ceilMillis(it.TTL).Milliseconds())
	}
	_, _ = pipe.Exec(ctx) // errors are read from each command below
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return fmt.Errorf("remote: swap many %q: %w", keys[i], withContext(ctx, err))
		}
	}
	return nil
}

// swapScript replaces or deletes a key only while it holds an expected
// value, atomically: the compare-and-set behind read-through leases.
var swapScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) return 1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)

// Swap stores value under key for ttl only if key still holds old, in one
// round trip (one script), and reports whether it did. An empty value
// deletes key instead. A fill uses it to write what it loaded only if the
// lease it put under the key still stands: a Set or Delete made while the
// load ran has replaced or removed the lease, and wins.
func (s *Store) Swap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if len(value) > 0 && ttl <= 0 {
		return false, fmt.Errorf("remote: swap %q: ttl %v is not positive", key, ttl)
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("remote: swap %q: %w", key, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := swapScript.Run(ctx, s.client, []string{s.Key(key)}, old, value, ceilMillis(ttl).Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("remote: swap %q: %w", key, withContext(ctx, err))
	}
	return n == 1, nil
}
