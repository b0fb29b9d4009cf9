package sim

// # XMPP CPEs and Annex K connection requests
//
// An XMPPCPE is the TR-069 Annex K side of a CPE: an XMPP client that
// keeps a session open to the broker and answers connectionRequest IQs,
// behaving like deployed agents (PROTOCOL-NOTES §2), with its settings
// named after TR-181 Device.XMPP.Connection.{i} and
// Device.ManagementServer.ConnReqAllowedJabberIDs.
//
//   - It connects over TCP and negotiates STARTTLS when the server lists
//     it <required/> (UseTLS false, TR-181's default) or whenever offered
//     (UseTLS true); or it speaks TLS from the first byte (DirectTLS).
//   - It authenticates with SCRAM-SHA-1, SCRAM-SHA-256 or PLAIN, binds
//     exactly its Resource (username@domain/resource is its
//     ConnReqJabberID), opens the legacy session when it is not optional,
//     and sends initial presence.
//   - Every KeepAlive it sends a whitespace keepalive, or a XEP-0199 ping
//     to the server (with a fresh id, or always id "s2c1" as a widespread
//     agent does). It never answers pings: servers must detect dead
//     sessions with read deadlines.
//   - A connectionRequest IQ get is answered with an empty result when its
//     sender is allowed (a full JID in AllowedJIDs matches exactly, a bare
//     one any resource, an empty list anyone) and its username and
//     password are right: that is a wake, counted and reported to OnWake.
//     A sender not allowed (or no from at all) gets service-unavailable;
//     wrong credentials get not-authorized. With LegacyErrors both errors
//     are type="cancel", not-authorized is misspelt not-autorized and the
//     request (password included) is echoed inside the error, as a
//     widespread agent answers. Other IQ requests get service-unavailable.
//   - When the stream drops it reconnects after a random wait between 0
//     and RetryInitial, doubling (RetryMultiplier) after each failed
//     attempt up to RetryMax (TR-181 ServerRetryInitialInterval,
//     ServerRetryIntervalMultiplier, ServerRetryMaxInterval).
//
// An XMPPFleet runs thousands of them cheaply: see xmpp_fleet.go.

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"
)

// Defaults of XMPPCPEConfig.
const (
	// DefaultXMPPResource is the resource CPEs bind when none is set.
	DefaultXMPPResource = "cwmp"
	// DefaultXMPPKeepAlive is how often an idle CPE sends a keepalive.
	DefaultXMPPKeepAlive = 60 * time.Second
	// DefaultXMPPRetryInitial, DefaultXMPPRetryMultiplier and
	// DefaultXMPPRetryMax are TR-181's defaults of
	// ServerRetryInitialInterval, ServerRetryIntervalMultiplier (2000 per
	// mille) and ServerRetryMaxInterval.
	DefaultXMPPRetryInitial    = 60 * time.Second
	DefaultXMPPRetryMultiplier = 2.0
	DefaultXMPPRetryMax        = 30720 * time.Second
	// DefaultXMPPNegotiationTimeout bounds a connection attempt, from
	// the TCP connect to the bound resource.
	DefaultXMPPNegotiationTimeout = 30 * time.Second
)

var (
	// Configuration errors of NewXMPPCPE and NewXMPPFleet.
	ErrNoXMPPServer     = errors.New("sim: XMPP server address is not set")
	ErrBadXMPPDomain    = errors.New("sim: XMPP domain is not a valid domainpart")
	ErrBadXMPPAccount   = errors.New("sim: XMPP username@domain/resource is not a valid JID")
	ErrUnknownMechanism = errors.New("sim: unknown SASL mechanism")
	ErrUnknownKeepalive = errors.New("sim: unknown XMPP keepalive style")
	ErrBadAllowedJID    = errors.New("sim: ConnReqAllowedJabberIDs entry is not a valid JID")
	ErrBadXMPPTimers    = errors.New("sim: XMPP keepalive, read timeout and retry intervals must not be negative, the multiplier at least 1")

	// ErrXMPPBusy: Run was called while the CPE already runs.
	ErrXMPPBusy = errors.New("sim: XMPP CPE is already running")
)

// XMPPKeepalive is how an idle XMPP CPE keeps its session alive.
type XMPPKeepalive string

// The keepalive styles deployed agents use (PROTOCOL-NOTES §2).
const (
	// KeepaliveWhitespace sends one space (RFC 6120 4.6.1), what TR-181
	// KeepAliveInterval describes.
	KeepaliveWhitespace XMPPKeepalive = "whitespace"
	// KeepalivePing sends a XEP-0199 ping to the server, a fresh id each
	// time.
	KeepalivePing XMPPKeepalive = "ping"
	// KeepalivePingS2C1 sends a XEP-0199 ping to the server with id
	// "s2c1" every time, as a widespread agent does.
	KeepalivePingS2C1 XMPPKeepalive = "ping-s2c1"
	// KeepaliveNone sends nothing.
	KeepaliveNone XMPPKeepalive = "none"
)

// s2c1 is the id a widespread agent gives every ping.
const s2c1 = "s2c1"

// Valid reports whether k is one of the known styles.
func (k XMPPKeepalive) Valid() bool {
	switch k {
	case KeepaliveWhitespace, KeepalivePing, KeepalivePingS2C1, KeepaliveNone:
		return true
	}
	return false
}

// MarshalText implements encoding.TextMarshaler.
func (k XMPPKeepalive) MarshalText() ([]byte, error) { return []byte(k), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so a style can be a
// flag (flag.TextVar); unknown names are an error.
func (k *XMPPKeepalive) UnmarshalText(b []byte) error {
	v := XMPPKeepalive(strings.TrimSpace(string(b)))
	if !v.Valid() {
		return fmt.Errorf("%w %q", ErrUnknownKeepalive, b)
	}
	*k = v
	return nil
}

// XMPPCPEConfig describes the Annex K XMPP client of one simulated CPE.
type XMPPCPEConfig struct {
	// Name is the device id: 1-128 characters of A-Z a-z 0-9 . _ ~ -.
	Name string
	// Server is the broker's address, host:port. Required: the simulator
	// does not look up _xmpp-client._tcp SRV records.
	Server string
	// Domain is the XMPP domain (TR-181 Domain), the domainpart of the
	// CPE's JID. Required.
	Domain string
	// Username and Password are the XMPP account. Username defaults to
	// Name.
	Username, Password string
	// Resource is bound as asked. Defaults to DefaultXMPPResource ("cwmp").
	Resource string
	// DirectTLS speaks TLS from the first byte (port 5223), rather than
	// TCP then STARTTLS.
	DirectTLS bool
	// UseTLS negotiates STARTTLS whenever the server offers it, and gives
	// up on a server that does not. When false, TR-181's default, the CPE
	// negotiates STARTTLS only when the server lists it <required/>.
	UseTLS bool
	// TLSConfig is shared by every connection, and by a fleet's CPEs.
	// Nil verifies the server's certificate for Domain against the
	// system's roots.
	TLSConfig *tls.Config
	// Mechanism defaults to MechSCRAMSHA1.
	Mechanism XMPPMechanism
	// CRUsername and CRPassword are the ConnectionRequestUsername and
	// ConnectionRequestPassword a connectionRequest must carry.
	CRUsername, CRPassword string
	// AllowedJIDs is ConnReqAllowedJabberIDs: the senders whose
	// connection requests are considered. A full JID matches exactly, a
	// bare JID any of its resources; empty allows anyone.
	AllowedJIDs []string
	// LegacyErrors answers refused connection requests as a widespread
	// agent does: type="cancel", not-authorized misspelt not-autorized,
	// and the request echoed inside the error.
	LegacyErrors bool
	// KeepAlive is the time between keepalives. Defaults to
	// DefaultXMPPKeepAlive (60s).
	KeepAlive time.Duration
	// Keepalive is the style. Defaults to KeepaliveWhitespace.
	Keepalive XMPPKeepalive
	// ReadTimeout ends a session when nothing at all arrives for that
	// long. Zero, the default, never does, as agents that rely on TCP.
	ReadTimeout time.Duration
	// NegotiationTimeout bounds each connection attempt. Defaults to
	// DefaultXMPPNegotiationTimeout (30s).
	NegotiationTimeout time.Duration
	// RetryInitial, RetryMultiplier and RetryMax shape the wait before
	// reconnecting: random between 0 and RetryInitial after a drop or a
	// first failure, the bound multiplied by RetryMultiplier after each
	// further failure, up to RetryMax. They default to TR-181's 60s, 2.0
	// and 30720s.
	RetryInitial    time.Duration
	RetryMultiplier float64
	RetryMax        time.Duration
	// Dial opens the TCP connection. Defaults to a net.Dialer without TCP
	// keepalive.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// MaxStanza is the largest element accepted from the server.
	// Defaults to DefaultXMPPMaxStanza (64 KiB).
	MaxStanza int
	// OnWake, if set, is called each time the CPE accepts a connection
	// request, before it answers, on the goroutine reading the session.
	// It must not block.
	OnWake func(name string, at time.Time)
	// OnOnline, if set, is called each time a session is bound, with the
	// full JID the server bound. It must not block.
	OnOnline func(name, jid string, at time.Time)
	// Logger defaults to discarding.
	Logger *slog.Logger
}

var defaultXMPPDialer = &net.Dialer{KeepAlive: -1}

func (c XMPPCPEConfig) withDefaults() XMPPCPEConfig {
	if c.Username == "" {
		c.Username = c.Name
	}
	if c.Resource == "" {
		c.Resource = DefaultXMPPResource
	}
	if c.Mechanism == "" {
		c.Mechanism = MechSCRAMSHA1
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultXMPPKeepAlive
	}
	if c.Keepalive == "" {
		c.Keepalive = KeepaliveWhitespace
	}
	if c.NegotiationTimeout == 0 {
		c.NegotiationTimeout = DefaultXMPPNegotiationTimeout
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = DefaultXMPPRetryInitial
	}
	if c.RetryMultiplier == 0 {
		c.RetryMultiplier = DefaultXMPPRetryMultiplier
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultXMPPRetryMax
	}
	if c.Dial == nil {
		c.Dial = defaultXMPPDialer.DialContext
	}
	if c.TLSConfig == nil {
		c.TLSConfig = &tls.Config{ServerName: c.Domain, MinVersion: tls.VersionTLS12}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks c and returns the parsed allow-list.
func (c XMPPCPEConfig) validate() ([]jid.JID, error) {
	switch {
	case !validName(c.Name):
		return nil, ErrBadName
	case c.Server == "":
		return nil, ErrNoXMPPServer
	case !c.Mechanism.Valid():
		return nil, fmt.Errorf("%w %q", ErrUnknownMechanism, c.Mechanism)
	case !c.Keepalive.Valid():
		return nil, fmt.Errorf("%w %q", ErrUnknownKeepalive, c.Keepalive)
	case c.KeepAlive < 0 || c.ReadTimeout < 0 || c.NegotiationTimeout < 0 ||
		c.RetryInitial < 0 || c.RetryMax < 0 || c.RetryMultiplier < 1:
		return nil, ErrBadXMPPTimers
	}
	if _, err := jid.New("", c.Domain, ""); err != nil || c.Domain == "" {
		return nil, ErrBadXMPPDomain
	}
	if _, err := jid.New(c.Username, c.Domain, c.Resource); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadXMPPAccount, err)
	}
	allowed := make([]jid.JID, 0, len(c.AllowedJIDs))
	for _, s := range c.AllowedJIDs {
		j, err := jid.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrBadAllowedJID, s, err)
		}
		allowed = append(allowed, j)
	}
	return allowed, nil
}

// XMPPCounters is a snapshot of what an XMPP CPE (or a fleet) has done
// and seen.
type XMPPCounters struct {
	Connects      uint64 // connection attempts
	ConnectErrors uint64 // attempts that ended before a bound session: TCP, TLS, stream, SASL, bind
	AuthFailures  uint64 // of which SASL failures
	Logins        uint64 // sessions bound
	Drops         uint64 // bound sessions that ended other than by stopping the CPE
	OtherResource uint64 // sessions bound to another resource than the one asked for
	Keepalives    uint64 // whitespace keepalives and pings sent
	Pongs         uint64 // answers to the CPE's pings
	PingsIgnored  uint64 // pings received (from the server or anyone): never answered
	OtherIQs      uint64 // other IQ requests, answered service-unavailable

	CRAccepted      uint64 // connection requests accepted: wakes
	CRNotAuthorized uint64 // refused for a wrong username or password: not-authorized
	CRNotAllowed    uint64 // refused because the sender is not allowed: service-unavailable
	CRNoFrom        uint64 // of the refused, those without a from (PROTOCOL-NOTES §2)

	LastError    string    // why the last session or attempt ended (in a fleet's Total: any CPE's)
	Online       bool      // a session is bound now (in a fleet's Total: any CPE)
	JID          string    // the full JID of the current or last session
	Since        time.Time // when it was bound
	LastWake     time.Time // when the last connection request was accepted
	LastWakeFrom string    // and who sent it
}

// CRRefused returns the number of refused connection requests.
func (c XMPPCounters) CRRefused() uint64 { return c.CRNotAuthorized + c.CRNotAllowed }

// add sums counters; of the rest it keeps the latest.
func (c *XMPPCounters) add(o XMPPCounters) {
	c.Connects += o.Connects
	c.ConnectErrors += o.ConnectErrors
	c.AuthFailures += o.AuthFailures
	c.Logins += o.Logins
	c.Drops += o.Drops
	c.OtherResource += o.OtherResource
	c.Keepalives += o.Keepalives
	c.Pongs += o.Pongs
	c.PingsIgnored += o.PingsIgnored
	c.OtherIQs += o.OtherIQs
	c.CRAccepted += o.CRAccepted
	c.CRNotAuthorized += o.CRNotAuthorized
	c.CRNotAllowed += o.CRNotAllowed
	c.CRNoFrom += o.CRNoFrom
	c.Online = c.Online || o.Online
	if c.LastError == "" {
		c.LastError = o.LastError
	}
	if o.Since.After(c.Since) {
		c.JID, c.Since = o.JID, o.Since
	}
	if o.LastWake.After(c.LastWake) {
		c.LastWake, c.LastWakeFrom = o.LastWake, o.LastWakeFrom
	}
}

// XMPPCPE is one simulated Annex K CPE.
type XMPPCPE struct {
	cfg     XMPPCPEConfig
	log     *slog.Logger
	login   xmppLogin
	allowed []jid.JID
	slots   chan struct{} // a fleet's login concurrency limit, or nil
	pollers *cpePollers   // a fleet's pollers, or nil: see XMPPFleetConfig.Pollers
	// events, set by tests, receives "keepalive", "pong" and
	// "ping-ignored" as they happen, when it has room.
	events chan string

	busy atomic.Bool

	connects, connectErrors, authFailures, logins, drops atomic.Uint64
	otherResource, keepalives, pongs, pingsIgnored       atomic.Uint64
	otherIQs, crAccepted, crNotAuthorized, crNotAllowed  atomic.Uint64
	crNoFrom                                             atomic.Uint64
	online                                               atomic.Bool

	mu           sync.Mutex
	lastErr      string
	jid          string
	since        time.Time
	lastWake     time.Time
	lastWakeFrom string
}

// NewXMPPCPE checks cfg and returns a CPE, which starts when Run is called.
func NewXMPPCPE(cfg XMPPCPEConfig) (*XMPPCPE, error) {
	return newXMPPCPE(cfg, nil)
}

func newXMPPCPE(cfg XMPPCPEConfig, salts *saltCache) (*XMPPCPE, error) {
	cfg = cfg.withDefaults()
	allowed, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("XMPP CPE %q: %w", cfg.Name, err)
	}
	c := &XMPPCPE{cfg: cfg, log: cfg.Logger, allowed: allowed}
	c.login = xmppLogin{
		server: cfg.Server, domain: cfg.Domain,
		user: cfg.Username, pass: cfg.Password, resource: cfg.Resource,
		directTLS: cfg.DirectTLS, useTLS: cfg.UseTLS, tls: cfg.TLSConfig,
		mech: cfg.Mechanism, salts: salts, dial: cfg.Dial, maxStanza: cfg.MaxStanza,
	}
	return c, nil
}

// Name returns the CPE's name.
func (c *XMPPCPE) Name() string { return c.cfg.Name }

// Config returns the CPE's configuration with defaults filled in.
func (c *XMPPCPE) Config() XMPPCPEConfig { return c.cfg }

// ConnReqJID returns the full JID the CPE asks to bind: its
// ConnReqJabberID, which the ACS addresses.
func (c *XMPPCPE) ConnReqJID() string {
	return c.cfg.Username + "@" + c.cfg.Domain + "/" + c.cfg.Resource
}

// Online reports whether a session is bound now.
func (c *XMPPCPE) Online() bool { return c.online.Load() }

// Counters returns a snapshot of the CPE's counters.
func (c *XMPPCPE) Counters() XMPPCounters {
	s := XMPPCounters{
		Connects:        c.connects.Load(),
		ConnectErrors:   c.connectErrors.Load(),
		AuthFailures:    c.authFailures.Load(),
		Logins:          c.logins.Load(),
		Drops:           c.drops.Load(),
		OtherResource:   c.otherResource.Load(),
		Keepalives:      c.keepalives.Load(),
		Pongs:           c.pongs.Load(),
		PingsIgnored:    c.pingsIgnored.Load(),
		OtherIQs:        c.otherIQs.Load(),
		CRAccepted:      c.crAccepted.Load(),
		CRNotAuthorized: c.crNotAuthorized.Load(),
		CRNotAllowed:    c.crNotAllowed.Load(),
		CRNoFrom:        c.crNoFrom.Load(),
		Online:          c.online.Load(),
	}
	c.mu.Lock()
	s.JID, s.Since, s.LastError = c.jid, c.since, c.lastErr
	s.LastWake, s.LastWakeFrom = c.lastWake, c.lastWakeFrom
	c.mu.Unlock()
	return s
}

// Run keeps a session open until ctx is cancelled, then closes it and
// returns nil: it connects, serves the session until it drops, waits (see
// XMPPCPEConfig.RetryInitial) and connects again. Failures are counted
// and logged, never returned; only a second concurrent Run fails
// (ErrXMPPBusy).
func (c *XMPPCPE) Run(ctx context.Context) error {
	if !c.busy.CompareAndSwap(false, true) {
		return ErrXMPPBusy
	}
	defer c.busy.Store(false)
	failures := 0
	for {
		bound, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if bound {
			failures = 0
		}
		failures++
		wait := c.retryWait(failures)
		if err != nil {
			c.mu.Lock()
			c.lastErr = err.Error()
			c.mu.Unlock()
		}
		c.log.Info("XMPP session ended", "cpe", c.cfg.Name, "bound", bound, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// retryWait is the wait before attempt n+1 after n failures in a row (a
// drop counts as one): uniform in [0, min(RetryInitial·RetryMultiplier^(n-1), RetryMax)].
func (c *XMPPCPE) retryWait(n int) time.Duration {
	bound := float64(c.cfg.RetryInitial)
	for i := 1; i < n && bound < float64(c.cfg.RetryMax); i++ {
		bound *= c.cfg.RetryMultiplier
	}
	bound = min(bound, float64(c.cfg.RetryMax))
	if bound < 1 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(bound) + 1))
}

// session runs one connection: negotiation, then the bound session until
// it ends. bound reports whether it got that far.
func (c *XMPPCPE) session(ctx context.Context) (bound bool, err error) {
	if c.slots != nil {
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	c.connects.Add(1)
	// Negotiated on a goroutine of its own: the TLS handshake grows a
	// stack to 8 KiB or more, which then goes with it, while this one,
	// parked in a read for as long as the session lasts, stays small.
	type opened struct {
		st  *xmppStream
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		nctx, cancel := context.WithTimeout(ctx, c.cfg.NegotiationTimeout)
		st, err := openXMPP(nctx, &c.login)
		cancel()
		ch <- opened{st, err}
	}()
	o := <-ch
	st, err := o.st, o.err
	if c.slots != nil {
		<-c.slots
	}
	if err != nil {
		if ctx.Err() == nil {
			c.connectErrors.Add(1)
			if errors.Is(err, ErrXMPPAuth) {
				c.authFailures.Add(1)
			}
		}
		return false, err
	}
	defer st.conn.Close()
	stop := context.AfterFunc(ctx, func() { st.conn.Close() })
	defer stop()

	// RFC 6121 4.2: initial presence. Agents send it bare.
	if err := st.write([]byte("<presence/>")); err != nil {
		c.connectErrors.Add(1)
		return false, err
	}
	now := time.Now()
	c.logins.Add(1)
	if st.jid != c.ConnReqJID() {
		c.otherResource.Add(1)
		c.log.Warn("XMPP server bound another JID", "cpe", c.cfg.Name, "asked", c.ConnReqJID(), "bound", st.jid)
	}
	c.mu.Lock()
	c.jid, c.since = st.jid, now
	c.mu.Unlock()
	c.online.Store(true)
	if c.cfg.OnOnline != nil {
		c.cfg.OnOnline(c.cfg.Name, st.jid, now)
	}
	s := &cpeSession{c: c, st: st}
	if c.cfg.Keepalive != KeepaliveNone {
		s.tmu.Lock() // keepalive may run before s.timer is set
		s.timer = time.AfterFunc(c.cfg.KeepAlive, s.keepalive)
		s.tmu.Unlock()
	}
	if c.pollers != nil && st.pc != nil {
		err = c.pollers.pick().serve(ctx, s, st.pc)
	} else {
		err = s.serve()
	}
	c.online.Store(false)
	s.stopTimer()
	if ctx.Err() == nil {
		c.drops.Add(1)
	}
	return true, err
}

// cpeSession is one bound session of a CPE.
type cpeSession struct {
	c     *XMPPCPE
	st    *xmppStream
	tmu   sync.Mutex
	timer *time.Timer
	ended bool
	pings uint64 // ids of fresh-id pings; under tmu
	// allowedFrom is the last sender found allowed, so that an ACS
	// waking the CPE again is not parsed and PRECIS-checked again.
	allowedFrom string
	poll        *polled // when a fleet's poller reads the session
}

func (s *cpeSession) stopTimer() {
	s.tmu.Lock()
	s.ended = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.tmu.Unlock()
}

// keepalive runs on the timer's goroutine: it sends one keepalive and
// sets the timer again. A write error is left to the reader to notice.
func (s *cpeSession) keepalive() {
	c := s.c
	s.tmu.Lock()
	if s.ended {
		s.tmu.Unlock()
		return
	}
	var b []byte
	switch c.cfg.Keepalive {
	case KeepaliveWhitespace:
		b = []byte(" ")
	case KeepalivePing, KeepalivePingS2C1:
		id := s2c1
		if c.cfg.Keepalive == KeepalivePing {
			s.pings++
			id = "ping" + strconv.FormatUint(s.pings, 10)
		}
		b = append(b, "<iq type='get' id='"...)
		b = append(b, id...)
		b = append(b, "' to='"...)
		b = appendEscaped(b, c.cfg.Domain)
		b = append(b, "'><ping xmlns='"+nsPing+"'/></iq>"...)
	}
	s.timer.Reset(c.cfg.KeepAlive)
	s.tmu.Unlock()
	if s.st.write(b) == nil {
		c.keepalives.Add(1)
		c.event("keepalive")
	}
}

// serve reads the session's stanzas until it ends.
func (s *cpeSession) serve() error {
	c := s.c
	for {
		if c.cfg.ReadTimeout > 0 {
			s.st.conn.SetReadDeadline(time.Now().Add(c.cfg.ReadTimeout))
		}
		e, err := s.st.readElement()
		if err != nil {
			if errors.Is(err, ErrXMPPClosed) {
				s.st.write([]byte("</stream:stream>"))
			}
			return err
		}
		s.stanza(e)
		s.st.rd.release()
	}
}

func (s *cpeSession) stanza(e *element) {
	c := s.c
	if !e.is(nsClient, "iq") {
		return // presence and messages mean nothing to a CPE
	}
	switch e.attr("type") {
	case "get", "set":
	case "result", "error":
		id := e.attr("id")
		if id == s2c1 || (len(id) > 4 && id[:4] == "ping") {
			c.pongs.Add(1)
			c.event("pong")
		}
		return
	default:
		return
	}
	p := e.firstChild()
	switch {
	case p.is(nsConnReq, "connectionRequest") && e.attr("type") == "get":
		s.connectionRequest(e, p)
	case p.is(nsPing, "ping"):
		// Some agents never answer pings (PROTOCOL-NOTES §2); nor does this.
		c.pingsIgnored.Add(1)
		c.event("ping-ignored")
	default:
		// RFC 6120 8.4: a request the entity does not understand is
		// answered service-unavailable.
		c.otherIQs.Add(1)
		s.refuse(e, nil, "service-unavailable", "cancel")
	}
}

// connectionRequest answers a connectionRequest IQ get (TR-069 Annex K).
func (s *cpeSession) connectionRequest(iq, req *element) {
	c := s.c
	from := iq.attr("from")
	if (from == "" || from != s.allowedFrom) && !c.allowedSender(from) {
		c.crNotAllowed.Add(1)
		if from == "" {
			c.crNoFrom.Add(1)
		}
		c.log.Info("XMPP connection request from a sender not allowed", "cpe", c.cfg.Name, "from", from)
		s.refuse(iq, req, "service-unavailable", "cancel")
		return
	}
	var user, pass string
	if u := req.child(nsConnReq, "username"); u != nil {
		user = u.text
	}
	if p := req.child(nsConnReq, "password"); p != nil {
		pass = p.text
	}
	if from != s.allowedFrom {
		// A clone: from shares its stanza's memory, which a session
		// should not keep.
		s.allowedFrom = strings.Clone(from)
	}
	okUser := subtle.ConstantTimeCompare([]byte(user), []byte(c.cfg.CRUsername))
	okPass := subtle.ConstantTimeCompare([]byte(pass), []byte(c.cfg.CRPassword))
	if okUser&okPass != 1 {
		c.crNotAuthorized.Add(1)
		c.log.Info("XMPP connection request with wrong credentials", "cpe", c.cfg.Name, "from", from)
		cond := "not-authorized"
		if c.cfg.LegacyErrors {
			cond = "not-autorized"
		}
		s.refuse(iq, req, cond, "auth")
		return
	}
	// Woken: counted and reported before the answer goes out, as an
	// agent starts its session to the ACS whether or not its answer
	// gets through (a session ending now leaves the ACS to time out).
	now := time.Now()
	c.crAccepted.Add(1)
	c.mu.Lock()
	c.lastWake, c.lastWakeFrom = now, from
	c.mu.Unlock()
	if c.cfg.OnWake != nil {
		c.cfg.OnWake(c.cfg.Name, now)
	}
	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], "<iq type='result' id='"...)
	b = appendEscaped(b, iq.attr("id"))
	if from != "" {
		b = append(b, "' to='"...)
		b = appendEscaped(b, from)
	}
	b = append(b, "'/>"...)
	_ = s.st.write(b)
	*bp = b
	bufPool.Put(bp)
}

func (c *XMPPCPE) event(name string) {
	if c.events != nil {
		select {
		case c.events <- name:
		default:
		}
	}
}

// allowedSender applies ConnReqAllowedJabberIDs to from.
func (c *XMPPCPE) allowedSender(from string) bool {
	if len(c.allowed) == 0 {
		return true
	}
	if from == "" {
		return false
	}
	j, err := jid.Parse(from)
	if err != nil {
		return false
	}
	for _, a := range c.allowed {
		if a.Resourcepart() == "" {
			if a.Equal(j.Bare()) {
				return true
			}
		} else if a.Equal(j) {
			return true
		}
	}
	return false
}

// refuse answers the IQ request iq with an error (RFC 6120 8.3). With
// LegacyErrors the type is always cancel and req, if any, is echoed.
func (s *cpeSession) refuse(iq, req *element, cond, typ string) {
	legacy := s.c.cfg.LegacyErrors
	if legacy {
		typ = "cancel"
	}
	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], "<iq type='error' id='"...)
	b = appendEscaped(b, iq.attr("id"))
	if from := iq.attr("from"); from != "" {
		b = append(b, "' to='"...)
		b = appendEscaped(b, from)
	}
	b = append(b, "'>"...)
	if legacy && req != nil {
		b = req.appendXML(b, nsClient)
	}
	b = append(b, "<error type='"...)
	b = append(b, typ...)
	b = append(b, "'><"...)
	b = append(b, cond...)
	b = append(b, " xmlns='"+nsStanzas+"'/></error></iq>"...)
	s.st.write(b)
	*bp = b
	bufPool.Put(bp)
}
