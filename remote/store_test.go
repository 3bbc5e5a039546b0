package remote_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tier-cache/tier/remote"
)

func TestGetMiss(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		it, ok, err := s.Get(testCtx(t), "absent")
		if err != nil || ok || it.Value != nil || it.TTL != 0 {
			t.Fatalf("Get(absent) = %+v, %v, %v; want zero Item, false, nil", it, ok, err)
		}
	})
}

func TestSetGetReportsTTL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		mustSet(t, s, "k", "hello", 10*time.Second)

		it, ok := mustGet(t, s, "k")
		if !ok || string(it.Value) != "hello" {
			t.Fatalf("Get = %q, %v; want \"hello\", true", it.Value, ok)
		}
		if it.TTL <= 9*time.Second || it.TTL > 10*time.Second {
			t.Fatalf("TTL = %v, want in (9s, 10s]", it.TTL)
		}
		if e.fastForward == nil {
			return // a real server's clock cannot be moved
		}

		e.fastForward(4 * time.Second)
		it, ok = mustGet(t, s, "k")
		if !ok || it.TTL != 6*time.Second {
			t.Fatalf("after 4s: Get = %+v, %v; want TTL 6s", it, ok)
		}
		e.fastForward(6 * time.Second)
		if it, ok := mustGet(t, s, "k"); ok {
			t.Fatalf("after 10s: Get = %+v, true; want a miss", it)
		}
	})
}

func TestSetOverwrites(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		mustSet(t, s, "k", "old", time.Minute)
		mustSet(t, s, "k", "new", time.Hour)
		it, ok := mustGet(t, s, "k")
		if !ok || string(it.Value) != "new" || it.TTL <= time.Minute {
			t.Fatalf("Get = %q (TTL %v), %v; want \"new\" with about an hour", it.Value, it.TTL, ok)
		}
	})
}

func TestValuesAreBinarySafe(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		values := map[string][]byte{
			"empty":  {},
			"nul":    {0, 0, 0},
			"binary": {0xff, 0xfe, '\r', '\n', '$', '-', '1', '\r', '\n'},
			"big":    bytes.Repeat([]byte("0123456789abcdef"), 1<<15), // 512 KiB
		}
		for k, v := range values {
			if err := s.Set(testCtx(t), k, v, time.Minute); err != nil {
				t.Fatalf("Set(%q): %v", k, err)
			}
		}
		for k, v := range values {
			it, ok := mustGet(t, s, k)
			if !ok || !bytes.Equal(it.Value, v) {
				t.Errorf("Get(%q) = %d bytes, %v; want %d bytes, true", k, len(it.Value), ok, len(v))
			}
		}
		// An empty value is a hit, not a miss.
		if it, ok := mustGet(t, s, "empty"); !ok || it.Value == nil {
			t.Errorf("Get(empty) = %#v, %v; want a non-nil empty value and true", it.Value, ok)
		}
	})
}

func TestGetReturnsCallerOwnedBytes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		mustSet(t, s, "k", "abc", time.Minute)
		it, _ := mustGet(t, s, "k")
		it.Value[0] = 'X'
		again, _ := mustGet(t, s, "k")
		if string(again.Value) != "abc" {
			t.Fatalf("second Get = %q after changing the first result; want \"abc\"", again.Value)
		}
	})
}

func TestNamespaceIsolation(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		raw := e.client(t)
		a := e.store(t, remote.Options{Namespace: "a"})
		b := e.store(t, remote.Options{Namespace: "b"})
		def := e.store(t, remote.Options{})

		mustSet(t, a, "k", "from a", time.Minute)
		if it, ok := mustGet(t, b, "k"); ok {
			t.Fatalf("b sees a's key: %q", it.Value)
		}
		if it, ok := mustGet(t, def, "k"); ok {
			t.Fatalf("the default namespace sees a's key: %q", it.Value)
		}
		if got, err := raw.Get(testCtx(t), "a:k").Result(); err != nil || got != "from a" {
			t.Fatalf("raw GET a:k = %q, %v; want \"from a\"", got, err)
		}
		if a.Key("k") != "a:k" || def.Key("k") != "tier:k" || def.Namespace() != remote.DefaultNamespace {
			t.Fatalf("Key = %q, %q, Namespace = %q", a.Key("k"), def.Key("k"), def.Namespace())
		}

		mustSet(t, b, "k", "from b", time.Minute)
		if err := b.Delete(testCtx(t), "k"); err != nil {
			t.Fatal(err)
		}
		if it, ok := mustGet(t, a, "k"); !ok || string(it.Value) != "from a" {
			t.Fatalf("b's delete touched a: Get = %q, %v", it.Value, ok)
		}
		m, err := b.GetMany(testCtx(t), []string{"k"})
		if err != nil || len(m) != 0 {
			t.Fatalf("b.GetMany = %v, %v; want empty", m, err)
		}
	})
}

func TestGetMany(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		mustSet(t, s, "one", "1", time.Minute)
		mustSet(t, s, "three", "3", time.Hour)

		got, err := s.GetMany(testCtx(t), []string{"one", "two", "three", "one", "four"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("GetMany = %v, want 2 entries", got)
		}
		if it := got["one"]; string(it.Value) != "1" || it.TTL <= 59*time.Second || it.TTL > time.Minute {
			t.Errorf("one = %q (TTL %v)", it.Value, it.TTL)
		}
		if it := got["three"]; string(it.Value) != "3" || it.TTL <= 59*time.Minute || it.TTL > time.Hour {
			t.Errorf("three = %q (TTL %v)", it.Value, it.TTL)
		}
		if _, ok := got["two"]; ok {
			t.Error("a missing key is in the map")
		}

		for _, keys := range [][]string{nil, {}} {
			got, err := s.GetMany(testCtx(t), keys)
			if err != nil || got == nil || len(got) != 0 {
				t.Errorf("GetMany(%#v) = %#v, %v; want an empty non-nil map", keys, got, err)
			}
		}
	})
}

func TestSetMany(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		items := map[string]remote.Item{
			"a": {Value: []byte("A"), TTL: time.Minute},
			"b": {Value: []byte("B"), TTL: time.Hour},
			"c": {Value: []byte{}, TTL: 1500 * time.Millisecond},
		}
		if err := s.SetMany(testCtx(t), items); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetMany(testCtx(t), []string{"a", "b", "c"})
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range items {
			it, ok := got[k]
			if !ok || !bytes.Equal(it.Value, want.Value) || it.TTL > want.TTL || it.TTL < want.TTL-time.Second {
				t.Errorf("%s = %q (TTL %v), %v; want %q with TTL just under %v", k, it.Value, it.TTL, ok, want.Value, want.TTL)
			}
		}
		if err := s.SetMany(testCtx(t), nil); err != nil {
			t.Errorf("SetMany(nil) = %v", err)
		}
	})
}

func TestSetManyRejectsBadTTLAndWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		err := s.SetMany(testCtx(t), map[string]remote.Item{
			"good": {Value: []byte("g"), TTL: time.Minute},
			"bad":  {Value: []byte("b")},
		})
		if err == nil || !strings.Contains(err.Error(), `"bad"`) || !strings.HasPrefix(err.Error(), "remote: ") {
			t.Fatalf("SetMany with a zero TTL: err = %v; want an error naming \"bad\"", err)
		}
		if _, ok := mustGet(t, s, "good"); ok {
			t.Fatal("SetMany wrote an item although another was rejected")
		}
	})
}

func TestSetRejectsNonPositiveTTL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		for _, ttl := range []time.Duration{0, -time.Second, -1} {
			err := s.Set(testCtx(t), "k", []byte("v"), ttl)
			if err == nil || !strings.Contains(err.Error(), `"k"`) {
				t.Errorf("Set with ttl %v: err = %v; want an error naming the key", ttl, err)
			}
		}
		if _, ok := mustGet(t, s, "k"); ok {
			t.Fatal("a rejected Set wrote the key")
		}
	})
}

func TestSubMillisecondTTLRoundsUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		if e.fastForward == nil {
			t.Skip("needs a server clock that stands still")
		}
		s := e.store(t, remote.Options{})
		mustSet(t, s, "tiny", "v", time.Microsecond)
		mustSet(t, s, "odd", "v", 1500*time.Microsecond)
		if it, ok := mustGet(t, s, "tiny"); !ok || it.TTL != time.Millisecond {
			t.Errorf("tiny: TTL %v, %v; want 1ms", it.TTL, ok)
		}
		if it, ok := mustGet(t, s, "odd"); !ok || it.TTL != 2*time.Millisecond {
			t.Errorf("odd: TTL %v, %v; want 2ms", it.TTL, ok)
		}
	})
}

func TestKeyWithoutExpiryReportsZeroTTL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		if err := e.client(t).Set(testCtx(t), s.Key("forever"), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		it, ok := mustGet(t, s, "forever")
		if !ok || string(it.Value) != "v" || it.TTL != 0 {
			t.Fatalf("Get = %+v, %v; want \"v\" with TTL 0", it, ok)
		}
		m, err := s.GetMany(testCtx(t), []string{"forever"})
		if err != nil || m["forever"].TTL != 0 || string(m["forever"].Value) != "v" {
			t.Fatalf("GetMany = %v, %v", m, err)
		}
	})
}

func TestWrongTypeIsAnErrorNotAMiss(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		if err := e.client(t).HSet(testCtx(t), s.Key("h"), "f", "v").Err(); err != nil {
			t.Fatal(err)
		}
		_, ok, err := s.Get(testCtx(t), "h")
		if err == nil || ok || !strings.Contains(err.Error(), "WRONGTYPE") || !strings.HasPrefix(err.Error(), `remote: get "h": `) {
			t.Fatalf("Get(hash) = %v, %v; want a WRONGTYPE error naming the key", ok, err)
		}
		mustSet(t, s, "fine", "v", time.Minute)
		_, err = s.GetMany(testCtx(t), []string{"fine", "h"})
		if err == nil || !strings.Contains(err.Error(), `"h"`) {
			t.Fatalf("GetMany with a hash: err = %v; want an error naming \"h\"", err)
		}
	})
}

func TestDelete(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		stores := map[string]*remote.Store{
			"as is":              e.store(t, remote.Options{}),
			"hidden client":      mustNew(t, hidden{e.client(t)}, remote.Options{}),
			"as is, other space": e.store(t, remote.Options{Namespace: "other"}),
		}
		for name, s := range stores {
			t.Run(name, func(t *testing.T) {
				var keys []string
				for i := range 10 {
					k := fmt.Sprintf("key-%d", i)
					keys = append(keys, k)
					mustSet(t, s, k, k, time.Minute)
				}
				if err := s.Delete(testCtx(t), append(keys[:5:5], "never-set")...); err != nil {
					t.Fatal(err)
				}
				got, err := s.GetMany(testCtx(t), keys)
				if err != nil {
					t.Fatal(err)
				}
				for i, k := range keys {
					if _, ok := got[k]; ok != (i >= 5) {
						t.Errorf("%s present = %v after deleting the first five", k, ok)
					}
				}
				if err := s.Delete(testCtx(t)); err != nil {
					t.Errorf("Delete() = %v", err)
				}
				if err := s.Delete(testCtx(t), keys[9]); err != nil {
					t.Fatal(err)
				}
				if _, ok := mustGet(t, s, keys[9]); ok {
					t.Error("Delete of one key left it")
				}
			})
		}
	})
}

// oddKeys are keys that break code which builds commands from strings,
// splits on separators or assumes printable text.
var oddKeys = []string{
	"",
	" ",
	"a b",
	"line\nbreak",
	"\r\n",
	"*1\r\n$4\r\nPING\r\n",
	"tab\there",
	"ünïcödé 🗝",
	"{tag}",
	"}{",
	"{}",
	"a:b:c",
	":",
	"\x00bin\xff",
	"%s %d %q",
	strings.Repeat("long", 1000),
}

func TestOddKeys(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, s := range []*remote.Store{
			e.store(t, remote.Options{}),
			mustNew(t, hidden{e.client(t)}, remote.Options{Namespace: "spread"}),
		} {
			raw := e.client(t)
			for i, k := range oddKeys {
				mustSet(t, s, k, fmt.Sprint(i), time.Minute)
			}
			for i, k := range oddKeys {
				it, ok := mustGet(t, s, k)
				if !ok || string(it.Value) != fmt.Sprint(i) {
					t.Errorf("Get(%q) = %q, %v; want %q", k, it.Value, ok, fmt.Sprint(i))
				}
				if got, err := raw.Get(testCtx(t), s.Namespace()+":"+k).Result(); err != nil || got != fmt.Sprint(i) {
					t.Errorf("raw GET of %q = %q, %v", s.Key(k), got, err)
				}
			}
			got, err := s.GetMany(testCtx(t), oddKeys)
			if err != nil || len(got) != len(oddKeys) {
				t.Fatalf("GetMany(odd keys) = %d entries, %v; want %d", len(got), err, len(oddKeys))
			}
			items := make(map[string]remote.Item)
			for _, k := range oddKeys {
				items[k] = remote.Item{Value: []byte("again " + k), TTL: time.Minute}
			}
			if err := s.SetMany(testCtx(t), items); err != nil {
				t.Fatal(err)
			}
			got, err = s.GetMany(testCtx(t), oddKeys)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range oddKeys {
				if string(got[k].Value) != "again "+k {
					t.Errorf("after SetMany, %q = %q", k, got[k].Value)
				}
			}
			if err := s.Delete(testCtx(t), oddKeys...); err != nil {
				t.Fatal(err)
			}
			if got, err := s.GetMany(testCtx(t), oddKeys); err != nil || len(got) != 0 {
				t.Fatalf("after Delete, GetMany = %d entries, %v; want none", len(got), err)
			}
		}
	})
}

func TestGetValue(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		mustSet(t, s, "k", "hello", time.Minute)
		v, ok, err := s.GetValue(testCtx(t), "k")
		if err != nil || !ok || string(v) != "hello" {
			t.Fatalf("GetValue(k) = %q, %v, %v; want \"hello\", true, nil", v, ok, err)
		}
		v[0] = 'J' // the caller owns the bytes
		if v, _, _ := s.GetValue(testCtx(t), "k"); string(v) != "hello" {
			t.Fatalf("after changing the returned bytes, GetValue = %q", v)
		}
		v, ok, err = s.GetValue(testCtx(t), "absent")
		if err != nil || ok || v != nil {
			t.Fatalf("GetValue(absent) = %q, %v, %v; want nil, false, nil", v, ok, err)
		}
		if err := e.client(t).HSet(testCtx(t), s.Key("hash"), "f", "v").Err(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.GetValue(testCtx(t), "hash"); err == nil || !strings.Contains(err.Error(), `"hash"`) {
			t.Fatalf("GetValue of a hash = %v; want an error naming the key", err)
		}
	})
}

func TestGetValues(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		s := e.store(t, remote.Options{})
		keys := make([]string, 40) // spread over many slots on a cluster
		for i := range keys {
			keys[i] = fmt.Sprintf("key-%d", i)
			if i%3 == 0 {
				mustSet(t, s, keys[i], "v"+keys[i], time.Minute)
			}
		}
		if err := s.Set(testCtx(t), "empty", []byte{}, time.Minute); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetValues(testCtx(t), append(keys, "empty", keys[0]))
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			v, ok := got[k]
			if want := i%3 == 0; ok != want || (ok && string(v) != "v"+k) {
				t.Errorf("%s = %q, %v; want present %v", k, v, ok, want)
			}
		}
		if v, ok := got["empty"]; !ok || len(v) != 0 {
			t.Errorf("an empty value = %q, %v; want present and empty", v, ok)
		}
		for _, keys := range [][]string{nil, {}} {
			got, err := s.GetValues(testCtx(t), keys)
			if err != nil || got == nil || len(got) != 0 {
				t.Errorf("GetValues(%#v) = %#v, %v; want an empty non-nil map", keys, got, err)
			}
		}
	})
}
