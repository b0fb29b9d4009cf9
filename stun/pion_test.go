package stun

// Interoperability with pion/stun, an RFC 5389 implementation written
// elsewhere: messages built by pion are read here, messages built here
// are read, integrity- and fingerprint-checked by pion.

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	pion "github.com/pion/stun/v2"
)

const pionPassword = "STUNPassword"

func pionRequest(t *testing.T, setters ...pion.Setter) *pion.Message {
	t.Helper()
	m, err := pion.Build(append([]pion.Setter{pion.TransactionID, pion.BindingRequest}, setters...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPionRequest: RFC 5389 requests built by pion decode here, and
// their MESSAGE-INTEGRITY and FINGERPRINT check.
func TestPionRequest(t *testing.T) {
	tests := []struct {
		name    string
		setters []pion.Setter
		check   func(t *testing.T, m *Message)
	}{
		{
			name: "USERNAME, MESSAGE-INTEGRITY, FINGERPRINT",
			setters: []pion.Setter{pion.NewUsername("cpe-0001"), pion.NewSoftware("pion"),
				pion.NewShortTermIntegrity(pionPassword), pion.Fingerprint},
			check: func(t *testing.T, m *Message) {
				if string(m.Username) != "cpe-0001" || string(m.Software) != "pion" || !m.Fingerprint {
					t.Errorf("username %q software %q fingerprint %v", m.Username, m.Software, m.Fingerprint)
				}
				if f, err := m.CheckIntegrity([]byte(pionPassword)); err != nil || f != IntegrityRFC5389 {
					t.Errorf("CheckIntegrity = %v, %v; want rfc5389", f, err)
				}
				if _, err := m.CheckIntegrity([]byte("other")); err != ErrIntegrity {
					t.Errorf("CheckIntegrity(other) = %v", err)
				}
			},
		},
		{
			name:    "odd-length USERNAME, zero-padded",
			setters: []pion.Setter{pion.NewUsername("evtj:h6vY"), pion.NewShortTermIntegrity(pionPassword)},
			check: func(t *testing.T, m *Message) {
				if string(m.Username) != "evtj:h6vY" || m.Fingerprint {
					t.Errorf("username %q fingerprint %v", m.Username, m.Fingerprint)
				}
				if f, err := m.CheckIntegrity([]byte(pionPassword)); err != nil || f != IntegrityRFC5389 {
					t.Errorf("CheckIntegrity = %v, %v", f, err)
				}
			},
		},
		{
			name: "TR-111 attributes and unknown comprehension-required ones",
			setters: []pion.Setter{
				pion.NewUsername("cpe-0001"),
				rawAttr(AttrConnectionRequestBinding, []byte(ConnectionRequestBindingValue)),
				rawAttr(AttrBindingChange, nil),
				pion.RawAttribute{Type: pion.AttrPriority, Value: []byte{0, 0, 0, 1}},
				pion.RawAttribute{Type: pion.AttrUseCandidate},
				pion.Fingerprint,
			},
			check: func(t *testing.T, m *Message) {
				if !m.ConnectionRequestBindingValid || !m.BindingChange {
					t.Errorf("CRB valid %v, BC %v", m.ConnectionRequestBindingValid, m.BindingChange)
				}
				want := []AttrType{AttrType(pion.AttrPriority), AttrType(pion.AttrUseCandidate)}
				if !slices.Equal(m.Unknown.Slice(), want) {
					t.Errorf("Unknown = %v, want %v", m.Unknown.Slice(), want)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pionRequest(t, tt.setters...)
			var m Message
			if err := m.Decode(p.Raw); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m.Classic || m.Type != TypeBindingRequest || m.TransactionID != TransactionID(p.Raw[4:20]) {
				t.Errorf("header: classic %v type %v id %x", m.Classic, m.Type, m.TransactionID)
			}
			tt.check(t, &m)
		})
	}
}

func rawAttr(t AttrType, v []byte) pion.RawAttribute {
	return pion.RawAttribute{Type: pion.AttrType(t), Value: v, Length: uint16(len(v))}
}

// TestPionReadsResponses: responses built here to pion's requests are
// accepted by pion, addresses, integrity and fingerprint included.
func TestPionReadsResponses(t *testing.T) {
	key := []byte(pionPassword)
	for _, mapped := range []netip.AddrPort{cpeMapped, netip.MustParseAddrPort("[2001:db8:cafe::17]:40000")} {
		t.Run("success "+mapped.String(), func(t *testing.T) {
			p := pionRequest(t, pion.NewUsername("cpe-0001"), pion.NewShortTermIntegrity(pionPassword), pion.Fingerprint)
			var req Message
			if err := req.Decode(p.Raw); err != nil {
				t.Fatal(err)
			}
			form, err := req.CheckIntegrity(key)
			if err != nil {
				t.Fatal(err)
			}
			b := AppendSuccess(nil, &req, &Success{Mapped: mapped, Source: relaySource, Changed: relayAlt,
				Software: "crrelay", Form: form, Key: key})

			resp := pionDecode(t, b)
			if resp.Type != pion.BindingSuccess || resp.TransactionID != p.TransactionID {
				t.Errorf("pion: type %v id %x, want %x", resp.Type, resp.TransactionID, p.TransactionID)
			}
			var xor pion.XORMappedAddress
			if err := xor.GetFrom(resp); err != nil || !xor.IP.Equal(net.IP(mapped.Addr().AsSlice())) || xor.Port != int(mapped.Port()) {
				t.Errorf("pion XOR-MAPPED-ADDRESS %v, %v; want %v", xor, err, mapped)
			}
			var plain pion.MappedAddress
			if err := plain.GetFrom(resp); err != nil || !plain.IP.Equal(net.IP(mapped.Addr().AsSlice())) || plain.Port != int(mapped.Port()) {
				t.Errorf("pion MAPPED-ADDRESS %v, %v", plain, err)
			}
			var origin pion.MappedAddress // same layout as RESPONSE-ORIGIN
			if err := origin.GetFromAs(resp, pion.AttrResponseOrigin); err != nil || origin.Port != int(relaySource.Port()) {
				t.Errorf("pion RESPONSE-ORIGIN %v, %v", origin, err)
			}
			if err := pion.NewShortTermIntegrity(pionPassword).Check(resp); err != nil {
				t.Errorf("pion MESSAGE-INTEGRITY: %v", err)
			}
			if err := pion.Fingerprint.Check(resp); err != nil {
				t.Errorf("pion FINGERPRINT: %v", err)
			}
		})
	}

	t.Run("420 with UNKNOWN-ATTRIBUTES", func(t *testing.T) {
		p := pionRequest(t, pion.RawAttribute{Type: pion.AttrPriority, Value: []byte{0, 0, 0, 1}},
			pion.RawAttribute{Type: pion.AttrUseCandidate}, pion.RawAttribute{Type: 0x7ff0})
		var req Message
		if err := req.Decode(p.Raw); err != nil {
			t.Fatal(err)
		}
		resp := pionDecode(t, AppendError(nil, &req, &Error{Code: 420, Unknown: req.Unknown.Slice()}))
		var ec pion.ErrorCodeAttribute
		if err := ec.GetFrom(resp); err != nil || ec.Code != 420 || strings.TrimRight(string(ec.Reason), " ") != "Unknown Attribute" {
			t.Errorf("pion ERROR-CODE %v, %v", ec, err)
		}
		// pion v2.0.0's UnknownAttributes.GetFrom reads one type per 4
		// bytes, against RFC 5389 15.9; read the raw value instead. An odd
		// list gets its last entry repeated (RFC 3489 11.2.10).
		v, err := resp.Get(pion.AttrUnknownAttributes)
		if err != nil {
			t.Fatal(err)
		}
		want := []byte{0x00, 0x24, 0x00, 0x25, 0x7f, 0xf0, 0x7f, 0xf0}
		if !slices.Equal(v, want) {
			t.Errorf("pion UNKNOWN-ATTRIBUTES value % x, want % x", v, want)
		}
		if err := pion.Fingerprint.Check(resp); err != nil {
			t.Errorf("pion FINGERPRINT: %v", err)
		}
	})

	t.Run("RFC 5389 request built here", func(t *testing.T) {
		b := AppendBindingRequest(nil, &BindingRequest{ID: NewTransactionID(false), Username: "cpe-0001",
			ConnectionRequestBinding: true, Software: "sim", Form: IntegrityRFC5389, Key: key, Fingerprint: true})
		p := pionDecode(t, b)
		var u pion.Username
		if err := u.GetFrom(p); err != nil || strings.TrimRight(u.String(), " ") != "cpe-0001" {
			t.Errorf("pion USERNAME %q, %v", u, err)
		}
		if err := pion.NewShortTermIntegrity(pionPassword).Check(p); err != nil {
			t.Errorf("pion MESSAGE-INTEGRITY: %v", err)
		}
		if err := pion.Fingerprint.Check(p); err != nil {
			t.Errorf("pion FINGERPRINT: %v", err)
		}
	})
}

// TestPionResponses: responses built by pion, IPv4 and IPv6, decode here.
func TestPionResponses(t *testing.T) {
	for _, mapped := range []netip.AddrPort{cpeMapped, netip.MustParseAddrPort("[2001:db8:cafe::17]:40000")} {
		t.Run(mapped.String(), func(t *testing.T) {
			ip := net.IP(mapped.Addr().AsSlice())
			p, err := pion.Build(pion.TransactionID, pion.BindingSuccess,
				&pion.XORMappedAddress{IP: ip, Port: int(mapped.Port())},
				pion.NewShortTermIntegrity(pionPassword), pion.Fingerprint)
			if err != nil {
				t.Fatal(err)
			}
			var m Message
			if err := m.Decode(p.Raw); err != nil {
				t.Fatal(err)
			}
			if m.XORMappedAddress != mapped || m.Type != TypeBindingSuccess {
				t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", m.XORMappedAddress, mapped)
			}
			if f, err := m.CheckIntegrity([]byte(pionPassword)); err != nil || f != IntegrityRFC5389 {
				t.Errorf("CheckIntegrity = %v, %v", f, err)
			}
		})
	}
}

func pionDecode(t *testing.T, b []byte) *pion.Message {
	t.Helper()
	p := &pion.Message{Raw: append([]byte(nil), b...)}
	if err := p.Decode(); err != nil {
		t.Fatalf("pion Decode: %v\n% x", err, b)
	}
	return p
}
