package redistest

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Kill sends SIGKILL to the server and waits until it has exited. It does
// nothing if the server is not running.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	s.kill()
}

// Stop shuts the server down gracefully with SIGTERM (which, with persistence
// off, saves nothing) and waits until it has exited. If it has not exited
// within 10s it is killed and the test fails. Stop does nothing if the server
// is not running.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return
	}
	s.proc = nil
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		// The process has already exited; the reaper closes done.
		<-p.done
		return
	}
	// A suspended server (Suspend) handles SIGTERM only once continued.
	_ = resumeProcess(p.cmd.Process)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		tb.Errorf("redistest: %s did not stop within %v of SIGTERM; killed it", binary, stopTimeout)
	}
}

// Restart starts the server again on the same port after [Server.Kill] or
// [Server.Stop], and waits until it answers PING. The restarted server is
// empty. Restart fails the test if the server is still running.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		tb.Fatalf("redistest: restart %s: server is still running", s.Addr())
	}
	// The port was ours a moment ago; if something else grabbed it in
	// between, give it a few tries before failing.
	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.start(s.port)
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			tb.Fatalf("redistest: restart %s on %s: %v\nlog:\n%s", binary, s.Addr(), err, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Plant stores raw bytes under a Redis key, with no expiry, bypassing any
// namespace or encoding: key is the full Redis key. Tests use it to put
// values a library would never write itself, such as malformed payloads.
func (s *Server) Plant(tb testing.TB, key string, raw []byte) {
	tb.Helper()
	c := redis.NewClient(s.Options())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := c.Set(ctx, key, raw, 0).Err(); err != nil {
		tb.Fatalf("redistest: plant %q: %v", key, err)
	}
}

// Pause makes the server hold the commands of every client (CLIENT PAUSE
// ALL) for d: a server that accepts connections and answers nothing.
func (s *Server) Pause(tb testing.TB, d time.Duration) {
	tb.Helper()
	s.do(tb, "CLIENT", "PAUSE", strconv.FormatInt(d.Milliseconds(), 10), "ALL")
}

// Suspend stops the server with SIGSTOP: a hung server. The kernel still
// accepts connections on its port (up to the listen backlog), but the
// server reads and answers nothing until [Server.Resume]. Killing,
// stopping or ending the test ends a suspended server as well. It fails
// the test if the server is not running or the platform has no SIGSTOP.
func (s *Server) Suspend(tb testing.TB) {
	tb.Helper()
	s.signal(tb, "suspend", suspendProcess)
}

// Resume continues a server suspended by [Server.Suspend] with SIGCONT,
// and waits until it answers PING (see [Server.WaitAnswering]). On a
// server that is not suspended it only waits for the answer.
func (s *Server) Resume(tb testing.TB) {
	tb.Helper()
	s.signal(tb, "resume", resumeProcess)
	s.WaitAnswering(tb)
}

// signal applies send to the running process, or fails the test.
func (s *Server) signal(tb testing.TB, what string, send func(*os.Process) error) {
	tb.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		tb.Fatalf("redistest: %s %s: the server is not running", what, s.Addr())
	}
	if err := send(p.cmd.Process); err != nil {
		tb.Fatalf("redistest: %s %s: %v", what, s.Addr(), err)
	}
}

// WaitAnswering waits until the server answers a PING on a connection of
// its own, and fails the test if it does not within 30s. After a CLIENT
// PAUSE ([Server.Pause]) or [Server.Resume] it returns once the server
// serves again: a PING sent during a pause is answered when the pause
// ends.
func (s *Server) WaitAnswering(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		// Each probe waits up to a second for its answer; a refused
		// connection fails at once, and is retried shortly.
		_, err := probe(s.Addr(), s.TLSConfig())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: %s did not answer PING within %v: %v", s.Addr(), readyTimeout, err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// KillClients closes the connections of every client of the given type:
// "pubsub" (subscriptions) or "normal" (commands), as CLIENT KILL TYPE does.
func (s *Server) KillClients(tb testing.TB, typ string) {
	tb.Helper()
	s.do(tb, "CLIENT", "KILL", "TYPE", typ)
}

// do runs one command on a connection of its own.
func (s *Server) do(tb testing.TB, args ...any) {
	tb.Helper()
	c := redis.NewClient(s.Options())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := c.Do(ctx, args...).Err(); err != nil {
		tb.Fatalf("redistest: %v: %v", args, err)
	}
}
