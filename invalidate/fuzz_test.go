package invalidate

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary payloads to Parse: it must not panic, every
// error must match ErrMalformed, and a parsed frame must survive a round
// trip through AppendFrame.
func FuzzParse(f *testing.F) {
	f.Add([]byte("user:42"))
	f.Add([]byte("*"))
	f.Add([]byte("=*"))
	f.Add([]byte(""))
	f.Add(AppendFrame(nil, Message{Keys: []string{"a", "b c"}, Namespace: "ns", Origin: ID{1}}))
	f.Add(AppendFrame(nil, Message{All: true, Origin: ID{2}}))
	f.Add(AppendFrame(nil, Message{Keys: []string{"k"}, Origin: ID{4}, Sent: time.Unix(1_800_000_000, 5)}))
	f.Add(valuesFrame([]string{"k", ""}, [][]byte{[]byte("v"), nil}))
	f.Add([]byte{0, 1, 0})
	f.Add([]byte{0, 2, 0, 1})
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := Parse(payload, 4096)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not match ErrMalformed", err)
			}
			return
		}
		if !m.All && len(m.Keys) == 0 {
			t.Fatal("a parsed message carries nothing")
		}
		if len(payload) == 0 || payload[0] != 0 {
			return
		}
		again, err := Parse(AppendFrame(nil, m), 1<<20)
		if err != nil {
			t.Fatalf("re-encoded frame does not parse: %v", err)
		}
		if again.All != m.All || !slices.Equal(again.Keys, m.Keys) || again.Namespace != m.Namespace || again.Origin != m.Origin || !again.Sent.Equal(m.Sent) {
			t.Fatalf("round trip changed %+v to %+v", m, again)
		}
	})
}
