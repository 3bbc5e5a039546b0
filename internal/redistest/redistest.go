package redistest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// binary is the name of the server executable looked up on PATH.
	binary = "redis-server"

	// readyTimeout bounds how long a start waits for the server to answer
	// PING. It is generous because a loaded CI machine running -race can
	// take seconds to start a process; it costs nothing when all is well.
	readyTimeout = 30 * time.Second

	// stopTimeout bounds how long Stop waits for a graceful exit before it
	// kills the process.
	stopTimeout = 10 * time.Second

	// startAttempts is how many free ports Start tries before it gives up;
	// another process may take a port between our probe and the server's bind.
	startAttempts = 5

	// missingMessage is the skip (or, under CI, failure) message when no
	// server binary is installed.
	missingMessage = "redis-server not found on PATH; install it (apt-get install redis-server) to run real-Redis tests"
)

// errAddrInUse reports that the server exited because its port was taken.
var errAddrInUse = errors.New("redistest: port already in use")

// Server is a redis-server process on a free 127.0.0.1 port, with no
// persistence: it saves no RDB snapshot and keeps no append-only file, so a
// restart always comes back empty.
//
// A Server belongs to the test that started it. Its methods may be called
// from several goroutines, but starting and stopping it concurrently makes
// little sense.
type Server struct {
	bin     string // absolute path of the redis-server binary
	dir     string // working directory of the server (a test temp dir)
	logPath string // file that collects the server's stdout and stderr
	port    int
	cluster bool      // cluster mode, one node serving every slot unless member
	member  bool      // cluster mode, one node of several (LaunchCluster)
	busPort int       // cluster bus port, when cluster
	tls     *tlsFiles // TLS only, when set (StartTLS)
	monitor string    // sentinel mode, watching "<name> <master addr>" (StartSentinel)

	mu   sync.Mutex
	proc *process // the running process, nil while stopped
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
}

// Start launches a redis-server on a free 127.0.0.1 port and waits until it
// answers PING (within 30s). The server is stopped when the test ends, and its log is
// printed if the test failed.
//
// When redis-server is not on PATH, Start skips the test, unless the
// environment variable CI is "true", in which case it fails the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return launch(tb, false, false)
}

// StartCluster is like [Start], but the server runs in cluster mode as a
// cluster of one node that serves all 16384 hash slots. Clients from
// [Server.ClusterClient] route commands as they would on a real cluster,
// and the server rejects a multi-key command whose keys hash to different
// slots (CROSSSLOT), so tests can show code is cluster-safe without
// running six servers.
func StartCluster(tb testing.TB) *Server {
	tb.Helper()
	return launch(tb, true, false)
}

// StartTLS is like [Start], but the server accepts only TLS connections,
// with a certificate for 127.0.0.1 signed by a CA that StartTLS generates
// in the test's temporary directory. Clients from [Server.Client] and
// [Server.Options] trust that CA; [Server.TLSConfig] returns the client
// configuration alone. Clients need not present a certificate.
func StartTLS(tb testing.TB) *Server {
	tb.Helper()
	return launch(tb, false, true)
}

// RequireServer skips the test when redis-server is not on PATH, or fails
// it under CI (CI=true), as [Start] does. Tests that share a server started
// outside any test (in TestMain, say, with [LaunchCluster]) call it first.
func RequireServer(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath(binary); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal(missingMessage)
		}
		tb.Skip(missingMessage)
	}
}

// launch starts a server, standalone or as a one-node cluster.
func launch(tb testing.TB, cluster, withTLS bool) *Server {
	tb.Helper()
	return newServer(tb, "redis-server.log", func(s *Server) {
		s.cluster = cluster
		if withTLS {
			files, err := writeTLSFiles(s.dir)
			if err != nil {
				tb.Fatalf("redistest: generate TLS certificates: %v", err)
			}
			s.tls = files
		}
	})
}

// newServer starts a server in a directory of its own, with its log in
// the file logName there, set up by configure before it starts. Like
// [Start], it skips the test when redis-server is not on PATH, or fails it
// under CI. The server is stopped when the test ends, and its log shown if
// the test failed.
func newServer(tb testing.TB, logName string, configure func(s *Server)) *Server {
	tb.Helper()
	RequireServer(tb)
	bin, err := exec.LookPath(binary)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	s := &Server{bin: bin, dir: dir, logPath: filepath.Join(dir, logName)}
	configure(s)
	tb.Cleanup(func() {
		s.kill()
		if tb.Failed() {
			tb.Logf("%s (%s):\n%s", logName, s.Addr(), s.log())
		}
	})
	if err := s.startOnFreePort(); err != nil {
		tb.Fatal(err)
	}
	return s
}

// startOnFreePort starts the server on a free port, trying another one
// when a port is taken between the probe and the server's bind.
func (s *Server) startOnFreePort() error {
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return fmt.Errorf("redistest: find a free port: %w", err)
		}
		err = s.start(port)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errAddrInUse) || attempt == startAttempts {
			return fmt.Errorf("redistest: start %s (attempt %d): %w\nlog:\n%s", binary, attempt, err, s.log())
		}
	}
}

// Addr returns the server's address, "127.0.0.1:<port>".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Options returns fresh client options for the server, with
// ContextTimeoutEnabled set so that context deadlines bound socket reads and
// writes. Callers may change the returned value before building a client.
func (s *Server) Options() *redis.Options {
	return &redis.Options{
		Addr:                  s.Addr(),
		ContextTimeoutEnabled: true,
		TLSConfig:             s.TLSConfig(),
	}
}

// TLSConfig returns a fresh client TLS configuration that trusts the
// server's CA, for a server started with [StartTLS]; nil for the others.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.clientConfig()
}

// Client returns a new client connected to the server, built from
// [Server.Options]. It is closed when the test ends. On a cluster server
// ([StartCluster]) it talks to the one node directly, without cluster
// routing.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(s.Options())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// ClusterOptions returns fresh cluster client options for a server started
// with [StartCluster], with ContextTimeoutEnabled set.
func (s *Server) ClusterOptions() *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:                 []string{s.Addr()},
		ContextTimeoutEnabled: true,
	}
}

// ClusterClient returns a new cluster client for a server started with
// [StartCluster], built from [Server.ClusterOptions]. It is closed when the
// test ends. It fails the test on a standalone server.
func (s *Server) ClusterClient(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	if !s.cluster {
		tb.Fatalf("redistest: ClusterClient on %s, which was not started with StartCluster", s.Addr())
	}
	c := redis.NewClusterClient(s.ClusterOptions())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
