package stun

import "errors"

// Errors returned by this package. Decode returns them unwrapped (no
// allocation on the hot path), so callers can count drops by comparing
// with == or errors.Is. ParseUDPConnectionRequest wraps them with detail.
var (
	// ErrTruncated: the packet is shorter than the 20-byte header, or
	// than the length its header announces.
	ErrTruncated = errors.New("stun: message truncated")
	// ErrTooLarge: the packet is longer than MaxMessageSize.
	ErrTooLarge = errors.New("stun: message too large")
	// ErrNotSTUN: the two most significant bits of the packet are not
	// zero (RFC 5389 6), as for an HTTP datagram ("GET ...").
	ErrNotSTUN = errors.New("stun: not a STUN message")
	// ErrBadLength: the header length field is not a multiple of 4, or
	// the packet carries bytes after the announced length.
	ErrBadLength = errors.New("stun: bad message length")
	// ErrAttrOverflow: an attribute's TLV (with its padding) runs past
	// the end of the message.
	ErrAttrOverflow = errors.New("stun: attribute exceeds message")
	// ErrBadAttribute: an attribute this package understands has a
	// malformed value (wrong length, unknown address family, ...).
	ErrBadAttribute = errors.New("stun: malformed attribute")
	// ErrTooManyAttributes: the message has more than MaxAttributes
	// attributes.
	ErrTooManyAttributes = errors.New("stun: too many attributes")
	// ErrFingerprint: FINGERPRINT does not match the message, or is not
	// the last attribute (RFC 5389 15.5).
	ErrFingerprint = errors.New("stun: bad FINGERPRINT")
	// ErrNoIntegrity: CheckIntegrity was called on a message without
	// MESSAGE-INTEGRITY.
	ErrNoIntegrity = errors.New("stun: no MESSAGE-INTEGRITY")
	// ErrIntegrity: MESSAGE-INTEGRITY matches the key in none of the
	// forms tried.
	ErrIntegrity = errors.New("stun: MESSAGE-INTEGRITY mismatch")

	// ErrUDPConnReqMalformed: a datagram is not a well-formed TR-069
	// Annex G UDP Connection Request (the error says which part).
	ErrUDPConnReqMalformed = errors.New("stun: malformed UDP connection request")
	// ErrUDPConnReqSignature: the sig of a UDP Connection Request does
	// not match the password.
	ErrUDPConnReqSignature = errors.New("stun: UDP connection request signature mismatch")
)
