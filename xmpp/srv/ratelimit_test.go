package srv

import (
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	const sec = int64(time.Second)
	l := newLimiter(10, 3, 1024) // 100ms per query, burst 3
	a := netip.MustParseAddr("203.0.113.1")
	now := 1000 * sec
	for i := range 3 {
		if !l.allow(a, now) {
			t.Fatalf("burst query %d refused", i)
		}
	}
	if l.allow(a, now) {
		t.Fatal("fourth query in the same instant allowed")
	}
	if l.allow(a, now+sec/10-1) {
		t.Fatal("allowed before a token came back")
	}
	if !l.allow(a, now+sec/10) {
		t.Fatal("refused once a token came back")
	}
	if !l.allow(netip.MustParseAddr("203.0.113.2"), now) {
		t.Fatal("another source refused")
	}
	// Full again after the burst time.
	for i := range 3 {
		if !l.allow(a, now+sec) {
			t.Fatalf("after a second, query %d refused", i)
		}
	}
}

// TestLimiterIPv6: one IPv6 /64 is one source; IPv4-mapped addresses
// are their IPv4 address.
func TestLimiterIPv6(t *testing.T) {
	l := newLimiter(1, 1, 1024)
	if !l.allow(netip.MustParseAddr("2001:db8:1:2::1"), 0) {
		t.Fatal("first refused")
	}
	if l.allow(netip.MustParseAddr("2001:db8:1:2:ffff::9"), 0) {
		t.Error("same /64 allowed")
	}
	if !l.allow(netip.MustParseAddr("2001:db8:1:3::1"), 0) {
		t.Error("other /64 refused")
	}
	if !l.allow(netip.MustParseAddr("192.0.2.1"), 0) || l.allow(netip.MustParseAddr("::ffff:192.0.2.1"), 0) {
		t.Error("IPv4-mapped address not limited as its IPv4 address")
	}
}

// TestLimiterTable: the table stays bounded; sources with full buckets
// are forgotten first, and their limit is not lost while active.
func TestLimiterTable(t *testing.T) {
	const size = 8
	l := newLimiter(1, 1, size)
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if !l.allow(a, int64(i)) {
			t.Fatalf("new source %d refused", i)
		}
		if len(l.tat) > size {
			t.Fatalf("%d sources remembered, at most %d", len(l.tat), size)
		}
	}
	// A source that is over its rate while few others are active stays
	// limited.
	l = newLimiter(1, 1, size)
	busy := netip.MustParseAddr("10.1.1.1")
	l.allow(busy, 0)
	for i := range 3 {
		l.allow(netip.AddrFrom4([4]byte{10, 2, 0, byte(i)}), 0)
	}
	if l.allow(busy, int64(time.Second)-1) {
		t.Error("limited source forgotten")
	}
}

func TestNoLimiter(t *testing.T) {
	if newLimiter(-1, 0, 0) != nil {
		t.Error("negative rate gives a limiter")
	}
}
