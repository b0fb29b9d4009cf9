package srv

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkAnswer measures the responder alone on the queries a
// resolver sends for a CPE: the SRV (with its additional addresses), an
// A, and a name that does not exist.
func BenchmarkAnswer(b *testing.B) {
	s, err := New(testConfig())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		req  []byte
	}{
		{"SRV", digSRV},
		{"A", digA},
		{"SRV mixed case", query("_XMPP-Client._tcp.example.net.", dns.TypeSRV, 1232)},
		{"NXDOMAIN", query("nosuch.example.net.", dns.TypeA, 1232)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			out := make([]byte, 0, maxUDPSize)
			for b.Loop() {
				if resp, _ := s.zone.answer(bc.req, true, out); resp == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
}

// BenchmarkHandle adds the rate limiter and the metrics.
func BenchmarkHandle(b *testing.B) {
	cfg := testConfig()
	cfg.RatePerSource = 1e12
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	src := netip.MustParseAddr("203.0.113.9")
	out := make([]byte, 0, maxUDPSize)
	b.ReportAllocs()
	for b.Loop() {
		if s.handle(digSRV, src, true, out) == nil {
			b.Fatal("no answer")
		}
	}
}
