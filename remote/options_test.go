package remote_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/remote"
)

// idleClient returns a client that is never used for I/O (New makes no
// network call), closed when the test ends.
func idleClient(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func announceNothing([]string) ([][]byte, error) { return nil, nil }

// New fills in defaults and refuses invalid options with an error that
// names the field.
func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    remote.Options
		wantKey string // Key("k") when valid
		wantErr string // substring of the error, "" when valid
	}{
		{name: "zero value", opts: remote.Options{}, wantKey: "tier:k"},
		{name: "namespace", opts: remote.Options{Namespace: "app"}, wantKey: "app:k"},
		{name: "punctuation", opts: remote.Options{Namespace: "my-app_v2.prod/eu"}, wantKey: "my-app_v2.prod/eu:k"},
		{name: "unicode", opts: remote.Options{Namespace: "café"}, wantKey: "café:k"},
		{name: "timeout", opts: remote.Options{Timeout: time.Second}, wantKey: "tier:k"},
		{name: "channel", opts: remote.Options{Channel: "news", Announce: announceNothing}, wantKey: "tier:k"},
		{name: "sharded channel", opts: remote.Options{Channel: "news", Sharded: true, Announce: announceNothing}, wantKey: "tier:k"},
		{name: "announce without channel", opts: remote.Options{Announce: announceNothing}, wantKey: "tier:k"},

		{name: "negative timeout", opts: remote.Options{Timeout: -time.Millisecond}, wantErr: "Options.Timeout -1ms is negative"},
		{name: "channel without announce", opts: remote.Options{Channel: "news"}, wantErr: "Options.Channel needs Options.Announce"},
		{name: "sharded channel without announce", opts: remote.Options{Channel: "news", Sharded: true}, wantErr: "Options.Channel needs Options.Announce"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := remote.New(idleClient(t), tt.opts)
			if tt.wantErr != "" {
				if err == nil || s != nil {
					t.Fatalf("New = %v, %v; want an error containing %q", s, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "remote: ") || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New error = %q; want it to start with \"remote: \" and contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := s.Key("k"); got != tt.wantKey {
				t.Fatalf("Key(k) = %q, want %q", got, tt.wantKey)
			}
		})
	}
}

// New refuses a nil client, typed or not.
func TestNewRejectsNilClient(t *testing.T) {
	var typedNil *redis.Client
	var clusterNil *redis.ClusterClient
	var ringNil *redis.Ring
	for name, c := range map[string]redis.UniversalClient{
		"nil":               nil,
		"typed nil Client":  typedNil,
		"typed nil Cluster": clusterNil,
		"typed nil Ring":    ringNil,
	} {
		s, err := remote.New(c, remote.Options{})
		if err == nil || s != nil || !strings.HasPrefix(err.Error(), "remote: ") {
			t.Errorf("%s: New = %v, %v; want a remote: error", name, s, err)
		}
	}
	if _, err := remote.New(nil, remote.Options{}); err == nil || !strings.Contains(err.Error(), "nil") {
		t.Errorf("New(nil) = %v; want an error saying the client is nil", err)
	}
}

// New refuses a client built without ContextTimeoutEnabled, whatever its
// kind, because Options.Timeout could not bound its socket reads; it
// trusts a client whose kind it cannot see.
func TestNewRequiresContextTimeouts(t *testing.T) {
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer plain.Close()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cluster.Close()
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	for name, c := range map[string]redis.UniversalClient{"client": plain, "cluster": cluster, "ring": ring} {
		s, err := remote.New(c, remote.Options{})
		if !errors.Is(err, remote.ErrContextTimeoutDisabled) || s != nil {
			t.Errorf("%s without ContextTimeoutEnabled: New = %v, %v; want ErrContextTimeoutDisabled", name, s, err)
		}
	}

	okCluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true})
	defer okCluster.Close()
	okRing := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}, ContextTimeoutEnabled: true})
	defer okRing.Close()
	for name, c := range map[string]redis.UniversalClient{
		"client":  idleClient(t),
		"cluster": okCluster,
		"ring":    okRing,
		"hidden":  hidden{plain},
	} {
		if _, err := remote.New(c, remote.Options{}); err != nil {
			t.Errorf("%s: New = %v; want a Store", name, err)
		}
	}
}
