package sim

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Timer behaviour of STUN CPEs, under testing/synctest: the CPE runs on
// an in-memory socket, so every goroutine of the bubble blocks on
// channels and the fake clock jumps from one timer to the next.

// memConn is an in-memory net.PacketConn: what the CPE writes comes out
// of out, what the test puts in in is what the CPE reads.
type memConn struct {
	in, out   chan []byte
	closed    chan struct{}
	closeOnce sync.Once
}

var memServer = &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 3478}

func newMemConn() *memConn {
	return &memConn{in: make(chan []byte, 16), out: make(chan []byte, 64), closed: make(chan struct{})}
}

func (c *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p), memServer, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *memConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case c.out <- bytes.Clone(b):
		return len(b), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *memConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *memConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2).To4(), Port: 7547}
}
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// timedMsg is a request the CPE sent and when, since the start.
type timedMsg struct {
	wireMsg
	at time.Duration
}

// runMem runs c on a memConn inside the bubble; the returned function
// stops it and checks that Run returned nil.
func runMem(t *testing.T, c *STUNCPE) (*memConn, func()) {
	conn := newMemConn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, conn) }()
	return conn, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// nextReq returns the next request the CPE sends and when.
func nextReq(t *testing.T, conn *memConn, start time.Time) timedMsg {
	t.Helper()
	b := <-conn.out
	return timedMsg{parseWire(t, b), time.Since(start)}
}

// TestSTUNKeepaliveCadence: one Binding Request per keepalive period.
func TestSTUNKeepaliveCadence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newSTUNCPEForTest(t, STUNCPEConfig{Server: netip.MustParseAddrPort("192.0.2.1:3478"), Keepalive: 20 * time.Second})
		start := time.Now()
		conn, stop := runMem(t, c)
		defer stop()
		for i := range 5 {
			r := nextReq(t, conn, start)
			if want := time.Duration(i) * 20 * time.Second; r.at != want {
				t.Errorf("request %d at %v, want %v", i, r.at, want)
			}
			conn.in <- success(r.wireMsg, mappedA, "")
		}
		synctest.Wait()
		if cs := c.Counters(); cs.Requests != 5 || cs.Responses != 5 || cs.Retransmits != 0 {
			t.Errorf("counters %+v", cs)
		}
	})
}

// TestSTUNRetransmissionTimers: RFC 3489 9.3 timers. An unanswered
// request is resent unchanged at 100, 300, 700, 1500, 3100, 4700, 6300
// and 7900 ms; at 9500 ms the exchange has failed, and the next one starts
// a keepalive period later with a new transaction id.
func TestSTUNRetransmissionTimers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newSTUNCPEForTest(t, STUNCPEConfig{Server: netip.MustParseAddrPort("192.0.2.1:3478")})
		start := time.Now()
		conn, stop := runMem(t, c)
		defer stop()
		first := nextReq(t, conn, start)
		for _, ms := range []int{100, 300, 700, 1500, 3100, 4700, 6300, 7900} {
			r := nextReq(t, conn, start)
			if want := time.Duration(ms) * time.Millisecond; r.at != want {
				t.Errorf("retransmission at %v, want %v", r.at, want)
			}
			if !bytes.Equal(r.raw, first.raw) {
				t.Error("retransmission differs")
			}
		}
		next := nextReq(t, conn, start)
		if want := 9500*time.Millisecond + 30*time.Second; next.at != want {
			t.Errorf("next request at %v, want %v", next.at, want)
		}
		if next.id == first.id {
			t.Error("new exchange reuses the transaction id")
		}
		// A late answer to the abandoned request is ignored.
		conn.in <- success(first.wireMsg, mappedB, "")
		conn.in <- success(next.wireMsg, mappedA, "")
		synctest.Wait()
		cs := c.Counters()
		if cs.Requests != 10 || cs.Retransmits != 8 || cs.Timeouts != 1 || cs.Late != 1 || cs.Mismatched != 0 || cs.Mapped != mappedA {
			t.Errorf("counters %+v", cs)
		}
	})
}

// TestSTUNBindingChangeSentAtOnce: when an answer shows a new mapped
// address, the request with BINDING-CHANGE goes out at once, not a
// keepalive period later.
func TestSTUNBindingChangeSentAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newSTUNCPEForTest(t, STUNCPEConfig{Server: netip.MustParseAddrPort("192.0.2.1:3478")})
		start := time.Now()
		conn, stop := runMem(t, c)
		defer stop()
		for i, step := range []struct {
			at         time.Duration
			answer     netip.AddrPort
			wantChange bool
		}{
			{0, mappedA, false},
			{30 * time.Second, mappedB, false},
			{30 * time.Second, mappedB, true},
			{60 * time.Second, mappedB, false},
		} {
			r := nextReq(t, conn, start)
			if r.at != step.at || r.has(tBindingChange) != step.wantChange {
				t.Errorf("request %d at %v with BINDING-CHANGE %v; want %v, %v",
					i, r.at, r.has(tBindingChange), step.at, step.wantChange)
			}
			conn.in <- success(r.wireMsg, step.answer, "")
		}
	})
}

// TestSTUNIntegrityRetryAndBackoff: after a 401 the request with
// MESSAGE-INTEGRITY goes out at once; after 431s the CPE backs off,
// doubling the wait, and a success resets it.
func TestSTUNIntegrityRetryAndBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newSTUNCPEForTest(t, STUNCPEConfig{
			STUNUsername: "u", STUNPassword: "p", Server: netip.MustParseAddrPort("192.0.2.1:3478"), Keepalive: 10 * time.Second,
		})
		start := time.Now()
		conn, stop := runMem(t, c)
		defer stop()
		s := time.Second
		for i, step := range []struct {
			at      time.Duration
			answer  int // error code, or 0 for success
			wantMI  bool
			comment string
		}{
			{0, 401, false, "first request"},
			{0, 431, true, "at once with integrity"},
			{10 * s, 431, true, "one keepalive period"},
			{30 * s, 431, true, "two"},
			{70 * s, 0, true, "four"},
			{80 * s, 431, true, "back to one"},
			{90 * s, 431, true, "one"},
			{110 * s, 431, true, "two"},
			{150 * s, 431, true, "four"},
			{230 * s, 431, true, "eight"},
			{310 * s, 0, true, "eight at most"},
		} {
			r := nextReq(t, conn, start)
			if r.at != step.at || r.has(tIntegrity) != step.wantMI {
				t.Errorf("request %d (%s) at %v with integrity %v; want %v, %v",
					i, step.comment, r.at, r.has(tIntegrity), step.at, step.wantMI)
			}
			if step.answer == 0 {
				conn.in <- success(r.wireMsg, mappedA, "p")
			} else {
				conn.in <- errorResponse(r.wireMsg, step.answer, "")
			}
		}
		synctest.Wait()
		if cs := c.Counters(); cs.Unauthorized != 1 || cs.IntegrityErrors != 8 || cs.Responses != 2 {
			t.Errorf("counters %+v", cs)
		}
	})
}
