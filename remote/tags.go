package remote

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tags let a caller drop every entry of a group at once without listing
// them. A Store keeps, under "<namespace>:{<namespace>:tier-tags}:", one
// counter (the tag clock, "clock") and one marker per invalidated tag
// ("t:<tag>"): the clock's value when the tag was last invalidated. An
// entry records the clock when its load began (its born number), and is
// stale once one of its tags has a marker above it. The braces put the
// clock and every marker of a namespace in one cluster slot, so that an
// invalidation is one script there. The clock has no expiry: it must
// never go back while entries born under it exist.

// tagBase is the prefix of the keys of the tag clock and markers.
func (s *Store) tagBase() string {
	ns := s.prefix[:len(s.prefix)-1]
	return s.prefix + "{" + ns + ":tier-tags}:"
}

// ClockKey returns the Redis key of the tag clock.
func (s *Store) ClockKey() string { return s.tagBase() + "clock" }

// MarkerKey returns the Redis key of tag's marker.
func (s *Store) MarkerKey(tag string) string { return s.tagBase() + "t:" + tag }

// InvalidateTags advances the tag clock, sets the marker of each tag to
// its new value for ttl, and, with a Channel, announces each tag there as
// "#<clock>:<tag>" (see package invalidate), in one script: as Set does,
// on a cluster with Sharded and on a ring the announcement follows. It
// returns the new clock.
func (s *Store) InvalidateTags(ctx context.Context, tags []string, ttl time.Duration) (uint64, error) {
	if len(tags) == 0 {
		return 0, nil
	}
	if ttl <= 0 {
		return 0, fmt.Errorf("remote: invalidate tags %s: ttl %v is not positive", describe(tags), ttl)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	keys := make([]string, 1, 1+len(tags))
	keys[0] = s.ClockKey()
	args := make([]any, 0, 3+len(tags))
	args = append(append(args, ceilMillis(ttl).Milliseconds()), s.scriptArgs[:]...)
	for _, t := range tags {
		keys = append(keys, s.MarkerKey(t))
		args = append(args, t)
	}
	clock, err := tagScript.Run(ctx, s.client, keys, args...).Uint64()
	if err == nil && s.publish != "" && s.announceAfter {
		for _, t := range tags {
			payload := "#" + strconv.FormatUint(clock, 10) + ":" + t
			if s.publish == "SPUBLISH" {
				err = s.client.SPublish(ctx, s.channel, payload).Err()
			} else {
				err = s.client.Publish(ctx, s.channel, payload).Err()
			}
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		return 0, fmt.Errorf("remote: invalidate tags %s: %w", describe(tags), withContext(ctx, err))
	}
	return clock, nil
}

// tagScript: KEYS[1] the clock, KEYS[2..] the markers; ARGV[1] the
// markers' TTL in milliseconds, ARGV[2] the publish command ("" for
// none), ARGV[3] the channel, ARGV[4..] the tags.
var tagScript = redis.NewScript(`
local cmd, channel = ARGV[2], ARGV[3]
if cmd ~= '' and redis.acl_check_cmd ~= nil and not redis.acl_check_cmd(cmd, channel, '') then
	return redis.error_reply('NOPERM tier: this user may not ' .. cmd .. ' to ' .. channel)
end
local v = redis.call('INCR', KEYS[1])
for i = 2, #KEYS do
	redis.call('SET', KEYS[i], v, 'PX', ARGV[1])
	if cmd ~= '' then redis.call(cmd, channel, '#' .. v .. ':' .. ARGV[i + 2]) end
end
return v`)

// TagClock returns the tag clock: 0 before any tag was invalidated.
func (s *Store) TagClock(ctx context.Context) (uint64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	v, err := s.client.Get(ctx, s.ClockKey()).Uint64()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("remote: tag clock: %w", withContext(ctx, err))
	}
	return v, nil
}

// TagMarkers returns the marker of each tag, in the order of tags: 0 for
// a tag never invalidated, or whose marker expired. It is one MGET (the
// markers share a slot).
func (s *Store) TagMarkers(ctx context.Context, tags []string) ([]uint64, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	keys := make([]string, len(tags))
	for i, t := range tags {
		keys[i] = s.MarkerKey(t)
	}
	vals, err := s.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("remote: tag markers %s: %w", describe(tags), withContext(ctx, err))
	}
	markers := make([]uint64, len(tags))
	for i, v := range vals {
		if str, ok := v.(string); ok {
			if markers[i], err = strconv.ParseUint(str, 10, 64); err != nil {
				return nil, fmt.Errorf("remote: tag marker %q holds %q, not a tag clock", tags[i], str)
			}
		}
	}
	return markers, nil
}
