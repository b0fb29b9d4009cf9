package xmpp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmpp/jid"

	"github.com/crrelay/crrelay/internal/scramcred"
)

// Errors returned by this package.
var (
	// ErrXmppDomain: Config.Domain is empty or not a valid domainpart.
	ErrXmppDomain = errors.New("xmpp: bad domain")
	// ErrXmppRelayJID: Config.RelayJID is not a full JID.
	ErrXmppRelayJID = errors.New("xmpp: bad relay JID")
	// ErrXmppTLS: Config.TLS is nil or has no certificate.
	ErrXmppTLS = errors.New("xmpp: TLS configuration needs a certificate")
	// ErrXmppACSAccount: an ACS account has a JID that is not a bare JID
	// of Config.Domain, appears twice, or has no credentials.
	ErrXmppACSAccount = errors.New("xmpp: bad ACS account")
	// ErrXmppLimit: a size, count or rate limit of Config is out of range.
	ErrXmppLimit = errors.New("xmpp: bad limit")
	// ErrXmppTimeout: a duration of Config is out of range.
	ErrXmppTimeout = errors.New("xmpp: bad timeout")

	// ErrXmppClosed: the broker was closed.
	ErrXmppClosed = errors.New("xmpp: broker closed")
	// ErrXmppListener: Serve was given a listener whose connections
	// expose no file descriptor (the broker polls sockets itself).
	ErrXmppListener = errors.New("xmpp: connection without a socket")
	// ErrXmppUnsupported: the platform lacks what the broker needs
	// (epoll); the broker runs on Linux.
	ErrXmppUnsupported = errors.New("xmpp: platform not supported")
	// ErrXmppCertificate: LoadOrCreateCertificate got one of certificate
	// and key but not the other, or files it cannot use.
	ErrXmppCertificate = errors.New("xmpp: bad certificate")
)

// Accounts is what the broker needs of the CPE account store: the salted
// credentials of an account, looked up at every login so that a change
// takes effect at once. bareJID is the localpart exactly as the client
// sent it, "@", and Config.Domain; the store folds case itself.
type Accounts interface {
	XMPPCredentials(bareJID string) (scramcred.Credentials, bool)
}

// Sessions is told when a CPE session starts and ends (ACS sessions are
// not reported). Calls are made one at a time, in the order the sessions
// changed: when a session replaces another with the same full JID, the
// old one's SessionDown comes before the new one's SessionUp. They must
// not block for long: logins wait for them.
type Sessions interface {
	SessionUp(s SessionInfo)
	SessionDown(s SessionInfo)
}

// SessionInfo describes a session.
type SessionInfo struct {
	// BareJID is localpart@domain, the localpart as the client
	// authenticated.
	BareJID string
	// FullJID is BareJID/resource, with the resource the client bound.
	FullJID string
	// Remote is the client's address, "ip:port".
	Remote string
	// TLS reports an encrypted stream (always, as the broker requires
	// TLS).
	TLS bool
	// Since is when the session was bound.
	Since time.Time
	// EndedAt and Reason are set in SessionDown: when and why it ended
	// ("closed", "replaced", "read-timeout", "shutdown", "eof", "error",
	// or a stream error condition such as "not-well-formed").
	EndedAt time.Time
	Reason  string
}

// ACSAccount is an XMPP account of an ACS that connects as a client of
// its own and may send IQs to CPEs.
type ACSAccount struct {
	// JID is the account's bare JID, localpart@Config.Domain.
	JID string
	// Credentials are the account's salted SCRAM keys.
	Credentials scramcred.Credentials
}

// Config configures a Broker. Zero fields take the defaults stated.
type Config struct {
	// Domain is the XMPP domain the broker serves (the domainpart of
	// every account). Required.
	Domain string
	// RelayJID is the full JID the broker's own connection requests come
	// from; it has no socket. CPEs must allow it in
	// ConnReqAllowedJabberIDs. Defaults to crrelay@<Domain>/relay.
	RelayJID string
	// TLS is the server TLS configuration, with a certificate. Required.
	// The broker uses a copy with MinVersion raised to TLS 1.2.
	TLS *tls.Config

	// ACSAccounts are the accounts of ACSes connecting as XMPP clients.
	// An account listed here is never looked up in Accounts.
	ACSAccounts []ACSAccount
	// Accounts holds the CPE accounts. Nil means no CPE can log in.
	Accounts Accounts
	// Sessions, when set, is told of CPE sessions.
	Sessions Sessions

	// MaxStanzaBytes is the largest stanza (and negotiation element)
	// accepted; a larger one ends the stream with a policy-violation
	// stream error. Defaults to 65536.
	MaxStanzaBytes int
	// MaxSessions is the most connections open at once, negotiating or
	// bound. Defaults to 200000.
	MaxSessions int
	// ConnRatePerIP is the new connections accepted per second from one
	// source (an IPv4 address or an IPv6 /64). Defaults to 20; negative
	// disables the limit.
	ConnRatePerIP float64
	// ConnBurstPerIP is how many connections a source may open at once
	// before ConnRatePerIP applies. Defaults to ConnRatePerIP, at least 1.
	ConnBurstPerIP int

	// NegotiationTimeout bounds the time from accepting a connection to
	// binding a resource (TLS, SASL and bind); a client that has not
	// finished by then is dropped. Defaults to 10s.
	NegotiationTimeout time.Duration
	// ReadTimeout closes a bound session from which nothing (not even a
	// whitespace keepalive) arrived for this long, with a
	// connection-timeout stream error. Defaults to 5m.
	ReadTimeout time.Duration
	// WriteTimeout: a session whose socket takes none of the bytes
	// waiting for it for this long is closed (writes never wait; what a
	// socket does not take waits, up to 256 KiB). Defaults to 10s.
	WriteTimeout time.Duration
	// AuthFailureDelay delays the answer to each failed authentication.
	// Defaults to 1s; negative means no delay.
	AuthFailureDelay time.Duration
	// IQTimeout is how long ConnectionRequest waits for the answer when
	// its context has no earlier deadline. Defaults to 5s.
	IQTimeout time.Duration
	// ShutdownGrace is how long Serve and Close wait for sessions to
	// close before returning. Defaults to 5s.
	ShutdownGrace time.Duration

	// Logger receives the broker's logs. Defaults to discarding them.
	Logger *slog.Logger
	// Registerer, when set, gets the broker's crrelay_xmpp_* metrics.
	Registerer prometheus.Registerer
}

// Defaults.
const (
	defaultMaxStanzaBytes     = 65536
	defaultMaxSessions        = 200000
	defaultConnRatePerIP      = 20
	defaultNegotiationTimeout = 10 * time.Second
	defaultReadTimeout        = 5 * time.Minute
	defaultWriteTimeout       = 10 * time.Second
	defaultAuthFailureDelay   = time.Second
	defaultIQTimeout          = 5 * time.Second
	defaultShutdownGrace      = 5 * time.Second

	// minStanzaBytes leaves room for a stream header with its
	// attributes and for SASL messages.
	minStanzaBytes = 1024
	// maxStanzaBytes keeps the pooled read buffers reasonable.
	maxStanzaBytes = 16 << 20
)

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.RelayJID == "" && c.Domain != "" {
		c.RelayJID = "crrelay@" + c.Domain + "/relay"
	}
	if c.MaxStanzaBytes == 0 {
		c.MaxStanzaBytes = defaultMaxStanzaBytes
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = defaultMaxSessions
	}
	if c.ConnRatePerIP == 0 {
		c.ConnRatePerIP = defaultConnRatePerIP
	}
	if c.ConnBurstPerIP == 0 && c.ConnRatePerIP > 0 {
		c.ConnBurstPerIP = max(1, int(c.ConnRatePerIP))
	}
	if c.NegotiationTimeout == 0 {
		c.NegotiationTimeout = defaultNegotiationTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.AuthFailureDelay == 0 {
		c.AuthFailureDelay = defaultAuthFailureDelay
	}
	if c.AuthFailureDelay < 0 {
		c.AuthFailureDelay = 0
	}
	if c.IQTimeout == 0 {
		c.IQTimeout = defaultIQTimeout
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = defaultShutdownGrace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks a configuration that has its defaults applied, and
// normalises Domain (RFC 7622 3.2: lower case, no trailing dot).
func (c *Config) validate() error {
	d, err := jid.New("", c.Domain, "")
	if c.Domain == "" || err != nil {
		return fmt.Errorf("%w: %q", ErrXmppDomain, c.Domain)
	}
	c.Domain = d.Domainpart()
	if _, err := parseFullJID(c.RelayJID); err != nil {
		return fmt.Errorf("%w: %q", ErrXmppRelayJID, c.RelayJID)
	}
	if c.TLS == nil || len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		return ErrXmppTLS
	}
	seen := make(map[string]bool, len(c.ACSAccounts))
	for _, a := range c.ACSAccounts {
		k, err := parseJID(a.JID)
		switch {
		case err != nil || k.hasResource():
			return fmt.Errorf("%w: %q is not a bare JID", ErrXmppACSAccount, a.JID)
		case k.domain() != c.Domain:
			return fmt.Errorf("%w: %q is not in domain %s", ErrXmppACSAccount, a.JID, c.Domain)
		case seen[k.key]:
			return fmt.Errorf("%w: %q listed twice", ErrXmppACSAccount, a.JID)
		case a.Credentials.Iterations < 1 || len(a.Credentials.Salt) == 0:
			return fmt.Errorf("%w: %q has no credentials", ErrXmppACSAccount, a.JID)
		}
		seen[k.key] = true
	}
	if c.MaxStanzaBytes < minStanzaBytes || c.MaxStanzaBytes > maxStanzaBytes {
		return fmt.Errorf("%w: MaxStanzaBytes %d (%d to %d)", ErrXmppLimit, c.MaxStanzaBytes, minStanzaBytes, maxStanzaBytes)
	}
	if c.MaxSessions < 1 {
		return fmt.Errorf("%w: MaxSessions %d", ErrXmppLimit, c.MaxSessions)
	}
	if c.ConnRatePerIP > 0 && c.ConnBurstPerIP < 1 {
		return fmt.Errorf("%w: ConnBurstPerIP %d", ErrXmppLimit, c.ConnBurstPerIP)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"NegotiationTimeout", c.NegotiationTimeout},
		{"ReadTimeout", c.ReadTimeout},
		{"WriteTimeout", c.WriteTimeout},
		{"IQTimeout", c.IQTimeout},
		{"ShutdownGrace", c.ShutdownGrace},
	} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %v", ErrXmppTimeout, d.name, d.v)
		}
	}
	return nil
}

// serverTLS returns the TLS configuration the broker uses: a copy of c
// with TLS 1.2 as the least version.
func serverTLS(c *tls.Config) *tls.Config {
	t := c.Clone()
	if t.MinVersion < tls.VersionTLS12 {
		t.MinVersion = tls.VersionTLS12
	}
	return t
}

// foldASCII lower-cases ASCII letters; other bytes are kept.
func foldASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
