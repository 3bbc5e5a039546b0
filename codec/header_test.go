package codec

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTombstone(t *testing.T) {
	tomb := Tombstone()
	if want := []byte{0x01, 0x00, 0x80}; !bytes.Equal(tomb, want) {
		t.Fatalf("Tombstone() = % x, want % x", tomb, want)
	}
	if !IsTombstone(tomb) {
		t.Error("IsTombstone(Tombstone()) = false")
	}
	tomb[0] = 9 // the caller owns it
	if !IsTombstone(Tombstone()) {
		t.Error("changing one Tombstone() result changed the next")
	}
	for _, c := range codecs {
		f := mustNew(t, Options{Codec: c})
		var r record
		err := f.Decode(Tombstone(), &r)
		if !errors.Is(err, ErrTombstone) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode(Tombstone()) = %v, want ErrTombstone only", c.Name(), err)
		}
		for _, v := range []any{nil, "", []byte{}, record{}} {
			data, err := f.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			if IsTombstone(data) {
				t.Errorf("%s: IsTombstone(Encode(%#v)) = true", c.Name(), v)
			}
		}
	}
	for _, data := range [][]byte{nil, {}, {1, 0}, {1, 0, 0x80, 0xc0}, {1, 1, 0x80}, {1, 0, 0x81}, {2, 0, 0x80}} {
		if IsTombstone(data) {
			t.Errorf("IsTombstone(% x) = true", data)
		}
	}
}

func TestExpiryRoundTrip(t *testing.T) {
	f, err := New(Options{CompressAbove: 16})
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1_800_000_000_123)
	for _, v := range []any{
		"short",
		strings.Repeat("compressible ", 100), // S2 path
		map[string]int{"a": 1},
	} {
		data, err := f.EncodeExpiring(v, at)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := Expiry(data)
		if !ok || !got.Equal(at) {
			t.Fatalf("Expiry of %T = %v, %v; want %v", v, got, ok, at)
		}
		if IsTombstone(data) {
			t.Fatalf("a value reads as a tombstone")
		}
		plain, _ := f.Encode(v)
		if _, ok := Expiry(plain); ok {
			t.Fatal("Encode recorded an expiry")
		}
		// The expiry field does not change the value read back.
		want := reflect.New(reflect.TypeOf(v))
		if err := f.Decode(plain, want.Interface()); err != nil {
			t.Fatal(err)
		}
		dst := reflect.New(reflect.TypeOf(v))
		if err := f.Decode(data, dst.Interface()); err != nil {
			t.Fatalf("Decode of an expiring %T: %v", v, err)
		}
		if !reflect.DeepEqual(dst.Elem().Interface(), want.Elem().Interface()) {
			t.Fatalf("Decode of an expiring %T = %v, want %v", v, dst.Elem(), want.Elem())
		}
	}
}

func TestTombstoneExpiring(t *testing.T) {
	f, _ := New(Options{})
	at := time.UnixMilli(1_800_000_000_000)
	tomb := TombstoneExpiring(at)
	if !IsTombstone(tomb) {
		t.Fatalf("IsTombstone(% x) = false", tomb)
	}
	if got, ok := Expiry(tomb); !ok || !got.Equal(at) {
		t.Fatalf("Expiry = %v, %v; want %v", got, ok, at)
	}
	var s string
	if err := f.Decode(tomb, &s); !errors.Is(err, ErrTombstone) {
		t.Fatalf("Decode = %v, want ErrTombstone", err)
	}
	if !bytes.Equal(TombstoneExpiring(time.Time{}), Tombstone()) {
		t.Fatal("TombstoneExpiring(zero) differs from Tombstone()")
	}
	// Near misses are not tombstones, and carry no expiry.
	bad := append([]byte(nil), tomb...)
	clear(bad[3:]) // expiry 0
	for _, b := range [][]byte{bad, tomb[:10], append(tomb[:len(tomb):len(tomb)], 0)} {
		if IsTombstone(b) {
			t.Errorf("IsTombstone(% x) = true", b)
		}
	}
	if _, ok := Expiry(bad); ok {
		t.Error("an expiry of 0 was read as one")
	}
}

// Tags travel in the header: Tags reads them without decoding the value,
// Decode skips them, and a truncated or lying tags field is corrupt.
func TestTags(t *testing.T) {
	f := mustNew(t, Options{})
	exp := time.UnixMilli(1_800_000_000_000)
	for _, tags := range [][]string{{"tenant:7"}, {"a", "", strings.Repeat("t", 300)}} {
		data, err := f.EncodeTagged("value", exp, 42, tags)
		if err != nil {
			t.Fatal(err)
		}
		born, got, ok := Tags(data)
		if !ok || born != 42 || !slices.Equal(got, tags) {
			t.Fatalf("Tags = %d, %q, %v; want 42, %q", born, got, ok, tags)
		}
		if at, ok := Expiry(data); !ok || !at.Equal(exp) {
			t.Fatalf("Expiry = %v, %v", at, ok)
		}
		var v string
		if err := f.Decode(data, &v); err != nil || v != "value" {
			t.Fatalf("Decode = %q, %v", v, err)
		}
		for n := len(data) - len("value") - 2; n > headerLen+expiryLen; n-- {
			if err := f.Decode(data[:n], &v); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode of %d of %d bytes = %v, want ErrCorrupt", n, len(data), err)
			}
		}
	}
	plain, _ := f.EncodeExpiring("v", exp)
	if _, _, ok := Tags(plain); ok {
		t.Fatal("Tags of an untagged value reported tags")
	}
	lying := []byte{version, msgpackID, flagTags, 0, 0xff, 0xff, 0x03}
	if _, _, ok := Tags(lying); ok {
		t.Fatal("Tags of a field whose count lies reported tags")
	}
}
