package remote

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// DefaultNamespace is the namespace used when [Options.Namespace] is
	// empty.
	DefaultNamespace = "tier"

	// DefaultTimeout is the per-operation bound used when [Options.Timeout]
	// is zero.
	DefaultTimeout = 100 * time.Millisecond

	// MaxNamespaceLen is the longest namespace, in bytes, that [New] accepts.
	MaxNamespaceLen = 128
)

// Options configure a [Store]. The zero value is valid: every field has a
// documented default, filled in by [New], which also rejects invalid values.
type Options struct {
	// Namespace prefixes every key the Store touches: the cache key k lives
	// in Redis as "<Namespace>:<k>". Two Stores with different namespaces
	// never see each other's entries, even on the same server.
	//
	// A namespace is at most MaxNamespaceLen bytes of valid UTF-8 made of
	// printable characters, and may not contain whitespace, ':' or curly
	// braces. The colon is the separator, so forbidding it is what keeps
	// namespaces apart: with it, namespace "a" and key "b:c" would collide
	// with namespace "a:b" and key "c". Braces would form a Redis Cluster
	// hash tag and put every key of the namespace in one slot, on one node.
	//
	// Default: "tier" (DefaultNamespace).
	Namespace string

	// Timeout bounds each operation, including its retries inside the
	// client: the Store derives a context that ends after Timeout, unless
	// the caller's context already has an earlier deadline. Operations whose
	// context cannot be cancelled (context.Background, or only values over
	// it) share one timer per 1/64 of Timeout (at least a millisecond)
	// instead of making one each, and so may end that much after Timeout.
	// It must not be negative.
	//
	// Default: 100ms (DefaultTimeout).
	Timeout time.Duration
}

// withDefaults returns a copy of o with defaults filled in, or an error
// naming the first invalid field.
func (o Options) withDefaults() (Options, error) {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if err := checkNamespace(o.Namespace); err != nil {
		return Options{}, err
	}
	switch {
	case o.Timeout < 0:
		return Options{}, fmt.Errorf("remote: Options.Timeout %v is negative", o.Timeout)
	case o.Timeout == 0:
		o.Timeout = DefaultTimeout
	}
	return o, nil
}

// checkNamespace reports why ns is not a valid namespace, or nil.
func checkNamespace(ns string) error {
	if len(ns) > MaxNamespaceLen {
		return fmt.Errorf("remote: Options.Namespace is %d bytes long, more than the %d allowed", len(ns), MaxNamespaceLen)
	}
	if !utf8.ValidString(ns) {
		return fmt.Errorf("remote: Options.Namespace %q is not valid UTF-8", ns)
	}
	if i := strings.IndexAny(ns, ":{}"); i >= 0 {
		return fmt.Errorf("remote: Options.Namespace %q contains %q; ':' separates the namespace from the key and braces would make a cluster hash tag", ns, ns[i])
	}
	for _, r := range ns {
		if unicode.IsSpace(r) || !unicode.IsGraphic(r) {
			return fmt.Errorf("remote: Options.Namespace %q contains whitespace or an unprintable character (%U)", ns, r)
		}
	}
	return nil
}
