package xmpp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/crrelay/crrelay/internal/nbio"
)

// tlsPair returns a client TLS conn and the server's tls.Conn over an
// nbConn in non-blocking mode, as a bound session reads.
func tlsPair(t *testing.T) (*tls.Conn, *tls.Conn, *nbConn) {
	t.Helper()
	nb, peer := boundConn(t)
	nb.nonblock = false // the handshake waits, as negotiation does
	type dialed struct {
		c   *tls.Conn
		err error
	}
	client := make(chan dialed, 1)
	go func() {
		c := tls.Client(peer, &tls.Config{InsecureSkipVerify: true})
		client <- dialed{c, c.Handshake()}
	}()
	sc := tls.Server(nb, testTLS(t))
	if err := sc.Handshake(); err != nil {
		t.Fatal(err)
	}
	d := <-client
	if d.err != nil {
		t.Fatal(d.err)
	}
	cc := d.c
	t.Cleanup(func() { cc.Close() })
	// TLS 1.3 servers send session tickets after the handshake; a first
	// exchange gets them out of the way, so only application records
	// follow.
	if _, err := cc.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := sc.Read(buf); err != nil {
		t.Fatal(err)
	}
	nb.nonblock = true
	return cc, sc, nb
}

// readSome reads from sc as serviceRead does, waiting while the socket
// is empty.
func readSome(t *testing.T, sc *tls.Conn, nb *nbConn, buf []byte) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		nb.startRead()
		n, err := sc.Read(buf)
		if err == nil {
			return n
		}
		if !errors.Is(err, errWouldBlock) || time.Now().After(deadline) {
			t.Fatalf("read: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDrained checks when a session may go idle without reading again:
// after one record read whole, not while tls.Conn holds a second one.
func TestDrained(t *testing.T) {
	cc, sc, nb := tlsPair(t)
	buf := make([]byte, 4096)

	if _, err := cc.Write([]byte("<presence/>")); err != nil {
		t.Fatal(err)
	}
	if n := readSome(t, sc, nb, buf); string(buf[:n]) != "<presence/>" {
		t.Fatalf("read %q", buf[:n])
	}
	if !nb.drained() {
		t.Fatal("one record read whole: not reported drained")
	}

	// Two records in the socket before the read: the first Read returns
	// the first record's data and tls.Conn keeps the second.
	for _, s := range []string{"<a/>", "<b/>"} {
		if _, err := cc.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := readSome(t, sc, nb, buf); string(buf[:n]) != "<a/>" {
		t.Fatalf("read %q", buf[:n])
	}
	if nb.drained() {
		t.Fatal("reported drained with a record left in tls.Conn")
	}
	nb.startRead()
	n, err := sc.Read(buf)
	if err != nil || string(buf[:n]) != "<b/>" {
		t.Fatalf("second read: %q, %v", buf[:n], err)
	}
	if nb.drained() {
		t.Fatal("reported drained after a record taken from tls.Conn's buffer, not the socket")
	}
	nb.startRead()
	if _, err := sc.Read(buf); !errors.Is(err, errWouldBlock) {
		t.Fatalf("third read: %v, want would block", err)
	}

	// A record that does not fit the read's buffer in one go.
	big := make([]byte, 3000)
	for i := range big {
		big[i] = 'x'
	}
	if _, err := cc.Write(big); err != nil {
		t.Fatal(err)
	}
	small := make([]byte, 1000)
	if n := readSome(t, sc, nb, small); n != len(small) {
		t.Fatalf("read %d bytes, want %d", n, len(small))
	}
	// n == len(buf): serviceRead reads again whatever drained says; the
	// rest comes from tls.Conn's buffer without a socket read.
	got := len(small)
	for got < len(big) {
		nb.startRead()
		n, err := sc.Read(small)
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		got += n
	}
}

// boundConn returns an nbConn in the mode of a bound session (never
// waiting) over a loopback TCP connection, and the connection's other end.
func boundConn(t *testing.T) (*nbConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	sock, err := nbio.NewConn(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &nbConn{Conn: sock, nonblock: true}, peer
}

// TestWriteBacklog checks that a bound session's writes never wait: what
// a socket whose peer does not read refuses is kept, in order, up to
// maxBacklog, and sent by flush once the peer reads.
func TestWriteBacklog(t *testing.T) {
	c, peer := boundConn(t)

	// Write numbered chunks until the socket refuses some.
	chunk := make([]byte, 1000)
	var sent int
	start := time.Now()
	for c.out == nil {
		for i := range chunk {
			chunk[i] = byte(sent + i)
		}
		n, err := c.Write(chunk)
		if err != nil || n != len(chunk) {
			t.Fatalf("write %d: %d, %v", sent, n, err)
		}
		sent += len(chunk)
		if time.Since(start) > 10*time.Second {
			t.Fatal("the socket never refused a write")
		}
	}
	if !c.stalledSince(time.Now().Add(time.Second).UnixNano()) || c.stalledSince(start.Add(-time.Second).UnixNano()) {
		t.Fatalf("stalled since %d, started %d", c.outSince.Load(), start.UnixNano())
	}
	// Fill the backlog to its bound: the write past it fails.
	for len(*c.out)+len(chunk) <= maxBacklog {
		for i := range chunk {
			chunk[i] = byte(sent + i)
		}
		if _, err := c.Write(chunk); err != nil {
			t.Fatalf("write within the bound: %v", err)
		}
		sent += len(chunk)
	}
	if _, err := c.Write(chunk); !errors.Is(err, errBacklog) {
		t.Fatalf("write past the bound: %v, want errBacklog", err)
	}

	// The peer reads: flush sends the rest, and every byte arrives once,
	// in order.
	got := 0
	buf := make([]byte, 64<<10)
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	for got < sent {
		n, err := peer.Read(buf)
		for i := range n {
			if buf[i] != byte(got+i) {
				t.Fatalf("byte %d: %d, want %d", got+i, buf[i], byte(got+i))
			}
		}
		got += n
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, sent, err)
		}
		if err := c.flush(); err != nil {
			t.Fatal(err)
		}
	}
	if c.out != nil || c.outSince.Load() != 0 {
		t.Fatalf("backlog left after all was read: %d bytes", len(*c.out))
	}
}

// TestWriteWhileFlushing: tls.Conn writes from inside Read (alerts, key
// updates) without the session's wmu, while the poller may flush the
// backlog; every byte still arrives once, in order (and -race sees no
// race on the backlog).
func TestWriteWhileFlushing(t *testing.T) {
	c, peer := boundConn(t)
	// Small socket buffers, so that the socket refuses writes often.
	peer.(*net.TCPConn).SetReadBuffer(16 << 10)
	c.Conn.Conn.(*net.TCPConn).SetWriteBuffer(16 << 10)

	const total = 128 << 10
	got := make(chan error, 1)
	go func() { // starts late, so that a backlog builds up
		time.Sleep(50 * time.Millisecond)
		buf := make([]byte, 4096)
		peer.SetReadDeadline(time.Now().Add(20 * time.Second))
		for n := 0; n < total; {
			m, err := peer.Read(buf)
			for i := range m {
				if buf[i] != byte((n+i)%251) {
					got <- fmt.Errorf("byte %d: %d, want %d", n+i, buf[i], byte((n+i)%251))
					return
				}
			}
			n += m
			if err != nil {
				got <- fmt.Errorf("after %d of %d bytes: %v", n, total, err)
				return
			}
		}
		got <- nil
	}()
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() { // the poller, flushing on every "event"
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.flush(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	chunk := make([]byte, 997)
	backlogged := 0 // writes that found a backlog
	for sent := 0; sent < total; {
		c.omu.Lock()
		if c.out != nil {
			backlogged++
		}
		c.omu.Unlock()
		k := min(len(chunk), total-sent)
		for i := range k {
			chunk[i] = byte((sent + i) % 251)
		}
		if _, err := c.Write(chunk[:k]); errors.Is(err, errBacklog) {
			select {
			case err := <-got:
				t.Fatalf("the reader stopped: %v", err)
			case <-time.After(time.Millisecond): // let it catch up
			}
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		sent += k
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		c.omu.Lock()
		empty := c.out == nil
		c.omu.Unlock()
		if empty || time.Now().After(deadline) {
			break
		}
	}
	close(stop)
	<-flushed
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if backlogged == 0 {
		t.Fatal("no write found a backlog: the test did not test")
	}
}

// After STARTTLS the record follower starts at TLS's first byte: the
// clear-text stream before it is not taken for records, so that a
// session reading one stanza in one record finds itself drained.
func TestRecordsAfterSTARTTLS(t *testing.T) {
	tb := startBroker(t, nil)
	tb.accounts.set("tls@"+testDomain, creds(t, "pw"))
	for _, direct := range []bool{false, true} {
		addr := tb.addr
		if direct {
			addr = tb.tlsAddr
		}
		c := dial(t, addr, direct)
		c.login("tls", "pw", fmt.Sprintf("direct-%v", direct))
		c.ping()
		tb.mu.RLock()
		s := tb.byFull[fmt.Sprintf("tls@%s/direct-%v", testDomain, direct)]
		tb.mu.RUnlock()
		if s == nil {
			t.Fatal("session not found")
		}
		s.rmu.Lock() // the reader's: its writes are visible once it is idle
		aligned := s.nb.records.AtBoundary()
		s.rmu.Unlock()
		if !aligned {
			t.Errorf("direct TLS %v: record framing lost after the ping", direct)
		}
	}
}
