package stun

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"
)

// Sizes and limits of the wire format.
const (
	// HeaderSize is the size of the STUN message header: type (2),
	// length (2) and the 16-byte transaction id (RFC 3489 11.1), whose
	// first 4 bytes are the magic cookie in RFC 5389 (RFC 5389 6).
	HeaderSize = 20

	// MagicCookie marks an RFC 5389 message (RFC 5389 6). A message
	// without it is a classic RFC 3489 message.
	MagicCookie uint32 = 0x2112A442

	// MaxMessageSize is the largest packet Decode accepts. A TR-111
	// Binding Request is about 100 bytes; 1500 (an Ethernet MTU) leaves
	// room for any legitimate client while bounding the work a forged
	// packet can cause. Read packets into buffers of at least
	// MaxMessageSize+1 bytes so that an oversized one is seen as such.
	MaxMessageSize = 1500

	// MaxAttributes is the most attributes Decode records for one
	// message; a message with more is rejected with ErrTooManyAttributes.
	// A TR-111 request carries at most 6.
	MaxAttributes = 32

	// MaxUnknown is the most attribute types an AttrTypes list holds
	// (the unknown comprehension-required attributes of a request, or
	// the content of UNKNOWN-ATTRIBUTES). Further ones are dropped and
	// AttrTypes.Truncated reports it.
	MaxUnknown = 16

	// attrHeaderSize is the size of an attribute's type and length.
	attrHeaderSize = 4
	// integrityAttrSize is the size of a MESSAGE-INTEGRITY attribute:
	// header and 20-byte HMAC-SHA1.
	integrityAttrSize = attrHeaderSize + 20
	// fingerprintAttrSize is the size of a FINGERPRINT attribute.
	fingerprintAttrSize = attrHeaderSize + 4
	// fingerprintXOR is XORed into the CRC-32 of FINGERPRINT (RFC 5389 15.5).
	fingerprintXOR uint32 = 0x5354554e
)

// ConnectionRequestBindingValue is the only valid value of the TR-111
// CONNECTION-REQUEST-BINDING attribute (TR-069 Annex G, STUN attributes): 20
// bytes, the last one a space so that the length is a multiple of 4.
const ConnectionRequestBindingValue = "dslforum.org/TR-111 "

// MessageType is the 14-bit STUN message type: a method and a class
// interleaved (RFC 5389 6; RFC 3489 11.1 lists the same values).
type MessageType uint16

// Message types this package names.
const (
	TypeBindingRequest    MessageType = 0x0001
	TypeBindingIndication MessageType = 0x0011 // RFC 5389 only
	TypeBindingSuccess    MessageType = 0x0101
	TypeBindingError      MessageType = 0x0111
	// TypeSharedSecretRequest is RFC 3489's Shared Secret Request,
	// meant for TLS; a UDP server may answer it with an error.
	TypeSharedSecretRequest MessageType = 0x0002
)

// Method is the method part of a MessageType.
type Method uint16

// Methods.
const (
	MethodBinding      Method = 0x001
	MethodSharedSecret Method = 0x002 // RFC 3489 only
)

// Class is the class part of a MessageType.
type Class uint8

// Classes (RFC 5389 6).
const (
	ClassRequest    Class = 0
	ClassIndication Class = 1
	ClassSuccess    Class = 2
	ClassError      Class = 3
)

// NewMessageType combines a method and a class. Method bits above the
// 12 the format holds are dropped.
func NewMessageType(m Method, c Class) MessageType {
	// RFC 5389 6: M11..M7 C1 M6..M4 C0 M3..M0.
	return MessageType(m&0x000F | (m&0x0070)<<1 | (m&0x0F80)<<2 |
		Method(c&1)<<4 | Method(c&2)<<7)
}

// Method returns the method of t.
func (t MessageType) Method() Method {
	return Method(t&0x000F | (t>>1)&0x0070 | (t>>2)&0x0F80)
}

// Class returns the class of t.
func (t MessageType) Class() Class {
	return Class((t>>4)&1 | (t>>7)&2)
}

// String returns a name such as "Binding Request", or the type in hex.
func (t MessageType) String() string {
	switch t {
	case TypeBindingRequest:
		return "Binding Request"
	case TypeBindingIndication:
		return "Binding Indication"
	case TypeBindingSuccess:
		return "Binding Success Response"
	case TypeBindingError:
		return "Binding Error Response"
	case TypeSharedSecretRequest:
		return "Shared Secret Request"
	}
	return "0x" + hex4(uint16(t))
}

// AttrType is a STUN attribute type.
type AttrType uint16

// Attribute types. Types below 0x8000 are comprehension-required: a
// server that does not understand one must answer 420 (RFC 5389 15; RFC
// 3489 11.2 says the same of types up to 0x7fff).
const (
	AttrMappedAddress     AttrType = 0x0001 // RFC 3489 11.2.1, RFC 5389 15.1
	AttrResponseAddress   AttrType = 0x0002 // RFC 3489 11.2.2
	AttrChangeRequest     AttrType = 0x0003 // RFC 3489 11.2.4, RFC 5780 7.2
	AttrSourceAddress     AttrType = 0x0004 // RFC 3489 11.2.5
	AttrChangedAddress    AttrType = 0x0005 // RFC 3489 11.2.3
	AttrUsername          AttrType = 0x0006 // RFC 3489 11.2.6, RFC 5389 15.3
	AttrPassword          AttrType = 0x0007 // RFC 3489 11.2.7 (Shared Secret Response)
	AttrMessageIntegrity  AttrType = 0x0008 // RFC 3489 11.2.8, RFC 5389 15.4
	AttrErrorCode         AttrType = 0x0009 // RFC 3489 11.2.9, RFC 5389 15.6
	AttrUnknownAttributes AttrType = 0x000A // RFC 3489 11.2.10, RFC 5389 15.9
	AttrReflectedFrom     AttrType = 0x000B // RFC 3489 11.2.11
	AttrXORMappedAddress  AttrType = 0x0020 // RFC 5389 15.2
	AttrSoftware          AttrType = 0x8022 // RFC 5389 15.10
	AttrFingerprint       AttrType = 0x8028 // RFC 5389 15.5
	AttrResponseOrigin    AttrType = 0x802B // RFC 5780 7.3
	AttrOtherAddress      AttrType = 0x802C // RFC 5780 7.4

	// AttrConnectionRequestBinding marks a Binding Request sent from the
	// CPE's UDP connection-request port (TR-069 Annex G, STUN attributes).
	AttrConnectionRequestBinding AttrType = 0xC001
	// AttrBindingChange tells that the CPE's binding changed since its
	// last Binding Request (TR-069 Annex G, STUN attributes).
	AttrBindingChange AttrType = 0xC002
)

// ComprehensionRequired reports whether a receiver that does not
// understand t must reject the message (RFC 5389 15).
func (t AttrType) ComprehensionRequired() bool { return t < 0x8000 }

// String returns the attribute's name, or its type in hex.
func (t AttrType) String() string {
	switch t {
	case AttrMappedAddress:
		return "MAPPED-ADDRESS"
	case AttrResponseAddress:
		return "RESPONSE-ADDRESS"
	case AttrChangeRequest:
		return "CHANGE-REQUEST"
	case AttrSourceAddress:
		return "SOURCE-ADDRESS"
	case AttrChangedAddress:
		return "CHANGED-ADDRESS"
	case AttrUsername:
		return "USERNAME"
	case AttrPassword:
		return "PASSWORD"
	case AttrMessageIntegrity:
		return "MESSAGE-INTEGRITY"
	case AttrErrorCode:
		return "ERROR-CODE"
	case AttrUnknownAttributes:
		return "UNKNOWN-ATTRIBUTES"
	case AttrReflectedFrom:
		return "REFLECTED-FROM"
	case AttrXORMappedAddress:
		return "XOR-MAPPED-ADDRESS"
	case AttrSoftware:
		return "SOFTWARE"
	case AttrFingerprint:
		return "FINGERPRINT"
	case AttrResponseOrigin:
		return "RESPONSE-ORIGIN"
	case AttrOtherAddress:
		return "OTHER-ADDRESS"
	case AttrConnectionRequestBinding:
		return "CONNECTION-REQUEST-BINDING"
	case AttrBindingChange:
		return "BINDING-CHANGE"
	}
	return "0x" + hex4(uint16(t))
}

// TransactionID is the 16 bytes after the type and length of the header.
// A classic RFC 3489 client fills all 16 at random and compares all 16 in
// the response; an RFC 5389 client puts MagicCookie in the first 4. Either
// way a response echoes all 16 bytes.
type TransactionID [16]byte

// HasCookie reports whether id starts with MagicCookie, which is what
// makes a message an RFC 5389 one.
func (id TransactionID) HasCookie() bool {
	return binary.BigEndian.Uint32(id[:4]) == MagicCookie
}

// NewTransactionID returns a random transaction id from crypto/rand: 16
// random bytes for a classic client, or MagicCookie and 12 random bytes
// for an RFC 5389 one. A random classic id that happens to start with
// the cookie (probability 2^-32) is redrawn, so that servers do not take
// the client for an RFC 5389 one.
func NewTransactionID(classic bool) TransactionID {
	var id TransactionID
	for {
		_, _ = rand.Read(id[:]) // never fails since Go 1.24
		if !classic {
			binary.BigEndian.PutUint32(id[:4], MagicCookie)
			return id
		}
		if !id.HasCookie() {
			return id
		}
	}
}

// ReasonPhrase returns the reason phrase RFC 3489 11.2.9 and RFC 5389
// 15.6 give for an error code, or "" for codes they do not list.
func ReasonPhrase(code int) string {
	switch code {
	case 300:
		return "Try Alternate"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 420:
		return "Unknown Attribute"
	case 430:
		return "Stale Credentials"
	case 431:
		return "Integrity Check Failure"
	case 432:
		return "Missing Username"
	case 433:
		return "Use TLS"
	case 438:
		return "Stale Nonce"
	case 500:
		return "Server Error"
	case 600:
		return "Global Failure"
	}
	return ""
}

func hex4(v uint16) string {
	s := strconv.FormatUint(uint64(v), 16)
	for len(s) < 4 {
		s = "0" + s
	}
	return s
}
