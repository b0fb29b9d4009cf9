package httpcr

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome is how a connection request ended. The words are the wake path's
// status words.
type Outcome string

const (
	Delivered   Outcome = "delivered"   // the CPE answered 2xx
	AuthFailed  Outcome = "auth_failed" // the CPE's 401 could not be satisfied
	Throttled   Outcome = "throttled"   // the CPE answered 503: rate-limited, not offline
	Unreachable Outcome = "unreachable" // DNS or TCP connect failed
	Timeout     Outcome = "timeout"     // the deadline passed
	Error       Outcome = "error"       // anything else, policy denials included
)

var (
	ErrBadURL        = errors.New("httpcr: bad connection request URL")
	ErrBadUsername   = errors.New("httpcr: username contains control characters")
	ErrDenied        = errors.New("httpcr: destination denied by policy")
	ErrUnreachable   = errors.New("httpcr: CPE unreachable")
	ErrTimeout       = errors.New("httpcr: timed out")
	ErrCanceled      = errors.New("httpcr: canceled")
	ErrAuth          = errors.New("httpcr: CPE rejected the credentials")
	ErrNoCredentials = errors.New("httpcr: CPE requires authentication but no credentials are set")
	ErrBasicDisabled = errors.New("httpcr: CPE offers only Basic authentication, which is disabled")
	ErrNoScheme      = errors.New("httpcr: CPE offers no supported authentication scheme")
	ErrThrottled     = errors.New("httpcr: CPE is throttling connection requests")
	ErrRedirect      = errors.New("httpcr: redirect not followed")
	ErrStatus        = errors.New("httpcr: unexpected HTTP status")
	ErrProtocol      = errors.New("httpcr: malformed or interrupted HTTP exchange")
	ErrTLS           = errors.New("httpcr: TLS handshake failed")

	ErrBadTimeout = errors.New("httpcr: timeouts must not be negative")
	ErrBadLimit   = errors.New("httpcr: limits must not be negative")
	ErrBadPrefix  = errors.New("httpcr: invalid prefix")

	errTooLarge = errors.New("httpcr: response too large") // internal: capReader's limit
)

// Request is one connection request.
type Request struct {
	URL      string // the CPE's ConnectionRequestURL
	Username string // ConnectionRequestUsername
	Password string // ConnectionRequestPassword
	// AllowBasic lets this device use Basic authentication even when
	// Config.AllowBasic is off.
	AllowBasic bool
}

// Result is what happened. Do always returns one; only Delivered has a nil
// Err.
type Result struct {
	Outcome    Outcome
	HTTPStatus int    // the last status the CPE sent, 0 if none
	Detail     string // for humans; never contains the password
	// Auth is the scheme of the last Authorization sent: "" (none), "basic",
	// "digest-md5", "digest-md5-sess", "digest-sha-256",
	// "digest-sha-256-sess", "digest-sha-512-256", "digest-sha-512-256-sess".
	Auth     string
	Duration time.Duration
	Err      error // wraps the package's sentinels and, for network errors, the cause
}

// Config configures a Client.
type Config struct {
	// ConnectTimeout bounds each TCP connect. A connect that times out makes
	// the CPE Unreachable, not Timeout. Defaults to 3s.
	ConnectTimeout time.Duration
	// Timeout bounds a whole connection request: waiting for a slot, DNS,
	// connects, TLS and every round trip. The caller's context deadline may
	// shorten it, never lengthen it. Defaults to 10s.
	Timeout time.Duration
	// AllowBasic lets every device use Basic authentication, which sends the
	// password in clear text. Defaults to off; Request.AllowBasic enables it
	// per device.
	AllowBasic bool
	// TLS is the client configuration for https URLs; it is cloned per
	// connection and its ServerName, if empty, set to the URL's host.
	// Defaults to system roots with verification.
	TLS *tls.Config
	// InsecureSkipVerify accepts any CPE certificate: many CPEs have
	// self-signed ones. Defaults to off.
	InsecureSkipVerify bool
	// MaxConcurrent bounds requests in flight overall. Defaults to 1024.
	MaxConcurrent int
	// MaxPerHost bounds requests in flight per destination IP. Defaults to 4.
	MaxPerHost int
	// MaxBodyBytes is how much of a response body is read (and discarded);
	// past it the connection is closed. Defaults to 4096.
	MaxBodyBytes int64
	// Policy decides which destination IPs may be contacted. Defaults to
	// NewPolicy(nil, nil) at New: only the built-in denials.
	Policy *Policy
	// Metrics registers the client's collectors (crrelay_http_cr_*). Defaults
	// to none.
	Metrics prometheus.Registerer
	// Resolver resolves host names in URLs. Defaults to net.DefaultResolver.
	Resolver *net.Resolver
}

func (c *Config) validate() error {
	if c.ConnectTimeout < 0 || c.Timeout < 0 {
		return ErrBadTimeout
	}
	if c.MaxConcurrent < 0 || c.MaxPerHost < 0 || c.MaxBodyBytes < 0 {
		return ErrBadLimit
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 3 * time.Second
	}
	if c.Timeout == 0 {
		// PROTOCOL-NOTES 3: a hard-coded 2s is a known ACS bug; CPEs on
		// slow links take longer to answer twice.
		c.Timeout = 10 * time.Second
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 1024
	}
	if c.MaxPerHost == 0 {
		c.MaxPerHost = 4
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 4096
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
}

// Client sends HTTP connection requests. It is safe for concurrent use and
// keeps no state between requests other than concurrency accounting.
type Client struct {
	cfg    Config
	tls    *tls.Config
	lim    *limiter
	m      *metrics
	dialer net.Dialer
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if cfg.Policy == nil {
		p, err := NewPolicy(nil, nil)
		if err != nil {
			return nil, err
		}
		cfg.Policy = p
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, lim: newLimiter(cfg.MaxConcurrent, cfg.MaxPerHost), m: m}
	if cfg.TLS != nil {
		c.tls = cfg.TLS.Clone()
	} else {
		c.tls = &tls.Config{}
	}
	if cfg.InsecureSkipVerify {
		c.tls.InsecureSkipVerify = true
	}
	c.dialer = net.Dialer{
		Timeout:   cfg.ConnectTimeout,
		KeepAlive: -1, // connections live for one request
		// The policy is checked again on the socket's actual destination,
		// so nothing between resolution and connect can redirect it.
		Control: c.control,
	}
	return c, nil
}

// Do sends one connection request and reports how it ended. It never
// reuses a connection or a challenge from an earlier request.
func (c *Client) Do(ctx context.Context, req Request) Result {
	start := time.Now()
	x := exchange{c: c, req: req}
	r := x.run(ctx)
	r.Duration = time.Since(start)
	c.m.observe(&r)
	return r
}

// failure is how the exchange's steps report an outcome other than
// Delivered; run turns it into the Result.
type failure struct {
	outcome Outcome
	detail  string
	err     error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// fail builds a failure. cause, if not nil, is wrapped too: pass only
// errors whose text carries nothing from the CPE (net and context errors).
func fail(o Outcome, sentinel error, cause error, detail string) *failure {
	var err error
	if cause != nil {
		err = fmt.Errorf("%w: %s: %w", sentinel, detail, cause)
	} else {
		err = fmt.Errorf("%w: %s", sentinel, detail)
	}
	return &failure{outcome: o, detail: detail, err: err}
}

// failErr builds a failure from err, which already wraps a sentinel and
// carries only trusted text; the detail is prefix and err's message.
func failErr(o Outcome, err error, prefix string) *failure {
	return &failure{outcome: o, detail: prefix + strings.TrimPrefix(err.Error(), "httpcr: "), err: err}
}
