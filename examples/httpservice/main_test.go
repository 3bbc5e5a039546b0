package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/redistest"
)

// replica is one httpservice process.
type replica struct {
	t    *testing.T
	base string
}

// startReplica runs the built binary and waits for its "listening on" line.
// Extra flags follow the defaults.
func startReplica(t *testing.T, bin, redisAddr string, flags ...string) *replica {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-listen", "127.0.0.1:0", "-redis", redisAddr, "-namespace", "demo"}, flags...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("replica did not start: %v", err)
	}
	addr := strings.Fields(strings.TrimPrefix(line, "listening on "))[0]
	return &replica{t: t, base: "http://" + addr}
}

func (r *replica) do(method, key, body string) (status int, value, source string) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.base+"/v/"+key, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Cache")
}

// get fetches path from the replica.
func (r *replica) get(path string) (status int, body string) {
	r.t.Helper()
	resp, err := http.Get(r.base + path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually re-reads until want holds: the invalidation travels through
// Redis pub/sub. The deadline turns a lost message into a failure.
func (r *replica) eventually(key string, want func(value, source string) bool) (string, string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, v, s := r.do("GET", key, "")
		if want(v, s) {
			return v, s
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("GET %s stayed %q from %s", key, v, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// build compiles the service into the test's temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "httpservice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// Two replicas as separate processes on one real redis-server: a write on
// one is seen by the other, and an operator's PUBLISH makes both reload.
func TestTwoReplicasOnRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	bin := build(t)
	a := startReplica(t, bin, srv.Addr())
	b := startReplica(t, bin, srv.Addr())
	for _, r := range []*replica{a, b} {
		if st, body := r.get("/ready?wait=20s"); st != http.StatusOK || body != "ready: ok\n" {
			t.Fatalf("GET /ready?wait=20s: %d %q, want 200 \"ready: ok\"", st, body)
		}
	}

	if _, v, s := a.do("GET", "user:1", ""); s != "load" || !strings.HasPrefix(v, "load 1 of user:1") {
		t.Fatalf("A first GET: %q from %s", v, s)
	}
	if _, v, s := b.do("GET", "user:1", ""); s != "far" || !strings.HasPrefix(v, "load 1 of user:1") {
		t.Fatalf("B first GET: %q from %s, want A's load from far", v, s)
	}
	if _, _, s := b.do("GET", "user:1", ""); s != "near" {
		t.Fatalf("B second GET from %s, want near", s)
	}

	if st, _, _ := a.do("PUT", "user:1", "written on A"); st != http.StatusNoContent {
		t.Fatalf("PUT on A: %d", st)
	}
	b.eventually("user:1", func(v, _ string) bool { return v == "written on A" })

	// An operator: redis-cli PUBLISH demo:invalidate user:1
	if _, _, s := a.do("GET", "user:1", ""); s != "near" {
		t.Fatalf("A before PUBLISH from %s, want near", s)
	}
	if err := srv.Client(t).Publish(context.Background(), "demo:invalidate", "user:1").Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*replica{a, b} {
		r.eventually("user:1", func(v, s string) bool { return s == "far" && v == "written on A" })
	}

	if st, _, _ := b.do("DELETE", "user:1", ""); st != http.StatusNoContent {
		t.Fatalf("DELETE on B: %d", st)
	}
	a.eventually("user:1", func(v, s string) bool { return s == "load" })

	// A value over the limit is refused whole, and the key keeps its value.
	if st, _, _ := a.do("PUT", "user:1", strings.Repeat("x", maxBody+1)); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("PUT of %d bytes: %d, want 413", maxBody+1, st)
	}
	if _, v, _ := a.do("GET", "user:1", ""); !strings.HasPrefix(v, "load 2 of user:1") {
		t.Fatalf("after a refused PUT, GET = %.30q", v)
	}
}
