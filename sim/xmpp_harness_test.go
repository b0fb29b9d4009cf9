package sim

import (
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
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The XMPP server of these tests is Debian's Prosody, a peer not written
// here, until crrelay's broker exists: each test that needs one starts
// its own from a temporary directory, with accounts written straight into
// its storage. Tests skip when Prosody is not installed (apt-get install
// prosody; `make bench` installs it).

const testDomain = "sim.example"

type prosodyServer struct {
	addr    string // c2s, STARTTLS required
	tlsAddr string // c2s direct TLS
	dir     string
	tls     *tls.Config // trusts the server's certificate
	uid     int         // owner of the account files, or -1
	gid     int
	cmd     *exec.Cmd
}

// startProsody starts Prosody and returns once it listens.
func startProsody(t *testing.T) *prosodyServer {
	t.Helper()
	bin, err := exec.LookPath("prosody")
	if err != nil {
		t.Skip("prosody is not installed (apt-get install prosody): skipping the XMPP CPE tests that need an XMPP server")
	}
	// Not t.TempDir: its parents are private to root, and Prosody runs as
	// its own user when the tests run as root.
	dir, err := os.MkdirTemp("", "sim-prosody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &prosodyServer{dir: dir, uid: -1, gid: -1}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("prosody")
		if err != nil {
			t.Skip("running as root without a prosody user to run Prosody as")
		}
		p.uid, _ = strconv.Atoi(u.Uid)
		p.gid, _ = strconv.Atoi(u.Gid)
	}
	certPEM, keyPEM, pool := selfSigned(t, testDomain)
	p.tls = &tls.Config{ServerName: testDomain, RootCAs: pool}
	ports := freeTCPPorts(t, 2)
	p.addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	p.tlsAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	files := map[string]string{
		"cert.pem": certPEM, "key.pem": keyPEM,
		"prosody.cfg.lua": fmt.Sprintf(`pidfile = %[1]q
data_path = %[2]q
certificates = %[3]q
log = { { levels = { min = "info" }, to = "console" } }
modules_enabled = { "roster", "saslauth", "tls", "ping", "disco" }
modules_disabled = { "s2s", "s2s_auth_certs", "offline" }
c2s_ports = { %[4]d }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { %[5]d }
c2s_direct_tls_interfaces = { "127.0.0.1" }
s2s_ports = {}
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
ssl = { key = %[6]q, certificate = %[7]q }
VirtualHost %[8]q
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), dir, ports[0], ports[1],
			filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem"), testDomain),
	}
	for name, content := range files {
		p.writeFile(t, filepath.Join(dir, name), content)
	}
	p.mkdir(t, filepath.Join(dir, "data"))
	p.mkdir(t, filepath.Join(dir, "data", prosodyEncode(testDomain)))
	p.mkdir(t, filepath.Join(dir, "data", prosodyEncode(testDomain), "accounts"))
	p.chown(t, dir)

	p.cmd = exec.Command(bin, "-F", "--config", filepath.Join(dir, "prosody.cfg.lua"))
	if p.uid >= 0 {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.gid)}}
	}
	// Ready once both listeners are up; the log says so, line by line.
	log := &prosodyLog{ready: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Killed rather than stopped: Prosody takes over a second to shut
		// down cleanly, and its state is thrown away.
		p.cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prosody log:\n%s", log)
		}
	})
	select {
	case <-log.ready:
	case <-exited:
		t.Fatalf("prosody exited:\n%s", log)
	case <-time.After(testTimeout):
		t.Fatalf("prosody did not start:\n%s", log)
	}
	return p
}

// prosodyLog collects Prosody's console log and closes ready when both
// c2s listeners are up.
type prosodyLog struct {
	mu      sync.Mutex
	b       strings.Builder
	ready   chan struct{}
	isReady bool
}

func (l *prosodyLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if !l.isReady && strings.Contains(l.b.String(), "Activated service 'c2s_direct_tls'") {
		l.isReady = true
		close(l.ready)
	}
	return len(p), nil
}

func (l *prosodyLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (p *prosodyServer) writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	p.chown(t, name)
}

func (p *prosodyServer) mkdir(t *testing.T, name string) {
	t.Helper()
	if err := os.Mkdir(name, 0o750); err != nil {
		t.Fatal(err)
	}
	p.chown(t, name)
}

func (p *prosodyServer) chown(t *testing.T, name string) {
	t.Helper()
	if p.uid >= 0 {
		if err := os.Chown(name, p.uid, p.gid); err != nil {
			t.Fatal(err)
		}
	}
}

// addAccount writes an account as Prosody's internal_hashed provider
// stores it: SCRAM-SHA-1 StoredKey and ServerKey in hex, the salt as a
// string (RFC 5802 3).
func (p *prosodyServer) addAccount(t *testing.T, user, pass string) {
	t.Helper()
	var sb [12]byte
	rand.Read(sb[:])
	salt := hex.EncodeToString(sb[:])
	const iter = 4096
	salted, err := pbkdf2.Key(sha1.New, pass, []byte(salt), iter, sha1.Size)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, s string) []byte {
		m := hmac.New(sha1.New, key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	stored := sha1.Sum(mac(salted, "Client Key"))
	content := fmt.Sprintf("return {\n\t[\"iteration_count\"] = %d;\n\t[\"salt\"] = %q;\n\t[\"stored_key\"] = %q;\n\t[\"server_key\"] = %q;\n};\n",
		iter, salt, hex.EncodeToString(stored[:]), hex.EncodeToString(mac(salted, "Server Key")))
	p.writeFile(t, filepath.Join(p.dir, "data", prosodyEncode(testDomain), "accounts", prosodyEncode(user)+".dat"), content)
}

// prosodyEncode is how Prosody's datamanager names files: every
// non-alphanumeric byte as %xx.
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

// selfSigned returns a certificate for domain and its key, PEM-encoded,
// and a pool that trusts it.
func selfSigned(t *testing.T, domain string) (certPEM, keyPEM string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: domain},
		DNSNames:              []string{domain},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})), pool
}

// freeTCPPorts returns n loopback ports that were free a moment ago.
func freeTCPPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
