package remote

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestReadItem covers replies a live server rarely produces on demand: a
// key that vanished between GET and PTTL, one in its last millisecond, and
// failures of either command.
func TestReadItem(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		get     *redis.StringCmd
		ttl     *redis.DurationCmd
		want    Item
		wantOK  bool
		wantErr error
	}{
		{name: "hit", get: redis.NewStringResult("v", nil), ttl: redis.NewDurationResult(1500*time.Millisecond, nil), want: Item{Value: []byte("v"), TTL: 1500 * time.Millisecond}, wantOK: true},
		{name: "no expiry (-1)", get: redis.NewStringResult("v", nil), ttl: redis.NewDurationResult(-1, nil), want: Item{Value: []byte("v")}, wantOK: true},
		{name: "vanished before PTTL (-2)", get: redis.NewStringResult("v", nil), ttl: redis.NewDurationResult(-2, nil)},
		{name: "last millisecond (0)", get: redis.NewStringResult("v", nil), ttl: redis.NewDurationResult(0, nil)},
		{name: "miss", get: redis.NewStringResult("", redis.Nil), ttl: redis.NewDurationResult(-2, nil)},
		{name: "miss, then written before PTTL", get: redis.NewStringResult("", redis.Nil), ttl: redis.NewDurationResult(time.Minute, nil)},
		{name: "GET failed", get: redis.NewStringResult("", boom), ttl: redis.NewDurationResult(time.Minute, nil), wantErr: boom},
		{name: "PTTL failed", get: redis.NewStringResult("v", nil), ttl: redis.NewDurationResult(0, boom), wantErr: boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := readItem(tt.get, tt.ttl)
			if !errors.Is(err, tt.wantErr) || errors.Is(err, redis.Nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if ok != tt.wantOK || string(got.Value) != string(tt.want.Value) || got.TTL != tt.want.TTL {
				t.Fatalf("readItem = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
			if !ok && (got.Value != nil || got.TTL != 0) {
				t.Fatalf("a miss returned %+v, want the zero Item", got)
			}
		})
	}
}

func TestCeilMillis(t *testing.T) {
	tests := []struct{ in, want time.Duration }{
		{time.Nanosecond, time.Millisecond},
		{time.Millisecond, time.Millisecond},
		{time.Millisecond + 1, 2 * time.Millisecond},
		{1500 * time.Microsecond, 2 * time.Millisecond},
		{time.Hour, time.Hour},
		{math.MaxInt64, math.MaxInt64}, // no overflow
	}
	for _, tt := range tests {
		if got := ceilMillis(tt.in); got != tt.want {
			t.Errorf("ceilMillis(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
