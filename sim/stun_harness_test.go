package sim

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/crrelay/crrelay/stun"
)

// The STUN server side of these tests is written here by hand: requests
// are read with a TLV walker of its own and checked with a plain HMAC,
// independently of the relay's codec; answers are put together with the
// codec's low-level encoders or byte by byte.

// testTimeout bounds a broken test; no test waits for it when it passes.
const testTimeout = 10 * time.Second

// stunDatagram is one datagram the fake server received.
type stunDatagram struct {
	b    []byte
	from netip.AddrPort
}

// stunResponder is a fake STUN server on loopback. It hands every
// datagram to the test, which answers by hand.
type stunResponder struct {
	t    *testing.T
	conn *net.UDPConn
	got  chan stunDatagram
}

func newSTUNResponder(t *testing.T) *stunResponder {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &stunResponder{t: t, conn: conn, got: make(chan stunDatagram, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case r.got <- stunDatagram{append([]byte(nil), buf[:n]...), from}:
			default: // the test is not listening
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return r
}

func (r *stunResponder) addr() netip.AddrPort {
	return r.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// next returns the next datagram received, parsed.
func (r *stunResponder) next() (wireMsg, stunDatagram) {
	r.t.Helper()
	select {
	case d := <-r.got:
		return parseWire(r.t, d.b), d
	case <-time.After(testTimeout):
		r.t.Fatal("no Binding Request")
		return wireMsg{}, stunDatagram{}
	}
}

func (r *stunResponder) reply(to netip.AddrPort, b []byte) {
	r.t.Helper()
	if _, err := r.conn.WriteToUDPAddrPort(b, to); err != nil {
		r.t.Fatal(err)
	}
}

// wireMsg is a STUN message as the test reads it.
type wireMsg struct {
	raw    []byte
	typ    uint16
	length int
	id     stun.TransactionID
	attrs  []wireAttr
}

type wireAttr struct {
	typ uint16
	val []byte // without padding
	off int    // of the type field
}

// parseWire walks a STUN message: 20-byte header, then type-length-value
// attributes, each value padded to a multiple of 4.
func parseWire(t *testing.T, b []byte) wireMsg {
	t.Helper()
	m, err := decodeWire(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func decodeWire(b []byte) (wireMsg, error) {
	if len(b) < 20 {
		return wireMsg{}, fmt.Errorf("%d-byte datagram", len(b))
	}
	m := wireMsg{raw: b, typ: binary.BigEndian.Uint16(b), length: int(binary.BigEndian.Uint16(b[2:]))}
	copy(m.id[:], b[4:20])
	if m.length != len(b)-20 {
		return m, fmt.Errorf("header length %d, datagram %d bytes", m.length, len(b))
	}
	for off := 20; off < len(b); {
		if off+4 > len(b) {
			return m, fmt.Errorf("attribute header at %d overflows", off)
		}
		typ := binary.BigEndian.Uint16(b[off:])
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		next := off + 4 + (l+3)/4*4
		if next > len(b) {
			return m, fmt.Errorf("attribute %#04x overflows", typ)
		}
		m.attrs = append(m.attrs, wireAttr{typ, b[off+4 : off+4+l], off})
		off = next
	}
	return m, nil
}

func (m wireMsg) attr(typ uint16) (wireAttr, bool) {
	for _, a := range m.attrs {
		if a.typ == typ {
			return a, true
		}
	}
	return wireAttr{}, false
}

func (m wireMsg) has(typ uint16) bool {
	_, ok := m.attr(typ)
	return ok
}

func (m wireMsg) types() []uint16 {
	ts := make([]uint16, len(m.attrs))
	for i, a := range m.attrs {
		ts[i] = a.typ
	}
	return ts
}

func (m wireMsg) classic() bool {
	return binary.BigEndian.Uint32(m.raw[4:8]) != 0x2112A442
}

// Attribute types, spelt out for the tests.
const (
	tMappedAddress  = 0x0001
	tSourceAddress  = 0x0004
	tUsername       = 0x0006
	tIntegrity      = 0x0008
	tErrorCode      = 0x0009
	tXORMapped      = 0x0020
	tSoftware       = 0x8022
	tFingerprint    = 0x8028
	tConnReqBinding = 0xC001
	tBindingChange  = 0xC002
)

// hmacSHA1 is HMAC-SHA1 of text, zero-padded to a multiple of 64 bytes
// when pad64 is set (RFC 3489 11.2.8).
func hmacSHA1(key string, text []byte, pad64 bool) []byte {
	if pad64 && len(text)%64 != 0 {
		padded := make([]byte, len(text)+64-len(text)%64)
		copy(padded, text)
		text = padded
	}
	h := hmac.New(sha1.New, []byte(key))
	h.Write(text)
	return h.Sum(nil)
}

// checkRequestIntegrity fails the test unless requestIntegrity accepts m.
func checkRequestIntegrity(t *testing.T, m wireMsg, key string) {
	t.Helper()
	if err := requestIntegrity(m, key); err != nil {
		t.Fatal(err)
	}
}

// requestIntegrity checks that MESSAGE-INTEGRITY is m's last attribute
// (or followed only by FINGERPRINT) and matches key: with the header
// length set to end after it, over the text before it, zero-padded to 64
// bytes for a classic request.
func requestIntegrity(m wireMsg, key string) error {
	mi, ok := m.attr(tIntegrity)
	if !ok {
		return errors.New("no MESSAGE-INTEGRITY")
	}
	last := m.attrs[len(m.attrs)-1].typ
	if len(mi.val) != 20 || (last != tIntegrity && last != tFingerprint) {
		return fmt.Errorf("MESSAGE-INTEGRITY %d bytes, last attribute %#04x", len(mi.val), last)
	}
	text := append([]byte(nil), m.raw[:mi.off]...)
	binary.BigEndian.PutUint16(text[2:], uint16(mi.off+24-20))
	want := hmacSHA1(key, text, m.classic())
	if !hmac.Equal(mi.val, want) {
		return fmt.Errorf("MESSAGE-INTEGRITY %x, want %x", mi.val, want)
	}
	if len(text)%64 != 0 && hmac.Equal(mi.val, hmacSHA1(key, text, !m.classic())) {
		return errors.New("MESSAGE-INTEGRITY also matches the other form") // the padding mattered
	}
	return nil
}

// success returns a Binding Success Response to req with MAPPED-ADDRESS
// (and XOR-MAPPED-ADDRESS to an RFC 5389 request) and SOURCE-ADDRESS;
// with a key, MESSAGE-INTEGRITY in the request's form.
func success(req wireMsg, mapped netip.AddrPort, key string) []byte {
	b := stun.StartMessage(nil, stun.TypeBindingSuccess, &req.id)
	if !req.classic() {
		b = stun.AppendXORAddress(b, stun.AttrXORMappedAddress, mapped)
	}
	b = stun.AppendAddress(b, stun.AttrMappedAddress, mapped)
	b = stun.AppendAddress(b, stun.AttrSourceAddress, netip.MustParseAddrPort("192.0.2.1:3478"))
	if key != "" {
		b = appendTestIntegrity(b, key, req.classic())
	}
	return b
}

func appendTestIntegrity(b []byte, key string, classic bool) []byte {
	text := append([]byte(nil), b...)
	binary.BigEndian.PutUint16(text[2:], uint16(len(b)+24-20))
	return stun.AppendAttr(b, stun.AttrMessageIntegrity, hmacSHA1(key, text, classic))
}

// errorResponse returns a Binding Error Response to req with ERROR-CODE
// first, byte by byte.
func errorResponse(req wireMsg, code int, reason string) []byte {
	b := []byte{0x01, 0x11, 0, 0}
	b = append(b, req.id[:]...)
	for len(reason)%4 != 0 {
		reason += " "
	}
	b = binary.BigEndian.AppendUint16(b, tErrorCode)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(reason)))
	b = append(b, 0, 0, byte(code/100), byte(code%100))
	b = append(b, reason...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
	return b
}

// loopbackConn opens a UDP socket on loopback, closed at the end of the test.
func loopbackConn(t *testing.T) *net.UDPConn {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// bindResult is what BindOnce returned.
type bindResult struct {
	mapped netip.AddrPort
	err    error
}

// bindOnce starts BindOnce on conn and returns its result's channel.
func bindOnce(c *STUNCPE, conn net.PacketConn) <-chan bindResult {
	ch := make(chan bindResult, 1)
	go func() {
		m, err := c.BindOnce(context.Background(), conn)
		ch <- bindResult{m, err}
	}()
	return ch
}

func waitBind(t *testing.T, ch <-chan bindResult) bindResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testTimeout):
		t.Fatal("BindOnce did not return")
		return bindResult{}
	}
}

// runCPE runs c on a loopback socket until the test ends and returns the
// socket's address. The socket is bound before Run starts.
func runCPE(t *testing.T, c *STUNCPE) netip.AddrPort {
	t.Helper()
	conn := loopbackConn(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// crDatagram builds a UDP connection request by hand (TR-069 Annex G).
func crDatagram(authority, ts, id, un, cn, sig string) []byte {
	return []byte("GET http://" + authority + "?ts=" + ts + "&id=" + id + "&un=" + un + "&cn=" + cn +
		"&sig=" + sig + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n")
}

// crSig signs a connection request: HMAC-SHA1 over ts id un cn, hex.
func crSig(key, ts, id, un, cn string) string {
	return hex.EncodeToString(hmacSHA1(key, []byte(ts+id+un+cn), false))
}

func isSTUNError(err error, code int) bool {
	var e *STUNError
	return errors.As(err, &e) && e.Code == code
}
