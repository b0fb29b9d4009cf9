package srv

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// The service names of XMPP client connections, below the domain.
const (
	// ServiceClient is the SRV service of client-to-server connections
	// that start in the clear and upgrade with STARTTLS (RFC 6120
	// 3.2.1), which TR-069 Annex K CPEs look up.
	ServiceClient = "_xmpp-client._tcp"
	// ServiceDirectTLS is the SRV service of client-to-server
	// connections that start with TLS (XEP-0368).
	ServiceDirectTLS = "_xmpps-client._tcp"
	// ServiceFallback names, in a Report, the addresses of the domain
	// itself on port 5222, which clients use when there is no SRV record
	// (RFC 6120 3.2.2).
	ServiceFallback = "fallback"
)

// node holds the records of one name of the zone. Owner names are
// canonical; answers copy them under the query's spelling.
type node struct {
	a, aaaa  []dns.RR
	srv      []dns.RR
	srvExtra []dns.RR // A and AAAA of the SRV targets inside the zone
}

// zone is the data the server is authoritative for, built once from a
// validated Config and read by any number of goroutines.
type zone struct {
	apex    string // canonical: "example.net."
	labels  int    // labels in apex
	nodes   map[string]*node
	ents    map[string]bool // empty non-terminals, such as _tcp.<apex>
	soa     *dns.SOA
	ns      []dns.RR
	nsExtra []dns.RR // addresses of NS when it is inside the zone
	ttl     uint32
	maxUDP  int
}

// newZone builds the zone of a Config that validate accepted.
func newZone(c *Config, serial uint32) *zone {
	ttl := uint32(c.TTL.Seconds())
	z := &zone{
		apex:   c.Domain,
		labels: dns.CountLabel(c.Domain),
		nodes:  make(map[string]*node),
		ents:   make(map[string]bool),
		ttl:    ttl,
		maxUDP: c.MaxUDPSize,
	}
	get := func(name string) *node {
		n := z.nodes[name]
		if n == nil {
			n = new(node)
			z.nodes[name] = n
		}
		return n
	}
	addAddrs := func(name string, addrs []netip.Addr) {
		n := get(name)
		for _, a := range addrs {
			same := func(rr dns.RR) bool { return rrAddr(rr) == a }
			if slices.ContainsFunc(n.a, same) || slices.ContainsFunc(n.aaaa, same) {
				continue
			}
			if a.Is4() {
				n.a = append(n.a, &dns.A{Hdr: z.hdr(name, dns.TypeA), A: net.IP(a.AsSlice())})
			} else {
				n.aaaa = append(n.aaaa, &dns.AAAA{Hdr: z.hdr(name, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
			}
		}
	}

	// The apex: its own addresses, or else every in-zone target's.
	get(z.apex)
	if len(c.Addrs) != 0 {
		addAddrs(z.apex, c.Addrs)
	} else {
		for _, t := range c.Targets {
			addAddrs(z.apex, t.Addrs)
		}
	}
	for _, t := range c.Targets {
		if inZone(z.apex, t.Host) {
			addAddrs(t.Host, t.Addrs)
		}
	}
	if inZone(z.apex, c.NS) {
		addAddrs(c.NS, c.NSAddrs)
	}

	// RFC 2782: _Service._Proto.Name TTL Class SRV Priority Weight Port Target.
	for _, svc := range []string{ServiceClient, ServiceDirectTLS} {
		name := svc + "." + z.apex
		var hosts []string
		for _, t := range c.Targets {
			port := t.Port
			if svc == ServiceDirectTLS {
				port = t.TLSPort
			}
			if port == 0 {
				continue
			}
			n := get(name)
			n.srv = append(n.srv, &dns.SRV{Hdr: z.hdr(name, dns.TypeSRV),
				Priority: t.Priority, Weight: t.Weight, Port: port, Target: t.Host})
			if inZone(z.apex, t.Host) && !slices.Contains(hosts, t.Host) {
				hosts = append(hosts, t.Host)
				n.srvExtra = append(n.srvExtra, z.nodes[t.Host].a...)
				n.srvExtra = append(n.srvExtra, z.nodes[t.Host].aaaa...)
			}
		}
	}

	z.soa = &dns.SOA{
		Hdr:     z.hdr(z.apex, dns.TypeSOA),
		Ns:      c.NS,
		Mbox:    "hostmaster." + z.apex,
		Serial:  serial,
		Refresh: 3600, // Refresh, Retry and Expire matter only to secondaries, which this zone has none of.
		Retry:   600,
		Expire:  7 * 86400,
		Minttl:  ttl, // RFC 2308 4: the negative-caching TTL
	}
	z.ns = []dns.RR{&dns.NS{Hdr: z.hdr(z.apex, dns.TypeNS), Ns: c.NS}}
	if n := z.nodes[c.NS]; n != nil {
		z.nsExtra = append(append(z.nsExtra, n.a...), n.aaaa...)
	}

	// RFC 8020, RFC 4592 2.2.2: a name with descendants but no records
	// (an empty non-terminal, such as _tcp.<apex>) exists. Answering it
	// NXDOMAIN would tell resolvers that minimise query names (RFC 9156)
	// that nothing below it exists, and hide the SRV records.
	for name := range z.nodes {
		for p := name; p != z.apex; {
			p = p[strings.IndexByte(p, '.')+1:]
			if z.nodes[p] == nil {
				z.ents[p] = true
			}
		}
	}
	return z
}

func (z *zone) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: z.ttl}
}

// rrAddr returns the address of an A or AAAA record.
func rrAddr(rr dns.RR) netip.Addr {
	var ip net.IP
	switch rr := rr.(type) {
	case *dns.A:
		ip = rr.A
	case *dns.AAAA:
		ip = rr.AAAA
	}
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
