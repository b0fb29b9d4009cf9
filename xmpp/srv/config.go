package srv

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors returned by this package.
var (
	// ErrDomain: Config.Domain, or the domain given to Check, is not a
	// usable host name.
	ErrDomain = errors.New("srv: bad domain")
	// ErrNoTargets: Config.Targets is empty.
	ErrNoTargets = errors.New("srv: no targets")
	// ErrTarget: a Target's host name is not usable, or its addresses
	// do not fit where it is (inside the zone it needs some; outside,
	// this server cannot answer for them).
	ErrTarget = errors.New("srv: bad target")
	// ErrAddr: an address in Config is invalid, unspecified, multicast
	// or has an IPv6 zone.
	ErrAddr = errors.New("srv: bad address")
	// ErrNS: Config.NS is not a usable host name, or this server would
	// not know its address.
	ErrNS = errors.New("srv: bad name server")
	// ErrTTL: Config.TTL is not between 1s and 2^31-1 seconds (RFC 2181
	// 8).
	ErrTTL = errors.New("srv: bad TTL")
	// ErrUDPSize: Config.MaxUDPSize is not between 512 and 4096.
	ErrUDPSize = errors.New("srv: bad UDP size")
	// ErrRateLimit: a rate-limit field of Config is out of range.
	ErrRateLimit = errors.New("srv: bad rate limit")
	// ErrTCP: Config.MaxTCPConns or Config.TCPIdleTimeout is negative.
	ErrTCP = errors.New("srv: bad TCP limit")

	// ErrResolver: the resolver given to Check is not an IP address with
	// an optional port.
	ErrResolver = errors.New("srv: bad resolver address")
	// ErrNoResolver: resolv.conf names no name server.
	ErrNoResolver = errors.New("srv: no name server in resolv.conf")

	// Problems that Check reports (Report.Problems wraps them).

	// ErrTimeout: the resolver did not answer in time.
	ErrTimeout = errors.New("srv: resolver timed out")
	// ErrUnreachable: the resolver could not be reached (port closed,
	// no route).
	ErrUnreachable = errors.New("srv: resolver unreachable")
	// ErrServFail: the resolver answered SERVFAIL: it could not get an
	// answer from the domain's servers (or DNSSEC validation failed).
	ErrServFail = errors.New("srv: resolver failed (SERVFAIL)")
	// ErrRefused: the resolver refused the query (REFUSED).
	ErrRefused = errors.New("srv: query refused (REFUSED)")
	// ErrRcode: the resolver answered with another error code.
	ErrRcode = errors.New("srv: query failed")
	// ErrNXDomain: a name does not exist (NXDOMAIN).
	ErrNXDomain = errors.New("srv: name does not exist (NXDOMAIN)")
	// ErrNoSRV: the domain has no _xmpp-client._tcp SRV records.
	ErrNoSRV = errors.New("srv: no _xmpp-client._tcp SRV records")
	// ErrServiceDisabled: the only SRV record has target ".", which says
	// the service is decidedly not available (RFC 2782).
	ErrServiceDisabled = errors.New("srv: SRV record says no service (target \".\")")
	// ErrCNAME: an SRV target is an alias, which RFC 2782 forbids.
	ErrCNAME = errors.New("srv: SRV target is an alias (CNAME), forbidden by RFC 2782")
	// ErrNoAddress: an SRV target (or the domain, for the fallback) has
	// no A or AAAA record.
	ErrNoAddress = errors.New("srv: no address")
	// ErrElsewhere: a record leads to an address that is not this
	// appliance's.
	ErrElsewhere = errors.New("srv: points elsewhere")
	// ErrPort: a record leads to this appliance's address, but on a port
	// it does not listen on.
	ErrPort = errors.New("srv: port mismatch")
)

// Target is one host the SRV records point at.
type Target struct {
	// Host is the host name the SRV records name (RFC 2782 Target). A
	// name inside the zone (Domain, or a name below it) gets its A and
	// AAAA records from Addrs, which then must not be empty; a name
	// outside is resolved elsewhere, and Addrs must be empty.
	Host string
	// Addrs are the IPv4 and IPv6 addresses of Host.
	Addrs []netip.Addr
	// Port is the port of the client-to-server listener (STARTTLS),
	// announced as _xmpp-client._tcp. Defaults to 5222.
	Port uint16
	// TLSPort, when set, is the port of the direct-TLS listener,
	// announced as _xmpps-client._tcp (XEP-0368). Defaults to none.
	TLSPort uint16
	// Priority and Weight go in both records (RFC 2782): clients try the
	// lowest priority first and share the load among targets of equal
	// priority in proportion to their weights.
	Priority, Weight uint16
}

// Config configures a Server. Zero fields take the defaults stated.
type Config struct {
	// Domain is the XMPP domain of the broker (TR-181
	// Device.XMPP.Connection.{i}.Domain) and the apex of the zone this
	// server is authoritative for. Required.
	Domain string
	// Targets are the hosts the SRV records point at. At least one.
	Targets []Target
	// Addrs are the addresses of Domain itself (A and AAAA at the apex),
	// for clients that find no SRV record and fall back to the domain's
	// addresses on port 5222 (RFC 6120 3.2.2). Defaults to the addresses
	// of every target inside the zone.
	Addrs []netip.Addr

	// NS is the host name of this name server as the parent zone
	// delegates to it: the zone's NS record and the SOA MNAME. Defaults
	// to Domain. Inside the zone it needs an address: NSAddrs, or those
	// it has as Domain or as a target.
	NS string
	// NSAddrs are the addresses of NS when it is inside the zone (the
	// glue the parent zone holds). Must be empty when NS is outside.
	NSAddrs []netip.Addr

	// TTL is the time to live of every record, and the negative-caching
	// time (SOA MINIMUM, RFC 2308). Whole seconds. Defaults to 300s.
	TTL time.Duration

	// MaxUDPSize caps UDP responses whatever EDNS size the client
	// offers; what does not fit is truncated (TC) and the client retries
	// over TCP. Defaults to 1232, which avoids IP fragmentation (DNS Flag
	// Day 2020). 512 to 4096.
	MaxUDPSize int

	// RatePerSource is the queries per second answered for one source
	// (an IPv4 address, or an IPv6 /64), over UDP and TCP together; the
	// rest are dropped. Defaults to 100: a resolver caches the answers
	// for TTL, so honest sources ask rarely. Negative disables rate
	// limiting.
	RatePerSource float64
	// RateBurst is the token-bucket size. Defaults to twice
	// RatePerSource, at least 1.
	RateBurst int
	// RateTableSize bounds the sources remembered. Defaults to 65536.
	RateTableSize int

	// MaxTCPConns bounds the TCP connections served at once (RFC 7766
	// 6.2.2); more are closed at once. Defaults to 256.
	MaxTCPConns int
	// TCPIdleTimeout closes a TCP connection that sends no complete
	// query for this long, and bounds each write (RFC 7766 6.2.3).
	// Defaults to 10s.
	TCPIdleTimeout time.Duration

	// Logger receives the server's logs. Defaults to discarding them.
	Logger *slog.Logger
	// Registerer, when set, gets the server's crrelay_dns_* metrics.
	Registerer prometheus.Registerer
}

// Defaults and limits.
const (
	defaultPort           = 5222
	defaultTTL            = 300 * time.Second
	maxTTL                = math.MaxInt32 * time.Second
	defaultMaxUDPSize     = 1232
	minUDPSize            = 512 // RFC 1035 2.3.4, RFC 6891 6.2.5
	maxUDPSize            = 4096
	defaultRatePerSource  = 100
	defaultRateTableSize  = 1 << 16
	defaultMaxTCPConns    = 256
	defaultTCPIdleTimeout = 10 * time.Second
)

// withDefaults returns c with its zero fields set to their defaults.
// Target ports are defaulted by validate, which copies the targets.
func (c Config) withDefaults() Config {
	if c.NS == "" {
		c.NS = c.Domain
	}
	if c.TTL == 0 {
		c.TTL = defaultTTL
	}
	if c.MaxUDPSize == 0 {
		c.MaxUDPSize = defaultMaxUDPSize
	}
	if c.RatePerSource == 0 {
		c.RatePerSource = defaultRatePerSource
	}
	if c.RateBurst == 0 && c.RatePerSource > 0 {
		c.RateBurst = max(1, int(2*c.RatePerSource))
	}
	if c.RateTableSize == 0 {
		c.RateTableSize = defaultRateTableSize
	}
	if c.MaxTCPConns == 0 {
		c.MaxTCPConns = defaultMaxTCPConns
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = defaultTCPIdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks a configuration that has its defaults applied, and
// puts its names and addresses in canonical form (lower case, fully
// qualified; IPv4-mapped addresses unmapped), on copies.
func (c *Config) validate() error {
	d, err := canonHost(c.Domain)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrDomain, c.Domain, err)
	}
	c.Domain = d
	if len(c.Targets) == 0 {
		return ErrNoTargets
	}
	ts := make([]Target, len(c.Targets))
	for i, t := range c.Targets {
		h, err := canonHost(t.Host)
		if err != nil {
			return fmt.Errorf("%w: host %q: %v", ErrTarget, t.Host, err)
		}
		t.Host = h
		if t.Addrs, err = canonAddrs(t.Addrs); err != nil {
			return fmt.Errorf("target %s: %w", h, err)
		}
		switch in := inZone(d, h); {
		case in && len(t.Addrs) == 0:
			return fmt.Errorf("%w: %s is inside the zone and has no address", ErrTarget, h)
		case !in && len(t.Addrs) != 0:
			return fmt.Errorf("%w: %s is outside the zone %s, which cannot hold its addresses", ErrTarget, h, d)
		}
		if t.Port == 0 {
			t.Port = defaultPort
		}
		ts[i] = t
	}
	c.Targets = ts
	if c.Addrs, err = canonAddrs(c.Addrs); err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	if err := c.validateNS(); err != nil {
		return err
	}
	if c.TTL < time.Second || c.TTL > maxTTL {
		return fmt.Errorf("%w: %v (1s to %v)", ErrTTL, c.TTL, maxTTL)
	}
	if c.MaxUDPSize < minUDPSize || c.MaxUDPSize > maxUDPSize {
		return fmt.Errorf("%w: %d (%d to %d)", ErrUDPSize, c.MaxUDPSize, minUDPSize, maxUDPSize)
	}
	if c.RatePerSource > 0 && (c.RateBurst < 1 || c.RateTableSize < 1) {
		return fmt.Errorf("%w: burst %d, table size %d", ErrRateLimit, c.RateBurst, c.RateTableSize)
	}
	if c.MaxTCPConns < 0 || c.TCPIdleTimeout < 0 {
		return fmt.Errorf("%w: %d connections, idle timeout %v", ErrTCP, c.MaxTCPConns, c.TCPIdleTimeout)
	}
	return nil
}

func (c *Config) validateNS() error {
	ns, err := canonHost(c.NS)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrNS, c.NS, err)
	}
	c.NS = ns
	if c.NSAddrs, err = canonAddrs(c.NSAddrs); err != nil {
		return fmt.Errorf("name server: %w", err)
	}
	if !inZone(c.Domain, ns) {
		if len(c.NSAddrs) != 0 {
			return fmt.Errorf("%w: %s is outside the zone %s, which cannot hold its addresses", ErrNS, ns, c.Domain)
		}
		return nil
	}
	if len(c.NSAddrs) != 0 {
		return nil
	}
	if ns == c.Domain && (len(c.Addrs) != 0 || c.anyTargetInZone()) {
		return nil // the apex has addresses (see Addrs)
	}
	for _, t := range c.Targets {
		if t.Host == ns {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is inside the zone and has no address (set NSAddrs)", ErrNS, ns)
}

func (c *Config) anyTargetInZone() bool {
	for _, t := range c.Targets {
		if len(t.Addrs) != 0 {
			return true
		}
	}
	return false
}

// canonHost returns s as a fully qualified lower-case host name
// ("xmpp.example.net."), or an error if s is not one: labels of letters,
// digits and hyphens (RFC 952, RFC 1123 2.1; internationalised names in
// their A-label form), not starting or ending with a hyphen, at most 63
// bytes each and 253 in all. A trailing dot is optional.
func canonHost(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", errors.New("empty")
	}
	if len(s) > 253 {
		return "", errors.New("longer than 253 bytes")
	}
	for l := range strings.SplitSeq(s, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("label %q is empty or longer than 63 bytes", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("label %q starts or ends with a hyphen", l)
		}
		for i := range len(l) {
			if b := l[i]; !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-') {
				return "", fmt.Errorf("label %q has %q", l, b)
			}
		}
	}
	return strings.ToLower(s) + ".", nil
}

// inZone reports whether the canonical name is apex or below it.
func inZone(apex, name string) bool {
	return name == apex || strings.HasSuffix(name, "."+apex)
}

// canonAddrs returns a copy of addrs, unmapped and without duplicates,
// or ErrAddr.
func canonAddrs(addrs []netip.Addr) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range addrs {
		if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return nil, fmt.Errorf("%w: %v", ErrAddr, a)
		}
		a = a.Unmap()
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}
