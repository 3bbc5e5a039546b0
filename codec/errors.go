package codec

import (
	"errors"
	"fmt"
)

// ErrCorrupt is matched, through [errors.Is], by every error that
// [Format.Decode] returns because the stored bytes are not a valid value:
// an empty or truncated header, an unknown format version, codec ID or
// compression ID, a damaged compressed payload, a payload larger than
// [Options.MaxSize], or a payload the codec cannot unmarshal into the
// target (including a value of another type than the target). The error's
// text says which, and the codec's own error stays reachable through
// [errors.As]. A cache can treat such a value as a miss.
var ErrCorrupt = errors.New("codec: corrupt data")

// ErrTombstone is returned by [Format.Decode] for the bytes of [Tombstone]:
// the source of truth was asked and said that there is no such value. It
// does not match [ErrCorrupt].
var ErrTombstone = errors.New("codec: tombstone")

// ErrTooLarge is matched by the error [Format.Encode] returns for a value
// whose encoded payload is larger than [Options.MaxSize], and, together
// with [ErrCorrupt], by the error [Format.Decode] returns for a payload
// larger than MaxSize.
var ErrTooLarge = errors.New("codec: value larger than MaxSize")

// corrupt returns an error matching ErrCorrupt, and whatever format wraps
// with %w, that says "codec: corrupt data: " and format.
func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, a...)...)
}
