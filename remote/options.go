package remote

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of [Options].
const (
	DefaultNamespace = "tier"
	DefaultTimeout   = 100 * time.Millisecond
)

// Options configure a [Store]. The zero value is valid: every field has a
// documented default, filled in by [New], which also rejects invalid values.
type Options struct {
	// Namespace prefixes every key the Store touches: the cache key k lives
	// in Redis as "<Namespace>:<k>". Default: "tier".
	Namespace string

	// Timeout bounds each operation, retries inside the client included,
	// unless the caller's context ends sooner. Default: 100ms.
	Timeout time.Duration

	// Channel, when set, is the pub/sub channel on which Set and Delete
	// announce the keys they change, with the payloads Announce returns,
	// in the same Lua script as the write (see [Store.Set]). Default: "",
	// no announcement.
	Channel string

	// Sharded announces with SPUBLISH instead of PUBLISH (sharded pub/sub,
	// Redis 7 and later). Default: false.
	Sharded bool

	// Announce returns the payloads that announce a change of keys.
	// Required with Channel.
	Announce func(keys []string) ([][]byte, error)
}

// withDefaults returns a copy of o with defaults filled in, or an error
// naming the first invalid field.
func (o Options) withDefaults() (Options, error) {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	switch {
	case o.Timeout < 0:
		return Options{}, fmt.Errorf("remote: Options.Timeout %v is negative", o.Timeout)
	case o.Timeout == 0:
		o.Timeout = DefaultTimeout
	}
	if o.Channel != "" && o.Announce == nil {
		return Options{}, errors.New("remote: Options.Channel needs Options.Announce")
	}
	return o, nil
}
