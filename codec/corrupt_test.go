package codec

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
)

// hostile returns msgpack-format bytes with a header.
func hostile(payload ...byte) []byte {
	return append([]byte{version, msgpackID, compressNone}, payload...)
}

func TestDecodeCorrupt(t *testing.T) {
	f := mustNew(t, Options{Codecs: []Codec{panicCodec{rawCodec{id: 201}}}})
	valid, err := f.Encode(sampleRecord())
	if err != nil {
		t.Fatal(err)
	}
	packed := mustNew(t, Options{CompressAbove: 1})
	compressed, err := packed.Encode(strings.Repeat("compress me ", 100))
	if err != nil {
		t.Fatal(err)
	}
	if compressed[2] != compressS2 {
		t.Fatal("test value did not compress")
	}
	// S2 blocks carry no checksum, so damage is detected only where it
	// breaks the block's structure, such as the announced length.
	damaged := bytes.Clone(compressed)
	damaged[headerLen]++
	jsonString, _ := mustNew(t, Options{Codec: JSON{}}).Encode("just a string")
	msgpackString, _ := f.Encode("just a string")
	deep := func(n int) []byte {
		return hostile(append(bytes.Repeat([]byte{0x91}, n), 0xc0)...)
	}

	tests := []struct {
		name string
		data []byte
		into func() any
		msg  string // the error text must contain this
	}{
		{"nil", nil, newRecord, "empty input"},
		{"empty", []byte{}, newRecord, "empty input"},
		{"one byte", []byte{1}, newRecord, "truncated header"},
		{"two bytes", []byte{1, 1}, newRecord, "truncated header"},
		{"version 0", []byte{0, 1, 0, 0xc0}, newRecord, "unknown format version 0"},
		{"version 2", []byte{2, 1, 0, 0xc0}, newRecord, "unknown format version 2"},
		{"raw JSON", []byte(`{"name":"x"}`), newRecord, "unknown format version 123"},
		{"codec 0", []byte{1, 0, 0, 0xc0}, newRecord, "unknown codec ID 0"},
		{"reserved codec", []byte{1, 9, 0, 0xc0}, newRecord, "unknown codec ID 9"},
		{"unregistered user codec", []byte{1, 200, 0, 0xc0}, newRecord, "unknown codec ID 200"},
		{"compression 2", []byte{1, 1, 2, 0xc0}, newRecord, "unknown compression ID 2"},
		{"compression 15", []byte{1, 1, 0x0f, 0xc0}, newRecord, "unknown compression ID 15"},
		{"reserved flag", []byte{1, 1, 0x40, 0xc0}, newRecord, "unknown flags 0x40"},
		{"malformed tags", []byte{1, 1, 0x20, 0xc0}, newRecord, "malformed tags field"},
		{"truncated expiry", []byte{1, 1, 0x10, 0, 0, 1}, newRecord, "truncated expiry"},
		{"expiring tombstone with payload", []byte{1, 0, 0x90, 0, 0, 0, 0, 0, 0, 0, 1, 0xc0}, newRecord, "malformed tombstone"},
		{"tombstone with payload", []byte{1, 0, 0x80, 0xc0}, newRecord, "malformed tombstone"},
		{"tombstone with codec", []byte{1, 1, 0x80}, newRecord, "malformed tombstone"},
		{"tombstone with compression", []byte{1, 0, 0x81}, newRecord, "malformed tombstone"},
		{"header only", []byte{1, 1, 0}, newRecord, "empty data"},
		{"header only JSON", []byte{1, 2, 0}, newRecord, "json"},
		{"truncated value", valid[:len(valid)-1], newRecord, "msgpack"},
		{"trailing bytes", append(bytes.Clone(valid), 0xc0), newRecord, "1 bytes after the value"},
		{"never-used byte 0xc1", hostile(0xc1), newAny, "invalid type byte 0xc1"},
		{"truncated string", hostile(0xa5, 'a'), newString, "runs past the end"},
		{"s2 empty", []byte{1, 1, 1}, newRecord, "s2"},
		{"s2 bad length", []byte{1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, newRecord, "s2"},
		{"s2 truncated", compressed[:len(compressed)-3], newString, "s2"},
		{"s2 wrong length", damaged, newString, "s2"},
		{"s2 uncompressed bytes as s2", []byte{1, 1, 1, 0xa1, 'x'}, newString, "s2"},
		{"string as struct (msgpack)", msgpackString, newRecord, "decoding into *codec.record"},
		{"string as struct (JSON)", jsonString, newRecord, "cannot unmarshal string"},
		{"string as int", msgpackString, func() any { return new(int) }, "msgpack"},
		{"bad JSON", []byte{1, 2, 0, '{'}, newAny, "json"},
		{"JSON trailing data", []byte{1, 2, 0, '1', ' ', '2'}, newAny, "json"},
		{"panicking codec", []byte{1, 201, 0, 'x'}, newString, "panic while decoding into *string: boom"},
		{"array32 of 4G items", hostile(0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0), newAny, "declares 4294967295 items"},
		{"array32 into []record", hostile(0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0), func() any { return new([]record) }, "declares"},
		{"array16 into []any", hostile(0xdc, 0xff, 0xff, 0xc0), func() any { return new([]any) }, "declares 65535 items"},
		{"map32 of 4G entries", hostile(0xdf, 0xff, 0xff, 0xff, 0xff, 0xa0, 0xc0), newAny, "declares 8589934590 items"},
		{"map32 into map[string]any", hostile(0xdf, 0x00, 0xff, 0xff, 0xff, 0xa0, 0xc0), func() any { return new(map[string]any) }, "declares"},
		{"map32 into map[string]record", hostile(0xdf, 0x00, 0xff, 0xff, 0xff, 0xa0, 0xc0), func() any { return new(map[string]record) }, "declares"},
		{"str32 of 4 GiB", hostile(0xdb, 0xff, 0xff, 0xff, 0xff, 'a'), newString, "runs past the end"},
		{"bin32 of 4 GiB", hostile(0xc6, 0xff, 0xff, 0xff, 0xff, 'a'), func() any { return new([]byte) }, "runs past the end"},
		{"ext32 of 4 GiB", hostile(0xc9, 0xff, 0xff, 0xff, 0xff, 0xff, 'a'), newAny, "runs past the end"},
		{"nested arrays claiming 65535 items", hostile(bytes.Repeat([]byte{0xdc, 0xff, 0xff}, 1000)...), newAny, "declares"},
		{"nested 10001 deep", deep(10001), newAny, "nested more than 10000 deep"},
		{"nested 1M deep", deep(1 << 20), newAny, "nested more than 10000 deep"},
		{"bad time ext", hostile(0xd5, 0xff, 0, 0), func() any { return new(time.Time) }, "msgpack"},
		{"empty ext", hostile(0x92, 0xc7, 0x00, 0x05, 0x80), newAny, "empty body"},
		{"interned index 0x85", hostile(0xd4, 0x80, 0x85), newAny, "inside an extension"},
		// msgpack/v5 reads a map header out of an extension's body where it
		// wants a map, then the map's items past the body (found by
		// FuzzDecode: a 4G-entry map[string]any).
		{"map header in ext body", hostile(0xd7, 0x30, 0xdf, 0x30, 0xff, 0x30, 0x30, 0x30, 0x30, 0x30), func() any { return new(map[string]any) }, "inside an extension"},
		{"map header in time ext body", hostile(0xd6, 0xff, 0xdf, 0xff, 0xff, 0xff), func() any { return new(map[string]int) }, "inside an extension"},
		{"nil in ext body", hostile(0x92, 0xc7, 0x06, 0x01, 0xc0, 0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0), func() any { return new([]map[string]any) }, "inside an extension"},
		// The same detour nests without limit in a type that holds itself
		// through a map, which would overflow the stack.
		{"ext-wrapped maps nested 1M deep", extNest(1 << 20), func() any { return new([]node) }, "inside an extension"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := f.Decode(tt.data, tt.into())
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode(% .20x) = %v, want ErrCorrupt", tt.data, err)
			}
			if !strings.HasPrefix(err.Error(), "codec: corrupt data: ") || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			// A hostile length must not make Decode allocate in proportion
			// to it, only to the input; 16 MiB is far below any of the
			// lengths above.
			if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20+8*uint64(len(tt.data)) {
				t.Errorf("Decode of %d bytes allocated %d bytes", len(tt.data), n)
			}
		})
	}
}

// node holds itself through a map.
type node struct {
	Kids map[string]*node
}

// extNest returns a []node whose first node msgpack/v5 would read as
// nested n deep, each Kids map wrapped in an extension whose body is the
// map's header. checkMsgpack reads it as a flat array of 2n+1 items.
func extNest(n int) []byte {
	level := []byte{0x81, 0xa4, 'K', 'i', 'd', 's', 0xd4, 0x01, 0x81, 0xa1, 'a'}
	items := binary.BigEndian.AppendUint32([]byte{0xdd}, uint32(2*n+1))
	return hostile(append(append(items, bytes.Repeat(level, n)...), 0xc0)...)
}

func newRecord() any { return new(record) }
func newAny() any    { return new(any) }
func newString() any { return new(string) }

// TestDecodeDeepNesting checks that the depth limit is not lower than
// documented: a value nested 10000 deep decodes.
func TestDecodeDeepNesting(t *testing.T) {
	f := mustNew(t, Options{})
	data := hostile(append(bytes.Repeat([]byte{0x91}, maxMsgpackDepth), 0x01)...)
	var v any
	if err := f.Decode(data, &v); err != nil {
		t.Fatal(err)
	}
	for range maxMsgpackDepth {
		s, ok := v.([]any)
		if !ok || len(s) != 1 {
			t.Fatalf("got %T, want a one-element []any", v)
		}
		v = s[0]
	}
	if v != int8(1) {
		t.Errorf("innermost value %#v, want int8(1)", v)
	}
}

func TestDecodeMaxSize(t *testing.T) {
	big := strings.Repeat("x", 1000)
	for _, compress := range []int{0, 1} {
		w := mustNew(t, Options{CompressAbove: compress})
		data, err := w.Encode(big)
		if err != nil {
			t.Fatal(err)
		}
		var s string
		r := mustNew(t, Options{MaxSize: 999})
		err = r.Decode(data, &s)
		if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrTooLarge) {
			t.Errorf("compress=%d: Decode over MaxSize = %v, want ErrCorrupt and ErrTooLarge", compress, err)
		}
		r = mustNew(t, Options{MaxSize: 1003}) // the msgpack payload: 3 bytes of length, then the string
		if err := r.Decode(data, &s); err != nil || s != big {
			t.Errorf("compress=%d: Decode at MaxSize: %v", compress, err)
		}
	}

	// An S2 block that announces 1 GiB is refused before anything is
	// allocated for it.
	bomb := append([]byte{version, msgpackID, compressS2}, s2.Encode(nil, []byte{0xc0})...)
	bomb = append(bomb[:headerLen], append([]byte{0x80, 0x80, 0x80, 0x80, 0x04}, bomb[headerLen+1:]...)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var v any
	err := mustNew(t, Options{}).Decode(bomb, &v)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "payload is 1073741824 bytes") {
		t.Errorf("S2 bomb: %v, want ErrCorrupt and ErrTooLarge for 1073741824 bytes", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("S2 bomb: Decode allocated %d bytes", n)
	}
}

func TestDecodeUnwrapsCodecError(t *testing.T) {
	f := mustNew(t, Options{Codec: JSON{}})
	data, err := f.Encode("s")
	if err != nil {
		t.Fatal(err)
	}
	err = f.Decode(data, new(int))
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) || !errors.Is(err, ErrCorrupt) {
		t.Errorf("Decode error %v does not wrap the codec's *json.UnmarshalTypeError", err)
	}
}

func TestDecodeBadTarget(t *testing.T) {
	f := mustNew(t, Options{})
	data, err := f.Encode("x")
	if err != nil {
		t.Fatal(err)
	}
	var nilPtr *string
	for _, v := range []any{nil, "x", nilPtr} {
		err := f.Decode(data, v)
		if err == nil || errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), "codec: Decode needs a non-nil pointer") {
			t.Errorf("Decode into %#v: %v, want a non-nil pointer error that is not ErrCorrupt", v, err)
		}
	}
}
