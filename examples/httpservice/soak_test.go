package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/internal/redistest"
	"github.com/tier-cache/tier/internal/soak"
)

// httpReplica drives one service process over HTTP for the soak.
type httpReplica struct {
	base   string
	client *http.Client
}

func (r *httpReplica) do(ctx context.Context, method, path, body string) (int, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, strings.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Cache"), err
}

func (r *httpReplica) Get(ctx context.Context, key string) (uint64, bool, string, error) {
	status, body, source, err := r.do(ctx, http.MethodGet, "/v/"+key, "")
	switch {
	case err != nil:
		return 0, false, "", err
	case status == http.StatusNotFound:
		return 0, false, source, nil
	case status != http.StatusOK:
		return 0, false, "", fmt.Errorf("GET %s: %d %s", key, status, body)
	}
	v, err := strconv.ParseUint(body, 10, 64)
	return v, err == nil, source, err
}

func (r *httpReplica) expect204(ctx context.Context, method, path, body string) error {
	status, b, _, err := r.do(ctx, method, path, body)
	if err == nil && status != http.StatusNoContent {
		err = fmt.Errorf("%s %s: %d %s", method, path, status, b)
	}
	return err
}

func (r *httpReplica) Set(ctx context.Context, key string, v uint64) error {
	return r.expect204(ctx, http.MethodPut, "/v/"+key, strconv.FormatUint(v, 10))
}

func (r *httpReplica) Delete(ctx context.Context, key string) error {
	return r.expect204(ctx, http.MethodDelete, "/v/"+key, "")
}

func (r *httpReplica) Invalidate(ctx context.Context, key string) error {
	return r.expect204(ctx, http.MethodPost, "/invalidate/"+key, "")
}

func (r *httpReplica) stats(t *testing.T) tier.Stats {
	t.Helper()
	_, body, _, err := r.do(context.Background(), http.MethodGet, "/stats", "")
	var st tier.Stats
	if err == nil {
		err = json.Unmarshal([]byte(body), &st)
	}
	if err != nil {
		t.Fatalf("stats of %s: %v", r.base, err)
	}
	return st
}

// The soak over three service processes on one real redis-server: the
// test serves the source of truth over HTTP, the services load from it,
// and the checker judges every read the test makes over HTTP. 3s locally,
// 10s under CI=true, TIER_SOAK for longer.
func TestSoakThreeProcesses(t *testing.T) {
	d, err := soak.Duration(3*time.Second, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t)
	bin := build(t)
	src := soak.NewSource()
	truth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := src.Load(strings.TrimPrefix(r.URL.Path, "/"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, strconv.FormatUint(v, 10))
	}))
	t.Cleanup(truth.Close)
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport}

	var reps []soak.Replica
	var https []*httpReplica
	for range 3 {
		p := startReplica(t, bin, srv.Addr(), "-namespace", "soak", "-source", truth.URL)
		h := &httpReplica{base: p.base, client: client}
		reps, https = append(reps, h), append(https, h)
	}
	// Each service starts fully up: its subscription confirmed.
	for _, h := range https {
		status, body, _, err := h.do(context.Background(), http.MethodGet, "/ready?wait=20s", "")
		if err != nil || status != http.StatusOK || body != "ready: ok\n" {
			t.Fatalf("%s: GET /ready?wait=20s: %d %q %v, want 200 \"ready: ok\"", h.base, status, body, err)
		}
	}

	rep := soak.Run(t.Context(), soak.Config{Replicas: reps, Source: src, Duration: d})
	t.Log(rep)
	for i, h := range https {
		st := h.stats(t)
		t.Logf("process %d: near hits %d, far hits %d, loads %d, far errors %d, invalidations %d, losses %d",
			i, st.NearHits, st.FarHits, st.Loads, st.FarErrors, st.Invalidations, st.Losses)
	}
	if rep.Counts.Violations != 0 {
		t.Errorf("%d reads returned a value overwritten more than %v before they started", rep.Counts.Violations, rep.Slack)
	}
	if rep.FailedReads != 0 || rep.FailedWrites != 0 || rep.FailedInvalidates != 0 {
		t.Errorf("failed operations: %d reads, %d writes, %d invalidations", rep.FailedReads, rep.FailedWrites, rep.FailedInvalidates)
	}
	for _, s := range []string{"near", "far", "load"} {
		if rep.Sources[s] == 0 {
			t.Errorf("no read was answered from %s", s)
		}
	}
}
