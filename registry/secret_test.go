package registry

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	key := make([]byte, KeyLen)
	for i := range key {
		key[i] = byte(i * 7)
	}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"hex", hex.EncodeToString(key), true},
		{"upper-case hex with newline", strings.ToUpper(hex.EncodeToString(key)) + "\n", true},
		{"base64", base64.StdEncoding.EncodeToString(key), true},
		{"raw base64", base64.RawStdEncoding.EncodeToString(key), true},
		{"base64url", base64.URLEncoding.EncodeToString(key), true},
		{"empty", "", false},
		{"short hex", hex.EncodeToString(key[:31]), false},
		{"long hex", hex.EncodeToString(append(key, 0)), false},
		{"base64 of 16 bytes", base64.StdEncoding.EncodeToString(key[:16]), false},
		{"garbage", "not a key at all, not at all!!!!", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey(tt.in)
			if !tt.ok {
				if !errors.Is(err, ErrBadKey) {
					t.Errorf("ParseKey = %v, want ErrBadKey", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k, key) {
				t.Errorf("ParseKey = %x, want %x", k, key)
			}
		})
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != KeyLen {
		t.Fatalf("key of %d bytes", len(k1))
	}
	path := filepath.Join(dir, KeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %#o, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(dir)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("second LoadOrCreateKey = %x, %v; want the same key", k2, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d files, want only %s", len(entries), KeyFile)
	}

	t.Run("readable by others", func(t *testing.T) {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(path, 0o600)
		if _, err := LoadOrCreateKey(dir); !errors.Is(err, ErrBadKey) {
			t.Errorf("LoadOrCreateKey = %v, want ErrBadKey", err)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("0123"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateKey(dir); !errors.Is(err, ErrBadKey) {
			t.Errorf("LoadOrCreateKey = %v, want ErrBadKey", err)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if _, err := LoadOrCreateKey(filepath.Join(dir, "nope")); err == nil {
			t.Error("LoadOrCreateKey made a key in a missing directory")
		}
	})
}

func TestSealBinding(t *testing.T) {
	s, err := newSealer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	a := s.seal(nil, "hunter2", "password", "dev-1")
	b := s.seal(nil, "hunter2", "password", "dev-1")
	if bytes.Equal(a, b) {
		t.Error("two seals of one value are equal: nonce reused")
	}
	if pt, err := s.open(nil, a, "password", "dev-1"); err != nil || string(pt) != "hunter2" {
		t.Fatalf("open = %q, %v", pt, err)
	}
	for _, tt := range []struct{ field, id string }{{"password", "dev-2"}, {"stun_password", "dev-1"}} {
		if _, err := s.open(nil, a, tt.field, tt.id); err == nil {
			t.Errorf("sealed value opened as %s of %s", tt.field, tt.id)
		}
	}
	if _, err := s.open(nil, a[:10], "password", "dev-1"); err == nil {
		t.Error("truncated value opened")
	}
}
