package httpcr

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// newTestClient returns a client whose policy allows loopback, where the
// test servers are.
func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.Policy == nil {
		p, err := NewPolicy(loopback, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Policy = p
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkResult(t *testing.T, r Result, want Outcome, wantErr error) {
	t.Helper()
	if r.Outcome != want {
		t.Fatalf("outcome %s, want %s (detail %q, err %v)", r.Outcome, want, r.Detail, r.Err)
	}
	if want == Delivered && r.Err != nil {
		t.Fatalf("err %v with delivered", r.Err)
	}
	if wantErr != nil && !errors.Is(r.Err, wantErr) {
		t.Fatalf("err %v, want %v", r.Err, wantErr)
	}
	if want != Delivered && r.Detail == "" {
		t.Errorf("no detail for %s", want)
	}
}

func TestDigestVariants(t *testing.T) {
	tests := []struct {
		name     string
		cpe      cpeOpts
		path     string
		wantAuth string
	}{
		{"MD5 qop=auth with opaque", cpeOpts{algorithm: "MD5", qop: "auth", opaque: "5ccc069c403ebaf9f0171e9517f40e41"}, "/cr", "digest-md5"},
		{"MD5 without qop or algorithm", cpeOpts{}, "/cr", "digest-md5"},
		{"MD5 without qop, algorithm=MD5, opaque", cpeOpts{algorithm: "MD5", opaque: "xyz"}, "/", "digest-md5"},
		{"MD5-sess qop=auth", cpeOpts{algorithm: "MD5-sess", qop: "auth"}, "/cr", "digest-md5-sess"},
		{"SHA-256 qop=auth", cpeOpts{algorithm: "SHA-256", qop: "auth", opaque: "o"}, "/cr", "digest-sha-256"},
		{"SHA-256-sess qop=auth", cpeOpts{algorithm: "SHA-256-sess", qop: "auth"}, "/cr", "digest-sha-256-sess"},
		{"SHA-512-256 qop=auth", cpeOpts{algorithm: "SHA-512-256", qop: "auth"}, "/cr", "digest-sha-512-256"},
		{"qop list auth,auth-int", cpeOpts{qop: "auth,auth-int"}, "/cr", "digest-md5"},
		{"qop auth-int only", cpeOpts{algorithm: "SHA-256", qop: "auth-int"}, "/cr", "digest-sha-256"},
		{"userhash", cpeOpts{algorithm: "SHA-256", qop: "auth", userhash: true}, "/cr", "digest-sha-256"},
		{"quotes and backslashes in realm and opaque", cpeOpts{realm: `CPE "home" \ gw`, qop: "auth", opaque: `a"b\c`}, "/cr", "digest-md5"},
		{"empty path and a query", cpeOpts{qop: "auth"}, "?id=42&x=%20y", "digest-md5"},
		{"SHA-256 preferred to MD5 offered first", cpeOpts{algorithm: "SHA-256", qop: "auth", extraChallenge: `Digest realm="cwmp", nonce="unused", algorithm=MD5, qop="auth"`}, "/cr", "digest-sha-256"},
		{"Digest preferred to Basic", cpeOpts{qop: "auth", extraChallenge: `Basic realm="cwmp"`}, "/cr", "digest-md5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpe := &digestCPE{cpeOpts: tt.cpe}
			cpe.user, cpe.pass = "cpe-user", "s3cret:\"pw\""
			if cpe.realm == "" {
				cpe.realm = "cwmp"
			}
			srv := cpe.start(t)
			c := newTestClient(t, Config{AllowBasic: true})
			r := c.Do(context.Background(), Request{URL: srv.URL + tt.path, Username: cpe.user, Password: cpe.pass})
			checkResult(t, r, Delivered, nil)
			if r.Auth != tt.wantAuth || r.HTTPStatus != http.StatusNoContent {
				t.Errorf("auth %q status %d, want %q 204", r.Auth, r.HTTPStatus, tt.wantAuth)
			}
			reqs := cpe.requests()
			if len(reqs) != 2 {
				t.Fatalf("server saw %d requests, want 2", len(reqs))
			}
			if reqs[0].conn != reqs[1].conn {
				t.Errorf("authenticated request on a new connection although the CPE kept it open")
			}
			wantURI := tt.path
			if strings.HasPrefix(wantURI, "?") {
				wantURI = "/" + wantURI
			}
			if reqs[1].uri != wantURI {
				t.Errorf("request-target %q, want %q", reqs[1].uri, wantURI)
			}
		})
	}
}

func TestDigestWrongPassword(t *testing.T) {
	cpe := &digestCPE{cpeOpts: cpeOpts{realm: "cwmp", user: "u", pass: "right", qop: "auth"}}
	srv := cpe.start(t)
	c := newTestClient(t, Config{})
	r := c.Do(context.Background(), Request{URL: srv.URL, Username: "u", Password: "wrong"})
	checkResult(t, r, AuthFailed, ErrAuth)
	if r.HTTPStatus != 401 || r.Auth != "digest-md5" {
		t.Errorf("status %d auth %q, want 401 digest-md5", r.HTTPStatus, r.Auth)
	}
	if n := len(cpe.requests()); n != 2 {
		t.Errorf("server saw %d requests, want 2 (no retry without stale=true)", n)
	}
}

func TestDigestConnectionHandling(t *testing.T) {
	tests := []struct {
		name         string
		cpe          cpeOpts
		wantSameConn bool
	}{
		// Some CPEs bind the nonce to the connection: this one rejects a
		// response sent on any other.
		{"nonce bound to connection", cpeOpts{qop: "auth", perConnNonce: true}, true},
		{"Connection: close after 401", cpeOpts{qop: "auth", closeAfter401: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpe := &digestCPE{cpeOpts: tt.cpe}
			cpe.realm, cpe.user, cpe.pass = "cwmp", "u", "p"
			srv := cpe.start(t)
			c := newTestClient(t, Config{})
			r := c.Do(context.Background(), Request{URL: srv.URL + "/cr", Username: "u", Password: "p"})
			checkResult(t, r, Delivered, nil)
			reqs := cpe.requests()
			if len(reqs) != 2 {
				t.Fatalf("server saw %d requests, want 2", len(reqs))
			}
			if same := reqs[0].conn == reqs[1].conn; same != tt.wantSameConn {
				t.Errorf("same connection = %v, want %v", same, tt.wantSameConn)
			}
		})
	}
}

// A CPE that closes the connection after its 401 without announcing it
// gets the authenticated request on a new connection.
func TestSilentCloseAfter401(t *testing.T) {
	var mu sync.Mutex
	var got []string // Authorization per connection, in order
	addr := rawServer(t, func(c net.Conn) {
		req := readRequest(bufio.NewReader(c))
		if req == nil {
			return
		}
		authz := req.Header.Get("Authorization")
		mu.Lock()
		got = append(got, authz)
		mu.Unlock()
		if authz == "" {
			io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n1\"\r\nContent-Length: 0\r\n\r\n")
			return // close without Connection: close
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	c := newTestClient(t, Config{})
	r := c.Do(context.Background(), Request{URL: "http://" + addr.String() + "/", Username: "u", Password: "p"})
	checkResult(t, r, Delivered, nil)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != "" || !strings.HasPrefix(got[1], "Digest ") {
		t.Errorf("connections saw Authorization %q, want none then Digest", got)
	}
}

func TestStale(t *testing.T) {
	t.Run("retried once with the new nonce", func(t *testing.T) {
		cpe := &digestCPE{cpeOpts: cpeOpts{realm: "cwmp", user: "u", pass: "p", qop: "auth", staleFirst: 1}}
		srv := cpe.start(t)
		r := newTestClient(t, Config{}).Do(context.Background(), Request{URL: srv.URL, Username: "u", Password: "p"})
		checkResult(t, r, Delivered, nil)
		if n := len(cpe.requests()); n != 3 {
			t.Errorf("server saw %d requests, want 3", n)
		}
	})
	t.Run("only once", func(t *testing.T) {
		cpe := &digestCPE{cpeOpts: cpeOpts{realm: "cwmp", user: "u", pass: "p", qop: "auth", staleFirst: 100}}
		srv := cpe.start(t)
		r := newTestClient(t, Config{}).Do(context.Background(), Request{URL: srv.URL, Username: "u", Password: "p"})
		checkResult(t, r, AuthFailed, ErrAuth)
		if n := len(cpe.requests()); n != 3 {
			t.Errorf("server saw %d requests, want 3", n)
		}
	})
}

// basicCPE accepts only Basic with u/p.
type basicCPE struct {
	mu    sync.Mutex
	authz []string
}

func (b *basicCPE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.authz = append(b.authz, r.Header.Get("Authorization"))
	b.mu.Unlock()
	if u, p, ok := r.BasicAuth(); ok && u == "u" && p == "p" {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="cpe"`)
	w.WriteHeader(http.StatusUnauthorized)
}

func TestBasic(t *testing.T) {
	tests := []struct {
		name          string
		configAllows  bool
		requestAllows bool
		password      string
		want          Outcome
		wantErr       error
		wantRequests  int
	}{
		{"allowed by config", true, false, "p", Delivered, nil, 2},
		{"allowed by request", false, true, "p", Delivered, nil, 2},
		{"not allowed", false, false, "p", AuthFailed, ErrBasicDisabled, 1},
		{"wrong password", true, false, "x", AuthFailed, ErrAuth, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpe := &basicCPE{}
			srv := httptest.NewServer(cpe)
			defer srv.Close()
			c := newTestClient(t, Config{AllowBasic: tt.configAllows})
			r := c.Do(context.Background(), Request{URL: srv.URL, Username: "u", Password: tt.password, AllowBasic: tt.requestAllows})
			checkResult(t, r, tt.want, tt.wantErr)
			cpe.mu.Lock()
			defer cpe.mu.Unlock()
			if len(cpe.authz) != tt.wantRequests || cpe.authz[0] != "" {
				t.Errorf("server saw Authorization %q, want %d requests, the first without", cpe.authz, tt.wantRequests)
			}
			if tt.want == Delivered && r.Auth != "basic" {
				t.Errorf("auth %q, want basic", r.Auth)
			}
		})
	}
}

func TestAuthProblems(t *testing.T) {
	tests := []struct {
		name      string
		challenge []string
		user      string
		wantErr   error
	}{
		{"no credentials", []string{`Digest realm="r", nonce="n"`}, "", ErrNoCredentials},
		{"no challenge", nil, "u", ErrNoScheme},
		{"unsupported schemes", []string{`Negotiate`, `Digest realm="r", nonce="n", algorithm=SHA-1`}, "u", ErrNoScheme},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n int
			var mu sync.Mutex
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				n++
				mu.Unlock()
				for _, c := range tt.challenge {
					w.Header().Add("WWW-Authenticate", c)
				}
				w.WriteHeader(http.StatusUnauthorized)
			}))
			defer srv.Close()
			r := newTestClient(t, Config{}).Do(context.Background(), Request{URL: srv.URL, Username: tt.user})
			checkResult(t, r, AuthFailed, tt.wantErr)
			if r.HTTPStatus != 401 || r.Auth != "" {
				t.Errorf("status %d auth %q, want 401 and no auth", r.HTTPStatus, r.Auth)
			}
			mu.Lock()
			defer mu.Unlock()
			if n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
		})
	}
}

func TestStatuses(t *testing.T) {
	tests := []struct {
		name       string
		status     int // first answer
		authStatus int // answer to the authenticated request, if status is 401
		want       Outcome
		wantErr    error
		wantHTTP   int
	}{
		{"200", 200, 0, Delivered, nil, 200},
		{"204", 204, 0, Delivered, nil, 204},
		{"503 throttled", 503, 0, Throttled, ErrThrottled, 503},
		{"503 after authenticating", 401, 503, Throttled, ErrThrottled, 503},
		{"404", 404, 0, Error, ErrStatus, 404},
		{"500 after authenticating", 401, 500, Error, ErrStatus, 500},
		{"302 not followed", 302, 0, Error, ErrRedirect, 302},
		{"307 after authenticating not followed", 401, 307, Error, ErrRedirect, 307},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var paths []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths = append(paths, r.URL.Path)
				mu.Unlock()
				code := tt.status
				if r.Header.Get("Authorization") != "" {
					code = tt.authStatus
				}
				if code == 401 {
					w.Header().Set("WWW-Authenticate", `Digest realm="r", nonce="n", qop="auth"`)
				}
				if code/100 == 3 {
					w.Header().Set("Location", "http://u:p@example.com/elsewhere")
				}
				w.WriteHeader(code)
			}))
			defer srv.Close()
			r := newTestClient(t, Config{}).Do(context.Background(), Request{URL: srv.URL + "/cr", Username: "u", Password: "p"})
			checkResult(t, r, tt.want, tt.wantErr)
			if r.HTTPStatus != tt.wantHTTP {
				t.Errorf("HTTPStatus %d, want %d", r.HTTPStatus, tt.wantHTTP)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range paths {
				if p != "/cr" {
					t.Errorf("request for %q: redirect followed", p)
				}
			}
			if strings.Contains(r.Detail, "u:p@") {
				t.Errorf("detail %q shows credentials of the Location", r.Detail)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	r := newTestClient(t, Config{}).Do(context.Background(), Request{URL: "http://" + addr + "/", Username: "u", Password: "p"})
	checkResult(t, r, Unreachable, ErrUnreachable)
	if r.HTTPStatus != 0 {
		t.Errorf("HTTPStatus %d, want 0", r.HTTPStatus)
	}
}

func TestUnresolvable(t *testing.T) {
	// .invalid never resolves (RFC 6761 6.4).
	r := newTestClient(t, Config{}).Do(context.Background(), Request{URL: "http://cpe.invalid:7547/", Username: "u", Password: "p"})
	checkResult(t, r, Unreachable, ErrUnreachable)
}

// silentServer accepts connections, reads them and never answers. accepted
// receives each connection once it is open.
func silentServer(t *testing.T, accepted chan<- struct{}) netip.AddrPort {
	return rawServer(t, func(c net.Conn) {
		if accepted != nil {
			accepted <- struct{}{}
		}
		io.Copy(io.Discard, c) // until the client gives up and closes
	})
}

func TestTimeout(t *testing.T) {
	addr := silentServer(t, nil)
	url := "http://" + addr.String() + "/"
	t.Run("context deadline", func(t *testing.T) {
		c := newTestClient(t, Config{Timeout: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		r := c.Do(ctx, Request{URL: url, Username: "u", Password: "p"})
		checkResult(t, r, Timeout, ErrTimeout)
		if !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Errorf("err %v does not wrap context.DeadlineExceeded", r.Err)
		}
		if r.Duration > time.Minute {
			t.Errorf("took %v: the context's deadline was not honoured", r.Duration)
		}
	})
	t.Run("config timeout", func(t *testing.T) {
		c := newTestClient(t, Config{Timeout: 200 * time.Millisecond})
		r := c.Do(context.Background(), Request{URL: url, Username: "u", Password: "p"})
		checkResult(t, r, Timeout, ErrTimeout)
	})
}

func TestCanceled(t *testing.T) {
	accepted := make(chan struct{}, 1)
	addr := silentServer(t, accepted)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-accepted
		cancel()
	}()
	r := newTestClient(t, Config{Timeout: time.Hour}).Do(ctx, Request{URL: "http://" + addr.String() + "/"})
	checkResult(t, r, Error, ErrCanceled)
}

func TestLargeBodies(t *testing.T) {
	const big = 8 << 20
	t.Run("401 body past the cap: new connection", func(t *testing.T) {
		cpe := &digestCPE{cpeOpts: cpeOpts{realm: "r", user: "u", pass: "p", qop: "auth"}}
		var mu sync.Mutex
		conns := map[string]bool{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			conns[r.RemoteAddr] = true
			mu.Unlock()
			if r.Header.Get("Authorization") != "" {
				cpe.ServeHTTP(w, r)
				return
			}
			// A challenge followed by a body of 8 MiB.
			rec := httptest.NewRecorder()
			cpe.challenge(rec, r, false)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", fmt.Sprint(big))
			w.WriteHeader(http.StatusUnauthorized)
			w.Write(make([]byte, big)) // fails once the client closes
		}))
		defer srv.Close()
		r := newTestClient(t, Config{MaxBodyBytes: 1024}).Do(context.Background(), Request{URL: srv.URL, Username: "u", Password: "p"})
		checkResult(t, r, Delivered, nil)
		mu.Lock()
		defer mu.Unlock()
		if len(conns) != 2 {
			t.Errorf("%d connections, want 2", len(conns))
		}
	})
	t.Run("endless chunked 401 body", func(t *testing.T) {
		addr := rawServer(t, func(c net.Conn) {
			req := readRequest(bufio.NewReader(c))
			if req == nil {
				return
			}
			if req.Header.Get("Authorization") != "" {
				io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
				return
			}
			io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\nTransfer-Encoding: chunked\r\n\r\n")
			chunk := "400\r\n" + strings.Repeat("x", 0x400) + "\r\n"
			for {
				if _, err := io.WriteString(c, chunk); err != nil {
					return
				}
			}
		})
		r := newTestClient(t, Config{}).Do(context.Background(), Request{URL: "http://" + addr.String(), Username: "u", Password: "p"})
		checkResult(t, r, Delivered, nil)
	})
	t.Run("200 with a huge body", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write(make([]byte, big))
		}))
		defer srv.Close()
		r := newTestClient(t, Config{}).Do(context.Background(), Request{URL: srv.URL})
		checkResult(t, r, Delivered, nil)
	})
}

// The CPE's bytes here are garbage; none of it may panic, hang or be
// mistaken for a delivery.
func TestGarbageResponses(t *testing.T) {
	tests := []struct {
		name    string
		resp    string
		want    Outcome
		wantErr error
	}{
		{"binary", "\x00\xff\xfe\x16\x03\x01garbage\r\n\r\n", Error, ErrProtocol},
		{"bad status code", "HTTP/1.1 abc OK\r\n\r\n", Error, ErrProtocol},
		{"no status line end", "HTTP/1.1 200", Error, ErrProtocol},
		{"closed without a byte", "", Error, ErrProtocol},
		{"HTTP/0.9 body", "hello\n", Error, ErrProtocol},
		{"header without end", "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"" + strings.Repeat("r", 64<<10), Error, ErrProtocol},
		// The broken body costs the connection; the CPE then rejects the
		// authenticated request the same way.
		{"bad chunked 401", "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", AuthFailed, ErrAuth},
		{"401 with empty challenge", "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: \r\nContent-Length: 0\r\n\r\n", AuthFailed, ErrNoScheme},
		{"401 with garbage challenge", "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: \"\\=,,Digest\r\nContent-Length: 0\r\n\r\n", AuthFailed, ErrNoScheme},
		{"1xx", "HTTP/1.1 100 Continue\r\n\r\n", Error, ErrStatus},
		{"status 999", "HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n", Error, ErrStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := rawServer(t, func(c net.Conn) {
				if readRequest(bufio.NewReader(c)) == nil {
					return
				}
				io.WriteString(c, tt.resp)
			})
			r := newTestClient(t, Config{Timeout: 5 * time.Second}).Do(context.Background(), Request{URL: "http://" + addr.String(), Username: "u", Password: "p"})
			checkResult(t, r, tt.want, tt.wantErr)
		})
	}
}

func TestDetailNeverShowsPassword(t *testing.T) {
	const pw = "Pa55-w0rd-xyz"
	tests := []struct {
		name string
		resp string
	}{
		{"status line", "HTTP/1.1 " + pw + "\r\n\r\n"},
		{"redirect", "HTTP/1.1 302 Found\r\nLocation: http://x/" + pw + "\r\n\r\n"},
		{"challenge", "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest nonce=n, algorithm=" + pw + "\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := rawServer(t, func(c net.Conn) {
				if readRequest(bufio.NewReader(c)) != nil {
					io.WriteString(c, tt.resp)
				}
			})
			r := newTestClient(t, Config{}).Do(context.Background(), Request{URL: "http://" + addr.String(), Username: "u", Password: pw})
			if r.Outcome == Delivered || strings.Contains(r.Detail, pw) || strings.Contains(r.Err.Error(), pw) {
				t.Errorf("outcome %s, detail %q, err %v", r.Outcome, r.Detail, r.Err)
			}
		})
	}
}

func TestHTTPS(t *testing.T) {
	cpe := &digestCPE{cpeOpts: cpeOpts{realm: "r", user: "u", pass: "p", qop: "auth"}}
	srv := httptest.NewTLSServer(cpe)
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	tests := []struct {
		name    string
		cfg     Config
		want    Outcome
		wantErr error
	}{
		{"self-signed refused by default", Config{}, Error, ErrTLS},
		{"InsecureSkipVerify", Config{InsecureSkipVerify: true}, Delivered, nil},
		{"CPE's CA in the roots", Config{TLS: &tls.Config{RootCAs: roots}}, Delivered, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestClient(t, tt.cfg).Do(context.Background(), Request{URL: srv.URL + "/cr", Username: "u", Password: "p"})
			checkResult(t, r, tt.want, tt.wantErr)
		})
	}
}

func TestPolicyAtDial(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
	}))
	defer srv.Close()
	port := netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()
	mustPolicy := func(allow, deny []netip.Prefix) *Policy {
		p, err := NewPolicy(allow, deny)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		policy  *Policy
		host    string
		want    Outcome
		wantErr error
	}{
		{"loopback denied by default", mustPolicy(nil, nil), "127.0.0.1", Error, ErrDenied},
		{"mapped loopback denied by default", mustPolicy(nil, nil), "[::ffff:127.0.0.1]", Error, ErrDenied},
		{"localhost denied by default after resolution", mustPolicy(nil, nil), "localhost", Error, ErrDenied},
		{"allowed with 127.0.0.0/8", mustPolicy(loopback[:1], nil), "127.0.0.1", Delivered, nil},
		{"localhost allowed with 127.0.0.0/8", mustPolicy(loopback[:1], nil), "localhost", Delivered, nil},
		{"explicit deny wins", mustPolicy(loopback[:1], []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}), "localhost", Error, ErrDenied},
		{"allow list excludes the rest", mustPolicy([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, nil), "127.0.0.1", Error, ErrDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			before := hits
			mu.Unlock()
			reg := prometheus.NewRegistry()
			c := newTestClient(t, Config{Policy: tt.policy, Metrics: reg})
			r := c.Do(context.Background(), Request{URL: fmt.Sprintf("http://%s:%d/cr", tt.host, port)})
			checkResult(t, r, tt.want, tt.wantErr)
			mu.Lock()
			after := hits
			mu.Unlock()
			if tt.want != Delivered && after != before {
				t.Errorf("a denied request reached the server")
			}
			if tt.wantErr == ErrDenied && counterValue(t, reg, "crrelay_http_cr_denied_total", "") != 1 {
				t.Errorf("denied_total not incremented")
			}
		})
	}
}

// The dialer's Control hook refuses what the policy denies even when
// resolution was not consulted (a literal, or a rebinding resolver).
func TestControlRefusesDeniedAddress(t *testing.T) {
	c := newTestClient(t, Config{Policy: func() *Policy { p, _ := NewPolicy(nil, nil); return p }()})
	x := &exchange{c: c, t: &target{host: "127.0.0.1", port: 9}}
	err := x.dial(context.Background(), netip.MustParseAddr("127.0.0.1"))
	if !errors.Is(err, ErrDenied) {
		t.Fatalf("dial to loopback: %v, want ErrDenied", err)
	}
}

func TestBadRequests(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		wantErr error
	}{
		{"empty URL", Request{}, ErrBadURL},
		{"ftp", Request{URL: "ftp://192.0.2.1/"}, ErrBadURL},
		{"no scheme", Request{URL: "192.0.2.1:7547/"}, ErrBadURL},
		{"userinfo", Request{URL: "http://u:secret@192.0.2.1/"}, ErrBadURL},
		{"no host", Request{URL: "http:///cr"}, ErrBadURL},
		{"bad port", Request{URL: "http://192.0.2.1:99999/"}, ErrBadURL},
		{"port 0", Request{URL: "http://192.0.2.1:0/"}, ErrBadURL},
		{"control character", Request{URL: "http://192.0.2.1/\r\nX: y"}, ErrBadURL},
		{"username with CRLF", Request{URL: "http://192.0.2.1/", Username: "u\r\nX-Injected: 1"}, ErrBadUsername},
	}
	c := newTestClient(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Do(context.Background(), tt.req)
			checkResult(t, r, Error, tt.wantErr)
			if strings.Contains(r.Detail, "secret") {
				t.Errorf("detail %q shows the URL's password", r.Detail)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{"zero is fine", Config{}, nil},
		{"negative timeout", Config{Timeout: -1}, ErrBadTimeout},
		{"negative connect timeout", Config{ConnectTimeout: -1}, ErrBadTimeout},
		{"negative concurrency", Config{MaxConcurrent: -1}, ErrBadLimit},
		{"negative per host", Config{MaxPerHost: -1}, ErrBadLimit},
		{"negative body", Config{MaxBodyBytes: -1}, ErrBadLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("New: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestConcurrencyLimits(t *testing.T) {
	t.Run("per host", func(t *testing.T) {
		const perHost, n = 2, 6
		var mu sync.Mutex
		inside, most := 0, 0
		entered := make(chan struct{}, n)
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			inside++
			most = max(most, inside)
			mu.Unlock()
			entered <- struct{}{}
			<-release
			mu.Lock()
			inside--
			mu.Unlock()
		}))
		defer srv.Close()
		c := newTestClient(t, Config{MaxPerHost: perHost})
		var wg sync.WaitGroup
		results := make([]Result, n)
		for i := range n {
			wg.Go(func() { results[i] = c.Do(context.Background(), Request{URL: srv.URL}) })
		}
		for range perHost {
			<-entered
		}
		close(release)
		wg.Wait()
		for _, r := range results {
			checkResult(t, r, Delivered, nil)
		}
		if most > perHost {
			t.Errorf("%d requests in flight to one host, limit %d", most, perHost)
		}
		if h := c.lim.hostsInUse(); h != 0 {
			t.Errorf("%d per-host entries left after all requests ended", h)
		}
	})
	t.Run("waiting for a slot times out", func(t *testing.T) {
		accepted := make(chan struct{}, 1)
		addr := silentServer(t, accepted)
		c := newTestClient(t, Config{MaxConcurrent: 1, Timeout: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan Result)
		go func() { done <- c.Do(ctx, Request{URL: "http://" + addr.String()}) }()
		<-accepted // the first request holds the only slot

		ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel2()
		r := c.Do(ctx2, Request{URL: "http://" + addr.String()})
		checkResult(t, r, Timeout, ErrTimeout)
		if !strings.Contains(r.Detail, "slot") {
			t.Errorf("detail %q does not say it waited for a slot", r.Detail)
		}
		cancel()
		<-done
	})
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	c := newTestClient(t, Config{Metrics: reg})
	// A second client on the same registry shares the collectors.
	c2 := newTestClient(t, Config{Metrics: reg})
	c.Do(context.Background(), Request{URL: srv.URL})
	c2.Do(context.Background(), Request{URL: srv.URL})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	c.Do(context.Background(), Request{URL: "http://" + ln.Addr().String()}) // refused
	if got := counterValue(t, reg, "crrelay_http_cr_requests_total", "delivered"); got != 2 {
		t.Errorf("delivered = %v, want 2", got)
	}
	if got := counterValue(t, reg, "crrelay_http_cr_requests_total", "unreachable"); got != 1 {
		t.Errorf("unreachable = %v, want 1", got)
	}
	if got := counterValue(t, reg, "crrelay_http_cr_inflight", ""); got != 0 {
		t.Errorf("inflight = %v, want 0", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "crrelay_http_cr_") {
			t.Errorf("metric %s lacks the prefix", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "outcome" {
					t.Errorf("metric %s has label %s", mf.GetName(), l.GetName())
				}
			}
		}
		if mf.GetName() == "crrelay_http_cr_duration_seconds" && mf.GetMetric()[0].GetHistogram().GetSampleCount() != 3 {
			t.Errorf("duration count %d, want 3", mf.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
}

// counterValue returns a counter's or gauge's value, selected by its
// outcome label if outcome is not "".
func counterValue(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if outcome != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != outcome) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
