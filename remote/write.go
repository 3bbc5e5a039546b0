package remote

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

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
		var frames [][]byte
		if s.publish != "" && !announceAfter {
			var err error
			if frames, err = s.announce(keys); err != nil {
				return nil, err
			}
		}
		argv := make([]any, 0, len(args)+len(s.scriptArgs)+len(frames))
		argv = append(append(argv, args...), s.scriptArgs[:]...)
		for _, f := range frames {
			argv = append(argv, f)
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
