package invalidate

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseOperatorForms(t *testing.T) {
	cases := []struct {
		payload string
		keys    []string
		all     bool
	}{
		{"user:42", []string{"user:42"}, false},
		{"key with spaces", []string{"key with spaces"}, false},
		{"line1\nline2", []string{"line1\nline2"}, false},
		{`say "hi"`, []string{`say "hi"`}, false},
		{"{tag}:k", []string{"{tag}:k"}, false},
		{"ключ", []string{"ключ"}, false},
		{"*", nil, true},
		{"=*", []string{"*"}, false},
		{"=", []string{""}, false},
		{"==x", []string{"=x"}, false},
		{"=\x00x", []string{"\x00x"}, false},
		{"**", []string{"**"}, false},
		// What `echo KEY | redis-cli -x PUBLISH` sends: one newline is not
		// part of the key; the "=" form keeps every byte.
		{"user:42\n", []string{"user:42"}, false},
		{"user:42\r\n", []string{"user:42"}, false},
		{"*\n", nil, true},
		{"a\n\n", []string{"a\n"}, false},
		{"a\r", []string{"a\r"}, false},
		{"=a\n", []string{"a\n"}, false},
		{"=#x", []string{"#x"}, false},
	}
	for _, tc := range cases {
		m, err := Parse([]byte(tc.payload), 0)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.payload, err)
		}
		if m.All != tc.all || !slices.Equal(m.Keys, tc.keys) {
			t.Fatalf("Parse(%q) = %+v, want keys %q all %v", tc.payload, m, tc.keys, tc.all)
		}
	}
}

func TestOperatorPayloadExpressesEveryKey(t *testing.T) {
	for _, key := range []string{"", "*", "=", "=x", "\x00", "\x00frame", "plain", "a b", "x\ny", "**", "a\n", "a\r\n", "a\r", "\n", "#tag"} {
		m, err := Parse([]byte(OperatorPayload(key)), 0)
		if err != nil || m.All || len(m.Keys) != 1 || m.Keys[0] != key {
			t.Fatalf("key %q: payload %q parsed to %+v, %v", key, OperatorPayload(key), m, err)
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	id := ID{1, 2, 3}
	for _, m := range []Message{
		{Keys: []string{"a"}, Namespace: "ns", Origin: id},
		{Keys: []string{"", "*", "x\ny", strings.Repeat("k", 1000)}, Origin: id},
		{All: true, Namespace: "users", Origin: id},
		{Keys: []string{"t"}, Namespace: "ns", Origin: id, Sent: time.Unix(1_800_000_000, 123456789)},
		{Keys: []string{"token"}, Sync: true, Namespace: "ns", Origin: id},
	} {
		got, err := Parse(AppendFrame(nil, m), 0)
		if err != nil {
			t.Fatalf("Parse(AppendFrame(%+v)): %v", m, err)
		}
		if got.All != m.All || !slices.Equal(got.Keys, m.Keys) || got.Namespace != m.Namespace || got.Origin != m.Origin || !got.Sent.Equal(m.Sent) || got.Sync != m.Sync {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	}
}

// valuesFrame is a frame as versions that pushed values wrote it: each key
// followed by its value.
func valuesFrame(keys []string, values [][]byte) []byte {
	p := append([]byte{frameMarker, frameVersion, flagValues}, make([]byte, len(ID{}))...)
	p = append(p, 2, 'n', 's', byte(len(keys)))
	for i, k := range keys {
		p = append(append(p, byte(len(k))), k...)
		p = append(append(p, byte(len(values[i]))), values[i]...)
	}
	return p
}

// A frame of an older version, which carried values, drops its keys: a
// replica upgraded during a rolling deploy still hears the others.
func TestParseReadsOlderValueFrames(t *testing.T) {
	m, err := Parse(valuesFrame([]string{"a", "b"}, [][]byte{[]byte("v1"), {}}), 0)
	if err != nil || m.All || !slices.Equal(m.Keys, []string{"a", "b"}) || m.Namespace != "ns" {
		t.Fatalf("Parse = %+v, %v; want the keys a and b", m, err)
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	good := AppendFrame(nil, Message{Keys: []string{"k1", "k2"}, Namespace: "ns", Origin: ID{9}})
	withValues := valuesFrame([]string{"k1"}, [][]byte{[]byte("abc")})
	cases := map[string][]byte{
		"empty":                 {},
		"newline only":          []byte("\n"),
		"sync of two tokens":    AppendFrame(nil, Message{Keys: []string{"a", "b"}, Sync: true}),
		"sync of all":           AppendFrame(nil, Message{All: true, Sync: true}),
		"too large":             []byte(strings.Repeat("x", DefaultMaxMessageBytes+1)),
		"marker only":           {0},
		"unknown flags":         append([]byte{0, 1, 0x80}, good[3:]...),
		"truncated header":      good[:10],
		"truncated key":         good[:len(good)-1],
		"trailing bytes":        append(append([]byte(nil), good...), 'x'),
		"count too large":       append(append([]byte{0, 1, 0}, make([]byte, 16)...), 0, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"no keys":               AppendFrame(nil, Message{Origin: ID{1}}),
		"all and keys":          AppendFrame(nil, Message{All: true, Keys: []string{"k"}}),
		"bad namespace size":    append(append([]byte{0, 1, 0}, make([]byte, 16)...), 0x80),
		"values flag, no value": append([]byte{0, 1, flagValues}, good[3:]...),
		"truncated value":       withValues[:len(withValues)-1],
		"value too long":        append(withValues[:len(withValues)-4:len(withValues)-4], 9, 'a', 'b', 'c'),
		"truncated send time":   append(append([]byte{0, 1, flagSent}, make([]byte, 16)...), 1, 2, 3),
	}
	for name, p := range cases {
		if _, err := Parse(p, 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	v2 := append([]byte{0, 2}, good[2:]...)
	if _, err := Parse(v2, 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("version 2: err = %v, want ErrMalformed", err)
	}
	if _, err := Parse([]byte("0123456789"), 5); !errors.Is(err, ErrMalformed) {
		t.Errorf("over a custom limit: err = %v", err)
	}
}

func TestParseTagPayloads(t *testing.T) {
	for _, tc := range []struct {
		payload string
		tag     string
		clock   uint64
	}{
		{TagPayload(12, "tenant:7"), "tenant:7", 12},
		{TagPayload(0, "t"), "t", 0},
		{"#:", "", 0},
		{"#18446744073709551615:x", "x", 1<<64 - 1},
	} {
		m, err := Parse([]byte(tc.payload), 0)
		if err != nil || len(m.Keys) != 0 || !slices.Equal(m.Tags, []string{tc.tag}) || m.Clock != tc.clock {
			t.Errorf("Parse(%q) = %+v, %v; want tag %q at %d", tc.payload, m, err, tc.tag, tc.clock)
		}
	}
	for _, bad := range []string{"#tenant", "#x1:t", "#-1:t", "#18446744073709551616:t"} {
		if _, err := Parse([]byte(bad), 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

// A Bus skips its own frames unparsed: ownFrame must know them, and only
// them; a sync of its own is parsed, to end the wait for it.
func TestOwnFrame(t *testing.T) {
	var me, other ID
	copy(me[:], "me")
	copy(other[:], "other")
	frame := func(m Message) string { return string(AppendFrame(nil, m)) }
	mine := frame(Message{Keys: []string{"k"}, Namespace: "ns", Origin: me, Sent: time.Now()})
	for _, c := range []struct {
		name    string
		payload string
		want    bool
	}{
		{"mine", mine, true},
		{"mine, of all keys", frame(Message{All: true, Origin: me}), true},
		{"another's", frame(Message{Keys: []string{"k"}, Origin: other}), false},
		{"a sync of mine", frame(Message{Keys: []string{"token"}, Origin: me, Sync: true}), false},
		{"truncated in its origin", mine[:3+len(me)-1], false},
		{"an operator's key", "me", false},
		{"another version", mine[:1] + string(rune(frameVersion+1)) + mine[2:], false},
	} {
		if got := ownFrame(c.payload, me); got != c.want {
			t.Errorf("ownFrame(%s) = %v; want %v", c.name, got, c.want)
		}
	}
}
