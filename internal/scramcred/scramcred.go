// Package scramcred derives, encodes and checks salted SCRAM credentials
// (RFC 5802 3, RFC 7677) so the XMPP broker can verify SASL SCRAM-SHA-1,
// SCRAM-SHA-256 and PLAIN without ever storing a password in plain text.
//
// A stored credential holds, per hash, StoredKey = H(HMAC(SaltedPassword,
// "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key"), with
// one salt and iteration count shared by both hashes. PLAIN is verified by
// deriving StoredKey from the offered password and comparing in constant
// time.
package scramcred

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Iterations is the PBKDF2 iteration count of new credentials: RFC 7677 4
// recommends at least 4096. It costs about a millisecond per derivation,
// paid at registration and at PLAIN logins, never per stanza.
const Iterations = 4096

// SaltLen is the length of a new random salt in bytes.
const SaltLen = 16

// prefix marks the encoded form and its version.
const prefix = "scram1$"

var (
	// ErrScramcredFormat is returned by Parse for a string that is not an
	// encoded credential.
	ErrScramcredFormat = errors.New("scramcred: not an encoded SCRAM credential")
)

// Keys are one hash's derived keys.
type Keys struct {
	StoredKey []byte
	ServerKey []byte
}

// Credentials are the salted SCRAM keys of one password.
type Credentials struct {
	Iterations int
	Salt       []byte
	SHA1       Keys
	SHA256     Keys
}

// Derive salts password with a fresh random salt and derives both hashes'
// keys. The password should already be SASLprep-normalised (RFC 4013); CPE
// passwords are ASCII in practice, for which SASLprep is the identity.
func Derive(password string) (Credentials, error) {
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return Credentials{}, fmt.Errorf("scramcred: salt: %w", err)
	}
	return DeriveWith(password, salt, Iterations)
}

// DeriveWith derives the credentials of password with the given salt and
// iteration count (tests, and PLAIN verification against stored salts).
func DeriveWith(password string, salt []byte, iter int) (Credentials, error) {
	if iter < 1 || len(salt) == 0 {
		return Credentials{}, ErrScramcredFormat
	}
	c := Credentials{Iterations: iter, Salt: append([]byte(nil), salt...)}
	var err error
	if c.SHA1, err = keys(sha1.New, password, salt, iter); err != nil {
		return Credentials{}, err
	}
	if c.SHA256, err = keys(sha256.New, password, salt, iter); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// keys computes RFC 5802 3: SaltedPassword = Hi(password, salt, i),
// ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey),
// ServerKey = HMAC(SaltedPassword, "Server Key").
func keys(h func() hash.Hash, password string, salt []byte, iter int) (Keys, error) {
	salted, err := pbkdf2.Key(h, password, salt, iter, h().Size())
	if err != nil {
		return Keys{}, fmt.Errorf("scramcred: pbkdf2: %w", err)
	}
	ck := HMAC(h, salted, "Client Key")
	sum := h()
	sum.Write(ck)
	return Keys{StoredKey: sum.Sum(nil), ServerKey: HMAC(h, salted, "Server Key")}, nil
}

// HMAC is HMAC(key, msg) with hash h, the primitive of RFC 5802.
func HMAC(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// VerifyPlain reports whether password is the one c was derived from
// (SASL PLAIN). The comparison is constant-time.
func (c Credentials) VerifyPlain(password string) bool {
	k, err := keys(sha256.New, password, c.Salt, c.Iterations)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(k.StoredKey, c.SHA256.StoredKey) == 1
}

// String encodes c as "scram1$<iter>$<salt>$<sha1 stored>$<sha1 server>$
// <sha256 stored>$<sha256 server>", each field standard base64.
func (c Credentials) String() string {
	b := base64.StdEncoding.EncodeToString
	return prefix + strconv.Itoa(c.Iterations) + "$" + b(c.Salt) + "$" +
		b(c.SHA1.StoredKey) + "$" + b(c.SHA1.ServerKey) + "$" +
		b(c.SHA256.StoredKey) + "$" + b(c.SHA256.ServerKey)
}

// IsEncoded reports whether s looks like the output of String.
func IsEncoded(s string) bool { return strings.HasPrefix(s, prefix) }

// Parse decodes the output of String.
func Parse(s string) (Credentials, error) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return Credentials{}, ErrScramcredFormat
	}
	f := strings.Split(rest, "$")
	if len(f) != 6 {
		return Credentials{}, ErrScramcredFormat
	}
	iter, err := strconv.Atoi(f[0])
	if err != nil || iter < 1 {
		return Credentials{}, ErrScramcredFormat
	}
	var raw [5][]byte
	for i := range raw {
		if raw[i], err = base64.StdEncoding.DecodeString(f[i+1]); err != nil || len(raw[i]) == 0 {
			return Credentials{}, ErrScramcredFormat
		}
	}
	c := Credentials{Iterations: iter, Salt: raw[0],
		SHA1: Keys{raw[1], raw[2]}, SHA256: Keys{raw[3], raw[4]}}
	if len(c.SHA1.StoredKey) != sha1.Size || len(c.SHA1.ServerKey) != sha1.Size ||
		len(c.SHA256.StoredKey) != sha256.Size || len(c.SHA256.ServerKey) != sha256.Size {
		return Credentials{}, ErrScramcredFormat
	}
	return c, nil
}
