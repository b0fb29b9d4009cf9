package httpcr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Policy decides which destination addresses connection requests may go to.
// It is the relay's guard against being used as an SSRF proxy: see the
// package documentation for the rules. A Policy is immutable and safe for
// concurrent use.
type Policy struct {
	allow []netip.Prefix
	deny  []netip.Prefix
	self  map[netip.Addr]bool // the appliance's own addresses
}

// builtin lists the address ranges denied unless an allowed prefix covers
// them, with the reason given in errors.
var builtin = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"}, // "this network"; 0.0.0.0 reaches the host itself
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
}

// NewPolicy returns a policy with the given allowed and denied prefixes,
// either list possibly empty. It records the appliance's own interface
// addresses now; addresses added later are not denied as "own" (they may
// still be covered by the other rules). IPv4-mapped IPv6 prefixes of /96 or
// longer are converted to their IPv4 form, because addresses are unmapped
// before they are checked.
func NewPolicy(allow, deny []netip.Prefix) (*Policy, error) {
	p := &Policy{self: map[netip.Addr]bool{}}
	var err error
	if p.allow, err = normPrefixes(allow); err != nil {
		return nil, fmt.Errorf("allowed prefixes: %w", err)
	}
	if p.deny, err = normPrefixes(deny); err != nil {
		return nil, fmt.Errorf("denied prefixes: %w", err)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		// Fail closed: without them the appliance could be made to call itself.
		return nil, fmt.Errorf("httpcr: list interface addresses: %w", err)
	}
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		if ip, ok := netip.AddrFromSlice(ip); ok {
			p.self[ip.Unmap()] = true
		}
	}
	return p, nil
}

func normPrefixes(in []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, pf := range in {
		if !pf.IsValid() {
			return nil, fmt.Errorf("%w: %v", ErrBadPrefix, pf)
		}
		if pf.Addr().Is4In6() && pf.Bits() >= 96 {
			pf = netip.PrefixFrom(pf.Addr().Unmap(), pf.Bits()-96)
		}
		out = append(out, pf.Masked())
	}
	return out, nil
}

// Check returns nil if connection requests may go to ip, or an error
// wrapping ErrDenied that says why.
func (p *Policy) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrDenied)
	}
	// netip.Prefix.Contains is false for zoned addresses and for
	// IPv4-mapped addresses against IPv4 prefixes: normalise first, or a
	// deny rule could be sidestepped with "::ffff:a.b.c.d" or "%zone".
	ip = ip.Unmap().WithZone("")
	for _, pf := range p.deny {
		if pf.Contains(ip) {
			return fmt.Errorf("%w: %s is in denied prefix %s", ErrDenied, ip, pf)
		}
	}
	for _, pf := range p.allow {
		if pf.Contains(ip) {
			return nil // an explicit allow overrides the built-in denials
		}
	}
	if len(p.allow) > 0 {
		return fmt.Errorf("%w: %s is not in an allowed prefix", ErrDenied, ip)
	}
	for _, b := range builtin {
		if b.prefix.Contains(ip) {
			return fmt.Errorf("%w: %s is a %s address (allow it explicitly to use it)", ErrDenied, ip, b.reason)
		}
	}
	if p.self[ip] {
		return fmt.Errorf("%w: %s is an address of this appliance (allow it explicitly to use it)", ErrDenied, ip)
	}
	return nil
}

// CheckURL checks a ConnectionRequestURL as the API receives it: http or
// https, a host, no user information, a valid port; and if the host is an
// IP literal, that Check allows it. Host names are checked when Do resolves
// them, at dial time. Errors wrap ErrBadURL or ErrDenied.
func (p *Policy) CheckURL(raw string) error {
	t, err := parseTarget(raw)
	if err != nil {
		return err
	}
	if t.literal.IsValid() {
		return p.Check(t.literal)
	}
	return nil
}

// target is a parsed ConnectionRequestURL.
type target struct {
	tls     bool
	host    string     // host name or IP literal, without brackets or port
	literal netip.Addr // valid if host is an IP literal (unmapped)
	port    uint16
	hostHdr string // Host header: the URL's authority
	uri     string // request-target, also the Digest uri
}

func parseTarget(raw string) (*target, error) {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrBadURL, why) }
	if raw == "" {
		return nil, bad("empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, which may carry credentials: give
		// only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, bad(ue.Err.Error())
		}
		return nil, bad("unparseable")
	}
	t := &target{}
	switch u.Scheme {
	case "http":
	case "https":
		t.tls = true
	case "":
		return nil, bad("no scheme (want http:// or https://)")
	default:
		return nil, bad("scheme " + strconv.Quote(u.Scheme) + " (want http or https)")
	}
	if u.User != nil {
		return nil, bad("user information in the URL (give credentials separately)")
	}
	if u.Opaque != "" {
		return nil, bad("opaque URL")
	}
	t.host = u.Hostname()
	if t.host == "" {
		return nil, bad("no host")
	}
	if hasCTL(t.host) || strings.ContainsAny(t.host, " /?#@") {
		return nil, bad("invalid host")
	}
	t.port = 80
	if t.tls {
		t.port = 443
	}
	if ps := u.Port(); ps != "" {
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || n == 0 {
			return nil, bad("invalid port " + strconv.Quote(ps))
		}
		t.port = uint16(n)
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, bad("empty port")
	}
	if ip, err := netip.ParseAddr(t.host); err == nil {
		t.literal = ip.Unmap()
	} else if strings.HasPrefix(u.Host, "[") {
		return nil, bad("invalid IPv6 literal")
	}
	t.hostHdr = u.Host
	t.uri = u.RequestURI() // "" path becomes "/"
	if hasCTL(t.uri) || strings.ContainsAny(t.uri, " ") {
		return nil, bad("invalid path")
	}
	return t, nil
}
