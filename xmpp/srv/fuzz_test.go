package srv

import (
	"encoding/binary"
	"testing"

	"github.com/miekg/dns"
)

// FuzzAnswer feeds arbitrary packets to the responder, as UDP and as TCP
// queries. It must not panic, and what it answers must be a response to
// the packet: same ID, parseable, the question echoed, within the UDP
// size the query allows, and no larger than the query when it is an
// error. The corpus is in testdata/fuzz/FuzzAnswer.
func FuzzAnswer(f *testing.F) {
	for _, seed := range [][]byte{
		digSRV, digA, digAAAA, digEDNS1,
		query("_XMPP-client._tcp.Example.net.", dns.TypeSRV, 512),
		query("example.org.", dns.TypeA, 0),
		query("example.net.", dns.TypeANY, 4096),
		wire("0004 0000 0001 0000 0000 0000 c000 0001 0001"),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		f.Add(seed)
	}
	s, err := New(bigConfig(30)) // big enough to truncate
	if err != nil {
		f.Fatal(err)
	}
	z := s.zone
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, udp := range []bool{true, false} {
			resp, r := z.answer(pkt, udp, nil)
			if resp == nil {
				if r.drop != dropShort && r.drop != dropResponse {
					t.Fatalf("udp %v: dropped % x: %v", udp, pkt, r.drop)
				}
				continue
			}
			checkFuzzAnswer(t, pkt, resp, udp)
		}
	})
}

func checkFuzzAnswer(t *testing.T, pkt, resp []byte, udp bool) {
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("answer % x to % x does not parse: %v", resp, pkt, err)
	}
	if !m.Response || m.Id != binary.BigEndian.Uint16(pkt) || m.RecursionAvailable {
		t.Fatalf("answer header %v to % x", m.MsgHdr, pkt)
	}
	if m.Authoritative && m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		t.Fatalf("authoritative %s", rcodeLabel(m.Rcode))
	}
	var q dns.Msg
	parsed := q.Unpack(pkt) == nil
	if udp && len(resp) > minUDPSize {
		opt := q.IsEdns0()
		if !parsed || opt == nil || len(resp) > int(opt.UDPSize()) || len(resp) > defaultMaxUDPSize {
			t.Fatalf("UDP answer of %d bytes to % x", len(resp), pkt)
		}
	}
	switch m.Rcode {
	case dns.RcodeFormatError, dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers:
		if len(resp) > len(pkt) {
			t.Fatalf("%s answer of %d bytes to a %d-byte query % x", rcodeLabel(m.Rcode), len(resp), len(pkt), pkt)
		}
	}
	if m.Rcode != dns.RcodeFormatError && m.Opcode == dns.OpcodeQuery {
		if !parsed || len(q.Question) != 1 || len(m.Question) != 1 || m.Question[0] != q.Question[0] {
			t.Fatalf("question %v echoed as %v", q.Question, m.Question)
		}
	}
}
