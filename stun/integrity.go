package stun

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
)

// IntegrityForm is a way of computing MESSAGE-INTEGRITY. All forms are
// HMAC-SHA1 (RFC 2104) keyed with the password's bytes (TR-069 Annex G:
// the STUNPassword; no SASLprep, which leaves ASCII passwords unchanged)
// over the message up to the MESSAGE-INTEGRITY attribute. They differ in
// the header length field hashed and in padding.
type IntegrityForm uint8

// Integrity forms. The zero value means "no MESSAGE-INTEGRITY" where an
// IntegrityForm selects what to encode.
const (
	IntegrityNone IntegrityForm = iota

	// IntegrityRFC3489 is RFC 3489 11.2.8: the hashed text is zero-padded
	// to a multiple of 64 bytes, and the header length counts the message
	// up to and including MESSAGE-INTEGRITY. TR-111 CPE agents use it.
	IntegrityRFC3489

	// IntegrityRFC5389 is RFC 5389 15.4: no padding, the header length
	// counts the message up to and including MESSAGE-INTEGRITY (so it
	// excludes a following FINGERPRINT). pion/stun uses it, and so do
	// some classic CPE agents.
	IntegrityRFC5389

	// IntegrityZeroLength is what Vovida's stun.cxx (the ancestor of
	// many CPE STUN clients) computes: no padding, and the header length
	// field still 0 when hashed, because the length is written after the
	// HMAC. Not in any RFC; accepted so those agents can authenticate.
	IntegrityZeroLength
)

// String returns "none", "rfc3489", "rfc5389" or "zero-length", fit for
// a metric label.
func (f IntegrityForm) String() string {
	switch f {
	case IntegrityNone:
		return "none"
	case IntegrityRFC3489:
		return "rfc3489"
	case IntegrityRFC5389:
		return "rfc5389"
	case IntegrityZeroLength:
		return "zero-length"
	}
	return "invalid"
}

// CheckIntegrity checks the MESSAGE-INTEGRITY of m with key, the
// short-term password, and returns the form that matched, which the
// response should use too. It returns ErrNoIntegrity when m has no
// MESSAGE-INTEGRITY and ErrIntegrity when no form matches.
//
// The forms are tried in order of likelihood: for an RFC 5389 message
// IntegrityRFC5389, IntegrityRFC3489, IntegrityZeroLength (an RFC 5389
// client may still hash the RFC 3489 way); for a classic message
// IntegrityRFC3489, IntegrityRFC5389, IntegrityZeroLength (the RFC
// prescribes the first, deployed agents send all three). A mismatch thus
// costs three HMACs. Comparisons are constant-time. CheckIntegrity does
// not allocate and does not modify m.Raw.
func (m *Message) CheckIntegrity(key []byte) (IntegrityForm, error) {
	off := m.IntegrityOffset
	if off == 0 || off+integrityAttrSize > len(m.Raw) {
		return IntegrityNone, ErrNoIntegrity
	}
	got := m.Raw[off+attrHeaderSize : off+integrityAttrSize]
	forms := [3]IntegrityForm{IntegrityRFC3489, IntegrityRFC5389, IntegrityZeroLength}
	if !m.Classic {
		forms[0], forms[1] = IntegrityRFC5389, IntegrityRFC3489
	}
	for _, f := range forms {
		mac := integrityMAC(key, m.Raw[:off], f)
		if subtle.ConstantTimeCompare(mac[:], got) == 1 {
			return f, nil
		}
	}
	return IntegrityNone, ErrIntegrity
}

// scratchSize bounds the messages integrityMAC hashes without allocating:
// MaxMessageSize rounded up to the SHA-1 block size.
const scratchSize = (MaxMessageSize + sha1.BlockSize - 1) &^ (sha1.BlockSize - 1)

// integrityMAC returns the MESSAGE-INTEGRITY value for msg, the message
// up to (not including) the MESSAGE-INTEGRITY attribute, in form f.
//
// It computes HMAC-SHA1 by hand (RFC 2104: H(K^opad || H(K^ipad || text)))
// with sha1.Sum over stack buffers, because crypto/hmac allocates a new
// state per key and here every packet has its own key. msg is copied so
// that its header length can be set as the form requires without
// touching the caller's packet.
func integrityMAC(key, msg []byte, f IntegrityForm) [sha1.Size]byte {
	length := len(msg) + integrityAttrSize - HeaderSize
	if f == IntegrityZeroLength {
		length = 0
	}
	n := len(msg)
	if f == IntegrityRFC3489 {
		// RFC 3489 11.2.8: "That text is then padded with zeroes so as
		// to be a multiple of 64 bytes."
		n = (n + 63) &^ 63
	}
	if n > scratchSize || len(msg) < HeaderSize {
		return integrityMACSlow(key, msg, n, length)
	}

	var k [sha1.BlockSize]byte
	if len(key) > sha1.BlockSize {
		s := sha1.Sum(key)
		copy(k[:], s[:])
	} else {
		copy(k[:], key)
	}
	var in [sha1.BlockSize + scratchSize]byte
	for i, c := range k {
		in[i] = c ^ 0x36
	}
	copy(in[sha1.BlockSize:], msg) // the padding, if any, stays zero
	binary.BigEndian.PutUint16(in[sha1.BlockSize+2:], uint16(length))
	inner := sha1.Sum(in[:sha1.BlockSize+n])

	var out [sha1.BlockSize + sha1.Size]byte
	for i, c := range k {
		out[i] = c ^ 0x5c
	}
	copy(out[sha1.BlockSize:], inner[:])
	return sha1.Sum(out[:])
}

// integrityMACSlow is integrityMAC for messages too large for the stack
// buffer, which only an encoder fed oversized attributes produces.
func integrityMACSlow(key, msg []byte, n, length int) [sha1.Size]byte {
	text := make([]byte, max(n, len(msg)))
	copy(text, msg)
	if len(text) >= 4 {
		binary.BigEndian.PutUint16(text[2:], uint16(length))
	}
	// hmac.New keeps its key: a copy keeps key from escaping, so that
	// callers of the fast path need not allocate theirs.
	h := hmac.New(sha1.New, bytes.Clone(key))
	h.Write(text)
	var mac [sha1.Size]byte
	h.Sum(mac[:0])
	return mac
}
