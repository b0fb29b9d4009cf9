package sim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/crrelay/crrelay/stun"
)

var (
	mappedA = netip.MustParseAddrPort("203.0.113.7:51234")
	mappedB = netip.MustParseAddrPort("203.0.113.7:40000")
)

func newSTUNCPEForTest(t *testing.T, cfg STUNCPEConfig) *STUNCPE {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "cpe-1"
	}
	c, err := NewSTUNCPE(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSTUNClassicRequestsAndIntegrity follows a classic agent through its
// first binding: a request without MESSAGE-INTEGRITY, 401, the same with
// the RFC 3489 padded HMAC, and integrity on every request after.
func TestSTUNClassicRequestsAndIntegrity(t *testing.T) {
	srv := newSTUNResponder(t)
	c := newSTUNCPEForTest(t, STUNCPEConfig{
		STUNUsername: "stun-user1", // 10 bytes: padded to 12
		STUNPassword: "stun-pass",
		Server:       srv.addr(),
	})
	conn := loopbackConn(t)
	res := bindOnce(c, conn)

	req1, d := srv.next()
	if req1.typ != 0x0001 || !req1.classic() {
		t.Fatalf("type %#04x, classic %v: want a classic Binding Request", req1.typ, req1.classic())
	}
	if req1.id == (stun.TransactionID{}) {
		t.Error("all-zero transaction id")
	}
	if got := req1.types(); !equalTypes(got, tUsername, tConnReqBinding) {
		t.Errorf("attributes %x, want USERNAME, CONNECTION-REQUEST-BINDING", got)
	}
	if u, _ := req1.attr(tUsername); string(u.val) != "stun-user1  " {
		t.Errorf("USERNAME %q, want padded with spaces to 12 bytes", u.val)
	}
	if crb, _ := req1.attr(tConnReqBinding); string(crb.val) != "dslforum.org/TR-111 " {
		t.Errorf("CONNECTION-REQUEST-BINDING %q", crb.val)
	}
	if d.from != conn.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("request from %v, not from the CPE's socket", d.from)
	}
	srv.reply(d.from, errorResponse(req1, 401, "Unauthorized"))

	req2, d := srv.next()
	if req2.id == req1.id {
		t.Error("request after 401 reuses the transaction id")
	}
	if got := req2.types(); !equalTypes(got, tUsername, tConnReqBinding, tIntegrity) {
		t.Errorf("attributes %x, want USERNAME, CONNECTION-REQUEST-BINDING, MESSAGE-INTEGRITY", got)
	}
	checkRequestIntegrity(t, req2, "stun-pass")
	srv.reply(d.from, success(req2, mappedA, "stun-pass"))

	if r := waitBind(t, res); r.err != nil || r.mapped != mappedA {
		t.Fatalf("BindOnce = %v, %v; want %v", r.mapped, r.err, mappedA)
	}

	// Integrity from now on, without waiting for another 401.
	res = bindOnce(c, conn)
	req3, d := srv.next()
	checkRequestIntegrity(t, req3, "stun-pass")
	if req3.has(tBindingChange) {
		t.Error("BINDING-CHANGE without a change")
	}
	srv.reply(d.from, success(req3, mappedA, "stun-pass"))
	if r := waitBind(t, res); r.err != nil {
		t.Fatal(r.err)
	}

	got := c.Counters()
	want := STUNCounters{Requests: 3, Responses: 2, Unauthorized: 1, Mapped: mappedA}
	got.LastBinding = time.Time{}
	if got != want {
		t.Errorf("counters %+v\nwant %+v", got, want)
	}
}

func equalTypes(got []uint16, want ...uint16) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestSTUNTransactionIDCompared: a response whose id differs from the
// request's in any of the 16 bytes is ignored and counted.
func TestSTUNTransactionIDCompared(t *testing.T) {
	for _, i := range []int{0, 3, 4, 15} {
		srv := newSTUNResponder(t)
		c := newSTUNCPEForTest(t, STUNCPEConfig{Server: srv.addr()})
		res := bindOnce(c, loopbackConn(t))
		req, d := srv.next()
		wrong := req
		wrong.id[i] ^= 0x80
		srv.reply(d.from, success(wrong, mappedB, ""))
		srv.reply(d.from, success(req, mappedA, ""))
		if r := waitBind(t, res); r.err != nil || r.mapped != mappedA {
			t.Errorf("byte %d: BindOnce = %v, %v; want %v", i, r.mapped, r.err, mappedA)
		}
		if n := c.Counters().Mismatched; n != 1 {
			t.Errorf("byte %d: %d mismatched", i, n)
		}
	}
}

// TestSTUNBindingChange: after a response with a new mapped address, the
// next request carries BINDING-CHANGE with CONNECTION-REQUEST-BINDING,
// and the one after that no longer does.
func TestSTUNBindingChange(t *testing.T) {
	srv := newSTUNResponder(t)
	c := newSTUNCPEForTest(t, STUNCPEConfig{STUNUsername: "u", Server: srv.addr()})
	conn := loopbackConn(t)
	for i, step := range []struct {
		answer     netip.AddrPort
		wantChange bool
	}{
		{mappedA, false},
		{mappedA, false},
		{mappedB, false}, // the change is seen in this answer...
		{mappedB, true},  // ...and reported in the next request
		{mappedB, false},
		{mappedA, false},
		{mappedA, true},
	} {
		res := bindOnce(c, conn)
		req, d := srv.next()
		if req.has(tBindingChange) != step.wantChange {
			t.Errorf("request %d: BINDING-CHANGE %v, want %v", i, req.has(tBindingChange), step.wantChange)
		}
		if !req.has(tConnReqBinding) {
			t.Errorf("request %d: no CONNECTION-REQUEST-BINDING", i)
		}
		if bc, ok := req.attr(tBindingChange); ok && len(bc.val) != 0 {
			t.Errorf("request %d: BINDING-CHANGE not empty: %x", i, bc.val)
		}
		srv.reply(d.from, success(req, step.answer, ""))
		if r := waitBind(t, res); r.err != nil || r.mapped != step.answer {
			t.Fatalf("request %d: BindOnce = %v, %v", i, r.mapped, r.err)
		}
	}
	if cs := c.Counters(); cs.BindingChanges != 2 || cs.AddressChanges != 2 {
		t.Errorf("%d BINDING-CHANGE sent, %d address changes; want 2, 2", cs.BindingChanges, cs.AddressChanges)
	}
}

// TestSTUNErrorResponses: how each error answer ends an exchange.
func TestSTUNErrorResponses(t *testing.T) {
	tests := []struct {
		name     string
		password string
		answers  [][]byte // by request: nil is success
		wantCode int
		want     STUNCounters
	}{
		{
			name: "431", password: "p",
			answers:  [][]byte{errResp(401), errResp(431)},
			wantCode: 431,
			want:     STUNCounters{Requests: 2, Unauthorized: 1, IntegrityErrors: 1},
		},
		{
			name: "401 without a password", password: "",
			answers:  [][]byte{errResp(401)},
			wantCode: 401,
			want:     STUNCounters{Requests: 1, Unauthorized: 1},
		},
		{
			name: "401 to integrity", password: "p",
			answers:  [][]byte{errResp(401), errResp(401)},
			wantCode: 401,
			want:     STUNCounters{Requests: 2, Unauthorized: 2},
		},
		{
			name: "420", password: "p",
			answers:  [][]byte{errResp(420)},
			wantCode: 420,
			want:     STUNCounters{Requests: 1, ErrorResponses: 1},
		},
		{
			// Agents that read ERROR-CODE only as the first attribute
			// cannot tell this 401 from any failure, and do not retry.
			name: "ERROR-CODE not first", password: "p",
			answers:  [][]byte{softwareFirst401()},
			wantCode: 0,
			want:     STUNCounters{Requests: 1, ErrorResponses: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newSTUNResponder(t)
			c := newSTUNCPEForTest(t, STUNCPEConfig{STUNUsername: "u", STUNPassword: tt.password, Server: srv.addr()})
			res := bindOnce(c, loopbackConn(t))
			for _, a := range tt.answers {
				req, d := srv.next()
				resp := append([]byte(nil), a...)
				copy(resp[4:20], req.id[:])
				srv.reply(d.from, resp)
			}
			r := waitBind(t, res)
			if !isSTUNError(r.err, tt.wantCode) {
				t.Errorf("BindOnce error %v, want STUN error %d", r.err, tt.wantCode)
			}
			if got := c.Counters(); got != tt.want {
				t.Errorf("counters %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// errResp is an error response to be given the request's id.
func errResp(code int) []byte {
	return errorResponse(wireMsg{}, code, stun.ReasonPhrase(code))
}

func softwareFirst401() []byte {
	var id stun.TransactionID
	b := stun.StartMessage(nil, stun.TypeBindingError, &id)
	b = stun.AppendSoftware(b, "acs")
	return stun.AppendErrorCode(b, 401, "")
}

// TestSTUNResponseIntegrity: once the CPE authenticates, a response with
// a wrong MESSAGE-INTEGRITY is discarded (RFC 3489 9.3) and the right one
// that follows is taken.
func TestSTUNResponseIntegrity(t *testing.T) {
	srv := newSTUNResponder(t)
	c := newSTUNCPEForTest(t, STUNCPEConfig{STUNUsername: "u", STUNPassword: "right", Server: srv.addr()})
	res := bindOnce(c, loopbackConn(t))
	req, d := srv.next()
	srv.reply(d.from, errorResponse(req, 401, "Unauthorized"))
	req, d = srv.next()
	srv.reply(d.from, success(req, mappedB, "wrong"))
	srv.reply(d.from, success(req, mappedA, "right"))
	if r := waitBind(t, res); r.err != nil || r.mapped != mappedA {
		t.Fatalf("BindOnce = %v, %v; want %v", r.mapped, r.err, mappedA)
	}
	if n := c.Counters().Ignored; n != 1 {
		t.Errorf("%d ignored, want 1", n)
	}
}

// TestSTUNRFC5389Requests: an RFC 5389 client sends the magic cookie,
// USERNAME padded with zeros outside its length, the unpadded HMAC with
// FINGERPRINT after it, and reads XOR-MAPPED-ADDRESS.
func TestSTUNRFC5389Requests(t *testing.T) {
	srv := newSTUNResponder(t)
	c := newSTUNCPEForTest(t, STUNCPEConfig{
		STUNUsername: "stun-user1", STUNPassword: "stun-pass", Server: srv.addr(), RFC5389: true,
	})
	res := bindOnce(c, loopbackConn(t))
	req, d := srv.next()
	if req.classic() {
		t.Fatal("no magic cookie")
	}
	if u, _ := req.attr(tUsername); string(u.val) != "stun-user1" {
		t.Errorf("USERNAME %q", u.val)
	}
	if !bytes.Equal(req.raw[20+4+10:20+4+12], []byte{0, 0}) {
		t.Error("USERNAME not padded with zeros")
	}
	checkFingerprint(t, req)
	srv.reply(d.from, errorResponse(req, 401, "Unauthorized"))

	req, d = srv.next()
	if got := req.types(); !equalTypes(got, tUsername, tConnReqBinding, tIntegrity, tFingerprint) {
		t.Errorf("attributes %x", got)
	}
	checkRequestIntegrity(t, req, "stun-pass")
	checkFingerprint(t, req)
	// XOR-MAPPED-ADDRESS only: an RFC 5389 client reads it.
	b := stun.StartMessage(nil, stun.TypeBindingSuccess, &req.id)
	b = stun.AppendXORAddress(b, stun.AttrXORMappedAddress, mappedA)
	srv.reply(d.from, b)
	if r := waitBind(t, res); r.err != nil || r.mapped != mappedA {
		t.Fatalf("BindOnce = %v, %v; want %v", r.mapped, r.err, mappedA)
	}
}

// checkFingerprint: FINGERPRINT is last and is the CRC-32 of what
// precedes it XOR 0x5354554e (RFC 5389 15.5).
func checkFingerprint(t *testing.T, m wireMsg) {
	t.Helper()
	fp := m.attrs[len(m.attrs)-1]
	if fp.typ != tFingerprint || len(fp.val) != 4 {
		t.Fatalf("last attribute %#04x, want FINGERPRINT", fp.typ)
	}
	if got, want := binary.BigEndian.Uint32(fp.val), crc32.ChecksumIEEE(m.raw[:fp.off])^0x5354554e; got != want {
		t.Errorf("FINGERPRINT %08x, want %08x", got, want)
	}
}

// TestSTUNTimeout: an unanswered request is sent again, unchanged, and
// then the exchange gives up.
func TestSTUNTimeout(t *testing.T) {
	srv := newSTUNResponder(t)
	c := newSTUNCPEForTest(t, STUNCPEConfig{
		Server: srv.addr(), RetransmitTimeout: time.Millisecond, MaxRetransmits: 2,
	})
	res := bindOnce(c, loopbackConn(t))
	first, _ := srv.next()
	for range 2 {
		again, _ := srv.next()
		if !bytes.Equal(again.raw, first.raw) {
			t.Error("retransmission differs from the request")
		}
	}
	if r := waitBind(t, res); !errors.Is(r.err, ErrSTUNTimeout) {
		t.Fatalf("BindOnce error %v, want ErrSTUNTimeout", r.err)
	}
	if cs := c.Counters(); cs.Requests != 3 || cs.Retransmits != 2 || cs.Timeouts != 1 {
		t.Errorf("counters %+v", cs)
	}
}

// TestSTUNBusy: a CPE has one STUN client.
func TestSTUNBusy(t *testing.T) {
	srv := newSTUNResponder(t)
	c := newSTUNCPEForTest(t, STUNCPEConfig{Server: srv.addr()})
	runCPE(t, c)
	srv.next() // Run is under way
	if _, err := c.BindOnce(context.Background(), loopbackConn(t)); !errors.Is(err, ErrSTUNBusy) {
		t.Errorf("BindOnce during Run: %v", err)
	}
	if err := c.Run(context.Background(), loopbackConn(t)); !errors.Is(err, ErrSTUNBusy) {
		t.Errorf("Run during Run: %v", err)
	}
}

// TestSTUNRunEnds: Run returns nil when its context is cancelled or its
// socket closed, and closes the socket.
func TestSTUNRunEnds(t *testing.T) {
	srv := newSTUNResponder(t)
	for _, how := range []string{"cancel", "close"} {
		c := newSTUNCPEForTest(t, STUNCPEConfig{Server: srv.addr()})
		conn := loopbackConn(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx, conn) }()
		srv.next()
		if how == "cancel" {
			cancel()
		} else {
			conn.Close()
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Run = %v", how, err)
			}
		case <-time.After(testTimeout):
			t.Fatalf("%s: Run did not return", how)
		}
		cancel()
		if _, err := conn.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(srv.addr())); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s: socket still open", how)
		}
	}
}

func TestNewSTUNCPEErrors(t *testing.T) {
	srv := netip.MustParseAddrPort("192.0.2.1:3478")
	tests := []struct {
		name string
		cfg  STUNCPEConfig
		want error
	}{
		{"no name", STUNCPEConfig{Server: srv}, ErrBadName},
		{"bad name", STUNCPEConfig{Name: "a/b", Server: srv}, ErrBadName},
		{"no server", STUNCPEConfig{Name: "a"}, ErrNoSTUNServer},
		{"negative keepalive", STUNCPEConfig{Name: "a", Server: srv, Keepalive: -1}, ErrBadSTUNTimers},
		{"negative timeout", STUNCPEConfig{Name: "a", Server: srv, RetransmitTimeout: -1}, ErrBadSTUNTimers},
	}
	for _, tt := range tests {
		if _, err := NewSTUNCPE(tt.cfg); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	c, err := NewSTUNCPE(STUNCPEConfig{Name: "a", Server: srv, MaxRetransmits: -1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.Config()
	if cfg.Keepalive != 30*time.Second || cfg.RetransmitTimeout != 100*time.Millisecond || cfg.MaxRetransmits != 0 {
		t.Errorf("defaults %+v", cfg)
	}
}

// TestMessageIntegrityVector checks the simulator's HMAC against a
// classic Binding Request built byte by byte, and its padding against
// the text length.
func TestMessageIntegrityVector(t *testing.T) {
	msg := []byte{
		0x00, 0x01, 0x00, 0x00, // Binding Request, length set below
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // transaction id
		0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
		0x00, 0x06, 0x00, 0x04, 'u', 's', 'e', 'r', // USERNAME "user"
	}
	got := messageIntegrity([]byte("pw"), msg, true)
	text := make([]byte, 64) // 28 bytes zero-padded to 64
	copy(text, msg)
	text[3] = 8 + 24 // the length counts USERNAME and MESSAGE-INTEGRITY
	if want := hmacSHA1("pw", text, false); !bytes.Equal(got[:], want) {
		t.Errorf("RFC 3489 form %x, want %x", got, want)
	}
	got = messageIntegrity([]byte("pw"), msg, false)
	if want := hmacSHA1("pw", text[:len(msg)], false); !bytes.Equal(got[:], want) {
		t.Errorf("RFC 5389 form %x, want %x", got, want)
	}
}

// The connection-request vector of PROTOCOL-NOTES §1.
const (
	vecTS   = "1120673700"
	vecID   = "1234"
	vecUser = "CPE57689"
	vecCN   = "XTGRWIPC6D3IPXS3"
	vecKey  = "secret"
	vecSig  = "fda44088e52a347ce49d6312521d5621eeb40037"
)

func TestCRSignatureVector(t *testing.T) {
	if got := crSig(vecKey, vecTS, vecID, vecUser, vecCN); got != vecSig {
		t.Fatalf("test helper signs %s", got)
	}
	r, err := stun.ParseUDPConnectionRequest(crDatagram("h:1", vecTS, vecID, vecUser, vecCN, vecSig))
	if err != nil {
		t.Fatal(err)
	}
	if !validCRSignature(&r, []byte(vecKey)) {
		t.Error("vector signature refused")
	}
	if validCRSignature(&r, []byte("Secret")) {
		t.Error("vector signature accepted with another key")
	}
}

// TestSTUNConnectionRequests sends each case's datagrams, built by hand,
// to a running CPE, then one valid request as a marker: when the CPE has
// accepted the marker, it has handled everything before it.
func TestSTUNConnectionRequests(t *testing.T) {
	const host = "203.0.113.7:51234"
	signed := func(ts, id, un, cn string) string {
		return string(crDatagram(host, ts, id, un, cn, crSig(vecKey, ts, id, un, cn)))
	}
	golden := string(crDatagram(host, vecTS, vecID, vecUser, vecCN, vecSig))
	tests := []struct {
		name     string
		send     []string
		accepted uint64
		rejected CRRejections
	}{
		{"golden vector", []string{golden}, 1, CRRejections{}},
		{"upper-case sig", []string{strings.Replace(golden, vecSig, strings.ToUpper(vecSig), 1)}, 1, CRRejections{}},
		{"bare LF, no Host", []string{"GET http://" + host + "?ts=" + vecTS + "&id=" + vecID + "&un=" + vecUser +
			"&cn=" + vecCN + "&sig=" + vecSig + " HTTP/1.1\n"}, 1, CRRejections{}},
		{"bad sig", []string{strings.Replace(golden, vecSig, "fda44088e52a347ce49d6312521d5621eeb40038", 1)}, 0,
			CRRejections{BadSignature: 1}},
		{"signed with another key", []string{string(crDatagram(host, vecTS, vecID, vecUser, vecCN,
			crSig("other", vecTS, vecID, vecUser, vecCN)))}, 0, CRRejections{BadSignature: 1}},
		{"wrong un", []string{signed(vecTS, vecID, "CPE57680", vecCN)}, 0, CRRejections{WrongUsername: 1}},
		{"retransmitted copies", []string{golden, golden, golden}, 1, CRRejections{Duplicate: 2}},
		{"same id, later ts", []string{golden, signed("1120673701", vecID, vecUser, vecCN)}, 1,
			CRRejections{Duplicate: 1}},
		{"two requests in one second", []string{golden, signed(vecTS, "1235", vecUser, "other-cnonce")}, 1,
			CRRejections{Stale: 1}},
		{"copies of the dropped second request", []string{golden, signed(vecTS, "1235", vecUser, "c"),
			signed(vecTS, "1235", vecUser, "c")}, 1, CRRejections{Stale: 1, Duplicate: 1}},
		{"older ts", []string{golden, signed("1120673699", "1235", vecUser, vecCN)}, 1, CRRejections{Stale: 1}},
		{"next second", []string{golden, signed("1120673701", "1235", vecUser, vecCN)}, 2, CRRejections{}},
		{"ts in milliseconds", []string{signed("1120673700000", vecID, vecUser, vecCN)}, 0,
			CRRejections{Malformed: 1}},
		{"junk", []string{"hello"}, 0, CRRejections{Malformed: 1}},
		{"truncated STUN", []string{"\x00\x01\x00\x08" + strings.Repeat("\x00", 16)}, 0, CRRejections{Malformed: 1}},
		{"no sig", []string{"GET http://" + host + "?ts=1&id=1&un=" + vecUser + "&cn=x HTTP/1.1\r\n\r\n"}, 0,
			CRRejections{Malformed: 1}},
		{"path", []string{strings.Replace(golden, host+"?", host+"/cr?", 1)}, 0, CRRejections{Malformed: 1}},
		{"POST", []string{"POST" + strings.TrimPrefix(golden, "GET")}, 0, CRRejections{Malformed: 1}},
		{"empty", []string{""}, 0, CRRejections{Malformed: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newSTUNResponder(t) // never answers
			woke := make(chan string, 8)
			c := newSTUNCPEForTest(t, STUNCPEConfig{
				Name: "cpe-cr", CRUsername: vecUser, CRPassword: vecKey, Server: srv.addr(),
				Keepalive: time.Hour, MaxRetransmits: -1,
				OnWake: func(name string, _ time.Time) { woke <- name },
			})
			to := net.UDPAddrFromAddrPort(runCPE(t, c))
			acs := loopbackConn(t)
			marker := signed("2000000000", "999999", vecUser, "marker")
			for _, d := range append(tt.send, marker) {
				if _, err := acs.WriteTo([]byte(d), to); err != nil {
					t.Fatal(err)
				}
			}
			for range tt.accepted + 1 {
				select {
				case name := <-woke:
					if name != "cpe-cr" {
						t.Errorf("OnWake(%q)", name)
					}
				case <-time.After(testTimeout):
					t.Fatal("no wake")
				}
			}
			cs := c.Counters()
			if cs.CRAccepted != tt.accepted+1 || cs.CRRejected != tt.rejected {
				t.Errorf("accepted %d, rejected %+v; want %d, %+v", cs.CRAccepted-1, cs.CRRejected, tt.accepted, tt.rejected)
			}
			if cs.LastCRFrom != acs.LocalAddr().(*net.UDPAddr).AddrPort() || cs.LastCR.IsZero() {
				t.Errorf("last CR %v from %v", cs.LastCR, cs.LastCRFrom)
			}
		})
	}
}

// TestSTUNConnectionRequestDuringBindOnce: the socket is one, so a
// connection request arriving during a binding exchange is handled.
func TestSTUNConnectionRequestDuringBindOnce(t *testing.T) {
	srv := newSTUNResponder(t)
	woke := make(chan struct{}, 1)
	c := newSTUNCPEForTest(t, STUNCPEConfig{
		CRUsername: vecUser, CRPassword: vecKey, Server: srv.addr(),
		OnWake: func(string, time.Time) { woke <- struct{}{} },
	})
	conn := loopbackConn(t)
	res := bindOnce(c, conn)
	req, d := srv.next()
	srv.reply(d.from, crDatagram(d.from.String(), vecTS, vecID, vecUser, vecCN, vecSig))
	select {
	case <-woke:
	case <-time.After(testTimeout):
		t.Fatal("no wake")
	}
	srv.reply(d.from, success(req, d.from, ""))
	if r := waitBind(t, res); r.err != nil || r.mapped != d.from {
		t.Fatalf("BindOnce = %v, %v", r.mapped, r.err)
	}
}

// TestSTUNRequestsReadByCodec: the relay's codec, written apart from the
// simulator's integrity code, reads the simulator's requests and finds
// the integrity form each kind of agent uses.
func TestSTUNRequestsReadByCodec(t *testing.T) {
	for _, rfc5389 := range []bool{false, true} {
		cfg := STUNCPEConfig{STUNUsername: "stun-user1", STUNPassword: "stun-pass", RFC5389: rfc5389}
		id := stun.NewTransactionID(!rfc5389)
		b := appendBindingRequest(nil, &id, &cfg, true, true)
		var m stun.Message
		if err := m.Decode(b); err != nil {
			t.Fatalf("RFC5389 %v: Decode: %v", rfc5389, err)
		}
		form, err := m.CheckIntegrity([]byte("stun-pass"))
		want := stun.IntegrityRFC3489
		if rfc5389 {
			want = stun.IntegrityRFC5389
		}
		switch {
		case err != nil || form != want:
			t.Errorf("RFC5389 %v: integrity %v, %v; want %v", rfc5389, form, err, want)
		case m.Classic == rfc5389 || m.TransactionID != id:
			t.Errorf("RFC5389 %v: classic %v, id %x", rfc5389, m.Classic, m.TransactionID)
		case string(m.Username) != "stun-user1" || !m.ConnectionRequestBindingValid || !m.BindingChange:
			t.Errorf("RFC5389 %v: username %q, CONNECTION-REQUEST-BINDING %v, BINDING-CHANGE %v",
				rfc5389, m.Username, m.ConnectionRequestBindingValid, m.BindingChange)
		case rfc5389 != m.Fingerprint:
			t.Errorf("RFC5389 %v: FINGERPRINT %v", rfc5389, m.Fingerprint)
		}
		if _, err := m.CheckIntegrity([]byte("stun-pasS")); !errors.Is(err, stun.ErrIntegrity) {
			t.Errorf("RFC5389 %v: wrong key: %v", rfc5389, err)
		}
	}
}

// FuzzSTUNDatagram: whatever arrives on the socket, the CPE does not
// panic, and either hands a STUN message to its client or counts the
// datagram exactly once as a connection request, accepted or rejected.
func FuzzSTUNDatagram(f *testing.F) {
	f.Add(crDatagram("203.0.113.7:51234", vecTS, vecID, vecUser, vecCN, vecSig))
	f.Add([]byte("GET http://h?ts=1&id=1&un=CPE57689&cn=&sig=" + strings.Repeat("0", 40) + " HTTP/1.0\n"))
	var id stun.TransactionID
	f.Add(append(stun.StartMessage(nil, stun.TypeBindingSuccess, &id), 0, 1, 0, 8, 0, 1, 0xc3, 0x50, 203, 0, 113, 7))
	f.Add([]byte{0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		c, err := NewSTUNCPE(STUNCPEConfig{
			Name: "f", CRUsername: vecUser, CRPassword: vecKey, Server: netip.MustParseAddrPort("192.0.2.1:3478"),
		})
		if err != nil {
			t.Fatal(err)
		}
		m := c.datagram(p, netip.MustParseAddrPort("192.0.2.1:3478"))
		cs := c.Counters()
		counted := cs.CRAccepted + cs.CRRejected.Total()
		switch {
		case m != nil && counted != 0:
			t.Fatalf("STUN message also counted: %+v", cs)
		case m == nil && counted != 1:
			t.Fatalf("datagram counted %d times: %+v", counted, cs)
		case m != nil && !bytes.Equal(m.Raw, p):
			t.Fatal("message does not hold the datagram")
		}
	})
}

// TestSTUNLateAnswers: an answer to an earlier request of the CPE (here
// a second 401, as a server answering a retransmission sends) is late,
// not foreign, and changes nothing.
func TestSTUNLateAnswers(t *testing.T) {
	srv := newSTUNResponder(t)
	c := newSTUNCPEForTest(t, STUNCPEConfig{STUNUsername: "u", STUNPassword: "p", Server: srv.addr()})
	res := bindOnce(c, loopbackConn(t))
	req1, d := srv.next()
	srv.reply(d.from, errorResponse(req1, 401, "Unauthorized"))
	req2, d := srv.next()
	srv.reply(d.from, errorResponse(req1, 401, "Unauthorized"))
	srv.reply(d.from, success(req2, mappedA, "p"))
	if r := waitBind(t, res); r.err != nil || r.mapped != mappedA {
		t.Fatalf("BindOnce = %v, %v", r.mapped, r.err)
	}
	if cs := c.Counters(); cs.Late != 1 || cs.Mismatched != 0 || cs.Unauthorized != 1 {
		t.Errorf("counters %+v", cs)
	}
}
