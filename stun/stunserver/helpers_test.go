package stunserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/stun"
	"github.com/crrelay/crrelay/stun/internal/wirehex"
)

// wire turns packet diagrams into bytes (see wirehex.Bytes).
func wire(rows ...string) []byte { return wirehex.Bytes(rows...) }

// Rows used by many packets.
const (
	rowCRB       = `c0 01 00 14 "dslforum.org/TR-111" 20` // CONNECTION-REQUEST-BINDING
	rowBC        = "c0 02 00 00"                          // BINDING-CHANGE
	rowMIZero    = "00 08 00 14 00000000 00000000 00000000 00000000 00000000"
	testUser     = "cpe-0001x"
	testPassword = "s3cr3t"
	rowTestUser  = `00 06 00 0c "cpe-0001x" 20 20 20` // USERNAME, space-padded
)

// withID returns a copy of pkt with transaction id bytes 4 to 20 set to
// a fresh classic (or, if pkt has the cookie, RFC 5389) id, so that every
// request of a test has its own.
func withID(pkt []byte) []byte {
	p := append([]byte(nil), pkt...)
	var id stun.TransactionID
	copy(id[:], p[4:20])
	id = stun.NewTransactionID(!id.HasCookie())
	copy(p[4:20], id[:])
	return p
}

// sign3489 fills in the MESSAGE-INTEGRITY that ends pkt (its header
// length already counting it), computed independently of the codec the
// way RFC 3489 11.2.8 says: HMAC-SHA1 over the message before the
// attribute, zero-padded to a multiple of 64 bytes.
func sign3489(pkt []byte, key string) []byte {
	off := len(pkt) - 24
	copy(pkt[off+4:], mac3489(pkt[:off], key))
	return pkt
}

func mac3489(text []byte, key string) []byte {
	t := append([]byte(nil), text...)
	for len(t)%64 != 0 {
		t = append(t, 0)
	}
	h := hmac.New(sha1.New, []byte(key))
	h.Write(t)
	return h.Sum(nil)
}

// fakeRegistry is the registry as the server sees it.
type fakeRegistry struct {
	mu      sync.Mutex
	devices map[string]registry.Device // by STUN username
	seen    []registry.BindingObservation
}

func (f *fakeRegistry) STUNPassword(u string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[u]
	return d.STUNPassword, ok
}

func (f *fakeRegistry) ObserveBinding(o registry.BindingObservation) (registry.BindingResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o.STUNUsername = strings.Clone(o.STUNUsername) // it aliases a packet buffer
	f.seen = append(f.seen, o)
	return registry.BindingResult{Outcome: registry.BindingNew}, nil
}

func (f *fakeRegistry) observations() []registry.BindingObservation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]registry.BindingObservation(nil), f.seen...)
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{devices: map[string]registry.Device{
		testUser: {ID: "dev-1", STUNUsername: testUser, STUNPassword: testPassword,
			Username: "cr-user", Password: "cr-pass"},
		"nopass": {ID: "dev-2", STUNUsername: "nopass"},
	}}
}

// listen binds a UDP socket.
func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	return c.(*net.UDPConn)
}

func addrOf(c net.PacketConn) netip.AddrPort {
	return unmapAP(c.LocalAddr().(*net.UDPAddr).AddrPort())
}

// startServer makes a server for cfg serving conns; the test's cleanup
// stops it and checks that every Serve returned nil.
func startServer(t testing.TB, cfg Config, conns ...net.PacketConn) *Server {
	t.Helper()
	serving := make(chan netip.AddrPort, len(conns))
	cfg.NotifyServing = func(local netip.AddrPort) { serving <- local }
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, len(conns))
	for _, c := range conns {
		go func() { errs <- s.Serve(ctx, c) }()
	}
	for range conns {
		select {
		case <-serving:
		case err := <-errs:
			t.Fatalf("Serve: %v", err)
		}
	}
	t.Cleanup(func() {
		cancel()
		for range conns {
			if err := <-errs; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	})
	return s
}

// client is a test CPE's socket.
type client struct {
	t testing.TB
	c *net.UDPConn
}

func newClient(t testing.TB, ip string) *client {
	t.Helper()
	c := listen(t, "udp4", ip+":0")
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c}
}

func (c *client) addr() netip.AddrPort { return addrOf(c.c) }

func (c *client) send(to netip.AddrPort, pkt []byte) {
	c.t.Helper()
	if _, err := c.c.WriteToUDPAddrPort(pkt, to); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recv returns the next datagram and its source, failing the test if
// none comes within 5 s.
func (c *client) recv() ([]byte, netip.AddrPort) {
	c.t.Helper()
	b, from, err := c.tryRecv(5 * time.Second)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return b, from
}

func (c *client) tryRecv(d time.Duration) ([]byte, netip.AddrPort, error) {
	buf := make([]byte, 2048)
	c.c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return buf[:n], unmapAP(from), nil
}

// exchange sends pkt and returns the answer, which must echo pkt's
// transaction id whole, and where it came from.
func (c *client) exchange(to netip.AddrPort, pkt []byte) ([]byte, netip.AddrPort) {
	c.t.Helper()
	c.send(to, pkt)
	resp, from := c.recv()
	if len(resp) < 20 || string(resp[4:20]) != string(pkt[4:20]) {
		c.t.Fatalf("answer % x does not echo the transaction id % x", resp, pkt[4:20])
	}
	checkBounds(c.t, pkt, resp)
	return resp, from
}

// expectNoAnswer proves that what the client sent before got no answer:
// it sends a ping to the same server socket, which handles a socket's
// packets in order, so the next datagram must be the ping's answer.
func (c *client) expectNoAnswer(to netip.AddrPort) {
	c.t.Helper()
	ping := withID(wire("00 01 00 00 00000000 00000000 00000000 00000000"))
	c.send(to, ping)
	resp, _ := c.recv()
	if len(resp) < 20 || string(resp[4:20]) != string(ping[4:20]) {
		c.t.Fatalf("got an unexpected datagram % x", resp)
	}
}

// checkBounds checks the anti-amplification bounds of a response.
func checkBounds(t testing.TB, req, resp []byte) {
	t.Helper()
	if len(resp) > maxResponse || len(resp) > maxAmplification*len(req) {
		t.Errorf("response of %d bytes to a request of %d", len(resp), len(req))
	}
}

// decode decodes a response with the codec.
func decode(t testing.TB, b []byte) *stun.Message {
	t.Helper()
	m := new(stun.Message)
	if err := m.Decode(append([]byte(nil), b...)); err != nil {
		t.Fatalf("decoding response % x: %v", b, err)
	}
	return m
}

// attrTypes lists a message's attribute types in wire order.
func attrTypes(m *stun.Message) []stun.AttrType {
	var ts []stun.AttrType
	for _, a := range m.Attributes() {
		ts = append(ts, a.Type)
	}
	return ts
}

// counterValue reads one of the server's per-packet counters.
func counterValue(s *Server, c counter) float64 { return metricValue(s.m.c[c]) }

func metricValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// isTimeout reports whether err is a read deadline.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
