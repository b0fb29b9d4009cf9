//go:build linux

package nbio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection, the first
// wrapped.
func tcpPair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-acc
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	w, ok := WrapConn(c).(*Conn)
	if !ok {
		t.Fatal("WrapConn did not wrap a TCP connection")
	}
	return w, peer
}

// A write far larger than the socket buffers waits for the peer to read
// and arrives whole and in order; the reverse direction too.
func TestConnWaitsForRoom(t *testing.T) {
	c, peer := tcpPair(t)
	// Buffers far smaller than the write, and a peer that starts late:
	// the Write cannot finish, nor the Read begin, without waiting.
	const late = 50 * time.Millisecond
	c.Conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
	c.Conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	peer.(*net.TCPConn).SetReadBuffer(64 << 10)
	peer.(*net.TCPConn).SetWriteBuffer(64 << 10)
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(late)
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
		got <- b
	}()
	start := time.Now()
	n, err := c.Write(big)
	if err != nil || n != len(big) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(big))
	}
	if d := time.Since(start); d < late {
		t.Fatalf("Write returned after %v, before the peer read anything", d)
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("peer read %d bytes, not what was written", len(b))
	}

	go func() {
		time.Sleep(late)
		peer.Write(big)
		peer.Close()
	}()
	start = time.Now()
	b, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(b, big) {
		t.Fatalf("ReadAll = %d bytes, %v; want %d bytes and the end of the stream", len(b), err, len(big))
	}
	if d := time.Since(start); d < late {
		t.Fatalf("ReadAll returned after %v, before the peer wrote anything", d)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the end = %d, %v; want 0, EOF", n, err)
	}
}

// Deadlines and Close end a waiting Read the way they end net.Conn's.
func TestConnDeadlineAndClose(t *testing.T) {
	c, _ := tcpPair(t)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 16))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline = %v; want a net.Error timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	closeWakes(t, c, "Read", func() error {
		_, err := c.Read(make([]byte, 16))
		return err
	})
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed Conn = %v; want net.ErrClosed", err)
	}
}

// A write to a peer that reset the connection fails with an error, and
// does not kill the process.
func TestConnWriteAfterReset(t *testing.T) {
	c, peer := tcpPair(t)
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	time.Sleep(20 * time.Millisecond)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write(make([]byte, 4096))
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("Write to a reset peer = %v; want a write *net.OpError", err)
	}
}

// WrapConn leaves alone what is not a bare TCP connection: a pipe, and a
// type wrapping a socket with Read and Write of its own.
func TestWrapConnLeavesOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if WrapConn(a) != a {
		t.Fatal("WrapConn wrapped a pipe")
	}
	c, _ := tcpPair(t)
	w := countingConn{c.Conn.(*net.TCPConn)}
	if WrapConn(w) != net.Conn(w) {
		t.Fatal("WrapConn wrapped a type with its own Read and Write")
	}
}

type countingConn struct{ *net.TCPConn }

func (c countingConn) Read(p []byte) (int, error)  { return c.TCPConn.Read(p) }
func (c countingConn) Write(p []byte) (int, error) { return c.TCPConn.Write(p) }

// TryRead and TryWrite never wait: an empty socket is ErrWouldBlock, a
// full one takes part of a write or none of it; and neither allocates,
// nor do a Poller's Wait and Poll.
func TestConnTryNeverWaits(t *testing.T) {
	c, peer := tcpPair(t)
	buf := make([]byte, 64<<10)
	if n, err := c.TryRead(buf); n != 0 || err != ErrWouldBlock {
		t.Fatalf("TryRead of an empty socket = %d, %v; want 0, ErrWouldBlock", n, err)
	}
	sent, full := 0, false
	for range 100000 { // until the socket takes none of a write
		n, err := c.TryWrite(buf)
		if err != nil {
			t.Fatal(err)
		}
		sent += n
		if n == 0 {
			full = true
			break
		}
	}
	if !full {
		t.Fatalf("TryWrite never found the socket full (%d bytes taken)", sent)
	}
	got, err := io.ReadFull(peer, make([]byte, sent))
	if err != nil || got != sent {
		t.Fatalf("peer read %d of %d bytes: %v", got, sent, err)
	}

	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Arm(c.Raw(), 7); err != nil {
		t.Fatal(err)
	}
	evs := make([]Event, 8)
	small := []byte("ping")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := peer.Write(small); err != nil {
			t.Fatal(err)
		}
		if n, err := p.Wait(evs); err != nil || n == 0 {
			t.Fatalf("Wait = %d, %v", n, err)
		}
		if n, err := p.Poll(evs); err != nil || n != 0 {
			t.Fatalf("Poll after Wait = %d, %v; want 0, nil (edge-triggered)", n, err)
		}
		if n, err := c.TryRead(buf); err != nil || n == 0 {
			t.Fatalf("TryRead = %d, %v", n, err)
		}
		for {
			if _, err := c.TryRead(buf); err == ErrWouldBlock {
				break
			}
		}
		if n, err := c.TryWrite(small); n != len(small) || err != nil {
			t.Fatalf("TryWrite = %d, %v", n, err)
		}
		if _, err := io.ReadFull(peer, buf[:len(small)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("a Wait, Poll, TryRead and TryWrite allocate %.1f times; want none", allocs)
	}
}

// Concurrent Writes go out one after the other, each whole (the
// simulator's plaintext streams write keepalives and answers from two
// goroutines).
func TestConnConcurrentWrites(t *testing.T) {
	c, peer := tcpPair(t)
	const msgs = 20000
	got := make(chan []byte, 1)
	peer.SetReadDeadline(time.Now().Add(20 * time.Second)) // bytes lost: fail, not hang
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, 2*msgs*7))
		got <- b
	}()
	var wg sync.WaitGroup
	for _, m := range []string{"AAAAAAA", "BBBBBBB"} {
		wg.Go(func() {
			for range msgs {
				if _, err := c.Write([]byte(m)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b := <-got
	counts := map[string]int{}
	for len(b) >= 7 {
		counts[string(b[:7])]++
		b = b[7:]
	}
	if len(b) != 0 || counts["AAAAAAA"] != msgs || counts["BBBBBBB"] != msgs || len(counts) != 2 {
		t.Fatalf("messages read: %v (and %d bytes left); want %d of each, whole", counts, len(b), msgs)
	}
}

// A Write waiting for room ends at its deadline, and on Close.
func TestConnWriteDeadlineAndClose(t *testing.T) {
	c, _ := tcpPair(t) // the peer never reads
	big := make([]byte, 64<<20)
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := c.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n == len(big) {
		t.Fatalf("Write past the deadline = %d, %v; want part of it and a timeout", n, err)
	}
	c.SetWriteDeadline(time.Time{})
	closeWakes(t, c, "Write", func() error {
		_, err := c.Write(big)
		return err
	})
}

// closeWakes checks that closing c ends op, which waits, with
// net.ErrClosed.
func closeWakes(t *testing.T, c *Conn, name string, op func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op() }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("%s on a closed Conn = %v; want net.ErrClosed", name, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Close did not wake the %s", name)
	}
}

// Closing a Poller wakes its Wait.
func TestPollerCloseWakesWait(t *testing.T) {
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.Wait(make([]Event, 4))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	p.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Wait on a closed Poller returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Wait")
	}
}

// NewConn takes only non-blocking stream sockets: raw calls on a
// blocking one could hold a thread and its processor.
func TestNewConnRefuses(t *testing.T) {
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := NewConn(u); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("NewConn(UDP) = %v; want ErrNotSocket", err)
	}

	c, _ := tcpPair(t)
	rc := c.Raw()
	rc.Control(func(fd uintptr) { syscall.SetNonblock(int(fd), false) })
	defer rc.Control(func(fd uintptr) { syscall.SetNonblock(int(fd), true) })
	if _, err := NewConn(c.Conn); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("NewConn(blocking TCP) = %v; want ErrNotSocket", err)
	}
	if WrapConn(c.Conn) != c.Conn {
		t.Fatal("WrapConn wrapped a blocking socket")
	}
}
