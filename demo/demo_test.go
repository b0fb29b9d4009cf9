package main

import (
	"errors"
	"testing"
)

func TestParseStarted(t *testing.T) {
	const prefix = `time=2026-12-05T08:53:35.141Z level=INFO msg="crrelay started" version=727ef49 api=http://127.0.0.1:34397 `
	for _, tc := range []struct {
		name, line string
		wantErr    error
	}{
		{
			name: "every listener",
			line: prefix + `stun=127.0.0.1:50682 xmpp=127.0.0.1:36875,127.0.0.1:46045 data_dir=/tmp/crrelay-demo-1/data devices=0`,
		},
		{
			// slog quotes empty values.
			name:    "no STUN server",
			line:    prefix + `stun="" xmpp=127.0.0.1:36875,127.0.0.1:46045 data_dir=/tmp/d devices=0`,
			wantErr: errStartedLog,
		},
		{
			name:    "one XMPP listener",
			line:    prefix + `stun=127.0.0.1:50682 xmpp=127.0.0.1:36875 data_dir=/tmp/d devices=0`,
			wantErr: errStartedLog,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startedRE.FindStringSubmatch(tc.line)
			if m == nil {
				t.Fatal("startedRE does not match")
			}
			a := &appliance{xmpp: "127.0.0.1:36875", xmppTLS: "127.0.0.1:46045"}
			err := a.parseStarted(logFields(m[1]))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("parseStarted: %v, want %v", err, tc.wantErr)
			}
			if err == nil && a.stun.String() != "127.0.0.1:50682" {
				t.Errorf("stun %s, want 127.0.0.1:50682", a.stun)
			}
		})
	}
}

func TestLogFieldsQuoted(t *testing.T) {
	f := logFields(`time=x level=WARN msg="no --xmpp-cert: using a \"self-signed\" certificate" err="" part=xmpp`)
	if f["level"] != "WARN" || f["msg"] != `no --xmpp-cert: using a "self-signed" certificate` || f["err"] != "" || f["part"] != "xmpp" {
		t.Errorf("logFields = %q", f)
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
