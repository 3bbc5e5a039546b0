// Command httpservice serves values through tier over HTTP, so that several
// replicas can run as separate processes on one Redis and show a write on
// one replica reaching the others.
//
//	go run ./examples/httpservice -redis 127.0.0.1:6379 -listen 127.0.0.1:8081
//	go run ./examples/httpservice -redis 127.0.0.1:6379 -listen 127.0.0.1:8082
//
// Endpoints:
//
//	GET    /v/{key}   the value, or 404; header X-Cache says near, far or load
//	PUT    /v/{key}   set the value to the request body; ?tag=T (repeatable)
//	                  tags it
//	DELETE /v/{key}   delete the value
//	POST   /invalidate/{key}  drop the key's near copies in every replica
//	POST   /invalidate?tag=T  drop every value tagged T, in every replica
//	                  and in Redis
//	GET    /stats     the cache's counters as JSON
//	GET    /ready     200 while the replica serves, degraded or not, with
//	                  the cache's state in the body ("ready: ok", or
//	                  "ready: degraded: ..."); ?wait=10s first waits up to
//	                  that long for the invalidation subscription
//	GET    /health    the cache's state (tier.Health) as JSON
//
// A degraded replica is ready: while Redis is down or its subscription is
// lost it still serves every read, from its near tier and the loader,
// keeping values near only briefly; only writes fail. Taking it out of
// its load balancer would turn a Redis outage into an outage of every
// replica at once. Alert on /health (or the log) instead.
//
// The loader makes a value from the key and a counter of this process's
// loads ("load 3 of user:1 by 127.0.0.1:8081"), so every load can be told
// apart. With -source URL it reads the value from the source of truth
// instead: GET URL/{key}, where 200 gives the body and 404 "not found"
// (the soak test in internal/soak serves one). With no -redis, an embedded
// miniredis serves this process alone.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier"
)

// maxBody is the largest value a PUT stores.
const maxBody = 1 << 20

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve HTTP on")
	redisAddr := flag.String("redis", "", "Redis address (default: an embedded miniredis)")
	namespace := flag.String("namespace", "demo", "cache namespace (Redis key prefix and invalidation channel)")
	source := flag.String("source", "", "base URL of a source of truth to load from (default: make values up)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *redisAddr, *namespace, *source); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, listen, redisAddr, namespace, source string) error {
	if redisAddr == "" {
		m, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer m.Close()
		redisAddr = m.Addr()
	}
	client := redis.NewClient(&redis.Options{Addr: redisAddr, ContextTimeoutEnabled: true})
	defer client.Close()

	cache, err := tier.New[string](tier.Options{
		Redis:     client,
		Namespace: namespace,
		// One line when Redis or the subscription goes down, one when back.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	defer cache.Close()

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	self := ln.Addr().String()
	var loads atomic.Int64
	loader := tier.LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		return fmt.Sprintf("load %d of %s by %s", loads.Add(1), key, self), nil
	})
	if source != "" {
		loader = sourceLoader(source)
	}

	srv := &http.Server{Handler: newHandler(cache, loader), ReadHeaderTimeout: 5 * time.Second}
	// Tests and scripts read this line to know the replica is ready.
	fmt.Printf("listening on %s (redis %s, namespace %s)\n", self, redisAddr, namespace)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// newHandler returns the service's endpoints, serving cache with loader.
func newHandler(cache *tier.Cache[string], loader tier.Loader[string]) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v/{key}", func(w http.ResponseWriter, r *http.Request) {
		res, err := cache.Fetch(r.Context(), r.PathValue("key"), loader)
		if res.Source != 0 {
			w.Header().Set("X-Cache", res.Source.String())
		}
		if errors.Is(err, tier.ErrNotFound) {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, res.Value)
	})
	mux.HandleFunc("PUT /v/{key}", func(w http.ResponseWriter, r *http.Request) {
		// A body over the limit is refused whole, never stored cut short.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("value over %d bytes", maxBody), http.StatusRequestEntityTooLarge)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := cache.Set(r.Context(), r.PathValue("key"), string(body), r.URL.Query()["tag"]...); err != nil {
			http.Error(w, err.Error(), writeStatus(err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /v/{key}", func(w http.ResponseWriter, r *http.Request) {
		if err := cache.Delete(r.Context(), r.PathValue("key")); err != nil {
			http.Error(w, err.Error(), writeStatus(err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /invalidate/{key}", func(w http.ResponseWriter, r *http.Request) {
		if err := cache.Invalidate(r.Context(), r.PathValue("key")); err != nil {
			http.Error(w, err.Error(), writeStatus(err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /invalidate", func(w http.ResponseWriter, r *http.Request) {
		tags := r.URL.Query()["tag"]
		if len(tags) == 0 {
			http.Error(w, "name the tags to drop: ?tag=T", http.StatusBadRequest)
			return
		}
		if err := cache.InvalidateTag(r.Context(), tags...); err != nil {
			http.Error(w, err.Error(), writeStatus(err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(cache.Stats())
	})

	// Ready while the cache serves, degraded or not: see the command's
	// documentation. ?wait=DURATION first waits, up to a minute, until the
	// invalidation subscription is confirmed, for scripts and tests that
	// want to start on a cache that is fully up.
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if wait := r.URL.Query().Get("wait"); wait != "" {
			d, err := time.ParseDuration(wait)
			if err != nil {
				http.Error(w, "wait: "+err.Error(), http.StatusBadRequest)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), min(d, time.Minute))
			err = cache.WaitReady(ctx)
			cancel()
			if errors.Is(err, tier.ErrClosed) {
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintf(w, "ready: %s\n", cache.Health())
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(healthJSON(cache.Health()))
	})
	return mux
}

// writeStatus is the HTTP status of a failed write: 503 while Redis is
// unavailable (the client may retry, perhaps on another replica), else 500.
func writeStatus(err error) int {
	if errors.Is(err, tier.ErrUnavailable) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// linkJSON is a tier.Status as JSON, its error as text.
type linkJSON struct {
	State tier.State `json:"state"`
	Since time.Time  `json:"since"`
	Error string     `json:"error,omitempty"`
}

// healthJSON returns h as JSON: {"status": "ok" or "degraded: ...",
// "degraded": ..., "redis": {...}, "subscription": {...}, "near_ttl": "1m0s"}.
func healthJSON(h tier.Health) any {
	link := func(s tier.Status) linkJSON {
		l := linkJSON{State: s.State, Since: s.Since}
		if s.Err != nil {
			l.Error = s.Err.Error()
		}
		return l
	}
	return struct {
		Status       string   `json:"status"`
		Degraded     bool     `json:"degraded"`
		Redis        linkJSON `json:"redis"`
		Subscription linkJSON `json:"subscription"`
		NearTTL      string   `json:"near_ttl"`
	}{h.String(), h.Degraded, link(h.Redis), link(h.Subscription), h.NearTTL.String()}
}

// sourceLoader loads a key from a source of truth over HTTP: GET
// base/{key}, 200 with the value, or 404 for a key without one.
func sourceLoader(base string) tier.LoaderFunc[string] {
	return func(ctx context.Context, key string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+url.PathEscape(key), nil)
		if err != nil {
			return "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		switch {
		case err != nil:
			return "", err
		case resp.StatusCode == http.StatusNotFound:
			return "", tier.ErrNotFound
		case resp.StatusCode != http.StatusOK:
			return "", fmt.Errorf("source: GET %s: %s", key, resp.Status)
		}
		return string(body), nil
	}
}
