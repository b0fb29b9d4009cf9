package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// Prosody, Debian's XMPP server, is the reference the XMPP broker's
// figures are compared with. The bench runs it from a temporary directory
// with a generated configuration, never as the system service.

// ensureProsody returns the path of prosody, installing Debian's package
// first when it is missing and the bench runs as root. The package's
// own service, if the installation started it, is stopped and disabled:
// the bench runs its own instance.
func ensureProsody() (string, error) {
	if p, err := exec.LookPath("prosody"); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("prosody not installed and not root to apt-get install prosody")
	}
	fmt.Fprintln(os.Stderr, "installing prosody (apt-get update; apt-get install prosody)...")
	if out, err := exec.Command("apt-get", "update", "-q").CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get update: %v (%s)", err, lastLine(out))
	}
	cmd := exec.Command("apt-get", "install", "-y", "-q", "prosody")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get install prosody: %v (%s)", err, lastLine(out))
	}
	stopProsodyService()
	return exec.LookPath("prosody")
}

// stopProsodyService stops the instance the package may have started,
// and keeps it from starting at boot. Without systemd (a container) the
// package's start is usually denied by policy-rc.d; if it ran anyway, its
// pid file names it.
func stopProsodyService() {
	if _, err := exec.LookPath("systemctl"); err == nil {
		_ = exec.Command("systemctl", "disable", "--now", "prosody.service").Run()
	}
	b, err := os.ReadFile("/run/prosody/prosody.pid")
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), "prosody") {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
}

// prosodyVersion returns the installed version, as the package states it.
func prosodyVersion() string {
	b, err := os.ReadFile("/usr/lib/prosody/prosody.version")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// prosodyServer is a running Prosody.
type prosodyServer struct {
	cmd     *exec.Cmd
	dir     string
	domain  string
	addr    string // c2s: STARTTLS, required
	tlsAddr string // c2s direct TLS (XEP-0368)
	tls     *tls.Config
	uid     int // owner of its files, or -1 when it runs as this process's user
	gid     int
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// startProsody runs Prosody from a temporary directory: client-to-server
// only, on two loopback ports (STARTTLS required, and direct TLS), with a
// generated self-signed certificate for domain, SCRAM-SHA-1 accounts
// (internal_hashed) in a data directory of its own, and warnings logged
// to prosody.log. No server-to-server, no offline storage, no rate
// limits (mod_limits is not loaded). As root it runs as the prosody user,
// since Prosody refuses to run as root. It returns once the ports accept
// connections.
func startProsody(ctx context.Context, path, domain string) (*prosodyServer, error) {
	dir, err := os.MkdirTemp("", "prosody-bench-")
	if err != nil {
		return nil, err
	}
	p := &prosodyServer{dir: dir, domain: domain, uid: -1, gid: -1, done: make(chan struct{})}
	fail := func(err error) (*prosodyServer, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("prosody")
		if err != nil {
			return fail(fmt.Errorf("running as root and no prosody user to run Prosody as: %w", err))
		}
		p.uid, _ = strconv.Atoi(u.Uid)
		p.gid, _ = strconv.Atoi(u.Gid)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool, err := writeSelfSigned(certFile, keyFile, domain)
	if err != nil {
		return fail(err)
	}
	p.tls = &tls.Config{ServerName: domain, RootCAs: pool, MinVersion: tls.VersionTLS12}
	ports, err := freeTCPPorts(2)
	if err != nil {
		return fail(err)
	}
	p.addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	p.tlsAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	cfg := filepath.Join(dir, "prosody.cfg.lua")
	if err := os.WriteFile(cfg, []byte(prosodyConfig(dir, domain, ports[0], ports[1])), 0o640); err != nil {
		return fail(err)
	}
	for _, d := range []string{"data", filepath.Join("data", prosodyEncode(domain)), filepath.Join("data", prosodyEncode(domain), "accounts")} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			return fail(err)
		}
	}
	if err := p.chownAll(); err != nil {
		return fail(err)
	}

	p.cmd = exec.Command(path, "-F", "--config", cfg)
	if p.uid >= 0 {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.gid)}}
	}
	out := &logTail{max: 20}
	p.cmd.Stdout, p.cmd.Stderr = lineWriter{out}, lineWriter{out}
	if err := p.cmd.Start(); err != nil {
		return fail(err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.done) }()

	// Ready when both ports accept connections. Prosody logs nothing at
	// warning level when it starts well, so the ports are polled.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if dialable(p.addr) && dialable(p.tlsAddr) {
			return p, nil
		}
		select {
		case <-p.done:
			os.RemoveAll(dir)
			logged, _ := os.ReadFile(filepath.Join(dir, "prosody.log"))
			return nil, fmt.Errorf("prosody exited (%v):\n%s%s", p.waitErr, out, logged)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("prosody did not listen within 15s:\n%s", out)
		}
	}
}

func prosodyConfig(dir, domain string, c2s, directTLS int) string {
	return fmt.Sprintf(`-- Generated by crrelay's bench.
pidfile = %[1]q
data_path = %[2]q
certificates = %[3]q
log = { { levels = { min = "warn" }, to = "file", filename = %[4]q } }
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
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), dir, filepath.Join(dir, "prosody.log"),
		c2s, directTLS, filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem"), domain)
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (p *prosodyServer) pid() int { return p.cmd.Process.Pid }

// stop stops Prosody cleanly (SIGTERM; it takes a second or so), killing
// it after 10 seconds, and removes its directory.
func (p *prosodyServer) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	os.RemoveAll(p.dir)
}

func (p *prosodyServer) chownAll() error {
	if p.uid < 0 {
		return nil
	}
	return filepath.Walk(p.dir, func(name string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(name, p.uid, p.gid)
	})
}

// prosodyIterations is the PBKDF2 iteration count of the accounts the
// bench writes: crrelay's (internal/scramcred.Iterations), so that PLAIN
// logins cost both servers the same. Prosody's own default is 10,000.
const prosodyIterations = 4096

// addAccounts creates accounts by writing them where Prosody's
// internal_hashed provider keeps them (data/<host>/accounts/<user>.dat,
// a Lua table of SCRAM-SHA-1 keys), concurrently: prosodyctl takes 70 ms
// an account. Prosody reads an account's file at each login, so accounts
// may be added while it runs.
func (p *prosodyServer) addAccounts(ctx context.Context, accounts []xmppAccount) error {
	dir := filepath.Join(p.dir, "data", prosodyEncode(p.domain), "accounts")
	g, ctx := errgroup.WithContext(ctx)
	workers := 2 * numCPU()
	for w := range workers {
		g.Go(func() error {
			for i := w; i < len(accounts); i += workers {
				if err := ctx.Err(); err != nil {
					return err
				}
				a := accounts[i]
				name := filepath.Join(dir, prosodyEncode(a.user)+".dat")
				if err := os.WriteFile(name, prosodyAccount(a.pass), 0o640); err != nil {
					return err
				}
				if p.uid >= 0 {
					if err := os.Chown(name, p.uid, p.gid); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// prosodyAccount is an account file as internal_hashed writes it: the
// salt is a string (Prosody uses a UUID), the keys hex (RFC 5802 3).
func prosodyAccount(pass string) []byte {
	var sb [12]byte
	rand.Read(sb[:])
	salt := hex.EncodeToString(sb[:])
	salted, _ := pbkdf2.Key(sha1.New, pass, []byte(salt), prosodyIterations, sha1.Size)
	mac := func(key []byte, s string) []byte {
		m := hmac.New(sha1.New, key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	stored := sha1.Sum(mac(salted, "Client Key"))
	return fmt.Appendf(nil, "return {\n\t[\"iteration_count\"] = %d;\n\t[\"salt\"] = %q;\n\t[\"stored_key\"] = %q;\n\t[\"server_key\"] = %q;\n};\n",
		prosodyIterations, salt, hex.EncodeToString(stored[:]), hex.EncodeToString(mac(salted, "Server Key")))
}

// prosodyEncode is how Prosody's datamanager names files and
// directories: every byte but ASCII letters and digits as %xx.
func prosodyEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02x", c)
		}
	}
	return b.String()
}

// writeSelfSigned writes a self-signed ECDSA P-256 certificate for domain
// and its key (PKCS #8), and returns a pool trusting it. The same files
// can be given to crrelay (--xmpp-cert, --xmpp-key), so both servers do
// the same TLS work.
func writeSelfSigned(certFile, keyFile, domain string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: domain},
		DNSNames:              []string{domain},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o640); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
}

// freeTCPPorts returns n loopback TCP ports that were free a moment ago.
func freeTCPPorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
