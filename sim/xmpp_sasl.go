package sim

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
	"sync"
)

// XMPPMechanism is the SASL mechanism a simulated XMPP client
// authenticates with (RFC 6120 6).
type XMPPMechanism string

// The mechanisms the simulator speaks. CPE agents built on libstrophe
// prefer SCRAM and fall back to PLAIN (PROTOCOL-NOTES §2).
const (
	// MechSCRAMSHA1 is SCRAM-SHA-1 (RFC 5802), without channel binding.
	MechSCRAMSHA1 XMPPMechanism = "SCRAM-SHA-1"
	// MechSCRAMSHA256 is SCRAM-SHA-256 (RFC 7677), without channel binding.
	MechSCRAMSHA256 XMPPMechanism = "SCRAM-SHA-256"
	// MechPLAIN is PLAIN (RFC 4616): the password in the clear, inside TLS.
	MechPLAIN XMPPMechanism = "PLAIN"
)

// Valid reports whether m is one of the known mechanisms.
func (m XMPPMechanism) Valid() bool {
	return m == MechSCRAMSHA1 || m == MechSCRAMSHA256 || m == MechPLAIN
}

// MarshalText implements encoding.TextMarshaler.
func (m XMPPMechanism) MarshalText() ([]byte, error) { return []byte(m), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so a mechanism can
// be a flag (flag.TextVar); unknown names are an error.
func (m *XMPPMechanism) UnmarshalText(b []byte) error {
	v := XMPPMechanism(strings.ToUpper(strings.TrimSpace(string(b))))
	if !v.Valid() {
		return fmt.Errorf("%w %q", ErrUnknownMechanism, b)
	}
	*m = v
	return nil
}

var (
	errSCRAMServerFirst = errors.New("sim: SCRAM: malformed server-first-message")
	errSCRAMNonce       = errors.New("sim: SCRAM: server nonce does not extend the client's")
	errSCRAMIterations  = errors.New("sim: SCRAM: iteration count out of range")
	errSCRAMServerFinal = errors.New("sim: SCRAM: server signature does not verify")
)

// maxSCRAMIterations bounds the work a server can make a client do.
const maxSCRAMIterations = 1 << 20

// saltCache remembers SaltedPassword per password, salt, iteration count
// and hash, as clients that log in often do (RFC 5802 5.1 allows it): a
// fleet logging its CPEs in again after a server restart would otherwise
// spend its CPU in PBKDF2 rather than load the server. The server sees
// the same exchange either way.
type saltCache struct{ m sync.Map } // string key → []byte

func (c *saltCache) salted(h func() hash.Hash, name, password string, salt []byte, iter int) ([]byte, error) {
	var key string
	if c != nil {
		key = name + "\x00" + strconv.Itoa(iter) + "\x00" + string(salt) + "\x00" + password
		if v, ok := c.m.Load(key); ok {
			return v.([]byte), nil
		}
	}
	sp, err := pbkdf2.Key(h, password, salt, iter, h().Size())
	if err != nil {
		return nil, err
	}
	if c != nil {
		c.m.Store(key, sp)
	}
	return sp, nil
}

// scramClient is one SCRAM exchange, client side (RFC 5802 3 and 5).
type scramClient struct {
	h           func() hash.Hash
	name        string
	user, pass  string
	cnonce      string
	clientFirst string // client-first-message-bare
	serverKey   []byte
	authMessage string
	cache       *saltCache
}

func newSCRAMClient(m XMPPMechanism, user, pass string, cache *saltCache) *scramClient {
	h := sha1.New
	if m == MechSCRAMSHA256 {
		h = sha256.New
	}
	var nb [18]byte
	rand.Read(nb[:])
	c := &scramClient{h: h, name: string(m), user: user, pass: pass, cache: cache,
		cnonce: base64.RawStdEncoding.EncodeToString(nb[:])}
	c.clientFirst = "n=" + scramName(user) + ",r=" + c.cnonce
	return c
}

// first returns the client-first-message: no channel binding (gs2 "n"),
// no authorization identity.
func (c *scramClient) first() []byte { return []byte("n,," + c.clientFirst) }

// final answers the server-first-message with the client-final-message.
func (c *scramClient) final(serverFirst []byte) ([]byte, error) {
	var nonce, salt64, iters string
	for f := range strings.SplitSeq(string(serverFirst), ",") {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, errSCRAMServerFirst
		}
		switch k {
		case "r":
			nonce = v
		case "s":
			salt64 = v
		case "i":
			iters = v
		case "m":
			return nil, errSCRAMServerFirst // mandatory extension: RFC 5802 5.1
		}
	}
	if !strings.HasPrefix(nonce, c.cnonce) || len(nonce) == len(c.cnonce) {
		return nil, errSCRAMNonce
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || len(salt) == 0 {
		return nil, errSCRAMServerFirst
	}
	iter, err := strconv.Atoi(iters)
	if err != nil || iter < 1 || iter > maxSCRAMIterations {
		return nil, errSCRAMIterations
	}
	salted, err := c.cache.salted(c.h, c.name, c.pass, salt, iter)
	if err != nil {
		return nil, err
	}
	clientKey := hmacSum(c.h, salted, "Client Key")
	sh := c.h()
	sh.Write(clientKey)
	storedKey := sh.Sum(nil)
	withoutProof := "c=biws,r=" + nonce // biws: base64 of the gs2 header "n,,"
	c.authMessage = c.clientFirst + "," + string(serverFirst) + "," + withoutProof
	sig := hmacSum(c.h, storedKey, c.authMessage)
	for i := range sig {
		sig[i] ^= clientKey[i]
	}
	c.serverKey = hmacSum(c.h, salted, "Server Key")
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(sig)), nil
}

// verify checks the server-final-message.
func (c *scramClient) verify(serverFinal []byte) error {
	s := string(serverFinal)
	if e, ok := strings.CutPrefix(s, "e="); ok {
		return fmt.Errorf("%w: %s", errSCRAMServerFinal, e)
	}
	v, ok := strings.CutPrefix(s, "v=")
	if !ok {
		return errSCRAMServerFinal
	}
	got, err := base64.StdEncoding.DecodeString(v)
	want := hmacSum(c.h, c.serverKey, c.authMessage)
	if err != nil || subtle.ConstantTimeCompare(got, want) != 1 {
		return errSCRAMServerFinal
	}
	return nil
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// scramName escapes a username for SCRAM's saslname (RFC 5802 5.1).
func scramName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

// plainMessage is PLAIN's one message (RFC 4616 2): no authorization
// identity.
func plainMessage(user, pass string) []byte {
	return []byte("\x00" + user + "\x00" + pass)
}
