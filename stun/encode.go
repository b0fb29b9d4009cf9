package stun

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

// Low-level encoding.
//
// A message under construction is a byte slice whose first HeaderSize
// bytes are the header: start it with StartMessage and grow it with the
// Append functions, each of which appends one attribute, pads it to a
// multiple of 4 and updates the header length. They append to the
// caller's buffer and allocate only if it is too small; keep one buffer
// of MaxMessageSize bytes per sending goroutine and they never allocate.
//
// Except for AppendAttr and AppendAttrString, which write the value they
// are given, every value written here has a length that is a multiple of
// 4: USERNAME, SOFTWARE and the ERROR-CODE reason phrase are padded with
// spaces counted in the length, an odd UNKNOWN-ATTRIBUTES list repeats
// its last entry. RFC 3489 11.2 requires it, and some CPE parsers step
// over attributes by their length, ignoring RFC 5389 padding.

// StartMessage writes a header of type t with transaction id id at the
// start of buf's storage (buf's contents are discarded) and returns the
// message, HeaderSize bytes long with length 0.
func StartMessage(buf []byte, t MessageType, id *TransactionID) []byte {
	b := append(buf[:0], byte(t>>8)&0x3F, byte(t), 0, 0)
	return append(b, id[:]...)
}

// setLength writes the header length field for msg as it now is.
func setLength(msg []byte) {
	if len(msg) >= HeaderSize {
		binary.BigEndian.PutUint16(msg[2:4], uint16(len(msg)-HeaderSize))
	}
}

// maxValue is the longest attribute value the encoder writes: the length
// field holds 16 bits and the value is padded to a multiple of 4.
const maxValue = 0xFFFC

// beginAttr appends the type and a zero length of an attribute.
func beginAttr(msg []byte, t AttrType) []byte {
	return append(msg, byte(t>>8), byte(t), 0, 0)
}

// endAttr sets the length of the attribute whose type is at msg[start],
// pads the value with pad to a multiple of 4 and updates the header.
// With pad ' ' the padding counts in the length (RFC 3489 style); with 0
// it does not (RFC 5389 15).
func endAttr(msg []byte, start int, pad byte) []byte {
	for pad != 0 && (len(msg)-start)%4 != 0 {
		msg = append(msg, pad)
	}
	binary.BigEndian.PutUint16(msg[start+2:], uint16(len(msg)-start-attrHeaderSize))
	for (len(msg)-start)%4 != 0 {
		msg = append(msg, 0)
	}
	setLength(msg)
	return msg
}

func appendValue[T ~string | ~[]byte](msg []byte, t AttrType, v T, pad byte) []byte {
	if len(v) > maxValue {
		v = v[:maxValue]
	}
	start := len(msg)
	msg = beginAttr(msg, t)
	msg = append(msg, v...)
	return endAttr(msg, start, pad)
}

// AppendAttr appends an attribute of type t with value v, zero-padded
// (RFC 5389 15). A value longer than 65532 bytes is cut.
func AppendAttr(msg []byte, t AttrType, v []byte) []byte {
	return appendValue(msg, t, v, 0)
}

// AppendAttrString is AppendAttr with a string value.
func AppendAttrString(msg []byte, t AttrType, v string) []byte {
	return appendValue(msg, t, v, 0)
}

// AppendUsername appends USERNAME padded with spaces to a multiple of 4,
// the padding counted in the length, as TR-111 CPE agents send it (RFC
// 3489 11.2.6 requires a multiple of 4). For an RFC 5389 style USERNAME
// use AppendAttrString.
func AppendUsername(msg []byte, username string) []byte {
	return appendValue(msg, AttrUsername, username, ' ')
}

// AppendSoftware appends SOFTWARE padded with spaces to a multiple of 4.
func AppendSoftware(msg []byte, software string) []byte {
	return appendValue(msg, AttrSoftware, software, ' ')
}

// AppendConnectionRequestBinding appends the TR-111
// CONNECTION-REQUEST-BINDING attribute with its fixed value.
func AppendConnectionRequestBinding(msg []byte) []byte {
	return appendValue(msg, AttrConnectionRequestBinding, ConnectionRequestBindingValue, 0)
}

// AppendBindingChange appends the TR-111 BINDING-CHANGE attribute (empty).
func AppendBindingChange(msg []byte) []byte {
	return appendValue(msg, AttrBindingChange, "", 0)
}

// AppendChangeRequest appends CHANGE-REQUEST with its change-IP and
// change-port flags (RFC 3489 11.2.4).
func AppendChangeRequest(msg []byte, changeIP, changePort bool) []byte {
	var f byte
	if changeIP {
		f |= 0x4
	}
	if changePort {
		f |= 0x2
	}
	v := [4]byte{0, 0, 0, f}
	return appendValue(msg, AttrChangeRequest, v[:], 0)
}

// AppendAddress appends an address attribute of type t (MAPPED-ADDRESS,
// SOURCE-ADDRESS, ...; RFC 3489 11.2.1). An IPv4-mapped IPv6 address is
// written as IPv4. An invalid a appends nothing.
func AppendAddress(msg []byte, t AttrType, a netip.AddrPort) []byte {
	return appendAddr(msg, t, a, false)
}

// AppendXORAddress appends an XOR-encoded address attribute of type t
// (XOR-MAPPED-ADDRESS, RFC 5389 15.2), XORed with the header's bytes 4
// to 20 (the cookie, then the transaction id for IPv6). An IPv4-mapped
// IPv6 address is written as IPv4. An invalid a appends nothing.
func AppendXORAddress(msg []byte, t AttrType, a netip.AddrPort) []byte {
	return appendAddr(msg, t, a, true)
}

func appendAddr(msg []byte, t AttrType, a netip.AddrPort, xor bool) []byte {
	if !a.IsValid() || len(msg) < HeaderSize {
		return msg
	}
	ip := a.Addr().Unmap()
	var v [20]byte
	binary.BigEndian.PutUint16(v[2:], a.Port())
	n := 8
	if ip.Is4() {
		v[1] = 1
		a4 := ip.As4()
		copy(v[4:], a4[:])
	} else {
		v[1] = 2
		a16 := ip.As16()
		copy(v[4:], a16[:])
		n = 20
	}
	if xor {
		// RFC 5389 15.2: the port XOR the cookie's top 16 bits, the
		// address XOR the cookie (and the transaction id for IPv6).
		key := msg[4:HeaderSize]
		v[2] ^= key[0]
		v[3] ^= key[1]
		for i := 4; i < n; i++ {
			v[i] ^= key[i-4]
		}
	}
	return appendValue(msg, t, v[:n], 0)
}

// AppendErrorCode appends ERROR-CODE for code (300 to 699) with reason,
// or ReasonPhrase(code) when reason is empty. The reason is cut to 128
// bytes and padded with spaces to a multiple of 4 (RFC 3489 11.2.9).
func AppendErrorCode(msg []byte, code int, reason string) []byte {
	if reason == "" {
		reason = ReasonPhrase(code)
	}
	if len(reason) > 128 {
		reason = reason[:128]
	}
	start := len(msg)
	msg = beginAttr(msg, AttrErrorCode)
	msg = append(msg, 0, 0, byte(code/100)&0x7, byte(code%100))
	msg = append(msg, reason...)
	return endAttr(msg, start, ' ')
}

// AppendUnknownAttributes appends UNKNOWN-ATTRIBUTES listing types. An
// odd count repeats the last type, as RFC 3489 11.2.10 requires.
func AppendUnknownAttributes(msg []byte, types []AttrType) []byte {
	if len(types) > maxValue/2-1 {
		types = types[:maxValue/2-1]
	}
	start := len(msg)
	msg = beginAttr(msg, AttrUnknownAttributes)
	for _, t := range types {
		msg = append(msg, byte(t>>8), byte(t))
	}
	if len(types)%2 == 1 {
		t := types[len(types)-1]
		msg = append(msg, byte(t>>8), byte(t))
	}
	return endAttr(msg, start, 0)
}

// AppendIntegrity appends MESSAGE-INTEGRITY computed with key in form f
// (see IntegrityForm); IntegrityNone appends nothing. It must come after
// every attribute it protects, and only FINGERPRINT may follow it.
func AppendIntegrity(msg []byte, key []byte, f IntegrityForm) []byte {
	if f == IntegrityNone || f > IntegrityZeroLength || len(msg) < HeaderSize {
		return msg
	}
	start := len(msg)
	mac := integrityMAC(key, msg, f)
	msg = beginAttr(msg, AttrMessageIntegrity)
	msg = append(msg, mac[:]...)
	return endAttr(msg, start, 0)
}

// AppendFingerprint appends FINGERPRINT (RFC 5389 15.5), which must be
// the last attribute.
func AppendFingerprint(msg []byte) []byte {
	if len(msg) < HeaderSize {
		return msg
	}
	start := len(msg)
	msg = beginAttr(msg, AttrFingerprint)
	msg = append(msg, 0, 0, 0, 0)
	msg = endAttr(msg, start, 0) // the CRC covers the final length
	crc := crc32.ChecksumIEEE(msg[:start]) ^ fingerprintXOR
	binary.BigEndian.PutUint32(msg[start+attrHeaderSize:], crc)
	return msg
}

// High-level encoding.

// Success describes a success response. Zero fields are left out.
type Success struct {
	// Mapped is the request's source transport address: MAPPED-ADDRESS,
	// plus XOR-MAPPED-ADDRESS for an RFC 5389 request.
	Mapped netip.AddrPort
	// Source is the address the response is sent from: SOURCE-ADDRESS
	// for a classic request, RESPONSE-ORIGIN for an RFC 5389 one.
	Source netip.AddrPort
	// Changed is the alternate address CHANGE-REQUEST would answer from:
	// CHANGED-ADDRESS for a classic request, OTHER-ADDRESS for an RFC
	// 5389 one. Leave it zero when no alternate address is configured.
	Changed netip.AddrPort
	// Software, when set, is sent as SOFTWARE.
	Software string
	// Form and Key add MESSAGE-INTEGRITY; pass the form CheckIntegrity
	// returned for the request and the key it matched. IntegrityNone
	// (the zero value) adds none.
	Form IntegrityForm
	Key  []byte
}

// AppendSuccess writes into buf's storage (discarding its contents) the
// success response to req, a request, and returns it: same method,
// success class, the request's 16-byte transaction id echoed.
//
// For a classic request it carries MAPPED-ADDRESS, SOURCE-ADDRESS,
// CHANGED-ADDRESS (RFC 3489 11.2), then SOFTWARE and MESSAGE-INTEGRITY.
// For an RFC 5389 request it carries XOR-MAPPED-ADDRESS and
// MAPPED-ADDRESS (RFC 5389 12.2), RESPONSE-ORIGIN and OTHER-ADDRESS
// rather than SOURCE-ADDRESS and CHANGED-ADDRESS (RFC 5780 7: 0x0004 and
// 0x0005 are comprehension-required types an RFC 5389 client does not
// know and may reject the response for), then SOFTWARE,
// MESSAGE-INTEGRITY and FINGERPRINT.
func AppendSuccess(buf []byte, req *Message, s *Success) []byte {
	b := StartMessage(buf, NewMessageType(req.Type.Method(), ClassSuccess), &req.TransactionID)
	if req.Classic {
		b = AppendAddress(b, AttrMappedAddress, s.Mapped)
		b = AppendAddress(b, AttrSourceAddress, s.Source)
		b = AppendAddress(b, AttrChangedAddress, s.Changed)
	} else {
		b = AppendXORAddress(b, AttrXORMappedAddress, s.Mapped)
		b = AppendAddress(b, AttrMappedAddress, s.Mapped)
		b = AppendAddress(b, AttrResponseOrigin, s.Source)
		b = AppendAddress(b, AttrOtherAddress, s.Changed)
	}
	return finish(b, req.Classic, s.Software, s.Form, s.Key)
}

// Error describes an error response for AppendError. (It is not a Go
// error: decoding errors are this package's Err variables.)
type Error struct {
	// Code is the error code, 300 to 699 (RFC 5389 15.6).
	Code int
	// Reason is the reason phrase; empty means ReasonPhrase(Code).
	Reason string
	// Unknown, when not empty, is sent as UNKNOWN-ATTRIBUTES: for 420,
	// pass req.Unknown.Slice().
	Unknown []AttrType
	// Software, when set, is sent as SOFTWARE.
	Software string
	// Form and Key add MESSAGE-INTEGRITY, as in Success. Leave Form zero
	// when the request was not authenticated (401, 431, 432; RFC 5389
	// 10.1.2).
	Form IntegrityForm
	Key  []byte
}

// AppendError writes into buf's storage (discarding its contents) the
// error response to req and returns it: same method, error class, the
// request's 16-byte transaction id echoed. ERROR-CODE is the first
// attribute, because some CPE agents look for it only there; then come
// UNKNOWN-ATTRIBUTES, SOFTWARE, MESSAGE-INTEGRITY, and FINGERPRINT for
// an RFC 5389 request.
func AppendError(buf []byte, req *Message, e *Error) []byte {
	b := StartMessage(buf, NewMessageType(req.Type.Method(), ClassError), &req.TransactionID)
	b = AppendErrorCode(b, e.Code, e.Reason)
	if len(e.Unknown) > 0 {
		b = AppendUnknownAttributes(b, e.Unknown)
	}
	return finish(b, req.Classic, e.Software, e.Form, e.Key)
}

// finish appends the trailing attributes shared by all messages built
// here: SOFTWARE, MESSAGE-INTEGRITY, and FINGERPRINT for RFC 5389.
func finish(b []byte, classic bool, software string, f IntegrityForm, key []byte) []byte {
	if software != "" {
		b = AppendSoftware(b, software)
	}
	b = AppendIntegrity(b, key, f)
	if !classic {
		b = AppendFingerprint(b)
	}
	return b
}

// BindingRequest describes a Binding Request, as a TR-111 CPE sends it.
type BindingRequest struct {
	// ID is the transaction id; NewTransactionID makes one. Its first
	// four bytes decide whether the request is classic or RFC 5389.
	ID TransactionID
	// Username, when set, is sent as USERNAME padded with spaces.
	Username string
	// ConnectionRequestBinding adds CONNECTION-REQUEST-BINDING, and
	// BindingChange adds BINDING-CHANGE (TR-069 Annex G).
	ConnectionRequestBinding bool
	BindingChange            bool
	// ResponseAddress, when valid, is sent as RESPONSE-ADDRESS.
	ResponseAddress netip.AddrPort
	// ChangeIP and ChangePort, when either is set, add CHANGE-REQUEST.
	ChangeIP, ChangePort bool
	// Software, when set, is sent as SOFTWARE.
	Software string
	// Form and Key add MESSAGE-INTEGRITY: TR-111 agents use
	// IntegrityRFC3489 keyed by the STUNPassword.
	Form IntegrityForm
	Key  []byte
	// Fingerprint adds FINGERPRINT (meant for RFC 5389 requests).
	Fingerprint bool
}

// AppendBindingRequest writes the Binding Request r describes into buf's
// storage (discarding its contents) and returns it. Attributes come in
// the order deployed agents use: USERNAME, CONNECTION-REQUEST-BINDING,
// BINDING-CHANGE, RESPONSE-ADDRESS, CHANGE-REQUEST, SOFTWARE,
// MESSAGE-INTEGRITY, FINGERPRINT.
func AppendBindingRequest(buf []byte, r *BindingRequest) []byte {
	b := StartMessage(buf, TypeBindingRequest, &r.ID)
	if r.Username != "" {
		b = AppendUsername(b, r.Username)
	}
	if r.ConnectionRequestBinding {
		b = AppendConnectionRequestBinding(b)
	}
	if r.BindingChange {
		b = AppendBindingChange(b)
	}
	b = AppendAddress(b, AttrResponseAddress, r.ResponseAddress)
	if r.ChangeIP || r.ChangePort {
		b = AppendChangeRequest(b, r.ChangeIP, r.ChangePort)
	}
	if r.Software != "" {
		b = AppendSoftware(b, r.Software)
	}
	b = AppendIntegrity(b, r.Key, r.Form)
	if r.Fingerprint {
		b = AppendFingerprint(b)
	}
	return b
}
