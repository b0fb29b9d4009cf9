package stun

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

// Attribute is one attribute as found on the wire.
type Attribute struct {
	Type AttrType
	// Value aliases the decoded packet; it excludes the padding.
	Value []byte
	// Offset is the offset of the attribute's type field in the packet.
	Offset int
}

// AttrTypes is a short list of attribute types stored inline, so that
// filling it does not allocate. It holds each type once, in the order
// first seen, and at most MaxUnknown of them.
type AttrTypes struct {
	list      [MaxUnknown]AttrType
	n         uint8
	truncated bool
}

// Len returns the number of types in l.
func (l *AttrTypes) Len() int { return int(l.n) }

// Slice returns the types in l. It aliases l: copy it to keep it past
// the next Decode.
func (l *AttrTypes) Slice() []AttrType { return l.list[:l.n] }

// Contains reports whether t is in l.
func (l *AttrTypes) Contains(t AttrType) bool {
	for _, u := range l.list[:l.n] {
		if u == t {
			return true
		}
	}
	return false
}

// Truncated reports whether types were dropped because l was full.
func (l *AttrTypes) Truncated() bool { return l.truncated }

func (l *AttrTypes) add(t AttrType) {
	if l.Contains(t) {
		return
	}
	if int(l.n) == len(l.list) {
		l.truncated = true
		return
	}
	l.list[l.n] = t
	l.n++
}

// Message is a decoded STUN message. It is meant to be declared once per
// receiving goroutine and reused for every packet: Decode resets it, and
// fills it without allocating. Byte-slice fields and Raw alias the packet
// passed to Decode and are valid only as long as that buffer is not
// reused. A Message must not be used by several goroutines at once.
//
// Attributes absent from the message leave their field at the zero
// value: an invalid netip.AddrPort, a nil slice, false, 0. When an
// attribute appears more than once, the first occurrence counts (RFC
// 5389 15). Attributes after MESSAGE-INTEGRITY, other than FINGERPRINT,
// are ignored (RFC 5389 15.4) but listed by Attributes.
type Message struct {
	// Raw is the whole packet, header included.
	Raw []byte
	// Type is the message type (method and class).
	Type MessageType
	// Classic is true for an RFC 3489 message, which has no magic
	// cookie: its 16-byte TransactionID is all random. RFC 5389
	// messages have Classic false. The response must echo all 16 bytes
	// of TransactionID either way.
	Classic bool
	// TransactionID is bytes 4 to 20 of the header, the magic cookie
	// included for RFC 5389 messages.
	TransactionID TransactionID

	// Address attributes. The XOR-encoded one is decoded with the
	// header's bytes 4 to 20 (the cookie, then the id for IPv6),
	// whatever the message's kind (RFC 5389 15.2).
	MappedAddress    netip.AddrPort // MAPPED-ADDRESS
	XORMappedAddress netip.AddrPort // XOR-MAPPED-ADDRESS
	ResponseAddress  netip.AddrPort // RESPONSE-ADDRESS
	SourceAddress    netip.AddrPort // SOURCE-ADDRESS
	ChangedAddress   netip.AddrPort // CHANGED-ADDRESS
	ResponseOrigin   netip.AddrPort // RESPONSE-ORIGIN (RFC 5780)
	OtherAddress     netip.AddrPort // OTHER-ADDRESS (RFC 5780)

	// HasChangeRequest reports a CHANGE-REQUEST attribute; ChangeIP and
	// ChangePort are its flags (RFC 3489 11.2.4).
	HasChangeRequest bool
	ChangeIP         bool
	ChangePort       bool

	// Username is the USERNAME value with trailing spaces and NUL bytes
	// removed: TR-111 CPE agents pad the STUNUsername with spaces to a
	// multiple of 4 (RFC 3489 11.2.6 wants that length), some with NULs.
	// It is nil when the message has no USERNAME; see HasUsername.
	Username []byte
	// RawUsername is the USERNAME value as sent, padding included.
	RawUsername []byte

	// ErrorCode is the code of ERROR-CODE (class*100 + number), 0 when
	// absent; ErrorReason is its reason phrase as sent.
	ErrorCode   int
	ErrorReason []byte
	// UnknownAttributes is the content of an UNKNOWN-ATTRIBUTES
	// attribute (in a 420 response).
	UnknownAttributes AttrTypes
	// Software is the SOFTWARE value.
	Software []byte

	// IntegrityOffset is the offset in Raw of the MESSAGE-INTEGRITY
	// attribute (its type field), 0 when there is none. See
	// CheckIntegrity.
	IntegrityOffset int
	// Fingerprint reports a FINGERPRINT attribute. Decode has checked
	// it: a message with a wrong one is rejected.
	Fingerprint bool

	// ConnectionRequestBinding reports a TR-111 CONNECTION-REQUEST-BINDING
	// attribute. ConnectionRequestBindingValid reports that its value is
	// exactly ConnectionRequestBindingValue; ConnectionRequestBindingRaw
	// is the value as sent, for logging agents that get it wrong.
	ConnectionRequestBinding      bool
	ConnectionRequestBindingValid bool
	ConnectionRequestBindingRaw   []byte
	// BindingChange reports a TR-111 BINDING-CHANGE attribute (its value,
	// empty by the spec, is not checked).
	BindingChange bool

	// Unknown lists the comprehension-required attributes (type below
	// 0x8000) that this package does not understand, in order of first
	// appearance. A server answers a request with any of them with 420
	// and UNKNOWN-ATTRIBUTES (RFC 3489 8.2, RFC 5389 7.3.1). The TR-111
	// types 0xC001 and 0xC002 are comprehension-optional by their value.
	Unknown AttrTypes

	attrs  [MaxAttributes]Attribute
	nattrs int
}

// HasUsername reports whether the message has a USERNAME attribute (its
// trimmed value may be empty).
func (m *Message) HasUsername() bool { return m.RawUsername != nil }

// HasIntegrity reports whether the message has a MESSAGE-INTEGRITY
// attribute.
func (m *Message) HasIntegrity() bool { return m.IntegrityOffset != 0 }

// Attributes returns all attributes of the message in wire order,
// including the ones Decode ignores. It aliases m.
func (m *Message) Attributes() []Attribute { return m.attrs[:m.nattrs] }

// Reset clears m. Decode does it itself.
func (m *Message) Reset() { *m = Message{} }

// Decode parses a STUN message, classic RFC 3489 or RFC 5389, from b,
// which must hold exactly one packet. On success m describes the message
// and aliases b; on error m is reset and the error is one of this
// package's sentinels, unwrapped. Decode does not allocate.
//
// Checks (RFC 3489 11.1, RFC 5389 6 and 15): at least a header, at most
// MaxMessageSize bytes, the two top bits zero, a length that is a multiple
// of 4 and matches the packet exactly, attribute TLVs (with padding to a
// multiple of 4) within bounds, at most MaxAttributes attributes, known
// attributes well-formed, FINGERPRINT last and correct. Decode does not
// check MESSAGE-INTEGRITY, which needs a key: see CheckIntegrity.
func (m *Message) Decode(b []byte) error {
	*m = Message{}
	if err := m.decode(b); err != nil {
		*m = Message{}
		return err
	}
	return nil
}

func (m *Message) decode(b []byte) error {
	if len(b) < HeaderSize {
		return ErrTruncated
	}
	if len(b) > MaxMessageSize {
		return ErrTooLarge
	}
	// RFC 5389 6: "The most significant 2 bits of every STUN message MUST
	// be zeroes." RFC 3489 types fit in 14 bits too.
	if b[0]&0xC0 != 0 {
		return ErrNotSTUN
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n%4 != 0 {
		return ErrBadLength
	}
	switch {
	case HeaderSize+n > len(b):
		return ErrTruncated
	case HeaderSize+n < len(b):
		return ErrBadLength
	}
	m.Raw = b
	m.Type = MessageType(binary.BigEndian.Uint16(b[0:2]))
	copy(m.TransactionID[:], b[4:HeaderSize])
	m.Classic = !m.TransactionID.HasCookie()

	fingerprint := false
	for off := HeaderSize; off < len(b); {
		if fingerprint {
			// RFC 5389 15.5: FINGERPRINT MUST be the last attribute.
			return ErrFingerprint
		}
		if len(b)-off < attrHeaderSize {
			return ErrAttrOverflow
		}
		t := AttrType(binary.BigEndian.Uint16(b[off:]))
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		start := off + attrHeaderSize
		// RFC 5389 15: values are padded to a multiple of 4 and the
		// length excludes the padding. RFC 3489 values are multiples of
		// 4 already, so one rule reads both.
		next := start + (l+3)&^3
		if next > len(b) {
			return ErrAttrOverflow
		}
		if m.nattrs == MaxAttributes {
			return ErrTooManyAttributes
		}
		v := b[start : start+l : start+l]
		m.attrs[m.nattrs] = Attribute{Type: t, Value: v, Offset: off}
		m.nattrs++

		switch {
		case t == AttrFingerprint:
			if l != 4 {
				return ErrBadAttribute
			}
			// RFC 5389 15.5: CRC-32 of the message up to the attribute,
			// the header length already counting it, XOR 0x5354554e.
			if crc32.ChecksumIEEE(b[:off])^fingerprintXOR != binary.BigEndian.Uint32(v) {
				return ErrFingerprint
			}
			m.Fingerprint = true
			fingerprint = true
		case m.IntegrityOffset != 0:
			// RFC 5389 15.4: ignore what follows MESSAGE-INTEGRITY,
			// except FINGERPRINT.
		case t == AttrMessageIntegrity:
			if l != 20 {
				return ErrBadAttribute
			}
			m.IntegrityOffset = off
		default:
			if err := m.decodeAttr(t, v); err != nil {
				return err
			}
		}
		off = next
	}
	return nil
}

func (m *Message) decodeAttr(t AttrType, v []byte) error {
	switch t {
	case AttrMappedAddress:
		return m.decodeAddr(&m.MappedAddress, v, false)
	case AttrXORMappedAddress:
		return m.decodeAddr(&m.XORMappedAddress, v, true)
	case AttrResponseAddress:
		return m.decodeAddr(&m.ResponseAddress, v, false)
	case AttrSourceAddress:
		return m.decodeAddr(&m.SourceAddress, v, false)
	case AttrChangedAddress:
		return m.decodeAddr(&m.ChangedAddress, v, false)
	case AttrResponseOrigin:
		return m.decodeAddr(&m.ResponseOrigin, v, false)
	case AttrOtherAddress:
		return m.decodeAddr(&m.OtherAddress, v, false)
	case AttrChangeRequest:
		// RFC 3489 11.2.4: 32 bits, flag A (change IP) 0x4, flag B
		// (change port) 0x2.
		if len(v) != 4 {
			return ErrBadAttribute
		}
		if !m.HasChangeRequest {
			f := binary.BigEndian.Uint32(v)
			m.HasChangeRequest = true
			m.ChangeIP = f&0x4 != 0
			m.ChangePort = f&0x2 != 0
		}
	case AttrUsername:
		if m.RawUsername == nil {
			m.RawUsername = v
			u := v
			for len(u) > 0 && (u[len(u)-1] == ' ' || u[len(u)-1] == 0) {
				u = u[:len(u)-1]
			}
			m.Username = u
		}
	case AttrErrorCode:
		// RFC 3489 11.2.9, RFC 5389 15.6: 21 reserved bits, class (3
		// bits), number (8 bits, below 100), reason phrase.
		if len(v) < 4 || v[3] > 99 {
			return ErrBadAttribute
		}
		if m.ErrorCode == 0 {
			m.ErrorCode = int(v[2]&0x7)*100 + int(v[3])
			m.ErrorReason = v[4:]
		}
	case AttrUnknownAttributes:
		// RFC 5389 15.9: a list of 16-bit types.
		if len(v)%2 != 0 {
			return ErrBadAttribute
		}
		if m.UnknownAttributes.Len() == 0 {
			for i := 0; i < len(v); i += 2 {
				m.UnknownAttributes.add(AttrType(binary.BigEndian.Uint16(v[i:])))
			}
		}
	case AttrSoftware:
		if m.Software == nil {
			m.Software = v
		}
	case AttrConnectionRequestBinding:
		if !m.ConnectionRequestBinding {
			m.ConnectionRequestBinding = true
			m.ConnectionRequestBindingValid = string(v) == ConnectionRequestBindingValue
			m.ConnectionRequestBindingRaw = v
		}
	case AttrBindingChange:
		m.BindingChange = true
	case AttrPassword, AttrReflectedFrom:
		// RFC 3489 attributes with no meaning in a Binding Request:
		// understood, and ignored (RFC 3489 11.1).
	default:
		if t.ComprehensionRequired() {
			m.Unknown.add(t)
		}
	}
	return nil
}

// decodeAddr decodes a MAPPED-ADDRESS-style value (RFC 3489 11.2.1): a
// reserved byte, the family (1 IPv4, 2 IPv6), the port and the address.
// With xor, port and address are XORed with the header's bytes 4 to 20
// (RFC 5389 15.2).
func (m *Message) decodeAddr(dst *netip.AddrPort, v []byte, xor bool) error {
	if len(v) < 4 {
		return ErrBadAttribute
	}
	port := binary.BigEndian.Uint16(v[2:4])
	var key []byte
	if xor {
		key = m.Raw[4:HeaderSize]
		port ^= binary.BigEndian.Uint16(key)
	}
	var ip netip.Addr
	switch v[1] {
	case 1:
		if len(v) != 8 {
			return ErrBadAttribute
		}
		var a [4]byte
		copy(a[:], v[4:8])
		if xor {
			for i := range a {
				a[i] ^= key[i]
			}
		}
		ip = netip.AddrFrom4(a)
	case 2:
		if len(v) != 20 {
			return ErrBadAttribute
		}
		var a [16]byte
		copy(a[:], v[4:20])
		if xor {
			for i := range a {
				a[i] ^= key[i]
			}
		}
		ip = netip.AddrFrom16(a)
	default:
		return ErrBadAttribute
	}
	if !dst.IsValid() {
		*dst = netip.AddrPortFrom(ip, port)
	}
	return nil
}
