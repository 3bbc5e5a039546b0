package invalidate

import (
	"bytes"
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
	for _, key := range []string{"", "*", "=", "=x", "\x00", "\x00frame", "plain", "a b", "x\ny", "**"} {
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
		{Keys: []string{"a", "b"}, Values: [][]byte{[]byte("\x01\x01\x00value"), {}}, Namespace: "ns", Origin: id},
		{Keys: []string{"t"}, Namespace: "ns", Origin: id, Sent: time.Unix(1_800_000_000, 123456789)},
	} {
		got, err := Parse(AppendFrame(nil, m), 0)
		if err != nil {
			t.Fatalf("Parse(AppendFrame(%+v)): %v", m, err)
		}
		if got.All != m.All || !slices.Equal(got.Keys, m.Keys) || got.Namespace != m.Namespace || got.Origin != m.Origin || !got.Sent.Equal(m.Sent) ||
			!slices.EqualFunc(got.Values, m.Values, bytes.Equal) || (got.Values == nil) != (m.Values == nil) {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	good := AppendFrame(nil, Message{Keys: []string{"k1", "k2"}, Namespace: "ns", Origin: ID{9}})
	withValues := AppendFrame(nil, Message{Keys: []string{"k1"}, Values: [][]byte{[]byte("abc")}, Namespace: "ns", Origin: ID{9}})
	cases := map[string][]byte{
		"empty":                 {},
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
		"all with values":       append(append([]byte{0, 1, flagAll | flagValues}, make([]byte, 16)...), 0, 0),
		"truncated send time":   append(append([]byte{0, 1, flagSent}, make([]byte, 16)...), 1, 2, 3),
	}
	for name, p := range cases {
		if _, err := Parse(p, 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	v2 := append([]byte{0, 2}, good[2:]...)
	if _, err := Parse(v2, 0); !errors.Is(err, ErrUnknownVersion) || !errors.Is(err, ErrMalformed) {
		t.Errorf("version 2: err = %v, want ErrUnknownVersion and ErrMalformed", err)
	}
	if _, err := Parse([]byte("0123456789"), 5); !errors.Is(err, ErrMalformed) {
		t.Errorf("over a custom limit: err = %v", err)
	}
}
