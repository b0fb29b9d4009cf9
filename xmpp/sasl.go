package xmpp

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/crrelay/crrelay/internal/scramcred"
)

// SASL mechanisms offered, in order of preference (RFC 6120 6.3.3: the
// receiving entity lists them; the client picks).
const (
	mechSCRAMSHA256 = "SCRAM-SHA-256"
	mechSCRAMSHA1   = "SCRAM-SHA-1"
	mechPLAIN       = "PLAIN"
)

var mechanisms = []string{mechSCRAMSHA256, mechSCRAMSHA1, mechPLAIN}

// saslFailure is a SASL failure condition (RFC 6120 6.5); "" means none.
type saslFailure string

const (
	failAborted           saslFailure = "aborted"
	failIncorrectEncoding saslFailure = "incorrect-encoding"
	failInvalidAuthzid    saslFailure = "invalid-authzid"
	failInvalidMechanism  saslFailure = "invalid-mechanism"
	failMalformedRequest  saslFailure = "malformed-request"
	failNotAuthorized     saslFailure = "not-authorized"
)

// credentialsFunc finds the credentials of a localpart as the client
// sent it.
type credentialsFunc func(localpart string) (scramcred.Credentials, kind, bool)

// scramServer is the server side of one SCRAM exchange (RFC 5802 5, RFC
// 7677) without channel binding: the broker does not offer the -PLUS
// mechanisms, so a client may send gs2 flag "n" (no channel binding) or
// "y" (it could bind but believes the server cannot), never "p".
//
// Verification needs only the stored keys: ClientProof XOR
// HMAC(StoredKey, AuthMessage) is ClientKey, whose hash must be
// StoredKey; the server's own proof is HMAC(ServerKey, AuthMessage).
type scramServer struct {
	h      func() hash.Hash
	domain string
	lookup credentialsFunc
	fake   []byte // key for the salts shown for unknown users

	gs2         string // gs2 header as received, e.g. "n,,"
	user        string // decoded username (the localpart)
	firstBare   string
	serverFirst string
	nonce       string
	keys        scramcred.Keys
	known       bool
	kind        kind
}

func newSCRAM(mech, domain string, lookup credentialsFunc, fake []byte) *scramServer {
	h := sha256.New
	if mech == mechSCRAMSHA1 {
		h = sha1.New
	}
	return &scramServer{h: h, domain: domain, lookup: lookup, fake: fake}
}

// first reads client-first-message and returns server-first-message.
func (s *scramServer) first(msg []byte) ([]byte, saslFailure) {
	if !utf8.Valid(msg) {
		return nil, failMalformedRequest
	}
	m := string(msg)
	// gs2-header = gs2-cbind-flag "," [ authzid ] ","
	flag, rest, ok := strings.Cut(m, ",")
	if !ok {
		return nil, failMalformedRequest
	}
	switch {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		// Channel binding was not offered.
		return nil, failNotAuthorized
	default:
		return nil, failMalformedRequest
	}
	authz, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, failMalformedRequest
	}
	s.gs2 = m[:len(m)-len(bare)]
	// client-first-message-bare = [reserved-mext ","] username "," nonce
	// ["," extensions]; a mandatory extension ("m=") we cannot know must
	// fail the exchange.
	fields := strings.Split(bare, ",")
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "n=") || !strings.HasPrefix(fields[1], "r=") {
		return nil, failMalformedRequest
	}
	user, ok := decodeSaslname(fields[0][2:])
	cnonce := fields[1][2:]
	if !ok || user == "" || !printableNonce(cnonce) {
		return nil, failMalformedRequest
	}
	if authz != "" {
		id, ok := decodeSaslname(strings.TrimPrefix(authz, "a="))
		if !ok || !strings.HasPrefix(authz, "a=") {
			return nil, failMalformedRequest
		}
		if !sameBareJID(id, user, s.domain) {
			return nil, failInvalidAuthzid
		}
	}
	s.user, s.firstBare = stripDomain(user, s.domain), bare

	creds, k, known := s.lookup(s.user)
	keys := creds.SHA256
	if s.h().Size() == sha1.Size {
		keys = creds.SHA1
	}
	salt, iter := creds.Salt, creds.Iterations
	if !known || len(keys.StoredKey) != s.h().Size() || len(keys.ServerKey) != s.h().Size() || iter < 1 || len(salt) == 0 {
		// RFC 5802 9 leaves it to the server to hide which users exist:
		// an unknown user gets a salt that is stable for its name, and
		// fails at the end like a wrong password.
		known = false
		salt = scramcred.HMAC(sha256.New, s.fake, s.user)[:scramcred.SaltLen]
		iter = scramcred.Iterations
	}
	s.keys, s.known, s.kind = keys, known, k

	var snonce [18]byte
	_, _ = rand.Read(snonce[:])
	s.nonce = cnonce + base64.RawURLEncoding.EncodeToString(snonce[:])
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(salt) + ",i=" + strconv.Itoa(iter)
	return []byte(s.serverFirst), ""
}

// final reads client-final-message and returns server-final-message.
func (s *scramServer) final(msg []byte) ([]byte, saslFailure) {
	m := string(msg)
	// client-final-message = client-final-message-without-proof "," proof
	i := strings.LastIndex(m, ",p=")
	if i < 0 {
		return nil, failMalformedRequest
	}
	without := m[:i]
	proof, err := base64.StdEncoding.DecodeString(m[i+3:])
	if err != nil {
		return nil, failIncorrectEncoding
	}
	fields := strings.Split(without, ",")
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "c=") || !strings.HasPrefix(fields[1], "r=") {
		return nil, failMalformedRequest
	}
	cb, err := base64.StdEncoding.DecodeString(fields[0][2:])
	if err != nil {
		return nil, failIncorrectEncoding
	}
	// Without channel binding, c= is the gs2 header alone.
	if string(cb) != s.gs2 || fields[1][2:] != s.nonce {
		return nil, failNotAuthorized
	}
	if len(proof) != s.h().Size() || !s.known {
		return nil, failNotAuthorized
	}
	auth := s.firstBare + "," + s.serverFirst + "," + without
	sig := scramcred.HMAC(s.h, s.keys.StoredKey, auth)
	for i := range sig {
		sig[i] ^= proof[i]
	}
	sum := s.h()
	sum.Write(sig)
	if subtle.ConstantTimeCompare(sum.Sum(nil), s.keys.StoredKey) != 1 {
		return nil, failNotAuthorized
	}
	v := scramcred.HMAC(s.h, s.keys.ServerKey, auth)
	return []byte("v=" + base64.StdEncoding.EncodeToString(v)), ""
}

// plain checks a SASL PLAIN message (RFC 4616): [authzid] NUL authcid NUL
// passwd. It returns the localpart.
func plain(msg []byte, domain string, lookup credentialsFunc, fake []byte) (string, kind, saslFailure) {
	parts := bytes.Split(msg, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[2]) == 0 || !utf8.Valid(msg) {
		return "", 0, failMalformedRequest
	}
	user := stripDomain(string(parts[1]), domain)
	if len(parts[0]) > 0 && !sameBareJID(string(parts[0]), user, domain) {
		return "", 0, failInvalidAuthzid
	}
	creds, k, ok := lookup(user)
	if !ok || creds.Iterations < 1 || len(creds.Salt) == 0 {
		// Spend the same work as a known user would.
		creds, _ = scramcred.DeriveWith("", scramcred.HMAC(sha256.New, fake, user)[:scramcred.SaltLen], scramcred.Iterations)
		ok = false
	}
	if !creds.VerifyPlain(string(parts[2])) || !ok {
		return "", 0, failNotAuthorized
	}
	return user, k, ""
}

// decodeSaslname undoes RFC 5802 5.1 escaping: "=2C" is ',' and "=3D"
// is '='; any other '=' is an error.
func decodeSaslname(s string) (string, bool) {
	if strings.IndexByte(s, '=') < 0 {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// printableNonce: RFC 5802 7, printable ASCII except ','.
func printableNonce(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// stripDomain accepts "user@domain" where a localpart is expected: some
// clients send their bare JID as the SASL username.
func stripDomain(user, domain string) string {
	if l, d, ok := strings.Cut(user, "@"); ok && strings.EqualFold(d, domain) {
		return l
	}
	return user
}

// sameBareJID reports whether authzid names the account being
// authenticated.
func sameBareJID(authzid, user, domain string) bool {
	a, err := parseJID(authzid)
	if err != nil || a.hasResource() {
		return false
	}
	u, err := parseJID(stripDomain(user, domain) + "@" + domain)
	return err == nil && a.key == u.key
}
