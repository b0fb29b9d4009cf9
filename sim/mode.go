package sim

import (
	"fmt"
	"strings"
)

// Mode is how an HTTP CPE authenticates connection requests. Its value is
// the name used on command lines and in Device listings.
type Mode string

// The authentication modes deployed CPE agents use (PROTOCOL-NOTES §3).
const (
	// ModeDigestMD5 challenges with qop="auth" and opaque, no algorithm
	// parameter (MD5 by default, RFC 7616 3.3). Most agents do this.
	ModeDigestMD5 Mode = "digest-md5"
	// ModeDigestMD5NoQop challenges without qop: the answer is the RFC 2069
	// response H(HA1:nonce:HA2), and an answer carrying qop, nc or cnonce is
	// rejected, as the agents that do this reject it.
	ModeDigestMD5NoQop Mode = "digest-md5-noqop"
	// ModeDigestMD5Sess is algorithm=MD5-sess with qop="auth" (RFC 2617 3.2.2.2).
	ModeDigestMD5Sess Mode = "digest-md5-sess"
	// ModeDigestSHA256 is algorithm=SHA-256 with qop="auth" (RFC 7616).
	ModeDigestSHA256 Mode = "digest-sha256"
	// ModeDigestSHA256Sess is algorithm=SHA-256-sess with qop="auth" (RFC 7616).
	ModeDigestSHA256Sess Mode = "digest-sha256-sess"
	// ModeBasic challenges with Basic only.
	ModeBasic Mode = "basic"
	// ModeNone accepts every connection request without authentication.
	ModeNone Mode = "none"
)

// Modes lists every mode, in a stable order.
func Modes() []Mode {
	return []Mode{
		ModeDigestMD5, ModeDigestMD5NoQop, ModeDigestMD5Sess,
		ModeDigestSHA256, ModeDigestSHA256Sess, ModeBasic, ModeNone,
	}
}

// Valid reports whether m is one of the known modes.
func (m Mode) Valid() bool {
	_, ok := modeAlgorithm(m)
	return ok || m == ModeBasic || m == ModeNone
}

// Digest reports whether m is one of the Digest modes.
func (m Mode) Digest() bool {
	_, ok := modeAlgorithm(m)
	return ok
}

// String returns the mode's name.
func (m Mode) String() string { return string(m) }

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so a Mode can be a
// flag (flag.TextVar) or a config field; unknown names are an error.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseMode returns the mode named s.
func ParseMode(s string) (Mode, error) {
	m := Mode(strings.TrimSpace(s))
	if !m.Valid() {
		return "", fmt.Errorf("%w %q", ErrUnknownMode, s)
	}
	return m, nil
}

// ParseModes parses a comma-separated list of mode names, as a fleet
// command line takes them ("digest-md5,basic").
func ParseModes(s string) ([]Mode, error) {
	var ms []Mode
	for name := range strings.SplitSeq(s, ",") {
		m, err := ParseMode(name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}
