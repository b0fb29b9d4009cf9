package registry

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeyLen is the length of the secret key: AES-256.
const KeyLen = 32

// KeyFile is the name of the key file LoadOrCreateKey keeps in the data
// directory.
const KeyFile = "secret.key"

// ParseKey reads a 32-byte key given by configuration, as 64 hex digits or
// as base64 (standard or URL alphabet, padded or not). Surrounding space is
// ignored. Errors wrap ErrBadKey and never echo the input.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeyLen {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeyLen {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: want %d bytes as %d hex digits or base64", ErrBadKey, KeyLen, 2*KeyLen)
}

// LoadOrCreateKey returns the key kept in dataDir/secret.key, creating the
// file with a fresh random key on first start. The file holds the key as
// hex and must be mode 0600: a key readable by others is refused, since it
// opens every device's secrets.
func LoadOrCreateKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, KeyFile)
	k, err := readKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := createKeyFile(dataDir, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	// Read back what is on disk: another process may have won the race
	// to create it.
	return readKeyFile(path)
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o; want 0600", ErrBadKey, path, fi.Mode().Perm())
	}
	buf := make([]byte, 256)
	n, err := f.Read(buf)
	if err != nil && n == 0 {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadKey, path, err)
	}
	k, err := ParseKey(string(buf[:n]))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// createKeyFile writes a new key to a temporary file and links it into
// place, so a crash never leaves a half-written key behind and an existing
// key is never replaced.
func createKeyFile(dir, path string) error {
	k := make([]byte, KeyLen)
	rand.Read(k) // never fails (crypto/rand since Go 1.24)
	tmp, err := os.CreateTemp(dir, ".secret.key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sealer seals secrets with AES-256-GCM. Each value gets a random 96-bit
// nonce (safe for far more than the 2^32 seals NIST SP 800-38D 8.3 allows
// per key) and is bound to its device id and field name through the
// additional data, so a sealed value copied into another record, or into
// another field of the same record, fails to open.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeyLen {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d", ErrBadKey, len(key), KeyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

const adPrefix = "crrelay registry v1\x00"

// appendAD appends the additional data that binds a sealed value to where
// it belongs: the field and the device id.
func appendAD(dst []byte, field, id string) []byte {
	dst = append(dst, adPrefix...)
	dst = append(dst, field...)
	dst = append(dst, 0)
	return append(dst, id...)
}

// seal appends nonce || ciphertext || tag to dst.
func (s *sealer) seal(dst []byte, plain, field, id string) []byte {
	n := s.aead.NonceSize()
	dst = append(dst, make([]byte, n)...)
	nonce := dst[len(dst)-n:]
	rand.Read(nonce)
	return s.aead.Seal(dst, nonce, []byte(plain), appendAD(nil, field, id))
}

// open reverses seal, appending the plaintext to dst.
func (s *sealer) open(dst, sealed []byte, field, id string) ([]byte, error) {
	return s.openAD(dst, sealed, appendAD(nil, field, id))
}

// openAD is open with the additional data made by the caller, which can
// then reuse its buffer.
func (s *sealer) openAD(dst, sealed, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errShortSealed
	}
	return s.aead.Open(dst, sealed[:n], sealed[n:], ad)
}

var errShortSealed = errors.New("sealed value too short")

// keyCheck is a known plaintext sealed into the meta bucket on first start:
// opening it tells a wrong key apart from a damaged record.
const (
	metaKeyCheck = "keycheck"
	keyCheckText = "crrelay registry key check"
)
