//go:build linux

package stunserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	pion "github.com/pion/stun/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/stun"
)

// packet is wire with the header length set from the rows that follow
// the header.
func packet(rows ...string) []byte {
	b := wire(rows...)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)-stun.HeaderSize))
	return b
}

// addrRow is the wire row of an IPv4 address attribute (RFC 3489 11.2.1).
func addrRow(t stun.AttrType, ap netip.AddrPort) string {
	a := ap.Addr().As4()
	return fmt.Sprintf("%04x 0008 0001 %04x %x", uint16(t), ap.Port(), a[:])
}

// Transaction id rows: classic (16 random bytes) and RFC 5389 (cookie).
const (
	rowClassicHdr = "0001 0000 7a1b5c03 9122e84f 106da033 c2580ef7"
	rowCookieHdr  = "0001 0000 2112a442 b7e7a701 bc34d686 fa87dfae"
)

var (
	// A classic TR-111 Binding Request as deployed agents send it first.
	tr111 = packet(rowClassicHdr,
		`0006 0008 "CPE57689"`, // USERNAME
		rowCRB)
	// The same, after a 401: padded USERNAME, MESSAGE-INTEGRITY to sign.
	tr111MI = packet(rowClassicHdr, rowTestUser, rowCRB, rowMIZero)
)

func TestAnswers(t *testing.T) {
	conn := listen(t, "udp4", "127.0.0.1:0")
	srv := addrOf(conn)
	startServer(t, Config{Registry: newFakeRegistry()}, conn)
	c := newClient(t, "127.0.0.1")

	for _, tc := range []struct {
		name  string
		req   []byte
		attrs []stun.AttrType
		ownID bool // keep the request's id (FINGERPRINT covers it)
	}{
		{"classic, no attributes", packet(rowClassicHdr),
			[]stun.AttrType{stun.AttrMappedAddress, stun.AttrSourceAddress}, false},
		{"classic TR-111", tr111,
			[]stun.AttrType{stun.AttrMappedAddress, stun.AttrSourceAddress}, false},
		{"classic, CHANGE-REQUEST without flags (Vovida)", packet(rowClassicHdr, "0003 0004 00000000"),
			[]stun.AttrType{stun.AttrMappedAddress, stun.AttrSourceAddress}, false},
		{"RFC 5389", packet(rowCookieHdr),
			[]stun.AttrType{stun.AttrXORMappedAddress, stun.AttrMappedAddress, stun.AttrResponseOrigin, stun.AttrFingerprint}, false},
		{"RFC 5389 with SOFTWARE and FINGERPRINT", pion.MustBuild(pion.TransactionID, pion.BindingRequest,
			pion.NewSoftware("pion"), pion.Fingerprint).Raw,
			[]stun.AttrType{stun.AttrXORMappedAddress, stun.AttrMappedAddress, stun.AttrResponseOrigin, stun.AttrFingerprint}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			req := tc.req
			if !tc.ownID {
				req = withID(req)
			}
			resp, from := c.exchange(srv, req)
			if from != srv {
				t.Errorf("answer from %v, want %v", from, srv)
			}
			m := decode(t, resp)
			if m.Type != stun.TypeBindingSuccess {
				t.Fatalf("type %v, want success", m.Type)
			}
			if got := attrTypes(m); !slices.Equal(got, tc.attrs) {
				t.Errorf("attributes %v, want %v", got, tc.attrs)
			}
			if m.MappedAddress != c.addr() {
				t.Errorf("MAPPED-ADDRESS %v, want %v", m.MappedAddress, c.addr())
			}
			if m.Classic {
				if m.SourceAddress != srv {
					t.Errorf("SOURCE-ADDRESS %v, want %v", m.SourceAddress, srv)
				}
				return
			}
			// An independent RFC 5389 client reads it too.
			pm := &pion.Message{Raw: append([]byte(nil), resp...)}
			if err := pm.Decode(); err != nil {
				t.Fatalf("pion: %v", err)
			}
			var xa pion.XORMappedAddress
			if err := xa.GetFrom(pm); err != nil {
				t.Fatalf("pion XOR-MAPPED-ADDRESS: %v", err)
			}
			if got := netip.AddrPortFrom(netip.MustParseAddr(xa.IP.String()), uint16(xa.Port)); got != c.addr() {
				t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", got, c.addr())
			}
			if err := pion.Fingerprint.Check(pm); err != nil {
				t.Errorf("pion FINGERPRINT: %v", err)
			}
		})
	}
}

func TestBindings(t *testing.T) {
	conn := listen(t, "udp4", "127.0.0.1:0")
	srv := addrOf(conn)
	reg := newFakeRegistry()
	s := startServer(t, Config{Registry: reg}, conn)
	c := newClient(t, "127.0.0.1")

	for _, tc := range []struct {
		name     string
		req      []byte
		want     *registry.BindingObservation // nil: nothing recorded
		crbCount counter
	}{
		{"TR-111", tr111,
			&registry.BindingObservation{STUNUsername: "CPE57689"}, cCRBExact},
		{"BINDING-CHANGE", packet(rowClassicHdr, `0006 0008 "CPE57689"`, rowCRB, rowBC),
			&registry.BindingObservation{STUNUsername: "CPE57689", BindingChange: true}, cCRBExact},
		{"USERNAME padding trimmed", packet(rowClassicHdr, `0006 0008 "nopass" 2020`, rowCRB),
			&registry.BindingObservation{STUNUsername: "nopass"}, cCRBExact},
		{"no USERNAME", packet(rowClassicHdr, rowCRB),
			&registry.BindingObservation{}, cCRBExact},
		{"RFC 5389 TR-111", packet(rowCookieHdr, `0006 0008 "CPE57689"`, rowCRB),
			&registry.BindingObservation{STUNUsername: "CPE57689"}, cCRBExact},
		{"CONNECTION-REQUEST-BINDING padded with NUL", packet(rowClassicHdr, `0006 0008 "CPE57689"`,
			`c001 0014 "dslforum.org/TR-111" 00`),
			&registry.BindingObservation{STUNUsername: "CPE57689"}, cCRBLenient},
		{"CONNECTION-REQUEST-BINDING unpadded", packet(rowClassicHdr, `0006 0008 "CPE57689"`,
			`c001 0013 "dslforum.org/TR-111" 00`),
			&registry.BindingObservation{STUNUsername: "CPE57689"}, cCRBLenient},
		{"CONNECTION-REQUEST-BINDING wrong value", packet(rowClassicHdr, `0006 0008 "CPE57689"`,
			`c001 0008 "garbage!"`),
			nil, cCRBInvalid},
		{"no CONNECTION-REQUEST-BINDING", packet(rowClassicHdr, `0006 0008 "CPE57689"`),
			nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			before := len(reg.observations())
			crb := 0.0
			if tc.crbCount != 0 {
				crb = counterValue(s, tc.crbCount)
			}
			resp, _ := c.exchange(srv, withID(tc.req))
			if m := decode(t, resp); m.Type != stun.TypeBindingSuccess {
				t.Fatalf("type %v, want success", m.Type)
			}
			obs := reg.observations()[before:]
			if tc.want == nil {
				if len(obs) != 0 {
					t.Fatalf("recorded %+v, want nothing", obs)
				}
			} else {
				if len(obs) != 1 {
					t.Fatalf("recorded %d observations, want 1", len(obs))
				}
				o := obs[0]
				if o.STUNUsername != tc.want.STUNUsername || o.BindingChange != tc.want.BindingChange ||
					o.Mapped != c.addr() || o.Local != srv || o.At.IsZero() {
					t.Errorf("recorded %+v, want username %q, binding change %v, mapped %v, local %v",
						o, tc.want.STUNUsername, tc.want.BindingChange, c.addr(), srv)
				}
			}
			if tc.crbCount != 0 {
				if got := counterValue(s, tc.crbCount) - crb; got != 1 {
					t.Errorf("counter %s %s moved by %v, want 1", counterDefs[tc.crbCount].vec, counterDefs[tc.crbCount].label, got)
				}
			}
		})
	}
}

// signed gives pkt a fresh id and signs it the RFC 3489 way.
func signed(pkt []byte, key string) []byte { return sign3489(withID(pkt), key) }

func TestIntegrity(t *testing.T) {
	type want struct {
		code     int  // 0: success
		mi       bool // the response carries MESSAGE-INTEGRITY
		recorded bool
		unknown  []stun.AttrType
	}
	stranger := packet(rowClassicHdr, `0006 0008 "stranger"`, rowCRB, rowMIZero)
	nopass := packet(rowClassicHdr, `0006 0008 "nopass" 2020`, rowCRB, rowMIZero)
	noUser := packet(rowClassicHdr, rowCRB, rowMIZero)
	blankUser := packet(rowClassicHdr, "0006 0004 20202020", rowCRB, rowMIZero)
	unknownAttr := packet(rowClassicHdr, rowTestUser, rowCRB, "7777 0004 00000000")
	unknownAttrMI := packet(rowClassicHdr, rowTestUser, rowCRB, "7777 0004 00000000", rowMIZero)

	for _, tc := range []struct {
		name   string
		policy IntegrityPolicy
		req    []byte
		want   want
	}{
		{"required: no integrity", IntegrityRequired, withID(tr111), want{code: 401}},
		{"required: RFC 3489 integrity", IntegrityRequired, signed(tr111MI, testPassword), want{mi: true, recorded: true}},
		{"required: bad HMAC", IntegrityRequired, signed(tr111MI, "wrong"), want{code: 431}},
		{"required: unknown username", IntegrityRequired, signed(stranger, testPassword), want{code: 431}},
		{"required: device without password", IntegrityRequired, signed(nopass, ""), want{code: 431}},
		{"required: integrity without USERNAME", IntegrityRequired, signed(noUser, testPassword), want{code: 432}},
		{"required: integrity with blank USERNAME", IntegrityRequired, signed(blankUser, testPassword), want{code: 432}},
		{"required: unknown attribute, authenticated", IntegrityRequired, signed(unknownAttrMI, testPassword),
			want{code: 420, mi: true, unknown: []stun.AttrType{0x7777}}},
		{"optional: no integrity", IntegrityOptional, withID(tr111), want{recorded: true}},
		{"optional: unknown username without integrity", IntegrityOptional,
			withID(packet(rowClassicHdr, `0006 0008 "stranger"`, rowCRB)), want{recorded: true}},
		{"optional: RFC 3489 integrity", IntegrityOptional, signed(tr111MI, testPassword), want{mi: true, recorded: true}},
		{"optional: bad HMAC", IntegrityOptional, signed(tr111MI, "wrong"), want{code: 431}},
		{"optional: unknown username with integrity", IntegrityOptional, signed(stranger, testPassword), want{code: 431}},
		// A device with a STUN password must sign even under optional,
		// or anyone knowing its username could take its binding; the
		// 401 comes before 420 (authentication first, RFC 3489 8.2.1).
		{"optional: no integrity, device has a password", IntegrityOptional,
			withID(packet(rowClassicHdr, rowTestUser, rowCRB)), want{code: 401}},
		{"optional: unknown attribute, device has a password", IntegrityOptional, withID(unknownAttr), want{code: 401}},
		{"optional: unknown attribute, device without password", IntegrityOptional,
			withID(packet(rowClassicHdr, `0006 0008 "nopass" 2020`, rowCRB, "7777 0004 00000000")),
			want{code: 420, unknown: []stun.AttrType{0x7777}}},
		{"off: bad HMAC ignored", IntegrityOff, signed(tr111MI, "wrong"), want{recorded: true}},
		{"off: unknown attribute", IntegrityOff, withID(unknownAttr),
			want{code: 420, unknown: []stun.AttrType{0x7777}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := listen(t, "udp4", "127.0.0.1:0")
			reg := newFakeRegistry()
			startServer(t, Config{Registry: reg, Integrity: tc.policy}, conn)
			c := newClient(t, "127.0.0.1")
			resp, _ := c.exchange(addrOf(conn), tc.req)
			m := decode(t, resp)
			checkAnswer(t, m, resp, tc.want.code, tc.want.mi)
			if tc.want.unknown != nil && !slices.Equal(m.UnknownAttributes.Slice(), tc.want.unknown) {
				t.Errorf("UNKNOWN-ATTRIBUTES %v, want %v", m.UnknownAttributes.Slice(), tc.want.unknown)
			}
			if got := len(reg.observations()); got != map[bool]int{true: 1}[tc.want.recorded] {
				t.Errorf("%d bindings recorded, want recorded=%v", got, tc.want.recorded)
			}
		})
	}
}

// checkAnswer checks a response's code (0 for success), that ERROR-CODE
// is its first attribute if an error, and its RFC 3489
// MESSAGE-INTEGRITY (keyed by testPassword) if mi.
func checkAnswer(t *testing.T, m *stun.Message, resp []byte, code int, mi bool) {
	t.Helper()
	if code == 0 {
		if m.Type != stun.TypeBindingSuccess {
			t.Fatalf("type %v (code %d), want success", m.Type, m.ErrorCode)
		}
	} else {
		if m.Type != stun.TypeBindingError || m.ErrorCode != code {
			t.Fatalf("type %v code %d, want error %d", m.Type, m.ErrorCode, code)
		}
		if a := m.Attributes(); a[0].Type != stun.AttrErrorCode {
			t.Errorf("first attribute %v, want ERROR-CODE", a[0].Type)
		}
	}
	if m.HasIntegrity() != mi {
		t.Fatalf("MESSAGE-INTEGRITY present %v, want %v", m.HasIntegrity(), mi)
	}
	if mi {
		off := m.IntegrityOffset
		if !bytes.Equal(resp[off+4:off+24], mac3489(resp[:off], testPassword)) {
			t.Errorf("response MESSAGE-INTEGRITY is not RFC 3489's with the STUN password")
		}
	}
}

// TestUnauthorizedThenRetry is the exchange of PROTOCOL-NOTES 1: a first
// request without integrity, 401, and the retry with the padded HMAC.
func TestUnauthorizedThenRetry(t *testing.T) {
	conn := listen(t, "udp4", "127.0.0.1:0")
	reg := newFakeRegistry()
	startServer(t, Config{Registry: reg, Integrity: IntegrityRequired}, conn)
	c := newClient(t, "127.0.0.1")

	first := withID(packet(rowClassicHdr, rowTestUser, rowCRB))
	resp, _ := c.exchange(addrOf(conn), first)
	checkAnswer(t, decode(t, resp), resp, 401, false)
	if n := len(reg.observations()); n != 0 {
		t.Fatalf("401 recorded %d bindings", n)
	}

	retry := signed(tr111MI, testPassword)
	resp, _ = c.exchange(addrOf(conn), retry)
	m := decode(t, resp)
	checkAnswer(t, m, resp, 0, true)
	obs := reg.observations()
	if len(obs) != 1 || obs[0].STUNUsername != testUser || obs[0].Mapped != c.addr() {
		t.Fatalf("recorded %+v", obs)
	}
}

// TestIntegrityRFC5389 authenticates an RFC 5389 client (pion/stun)
// and checks the response with it: RFC 5389 integrity and FINGERPRINT.
func TestIntegrityRFC5389(t *testing.T) {
	conn := listen(t, "udp4", "127.0.0.1:0")
	reg := newFakeRegistry()
	startServer(t, Config{Registry: reg, Integrity: IntegrityRequired}, conn)
	c := newClient(t, "127.0.0.1")

	integrity := pion.NewShortTermIntegrity(testPassword)
	req := pion.MustBuild(pion.TransactionID, pion.BindingRequest, pion.NewUsername(testUser),
		pion.RawAttribute{Type: pion.AttrType(stun.AttrConnectionRequestBinding), Value: []byte(stun.ConnectionRequestBindingValue)},
		integrity, pion.Fingerprint)
	resp, _ := c.exchange(addrOf(conn), req.Raw)
	pm := &pion.Message{Raw: append([]byte(nil), resp...)}
	if err := pm.Decode(); err != nil {
		t.Fatal(err)
	}
	if pm.Type != pion.BindingSuccess {
		t.Fatalf("type %v", pm.Type)
	}
	if err := integrity.Check(pm); err != nil {
		t.Errorf("pion MESSAGE-INTEGRITY: %v", err)
	}
	if err := pion.Fingerprint.Check(pm); err != nil {
		t.Errorf("pion FINGERPRINT: %v", err)
	}
	if obs := reg.observations(); len(obs) != 1 || obs[0].STUNUsername != testUser {
		t.Errorf("recorded %+v", obs)
	}
}

func TestResponseAddress(t *testing.T) {
	conn := listen(t, "udp4", "127.0.0.1:0")
	srv := addrOf(conn)
	s := startServer(t, Config{Registry: newFakeRegistry()}, conn)
	a := newClient(t, "127.0.0.1")
	b := newClient(t, "127.0.0.1")      // same IP: the CPE's other socket
	victim := newClient(t, "127.0.0.2") // another host

	t.Run("same IP honoured", func(t *testing.T) {
		a.t, b.t, victim.t = t, t, t
		req := withID(packet(rowClassicHdr, addrRow(stun.AttrResponseAddress, b.addr())))
		a.send(srv, req)
		resp, from := b.recv()
		if from != srv || string(resp[4:20]) != string(req[4:20]) {
			t.Fatalf("got % x from %v", resp, from)
		}
		checkBounds(t, req, resp)
		m := decode(t, resp)
		if m.MappedAddress != a.addr() {
			t.Errorf("MAPPED-ADDRESS %v, want the requester %v", m.MappedAddress, a.addr())
		}
		want := []stun.AttrType{stun.AttrMappedAddress, stun.AttrSourceAddress, stun.AttrReflectedFrom}
		if got := attrTypes(m); !slices.Equal(got, want) {
			t.Errorf("attributes %v, want %v", got, want)
		}
		if rf := m.Attributes()[2].Value; be16(rf[2:]) != a.addr().Port() {
			t.Errorf("REFLECTED-FROM % x, want %v", rf, a.addr())
		}
		if got := counterValue(s, cRespAddrHonoured); got != 1 {
			t.Errorf("honoured counter %v", got)
		}
		a.expectNoAnswer(srv) // nothing went to the requester itself
	})

	t.Run("other IP refused", func(t *testing.T) {
		a.t, b.t, victim.t = t, t, t
		req := withID(packet(rowClassicHdr, addrRow(stun.AttrResponseAddress, victim.addr())))
		resp, _ := a.exchange(srv, req)
		m := decode(t, resp)
		checkAnswer(t, m, resp, 400, false)
		if got := counterValue(s, cRespAddrRefused); got != 1 {
			t.Errorf("refused counter %v", got)
		}
		// The victim's own request is answered first: nothing came
		// before it.
		victim.expectNoAnswer(srv)
	})
}

func TestChangeRequestWithoutAlternate(t *testing.T) {
	conn := listen(t, "udp4", "127.0.0.1:0")
	srv := addrOf(conn)
	s := startServer(t, Config{Registry: newFakeRegistry()}, conn)
	c := newClient(t, "127.0.0.1")
	for _, tc := range []struct {
		name string
		req  []byte
		code int
	}{
		{"change IP", packet(rowClassicHdr, "0003 0004 00000004"), 420},
		{"change port", packet(rowClassicHdr, "0003 0004 00000002"), 420},
		{"change both, RFC 5389", packet(rowCookieHdr, "0003 0004 00000006"), 420},
		{"no flags", packet(rowClassicHdr, "0003 0004 00000000"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			resp, from := c.exchange(srv, withID(tc.req))
			if from != srv {
				t.Errorf("answer from %v", from)
			}
			m := decode(t, resp)
			checkAnswer(t, m, resp, tc.code, false)
			if tc.code == 420 && !slices.Contains(m.UnknownAttributes.Slice(), stun.AttrChangeRequest) {
				t.Errorf("UNKNOWN-ATTRIBUTES %v lacks CHANGE-REQUEST", m.UnknownAttributes.Slice())
			}
			if m.ChangedAddress.IsValid() || m.OtherAddress.IsValid() {
				t.Errorf("CHANGED-ADDRESS without an alternate")
			}
		})
	}
	if got := counterValue(s, cChangeRefused); got != 3 {
		t.Errorf("refused counter %v, want 3", got)
	}
}

func TestChangeRequestWithAlternate(t *testing.T) {
	// Two wildcard sockets, two ports; two loopback IPs.
	c1 := listen(t, "udp4", "0.0.0.0:0")
	c2 := listen(t, "udp4", "0.0.0.0:0")
	p, q := addrOf(c1).Port(), addrOf(c2).Port()
	ip1, ip2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	primary, alternate := netip.AddrPortFrom(ip1, p), netip.AddrPortFrom(ip2, q)
	startServer(t, Config{Registry: newFakeRegistry(), Primary: primary, Alternate: alternate}, c1, c2)
	c := newClient(t, "127.0.0.1")

	for _, tc := range []struct {
		name     string
		to       netip.AddrPort
		flags    string
		from     netip.AddrPort
		changed  netip.AddrPort
		rfc5389  bool
		wantCode int
	}{
		{"none", primary, "00000000", primary, alternate, false, 0},
		{"change IP", primary, "00000004", netip.AddrPortFrom(ip2, p), alternate, false, 0},
		{"change port", primary, "00000002", netip.AddrPortFrom(ip1, q), alternate, false, 0},
		{"change both", primary, "00000006", alternate, alternate, false, 0},
		{"change both from the alternate", alternate, "00000006", primary, primary, false, 0},
		{"change IP, RFC 5389", primary, "00000004", netip.AddrPortFrom(ip2, p), alternate, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			hdr := rowClassicHdr
			if tc.rfc5389 {
				hdr = rowCookieHdr
			}
			resp, from := c.exchange(tc.to, withID(packet(hdr, "0003 0004 "+tc.flags)))
			m := decode(t, resp)
			checkAnswer(t, m, resp, tc.wantCode, false)
			if from != tc.from {
				t.Errorf("answer from %v, want %v", from, tc.from)
			}
			source, changed := m.SourceAddress, m.ChangedAddress
			if tc.rfc5389 {
				source, changed = m.ResponseOrigin, m.OtherAddress
			}
			if source != from {
				t.Errorf("SOURCE-ADDRESS %v, but it came from %v", source, from)
			}
			if changed != tc.changed {
				t.Errorf("CHANGED-ADDRESS %v, want %v", changed, tc.changed)
			}
		})
	}
}

func TestDrops(t *testing.T) {
	conn := listen(t, "udp4", "127.0.0.1:0")
	srv := addrOf(conn)
	s := startServer(t, Config{Registry: newFakeRegistry()}, conn)
	c := newClient(t, "127.0.0.1")

	oversized := packet(rowClassicHdr, "8022 0600 "+strings.Repeat("20", 0x600)) // 1560 bytes
	jumbo := packet(rowClassicHdr, "8022 0f00 "+strings.Repeat("20", 0xf00))     // past the read buffer
	badFP := pion.MustBuild(pion.TransactionID, pion.BindingRequest, pion.Fingerprint).Raw
	badFP[len(badFP)-1] ^= 0xff

	for _, tc := range []struct {
		name   string
		pkt    []byte
		reason counter
	}{
		{"HTTP datagram", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), cDropNotSTUN},
		{"shorter than a header", wire("0001 0000 7a1b5c03 9122"), cDropTruncated},
		{"shorter than its length", wire("0001 0024 7a1b5c03 9122e84f 106da033 c2580ef7", `0006 0008 "CPE5"`), cDropTruncated},
		{"length not a multiple of 4", wire("0001 0003 7a1b5c03 9122e84f 106da033 c2580ef7 000000"), cDropBadLength},
		{"attribute past the end", wire("0001 0008 7a1b5c03 9122e84f 106da033 c2580ef7 0006 0010 41414141"), cDropAttrOverflow},
		{"bad MAPPED-ADDRESS family", packet(rowClassicHdr, "0001 0008 0009 0001 01020304"), cDropBadAttribute},
		{"oversized", oversized, cDropTooLarge},
		{"oversized beyond the buffer", jumbo, cDropTooLarge},
		{"bad FINGERPRINT", badFP, cDropFingerprint},
		{"success response", packet("0101 0000 7a1b5c03 9122e84f 106da033 c2580ef7"), cDropNotRequest},
		{"error response", packet("0111 0000 7a1b5c03 9122e84f 106da033 c2580ef7"), cDropNotRequest},
		{"indication", packet("0011 0000 2112a442 b7e7a701 bc34d686 fa87dfae"), cDropNotRequest},
		{"shared secret request", packet("0002 0000 7a1b5c03 9122e84f 106da033 c2580ef7"), cDropMethod},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			before := counterValue(s, tc.reason)
			c.send(srv, tc.pkt)
			c.expectNoAnswer(srv)
			if got := counterValue(s, tc.reason) - before; got != 1 {
				t.Errorf("dropped counter %q moved by %v, want 1", counterDefs[tc.reason].label, got)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	conn := listen(t, "udp4", "127.0.0.1:0")
	srv := addrOf(conn)
	// One packet per 1000 s after a burst of 3: no refill during the test.
	s := startServer(t, Config{Registry: newFakeRegistry(), RatePerSource: 0.001, RateBurst: 3}, conn)
	a := newClient(t, "127.0.0.1")
	b := newClient(t, "127.0.0.2")

	var ids [][]byte
	for range 5 {
		req := withID(packet(rowClassicHdr))
		ids = append(ids, req[4:20])
		a.send(srv, req)
	}
	b.expectNoAnswer(srv) // another source is not limited; and all of a's packets were handled before
	for i := range 3 {
		resp, _ := a.recv()
		if string(resp[4:20]) != string(ids[i]) {
			t.Fatalf("answer %d echoes % x, want % x", i, resp[4:20], ids[i])
		}
	}
	if resp, _, err := a.tryRecv(50 * time.Millisecond); !isTimeout(err) {
		t.Fatalf("a fourth answer % x (%v)", resp, err)
	}
	if got := counterValue(s, cDropRateLimited); got != 2 {
		t.Errorf("rate-limited counter %v, want 2", got)
	}
}

func TestWildcard(t *testing.T) {
	for _, network := range []string{"udp4", "udp"} { // "udp" on 0.0.0.0 is a dual-stack IPv6 socket
		t.Run(network, func(t *testing.T) {
			conn := listen(t, network, "0.0.0.0:0")
			port := addrOf(conn).Port()
			reg := newFakeRegistry()
			startServer(t, Config{Registry: reg}, conn)
			c := newClient(t, "127.0.0.1")
			for i, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
				dst := netip.AddrPortFrom(netip.MustParseAddr(ip), port)
				resp, from := c.exchange(dst, withID(tr111))
				if from != dst {
					t.Errorf("sent to %v, answered from %v", dst, from)
				}
				if m := decode(t, resp); m.SourceAddress != dst || m.MappedAddress != c.addr() {
					t.Errorf("SOURCE-ADDRESS %v MAPPED-ADDRESS %v, want %v and %v", m.SourceAddress, m.MappedAddress, dst, c.addr())
				}
				obs := reg.observations()
				if len(obs) != i+1 || obs[i].Local != dst || obs[i].Mapped != c.addr() {
					t.Errorf("recorded %+v, want local %v", obs, dst)
				}
			}
		})
	}
	t.Run("udp6", func(t *testing.T) {
		conn, err := net.ListenPacket("udp6", "[::]:0")
		if err != nil {
			t.Skipf("no IPv6: %v", err)
		}
		c6, err := net.ListenPacket("udp6", "[::1]:0")
		if err != nil {
			conn.Close()
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Cleanup(func() { c6.Close() })
		reg := newFakeRegistry()
		startServer(t, Config{Registry: reg}, conn)
		c := &client{t: t, c: c6.(*net.UDPConn)}
		dst := netip.AddrPortFrom(netip.IPv6Loopback(), addrOf(conn).Port())
		resp, from := c.exchange(dst, withID(tr111))
		if from != dst {
			t.Errorf("answered from %v, want %v", from, dst)
		}
		if m := decode(t, resp); m.MappedAddress != c.addr() || m.SourceAddress != dst {
			t.Errorf("MAPPED-ADDRESS %v SOURCE-ADDRESS %v", m.MappedAddress, m.SourceAddress)
		}
		if obs := reg.observations(); len(obs) != 1 || obs[0].Local != dst {
			t.Errorf("recorded %+v", obs)
		}
	})
}

func TestListenReusePort(t *testing.T) {
	conns, err := ListenReusePort("udp4", "127.0.0.1:0", 4)
	if err != nil {
		t.Fatal(err)
	}
	addr := addrOf(conns[0])
	for _, c := range conns {
		if addrOf(c) != addr {
			t.Fatalf("sockets on %v and %v", addr, addrOf(c))
		}
	}
	startServer(t, Config{Registry: newFakeRegistry()}, conns...)
	for range 16 { // different source ports spread over the sockets
		c := newClient(t, "127.0.0.1")
		if _, from := c.exchange(addr, withID(tr111)); from != addr {
			t.Errorf("answered from %v", from)
		}
	}
}

func TestServeErrors(t *testing.T) {
	s, err := New(Config{Registry: newFakeRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.ListenPacket("ip4:icmp", "127.0.0.1")
	if err == nil { // needs privileges; any non-UDP PacketConn does
		defer tcp.Close()
		if err := s.Serve(context.Background(), tcp); !errors.Is(err, ErrNotUDP) {
			t.Errorf("Serve(ip4:icmp) = %v, want ErrNotUDP", err)
		}
	}

	conn := listen(t, "udp4", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	c := newClient(t, "127.0.0.1")
	c.exchange(addrOf(conn), withID(tr111)) // serving now
	if err := s.Serve(ctx, conn); !errors.Is(err, ErrServing) {
		t.Errorf("second Serve = %v, want ErrServing", err)
	}
	c.exchange(addrOf(conn), withID(tr111)) // still served
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel = %v", err)
	}
}

func TestServeClosedConn(t *testing.T) {
	s, err := New(Config{Registry: newFakeRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	conn := listen(t, "udp4", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), conn) }()
	newClient(t, "127.0.0.1").exchange(addrOf(conn), withID(tr111))
	conn.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
	checkNoGoroutines(t)
}

// checkNoGoroutines fails if a goroutine of this package other than the
// tests' is alive. Serve waits for all its goroutines before returning, so
// none may be left once every Serve returned; a goroutine that has just
// signalled its end (close in a defer) may still be on its way out, so the
// check looks again for a moment before it fails.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		left = left[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "stunserver.(*Server)") || strings.Contains(g, "stunserver.(*sock)") {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, g := range left {
		t.Errorf("goroutine left:\n%s", g)
	}
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, err := New(Config{Registry: newFakeRegistry(), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) == 0 {
		t.Fatal("no metrics registered")
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "crrelay_stun_") {
			t.Errorf("metric %s", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains([]string{"reason", "code", "result", "value", "outcome"}, l.GetName()) {
					t.Errorf("metric %s has label %s", mf.GetName(), l.GetName())
				}
			}
		}
	}
	// A second server on the same registry is refused, not a panic.
	if _, err := New(Config{Registry: newFakeRegistry(), Registerer: reg}); err == nil {
		t.Error("second registration succeeded")
	}
}
