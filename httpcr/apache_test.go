package httpcr

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

const (
	apacheBin     = "/usr/sbin/apache2"
	apacheModules = "/usr/lib/apache2/modules"
)

// TestApacheDigestInterop runs the client against Apache httpd's
// mod_auth_digest: a Digest server not written here. Debian's Apache
// supports only algorithm=MD5 with qop=auth ("AuthDigestQop none" and
// MD5-sess are refused at configuration time), so that is what it checks.
func TestApacheDigestInterop(t *testing.T) {
	if _, err := os.Stat(apacheBin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: %v; CI must install apache2 (Debian package)", apacheBin, err)
		}
		t.Skipf("%s not installed (%v): apt-get install apache2 to run the mod_auth_digest interop test", apacheBin, err)
	}
	url := startApache(t, "cwmp", "cpe-0001", "Circle of Life")

	tests := []struct {
		name     string
		path     string
		password string
		want     Outcome
		wantErr  error
		wantHTTP int
	}{
		{"right password", "/cr", "Circle of Life", Delivered, nil, 200},
		{"right password, query in the URL", "/cr?id=1&x=y", "Circle of Life", Delivered, nil, 200},
		{"wrong password", "/cr", "circle of life", AuthFailed, ErrAuth, 401},
	}
	c := newTestClient(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Do(context.Background(), Request{URL: url + tt.path, Username: "cpe-0001", Password: tt.password})
			checkResult(t, r, tt.want, tt.wantErr)
			if r.HTTPStatus != tt.wantHTTP || r.Auth != "digest-md5" {
				t.Errorf("status %d auth %q, want %d digest-md5", r.HTTPStatus, r.Auth, tt.wantHTTP)
			}
		})
	}
}

// startApache runs apache2 in the foreground with a configuration of its
// own in a temporary directory, protecting /cr with Digest for one user,
// and returns its base URL once it accepts connections.
func startApache(t *testing.T, realm, user, pass string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.Mkdir(filepath.Join(dir, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("docs/cr", "")
	// htdigest format: user:realm:MD5(user:realm:password).
	ha1 := md5.Sum([]byte(user + ":" + realm + ":" + pass))
	passwd := write("htdigest", fmt.Sprintf("%s:%s:%s\n", user, realm, hex.EncodeToString(ha1[:])))

	addr := freeLoopbackAddr(t)
	conf := write("httpd.conf", fmt.Sprintf(`ServerRoot %[1]s
Listen %[2]s
ServerName 127.0.0.1
PidFile %[1]s/httpd.pid
ErrorLog %[1]s/error.log
LogLevel warn
Mutex file:%[1]s default
DefaultRuntimeDir %[1]s
LoadModule mpm_prefork_module %[3]s/mod_mpm_prefork.so
LoadModule authn_core_module %[3]s/mod_authn_core.so
LoadModule authn_file_module %[3]s/mod_authn_file.so
LoadModule authz_core_module %[3]s/mod_authz_core.so
LoadModule authz_user_module %[3]s/mod_authz_user.so
LoadModule auth_digest_module %[3]s/mod_auth_digest.so
DocumentRoot %[1]s/docs
<Location "/cr">
	AuthType Digest
	AuthName "%[4]s"
	AuthDigestProvider file
	AuthUserFile %[5]s
	Require valid-user
</Location>
`, dir, addr, apacheModules, realm, passwd))

	var out bytes.Buffer
	cmd := exec.Command(apacheBin, "-X", "-f", conf) // -X: one process, in the foreground
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start apache2: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Kill()
			<-exited
		})
	}
	t.Cleanup(stop)
	logs := func() string {
		errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return out.String() + string(errLog)
	}

	// Poll until it accepts, within a bounded time.
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case <-exited:
			t.Fatalf("apache2 exited (%v):\n%s", waitErr, logs())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("apache2 did not accept connections on %s within 15s:\n%s", addr, logs())
		}
	}
}

// freeLoopbackAddr returns a loopback address with a port nothing listens
// on right now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
