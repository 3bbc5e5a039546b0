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
	"time"

	"github.com/redis/go-redis/v9"
)

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
