package codec

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The types and values below were encoded by the codec of tier before its
// msgpack coders were replaced by plain msgpack/v5 (commit 4c7618a; its
// compiled encoder wrote the same bytes as Format.Encode). Values of that
// kind are in Redis now, so these bytes must keep decoding to the same
// values, and Encode must keep writing them.

type storedAddress struct {
	City string `json:"city"`
	Zip  string `json:"zip,omitempty"`
}

type storedProfile struct {
	ID      int64            `json:"id"`
	Name    string           `json:"name"`
	Email   string           `json:"email,omitempty"`
	Score   float64          `json:"score"`
	Ratio   float32          `json:"ratio"`
	Active  bool             `json:"active"`
	Visits  int              `json:"visits"`
	Tags    []string         `json:"tags"`
	Limits  map[string]int64 `json:"limits"`
	Avatar  []byte           `json:"avatar"`
	Created time.Time        `json:"created"`
	Home    storedAddress    `json:"home"`
	Past    []storedAddress  `json:"past"`
	Manager *storedProfile   `json:"manager"`
	Note    string
}

var (
	storedUser = storedProfile{
		ID: 1234567890123, Name: "Zoë Ådler", Score: -12.75, Ratio: 0.5, Active: true, Visits: 300,
		Tags: []string{"admin", ""}, Limits: map[string]int64{"rps": 50}, Avatar: []byte{0, 1, 0xfe, 0xff},
		Created: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
		Home:    storedAddress{City: "Lyon", Zip: "69001"}, Past: []storedAddress{{City: "Oslo"}},
		Note: "plain field",
	}
	storedLong   = strings.Repeat("tier stores this line again and again; ", 40)
	storedExpiry = time.UnixMilli(1_800_000_000_123)
)

func TestDecodesStoredBytes(t *testing.T) {
	tests := []struct {
		name      string
		hex       string
		opts      Options   // of the Format that wrote it
		expires   time.Time // what EncodeExpiring was given, if anything
		in        any       // the value encoded
		newOut    func() any
		want      any  // what Decode gives into newOut(); nil: in
		orderFree bool // a map of several keys: Encode writes them in any order
	}{
		{
			name: "msgpack struct",
			hex: "0101008ea26964d30000011f71fb04cba46e616d65ab5a6fc3ab20c385646c6572a573636f7265cbc029800000000000" +
				"a5726174696fca3f000000a6616374697665c3a6766973697473cd012ca47461677392a561646d696ea0a66c696d697473" +
				"81a3727073d30000000000000032a6617661746172c4040001feffa763726561746564d7ff1d6f3454663881d9a4686f6d" +
				"6582a463697479a44c796f6ea37a6970a53639303031a4706173749181a463697479a44f736c6fa76d616e61676572c0a4" +
				"4e6f7465ab706c61696e206669656c64",
			in:     storedUser,
			newOut: func() any { return new(storedProfile) },
		},
		{
			name: "msgpack zero struct",
			hex: "0101008ea26964d30000000000000000a46e616d65a0a573636f7265cb0000000000000000a5726174696fca00000000" +
				"a6616374697665c2a676697369747300a474616773c0a66c696d697473c0a6617661746172c0a763726561746564c70cff" +
				"00000000fffffff1886e0900a4686f6d6581a463697479a0a470617374c0a76d616e61676572c0a44e6f7465a0",
			in:     storedProfile{},
			newOut: func() any { return new(storedProfile) },
		},
		{
			name:   "msgpack string",
			hex:    "010100ab68656c6c6f2c2074696572",
			in:     "hello, tier",
			newOut: func() any { return new(string) },
		},
		{
			name:   "msgpack int64",
			hex:    "010100d3fffffffffffffffe",
			in:     int64(-2),
			newOut: func() any { return new(int64) },
		},
		{
			name:      "msgpack map[string]any",
			hex:       "01010083a16ed3fffffffffffffff9a173a178a16c93c3c0cb3ff8000000000000",
			in:        map[string]any{"n": int64(-7), "s": "x", "l": []any{true, nil, 1.5}},
			newOut:    func() any { return new(map[string]any) },
			orderFree: true,
		},
		{
			name:   "msgpack S2",
			hex:    "0101019b0c84da0618746965722073746f7265732074686973206c696e6520616761696e20616e64090a043b2011271900e504",
			opts:   Options{CompressAbove: 64},
			in:     storedLong,
			newOut: func() any { return new(string) },
		},
		{
			name:    "msgpack with expiry",
			hex:     "010110000001a3185c507b82a463697479a44c796f6ea37a6970a53639303031",
			expires: storedExpiry,
			in:      storedUser.Home,
			newOut:  func() any { return new(storedAddress) },
		},
		{
			name:    "msgpack struct read as map, with expiry",
			hex:     "010110000001a3185c507b82a463697479a44c796f6ea37a6970a53639303031",
			expires: storedExpiry,
			in:      storedUser.Home,
			newOut:  func() any { return new(map[string]any) },
			want:    map[string]any{"city": "Lyon", "zip": "69001"},
		},
		{
			name:    "msgpack S2 with expiry",
			hex:     "010111000001a3185c507b9b0c84da0618746965722073746f7265732074686973206c696e6520616761696e20616e64090a043b2011271900e504",
			opts:    Options{CompressAbove: 64},
			expires: storedExpiry,
			in:      storedLong,
			newOut:  func() any { return new(string) },
		},
		{
			name: "JSON struct",
			hex: "0102007b226964223a313233343536373839303132332c226e616d65223a225a6fc3ab20c385646c6572222c2273636f72" +
				"65223a2d31322e37352c22726174696f223a302e352c22616374697665223a747275652c22766973697473223a3330302c" +
				"2274616773223a5b2261646d696e222c22225d2c226c696d697473223a7b22727073223a35307d2c22617661746172223a" +
				"224141482b2f773d3d222c2263726561746564223a22323032342d30352d30365430373a30383a30392e31323334353637" +
				"38395a222c22686f6d65223a7b2263697479223a224c796f6e222c227a6970223a223639303031227d2c2270617374223a" +
				"5b7b2263697479223a224f736c6f227d5d2c226d616e61676572223a6e756c6c2c224e6f7465223a22706c61696e206669" +
				"656c64227d",
			opts:   Options{Codec: JSON{}},
			in:     storedUser,
			newOut: func() any { return new(storedProfile) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stored, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			f := mustNew(t, tt.opts)

			out := tt.newOut()
			if err := f.Decode(stored, out); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := tt.want
			if want == nil {
				want = tt.in
			}
			if got := reflect.ValueOf(out).Elem().Interface(); !same(got, want) {
				t.Errorf("Decode gave %#v, want %#v", got, want)
			}
			at, ok := Expiry(stored)
			if ok != !tt.expires.IsZero() || ok && !at.Equal(tt.expires) {
				t.Errorf("Expiry = %v, %v; want %v", at, ok, tt.expires)
			}

			if tt.orderFree {
				return
			}
			data, err := f.EncodeExpiring(tt.in, tt.expires)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(data, stored) {
				t.Errorf("Encode wrote\n%x\nwant the stored\n%x", data, stored)
			}
		})
	}
}

func TestDecodesStoredTombstones(t *testing.T) {
	f := mustNew(t, Options{})
	for _, tt := range []struct {
		hex     string
		made    []byte
		expires time.Time
	}{
		{"010080", Tombstone(), time.Time{}},
		{"010090000001a3185c507b", TombstoneExpiring(storedExpiry), storedExpiry},
	} {
		stored, err := hex.DecodeString(tt.hex)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tt.made, stored) {
			t.Errorf("tombstone is %x, want the stored %x", tt.made, stored)
		}
		if !IsTombstone(stored) {
			t.Errorf("IsTombstone(%x) = false", stored)
		}
		if err := f.Decode(stored, new(string)); !errors.Is(err, ErrTombstone) {
			t.Errorf("Decode(%x) = %v, want ErrTombstone", stored, err)
		}
		at, ok := Expiry(stored)
		if ok != !tt.expires.IsZero() || ok && !at.Equal(tt.expires) {
			t.Errorf("Expiry(%x) = %v, %v; want %v", stored, at, ok, tt.expires)
		}
	}
}
