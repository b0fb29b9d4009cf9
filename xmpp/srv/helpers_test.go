package srv

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Addresses from the documentation ranges (RFC 5737, RFC 3849): the
// tests only ever put them in answers, and never send to them.
var (
	addrXMPP  = netip.MustParseAddr("192.0.2.10")
	addrXMPP6 = netip.MustParseAddr("2001:db8::10")
	addrXMPP2 = netip.MustParseAddr("192.0.2.11")
	addrOther = netip.MustParseAddr("198.51.100.7")
)

// testConfig is the zone of most tests:
//
//	_xmpp-client._tcp.example.net.  SRV 10 60 5222 xmpp.example.net.
//	_xmpp-client._tcp.example.net.  SRV 20 0 5222 xmpp2.example.net.
//	_xmpps-client._tcp.example.net. SRV 10 60 5223 xmpp.example.net.
//	xmpp.example.net.  A 192.0.2.10, AAAA 2001:db8::10
//	xmpp2.example.net. A 192.0.2.11
//	example.net.       A 192.0.2.10, 192.0.2.11, AAAA 2001:db8::10; NS example.net.
func testConfig() Config {
	return Config{
		Domain: "example.net",
		Targets: []Target{
			{Host: "xmpp.example.net", Addrs: []netip.Addr{addrXMPP, addrXMPP6}, TLSPort: 5223, Priority: 10, Weight: 60},
			{Host: "xmpp2.example.net", Addrs: []netip.Addr{addrXMPP2}, Priority: 20},
		},
		RatePerSource: -1,
	}
}

// ourAddrs are the broker addresses of testConfig, as Check expects them.
var ourAddrs = []netip.AddrPort{
	netip.AddrPortFrom(addrXMPP, 5222), netip.AddrPortFrom(addrXMPP, 5223),
	netip.AddrPortFrom(addrXMPP6, 5222), netip.AddrPortFrom(addrXMPP6, 5223),
	netip.AddrPortFrom(addrXMPP2, 5222),
}

// wire turns a packet diagram into bytes: hex digits, with white space
// anywhere, and "quoted" text for its bytes (labels read better so).
func wire(s string) []byte {
	var out []byte
	for i, part := range strings.Split(s, `"`) {
		if i%2 == 1 {
			out = append(out, part...)
			continue
		}
		b, err := hex.DecodeString(strings.Join(strings.Fields(part), ""))
		if err != nil {
			panic(fmt.Sprintf("wire %q: %v", s, err))
		}
		out = append(out, b...)
	}
	return out
}

// query packs a query for name and type t, with EDNS (payload size
// ednsSize) unless ednsSize is 0.
func query(name string, t uint16, ednsSize uint16) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	m.RecursionDesired = false
	if ednsSize != 0 {
		m.SetEdns0(ednsSize, false)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// newTestServer returns a server for cfg with its own metrics registry.
func newTestServer(t testing.TB, cfg Config) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

// running is a server serving one UDP and one TCP socket on loopback.
type running struct {
	*Server
	reg       *prometheus.Registry
	udp, tcp  string // host:port
	udpErr    chan error
	tcpErr    chan error
	cancel    context.CancelFunc
	cancelled bool
}

// start serves cfg on 127.0.0.1:0 (UDP and TCP) until the test ends.
// The sockets are bound before start returns, so queries sent at once
// wait in the kernel for Serve: nothing to wait for.
func start(t testing.TB, cfg Config) *running {
	t.Helper()
	s, reg := newTestServer(t, cfg)
	s.zone.soa.Serial = 1 // the SOA as the tests expect it, before Serve reads it
	pc, ln := listenPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Server: s, reg: reg, udp: pc.LocalAddr().String(), tcp: ln.Addr().String(),
		udpErr: make(chan error, 1), tcpErr: make(chan error, 1), cancel: cancel}
	go func() { r.udpErr <- s.Serve(ctx, pc) }()
	go func() { r.tcpErr <- s.ServeTCP(ctx, ln) }()
	t.Cleanup(func() {
		if !r.cancelled {
			r.stop(t)
		}
	})
	return r
}

// listenPair binds UDP and TCP on one port of 127.0.0.1, as a resolver
// is reached: Check falls back to TCP on the address it used for UDP.
func listenPair(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	var err error
	for range 20 {
		var ln net.Listener
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			break
		}
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			return pc, ln
		}
		ln.Close() // the UDP port is someone else's: try another
	}
	t.Fatal(err)
	return nil, nil
}

// stop cancels the server and checks that both Serve calls return nil.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancelled = true
	r.cancel()
	for _, ch := range []chan error{r.udpErr, r.tcpErr} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("serve did not return after cancel")
		}
	}
}

// exchange sends m over network ("udp" or "tcp") and returns the answer.
func (r *running) exchange(t testing.TB, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	addr := r.udp
	if network == "tcp" {
		addr = r.tcp
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: dns.MaxMsgSize}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %v: %v", network, m.Question, err)
	}
	return resp
}
