package httpcr

import (
	"context"
	"testing"
)

// BenchmarkDigestRequest measures one whole connection request against a
// loopback Digest CPE: a fresh TCP connection, the challenge round trip and
// the authenticated one (MD5, qop=auth, opaque).
func BenchmarkDigestRequest(b *testing.B) {
	cpe := &digestCPE{cpeOpts: cpeOpts{realm: "cwmp", user: "cpe", pass: "secret", qop: "auth", opaque: "o"}}
	srv := cpe.start(b)
	c := newTestClient(b, Config{})
	req := Request{URL: srv.URL + "/cr", Username: "cpe", Password: "secret"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := c.Do(ctx, req); r.Outcome != Delivered {
			b.Fatalf("outcome %s: %s", r.Outcome, r.Detail)
		}
	}
}

// BenchmarkParseChallenges measures the WWW-Authenticate parser on a
// typical CPE challenge.
func BenchmarkParseChallenges(b *testing.B) {
	const h = `Digest realm="cwmp", nonce="HMGZm9VgBgA=0d3abc33c0c3cd4a73bb814b5635f03cff04b035", algorithm=MD5, qop="auth", opaque="5ccc069c403ebaf9f0171e9517f40e41"`
	b.ReportAllocs()
	for b.Loop() {
		parseChallenges(h)
	}
}
