package httpcr

import (
	"bufio"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// Test servers for the client: a Digest CPE built on net/http whose
// verifier is written from the RFC formulas, and a raw TCP server for
// misbehaving peers.

// digestCPE answers like a CPE's connection-request endpoint protected by
// Digest, and checks every Authorization it gets.
type digestCPE struct {
	cpeOpts

	mu     sync.Mutex
	nonces map[string]string // nonce -> remote address it was issued to
	seen   []seenRequest
	errs   []string
}

type cpeOpts struct {
	realm, user, pass string
	algorithm         string // the challenge's algorithm parameter; "" sends none
	qop               string // the challenge's qop parameter; "" sends none (RFC 2069)
	opaque            string // "" sends none
	userhash          bool
	perConnNonce      bool   // accept a nonce only on the connection it was issued on
	closeAfter401     bool   // Connection: close on challenges
	staleFirst        int    // answer this many correct responses with stale=true
	extraChallenge    string // another WWW-Authenticate field, sent first
}

type seenRequest struct {
	conn  string // remote address: one per TCP connection
	uri   string
	authz string
}

func (d *digestCPE) start(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, e := range d.errs {
			t.Errorf("server: %s", e)
		}
		if len(d.seen) > 0 && d.seen[0].authz != "" {
			t.Errorf("server: credentials sent before any challenge: %q", d.seen[0].authz)
		}
	})
	return srv
}

func (d *digestCPE) requests() []seenRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]seenRequest(nil), d.seen...)
}

func (d *digestCPE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	authz := r.Header.Get("Authorization")
	d.mu.Lock()
	d.seen = append(d.seen, seenRequest{conn: r.RemoteAddr, uri: r.RequestURI, authz: authz})
	d.mu.Unlock()
	if r.Header.Get("User-Agent") != "crrelay" || r.Method != http.MethodGet {
		d.errorf("request %s with User-Agent %q", r.Method, r.Header.Get("User-Agent"))
	}
	if authz == "" {
		d.challenge(w, r, false)
		return
	}
	if err := d.verify(r, authz); err != nil {
		if !errors.Is(err, errWrongResponse) {
			d.errorf("%v (Authorization: %s)", err, authz)
		}
		d.challenge(w, r, false)
		return
	}
	d.mu.Lock()
	stale := d.staleFirst > 0
	d.staleFirst--
	d.mu.Unlock()
	if stale {
		d.challenge(w, r, true)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *digestCPE) errorf(format string, args ...any) {
	d.mu.Lock()
	d.errs = append(d.errs, fmt.Sprintf(format, args...))
	d.mu.Unlock()
}

func (d *digestCPE) challenge(w http.ResponseWriter, r *http.Request, stale bool) {
	var b [12]byte
	rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	d.mu.Lock()
	if d.nonces == nil {
		d.nonces = map[string]string{}
	}
	d.nonces[nonce] = r.RemoteAddr
	d.mu.Unlock()

	c := `Digest realm="` + escapeQuoted(d.realm) + `", nonce="` + nonce + `"`
	if d.algorithm != "" {
		c += ", algorithm=" + d.algorithm
	}
	if d.qop != "" {
		c += `, qop="` + d.qop + `"`
	}
	if d.opaque != "" {
		c += `, opaque="` + escapeQuoted(d.opaque) + `"`
	}
	if d.userhash {
		c += ", userhash=true"
	}
	if stale {
		c += ", stale=true"
	}
	if d.extraChallenge != "" {
		w.Header().Add("WWW-Authenticate", d.extraChallenge)
	}
	w.Header().Add("WWW-Authenticate", c)
	if d.closeAfter401 {
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprint(w, "<html>401 Unauthorized</html>")
}

var errWrongResponse = errors.New("wrong response (password)")

// verify checks an Authorization field against RFC 7616 3.4 and the
// challenge this server sent.
func (d *digestCPE) verify(r *http.Request, authz string) error {
	ps, err := parseCredentialsStrict(authz)
	if err != nil {
		return err
	}
	mustQuote := []string{"username", "realm", "nonce", "uri", "response", "cnonce", "opaque"}
	mustNotQuote := []string{"algorithm", "qop", "nc", "userhash"}
	for _, n := range mustQuote {
		if p, ok := ps[n]; ok && !p.quoted {
			return fmt.Errorf("%s not quoted", n)
		}
	}
	for _, n := range mustNotQuote {
		if p, ok := ps[n]; ok && p.quoted {
			return fmt.Errorf("%s quoted", n)
		}
	}
	get := func(n string) string { return ps[n].value }
	has := func(n string) bool { _, ok := ps[n]; return ok }

	newHash, sess := algHash(d.algorithm)
	if newHash == nil {
		return fmt.Errorf("test server algorithm %q unknown", d.algorithm)
	}
	if d.algorithm == "" && has("algorithm") && get("algorithm") != "MD5" {
		return fmt.Errorf("algorithm=%s, challenge had none", get("algorithm"))
	}
	if d.algorithm != "" && get("algorithm") != d.algorithm {
		return fmt.Errorf("algorithm=%q, want %q", get("algorithm"), d.algorithm)
	}
	wantUser := d.user
	if d.userhash {
		wantUser = verifierHash(newHash, d.user+":"+d.realm)
		if get("userhash") != "true" {
			return errors.New("userhash=true missing")
		}
	}
	if get("username") != wantUser {
		return fmt.Errorf("username %q, want %q", get("username"), wantUser)
	}
	if get("realm") != d.realm {
		return fmt.Errorf("realm %q, want %q", get("realm"), d.realm)
	}
	if get("uri") != r.RequestURI {
		return fmt.Errorf("uri %q, request-target %q", get("uri"), r.RequestURI)
	}
	if d.opaque != "" && (!has("opaque") || get("opaque") != d.opaque) {
		return fmt.Errorf("opaque %q, want %q echoed", get("opaque"), d.opaque)
	}
	if d.opaque == "" && has("opaque") {
		return errors.New("opaque sent but never offered")
	}
	d.mu.Lock()
	issuedTo, known := d.nonces[get("nonce")]
	d.mu.Unlock()
	if !known {
		return fmt.Errorf("unknown nonce %q", get("nonce"))
	}
	if d.perConnNonce && issuedTo != r.RemoteAddr {
		return errWrongResponse // the CPE would just challenge again
	}

	qop := ""
	if d.qop != "" {
		qop = get("qop")
		offered := strings.Split(d.qop, ",")
		ok := false
		for _, o := range offered {
			ok = ok || strings.TrimSpace(o) == qop
		}
		if !ok {
			return fmt.Errorf("qop=%q not offered (%q)", qop, d.qop)
		}
		if get("nc") != "00000001" {
			return fmt.Errorf("nc=%q, want 00000001", get("nc"))
		}
		if get("cnonce") == "" {
			return errors.New("no cnonce with qop")
		}
	} else {
		// RFC 2617 3.2.2: without qop the client sends no qop and no nc,
		// and a cnonce only where -sess needs one.
		for _, n := range []string{"qop", "nc"} {
			if has(n) {
				return fmt.Errorf("%s=%q sent but the challenge had no qop", n, get(n))
			}
		}
		if has("cnonce") && !sess {
			return errors.New("cnonce sent but the challenge had no qop")
		}
	}
	// With userhash the response is still computed over the clear
	// username (RFC 7616 3.4.4).
	want := verifierResponse(newHash, sess, d.user, d.realm, d.pass, r.Method, get("uri"), get("nonce"), get("nc"), get("cnonce"), qop)
	if get("response") != want {
		return errWrongResponse
	}
	return nil
}

func algHash(name string) (func() hash.Hash, bool) {
	switch name {
	case "", "MD5":
		return md5.New, false
	case "MD5-sess":
		return md5.New, true
	case "SHA-256":
		return sha256.New, false
	case "SHA-256-sess":
		return sha256.New, true
	case "SHA-512-256":
		return sha512.New512_256, false
	case "SHA-512-256-sess":
		return sha512.New512_256, true
	}
	return nil, false
}

func verifierHash(newHash func() hash.Hash, s string) string {
	h := newHash()
	h.Write([]byte(s))
	return string(hexBytes(h.Sum(nil)))
}

func escapeQuoted(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

type credParam struct {
	value  string
	quoted bool
}

// parseCredentialsStrict parses "Digest a=b, c="d"" strictly: exactly one
// space after the scheme, ", " between parameters, no duplicates.
func parseCredentialsStrict(s string) (map[string]credParam, error) {
	rest, ok := strings.CutPrefix(s, "Digest ")
	if !ok {
		return nil, fmt.Errorf("not Digest: %q", s)
	}
	out := map[string]credParam{}
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("bad parameter at %q", rest)
		}
		name := rest[:eq]
		rest = rest[eq+1:]
		var p credParam
		if strings.HasPrefix(rest, `"`) {
			p.quoted = true
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' {
					i++
					if i == len(rest) {
						break
					}
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return nil, fmt.Errorf("unterminated %s", name)
			}
			p.value, rest = b.String(), rest[i+1:]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			p.value, rest = rest[:end], rest[end:]
			if !isToken(p.value) {
				return nil, fmt.Errorf("%s=%q is not a token", name, p.value)
			}
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("duplicate %s", name)
		}
		out[name] = p
		if rest != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(rest, ", "); !ok {
				return nil, fmt.Errorf("want \", \" at %q", rest)
			}
		}
	}
	return out, nil
}

// rawServer accepts connections on loopback and runs handle on each until
// the test ends. It returns the listener's address.
func rawServer(t testing.TB, handle func(c net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// readRequest reads one request from br, or returns nil.
func readRequest(br *bufio.Reader) *http.Request {
	r, err := http.ReadRequest(br)
	if err != nil {
		return nil
	}
	return r
}
