package remote_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/remote"
)

// newClient returns a client that is never used for I/O (New makes no
// network call), closed when the test ends.
func newClient(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    remote.Options
		wantNS  string // namespace after defaults, when valid
		wantErr string // substring of the error, "" when valid
	}{
		{name: "zero value", opts: remote.Options{}, wantNS: "tier"},
		{name: "plain", opts: remote.Options{Namespace: "app"}, wantNS: "app"},
		{name: "punctuation", opts: remote.Options{Namespace: "my-app_v2.prod/eu"}, wantNS: "my-app_v2.prod/eu"},
		{name: "unicode", opts: remote.Options{Namespace: "café"}, wantNS: "café"},
		{name: "max length", opts: remote.Options{Namespace: strings.Repeat("n", remote.MaxNamespaceLen)}, wantNS: strings.Repeat("n", remote.MaxNamespaceLen)},
		{name: "timeout set", opts: remote.Options{Timeout: time.Second}, wantNS: "tier"},

		{name: "too long", opts: remote.Options{Namespace: strings.Repeat("n", remote.MaxNamespaceLen+1)}, wantErr: "Options.Namespace is 129 bytes"},
		{name: "colon", opts: remote.Options{Namespace: "a:b"}, wantErr: "Options.Namespace"},
		{name: "trailing colon", opts: remote.Options{Namespace: "a:"}, wantErr: "Options.Namespace"},
		{name: "brace", opts: remote.Options{Namespace: "{a}"}, wantErr: "Options.Namespace"},
		{name: "space", opts: remote.Options{Namespace: "my app"}, wantErr: "Options.Namespace"},
		{name: "tab", opts: remote.Options{Namespace: "a\tb"}, wantErr: "Options.Namespace"},
		{name: "newline", opts: remote.Options{Namespace: "a\n"}, wantErr: "Options.Namespace"},
		{name: "nul", opts: remote.Options{Namespace: "a\x00"}, wantErr: "Options.Namespace"},
		{name: "no-break space", opts: remote.Options{Namespace: "a\u00a0b"}, wantErr: "Options.Namespace"},
		{name: "zero-width space", opts: remote.Options{Namespace: "a\u200bb"}, wantErr: "Options.Namespace"},
		{name: "invalid utf-8", opts: remote.Options{Namespace: "a\xffb"}, wantErr: "not valid UTF-8"},
		{name: "negative timeout", opts: remote.Options{Timeout: -time.Millisecond}, wantErr: "Options.Timeout -1ms is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := remote.New(newClient(t), tt.opts)
			if tt.wantErr != "" {
				if err == nil || s != nil {
					t.Fatalf("New = %v, nil; want an error containing %q", s, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "remote: ") || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New error = %q; want it to start with \"remote: \" and contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if s.Namespace() != tt.wantNS {
				t.Fatalf("Namespace() = %q, want %q", s.Namespace(), tt.wantNS)
			}
		})
	}
}

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
}

func TestNewRequiresContextTimeouts(t *testing.T) {
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer plain.Close()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cluster.Close()
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	for name, c := range map[string]redis.UniversalClient{"client": plain, "cluster": cluster, "ring": ring} {
		_, err := remote.New(c, remote.Options{})
		if !errors.Is(err, remote.ErrContextTimeoutDisabled) {
			t.Errorf("%s without ContextTimeoutEnabled: err = %v, want ErrContextTimeoutDisabled", name, err)
		}
	}

	okCluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true})
	defer okCluster.Close()
	okRing := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}, ContextTimeoutEnabled: true})
	defer okRing.Close()
	for name, c := range map[string]redis.UniversalClient{"cluster": okCluster, "ring": okRing} {
		if _, err := remote.New(c, remote.Options{}); err != nil {
			t.Errorf("%s with ContextTimeoutEnabled: %v", name, err)
		}
	}
}
