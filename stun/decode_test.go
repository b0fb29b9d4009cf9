package stun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"slices"
	"testing"
)

func TestDecodeGolden(t *testing.T) {
	tests := []struct {
		name  string
		pkt   []byte
		check func(t *testing.T, m *Message)
	}{
		{
			name: "classic TR-111 request without integrity",
			pkt:  tr111Plain,
			check: func(t *testing.T, m *Message) {
				if m.Type != TypeBindingRequest || !m.Classic || m.TransactionID != classicID {
					t.Errorf("header: type %v classic %v id %x", m.Type, m.Classic, m.TransactionID)
				}
				if string(m.Username) != "CPE57689" || !m.HasUsername() {
					t.Errorf("username %q", m.Username)
				}
				if !m.ConnectionRequestBinding || !m.ConnectionRequestBindingValid || m.BindingChange {
					t.Errorf("CRB %v valid %v, BC %v", m.ConnectionRequestBinding, m.ConnectionRequestBindingValid, m.BindingChange)
				}
				if m.HasIntegrity() || m.Fingerprint || m.Unknown.Len() != 0 {
					t.Errorf("integrity %v fingerprint %v unknown %v", m.HasIntegrity(), m.Fingerprint, m.Unknown.Slice())
				}
				if _, err := m.CheckIntegrity([]byte("x")); err != ErrNoIntegrity {
					t.Errorf("CheckIntegrity = %v, want ErrNoIntegrity", err)
				}
			},
		},
		{
			name: "classic TR-111 request with padded username and RFC 3489 integrity",
			pkt:  tr111MI,
			check: func(t *testing.T, m *Message) {
				if string(m.Username) != "cpe-0001x" || string(m.RawUsername) != "cpe-0001x   " {
					t.Errorf("username %q raw %q", m.Username, m.RawUsername)
				}
				if m.IntegrityOffset != tr111MIOffset {
					t.Errorf("IntegrityOffset = %d, want %d", m.IntegrityOffset, tr111MIOffset)
				}
				form, err := m.CheckIntegrity(tr111MIKey)
				if err != nil || form != IntegrityRFC3489 {
					t.Errorf("CheckIntegrity = %v, %v; want rfc3489", form, err)
				}
				if _, err := m.CheckIntegrity([]byte("wrong")); err != ErrIntegrity {
					t.Errorf("CheckIntegrity(wrong key) = %v, want ErrIntegrity", err)
				}
			},
		},
		{
			name: "RFC 5769 sample request",
			pkt:  rfc5769Request,
			check: func(t *testing.T, m *Message) {
				if m.Classic || m.TransactionID != cookieID || !m.Fingerprint {
					t.Errorf("classic %v id %x fingerprint %v", m.Classic, m.TransactionID, m.Fingerprint)
				}
				if string(m.Username) != "evtj:h6vY" || string(m.Software) != "STUN test client" {
					t.Errorf("username %q software %q", m.Username, m.Software)
				}
				form, err := m.CheckIntegrity(rfc5769Key)
				if err != nil || form != IntegrityRFC5389 {
					t.Errorf("CheckIntegrity = %v, %v; want rfc5389", form, err)
				}
				// PRIORITY is an ICE attribute, comprehension-required;
				// ICE-CONTROLLED is optional.
				if !slices.Equal(m.Unknown.Slice(), []AttrType{0x0024}) {
					t.Errorf("Unknown = %v, want [PRIORITY]", m.Unknown.Slice())
				}
				if n := len(m.Attributes()); n != 6 {
					t.Errorf("%d attributes, want 6", n)
				}
			},
		},
		{
			name: "RFC 5769 sample IPv4 response",
			pkt:  rfc5769IPv4Response,
			check: func(t *testing.T, m *Message) {
				want := netip.MustParseAddrPort("192.0.2.1:32853")
				if m.Type != TypeBindingSuccess || m.XORMappedAddress != want {
					t.Errorf("type %v XOR-MAPPED-ADDRESS %v, want %v", m.Type, m.XORMappedAddress, want)
				}
				if string(m.Software) != "test vector" {
					t.Errorf("software %q", m.Software)
				}
				if form, err := m.CheckIntegrity(rfc5769Key); err != nil || form != IntegrityRFC5389 {
					t.Errorf("CheckIntegrity = %v, %v", form, err)
				}
			},
		},
		{
			name: "RFC 5769 sample IPv6 response",
			pkt:  rfc5769IPv6Response,
			check: func(t *testing.T, m *Message) {
				want := netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853")
				if m.XORMappedAddress != want {
					t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", m.XORMappedAddress, want)
				}
				if form, err := m.CheckIntegrity(rfc5769Key); err != nil || form != IntegrityRFC5389 {
					t.Errorf("CheckIntegrity = %v, %v", form, err)
				}
			},
		},
		{
			name: "classic binding-lifetime probe with RESPONSE-ADDRESS and CHANGE-REQUEST",
			pkt: wire(
				"00 01 00 18",
				"7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7",
				"00 02 00 08 00 01 c8 d2 cb 00 71 07", // RESPONSE-ADDRESS 203.0.113.7:51410
				"00 03 00 04 00 00 00 06",             // CHANGE-REQUEST: IP and port
				"c0 02 00 00",                         // BINDING-CHANGE
			),
			check: func(t *testing.T, m *Message) {
				if want := netip.MustParseAddrPort("203.0.113.7:51410"); m.ResponseAddress != want {
					t.Errorf("RESPONSE-ADDRESS %v, want %v", m.ResponseAddress, want)
				}
				if !m.HasChangeRequest || !m.ChangeIP || !m.ChangePort {
					t.Errorf("CHANGE-REQUEST %v ip %v port %v", m.HasChangeRequest, m.ChangeIP, m.ChangePort)
				}
				if !m.BindingChange || m.ConnectionRequestBinding || m.HasUsername() {
					t.Errorf("BC %v CRB %v username %v", m.BindingChange, m.ConnectionRequestBinding, m.HasUsername())
				}
			},
		},
		{
			name: "classic response with MAPPED, SOURCE and CHANGED addresses",
			pkt: wire(
				"01 01 00 3c",
				"7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7",
				"00 01 00 08 00 01 c8 d2 cb 00 71 07",                                     // MAPPED-ADDRESS 203.0.113.7:51410
				"00 04 00 08 00 01 0d 96 c6 33 64 01",                                     // SOURCE-ADDRESS 198.51.100.1:3478
				"00 05 00 14 00 02 0d 97 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02", // CHANGED-ADDRESS [2001:db8::2]:3479
				`80 22 00 08 "crrelay" 20`,                                                // SOFTWARE
			),
			check: func(t *testing.T, m *Message) {
				if m.Type != TypeBindingSuccess || m.Type.Class() != ClassSuccess || m.Type.Method() != MethodBinding {
					t.Errorf("type %v", m.Type)
				}
				for _, c := range []struct {
					got  netip.AddrPort
					want string
				}{
					{m.MappedAddress, "203.0.113.7:51410"},
					{m.SourceAddress, "198.51.100.1:3478"},
					{m.ChangedAddress, "[2001:db8::2]:3479"},
				} {
					if c.got != netip.MustParseAddrPort(c.want) {
						t.Errorf("address %v, want %v", c.got, c.want)
					}
				}
				if m.XORMappedAddress.IsValid() {
					t.Errorf("XOR-MAPPED-ADDRESS %v in a classic response", m.XORMappedAddress)
				}
			},
		},
		{
			name: "classic 420 response, ERROR-CODE first",
			pkt: wire(
				"01 11 00 24",
				"7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7",
				`00 09 00 18 00 00 04 14 "Unknown" 20 "Attribute" 20 20 20`, // 420, padded reason
				"00 0a 00 04 00 24 00 24",                                   // UNKNOWN-ATTRIBUTES: PRIORITY, repeated to even
			),
			check: func(t *testing.T, m *Message) {
				if m.Type != TypeBindingError || m.ErrorCode != 420 || string(m.ErrorReason) != "Unknown Attribute   " {
					t.Errorf("type %v code %d reason %q", m.Type, m.ErrorCode, m.ErrorReason)
				}
				if !slices.Equal(m.UnknownAttributes.Slice(), []AttrType{0x0024}) {
					t.Errorf("UNKNOWN-ATTRIBUTES %v", m.UnknownAttributes.Slice())
				}
			},
		},
		{
			name: "zero-length message",
			pkt:  wire("00 01 00 00", "7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7"),
			check: func(t *testing.T, m *Message) {
				if len(m.Attributes()) != 0 || m.HasUsername() || len(m.Raw) != HeaderSize {
					t.Errorf("attributes %v", m.Attributes())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			if err := m.Decode(tt.pkt); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			tt.check(t, &m)
		})
	}
}

// TestDecodeUnknownAttributes: comprehension-required attributes this
// codec does not know are collected once each, in order, for a 420;
// optional ones (0x8000 and up, which includes the TR-111 range) and
// anything after MESSAGE-INTEGRITY are not.
func TestDecodeUnknownAttributes(t *testing.T) {
	pkt := wire(
		"00 01 00 3c",
		"7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7",
		"00 24 00 04 6e 00 01 ff", // PRIORITY (ICE): required, unknown
		"80 29 00 00",             // ICE-CONTROLLED: optional
		"c0 03 00 00",             // a TR-111-range type: optional
		"7f ff 00 00",             // highest required type
		"00 24 00 04 00 00 00 01", // PRIORITY again: listed once
		"00 25 00 00",             // USE-CANDIDATE
		"00 08 00 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
		"00 30 00 00", // after MESSAGE-INTEGRITY: ignored
	)
	var m Message
	if err := m.Decode(pkt); err != nil {
		t.Fatal(err)
	}
	want := []AttrType{0x0024, 0x7fff, 0x0025}
	if !slices.Equal(m.Unknown.Slice(), want) || m.Unknown.Truncated() {
		t.Errorf("Unknown = %v (truncated %v), want %v", m.Unknown.Slice(), m.Unknown.Truncated(), want)
	}
	if n := len(m.Attributes()); n != 8 {
		t.Errorf("%d attributes listed, want all 8", n)
	}

	// More unknown types than MaxUnknown: the first ones are kept.
	b := StartMessage(nil, TypeBindingRequest, &classicID)
	for i := range MaxUnknown + 3 {
		b = AppendAttr(b, AttrType(0x0100+i), nil)
	}
	if err := m.Decode(b); err != nil {
		t.Fatal(err)
	}
	if m.Unknown.Len() != MaxUnknown || !m.Unknown.Truncated() || m.Unknown.Slice()[0] != 0x0100 {
		t.Errorf("Unknown = %v truncated %v", m.Unknown.Slice(), m.Unknown.Truncated())
	}
}

func TestDecodeConnectionRequestBinding(t *testing.T) {
	tests := []struct {
		name  string
		attr  []byte
		valid bool
		raw   string
	}{
		{"exact value", wire(`c0 01 00 14 "dslforum.org/TR-111" 20`), true, "dslforum.org/TR-111 "},
		{"no trailing space", wire(`c0 01 00 13 "dslforum.org/TR-111" 00`), false, "dslforum.org/TR-111"},
		{"NUL instead of space", wire(`c0 01 00 14 "dslforum.org/TR-111" 00`), false, "dslforum.org/TR-111\x00"},
		{"other text", wire(`c0 01 00 14 "dslforum.org/TR-069" 20`), false, "dslforum.org/TR-069 "},
		{"empty", wire(`c0 01 00 00`), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := append(StartMessage(nil, TypeBindingRequest, &classicID), tt.attr...)
			setLength(pkt)
			var m Message
			if err := m.Decode(pkt); err != nil {
				t.Fatal(err)
			}
			if !m.ConnectionRequestBinding || m.ConnectionRequestBindingValid != tt.valid ||
				string(m.ConnectionRequestBindingRaw) != tt.raw {
				t.Errorf("present %v valid %v raw %q; want valid %v raw %q", m.ConnectionRequestBinding,
					m.ConnectionRequestBindingValid, m.ConnectionRequestBindingRaw, tt.valid, tt.raw)
			}
		})
	}
}

func TestDecodeUsernamePadding(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"spaces", "cpe-0001x   ", "cpe-0001x"},
		{"NULs", "cpe-0001x\x00\x00\x00", "cpe-0001x"},
		{"no padding", "CPE57689", "CPE57689"},
		{"inner space kept", "a b ", "a b"},
		{"all spaces", "    ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			if err := m.Decode(AppendAttrString(StartMessage(nil, TypeBindingRequest, &classicID), AttrUsername, tt.raw)); err != nil {
				t.Fatal(err)
			}
			if string(m.Username) != tt.want || string(m.RawUsername) != tt.raw || !m.HasUsername() {
				t.Errorf("Username %q raw %q, want %q", m.Username, m.RawUsername, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	hdr := func(length int) []byte {
		b := StartMessage(nil, TypeBindingRequest, &classicID)
		binary.BigEndian.PutUint16(b[2:], uint16(length))
		return b
	}
	with := func(length int, rows ...string) []byte { return append(hdr(length), wire(rows...)...) }
	tooMany := StartMessage(nil, TypeBindingRequest, &classicID)
	for range MaxAttributes + 1 {
		tooMany = AppendAttr(tooMany, AttrBindingChange, nil)
	}
	oversized := AppendAttr(StartMessage(nil, TypeBindingRequest, &classicID), AttrSoftware, make([]byte, MaxMessageSize))
	fingerprinted := AppendFingerprint(AppendUsername(StartMessage(nil, TypeBindingRequest, &cookieID), "u"))
	badCRC := bytes.Clone(fingerprinted)
	badCRC[len(badCRC)-1] ^= 1
	// A correct FINGERPRINT followed by another attribute.
	notLast := AppendAttr(bytes.Clone(fingerprinted), AttrSoftware, []byte("late"))
	fpOff := len(fingerprinted) - fingerprintAttrSize
	binary.BigEndian.PutUint32(notLast[fpOff+4:], crc32.ChecksumIEEE(notLast[:fpOff])^fingerprintXOR)

	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"19 bytes", hdr(0)[:19], ErrTruncated},
		{"length beyond packet", with(8, "c0 02 00 00"), ErrTruncated},
		{"length not multiple of 4", with(2, "00 00"), ErrBadLength},
		{"bytes after length", with(0, "c0 02 00 00"), ErrBadLength},
		{"top bits set", append([]byte{0xc0, 0x01}, hdr(0)[2:]...), ErrNotSTUN},
		{"HTTP datagram", []byte("GET http://192.0.2.1:7547?ts=1 HTTP/1.1\r\n\r\n"), ErrNotSTUN},
		{"oversized", oversized, ErrTooLarge},
		{"attribute past end", with(8, "00 06 00 08 41 42 43 44"), ErrAttrOverflow},
		{"attribute padding past end", with(8, "00 06 00 05 41 42 43 44"), ErrAttrOverflow},
		{"attribute value missing", with(4, "00 06 00 04"), ErrAttrOverflow},
		{"MAPPED-ADDRESS too short", with(12, "00 01 00 07 00 01 00 50 c0 00 02 00"), ErrBadAttribute},
		{"MAPPED-ADDRESS family 3", with(12, "00 01 00 08 00 03 00 50 c0 00 02 01"), ErrBadAttribute},
		{"IPv6 address too short", with(12, "00 01 00 08 00 02 00 50 c0 00 02 01"), ErrBadAttribute},
		{"XOR-MAPPED-ADDRESS no family", with(4, "00 20 00 00"), ErrBadAttribute},
		{"RESPONSE-ADDRESS 3 bytes", with(8, "00 02 00 03 00 01 00 00"), ErrBadAttribute},
		{"CHANGE-REQUEST 8 bytes", with(12, "00 03 00 08 00 00 00 06 00 00 00 00"), ErrBadAttribute},
		{"MESSAGE-INTEGRITY 16 bytes", with(20, "00 08 00 10 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"), ErrBadAttribute},
		{"ERROR-CODE number 100", with(8, "00 09 00 04 00 00 04 64"), ErrBadAttribute},
		{"ERROR-CODE 2 bytes", with(8, "00 09 00 02 00 00 00 00"), ErrBadAttribute},
		{"UNKNOWN-ATTRIBUTES odd length", with(8, "00 0a 00 03 00 24 00 00"), ErrBadAttribute},
		{"FINGERPRINT 8 bytes", with(12, "80 28 00 08 00 00 00 00 00 00 00 00"), ErrBadAttribute},
		{"FINGERPRINT wrong", badCRC, ErrFingerprint},
		{"FINGERPRINT not last", notLast, ErrFingerprint},
		{"too many attributes", tooMany, ErrTooManyAttributes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			m.Username = []byte("stale") // Decode must reset m, on errors too
			err := m.Decode(tt.pkt)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
			if m.Raw != nil || m.Username != nil || len(m.Attributes()) != 0 {
				t.Errorf("Message not reset after error: %+v", m)
			}
		})
	}
	// Every strict prefix of a valid message is an error, never a panic.
	for _, pkt := range [][]byte{tr111MI, rfc5769Request, rfc5769IPv6Response} {
		for n := range len(pkt) {
			var m Message
			if err := m.Decode(pkt[:n]); err == nil {
				t.Errorf("Decode of %d-byte prefix succeeded", n)
			}
		}
	}
}

// TestDecodeFirstWins: a repeated attribute counts by its first
// occurrence (RFC 5389 15).
func TestDecodeFirstWins(t *testing.T) {
	b := StartMessage(nil, TypeBindingRequest, &classicID)
	b = AppendUsername(b, "first")
	b = AppendUsername(b, "second")
	b = AppendAddress(b, AttrResponseAddress, netip.MustParseAddrPort("192.0.2.1:1"))
	b = AppendAddress(b, AttrResponseAddress, netip.MustParseAddrPort("192.0.2.2:2"))
	b = AppendChangeRequest(b, true, false)
	b = AppendChangeRequest(b, false, true)
	var m Message
	if err := m.Decode(b); err != nil {
		t.Fatal(err)
	}
	if string(m.Username) != "first" || m.ResponseAddress.Port() != 1 || !m.ChangeIP || m.ChangePort {
		t.Errorf("username %q response address %v change %v/%v", m.Username, m.ResponseAddress, m.ChangeIP, m.ChangePort)
	}
}

func TestMessageType(t *testing.T) {
	tests := []struct {
		t      MessageType
		method Method
		class  Class
	}{
		{TypeBindingRequest, MethodBinding, ClassRequest},
		{TypeBindingIndication, MethodBinding, ClassIndication},
		{TypeBindingSuccess, MethodBinding, ClassSuccess},
		{TypeBindingError, MethodBinding, ClassError},
		{TypeSharedSecretRequest, MethodSharedSecret, ClassRequest},
		{0x0112, MethodSharedSecret, ClassError}, // RFC 3489 Shared Secret Error Response
		{0x3fff, 0xfff, ClassError},
	}
	for _, tt := range tests {
		if tt.t.Method() != tt.method || tt.t.Class() != tt.class {
			t.Errorf("%#04x: method %#x class %d, want %#x %d", uint16(tt.t), tt.t.Method(), tt.t.Class(), tt.method, tt.class)
		}
		if got := NewMessageType(tt.method, tt.class); got != tt.t {
			t.Errorf("NewMessageType(%#x, %d) = %#04x, want %#04x", tt.method, tt.class, uint16(got), uint16(tt.t))
		}
	}
}
