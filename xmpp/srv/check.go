package srv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Verdict sums up a Report.
type Verdict uint8

// Verdicts. The zero value is VerdictFailed.
const (
	// VerdictFailed: the resolver gave no usable answer (timeout,
	// unreachable, SERVFAIL, REFUSED), so nothing is known.
	VerdictFailed Verdict = iota
	// VerdictOK: there are SRV records and every one of them leads to
	// this appliance.
	VerdictOK
	// VerdictPartial: some SRV records lead to this appliance and some
	// elsewhere (or nowhere).
	VerdictPartial
	// VerdictElsewhere: there are SRV records and none leads to this
	// appliance.
	VerdictElsewhere
	// VerdictFallback: there is no _xmpp-client._tcp SRV record, but the
	// domain's own addresses on port 5222, where clients fall back to
	// (RFC 6120 3.2.2), are this appliance.
	VerdictFallback
	// VerdictMissing: there is no _xmpp-client._tcp SRV record (or it
	// says there is no service), and the fallback does not lead to this
	// appliance either.
	VerdictMissing
)

var verdictNames = [...]string{"failed", "ok", "partial", "elsewhere", "fallback", "missing"}

var verdictText = [...]string{
	VerdictFailed:    "the resolver gave no usable answer",
	VerdictOK:        "every SRV record points at this appliance",
	VerdictPartial:   "some SRV records point elsewhere: CPEs that pick them will not reach this broker",
	VerdictElsewhere: "no SRV record points at this appliance",
	VerdictFallback:  "no SRV records; CPEs that fall back to the domain's A/AAAA on port 5222 reach this appliance",
	VerdictMissing:   "no SRV records, and the domain's A/AAAA on port 5222 do not reach this appliance",
}

// String returns "failed", "ok", "partial", "elsewhere", "fallback" or
// "missing".
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// OK reports whether v is VerdictOK. The Report may still list
// problems that do not keep CPEs from this appliance, such as a target
// that is an alias.
func (v Verdict) OK() bool { return v == VerdictOK }

// Report is what Check found.
type Report struct {
	Domain   string           // as checked, without the trailing dot
	Resolver string           // ip:port of the resolver asked
	Expect   []netip.AddrPort // this appliance's broker addresses
	// Records are the _xmpp-client._tcp SRV records, then the
	// _xmpps-client._tcp ones, then, when there is no _xmpp-client._tcp
	// record, the fallback (ServiceFallback).
	Records []Record
	Verdict Verdict
	// Problems say what is wrong, each wrapping one of the Err* problem
	// errors (errors.Is tells which) with the details.
	Problems []error
}

// Record is one SRV record, or the fallback, and where it leads.
type Record struct {
	Service          string // ServiceClient, ServiceDirectTLS or ServiceFallback
	Target           string // host name without the trailing dot; "." for no service
	Port             uint16
	Priority, Weight uint16
	Addrs            []Address // the target's A and AAAA records
	// Ours: the target has addresses and, with Port, every one is among
	// the expected broker addresses.
	Ours bool
}

// Address is one address of a target.
type Address struct {
	Addr netip.Addr
	Ours bool // Addr with the record's port is an expected broker address
}

// How long Check waits for one answer, and how often it asks over UDP.
const (
	checkTimeout = 2 * time.Second
	checkTries   = 2
)

// Check asks resolver (ip:port; a bare IP address means port 53) for the
// SRV records that lead XMPP clients, such as TR-069 Annex K CPEs, to
// the broker of domain: _xmpp-client._tcp (RFC 6120 3.2.1) and
// _xmpps-client._tcp (XEP-0368), over UDP and again over TCP when the
// answer is truncated. It resolves each target's A and AAAA records and
// tells whether the record leads to this appliance, that is to an
// address and port in expect. Without _xmpp-client._tcp records it checks
// the fallback instead, the domain's own addresses on port 5222 (RFC
// 6120 3.2.2).
//
// expect must hold the addresses clients connect to: a listener on a
// wildcard address (0.0.0.0:5222, [::]:5222) stands for every local
// address, which ExpandWildcards with LocalAddrs lists; behind a NAT or
// a load balancer, add the public addresses that forward to the broker.
// Check cannot tell the STARTTLS port from the direct-TLS one: a record
// of either service matches any expected address.
//
// Whatever the resolver does is in the Report, failures included
// (VerdictFailed, with ErrTimeout, ErrUnreachable, ErrServFail...), so
// that it can be shown; Check returns an error only when domain or
// resolver is malformed (ErrDomain, ErrResolver). It waits up to 2s per
// answer and asks twice over UDP, less if ctx ends sooner.
func Check(ctx context.Context, resolver, domain string, expect []netip.AddrPort) (Report, error) {
	d, err := canonHost(domain)
	if err != nil {
		return Report{}, fmt.Errorf("%w: %q: %v", ErrDomain, domain, err)
	}
	addr, err := resolverAddr(resolver)
	if err != nil {
		return Report{}, err
	}
	c := &checker{
		addr:   addr,
		expect: make(map[netip.AddrPort]bool),
		ports:  make(map[netip.Addr][]uint16),
		cache:  make(map[string]lookupResult),
		rep: Report{
			Domain:   strings.TrimSuffix(d, "."),
			Resolver: addr,
			Expect:   slices.Clone(expect),
		},
	}
	for _, ap := range expect {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		c.expect[ap] = true
		c.ports[ap.Addr()] = append(c.ports[ap.Addr()], ap.Port())
	}
	if err := c.run(ctx, d); err != nil {
		c.rep.Verdict = VerdictFailed
		c.rep.Problems = append(c.rep.Problems, err)
	}
	return c.rep, nil
}

// resolverAddr returns s, an IP address with or without a port, as
// ip:port, with port 53 if none.
func resolverAddr(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	h := s
	if len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return "", fmt.Errorf("%w: %q is not an IP address with an optional port", ErrResolver, s)
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}

// checker is one run of Check.
type checker struct {
	addr   string
	expect map[netip.AddrPort]bool
	ports  map[netip.Addr][]uint16 // expected ports by address, to tell a port mismatch
	cache  map[string]lookupResult // by name and type: targets of both services are asked once
	rep    Report
}

type lookupResult struct {
	rrs   []dns.RR
	alias string
	err   error
}

// run fills in the report; an error means no verdict can be given.
func (c *checker) run(ctx context.Context, domain string) error {
	disabled := false
	for _, svc := range []string{ServiceClient, ServiceDirectTLS} {
		name := svc + "." + domain
		rrs, _, err := c.lookup(ctx, name, dns.TypeSRV)
		switch {
		case errors.Is(err, ErrNXDomain):
			// No such name: no records, like NODATA.
		case err != nil:
			return err
		}
		for _, rr := range rrs {
			s := rr.(*dns.SRV)
			rec := Record{Service: svc, Target: strings.TrimSuffix(s.Target, "."),
				Port: s.Port, Priority: s.Priority, Weight: s.Weight}
			if s.Target == "." {
				// RFC 2782: "." alone means decidedly not available.
				rec.Target = "."
				c.problem(fmt.Errorf("%w: %s", ErrServiceDisabled, name))
				c.rep.Records = append(c.rep.Records, rec)
				disabled = disabled || svc == ServiceClient
				continue
			}
			if err := c.resolve(ctx, &rec); err != nil {
				return err
			}
			c.rep.Records = append(c.rep.Records, rec)
		}
	}

	var total, ours, client int
	for _, r := range c.rep.Records {
		if r.Target == "." {
			continue
		}
		total++
		if r.Ours {
			ours++
		}
		if r.Service == ServiceClient {
			client++
		}
	}
	switch {
	case client == 0 && disabled:
		c.rep.Verdict = VerdictMissing
	case client == 0:
		// RFC 6120 3.2.2: without SRV records, clients connect to the
		// domain's own addresses on port 5222.
		c.problem(fmt.Errorf("%w for %s: CPEs fall back to the A/AAAA records of %s on port %d (RFC 6120 3.2.2)",
			ErrNoSRV, c.rep.Domain, c.rep.Domain, defaultPort))
		rec := Record{Service: ServiceFallback, Target: c.rep.Domain, Port: defaultPort}
		if err := c.resolve(ctx, &rec); err != nil {
			return err
		}
		c.rep.Records = append(c.rep.Records, rec)
		c.rep.Verdict = VerdictMissing
		if rec.Ours {
			c.rep.Verdict = VerdictFallback
		}
	case ours == total:
		c.rep.Verdict = VerdictOK
	case ours > 0:
		c.rep.Verdict = VerdictPartial
	default:
		c.rep.Verdict = VerdictElsewhere
	}
	return nil
}

// problem notes err, once: a target of both services has its problems
// found twice.
func (c *checker) problem(err error) {
	for _, p := range c.rep.Problems {
		if p.Error() == err.Error() {
			return
		}
	}
	c.rep.Problems = append(c.rep.Problems, err)
}

// resolve fills in the addresses of rec's target and whether they are
// ours, noting problems; an error means the resolver failed.
func (c *checker) resolve(ctx context.Context, rec *Record) error {
	what := fmt.Sprintf("%s target %s (priority %d)", rec.Service, rec.Target, rec.Priority)
	if rec.Service == ServiceFallback {
		what = "domain " + rec.Target
	}
	aliased := false
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, alias, err := c.lookup(ctx, rec.Target, t)
		switch {
		case errors.Is(err, ErrNXDomain):
			c.problem(err)
			return nil // no need to ask for the other type
		case errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnreachable):
			return err
		case err != nil:
			c.problem(err)
			continue
		}
		if alias != "" && rec.Service != ServiceFallback && !aliased {
			aliased = true
			c.problem(fmt.Errorf("%w: %s is an alias of %s", ErrCNAME, rec.Target, alias))
		}
		for _, rr := range rrs {
			a := rrAddr(rr)
			rec.Addrs = append(rec.Addrs, Address{Addr: a, Ours: c.expect[netip.AddrPortFrom(a, rec.Port)]})
		}
	}
	if len(rec.Addrs) == 0 {
		c.problem(fmt.Errorf("%w: %s has no A or AAAA record", ErrNoAddress, what))
		return nil
	}
	rec.Ours = true
	var elsewhere, port []string
	for _, a := range rec.Addrs {
		switch {
		case a.Ours:
		case len(c.ports[a.Addr]) != 0:
			rec.Ours = false
			port = append(port, fmt.Sprintf("%v (listening on %v)", a.Addr, c.ports[a.Addr]))
		default:
			rec.Ours = false
			elsewhere = append(elsewhere, a.Addr.String())
		}
	}
	if len(port) != 0 {
		c.problem(fmt.Errorf("%w: %s says port %d, but this appliance is at %s",
			ErrPort, what, rec.Port, strings.Join(port, ", ")))
	}
	if len(elsewhere) != 0 {
		c.problem(fmt.Errorf("%w: %s leads to %s, not this appliance",
			ErrElsewhere, what, strings.Join(elsewhere, ", ")))
	}
	return nil
}

// lookup asks for name's records of type t. It returns those of the
// answer, following the CNAME chain the resolver gives with them (alias
// is the name the first CNAME points to, "" if none), or an error that
// wraps one of ErrTimeout, ErrUnreachable, ErrNXDomain, ErrServFail,
// ErrRefused or ErrRcode. NODATA is no records and no error.
func (c *checker) lookup(ctx context.Context, name string, t uint16) ([]dns.RR, string, error) {
	key := dns.CanonicalName(name) + " " + dns.TypeToString[t]
	r, ok := c.cache[key]
	if !ok {
		r.rrs, r.alias, r.err = c.lookup1(ctx, dns.Fqdn(name), t)
		c.cache[key] = r
	}
	return r.rrs, r.alias, r.err
}

func (c *checker) lookup1(ctx context.Context, name string, t uint16) (rrs []dns.RR, alias string, err error) {
	r, err := c.exchange(ctx, name, t)
	if err != nil {
		return nil, "", err
	}
	q := fmt.Sprintf("%s %s", strings.TrimSuffix(name, "."), dns.TypeToString[t])
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, "", fmt.Errorf("%w: %s", ErrNXDomain, q)
	case dns.RcodeServerFailure:
		return nil, "", fmt.Errorf("%w: %s", ErrServFail, q)
	case dns.RcodeRefused:
		return nil, "", fmt.Errorf("%w: %s", ErrRefused, q)
	default:
		return nil, "", fmt.Errorf("%w: %s: %s", ErrRcode, q, rcodeLabel(r.Rcode))
	}
	owner := name
	for range 8 { // a longer chain is broken anyway
		next := ""
		for _, rr := range r.Answer {
			if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(cn.Hdr.Name, owner) {
				next = cn.Target
				break
			}
		}
		if next == "" {
			break
		}
		if alias == "" {
			alias = strings.TrimSuffix(next, ".")
		}
		owner = next
	}
	for _, rr := range r.Answer {
		if h := rr.Header(); h.Rrtype == t && h.Class == dns.ClassINET && strings.EqualFold(h.Name, owner) {
			rrs = append(rrs, rr)
		}
	}
	return rrs, alias, nil
}

// exchange sends one query over UDP, asking again once if no answer
// comes, and over TCP if the answer is truncated.
func (c *checker) exchange(ctx context.Context, name string, t uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	m.RecursionDesired = true
	m.SetEdns0(defaultMaxUDPSize, false)
	q := fmt.Sprintf("%s %s", strings.TrimSuffix(name, "."), dns.TypeToString[t])

	var err error
	for range checkTries {
		cl := &dns.Client{Net: "udp", Timeout: checkTimeout}
		var r *dns.Msg
		r, _, err = cl.ExchangeContext(ctx, m, c.addr)
		if err == nil && r.Truncated {
			cl.Net = "tcp"
			r, _, err = cl.ExchangeContext(ctx, m, c.addr)
		}
		if err == nil {
			return r, nil
		}
		if !isTimeout(err) || ctx.Err() != nil {
			break
		}
	}
	if isTimeout(err) || ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %s: %s: %v", ErrTimeout, c.addr, q, err)
	}
	return nil, fmt.Errorf("%w: %s: %s: %v", ErrUnreachable, c.addr, q, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

// SystemResolver returns the first name server of /etc/resolv.conf as
// ip:port, for Check.
func SystemResolver() (string, error) { return systemResolver("/etc/resolv.conf") }

func systemResolver(path string) (string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return "", fmt.Errorf("srv: reading %s: %w", path, err)
	}
	if len(cc.Servers) == 0 {
		return "", fmt.Errorf("%w: %s", ErrNoResolver, path)
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

// ExpandWildcards returns listen with each wildcard address replaced by
// the local addresses that it covers: 0.0.0.0 by the IPv4 ones, :: by
// all (a Linux IPv6 socket also accepts IPv4 unless IPV6_V6ONLY is set).
// Use it to turn the broker's listen addresses into Check's expect.
func ExpandWildcards(listen []netip.AddrPort, local []netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	add := func(a netip.Addr, port uint16) {
		ap := netip.AddrPortFrom(a.Unmap(), port)
		if !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	for _, ap := range listen {
		a := ap.Addr().Unmap()
		if !a.IsUnspecified() {
			add(a, ap.Port())
			continue
		}
		for _, l := range local {
			if l.Unmap().Is4() || a.Is6() {
				add(l, ap.Port())
			}
		}
	}
	return out
}

// LocalAddrs returns the addresses of this host's interfaces that a
// client could connect to: all but link-local ones (loopback included,
// for clients on this host).
func LocalAddrs() ([]netip.Addr, error) {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("srv: listing interface addresses: %w", err)
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		n, ok := ifa.(*net.IPNet)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}
