package sim

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"

	"github.com/crrelay/crrelay/stun"
)

// What a TR-111 CPE puts on the wire. The message layout comes from the
// shared codec; MESSAGE-INTEGRITY is computed here, with crypto/hmac, so
// that the simulator and the relay (whose codec hashes by hand) check each
// other rather than agree by construction.

// appendBindingRequest writes into buf's storage the Binding Request of a
// TR-111 agent (TR-069 Annex G) and returns it: USERNAME when configured,
// CONNECTION-REQUEST-BINDING always (the socket is the connection-request
// socket), BINDING-CHANGE when change, MESSAGE-INTEGRITY keyed by the
// STUNPassword when integrity, in the order agents send them.
//
// Classic (RFC 3489) requests pad USERNAME with spaces counted in its
// length, as agents do, and hash the 64-byte padded form. RFC 5389
// requests pad with zeros not counted, hash unpadded and end with
// FINGERPRINT.
func appendBindingRequest(buf []byte, id *stun.TransactionID, cfg *STUNCPEConfig, integrity, change bool) []byte {
	classic := !cfg.RFC5389
	b := stun.StartMessage(buf, stun.TypeBindingRequest, id)
	if cfg.STUNUsername != "" {
		if classic {
			b = stun.AppendUsername(b, cfg.STUNUsername)
		} else {
			b = stun.AppendAttrString(b, stun.AttrUsername, cfg.STUNUsername)
		}
	}
	b = stun.AppendConnectionRequestBinding(b)
	if change {
		b = stun.AppendBindingChange(b)
	}
	if integrity {
		mac := messageIntegrity([]byte(cfg.STUNPassword), b, classic)
		b = stun.AppendAttr(b, stun.AttrMessageIntegrity, mac[:])
	}
	if !classic {
		b = stun.AppendFingerprint(b)
	}
	return b
}

// messageIntegrity returns the MESSAGE-INTEGRITY value for msg, a message
// up to (not including) that attribute: HMAC-SHA1 keyed by key, over msg
// with its header length counting the 24-byte attribute to come. Classic:
// RFC 3489 11.2.8, the text zero-padded to a multiple of 64 bytes. Else
// RFC 5389 15.4, unpadded.
func messageIntegrity(key, msg []byte, classic bool) [sha1.Size]byte {
	n := len(msg)
	if classic {
		n = (n + 63) / 64 * 64
	}
	text := make([]byte, n)
	copy(text, msg)
	binary.BigEndian.PutUint16(text[2:4], uint16(len(msg)+24-stun.HeaderSize))
	h := hmac.New(sha1.New, key)
	h.Write(text)
	var mac [sha1.Size]byte
	h.Sum(mac[:0])
	return mac
}

// checkIntegrity checks the MESSAGE-INTEGRITY of a response in the form
// the CPE uses itself.
func checkIntegrity(m *stun.Message, key []byte, classic bool) bool {
	off := m.IntegrityOffset
	if off < stun.HeaderSize || off+24 > len(m.Raw) {
		return false
	}
	mac := messageIntegrity(key, m.Raw[:off], classic)
	return hmac.Equal(mac[:], m.Raw[off+4:off+24])
}
