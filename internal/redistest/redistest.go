package redistest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// start launches the server on port and waits for it to answer PING. It
// returns an error wrapping errAddrInUse when the port was taken.
func (s *Server) start(port int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("redistest: server is already running")
	}

	busPort := s.busPort
	if s.cluster && (busPort == 0 || port != s.port) {
		// The default bus port, port+10000, may be taken or out of range.
		var err error
		if busPort, err = freePort(); err != nil {
			return err
		}
	}

	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(logFile, "=== redistest: starting %s on 127.0.0.1:%d at %s ===\n", s.bin, port, time.Now().Format(time.RFC3339Nano))
	offset, _ := logFile.Seek(0, io.SeekEnd)

	ports := []string{"--port", strconv.Itoa(port)}
	if s.tls != nil {
		ports = []string{"--port", "0", "--tls-port", strconv.Itoa(port),
			"--tls-cert-file", s.tls.cert, "--tls-key-file", s.tls.key,
			"--tls-ca-cert-file", s.tls.ca, "--tls-auth-clients", "no"}
	}
	var args []string
	if s.monitor != "" {
		// A sentinel needs a config file it can rewrite; each start
		// writes a fresh one, with the master it watches.
		name, addr, _ := strings.Cut(s.monitor, " ")
		host, mport, _ := net.SplitHostPort(addr)
		conf := filepath.Join(s.dir, "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor %s %s %s 1\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 10000\n", name, host, mport, name, name)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			logFile.Close()
			return err
		}
		args = append(args, conf, "--sentinel")
	}
	cmd := exec.Command(s.bin, append(append(args, ports...),
		"--bind", "127.0.0.1",
		"--protected-mode", "yes",
		"--daemonize", "no",
		"--dir", s.dir,
		"--logfile", "", // log to stdout, which is logFile
	)...)
	if s.monitor == "" {
		cmd.Args = append(cmd.Args, "--save", "", "--appendonly", "no")
	}
	if s.cluster {
		// The node's view of the cluster is kept in nodes.conf in the
		// temp dir, so a restarted node still serves every slot.
		cmd.Args = append(cmd.Args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-announce-ip", "127.0.0.1",
			"--cluster-port", strconv.Itoa(busPort),
		)
	}
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()

	err = waitReady(p, port, s.TLSConfig())
	if err == nil && s.cluster && !s.member {
		err = claimSlots(port)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		<-p.done
		if s.logSince(offset, "Address already in use") {
			return fmt.Errorf("%w: %d", errAddrInUse, port)
		}
		return err
	}
	s.port = port
	s.busPort = busPort
	s.proc = p
	return nil
}

// kill sends SIGKILL to the running process, if any, and waits for it.
func (s *Server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.cmd.Process.Kill()
	<-s.proc.done
	s.proc = nil
}

// log returns the server's log so far.
func (s *Server) log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// logSince reports whether the log, from byte offset on, contains substr.
func (s *Server) logSince(offset int64, substr string) bool {
	b, err := os.ReadFile(s.logPath)
	if err != nil || offset > int64(len(b)) {
		return false
	}
	return bytes.Contains(b[offset:], []byte(substr))
}

// waitReady polls the server on port until it answers PING and reports the
// process id of p, so that a different server already listening on the same
// port is not mistaken for ours.
func waitReady(p *process, port int, tlsConfig *tls.Config) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before answering PING: %v", binary, p.cmd.ProcessState)
		default:
		}
		pid, err := probe(addr, tlsConfig)
		if err == nil {
			if pid == p.cmd.Process.Pid {
				return nil
			}
			// Another server owns the port; ours will fail to bind and exit.
			lastErr = fmt.Errorf("%s is served by process %d, not ours (%d)", addr, pid, p.cmd.Process.Pid)
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer PING within %v: %v", binary, readyTimeout, lastErr)
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// probe sends PING and INFO server over a fresh connection (TLS when
// tlsConfig is set) and returns the server's process id.
func probe(addr string, tlsConfig *tls.Config) (int, error) {
	raw, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	conn := raw
	if tlsConfig != nil {
		conn = tls.Client(raw, tlsConfig)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(conn, "PING\r\nINFO server\r\n"); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "+PONG\r\n" {
		return 0, fmt.Errorf("PING answered %q", line)
	}
	line, err = r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if !strings.HasPrefix(line, "$") {
		return 0, fmt.Errorf("INFO answered %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("INFO answered %q", line)
	}
	info := make([]byte, n)
	if _, err := io.ReadFull(r, info); err != nil {
		return 0, err
	}
	for _, field := range strings.Split(string(info), "\r\n") {
		if v, ok := strings.CutPrefix(field, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

// claimSlots makes the one-node cluster on port serve every hash slot, if it
// does not already (after a restart it remembers them), and waits until the
// cluster reports itself healthy.
func claimSlots(port int) error {
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER INFO: %w", err)
		}
		if strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		if strings.Contains(info, "cluster_slots_assigned:0\r\n") {
			if err := c.ClusterAddSlotsRange(ctx, 0, 16383).Err(); err != nil {
				return fmt.Errorf("CLUSTER ADDSLOTSRANGE: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ok within %v: %s", readyTimeout, info)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
