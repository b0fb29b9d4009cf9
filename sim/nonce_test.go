package sim

import (
	"strings"
	"testing"
	"time"
)

func TestNonceMinter(t *testing.T) {
	m := newNonceMinter()
	at := time.Unix(1_700_000_000, 123)
	n := m.mint("cpe-1", at, 7)
	if len(n) != nonceHexLen || n == m.mint("cpe-1", at, 7) {
		t.Fatalf("nonce %q: wrong length or not fresh", n)
	}
	_, issued, conn, ok := m.open("cpe-1", n)
	if !ok || !issued.Equal(at) || conn != 7 {
		t.Errorf("open = %v, %d, %v", issued, conn, ok)
	}
	tampered := []struct{ name, cpe, nonce string }{
		{"other CPE", "cpe-2", n},
		{"other minter", "cpe-1", newNonceMinter().mint("cpe-1", at, 7)},
		{"flipped time", "cpe-1", "f" + n[1:]},
		{"flipped MAC", "cpe-1", n[:len(n)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", n[len(n)-1])+1)%16])},
		{"short", "cpe-1", n[:len(n)-2]},
		{"not hex", "cpe-1", strings.Repeat("x", nonceHexLen)},
	}
	for _, tc := range tampered {
		if _, _, _, ok := m.open(tc.cpe, tc.nonce); ok {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestRateWindow(t *testing.T) {
	t0 := time.Unix(0, 0)
	w := rateWindow{limit: 2, per: time.Second}
	steps := []struct {
		at   time.Duration
		want bool
	}{
		{0, true},
		{100 * time.Millisecond, true},
		{999 * time.Millisecond, false}, // two in the last second already
		{time.Second, true},             // the first has left the window
		{1050 * time.Millisecond, false},
		{1100 * time.Millisecond, true},
	}
	for _, s := range steps {
		if got := w.take(t0.Add(s.at)); got != s.want {
			t.Errorf("take at %v = %v, want %v", s.at, got, s.want)
		}
	}
	if off := (rateWindow{}); !off.take(t0) || off.full(t0) {
		t.Error("zero rateWindow limits")
	}
}

func TestNonceUsesPrunes(t *testing.T) {
	var u nonceUses
	t0 := time.Unix(0, 0)
	for i := range 1000 {
		var id nonceID
		id[0], id[1] = byte(i), byte(i>>8)
		if !u.record(id, 1, t0.Add(time.Second), t0) {
			t.Fatal("fresh nonce refused")
		}
	}
	// All of those have expired; the table sheds them by the time it has
	// doubled again.
	now := t0.Add(2 * time.Second)
	var last nonceID
	for i := range 100 {
		last = nonceID{2, byte(i), byte(i >> 8)}
		u.record(last, 1, now.Add(time.Second), now)
	}
	if len(u.m) > 200 {
		t.Errorf("%d nonces remembered, most of them expired", len(u.m))
	}
	if u.record(last, 1, now.Add(time.Second), now) {
		t.Error("replayed nc accepted")
	}
}
