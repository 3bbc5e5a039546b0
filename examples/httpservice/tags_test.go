package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/tiertest"
)

// PUT /v/{key}?tag=T tags a value; POST /invalidate?tag=T drops every value
// of T on every replica, and only those.
func TestTags(t *testing.T) {
	caches := tiertest.Replicas[string](t, 2, tier.Options{})
	var loads atomic.Int64
	loader := tier.LoaderFunc[string](func(context.Context, string) (string, error) {
		loads.Add(1)
		return "loaded", nil
	})
	var web []*httptest.Server
	for _, c := range caches {
		s := httptest.NewServer(newHandler(c, loader))
		t.Cleanup(s.Close)
		web = append(web, s)
	}
	do := func(method, url string, body string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("X-Cache")
	}
	for key, tag := range map[string]string{"a": "tenant-1", "b": "tenant-1", "c": "tenant-2"} {
		if st, body, _ := do("PUT", web[0].URL+"/v/"+key+"?tag="+tag, "v-"+key); st != http.StatusNoContent {
			t.Fatalf("PUT %s: %d %s", key, st, body)
		}
	}
	tiertest.Sync(t, caches...)
	for _, key := range []string{"a", "b", "c"} {
		if st, body, src := do("GET", web[1].URL+"/v/"+key, ""); st != 200 || body != "v-"+key || src != "far" {
			t.Fatalf("GET %s on replica 1: %d %q from %s", key, st, body, src)
		}
	}
	if st, body, _ := do("POST", web[0].URL+"/invalidate?tag=tenant-1", ""); st != http.StatusNoContent {
		t.Fatalf("POST /invalidate?tag: %d %s", st, body)
	}
	if st, _, _ := do("POST", web[0].URL+"/invalidate", ""); st != http.StatusBadRequest {
		t.Fatalf("POST /invalidate without a tag: %d, want 400", st)
	}
	tiertest.Sync(t, caches...)
	for key, want := range map[string]string{"a": "load", "b": "load", "c": "near"} {
		if _, _, src := do("GET", web[1].URL+"/v/"+key, ""); src != want {
			t.Errorf("GET %s on replica 1 after the tag's invalidation from %s, want %s", key, src, want)
		}
	}
}
