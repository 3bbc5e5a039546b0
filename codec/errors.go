package codec

import "errors"

// ErrCorrupt is matched, through [errors.Is], by every error that
// [Format.Decode] returns because the stored bytes are not a valid value:
// an empty or truncated header, an unknown format version, codec ID or
// compression ID, a damaged compressed payload, a payload larger than
// [Options.MaxSize], or a payload the codec cannot unmarshal into the
// target (including a value of another type than the target). The error's
// text says which. A cache can treat such a value as a miss.
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

// corruptError is the error type behind every ErrCorrupt. It keeps the
// codec's own error (if any) for errors.As, and can also match ErrTooLarge.
type corruptError struct {
	msg      string
	err      error // the underlying error, or nil
	tooLarge bool
}

func (e *corruptError) Error() string {
	if e.err != nil {
		return "codec: corrupt data: " + e.msg + ": " + e.err.Error()
	}
	return "codec: corrupt data: " + e.msg
}

func (e *corruptError) Is(target error) bool {
	return target == ErrCorrupt || (e.tooLarge && target == ErrTooLarge)
}

func (e *corruptError) Unwrap() error { return e.err }

// corrupt returns an error matching ErrCorrupt that says msg.
func corrupt(msg string) error { return &corruptError{msg: msg} }

// corruptWrap returns an error matching ErrCorrupt and err that says msg.
func corruptWrap(msg string, err error) error { return &corruptError{msg: msg, err: err} }
