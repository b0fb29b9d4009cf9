package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve runs f on a loopback listener until the test ends and returns the
// listener's address. The listener is bound before Serve starts, so the
// fleet is reachable as soon as serve returns.
func serve(t *testing.T, f *Fleet) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// oneCPE serves a fleet holding one CPE named "cpe-1" with the given
// configuration (name, username and password filled in when empty). A
// non-nil clock replaces the fleet's.
func oneCPE(t *testing.T, cfg HTTPCPEConfig, clock *fakeClock) (*HTTPCPE, string) {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "cpe-1"
	}
	if cfg.Username == "" {
		cfg.Username = "cr-user"
	}
	if cfg.Password == "" {
		cfg.Password = "cr-pass"
	}
	f, err := NewFleet(FleetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if clock != nil {
		f.now = clock.Now
	}
	c, err := f.Add(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, serve(t, f)
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// wire is one TCP connection to the simulator on which the test writes
// requests byte by byte, as a connection-request client would.
type wire struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *wire {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A bound on a broken test, not a wait: every read below returns
	// as soon as the server answers.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &wire{t: t, c: c, br: bufio.NewReader(c)}
}

// get sends "GET target" with the given extra header lines and returns the
// response, its body read.
func (w *wire) get(target string, headers ...string) *http.Response {
	w.t.Helper()
	return w.request("GET", target, headers...)
}

func (w *wire) request(method, target string, headers ...string) *http.Response {
	w.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, w.c.RemoteAddr())
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(w.c, b.String()); err != nil {
		w.t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(w.br, &http.Request{Method: method})
	if err != nil {
		w.t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatalf("read body: %v", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body)) // for the test to read
	return resp
}

// closedByPeer reports whether the server has closed the connection.
func (w *wire) closedByPeer() bool {
	_, err := w.br.ReadByte()
	return err == io.EOF
}

func getOnce(t *testing.T, addr, target string, headers ...string) *http.Response {
	t.Helper()
	return dial(t, addr).get(target, headers...)
}

func wantStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d (WWW-Authenticate: %q)", resp.StatusCode, want, resp.Header.Get("WWW-Authenticate"))
	}
}

// wantEmpty checks that a CPE answered with no body, as agents do.
func wantEmpty(t *testing.T, resp *http.Response) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if len(body) != 0 {
		t.Errorf("%d response has a body: %q", resp.StatusCode, body)
	}
}

// challengeParams reads the parameters of a WWW-Authenticate challenge. It
// is deliberately not the package's parser.
var challengeParamRE = regexp.MustCompile(`([A-Za-z]+)=(?:"([^"]*)"|([^\s,]+))`)

func challengeParams(t *testing.T, resp *http.Response) map[string]string {
	t.Helper()
	h := resp.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(h, "Digest ") {
		t.Fatalf("not a Digest challenge: %q", h)
	}
	m := map[string]string{}
	for _, sm := range challengeParamRE.FindAllStringSubmatch(h, -1) {
		m[sm[1]] = sm[2] + sm[3]
	}
	return m
}

// answer is a Digest Authorization header built from the RFC formulas,
// independently of the package's code. Zero fields take their usual values.
type answer struct {
	user, pass string
	uri        string
	ch         map[string]string // the challenge
	nc         string            // default 00000001
	cnonce     string            // default 0a4f113b
	qop        string            // default: "auth" if the challenge offered qop
	noqop      bool              // answer as RFC 2069 even if qop was offered
}

func hexHash(alg, s string) string {
	if strings.HasPrefix(strings.ToUpper(alg), "SHA-256") {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// header returns the Authorization header line.
func (a answer) header() string {
	alg := a.ch["algorithm"]
	if alg == "" {
		alg = "MD5"
	}
	nc, cnonce, qop := a.nc, a.cnonce, a.qop
	if nc == "" {
		nc = "00000001"
	}
	if cnonce == "" {
		cnonce = "0a4f113b"
	}
	if qop == "" && a.ch["qop"] != "" && !a.noqop {
		qop = "auth"
	}
	realm, nonce := a.ch["realm"], a.ch["nonce"]
	// RFC 7616 3.4.2, 3.4.3, 3.4.1; RFC 2069 2.1.2 without qop.
	ha1 := hexHash(alg, a.user+":"+realm+":"+a.pass)
	if strings.HasSuffix(strings.ToLower(alg), "-sess") {
		ha1 = hexHash(alg, ha1+":"+nonce+":"+cnonce)
	}
	ha2 := hexHash(alg, "GET:"+a.uri)
	var b strings.Builder
	fmt.Fprintf(&b, `Digest username="%s", realm="%s", nonce="%s", uri="%s"`, a.user, realm, nonce, a.uri)
	if a.ch["algorithm"] != "" {
		fmt.Fprintf(&b, ", algorithm=%s", alg)
	}
	var resp string
	if qop != "" {
		resp = hexHash(alg, ha1+":"+nonce+":"+nc+":"+cnonce+":"+qop+":"+ha2)
		fmt.Fprintf(&b, `, qop=%s, nc=%s, cnonce="%s"`, qop, nc, cnonce)
	} else {
		resp = hexHash(alg, ha1+":"+nonce+":"+ha2)
	}
	fmt.Fprintf(&b, `, response="%s", opaque="%s"`, resp, a.ch["opaque"])
	return "Authorization: " + b.String()
}

func basicHeader(user, pass string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}
