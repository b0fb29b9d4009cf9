package stunserver

import (
	"net/netip"
	"testing"
	"time"
)

// step is a packet from ip at a time in milliseconds, and whether the
// limiter must let it through.
type step struct {
	ip    string
	at    int64
	allow bool
}

func TestLimiter(t *testing.T) {
	ms := int64(time.Millisecond)
	a := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"burst, then one per interval", []step{
			{"192.0.2.1", 0, true}, {"192.0.2.1", 0, true}, {"192.0.2.1", 0, true},
			{"192.0.2.1", 0, false}, {"192.0.2.1", 50, false},
			{"192.0.2.1", 100, true}, {"192.0.2.1", 100, false},
			{"192.0.2.2", 100, true}, // another source has its own bucket
			{"192.0.2.1", 10_000, true}, {"192.0.2.1", 10_000, true}, {"192.0.2.1", 10_000, true},
			{"192.0.2.1", 10_000, false}, // refilled to the burst, not beyond
		}},
		{"IPv4-mapped is IPv4", []step{
			{"192.0.2.1", 0, true}, {"::ffff:192.0.2.1", 0, true}, {"192.0.2.1", 0, true},
			{"::ffff:192.0.2.1", 0, false},
		}},
		{"IPv6 by /64", []step{
			{"2001:db8::1", 0, true}, {"2001:db8::2", 0, true}, {"2001:db8::ffff:3", 0, true},
			{"2001:db8::4", 0, false},
			{"2001:db8:0:1::1", 0, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(10, 3, 1024)
			for i, st := range tc.steps {
				if got := l.allow(netip.MustParseAddr(st.ip), st.at*ms); got != st.allow {
					t.Errorf("step %d: %s at %dms allowed %v, want %v", i, st.ip, st.at, got, st.allow)
				}
			}
		})
	}

	t.Run("bounded memory keeps the limited sources", func(t *testing.T) {
		l := newLimiter(10, 3, 4) // one set of four
		if len(l.sets) != 1 {
			t.Fatalf("%d sets", len(l.sets))
		}
		for range 3 {
			l.allow(a, 0)
		}
		for i := range 100 { // many one-off sources
			l.allow(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 0)
		}
		if l.allow(a, 0) {
			t.Error("the exhausted source was forgotten")
		}
	})

	if newLimiter(-1, 1, 1) != nil || newLimiter(0, 1, 1) != nil {
		t.Error("a limiter without a rate")
	}
}
