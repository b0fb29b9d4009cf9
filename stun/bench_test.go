package stun

import (
	"net/netip"
	"testing"

	pion "github.com/pion/stun/v2"
)

// The hot path of a TR-111 STUN server, one step per benchmark. All of
// them must report 0 allocs/op; TestHotPathAllocs checks that.

// benchRequests are typical requests: what TR-111 agents send after a
// 401 (classic, padded username, RFC 3489 integrity), and an RFC 5389
// client's request built by pion with integrity and fingerprint.
func benchRequests(b testing.TB) map[string][]byte {
	p, err := pion.Build(pion.TransactionID, pion.BindingRequest, pion.NewUsername("cpe-0001x"),
		pion.NewShortTermIntegrity(string(tr111MIKey)), pion.Fingerprint)
	if err != nil {
		b.Fatal(err)
	}
	return map[string][]byte{"classic-TR-111": tr111MI, "rfc5389": p.Raw}
}

func BenchmarkDecode(b *testing.B) {
	for name, pkt := range benchRequests(b) {
		b.Run(name, func(b *testing.B) {
			var m Message
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				if err := m.Decode(pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCheckIntegrity(b *testing.B) {
	for name, pkt := range benchRequests(b) {
		b.Run(name, func(b *testing.B) {
			var m Message
			if err := m.Decode(pkt); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.CheckIntegrity(tr111MIKey); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// A wrong password: every form is tried.
	b.Run("mismatch", func(b *testing.B) {
		var m Message
		if err := m.Decode(tr111MI); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.CheckIntegrity([]byte("wrong")); err != ErrIntegrity {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendSuccess(b *testing.B) {
	for name, pkt := range benchRequests(b) {
		b.Run(name, func(b *testing.B) {
			var m Message
			if err := m.Decode(pkt); err != nil {
				b.Fatal(err)
			}
			s := Success{Mapped: cpeMapped, Source: relaySource, Form: IntegrityRFC3489, Key: tr111MIKey}
			if !m.Classic {
				s.Form = IntegrityRFC5389
			}
			buf := make([]byte, MaxMessageSize)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendSuccess(buf, &m, &s)
			}
		})
	}
	b.Run("classic-no-integrity", func(b *testing.B) {
		var m Message
		if err := m.Decode(tr111Plain); err != nil {
			b.Fatal(err)
		}
		s := Success{Mapped: cpeMapped, Source: relaySource}
		buf := make([]byte, MaxMessageSize)
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendSuccess(buf, &m, &s)
		}
	})
}

func BenchmarkAppendError(b *testing.B) {
	var m Message
	if err := m.Decode(tr111Plain); err != nil {
		b.Fatal(err)
	}
	e := Error{Code: 401}
	buf := make([]byte, MaxMessageSize)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendError(buf, &m, &e)
	}
}

// BenchmarkServe is one request's worth of codec work: decode, check
// integrity, answer.
func BenchmarkServe(b *testing.B) {
	for name, pkt := range benchRequests(b) {
		b.Run(name, func(b *testing.B) {
			var m Message
			buf := make([]byte, MaxMessageSize)
			src := netip.MustParseAddrPort("203.0.113.7:51410")
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Decode(pkt); err != nil {
					b.Fatal(err)
				}
				form, err := m.CheckIntegrity(tr111MIKey)
				if err != nil {
					b.Fatal(err)
				}
				buf = AppendSuccess(buf, &m, &Success{Mapped: src, Source: relaySource, Form: form, Key: tr111MIKey})
			}
		})
	}
}

// TestHotPathAllocs holds the allocation contract the benchmarks show:
// decoding, checking integrity and encoding responses allocate nothing.
func TestHotPathAllocs(t *testing.T) {
	var m Message
	buf := make([]byte, MaxMessageSize)
	for name, pkt := range benchRequests(t) {
		allocs := testing.AllocsPerRun(100, func() {
			if err := m.Decode(pkt); err != nil {
				t.Fatal(err)
			}
			form, err := m.CheckIntegrity(tr111MIKey)
			if err != nil {
				t.Fatal(err)
			}
			buf = AppendSuccess(buf, &m, &Success{Mapped: cpeMapped, Source: relaySource, Changed: relayAlt,
				Software: "crrelay", Form: form, Key: tr111MIKey})
			buf = AppendError(buf, &m, &Error{Code: 420, Unknown: m.Unknown.Slice()})
			_, _ = m.CheckIntegrity([]byte("wrong"))
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per request, want 0", name, allocs)
		}
	}
}
