package main

import (
	"errors"
	"testing"

	"github.com/crrelay/crrelay/internal/apprun"
)

func TestCheckListeners(t *testing.T) {
	for _, tc := range []struct {
		name       string
		stun, xmpp []string
		ok         bool
	}{
		{"every listener", []string{"127.0.0.1:50682"}, []string{"127.0.0.1:36875", "127.0.0.1:46045"}, true},
		{"no STUN server", nil, []string{"127.0.0.1:36875", "127.0.0.1:46045"}, false},
		{"one XMPP listener", []string{"127.0.0.1:50682"}, []string{"127.0.0.1:36875"}, false},
		{"another XMPP port", []string{"127.0.0.1:50682"}, []string{"127.0.0.1:36875", "127.0.0.1:1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &appliance{xmpp: "127.0.0.1:36875", xmppTLS: "127.0.0.1:46045"}
			err := a.checkListeners(tc.stun, tc.xmpp)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, apprun.ErrStartedLine)) {
				t.Fatalf("checkListeners: %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && a.stun.String() != "127.0.0.1:50682" {
				t.Errorf("stun %s, want 127.0.0.1:50682", a.stun)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	sorted := make([]float64, 100)
	for i := range sorted {
		sorted[i] = float64(i + 1)
	}
	for _, tc := range []struct{ p, want float64 }{{0.50, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(sorted, tc.p); got != tc.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile([]float64{7}, 0.99); got != 7 {
		t.Errorf("percentile([7], 0.99) = %v", got)
	}
}

func TestFormatCounts(t *testing.T) {
	got := formatCounts(map[string]int{"timeout": 2, "sent": 300, "delivered": 700, "weird": 1, "error": 0})
	if want := "delivered 700, sent 300, timeout 2, weird 1"; got != want {
		t.Errorf("formatCounts = %q, want %q", got, want)
	}
	if got := formatCounts(nil); got != "-" {
		t.Errorf("formatCounts(nil) = %q", got)
	}
}
