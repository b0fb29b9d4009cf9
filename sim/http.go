package sim

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of HTTPCPEConfig.
const (
	DefaultRealm      = "cwmp"
	DefaultRateWindow = time.Second
	DefaultNonceTTL   = 30 * time.Second
)

// HTTPCPEConfig describes the connection-request endpoint of one simulated
// CPE (TR-069 3.2.2).
type HTTPCPEConfig struct {
	// Name is the device id and the last element of the endpoint's path,
	// /cr/<Name>: 1-128 characters of A-Z a-z 0-9 . _ ~ -.
	Name string
	// Username and Password are the ConnectionRequestUsername and
	// ConnectionRequestPassword. Ignored in ModeNone.
	Username, Password string
	// Mode is how the CPE authenticates. Defaults to ModeDigestMD5.
	Mode Mode
	// CloseAfter401 sends every 401 with "Connection: close" and closes the
	// connection, so the client must answer the challenge on a new one.
	CloseAfter401 bool
	// NoncePerConnection makes a nonce valid only on the TCP connection it
	// was sent on. It cannot be combined with CloseAfter401.
	NoncePerConnection bool
	// RateLimit is how many connection requests the CPE accepts in any
	// RateWindow; past it every request gets 503 without Retry-After
	// (TR-069 3.2.2). Zero means no limit.
	RateLimit int
	// RateWindow defaults to DefaultRateWindow (1s).
	RateWindow time.Duration
	// SuccessStatus answers an accepted request: 200 or 204, empty body.
	// Defaults to 204.
	SuccessStatus int
	// Realm defaults to DefaultRealm ("cwmp").
	Realm string
	// NonceTTL is how long a nonce may be answered; a right answer with an
	// older nonce gets 401 with stale=true. Defaults to DefaultNonceTTL (30s).
	NonceTTL time.Duration
}

func (c HTTPCPEConfig) withDefaults() HTTPCPEConfig {
	if c.Mode == "" {
		c.Mode = ModeDigestMD5
	}
	if c.RateWindow == 0 {
		c.RateWindow = DefaultRateWindow
	}
	if c.SuccessStatus == 0 {
		c.SuccessStatus = http.StatusNoContent
	}
	if c.Realm == "" {
		c.Realm = DefaultRealm
	}
	if c.NonceTTL == 0 {
		c.NonceTTL = DefaultNonceTTL
	}
	return c
}

func (c HTTPCPEConfig) validate() error {
	switch {
	case !validName(c.Name):
		return ErrBadName
	case !c.Mode.Valid():
		return fmt.Errorf("%w %q", ErrUnknownMode, c.Mode)
	case c.Mode == ModeBasic && strings.Contains(c.Username, ":"):
		return ErrBadCredentials // RFC 7617 2: user-id cannot contain ':'
	case c.SuccessStatus != http.StatusOK && c.SuccessStatus != http.StatusNoContent:
		return ErrBadSuccessStatus
	case c.RateLimit < 0 || c.RateWindow < 0:
		return ErrBadRateLimit
	case c.NonceTTL < 0:
		return ErrBadNonceTTL
	case c.CloseAfter401 && c.NoncePerConnection:
		return ErrConflictingOptions
	}
	return nil
}

// validName keeps names to URL-unreserved characters (RFC 3986 2.3), so a
// name is its own path segment.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// Counters is a snapshot of what a CPE (or a fleet) has seen.
type Counters struct {
	Requests   uint64    // every request for the CPE's path
	Challenges uint64    // 401 responses, whatever the reason
	Accepted   uint64    // valid connection requests: wakes
	Rejected   uint64    // credentials sent but wrong (each also counts as a Challenge)
	Throttled  uint64    // 503 responses
	Malformed  uint64    // 400 and 405 responses
	LastWake   time.Time // when the last wake was accepted; zero if never
}

func (c *Counters) add(o Counters) {
	c.Requests += o.Requests
	c.Challenges += o.Challenges
	c.Accepted += o.Accepted
	c.Rejected += o.Rejected
	c.Throttled += o.Throttled
	c.Malformed += o.Malformed
	if o.LastWake.After(c.LastWake) {
		c.LastWake = o.LastWake
	}
}

// HTTPCPE is one simulated CPE's connection-request endpoint. It lives in a
// Fleet, which routes requests to it.
type HTTPCPE struct {
	cfg    HTTPCPEConfig
	alg    digestAlg // zero unless cfg.Mode is a Digest mode
	opaque string
	fleet  *Fleet

	requests, challenges, accepted, rejected, throttled, malformed atomic.Uint64
	lastWake                                                       atomic.Int64 // Unix ns

	mu   sync.Mutex
	uses nonceUses  // answered nonces and their nc
	rate rateWindow // accepted wakes
}

func newHTTPCPE(f *Fleet, cfg HTTPCPEConfig) *HTTPCPE {
	alg, _ := modeAlgorithm(cfg.Mode)
	var op [16]byte
	rand.Read(op[:])
	return &HTTPCPE{
		cfg:    cfg,
		alg:    alg,
		opaque: hex.EncodeToString(op[:]),
		fleet:  f,
		rate:   rateWindow{limit: cfg.RateLimit, per: cfg.RateWindow},
	}
}

// Name returns the CPE's name.
func (c *HTTPCPE) Name() string { return c.cfg.Name }

// Config returns the CPE's configuration with defaults filled in.
func (c *HTTPCPE) Config() HTTPCPEConfig { return c.cfg }

// Counters returns a snapshot of the CPE's counters.
func (c *HTTPCPE) Counters() Counters {
	s := Counters{
		Requests:   c.requests.Load(),
		Challenges: c.challenges.Load(),
		Accepted:   c.accepted.Load(),
		Rejected:   c.rejected.Load(),
		Throttled:  c.throttled.Load(),
		Malformed:  c.malformed.Load(),
	}
	if ns := c.lastWake.Load(); ns != 0 {
		s.LastWake = time.Unix(0, ns)
	}
	return s
}

// verdict is what the CPE does with a request.
type verdict int

const (
	vAccept    verdict = iota
	vChallenge         // no credentials: 401
	vReject            // wrong credentials: 401, counted as rejected
	vStale             // right answer, expired nonce: 401 stale=true
	vBad               // 400
)

// serve answers one request for this CPE; conn identifies its TCP connection.
func (c *HTTPCPE) serve(w http.ResponseWriter, r *http.Request, conn uint64) {
	c.requests.Add(1)
	now := c.fleet.now()
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		c.malformed.Add(1)
		c.logRefusal(r, slog.LevelInfo, errMethod)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}

	// A CPE that has used its budget answers 503 before looking at
	// credentials, as deployed agents do; only accepted requests use it.
	c.mu.Lock()
	full := c.rate.full(now)
	c.mu.Unlock()
	if full {
		c.throttle(w, r)
		return
	}

	var v verdict
	var why error
	switch {
	case c.cfg.Mode == ModeNone:
		v = vAccept
	case c.cfg.Mode == ModeBasic:
		v, why = c.checkBasic(r)
	default:
		v, why = c.checkDigest(r, conn, now)
	}

	switch v {
	case vAccept:
		c.accept(w, r, now)
	case vChallenge:
		c.challenge(w, conn, now, false)
	case vReject:
		c.rejected.Add(1)
		c.logRefusal(r, slog.LevelInfo, why)
		c.challenge(w, conn, now, false)
	case vStale:
		c.logRefusal(r, slog.LevelDebug, why)
		c.challenge(w, conn, now, true)
	case vBad:
		c.malformed.Add(1)
		c.logRefusal(r, slog.LevelInfo, why)
		w.WriteHeader(http.StatusBadRequest)
	}
}

func (c *HTTPCPE) accept(w http.ResponseWriter, r *http.Request, now time.Time) {
	c.mu.Lock()
	ok := c.rate.take(now)
	c.mu.Unlock()
	if !ok {
		c.throttle(w, r)
		return
	}
	c.accepted.Add(1)
	c.lastWake.Store(now.UnixNano())
	c.fleet.log.LogAttrs(r.Context(), slog.LevelDebug, "connection request accepted",
		slog.String("cpe", c.cfg.Name), slog.String("remote", r.RemoteAddr))
	if h := c.fleet.onWake; h != nil {
		h(c.cfg.Name, now)
	}
	w.WriteHeader(c.cfg.SuccessStatus)
}

func (c *HTTPCPE) throttle(w http.ResponseWriter, r *http.Request) {
	c.throttled.Add(1)
	c.fleet.log.LogAttrs(r.Context(), slog.LevelDebug, "connection request throttled",
		slog.String("cpe", c.cfg.Name), slog.String("remote", r.RemoteAddr))
	// TR-069 3.2.2: 503, and no Retry-After.
	w.WriteHeader(http.StatusServiceUnavailable)
}

func (c *HTTPCPE) challenge(w http.ResponseWriter, conn uint64, now time.Time, stale bool) {
	c.challenges.Add(1)
	var b []byte
	if c.cfg.Mode == ModeBasic {
		b = append(b, "Basic realm="...)
		b = appendQuoted(b, c.cfg.Realm)
	} else {
		if !c.cfg.NoncePerConnection {
			conn = 0
		}
		nonce := c.fleet.minter.mint(c.cfg.Name, now, conn)
		b = c.alg.appendDigestChallenge(b, c.cfg.Realm, nonce, c.opaque, stale)
	}
	h := w.Header()
	h.Set("WWW-Authenticate", string(b))
	if c.cfg.CloseAfter401 {
		// net/http closes the connection after a response carrying this.
		h.Set("Connection", "close")
	}
	w.WriteHeader(http.StatusUnauthorized)
}

func (c *HTTPCPE) logRefusal(r *http.Request, level slog.Level, why error) {
	c.fleet.log.LogAttrs(r.Context(), level, "connection request refused",
		slog.String("cpe", c.cfg.Name), slog.String("remote", r.RemoteAddr), slog.String("reason", why.Error()))
}

// authorization returns the request's one Authorization header.
func authorization(r *http.Request) (string, verdict, error) {
	hs := r.Header.Values("Authorization")
	switch len(hs) {
	case 0:
		return "", vChallenge, nil
	case 1:
		return hs[0], vAccept, nil
	}
	return "", vBad, errAuthMultiple
}

func (c *HTTPCPE) checkBasic(r *http.Request) (verdict, error) {
	h, v, err := authorization(r)
	if v != vAccept {
		return v, err
	}
	scheme, rest := splitAuthorization(h)
	if !strings.EqualFold(scheme, "Basic") {
		return vReject, errWrongScheme
	}
	user, pass, err := parseBasic(rest)
	if err != nil {
		return vBad, err
	}
	// Compare digests so neither length nor content leaks through timing.
	gu, gp := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	wu, wp := sha256.Sum256([]byte(c.cfg.Username)), sha256.Sum256([]byte(c.cfg.Password))
	if subtle.ConstantTimeCompare(gu[:], wu[:])&subtle.ConstantTimeCompare(gp[:], wp[:]) != 1 {
		return vReject, errPassword
	}
	return vAccept, nil
}

func (c *HTTPCPE) checkDigest(r *http.Request, conn uint64, now time.Time) (verdict, error) {
	h, v, err := authorization(r)
	if v != vAccept {
		return v, err
	}
	scheme, rest := splitAuthorization(h)
	if !strings.EqualFold(scheme, "Digest") {
		return vReject, errWrongScheme
	}
	p, err := parseDigestParams(rest)
	if err != nil {
		return vBad, err
	}
	for _, k := range [...]int{dpUsername, dpRealm, dpNonce, dpURI, dpResponse} {
		if !p.has(k) {
			return vBad, errMissingParam
		}
	}

	var nc uint32 = 1 // without qop every nonce is single-use
	if !c.alg.qop {
		// The challenge had no qop: an RFC 2069 answer has none of these,
		// and the agents that do this reject an answer that has any.
		if p.has(dpQop) || p.has(dpNC) || p.has(dpCnonce) {
			return vReject, errQopNotOffered
		}
	} else {
		if p.get(dpQop) != "auth" {
			return vReject, errBadQop // also qop=undefined, a known ACS bug
		}
		if p.get(dpCnonce) == "" {
			return vBad, errMissingParam
		}
		n, err := parseNC(p.get(dpNC))
		if err != nil {
			return vBad, err
		}
		if n == 0 {
			return vReject, errReplay // counts start at 1 (RFC 7616 3.4)
		}
		nc = n
	}
	// RFC 2617 3.2.2.5: the server SHOULD answer 400 when uri is not the
	// request's Request-URI.
	if p.get(dpURI) != r.RequestURI {
		return vBad, errURI
	}
	switch {
	case !c.alg.acceptsAlgorithm(p.get(dpAlgorithm)):
		return vReject, errAlgorithm
	case p.get(dpOpaque) != c.opaque:
		return vReject, errOpaque
	case p.get(dpRealm) != c.cfg.Realm:
		return vReject, errRealm
	case strings.EqualFold(p.get(dpUserhash), "true"):
		return vReject, errUserhash
	case p.get(dpUsername) != c.cfg.Username:
		return vReject, errUsername
	}

	id, issued, nconn, ok := c.fleet.minter.open(c.cfg.Name, p.get(dpNonce))
	if !ok || issued.After(now) {
		return vReject, errUnknownNonce
	}
	if c.cfg.NoncePerConnection && nconn != conn {
		return vReject, errOtherConnection
	}
	if !c.alg.verifyResponse(c.cfg.Password, &p, r.Method) {
		return vReject, errResponse
	}
	// RFC 7616 3.3: stale=true only when the answer was right for the
	// nonce, so the client knows to retry without asking for a password.
	expires := issued.Add(c.cfg.NonceTTL)
	if !now.Before(expires) {
		return vStale, errStale
	}
	c.mu.Lock()
	fresh := c.uses.record(id, nc, expires, now)
	c.mu.Unlock()
	if !fresh {
		return vReject, errReplay
	}
	return vAccept, nil
}

// parseNC parses nc-value = 8LHEX (RFC 7616 3.4).
func parseNC(s string) (uint32, error) {
	if len(s) != 8 {
		return 0, errBadNC
	}
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, errBadNC
	}
	return uint32(n), nil
}
