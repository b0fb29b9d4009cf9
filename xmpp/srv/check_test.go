package srv

import (
	"bytes"
	"context"
	"errors"
	"github.com/crrelay/crrelay/internal/metrictest"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestCheck(t *testing.T) {
	r := start(t, testConfig())
	v4Only := []netip.AddrPort{
		netip.AddrPortFrom(addrXMPP, 5222), netip.AddrPortFrom(addrXMPP, 5223),
		netip.AddrPortFrom(addrXMPP2, 5222),
	}
	for _, tc := range []struct {
		name     string
		domain   string
		expect   []netip.AddrPort
		verdict  Verdict
		records  int
		problems []error
	}{
		{"pointing at us", "example.net", ourAddrs, VerdictOK, 3, nil},
		{"case and trailing dot", "EXAMPLE.net.", ourAddrs, VerdictOK, 3, nil},
		{"pointing elsewhere", "example.net", []netip.AddrPort{netip.AddrPortFrom(addrOther, 5222)},
			VerdictElsewhere, 3, []error{ErrElsewhere, ErrElsewhere, ErrElsewhere}},
		{"one target elsewhere", "example.net", ourAddrs[:4], VerdictPartial, 3, []error{ErrElsewhere}},
		{"IPv6 address elsewhere", "example.net", v4Only, VerdictPartial, 3, []error{ErrElsewhere, ErrElsewhere}},
		{"port mismatch", "example.net", []netip.AddrPort{
			netip.AddrPortFrom(addrXMPP, 5269), netip.AddrPortFrom(addrXMPP6, 5269), netip.AddrPortFrom(addrXMPP2, 5222),
		}, VerdictPartial, 3, []error{ErrPort, ErrPort}},
		// _xmpp-client._tcp.xmpp.example.net does not exist; the
		// fallback is xmpp.example.net's A and AAAA.
		{"no SRV, fallback to us", "xmpp.example.net", ourAddrs, VerdictFallback, 1, []error{ErrNoSRV}},
		{"no SRV, fallback elsewhere", "xmpp.example.net", []netip.AddrPort{netip.AddrPortFrom(addrXMPP, 5223)},
			VerdictMissing, 1, []error{ErrNoSRV, ErrPort, ErrElsewhere}},
		{"NXDOMAIN", "nosuch.example.net", ourAddrs, VerdictMissing, 1, []error{ErrNoSRV, ErrNXDomain}},
		{"REFUSED outside the zone", "example.org", ourAddrs, VerdictFailed, 0, []error{ErrRefused}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Check(context.Background(), r.udp, tc.domain, tc.expect)
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, rep, tc.verdict, tc.records, tc.problems)
		})
	}
}

// checkReport checks the verdict, the number of records and, in order,
// the kinds of problems.
func checkReport(t *testing.T, rep Report, verdict Verdict, records int, problems []error) {
	t.Helper()
	var out bytes.Buffer
	rep.Write(&out)
	if rep.Verdict != verdict || len(rep.Records) != records || len(rep.Problems) != len(problems) {
		t.Fatalf("verdict %v, %d records, %d problems; want %v, %d, %d\n%s",
			rep.Verdict, len(rep.Records), len(rep.Problems), verdict, records, len(problems), out.String())
	}
	for i, p := range problems {
		if !errors.Is(rep.Problems[i], p) {
			t.Errorf("problem %d: %v, want %v\n%s", i, rep.Problems[i], p, out.String())
		}
	}
}

func TestCheckRecords(t *testing.T) {
	r := start(t, testConfig())
	rep, err := Check(context.Background(), r.udp, "example.net", ourAddrs[:4])
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Service: ServiceClient, Target: "xmpp.example.net", Port: 5222, Priority: 10, Weight: 60, Ours: true,
			Addrs: []Address{{addrXMPP, true}, {addrXMPP6, true}}},
		{Service: ServiceClient, Target: "xmpp2.example.net", Port: 5222, Priority: 20,
			Addrs: []Address{{addrXMPP2, false}}},
		{Service: ServiceDirectTLS, Target: "xmpp.example.net", Port: 5223, Priority: 10, Weight: 60, Ours: true,
			Addrs: []Address{{addrXMPP, true}, {addrXMPP6, true}}},
	}
	if !slices.EqualFunc(rep.Records, want, func(a, b Record) bool {
		return a.Service == b.Service && a.Target == b.Target && a.Port == b.Port && a.Priority == b.Priority &&
			a.Weight == b.Weight && a.Ours == b.Ours && slices.Equal(a.Addrs, b.Addrs)
	}) {
		t.Errorf("records:\n%+v\nwant:\n%+v", rep.Records, want)
	}
	if rep.Domain != "example.net" || rep.Resolver != r.udp || rep.Verdict != VerdictPartial {
		t.Errorf("report %+v", rep)
	}
}

// TestCheckTruncated: an SRV answer too large for UDP is fetched again
// over TCP.
func TestCheckTruncated(t *testing.T) {
	cfg := bigConfig(40)
	r := start(t, cfg)
	var expect []netip.AddrPort
	for _, tg := range cfg.Targets {
		for _, a := range tg.Addrs {
			expect = append(expect, netip.AddrPortFrom(a, 5222))
		}
	}
	rep, err := Check(context.Background(), r.udp, "example.net", expect)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, VerdictOK, 40, nil)
	if metrictest.Value(t, r.reg, "crrelay_dns_truncated_total") != 1 {
		t.Error("the UDP answer was not truncated: the test tests nothing")
	}
}

// fakeResolver answers from a table, as a recursive resolver would, for
// what the real server never says (CNAME, SERVFAIL, ".").
func fakeResolver(t *testing.T, answers map[string]func(q dns.Question) *dns.Msg) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		q := req.Question[0]
		m := new(dns.Msg)
		if f := answers[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]]; f != nil {
			m = f(q)
		}
		rc := m.Rcode
		m.SetReply(req)
		m.Rcode = rc
		m.RecursionAvailable = true
		_ = w.WriteMsg(m)
	})}
	done := make(chan error, 1)
	go func() { done <- s.ActivateAndServe() }()
	t.Cleanup(func() {
		_ = s.Shutdown()
		<-done
	})
	return pc.LocalAddr().String()
}

func rrs(s ...string) *dns.Msg {
	m := new(dns.Msg)
	for _, r := range s {
		rr, err := dns.NewRR(r)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	return m
}

func rcode(c int) func(dns.Question) *dns.Msg {
	return func(dns.Question) *dns.Msg { return &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: c}} }
}

func TestCheckResolverAnswers(t *testing.T) {
	ans := func(s ...string) func(dns.Question) *dns.Msg {
		return func(dns.Question) *dns.Msg { return rrs(s...) }
	}
	addr := fakeResolver(t, map[string]func(dns.Question) *dns.Msg{
		"_xmpp-client._tcp.cname.test. SRV": ans("_xmpp-client._tcp.cname.test. 60 IN SRV 0 0 5222 alias.cname.test."),
		"alias.cname.test. A": ans("alias.cname.test. 60 IN CNAME real.cname.test.",
			"real.cname.test. 60 IN A 192.0.2.10"),
		"alias.cname.test. AAAA": ans("alias.cname.test. 60 IN CNAME real.cname.test."),

		"_xmpp-client._tcp.servfail.test. SRV": rcode(dns.RcodeServerFailure),

		"_xmpp-client._tcp.dot.test. SRV": ans("_xmpp-client._tcp.dot.test. 60 IN SRV 0 0 0 ."),

		"_xmpp-client._tcp.tfail.test. SRV": ans("_xmpp-client._tcp.tfail.test. 60 IN SRV 0 0 5222 t.tfail.test."),
		"t.tfail.test. A":                   rcode(dns.RcodeServerFailure),
		"t.tfail.test. AAAA":                rcode(dns.RcodeServerFailure),

		"_xmpp-client._tcp.noaddr.test. SRV": ans("_xmpp-client._tcp.noaddr.test. 60 IN SRV 0 0 5222 t.noaddr.test."),

		"_xmpp-client._tcp.alias.test. SRV": ans("_xmpp-client._tcp.alias.test. 60 IN CNAME srv.elsewhere.test.",
			"srv.elsewhere.test. 60 IN SRV 0 0 5222 xmpp.alias.test."),
		"xmpp.alias.test. A": ans("xmpp.alias.test. 60 IN A 192.0.2.10"),

		"nodata.test. A": ans("nodata.test. 60 IN A 192.0.2.10"),

		"_xmpp-client._tcp.odd.test. SRV": rcode(dns.RcodeNotImplemented),
	})
	expect := []netip.AddrPort{netip.AddrPortFrom(addrXMPP, 5222)}
	for _, tc := range []struct {
		domain   string
		verdict  Verdict
		records  int
		problems []error
	}{
		// RFC 2782 forbids it, but the resolver follows the alias:
		// reported, yet the record leads here.
		{"cname.test", VerdictOK, 1, []error{ErrCNAME}},
		{"servfail.test", VerdictFailed, 0, []error{ErrServFail}},
		{"dot.test", VerdictMissing, 1, []error{ErrServiceDisabled}},
		{"tfail.test", VerdictElsewhere, 1, []error{ErrServFail, ErrServFail, ErrNoAddress}},
		{"noaddr.test", VerdictElsewhere, 1, []error{ErrNoAddress}},
		// An alias as the SRV owner is allowed.
		{"alias.test", VerdictOK, 1, nil},
		// NODATA for the SRV, then the fallback.
		{"nodata.test", VerdictFallback, 1, []error{ErrNoSRV}},
		{"odd.test", VerdictFailed, 0, []error{ErrRcode}},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			rep, err := Check(context.Background(), addr, tc.domain, expect)
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, rep, tc.verdict, tc.records, tc.problems)
		})
	}
}

// TestCheckUnreachable: a closed port, and a resolver that never
// answers, give VerdictFailed within the context's time.
func TestCheckUnreachable(t *testing.T) {
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.LocalAddr().String()
	closed.Close()
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // never read
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	for _, tc := range []struct {
		name, addr string
		want       error
	}{
		{"port closed", closedAddr, ErrUnreachable},
		{"no answer", silent.LocalAddr().String(), ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			began := time.Now()
			rep, err := Check(ctx, tc.addr, "example.net", ourAddrs)
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, rep, VerdictFailed, 0, []error{tc.want})
			if d := time.Since(began); d > 2*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestCheckArgs(t *testing.T) {
	if _, err := Check(context.Background(), "127.0.0.1:53", "bad domain", nil); !errors.Is(err, ErrDomain) {
		t.Errorf("bad domain: %v", err)
	}
	for _, bad := range []string{"", "[::1", "dns.example.net:53", "127.0.0.1:99999"} {
		if _, err := Check(context.Background(), bad, "example.net", nil); !errors.Is(err, ErrResolver) {
			t.Errorf("resolver %q: %v", bad, err)
		}
	}
	for in, want := range map[string]string{
		"127.0.0.1:5353": "127.0.0.1:5353",
		"127.0.0.1":      "127.0.0.1:53",
		"::1":            "[::1]:53",
		"[::1]":          "[::1]:53",
		"[::1]:53":       "[::1]:53",
	} {
		if got, err := resolverAddr(in); got != want || err != nil {
			t.Errorf("resolverAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestReportWrite(t *testing.T) {
	r := start(t, testConfig())
	rep, err := Check(context.Background(), r.udp, "example.net", ourAddrs[:4])
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.Write(&b)
	out := b.String()
	for _, want := range []string{
		"XMPP broker discovery for example.net, asked " + r.udp,
		"This appliance: 192.0.2.10:5222, 192.0.2.10:5223, [2001:db8::10]:5222, [2001:db8::10]:5223",
		"SERVICE             PRIORITY  WEIGHT  PORT  TARGET             ADDRESSES                               HERE",
		"_xmpp-client._tcp   10        60      5222  xmpp.example.net   192.0.2.10 (here), 2001:db8::10 (here)  yes",
		"_xmpp-client._tcp   20        0       5222  xmpp2.example.net  192.0.2.11                              no",
		"_xmpps-client._tcp  10        60      5223  xmpp.example.net   192.0.2.10 (here), 2001:db8::10 (here)  yes",
		"Verdict: PARTIAL: some SRV records point elsewhere",
		"  - points elsewhere: _xmpp-client._tcp target xmpp2.example.net (priority 20) leads to 192.0.2.11, not this appliance",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("\n%s", out)
}

func TestSystemResolver(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		conf, want string
		err        error
	}{
		{"# comment\nsearch example.net\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n", "127.0.0.53:53", nil},
		{"nameserver ::1\n", "[::1]:53", nil},
		{"search example.net\n", "", ErrNoResolver},
	} {
		p := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(p, []byte(tc.conf), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := systemResolver(p)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%q: %q, %v; want %q, %v", tc.conf, got, err, tc.want, tc.err)
		}
	}
	if _, err := systemResolver(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestExpandWildcards(t *testing.T) {
	ap := netip.MustParseAddrPort
	local := []netip.Addr{netip.MustParseAddr("127.0.0.1"), addrXMPP, addrXMPP6}
	got := ExpandWildcards([]netip.AddrPort{
		ap("0.0.0.0:5222"), ap("[::]:5223"), ap("192.0.2.99:5222"), ap("[::ffff:192.0.2.10]:5222"),
	}, local)
	want := []netip.AddrPort{
		ap("127.0.0.1:5222"), ap("192.0.2.10:5222"),
		ap("127.0.0.1:5223"), ap("192.0.2.10:5223"), ap("[2001:db8::10]:5223"),
		ap("192.0.2.99:5222"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestLocalAddrs(t *testing.T) {
	as, err := LocalAddrs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(as, netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("no 127.0.0.1 in %v", as)
	}
}
