// Package prosody runs Debian's Prosody, an XMPP server not written here,
// as a peer for crrelay's tests and the reference of its bench: from a
// temporary directory with a generated configuration and certificate,
// never as the system service, with accounts written straight into its
// storage.
//
// A Server is client-to-server only, on two loopback ports (STARTTLS
// required, and direct TLS, XEP-0368), with a self-signed certificate for
// its domain and SCRAM-SHA-1 accounts (internal_hashed). It has no
// server-to-server, no offline storage and no rate limits (mod_limits is
// not loaded), so that it measures and behaves as a plain broker.
package prosody

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

var (
	// ErrNotInstalled: there is no prosody executable.
	ErrNotInstalled = errors.New("prosody: not installed")
	// ErrNoUser: this process runs as root, which Prosody refuses, and
	// there is no prosody user to run it as.
	ErrNoUser = errors.New("prosody: running as root and no prosody user to run Prosody as")
	// ErrNoDomain: Config.Domain is empty.
	ErrNoDomain = errors.New("prosody: no domain")
	// ErrBadLogLevel: Config.LogLevel is not one of Prosody's levels.
	ErrBadLogLevel = errors.New(`prosody: log level must be "debug", "info", "warn" or "error"`)
	// ErrExited: Prosody exited before it listened.
	ErrExited = errors.New("prosody: exited")
	// ErrStartTimeout: Prosody did not listen within Config.StartTimeout.
	ErrStartTimeout = errors.New("prosody: did not listen in time")
)

// Config describes a Prosody to start.
type Config struct {
	// Domain is the VirtualHost, and the name the certificate is for.
	// Required.
	Domain string
	// Binary is the prosody executable. Defaults to the one in PATH.
	Binary string
	// LogLevel is the least level Prosody logs, to its standard output.
	// Defaults to "warn": at "info" it logs every connection, which costs
	// its one thread under load.
	LogLevel string
	// Output, if set, receives Prosody's standard output and error, from
	// one goroutine at a time; all is written once Stop or Kill returns.
	// The last lines are kept anyway, for Start's errors and Server.Log.
	Output io.Writer
	// StartTimeout bounds how long Start waits for Prosody to listen.
	// Defaults to 15s.
	StartTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.LogLevel == "" {
		c.LogLevel = "warn"
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 15 * time.Second
	}
	return c
}

func (c Config) validate() error {
	if c.Domain == "" {
		return ErrNoDomain
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("%w: %q", ErrBadLogLevel, c.LogLevel)
	}
	return nil
}

// Server is a running Prosody.
type Server struct {
	cmd     *exec.Cmd
	dir     string
	domain  string
	addr    string
	tlsAddr string
	tls     *tls.Config
	uid     int // owner of its files, or -1 when it runs as this process's user
	gid     int
	out     *tail
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
}

// stopGrace is how long Stop lets Prosody shut down before killing it;
// it takes a second or so.
const stopGrace = 10 * time.Second

// Start runs Prosody and returns once both its ports accept connections.
// As root it runs Prosody as the prosody user, since Prosody refuses to
// run as root. Cancelling ctx before then stops it; afterwards it runs
// until Stop or Kill.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	bin := cfg.Binary
	if bin == "" {
		p, err := exec.LookPath("prosody")
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
		}
		bin = p
	}
	s := &Server{domain: cfg.Domain, uid: -1, gid: -1, out: &tail{}, done: make(chan struct{})}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("prosody")
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoUser, err)
		}
		s.uid, _ = strconv.Atoi(u.Uid)
		s.gid, _ = strconv.Atoi(u.Gid)
	}
	// Under os.TempDir, not a test's TempDir: the latter's parents are
	// private to root, and as root Prosody runs as its own user.
	dir, err := os.MkdirTemp("", "crrelay-prosody-")
	if err != nil {
		return nil, err
	}
	s.dir = dir
	if err := s.prepare(cfg); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	s.cmd = exec.Command(bin, "-F", "--config", filepath.Join(dir, "prosody.cfg.lua"))
	if s.uid >= 0 {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)}}
	}
	var out io.Writer = s.out
	if cfg.Output != nil {
		out = io.MultiWriter(s.out, cfg.Output)
	}
	// The same comparable writer for both: exec then calls it from one
	// goroutine at a time, so that Output need not be safe for concurrent
	// use.
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { s.waitErr = s.cmd.Wait(); close(s.done) }()

	if err := s.waitListening(ctx, cfg.StartTimeout); err != nil {
		s.Kill()
		return nil, err
	}
	return s, nil
}

// prepare writes the certificate, the configuration and the empty data
// directory, owned by the user Prosody runs as.
func (s *Server) prepare(cfg Config) error {
	if err := os.Chmod(s.dir, 0o755); err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(s.dir, "cert.pem"), filepath.Join(s.dir, "key.pem")
	pool, err := WriteSelfSigned(certFile, keyFile, cfg.Domain)
	if err != nil {
		return err
	}
	s.tls = &tls.Config{ServerName: cfg.Domain, RootCAs: pool, MinVersion: tls.VersionTLS12}
	ports, err := FreeTCPPorts(2)
	if err != nil {
		return err
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	s.tlsAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	conf := configFile(s.dir, cfg.Domain, cfg.LogLevel, ports[0], ports[1], keyFile, certFile)
	if err := os.WriteFile(filepath.Join(s.dir, "prosody.cfg.lua"), conf, 0o640); err != nil {
		return err
	}
	if err := os.MkdirAll(s.accountDir(), 0o750); err != nil {
		return err
	}
	return s.chownAll()
}

// configFile is Prosody's configuration (a Lua file).
func configFile(dir, domain, logLevel string, c2s, directTLS int, keyFile, certFile string) []byte {
	return fmt.Appendf(nil, `-- Generated by crrelay's internal/prosody.
pidfile = %[1]q
data_path = %[2]q
certificates = %[3]q
log = { { levels = { min = %[4]q }, to = "console" } }
modules_enabled = { "roster", "saslauth", "tls", "ping", "disco" }
modules_disabled = { "s2s", "s2s_auth_certs", "offline" }
c2s_ports = { %[5]d }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { %[6]d }
c2s_direct_tls_interfaces = { "127.0.0.1" }
s2s_ports = {}
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
-- A login burst of thousands must not overflow the accept queue.
network_settings = { tcp_backlog = 4096 }
ssl = { key = %[7]q, certificate = %[8]q }
VirtualHost %[9]q
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), dir, logLevel,
		c2s, directTLS, keyFile, certFile, domain)
}

// waitListening returns once both ports accept connections. Prosody
// signals nothing else that works at every log level (at "warn" it logs
// nothing when it starts well, and sd_notify is not in 0.12), so the
// ports are tried every 20 ms, alongside the process's exit and ctx.
func (s *Server) waitListening(ctx context.Context, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if dialable(s.addr) && dialable(s.tlsAddr) {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("%w (%v):\n%s", ErrExited, s.waitErr, s.out)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%w (%v):\n%s", ErrStartTimeout, timeout, s.out)
		case <-tick.C:
		}
	}
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Addr is the client-to-server address, where STARTTLS is required.
func (s *Server) Addr() string { return s.addr }

// TLSAddr is the client-to-server address with direct TLS (XEP-0368).
func (s *Server) TLSAddr() string { return s.tlsAddr }

// Domain is the server's domain.
func (s *Server) Domain() string { return s.domain }

// TLSConfig returns a new client configuration that trusts the server's
// certificate and names its domain.
func (s *Server) TLSConfig() *tls.Config { return s.tls.Clone() }

// PID is the process id of Prosody.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Log returns the last lines Prosody wrote to its standard output and
// error.
func (s *Server) Log() string { return s.out.String() }

// Stop stops Prosody cleanly (SIGTERM; it takes a second or so), killing
// it after 10 seconds, and removes its directory.
func (s *Server) Stop() { s.halt(stopGrace) }

// Kill kills Prosody at once and removes its directory: for servers whose
// state is thrown away.
func (s *Server) Kill() { s.halt(0) }

func (s *Server) halt(grace time.Duration) {
	if grace > 0 {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-s.done:
		case <-t.C:
		}
	}
	_ = s.cmd.Process.Kill() // an error once it has exited
	<-s.done
	os.RemoveAll(s.dir)
}

func (s *Server) chownAll() error {
	if s.uid < 0 {
		return nil
	}
	return filepath.Walk(s.dir, func(name string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(name, s.uid, s.gid)
	})
}

// tailBytes is about how much of Prosody's output a Server keeps.
const tailBytes = 4 << 10

// tail keeps the end of a process's output, from a line start.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2*tailBytes {
		cut := len(t.b) - tailBytes
		for cut < len(t.b) && t.b[cut-1] != '\n' {
			cut++
		}
		t.b = append(t.b[:0], t.b[cut:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
