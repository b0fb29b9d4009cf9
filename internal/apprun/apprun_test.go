package apprun

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

func TestStartedLine(t *testing.T) {
	line := `time=2026-12-05T08:53:35.141Z level=INFO msg="crrelay started" version=727ef49 api=http://127.0.0.1:34397 stun="" xmpp=127.0.0.1:36875,127.0.0.1:46045 data_dir=/tmp/d devices=0`
	m := startedRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatal("startedRE does not match")
	}
	f := LogFields(m[1])
	if f["api"] != "http://127.0.0.1:34397" || split(f["stun"]) != nil || !slices.Equal(split(f["xmpp"]), []string{"127.0.0.1:36875", "127.0.0.1:46045"}) {
		t.Errorf("fields %q", f)
	}
}

func TestLogFieldsQuoted(t *testing.T) {
	f := LogFields(`time=x level=WARN msg="no --xmpp-cert: using a \"self-signed\" certificate" err="" part=xmpp`)
	if f["level"] != "WARN" || f["msg"] != `no --xmpp-cert: using a "self-signed" certificate` || f["err"] != "" || f["part"] != "xmpp" {
		t.Errorf("LogFields = %q", f)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(context.Background(), Config{Binary: filepath.Join(t.TempDir(), "nope")}); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("missing binary: %v", err)
	}
	// A binary that exits at once: /bin/false.
	if _, err := Start(context.Background(), Config{Binary: "/bin/false"}); !errors.Is(err, ErrExited) {
		t.Errorf("exiting binary: %v", err)
	}
}
