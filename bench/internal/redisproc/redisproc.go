// Package redisproc gives the benchmarks a Redis server of their own: a
// redis-server process on a free 127.0.0.1 port when the binary is on PATH,
// else an embedded miniredis, which the report marks, since its figures say
// nothing about a real server.
//
// The library's own helper (tier/internal/redistest) is internal to the
// library's module and tied to testing.TB, so the bench module, a command
// among its users, has this small one.
package redisproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// readyTimeout bounds the wait for a started server to answer PING.
const readyTimeout = 20 * time.Second

// Server is a Redis server that this process started and must Close.
type Server struct {
	// Addr is host:port on loopback.
	Addr string
	// Kind is "redis-server 7.0.15" for a real server, "miniredis" for the
	// embedded fake.
	Kind string
	// Real is true for a redis-server process.
	Real bool

	bin    string
	port   int
	cmd    *exec.Cmd     // nil while killed
	exited chan struct{} // closed once cmd has been reaped
	dir    string
	mini   *miniredis.Miniredis
}

// Start starts a redis-server on a free loopback port, or, when none is
// on PATH (or forceMini is set), an embedded miniredis.
func Start(forceMini bool) (*Server, error) {
	if !forceMini {
		if bin, err := exec.LookPath("redis-server"); err == nil {
			return startReal(bin)
		}
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("redisproc: miniredis: %w", err)
	}
	return &Server{Addr: m.Addr(), Kind: "miniredis", mini: m}, nil
}

// startReal tries a few free ports, since another process may take one
// between our probe and the server's bind.
func startReal(bin string) (*Server, error) {
	var last error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "tier-bench-redis-")
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Real: true, bin: bin, port: port, dir: dir}
		if last = s.launch(); last == nil {
			return s, nil
		}
		os.RemoveAll(dir)
	}
	return nil, fmt.Errorf("redisproc: redis-server did not start: %w", last)
}

// launch starts the server process on s's port and waits until it
// answers.
func (s *Server) launch() error {
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--protected-mode", "yes", "--loglevel", "warning")
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	version, err := waitReady(s.Addr, exited)
	if err != nil {
		cmd.Process.Kill()
		<-exited
		return err
	}
	s.cmd, s.exited, s.Kind = cmd, exited, "redis-server "+version
	return nil
}

// Kill stops the server at once, as kill -9 does (a miniredis closes its
// listener and connections), keeping its port for Restart.
func (s *Server) Kill() {
	if s.mini != nil {
		s.mini.Close()
		return
	}
	if s.cmd != nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
		s.cmd = nil
	}
}

// Restart starts a killed server again on the same port, empty.
func (s *Server) Restart() error {
	if s.mini != nil {
		s.mini.FlushAll()
		return s.mini.Restart()
	}
	if s.cmd != nil {
		return errors.New("redisproc: restart of a running server")
	}
	var err error
	for range 50 { // the port may linger a moment after the kill
		if err = s.launch(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("redisproc: restart: %w", err)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady PINGs the server until it answers, and returns its version.
func waitReady(addr string, exited <-chan struct{}) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			return "", errors.New("the process exited (port taken?)")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		if err == nil {
			info, ierr := c.Info(ctx, "server").Result()
			cancel()
			if ierr != nil {
				return "", ierr
			}
			return infoField(info, "redis_version"), nil
		}
		cancel()
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no PING answer within %v: %w", readyTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return "unknown"
}

// Client returns a new go-redis client of the server, with context
// timeouts on, as tier requires.
func (s *Server) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true})
}

// Close stops the server and removes its directory.
func (s *Server) Close() {
	if s.mini != nil {
		s.mini.Close()
		return
	}
	s.Kill()
	os.RemoveAll(s.dir)
}
