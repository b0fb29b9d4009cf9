package srv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/crrelay/crrelay/internal/metrictest"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestServe runs the answer cases over real UDP and TCP sockets, with
// miekg/dns as the client.
func TestServe(t *testing.T) {
	r := start(t, testConfig())
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range answerCases() {
			if tc.drop != dropNone {
				continue // TestGarbage
			}
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				resp := rawExchange(t, network, r, tc.req)
				checkAnswer(t, tc, resp, dropNone)
			})
		}
	}
}

// rawExchange sends req as it is and returns the response.
func rawExchange(t *testing.T, network string, r *running, req []byte) []byte {
	t.Helper()
	addr := r.udp
	if network == "tcp" {
		addr = r.tcp
	}
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if network == "udp" {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, dns.MaxMsgSize)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
	if err := writeTCP(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := readTCP(c)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func writeTCP(c net.Conn, msg []byte) error {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(msg)))
	_, err := c.Write(append(b, msg...))
	return err
}

func readTCP(c net.Conn) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(c, b)
	return b, err
}

// bigConfig has n targets, each with an IPv4 and an IPv6 address.
func bigConfig(n int) Config {
	cfg := testConfig()
	cfg.Targets = nil
	for i := range n {
		cfg.Targets = append(cfg.Targets, Target{
			Host:  fmt.Sprintf("xmpp%02d.example.net", i),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})},
		})
	}
	return cfg
}

// TestTruncation checks RFC 2181 9 and RFC 7766: additional records go
// first, then the answer is truncated over UDP, and TCP has it all.
func TestTruncation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		targets int
		edns    uint16
		tc      bool
		extra   bool
	}{
		{"fits with additional", 2, 0, false, true},
		{"additional dropped, no EDNS", 10, 0, false, false},
		{"additional kept with EDNS 1232", 10, 1232, false, true},
		{"truncated without EDNS", 25, 0, true, false},
		{"fits in EDNS 1232 without additional", 25, 1232, false, false},
		{"truncated at EDNS 1232", 40, 1232, true, false},
		{"EDNS 4096 capped at MaxUDPSize", 40, 4096, true, false},
		{"EDNS 100 counts as 512", 25, 100, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, bigConfig(tc.targets))
			m := new(dns.Msg)
			m.SetQuestion("_xmpp-client._tcp.example.net.", dns.TypeSRV)
			if tc.edns != 0 {
				m.SetEdns0(tc.edns, false)
			}
			req, _ := m.Pack()
			resp := rawExchange(t, "udp", r, req)
			limit := 512
			if tc.edns != 0 {
				limit = min(max(int(tc.edns), 512), defaultMaxUDPSize)
			}
			if len(resp) > limit {
				t.Errorf("UDP response of %d bytes, limit %d", len(resp), limit)
			}
			var u dns.Msg
			if err := u.Unpack(resp); err != nil {
				t.Fatal(err)
			}
			extra := len(u.Extra)
			if tc.edns != 0 {
				extra-- // OPT
			}
			if u.Truncated != tc.tc || (extra > 0) != tc.extra {
				t.Errorf("TC %v, %d additional records; want TC %v, additional %v", u.Truncated, extra, tc.tc, tc.extra)
			}
			if u.Truncated && (len(u.Answer) != 0 || len(u.Ns) != 0 || len(u.Question) != 1) {
				t.Errorf("truncated response has %d answers, %d authority, %d questions", len(u.Answer), len(u.Ns), len(u.Question))
			}
			if !u.Truncated && len(u.Answer) != tc.targets {
				t.Errorf("%d answers, want %d", len(u.Answer), tc.targets)
			}
			if got := metrictest.Value(t, r.reg, "crrelay_dns_truncated_total"); (got == 1) != tc.tc {
				t.Errorf("crrelay_dns_truncated_total = %v", got)
			}

			full := r.exchange(t, "tcp", m)
			if full.Truncated || len(full.Answer) != tc.targets || len(full.Extra) < 2*tc.targets {
				t.Errorf("TCP: TC %v, %d answers, %d additional", full.Truncated, len(full.Answer), len(full.Extra))
			}
		})
	}
}

// TestGarbage sends packets that get no answer, then a query: its
// answer is the first to come back, and the packets before it were
// counted.
func TestGarbage(t *testing.T) {
	r := start(t, testConfig())
	c, err := net.Dial("udp", r.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	garbage := [][]byte{
		{0},
		wire("0102 0304 0506 0708 090a 0b"), // 11 bytes
		wire("1234 8180 0001 0000 0000 0000 00 0001 0001"), // a response
		wire("1234 0000 0001 0000 0000 0000 3f"),           // label past the end: FORMERR
		[]byte("GET / HTTP/1.1\r\nHost: example.net\r\n\r\n"),
	}
	for _, g := range garbage {
		if _, err := c.Write(g); err != nil {
			t.Fatal(err)
		}
	}
	// Answers come in order: the FORMERR ones first, then ours.
	q := query("xmpp.example.net.", dns.TypeA, 0)
	binary.BigEndian.PutUint16(q, 0xbeef)
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	formerr := 0
	for {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var m dns.Msg
		if err := m.Unpack(buf[:n]); err != nil {
			t.Fatalf("response % x: %v", buf[:n], err)
		}
		if m.Id == 0xbeef {
			break
		}
		if m.Rcode != dns.RcodeFormatError && m.Rcode != dns.RcodeNotImplemented || n != headerLen {
			t.Errorf("answer to garbage: %v", m)
		}
		formerr++
	}
	// "GET / HTTP/1.1" reads as ID 0x4745, flags 0x5420: opcode 10,
	// NOTIMP.
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"crrelay_dns_dropped_total", []string{"reason", "short"}, 2},
		{"crrelay_dns_dropped_total", []string{"reason", "response"}, 1},
		{"crrelay_dns_queries_total", []string{"rcode", "FORMERR", "type", "none"}, 1},
		{"crrelay_dns_queries_total", []string{"rcode", "NOTIMP", "type", "none"}, 1},
		{"crrelay_dns_queries_total", []string{"rcode", "NOERROR", "type", "A"}, 1},
	} {
		if got := metrictest.Value(t, r.reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if formerr != 2 {
		t.Errorf("%d header-only answers to garbage, want 2 (FORMERR and NOTIMP)", formerr)
	}
}

// TestTCPGarbage: a TCP message that is not a query closes the
// connection.
func TestTCPGarbage(t *testing.T) {
	r := start(t, testConfig())
	for _, msg := range [][]byte{nil, {1, 2, 3}, wire("1234 8180 0001 0000 0000 0000 00 0001 0001")} {
		c, err := net.Dial("tcp", r.tcp)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := writeTCP(c, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := readTCP(c); !errors.Is(err, io.EOF) {
			t.Errorf("% x: read %v, want EOF", msg, err)
		}
		c.Close()
	}
}

// TestTCPPipelined sends two queries in one segment (RFC 7766 6.2.1.1).
func TestTCPPipelined(t *testing.T) {
	r := start(t, testConfig())
	c, err := net.Dial("tcp", r.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b []byte
	for i, name := range []string{"xmpp.example.net.", "xmpp2.example.net."} {
		q := query(name, dns.TypeA, 0)
		binary.BigEndian.PutUint16(q, uint16(i+1))
		b = binary.BigEndian.AppendUint16(b, uint16(len(q)))
		b = append(b, q...)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"192.0.2.10", "192.0.2.11"} {
		resp, err := readTCP(c)
		if err != nil {
			t.Fatal(err)
		}
		var m dns.Msg
		if err := m.Unpack(resp); err != nil {
			t.Fatal(err)
		}
		if m.Id != uint16(i+1) || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != want {
			t.Errorf("answer %d: %v", i, m)
		}
	}
}

// TestRateLimit: a source over its rate is dropped (UDP) or disconnected
// (TCP); another source is not affected.
func TestRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.RatePerSource = 0.001 // one token per 1000s: only the burst passes
	cfg.RateBurst = 2
	r := start(t, cfg)

	// TCP from 127.0.0.1: two answers, then the connection closes.
	c, err := net.Dial("tcp", r.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	for i := range 3 {
		if err := writeTCP(c, query("xmpp.example.net.", dns.TypeA, 0)); err != nil {
			t.Fatal(err)
		}
		_, err := readTCP(c)
		if (err == nil) != (i < 2) {
			t.Errorf("query %d: %v", i, err)
		}
	}

	// UDP from 127.0.0.1: over the rate already. From 127.0.0.2: fine,
	// and its answer shows the first was handled.
	u1, err := net.Dial("udp", r.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer u1.Close()
	if _, err := u1.Write(query("xmpp.example.net.", dns.TypeA, 0)); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	u2, err := d.Dial("udp", r.udp)
	if err != nil {
		t.Skipf("no 127.0.0.2 on loopback: %v", err)
	}
	defer u2.Close()
	if _, err := u2.Write(query("xmpp.example.net.", dns.TypeA, 0)); err != nil {
		t.Fatal(err)
	}
	_ = u2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := u2.Read(make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	if got := metrictest.Value(t, r.reg, "crrelay_dns_dropped_total", "reason", "rate_limited"); got != 2 {
		t.Errorf("rate_limited = %v, want 2", got)
	}
}

// TestTCPLimit: connections over MaxTCPConns are closed at once.
func TestTCPLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxTCPConns = 1
	r := start(t, cfg)
	first, err := net.Dial("tcp", r.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_ = first.SetDeadline(time.Now().Add(5 * time.Second))
	// An answer on the first shows it was accepted.
	if err := writeTCP(first, query("xmpp.example.net.", dns.TypeA, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := readTCP(first); err != nil {
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", r.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := second.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("second connection: %v, want EOF", err)
	}
	if got := metrictest.Value(t, r.reg, "crrelay_dns_dropped_total", "reason", "tcp_limit"); got != 1 {
		t.Errorf("tcp_limit = %v", got)
	}
	// The first one still works.
	if err := writeTCP(first, query("xmpp.example.net.", dns.TypeA, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := readTCP(first); err != nil {
		t.Fatal(err)
	}
}

// TestTCPIdle: a connection that sends nothing is closed after
// TCPIdleTimeout.
func TestTCPIdle(t *testing.T) {
	cfg := testConfig()
	cfg.TCPIdleTimeout = 20 * time.Millisecond
	r := start(t, cfg)
	c, err := net.Dial("tcp", r.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{0}); err != nil { // half a length: a slow client
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read %v, want EOF", err)
	}
}

// TestShutdown: cancelling stops both Serve calls, closing idle TCP
// connections, and they return nil.
func TestShutdown(t *testing.T) {
	cfg := testConfig()
	cfg.TCPIdleTimeout = time.Hour
	r := start(t, cfg)
	c, err := net.Dial("tcp", r.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := writeTCP(c, query("xmpp.example.net.", dns.TypeA, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := readTCP(c); err != nil {
		t.Fatal(err)
	}
	r.stop(t) // fails if either does not return nil
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection after shutdown: %v, want EOF", err)
	}
}

// TestServeClosed: Serve returns nil when its socket is closed, and
// at once when ctx is already done.
func TestServeClosed(t *testing.T) {
	s, _ := newTestServer(t, testConfig())
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), pc) }()
	pc.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve on a closed socket: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ServeTCP(ctx, ln); err != nil {
		t.Errorf("ServeTCP with a done ctx: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener not closed: %v", err)
	}
}

// TestMetricsRegistered: a second server on the same registry fails,
// and takes nothing with it.
func TestMetricsRegistered(t *testing.T) {
	cfg := testConfig()
	s, reg := newTestServer(t, cfg)
	cfg.Registerer = reg
	if _, err := New(cfg); err == nil {
		t.Fatal("second registration succeeded")
	}
	s.m.count(result{rcode: dns.RcodeSuccess, qtype: "A"})
	if got := metrictest.Value(t, reg, "crrelay_dns_queries_total", "rcode", "NOERROR", "type", "A"); got != 1 {
		t.Errorf("first server's metrics: %v", got)
	}
}
