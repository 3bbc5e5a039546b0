package suite

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/tier-cache/tier/invalidate"
)

// rawWriteScript is the raw write that a Set of tier's stands on: the
// value SET with its TTL and one frame PUBLISHed, atomically, in one Lua
// script sent by EVALSHA. tier's own script (package remote) does the
// same, after checking with redis.acl_check_cmd that the user may publish
// on the channel.
var rawWriteScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`)

// rawWriter is the raw write of one key: rawWriteScript with a frame like
// the one tier publishes (package invalidate's, with its time sent),
// built for each write into a buffer it reuses.
type rawWriter struct {
	client  *redis.Client
	key     string // the Redis key
	ns      string
	channel string
	origin  invalidate.ID
	buf     []byte
	keys    []string // one cache key, for the frame
}

func newRawWriter(client *redis.Client, ns, key, channel string) *rawWriter {
	w := &rawWriter{client: client, key: ns + ":" + key, ns: ns, channel: channel, keys: []string{key}}
	copy(w.origin[:], "bench raw writer")
	return w
}

// write stores value, encoded already, for ttl, and announces it.
func (w *rawWriter) write(ctx context.Context, value []byte, ttl time.Duration) error {
	w.buf = invalidate.AppendFrame(w.buf[:0], invalidate.Message{Keys: w.keys, Namespace: w.ns, Origin: w.origin, Sent: time.Now()})
	return rawWriteScript.Run(ctx, w.client, []string{w.key}, value, ttl.Milliseconds(), w.channel, w.buf).Err()
}

// drain subscribes a client to channel and reads its messages until
// the returned function is called, as tier's own subscription hears its
// writer's messages: so that the raw writes, like tier's, publish to one
// subscriber.
func drain(ctx context.Context, client *redis.Client, channel string) (func(), error) {
	ps := client.Subscribe(ctx, channel)
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := ps.ReceiveMessage(context.Background()); err != nil {
				return
			}
		}
	}()
	return func() { ps.Close(); <-done }, nil
}

func writeGroups() []Group {
	ctx := context.Background()
	const key = "user:1"
	g := Group{
		Section: "Write", ID: "set", Redis: true, Metrics: timedMetrics,
		Case: "Set of one key: near tier, Redis and the message to other replicas",
	}
	// raw returns the raw write of tier's bytes, encoding the value first
	// if encode is set.
	raw := func(env *Env, ns string, encode bool) (Runner, error) {
		cl := env.Client()
		if err := seedTier(env, ns, map[string]User{key: farUser}); err != nil {
			return Runner{}, err
		}
		stored, err := cl.Get(ctx, ns+":"+key).Bytes()
		if err != nil {
			return Runner{}, err
		}
		stop, err := drain(ctx, env.Client(), ns+":invalidate")
		if err != nil {
			return Runner{}, err
		}
		w := newRawWriter(cl, ns, key, ns+":invalidate")
		return Runner{Close: stop, Op: func(int) func(int) error {
			return func(n int) error {
				for range n {
					value := stored
					if encode {
						b, err := msgpack.Marshal(&farUser)
						if err != nil {
							return err
						}
						value = b
					}
					if err := w.write(ctx, value, 10*time.Minute); err != nil { // tier's default FarTTL
						return err
					}
				}
				return nil
			}
		}}, nil
	}
	g.Impls = []Impl{
		{Name: "tier", Role: Tier, Note: "Cache.Set, with its own subscription", Setup: func(env *Env) (Runner, error) {
			c, err := newTier(env, "set", nil)
			if err != nil {
				return Runner{}, err
			}
			return Runner{Close: func() { c.Close() }, Op: func(int) func(int) error {
				return func(n int) error {
					for range n {
						if err := c.Set(ctx, key, farUser); err != nil {
							return err
						}
					}
					return nil
				}
			}}, nil
		}},
		{Name: "raw write", Role: Floor, Note: "EVALSHA of SET PX + PUBLISH of one frame, tier's bytes, one subscriber", Setup: func(env *Env) (Runner, error) {
			return raw(env, "rawset", false)
		}},
		{Name: "msgpack encode + raw write", Role: Floor, Note: "the same, encoding the value each time", Setup: func(env *Env) (Runner, error) {
			return raw(env, "rawsetenc", true)
		}},
	}
	return []Group{g}
}
