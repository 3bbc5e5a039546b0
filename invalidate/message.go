package invalidate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Message is one invalidation: drop the near copies of Keys, or of every
// key when All is set.
type Message struct {
	// Keys are the keys whose near copies to drop.
	Keys []string
	// All drops every key's near copy.
	All bool

	// Tags, when set, names tags whose entries to drop: those born before
	// Clock (see tier's InvalidateTag). A message with tags has no keys.
	Tags []string
	// Clock is the tag clock of a tag message; 0 in an operator's, whose
	// receivers read each tag's marker from Redis instead.
	Clock uint64

	// Sync marks a frame that drops nothing: its origin publishes it to
	// learn when every message published before it has reached it (see
	// Bus.Sync). Its one key is the origin's token.
	Sync bool

	// Namespace is the namespace a library message was published for; it
	// is empty in an operator's message, which the channel alone scopes.
	Namespace string

	// Origin is the publishing Bus's ID; zero in an operator's message.
	Origin ID

	// Sent is when the message was made, by the publisher's clock; zero in
	// an operator's message. Receivers measure propagation lag with it.
	Sent time.Time
}

// ID identifies a Bus, so that it can skip the messages it published.
type ID [16]byte

// Wire forms of a payload on the channel (see the package documentation).
const (
	frameMarker  = 0x00 // first byte of a library frame
	frameVersion = 1
	flagAll      = 0x01
	flagValues   = 0x02 // written by older versions: each key is followed by a value, which is skipped
	flagSent     = 0x04
	flagSync     = 0x08
	escapeMarker = '='
	tagMarker    = '#'
	allMarker    = "*"

	// DefaultMaxMessageBytes is the default bound on a payload's size.
	DefaultMaxMessageBytes = 1 << 20
)

// ErrMalformed is matched by every error Parse returns.
var ErrMalformed = errors.New("invalidate: malformed message")

// OperatorPayload returns what an operator publishes to drop key: the key
// itself, or "=" and the key when the key is empty, is "*", starts with
// "=", "#" or a NUL byte, or ends with a newline.
func OperatorPayload(key string) string {
	if key == "" || key == allMarker || key[0] == escapeMarker || key[0] == tagMarker || key[0] == frameMarker || strings.HasSuffix(key, "\n") {
		return string(escapeMarker) + key
	}
	return key
}

// AppendFrame appends the library frame of m to dst.
func AppendFrame(dst []byte, m Message) []byte {
	flags := byte(0)
	if m.All {
		flags |= flagAll
	}
	if m.Sync {
		flags |= flagSync
	}
	if !m.Sent.IsZero() {
		flags |= flagSent
	}
	dst = append(dst, frameMarker, frameVersion, flags)
	dst = append(dst, m.Origin[:]...)
	if !m.Sent.IsZero() {
		dst = binary.BigEndian.AppendUint64(dst, uint64(m.Sent.UnixNano()))
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Namespace)))
	dst = append(dst, m.Namespace...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Keys)))
	for _, k := range m.Keys {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
	}
	return dst
}

// frameOverhead bounds the size of a frame with no namespace and no keys.
const frameOverhead = 3 + len(ID{}) + 8 + 2*binary.MaxVarintLen64

// Parse reads a payload received on the channel: an operator's plain key,
// "=" and a key, "*", or a library frame. A plain key loses one trailing
// newline ("\n" or "\r\n"), which `echo key | redis-cli -x PUBLISH` adds.
// Payloads longer than maxBytes (DefaultMaxMessageBytes when maxBytes <= 0)
// are refused. Every error matches ErrMalformed; Parse never panics.
func Parse(payload []byte, maxBytes int) (Message, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxMessageBytes
	}
	switch {
	case len(payload) > maxBytes:
		return Message{}, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrMalformed, len(payload), maxBytes)
	case len(payload) > 0 && payload[0] == frameMarker:
		return parseFrame(payload)
	case len(payload) > 0 && payload[0] == escapeMarker:
		return Message{Keys: []string{string(payload[1:])}}, nil
	case len(payload) > 0 && payload[0] == tagMarker:
		return parseTag(payload[1:])
	}
	key := string(payload)
	if k, ok := strings.CutSuffix(key, "\n"); ok {
		key = strings.TrimSuffix(k, "\r")
	}
	switch key {
	case "":
		return Message{}, fmt.Errorf("%w: empty key (publish \"=\" to drop the empty key)", ErrMalformed)
	case allMarker:
		return Message{All: true}, nil
	}
	return Message{Keys: []string{key}}, nil
}

// TagPayload returns the payload that drops the entries of tag born before
// clock: "#<clock>:<tag>", or "#:<tag>" for clock 0.
func TagPayload(clock uint64, tag string) string {
	if clock == 0 {
		return "#:" + tag
	}
	return "#" + strconv.FormatUint(clock, 10) + ":" + tag
}

// parseTag reads "<clock>:<tag>" or ":<tag>", the rest of a tag payload.
func parseTag(p []byte) (Message, error) {
	digits, tag, ok := strings.Cut(string(p), ":")
	if !ok {
		return Message{}, fmt.Errorf("%w: a tag payload is \"#<clock>:<tag>\" or \"#:<tag>\"", ErrMalformed)
	}
	var clock uint64
	if digits != "" {
		var err error
		if clock, err = strconv.ParseUint(digits, 10, 64); err != nil {
			return Message{}, fmt.Errorf("%w: tag clock %q", ErrMalformed, digits)
		}
	}
	return Message{Tags: []string{tag}, Clock: clock}, nil
}

// ownFrame reports whether payload is a frame of this version, other than
// a sync's, whose origin is id: one that the Bus id sent, and skips
// without parsing it (so it counts as its own even if it were malformed).
func ownFrame(payload string, id ID) bool {
	const idAt = 3
	return len(payload) >= idAt+len(id) && payload[0] == frameMarker && payload[1] == frameVersion &&
		payload[2]&flagSync == 0 && payload[idAt:idAt+len(id)] == string(id[:])
}

func parseFrame(p []byte) (Message, error) {
	bad := func(what string) (Message, error) {
		return Message{}, fmt.Errorf("%w: frame %s", ErrMalformed, what)
	}
	if len(p) < 3+len(ID{}) {
		return bad("truncated in its header")
	}
	if p[1] != frameVersion {
		return bad(fmt.Sprintf("of unknown version %d (this replica reads version %d)", p[1], frameVersion))
	}
	flags := p[2]
	if flags&^(flagAll|flagValues|flagSent|flagSync) != 0 {
		return bad(fmt.Sprintf("has unknown flags %#x", flags))
	}
	var m Message
	m.All = flags&flagAll != 0
	m.Sync = flags&flagSync != 0
	withValues := flags&flagValues != 0
	copy(m.Origin[:], p[3:])
	rest := p[3+len(ID{}):]
	if flags&flagSent != 0 {
		if len(rest) < 8 {
			return bad("truncated in its send time")
		}
		m.Sent = time.Unix(0, int64(binary.BigEndian.Uint64(rest)))
		rest = rest[8:]
	}
	field := func() ([]byte, bool) {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, false
		}
		b := rest[w : w+int(n)]
		rest = rest[w+int(n):]
		return b, true
	}
	ns, ok := field()
	if !ok {
		return bad("has a bad namespace length")
	}
	m.Namespace = string(ns)
	count, w := binary.Uvarint(rest)
	// Each key takes at least one byte (its length), so a count larger
	// than what is left is a lie, caught before allocating for it.
	if w <= 0 || count > uint64(len(rest)-w) {
		return bad("has a bad key count")
	}
	rest = rest[w:]
	if count > 0 {
		m.Keys = make([]string, 0, count)
	}
	for range count {
		k, ok := field()
		if !ok {
			return bad(fmt.Sprintf("has a bad length for key %d of %d", len(m.Keys)+1, count))
		}
		m.Keys = append(m.Keys, string(k))
		if !withValues {
			continue
		}
		if _, ok := field(); !ok {
			return bad(fmt.Sprintf("has a bad length for the value of key %d of %d", len(m.Keys), count))
		}
	}
	if len(rest) != 0 {
		return bad(fmt.Sprintf("has %d bytes after its last key", len(rest)))
	}
	if m.All && len(m.Keys) > 0 {
		return bad("says both all and some keys")
	}
	if !m.All && len(m.Keys) == 0 {
		return bad("carries no key")
	}
	if m.Sync && (m.All || len(m.Keys) != 1) {
		return bad("is a sync without exactly one token")
	}
	return m, nil
}
