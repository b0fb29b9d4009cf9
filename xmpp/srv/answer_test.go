package srv

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Queries captured from dig 9.18 (Debian bookworm).
var (
	// dig _xmpp-client._tcp.example.net SRV: RD, EDNS 1232, COOKIE.
	digSRV = wire(`f207 0120 0001 0000 0000 0001
		0c "_xmpp-client" 04 "_tcp" 07 "example" 03 "net" 00 0021 0001
		00 0029 04d0 00000000 000c 000a 0008 5289f28e5ed065df`)
	// dig xmpp.example.net A +noedns
	digA = wire(`1b60 0120 0001 0000 0000 0000
		04 "xmpp" 07 "example" 03 "net" 00 0001 0001`)
	// dig example.net AAAA +nocookie +bufsize=4096
	digAAAA = wire(`d244 0120 0001 0000 0000 0001
		07 "example" 03 "net" 00 001c 0001
		00 0029 1000 00000000 0000`)
	// dig example.net SOA +edns=1 +nocookie +noednsneg: EDNS version 1.
	digEDNS1 = wire(`ec4a 0120 0001 0000 0000 0001
		07 "example" 03 "net" 00 0006 0001
		00 0029 04d0 00010000 0000`)
)

// answerCase is one query and what the answer must be.
type answerCase struct {
	name  string
	req   []byte
	tcp   bool
	drop  drop
	rcode int
	aa    bool
	tc    bool
	// answer lists the answer records as dig prints them (fields
	// separated by single spaces).
	answer []string
	// authority lists the types of the authority records, with the
	// owner of the first.
	authority []string
	// extra lists the additional records (without OPT).
	extra []string
	opt   bool // the response has an OPT record
}

func answerCases() []answerCase {
	withFlags := func(b []byte, set uint16) []byte {
		b = slices.Clone(b)
		binary.BigEndian.PutUint16(b[2:], binary.BigEndian.Uint16(b[2:])|set)
		return b
	}
	withOpcode := func(b []byte, op int) []byte {
		b = slices.Clone(b)
		f := binary.BigEndian.Uint16(b[2:])&^(0xF<<11) | uint16(op)<<11
		binary.BigEndian.PutUint16(b[2:], f)
		return b
	}
	soa := "example.net. SOA"
	return []answerCase{
		{
			name: "dig SRV, EDNS and cookie", req: digSRV, rcode: dns.RcodeSuccess, aa: true, opt: true,
			answer: []string{
				"_xmpp-client._tcp.example.net. 300 IN SRV 10 60 5222 xmpp.example.net.",
				"_xmpp-client._tcp.example.net. 300 IN SRV 20 0 5222 xmpp2.example.net.",
			},
			extra: []string{
				"xmpp.example.net. 300 IN A 192.0.2.10",
				"xmpp.example.net. 300 IN AAAA 2001:db8::10",
				"xmpp2.example.net. 300 IN A 192.0.2.11",
			},
		},
		{
			name: "direct TLS SRV", req: query("_xmpps-client._tcp.example.net.", dns.TypeSRV, 0), rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"_xmpps-client._tcp.example.net. 300 IN SRV 10 60 5223 xmpp.example.net."},
			extra:  []string{"xmpp.example.net. 300 IN A 192.0.2.10", "xmpp.example.net. 300 IN AAAA 2001:db8::10"},
		},
		{
			name: "dig A without EDNS", req: digA, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"xmpp.example.net. 300 IN A 192.0.2.10"},
		},
		{
			name: "dig AAAA of the domain, EDNS 4096", req: digAAAA, rcode: dns.RcodeSuccess, aa: true, opt: true,
			answer: []string{"example.net. 300 IN AAAA 2001:db8::10"},
		},
		{
			name: "A of the domain", req: query("example.net.", dns.TypeA, 0), rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"example.net. 300 IN A 192.0.2.10", "example.net. 300 IN A 192.0.2.11"},
		},
		{
			name: "case kept as asked", req: query("_XMPPS-Client._TCP.Example.NET.", dns.TypeSRV, 0), rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"_XMPPS-Client._TCP.Example.NET. 300 IN SRV 10 60 5223 xmpp.example.net."},
			extra:  []string{"xmpp.example.net. 300 IN A 192.0.2.10", "xmpp.example.net. 300 IN AAAA 2001:db8::10"},
		},
		{
			name: "NS at the apex", req: query("example.net.", dns.TypeNS, 0), rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"example.net. 300 IN NS example.net."},
			extra: []string{
				"example.net. 300 IN A 192.0.2.10", "example.net. 300 IN A 192.0.2.11",
				"example.net. 300 IN AAAA 2001:db8::10",
			},
		},
		{
			name: "SOA at the apex", req: query("example.net.", dns.TypeSOA, 0), rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"example.net. 300 IN SOA example.net. hostmaster.example.net. 1 3600 600 604800 300"},
		},
		{
			name: "ANY gets RFC 8482 HINFO", req: query("xmpp.example.net.", dns.TypeANY, 0), rcode: dns.RcodeSuccess, aa: true,
			answer: []string{`xmpp.example.net. 300 IN HINFO "RFC8482" ""`},
		},
		{
			name: "NODATA: CAA (type 257, not a meta-type)", req: query("example.net.", dns.TypeCAA, 0), rcode: dns.RcodeSuccess, aa: true,
			authority: []string{soa},
		},
		{
			name: "NODATA: ANY of an empty non-terminal", req: query("_tcp.example.net.", dns.TypeANY, 0), rcode: dns.RcodeSuccess, aa: true,
			authority: []string{soa},
		},
		{
			name: "NODATA: MX of the domain", req: query("example.net.", dns.TypeMX, 0), rcode: dns.RcodeSuccess, aa: true,
			authority: []string{soa},
		},
		{
			name: "NODATA: AAAA of an IPv4-only target", req: query("xmpp2.example.net.", dns.TypeAAAA, 0), rcode: dns.RcodeSuccess, aa: true,
			authority: []string{soa},
		},
		{
			name: "NODATA: A of the SRV name", req: query("_xmpp-client._tcp.example.net.", dns.TypeA, 0), rcode: dns.RcodeSuccess, aa: true,
			authority: []string{soa},
		},
		{
			name: "NODATA: empty non-terminal _tcp", req: query("_tcp.example.net.", dns.TypeA, 0), rcode: dns.RcodeSuccess, aa: true,
			authority: []string{soa},
		},
		{
			name: "NODATA: SOA below the apex", req: query("xmpp.example.net.", dns.TypeSOA, 0), rcode: dns.RcodeSuccess, aa: true,
			authority: []string{soa},
		},
		{
			name: "NXDOMAIN, SOA spelt as asked", req: query("nosuch.EXAMPLE.net.", dns.TypeA, 1232), rcode: dns.RcodeNameError, aa: true, opt: true,
			authority: []string{"EXAMPLE.net. SOA"},
		},
		{
			name: "NXDOMAIN below the SRV name", req: query("x._xmpp-client._tcp.example.net.", dns.TypeSRV, 0), rcode: dns.RcodeNameError, aa: true,
			authority: []string{soa},
		},
		{
			name: "NXDOMAIN for other services", req: query("_xmpp-server._tcp.example.net.", dns.TypeSRV, 0), rcode: dns.RcodeNameError, aa: true,
			authority: []string{soa},
		},
		{name: "REFUSED outside the zone", req: query("example.org.", dns.TypeA, 0), rcode: dns.RcodeRefused},
		{name: "REFUSED for a name that only ends like the zone", req: query("notexample.net.", dns.TypeA, 0), rcode: dns.RcodeRefused},
		{name: "REFUSED for the parent", req: query("net.", dns.TypeNS, 0), rcode: dns.RcodeRefused},
		{name: "REFUSED for the root", req: query(".", dns.TypeNS, 1232), rcode: dns.RcodeRefused, opt: true},
		{name: "REFUSED for an escaped dot", req: query(`a\.example.net.`, dns.TypeA, 0), rcode: dns.RcodeRefused},
		{
			name: "REFUSED for CHAOS version.bind",
			req: wire(`0001 0000 0001 0000 0000 0000
				07 "version" 04 "bind" 00 0010 0003`),
			rcode: dns.RcodeRefused,
		},
		{name: "REFUSED for AXFR", req: query("example.net.", dns.TypeAXFR, 0), tcp: true, rcode: dns.RcodeRefused},
		{name: "NOTIMP for MAILB", req: query("example.net.", dns.TypeMAILB, 0), rcode: dns.RcodeNotImplemented},
		{name: "NOTIMP for NOTIFY", req: withOpcode(digA, dns.OpcodeNotify), rcode: dns.RcodeNotImplemented},
		{name: "NOTIMP for UPDATE", req: withOpcode(digA, dns.OpcodeUpdate), rcode: dns.RcodeNotImplemented},
		{name: "BADVERS for EDNS version 1", req: digEDNS1, rcode: dns.RcodeBadVers, opt: true},
		{name: "FORMERR for no question", req: wire("0002 0000 0000 0000 0000 0000"), rcode: dns.RcodeFormatError},
		{
			name: "FORMERR for two questions",
			req: wire(`0003 0000 0002 0000 0000 0000
				07 "example" 03 "net" 00 0001 0001
				07 "example" 03 "net" 00 001c 0001`),
			rcode: dns.RcodeFormatError,
		},
		{name: "FORMERR for a cut question", req: digA[:20], rcode: dns.RcodeFormatError},
		{name: "FORMERR for a question without type", req: digA[:len(digA)-4], rcode: dns.RcodeFormatError},
		{
			name:  "FORMERR for a compression pointer in the question",
			req:   wire("0004 0000 0001 0000 0000 0000 c000 0001 0001"),
			rcode: dns.RcodeFormatError,
		},
		{
			name: "FORMERR for two OPT records",
			req: wire(`0005 0000 0001 0000 0000 0002
				07 "example" 03 "net" 00 0001 0001
				00 0029 04d0 00000000 0000
				00 0029 04d0 00000000 0000`),
			rcode: dns.RcodeFormatError,
		},
		{
			name: "FORMERR for OPT not owned by the root",
			req: wire(`0006 0000 0001 0000 0000 0001
				07 "example" 03 "net" 00 0001 0001
				01 61 00 0029 04d0 00000000 0000`),
			rcode: dns.RcodeFormatError,
		},
		{
			name: "FORMERR for a bad EDNS option length",
			req: wire(`0007 0000 0001 0000 0000 0001
				07 "example" 03 "net" 00 0001 0001
				00 0029 04d0 00000000 0004 000a 0010`),
			rcode: dns.RcodeFormatError,
		},
		{name: "FORMERR for qtype OPT", req: query("example.net.", dns.TypeOPT, 0), rcode: dns.RcodeFormatError},
		{name: "dropped: a response", req: withFlags(digA, flagQR), drop: dropResponse},
		{name: "dropped: shorter than a header", req: digA[:11], drop: dropShort},
		{name: "dropped: empty", req: nil, drop: dropShort},
	}
}

func TestAnswer(t *testing.T) {
	s, _ := newTestServer(t, testConfig())
	s.zone.soa.Serial = 1
	for _, tc := range answerCases() {
		t.Run(tc.name, func(t *testing.T) {
			resp, r := s.zone.answer(tc.req, !tc.tcp, nil)
			checkAnswer(t, tc, resp, r.drop)
			if resp != nil && r.rcode != tc.rcode {
				t.Errorf("result rcode %d, want %d", r.rcode, tc.rcode)
			}
		})
	}
}

// checkAnswer checks resp (nil if dropped, for reason drop) against tc.
func checkAnswer(t *testing.T, tc answerCase, resp []byte, d drop) {
	t.Helper()
	if tc.drop != dropNone {
		if resp != nil || d != tc.drop {
			t.Fatalf("got % x (drop %v), want drop %v", resp, d, tc.drop)
		}
		return
	}
	if resp == nil {
		t.Fatalf("no response (drop %v)", d)
	}
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("response % x: %v", resp, err)
	}
	if !m.Response || m.Id != binary.BigEndian.Uint16(tc.req) {
		t.Errorf("QR %v, id %#x, want a response to %#x", m.Response, m.Id, binary.BigEndian.Uint16(tc.req))
	}
	if m.Rcode != tc.rcode || m.Authoritative != tc.aa || m.Truncated != tc.tc || m.RecursionAvailable {
		t.Errorf("rcode %s aa %v tc %v ra %v, want %s aa %v tc %v ra false",
			rcodeLabel(m.Rcode), m.Authoritative, m.Truncated, m.RecursionAvailable, rcodeLabel(tc.rcode), tc.aa, tc.tc)
	}
	if m.RecursionDesired != (binary.BigEndian.Uint16(tc.req[2:])&flagRD != 0) {
		t.Errorf("RD %v not copied from the query", m.RecursionDesired)
	}
	switch m.Rcode {
	case dns.RcodeFormatError, dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers:
		if len(resp) > len(tc.req) {
			t.Errorf("%s response of %d bytes to a query of %d", rcodeLabel(m.Rcode), len(resp), len(tc.req))
		}
	}
	var q dns.Msg
	if q.Unpack(tc.req) == nil && len(q.Question) == 1 && m.Rcode != dns.RcodeFormatError && m.Opcode == dns.OpcodeQuery {
		if len(m.Question) != 1 || m.Question[0] != q.Question[0] {
			t.Errorf("question %v, want %v echoed", m.Question, q.Question)
		}
	}
	if got := rrStrings(m.Answer); !slices.Equal(got, tc.answer) {
		t.Errorf("answer:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.answer, "\n"))
	}
	var auth []string
	for _, rr := range m.Ns {
		auth = append(auth, rr.Header().Name+" "+dns.TypeToString[rr.Header().Rrtype])
	}
	if !slices.Equal(auth, tc.authority) {
		t.Errorf("authority %q, want %q", auth, tc.authority)
	}
	var extra []dns.RR
	var opt *dns.OPT
	for _, rr := range m.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			opt = o
			continue
		}
		extra = append(extra, rr)
	}
	if got := rrStrings(extra); !slices.Equal(got, tc.extra) {
		t.Errorf("additional:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.extra, "\n"))
	}
	if (opt != nil) != tc.opt {
		t.Errorf("OPT %v, want %v", opt, tc.opt)
	}
	if opt != nil && (opt.Version() != 0 || opt.UDPSize() != defaultMaxUDPSize) {
		t.Errorf("OPT version %d size %d, want 0 and %d", opt.Version(), opt.UDPSize(), defaultMaxUDPSize)
	}
}

// rrStrings returns records as dig prints them, fields joined by one
// space.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

func TestAnswerFlags(t *testing.T) {
	s, _ := newTestServer(t, testConfig())
	m := new(dns.Msg)
	m.SetQuestion("xmpp.example.net.", dns.TypeA)
	m.RecursionDesired = true
	m.CheckingDisabled = true
	m.SetEdns0(1232, true)
	req, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := s.zone.answer(req, true, nil)
	var r dns.Msg
	if err := r.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	// RFC 1035 4.1.1 (RD), RFC 4035 3.2.2 (CD), RFC 3225 3 (DO); no
	// recursion offered, nothing authenticated.
	if !r.RecursionDesired || !r.CheckingDisabled || r.RecursionAvailable || r.AuthenticatedData || !r.IsEdns0().Do() {
		t.Errorf("flags: %v", r.MsgHdr)
	}
}

// TestAnswerHeaderOnly checks the exact bytes of answers that carry the
// header alone.
func TestAnswerHeaderOnly(t *testing.T) {
	s, _ := newTestServer(t, testConfig())
	for _, tc := range []struct {
		name      string
		req, want []byte
	}{
		{"NOTIFY", wire("abcd 2100 0001 0000 0000 0000 00 0006 0001"), wire("abcd a104 0000 0000 0000 0000")},
		{"no question", wire("abcd 0100 0000 0000 0000 0000"), wire("abcd 8101 0000 0000 0000 0000")},
		{"garbage after the header", wire("abcd 0000 0001 0000 0000 0000 ff ff"), wire("abcd 8001 0000 0000 0000 0000")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := s.zone.answer(tc.req, true, nil)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("got % x, want % x", got, tc.want)
			}
		})
	}
}
