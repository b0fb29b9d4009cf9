package stunserver

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestConfig(t *testing.T) {
	reg := newFakeRegistry()
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"defaults", Config{Registry: reg}, nil},
		{"plain STUN without registry", Config{Integrity: IntegrityOff}, nil},
		{"optional without registry", Config{}, ErrNoRegistry},
		{"required without registry", Config{Integrity: IntegrityRequired}, ErrNoRegistry},
		{"unknown policy", Config{Registry: reg, Integrity: 9}, ErrIntegrityPolicy},
		{"alternate IP and port", Config{Registry: reg, Primary: ap("192.0.2.1:3478"), Alternate: ap("192.0.2.2:3479")}, nil},
		{"alternate port only", Config{Registry: reg, Primary: ap("192.0.2.1:3478"), Alternate: ap("192.0.2.1:3479")}, nil},
		{"alternate IPv6", Config{Registry: reg, Primary: ap("[2001:db8::1]:3478"), Alternate: ap("[2001:db8::2]:3478")}, nil},
		{"alternate without primary", Config{Registry: reg, Alternate: ap("192.0.2.2:3479")}, ErrAlternate},
		{"alternate of another family", Config{Registry: reg, Primary: ap("192.0.2.1:3478"), Alternate: ap("[2001:db8::2]:3478")}, ErrAlternate},
		{"alternate wildcard", Config{Registry: reg, Primary: ap("0.0.0.0:3478"), Alternate: ap("192.0.2.2:3479")}, ErrAlternate},
		{"alternate equal to primary", Config{Registry: reg, Primary: ap("192.0.2.1:3478"), Alternate: ap("[::ffff:192.0.2.1]:3478")}, ErrAlternate},
		{"alternate port 0", Config{Registry: reg, Primary: ap("192.0.2.1:3478"), Alternate: ap("192.0.2.2:0")}, ErrAlternate},
		{"negative burst", Config{Registry: reg, RatePerSource: 10, RateBurst: -1}, ErrRateLimit},
		{"no rate limit", Config{Registry: reg, RatePerSource: -1, RateBurst: -1}, nil},
		{"batch too large", Config{Registry: reg, BatchSize: 4096}, ErrBatchSize},
		{"negative batch", Config{Registry: reg, BatchSize: -1}, ErrBatchSize},
		{"long SOFTWARE", Config{Registry: reg, Software: strings.Repeat("x", 33)}, ErrSoftware},
		{"negative delay", Config{Registry: reg, RetransmitDelay: -time.Second}, ErrRetransmit},
		{"negative grace", Config{Registry: reg, ShutdownGrace: -time.Second}, ErrRetransmit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("New = %v, want %v", err, tc.want)
			}
		})
	}

	s, err := New(Config{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.Integrity != IntegrityOptional || c.RatePerSource != 200 || c.RateBurst != 400 || c.RateTableSize != 65536 ||
		c.BatchSize != 32 || c.Retransmits != 2 || c.RetransmitDelay != 50*time.Millisecond ||
		c.ShutdownGrace != time.Second || c.Logger == nil {
		t.Errorf("defaults %+v", c)
	}
	if s, _ := New(Config{Registry: reg, Retransmits: -1}); s.cfg.Retransmits != 0 {
		t.Errorf("Retransmits -1 gave %d copies", s.cfg.Retransmits)
	}
}

func TestIntegrityPolicyText(t *testing.T) {
	for _, p := range []IntegrityPolicy{IntegrityOff, IntegrityOptional, IntegrityRequired} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var q IntegrityPolicy
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("%v: round trip gave %v, %v", p, q, err)
		}
	}
	var q IntegrityPolicy
	if err := q.UnmarshalText([]byte("sometimes")); !errors.Is(err, ErrIntegrityPolicy) {
		t.Errorf("UnmarshalText(sometimes) = %v", err)
	}
	if _, err := IntegrityPolicy(7).MarshalText(); !errors.Is(err, ErrIntegrityPolicy) {
		t.Errorf("MarshalText(7) = %v", err)
	}
}
