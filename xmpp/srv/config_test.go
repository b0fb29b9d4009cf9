package srv

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestConfig(t *testing.T) {
	mod := func(f func(*Config)) Config {
		c := testConfig()
		f(&c)
		return c
	}
	bad := func(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"defaults", testConfig(), nil},
		{"trailing dot and capitals", mod(func(c *Config) { c.Domain = "Example.NET." }), nil},
		{"no domain", mod(func(c *Config) { c.Domain = "" }), ErrDomain},
		{"root domain", mod(func(c *Config) { c.Domain = "." }), ErrDomain},
		{"space in domain", mod(func(c *Config) { c.Domain = "exa mple.net" }), ErrDomain},
		{"hyphen first", mod(func(c *Config) { c.Domain = "-x.net" }), ErrDomain},
		{"empty label", mod(func(c *Config) { c.Domain = "x..net" }), ErrDomain},
		{"long label", mod(func(c *Config) { c.Domain = string(make([]byte, 64)) + ".net" }), ErrDomain},
		{"no targets", mod(func(c *Config) { c.Targets = nil }), ErrNoTargets},
		{"bad target host", mod(func(c *Config) { c.Targets[0].Host = "xmpp_1.example.net" }), ErrTarget},
		{"target in zone without address", mod(func(c *Config) { c.Targets[1].Addrs = nil }), ErrTarget},
		{"target outside with addresses", mod(func(c *Config) { c.Targets[1].Host = "xmpp.example.org" }), ErrTarget},
		{"target outside", mod(func(c *Config) { c.Targets[1] = Target{Host: "xmpp.example.org"} }), nil},
		{"only targets outside, apex has no address for NS", mod(func(c *Config) {
			c.Targets = []Target{{Host: "xmpp.example.org"}}
		}), ErrNS},
		{"only targets outside, apex addresses", mod(func(c *Config) {
			c.Targets = []Target{{Host: "xmpp.example.org"}}
			c.Addrs = []netip.Addr{addrXMPP}
		}), nil},
		{"unspecified address", mod(func(c *Config) { c.Targets[0].Addrs = bad("0.0.0.0") }), ErrAddr},
		{"multicast address", mod(func(c *Config) { c.Addrs = bad("ff02::1") }), ErrAddr},
		{"zoned address", mod(func(c *Config) { c.Targets[0].Addrs = bad("fe80::1%eth0") }), ErrAddr},
		{"invalid address", mod(func(c *Config) { c.Targets[0].Addrs = []netip.Addr{{}} }), ErrAddr},
		{"NS outside", mod(func(c *Config) { c.NS = "ns1.example.org" }), nil},
		{"NS outside with addresses", mod(func(c *Config) { c.NS = "ns1.example.org"; c.NSAddrs = []netip.Addr{addrXMPP} }), ErrNS},
		{"NS inside without address", mod(func(c *Config) { c.NS = "ns1.example.net" }), ErrNS},
		{"NS inside with addresses", mod(func(c *Config) { c.NS = "ns1.example.net"; c.NSAddrs = []netip.Addr{addrXMPP} }), nil},
		{"NS is a target", mod(func(c *Config) { c.NS = "xmpp2.example.net" }), nil},
		{"bad NS", mod(func(c *Config) { c.NS = "ns 1" }), ErrNS},
		{"negative TTL", mod(func(c *Config) { c.TTL = -time.Second }), ErrTTL},
		{"TTL under a second", mod(func(c *Config) { c.TTL = time.Millisecond }), ErrTTL},
		{"TTL over 2^31-1 s", mod(func(c *Config) { c.TTL = maxTTL + time.Second }), ErrTTL},
		{"UDP size 100", mod(func(c *Config) { c.MaxUDPSize = 100 }), ErrUDPSize},
		{"UDP size 9000", mod(func(c *Config) { c.MaxUDPSize = 9000 }), ErrUDPSize},
		{"negative burst", mod(func(c *Config) { c.RatePerSource = 10; c.RateBurst = -1 }), ErrRateLimit},
		{"negative table", mod(func(c *Config) { c.RatePerSource = 10; c.RateTableSize = -1 }), ErrRateLimit},
		{"negative TCP connections", mod(func(c *Config) { c.MaxTCPConns = -1 }), ErrTCP},
		{"negative idle timeout", mod(func(c *Config) { c.TCPIdleTimeout = -1 }), ErrTCP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("New: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := testConfig()
	cfg.Domain = "Example.NET"
	cfg.RatePerSource = 0
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.Domain != "example.net." || c.NS != "example.net." || c.TTL != 300*time.Second || c.MaxUDPSize != 1232 ||
		c.RatePerSource != 100 || c.RateBurst != 200 || c.RateTableSize != 65536 || c.MaxTCPConns != 256 ||
		c.TCPIdleTimeout != 10*time.Second || c.Targets[0].Port != 5222 || c.Targets[1].Port != 5222 || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
	if cfg.Targets[0].Port != 0 {
		t.Error("New changed the caller's targets")
	}
}

// TestNSInZone: an NS name of its own gets its address, and NS answers
// carry it as additional data.
func TestNSInZone(t *testing.T) {
	cfg := testConfig()
	cfg.NS = "ns1.example.net"
	cfg.NSAddrs = []netip.Addr{netip.MustParseAddr("192.0.2.53")}
	cfg.Addrs = []netip.Addr{addrXMPP}
	s, _ := newTestServer(t, cfg)
	for _, tc := range []struct {
		q      string
		t      uint16
		answer []string
		extra  []string
	}{
		{"example.net.", dns.TypeNS, []string{"example.net. 300 IN NS ns1.example.net."}, []string{"ns1.example.net. 300 IN A 192.0.2.53"}},
		{"ns1.example.net.", dns.TypeA, []string{"ns1.example.net. 300 IN A 192.0.2.53"}, nil},
		{"example.net.", dns.TypeA, []string{"example.net. 300 IN A 192.0.2.10"}, nil},
	} {
		resp, _ := s.zone.answer(query(tc.q, tc.t, 0), true, nil)
		var m dns.Msg
		if err := m.Unpack(resp); err != nil {
			t.Fatal(err)
		}
		if got := rrStrings(m.Answer); !slices.Equal(got, tc.answer) {
			t.Errorf("%s %s: answer %q, want %q", tc.q, dns.TypeToString[tc.t], got, tc.answer)
		}
		if got := rrStrings(m.Extra); !slices.Equal(got, tc.extra) {
			t.Errorf("%s %s: additional %q, want %q", tc.q, dns.TypeToString[tc.t], got, tc.extra)
		}
	}
}
