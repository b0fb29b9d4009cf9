package stunserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crrelay/crrelay/registry"
)

// Errors returned by this package.
var (
	// ErrNoRegistry: Config.Registry is nil while the integrity policy
	// needs STUN passwords.
	ErrNoRegistry = errors.New("stunserver: integrity policy needs a registry")
	// ErrIntegrityPolicy: Config.Integrity, or a policy name being
	// parsed, is not off, optional or required.
	ErrIntegrityPolicy = errors.New("stunserver: unknown integrity policy")
	// ErrAlternate: Config.Primary and Config.Alternate do not describe a
	// usable pair of addresses.
	ErrAlternate = errors.New("stunserver: bad alternate address")
	// ErrRateLimit: a rate-limit field of Config is out of range.
	ErrRateLimit = errors.New("stunserver: bad rate limit")
	// ErrBatchSize: Config.BatchSize is out of range.
	ErrBatchSize = errors.New("stunserver: bad batch size")
	// ErrSoftware: Config.Software is too long.
	ErrSoftware = errors.New("stunserver: SOFTWARE too long")
	// ErrRetransmit: Config.RetransmitDelay or Config.ShutdownGrace is
	// negative.
	ErrRetransmit = errors.New("stunserver: bad retransmission timing")

	// ErrNotUDP: Serve was given something other than a *net.UDPConn.
	ErrNotUDP = errors.New("stunserver: Serve needs a *net.UDPConn")
	// ErrServing: Serve was called on a socket it already serves.
	ErrServing = errors.New("stunserver: socket already served")
	// ErrUnsupported: the platform lacks what Serve needs (recvmmsg,
	// sendmmsg, IP_PKTINFO); Serve runs on Linux.
	ErrUnsupported = errors.New("stunserver: platform not supported")

	// ErrNoSocket: no served socket can send from the requested Local
	// address (none bound to it, nor a wildcard socket on its port).
	ErrNoSocket = errors.New("stunserver: no socket for local address")
	// ErrSend: sending a UDP connection request failed; the error wraps
	// the system's.
	ErrSend = errors.New("stunserver: send failed")
	// ErrBadRequest: a CRRequest lacks a device id or a usable address.
	ErrBadRequest = errors.New("stunserver: bad connection request")
)

// Registry is what the server needs of the device registry: the STUN
// password of a device found by its STUN username, and a place to record
// bindings. *registry.Registry satisfies it.
//
// The username passed to either method may alias a packet buffer that is
// reused once the method returns: an implementation copies it to keep it.
type Registry interface {
	STUNPassword(username string) (password string, ok bool)
	ObserveBinding(o registry.BindingObservation) (registry.BindingResult, error)
}

// IntegrityPolicy says how the server treats MESSAGE-INTEGRITY.
type IntegrityPolicy uint8

// Integrity policies. The zero value is IntegrityOptional.
const (
	// IntegrityOptional checks MESSAGE-INTEGRITY when a request carries
	// it (keyed by the device's STUN password) and answers requests
	// without it. A request whose integrity fails is refused (431) and
	// records nothing; one without integrity is trusted as it is.
	IntegrityOptional IntegrityPolicy = iota
	// IntegrityOff ignores MESSAGE-INTEGRITY: no password is looked up,
	// responses carry none. For a plain STUN service or a closed network.
	IntegrityOff
	// IntegrityRequired answers 401 to any request without
	// MESSAGE-INTEGRITY and records bindings only for authenticated
	// requests.
	IntegrityRequired
)

var policyNames = [...]string{"optional", "off", "required"}

// String returns "optional", "off" or "required".
func (p IntegrityPolicy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("IntegrityPolicy(%d)", uint8(p))
}

// MarshalText implements encoding.TextMarshaler.
func (p IntegrityPolicy) MarshalText() ([]byte, error) {
	if int(p) >= len(policyNames) {
		return nil, fmt.Errorf("%w: %d", ErrIntegrityPolicy, uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler (so flag.TextVar
// and configuration decoders accept "off", "optional" and "required").
func (p *IntegrityPolicy) UnmarshalText(b []byte) error {
	for i, n := range policyNames {
		if string(b) == n {
			*p = IntegrityPolicy(i)
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrIntegrityPolicy, b)
}

// Config configures a Server. Zero fields take the defaults stated.
type Config struct {
	// Registry looks up STUN passwords and records UDP bindings.
	// Required, unless Integrity is IntegrityOff: then nil makes a plain
	// STUN server that records nothing.
	Registry Registry

	// Integrity is the MESSAGE-INTEGRITY policy. Defaults to
	// IntegrityOptional.
	Integrity IntegrityPolicy

	// Primary and Alternate enable CHANGE-REQUEST (RFC 3489 NAT-type
	// discovery). Both zero (the default): no alternate address, a
	// CHANGE-REQUEST that asks for a change is answered 420, and no
	// CHANGED-ADDRESS is sent. Otherwise both must be set, of one family,
	// with specified IPs: a request received on Primary's IP and asking
	// to change IP is answered from Alternate's IP, and the other way
	// round; likewise for ports. Equal IPs (or ports) mean only the port
	// (or the IP) can change. Serve must be called on sockets that cover
	// every combination used (exact binds, or wildcard binds on each
	// port).
	Primary, Alternate netip.AddrPort

	// RatePerSource is the packets per second accepted from one source
	// (an IPv4 address, or an IPv6 /64), a token bucket. Defaults to 200,
	// which leaves room for a few thousand CPEs behind one CGNAT address;
	// negative disables rate limiting (load tests from one address).
	RatePerSource float64
	// RateBurst is the bucket size. Defaults to twice RatePerSource, at
	// least 1.
	RateBurst int
	// RateTableSize bounds the sources remembered (memory is about 32
	// bytes each; the least recently limited are forgotten first).
	// Defaults to 65536.
	RateTableSize int

	// BatchSize is the number of packets read (recvmmsg) and written
	// (sendmmsg) per system call. Defaults to 32; at most 1024.
	BatchSize int

	// Software, when set, is sent as SOFTWARE in every response. Defaults
	// to none, which keeps responses small. At most 32 bytes.
	Software string

	// Retransmits is the number of extra copies of each UDP connection
	// request datagram. Defaults to 2; negative means none.
	Retransmits int
	// RetransmitDelay is the delay before the first copy; each further
	// copy waits twice as long as the one before (50 ms, then 100 ms
	// more). Defaults to 50ms.
	RetransmitDelay time.Duration
	// ShutdownGrace is how long Serve, when stopping, lets retransmissions
	// on its socket finish before cancelling them. Defaults to 1s.
	ShutdownGrace time.Duration

	// NotifyServing, when set, is called by Serve with the socket's
	// local address once the socket is set up and SendConnectionRequest
	// can use it, before the first read. Packets that arrived on a
	// wildcard socket before Serve turned on PKTINFO (ListenReusePort
	// turns it on at once) cannot tell their destination and are dropped.
	NotifyServing func(local netip.AddrPort)

	// Logger receives the server's logs. Defaults to discarding them.
	Logger *slog.Logger
	// Registerer, when set, gets the server's crrelay_stun_* metrics.
	Registerer prometheus.Registerer
}

// Defaults.
const (
	defaultRatePerSource   = 200
	defaultRateTableSize   = 1 << 16
	defaultBatchSize       = 32
	maxBatchSize           = 1024
	maxSoftware            = 32
	defaultRetransmits     = 2
	defaultRetransmitDelay = 50 * time.Millisecond
	defaultShutdownGrace   = time.Second
)

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.RatePerSource == 0 {
		c.RatePerSource = defaultRatePerSource
	}
	if c.RateBurst == 0 && c.RatePerSource > 0 {
		c.RateBurst = max(1, int(2*c.RatePerSource))
	}
	if c.RateTableSize == 0 {
		c.RateTableSize = defaultRateTableSize
	}
	if c.BatchSize == 0 {
		c.BatchSize = defaultBatchSize
	}
	if c.Retransmits == 0 {
		c.Retransmits = defaultRetransmits
	}
	if c.Retransmits < 0 {
		c.Retransmits = 0
	}
	if c.RetransmitDelay == 0 {
		c.RetransmitDelay = defaultRetransmitDelay
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = defaultShutdownGrace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks a configuration that has its defaults applied.
func (c *Config) validate() error {
	if int(c.Integrity) >= len(policyNames) {
		return fmt.Errorf("%w: %d", ErrIntegrityPolicy, uint8(c.Integrity))
	}
	if c.Registry == nil && c.Integrity != IntegrityOff {
		return fmt.Errorf("%w (%s)", ErrNoRegistry, c.Integrity)
	}
	if err := c.validateAlternate(); err != nil {
		return err
	}
	if c.RatePerSource > 0 && (c.RateBurst < 1 || c.RateTableSize < 1) {
		return fmt.Errorf("%w: burst %d, table size %d", ErrRateLimit, c.RateBurst, c.RateTableSize)
	}
	if c.BatchSize < 1 || c.BatchSize > maxBatchSize {
		return fmt.Errorf("%w: %d (1 to %d)", ErrBatchSize, c.BatchSize, maxBatchSize)
	}
	if len(c.Software) > maxSoftware {
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrSoftware, len(c.Software), maxSoftware)
	}
	if c.RetransmitDelay < 0 || c.ShutdownGrace < 0 {
		return fmt.Errorf("%w: delay %v, grace %v", ErrRetransmit, c.RetransmitDelay, c.ShutdownGrace)
	}
	return nil
}

func (c *Config) validateAlternate() error {
	p, a := c.Primary, c.Alternate
	if p == (netip.AddrPort{}) && a == (netip.AddrPort{}) {
		return nil
	}
	switch {
	case !p.IsValid() || !a.IsValid():
		return fmt.Errorf("%w: primary %v and alternate %v must both be set", ErrAlternate, p, a)
	case p.Addr().Zone() != "" || a.Addr().Zone() != "":
		return fmt.Errorf("%w: zones are not supported", ErrAlternate)
	case p.Addr().Unmap().Is4() != a.Addr().Unmap().Is4():
		return fmt.Errorf("%w: primary %v and alternate %v differ in family", ErrAlternate, p, a)
	case p.Addr().IsUnspecified() || a.Addr().IsUnspecified() || p.Port() == 0 || a.Port() == 0:
		return fmt.Errorf("%w: addresses must be specific, got %v and %v", ErrAlternate, p, a)
	case unmapAP(p) == unmapAP(a):
		return fmt.Errorf("%w: primary and alternate are both %v", ErrAlternate, p)
	}
	c.Primary, c.Alternate = unmapAP(p), unmapAP(a)
	return nil
}

// unmapAP returns ap with an IPv4-mapped IPv6 address turned into IPv4.
func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// The registry's store is the Registry the server is meant to use.
var _ Registry = (*registry.Registry)(nil)
