package redistest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartSentinel launches a Redis Sentinel (redis-server --sentinel) on a
// free 127.0.0.1 port that monitors master under the given name, with a
// quorum of one, down-after-milliseconds 1000 and failover-timeout 10000,
// and waits until it has found, connected to and read every replica of
// master that is already attached, so that SENTINEL FAILOVER can promote one. It is stopped when the test ends. Like [Start], it skips the
// test when redis-server is not on PATH, or fails it under CI.
func StartSentinel(tb testing.TB, name string, master *Server) *Server {
	tb.Helper()
	s := newServer(tb, "redis-sentinel.log", func(s *Server) {
		s.monitor = name + " " + master.Addr()
	})

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	mc := master.Client(tb)
	want, err := mc.Info(ctx, "replication").Result()
	if err != nil {
		tb.Fatalf("redistest: INFO replication on %s: %v", master.Addr(), err)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
	defer sc.Close()
	n := 0
	for _, l := range strings.Split(want, "\r\n") {
		if v, ok := strings.CutPrefix(l, "connected_slaves:"); ok {
			n, _ = strconv.Atoi(v)
		}
	}
	for {
		// A replica can be promoted once the sentinel has connected to it
		// and read its INFO, not merely heard of it from the master.
		reps, err := sc.Replicas(ctx, name).Result()
		ready := 0
		for _, r := range reps {
			if r["flags"] == "slave" && r["master-link-status"] == "ok" {
				ready++
			}
		}
		if err == nil && ready >= n {
			return s
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("redistest: sentinel %s did not find the %d replicas of %s within %v: %v, %v", s.Addr(), n, master.Addr(), readyTimeout, reps, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ReplicaOf makes s a replica of master (REPLICAOF) and waits until the
// initial sync is done (master_link_status:up) and master lists it.
func (s *Server) ReplicaOf(tb testing.TB, master *Server) {
	tb.Helper()
	host, port, _ := strings.Cut(master.Addr(), ":")
	// The master would otherwise wait 5s for more replicas before it
	// streams the first sync.
	master.do(tb, "CONFIG", "SET", "repl-diskless-sync-delay", "0")
	s.do(tb, "REPLICAOF", host, port)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c := redis.NewClient(s.Options())
	defer c.Close()
	mc := redis.NewClient(master.Options())
	defer mc.Close()
	for {
		info, err := c.Info(ctx, "replication").Result()
		minfo, merr := mc.Info(ctx, "replication").Result()
		if err == nil && merr == nil && strings.Contains(info, "master_link_status:up") &&
			strings.Contains(minfo, "port="+strings.TrimPrefix(s.Addr(), "127.0.0.1:")+",state=online") {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("redistest: %s did not become a replica of %s within %v: %q, %v", s.Addr(), master.Addr(), readyTimeout, info, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
