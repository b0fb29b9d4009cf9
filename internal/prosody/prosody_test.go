package prosody

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crrelay/crrelay/internal/scramcred"
)

func TestEncode(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"domain", "example.net", "example%2enet"},
		{"generated CPE", "bench-000001", "bench%2d000001"},
		{"alphanumeric", "acs", "acs"},
		{"UTF-8", "é", "%c3%a9"},
	} {
		if got := Encode(tc.in); got != tc.want {
			t.Errorf("%s: Encode(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

// An account file holds the SCRAM-SHA-1 keys crrelay's own derivation
// gives for its salt and iteration count.
func TestAccountFile(t *testing.T) {
	b, err := accountFile("pencil")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\["iteration_count"\] = (\d+);\s*\["salt"\] = "([0-9a-f]+)";\s*\["stored_key"\] = "([0-9a-f]+)";\s*\["server_key"\] = "([0-9a-f]+)";`)
	m := re.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("account file:\n%s", b)
	}
	iter, _ := strconv.Atoi(m[1])
	want, err := scramcred.DeriveWith("pencil", []byte(m[2]), iter)
	if err != nil {
		t.Fatal(err)
	}
	if iter != scramcred.Iterations || m[3] != hex.EncodeToString(want.SHA1.StoredKey) || m[4] != hex.EncodeToString(want.SHA1.ServerKey) {
		t.Errorf("account file:\n%s\nwant iterations %d, stored key %x, server key %x", b, scramcred.Iterations, want.SHA1.StoredKey, want.SHA1.ServerKey)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"no domain", Config{}, ErrNoDomain},
		{"bad log level", Config{Domain: "d.example", LogLevel: "loud"}, ErrBadLogLevel},
	} {
		if _, err := Start(context.Background(), tc.cfg); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// The tail keeps about tailBytes of the end, from a line start.
func TestTail(t *testing.T) {
	var tl tail
	for i := range 2000 {
		tl.Write([]byte("line " + strconv.Itoa(i) + "\n"))
	}
	s := tl.String()
	if len(s) > 2*tailBytes || len(s) < tailBytes || !strings.HasPrefix(s, "line ") || !strings.HasSuffix(s, "line 1999\n") {
		t.Errorf("tail of %d bytes: %.40q...", len(s), s)
	}
}

// A started Prosody listens on both ports with a certificate TLSConfig
// trusts, takes accounts, and leaves nothing behind once stopped.
func TestStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Domain: "prosody.example"})
	if errors.Is(err, ErrNotInstalled) || errors.Is(err, ErrNoUser) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Kill()
		}
	}()
	if s.PID() <= 0 || s.Domain() != "prosody.example" {
		t.Errorf("PID %d, domain %q", s.PID(), s.Domain())
	}
	d := tls.Dialer{Config: s.TLSConfig()}
	c, err := d.DialContext(ctx, "tcp", s.TLSAddr())
	if err != nil {
		t.Fatalf("direct TLS: %v\n%s", err, s.Log())
	}
	c.Close()

	if err := s.AddAccounts(ctx, []Account{{"alice", "a"}, {"bob.b", "b"}}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob%2eb"} {
		if _, err := os.Stat(filepath.Join(s.accountDir(), u+".dat")); err != nil {
			t.Error(err)
		}
	}

	s.Stop()
	stopped = true
	if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory left behind: %v", err)
	}
}
