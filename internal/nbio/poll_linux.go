//go:build linux

package nbio

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller tells which idle sockets have bytes to read, or room to write
// what was held back. It is one epoll instance in which each socket is
// registered once, edge-triggered: an event says new bytes arrived, or
// the socket took a write again after refusing one. Whoever reads a
// socket must read until ErrWouldBlock (or until Records says there is
// nothing left) before it waits for the next event.
//
// The epoll descriptor is itself handed to Go's netpoller (os.NewFile on
// a non-blocking descriptor), so waiting for events parks a goroutine
// instead of blocking a thread, and closing the Poller wakes it.
// Its epoll_wait, with a zero timeout, cannot block, and is made raw
// (see Conn).
type Poller struct {
	f  *os.File
	rc syscall.RawConn
	fd int

	// collect's call, and its arguments and results.
	collectFn func(uintptr) bool
	block     bool
	evs       []Event
	n         int
	errno     syscall.Errno
}

// Event is one readiness report.
type Event = unix.EpollEvent

// events: readable, the peer shut its side, or writable again;
// edge-triggered. A socket reports writable only after a write found it
// full (or together with another event), so EPOLLOUT costs nothing while
// writes go through.
const events = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT | unix.EPOLLET

// NewPoller returns an empty poller.
func NewPoller() (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	f := os.NewFile(uintptr(fd), "nbio-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &Poller{f: f, rc: rc, fd: fd}
	p.collectFn = p.collectOnce
	return p, nil
}

// Arm registers the socket of c to report key whenever new bytes
// arrive, and at once if some are waiting. It runs inside c.Control, so
// the descriptor cannot be closed, and its number reused by another
// connection, while epoll_ctl runs. A socket is armed once; closing it
// removes it.
func (p *Poller) Arm(c syscall.RawConn, key uint64) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))}
	var cerr error
	if err := c.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return os.NewSyscallError("epoll_ctl", cerr)
	}
	return nil
}

// Key returns the key the socket of ev was armed with.
func Key(ev *Event) uint64 { return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32 }

// Readable and Writable tell what an event reports; errors and hang-ups
// count as both, so that the reader and the writer each hear of them.
func Readable(ev *Event) bool {
	return ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
}

// Writable: see Readable.
func Writable(ev *Event) bool {
	return ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0
}

// Wait blocks until at least one socket is ready and fills evs. It
// returns an error once the poller is closed.
func (p *Poller) Wait(evs []Event) (int, error) { return p.collect(evs, true) }

// Poll fills evs with the events ready now, without waiting.
func (p *Poller) Poll(evs []Event) (int, error) { return p.collect(evs, false) }

// collect runs Wait or Poll. One goroutine at a time calls them (the
// poller's loop): the call handed to the descriptor's RawConn is built
// once, not per call, and going through the RawConn means no call can
// reach a descriptor that Close released and a new socket reuses.
func (p *Poller) collect(evs []Event, block bool) (int, error) {
	p.evs, p.block = evs, block
	err := p.rc.Read(p.collectFn)
	n, errno := p.n, p.errno
	p.evs = nil
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, os.NewSyscallError("epoll_wait", errno)
	}
	return n, nil
}

// collectOnce is collect's call. While no event is ready, a blocking
// collect reports false, to be called again once the epoll descriptor
// is readable.
func (p *Poller) collectOnce(fd uintptr) bool {
	for {
		p.n, p.errno = epollPoll(int(fd), p.evs)
		if p.errno != unix.EINTR {
			return p.n > 0 || p.errno != 0 || !p.block
		}
	}
}

// Close releases the poller; a goroutine in Wait returns an error.
func (p *Poller) Close() error { return p.f.Close() }

// epollPoll is epoll_wait with a zero timeout, as a raw system call (see
// Conn).
func epollPoll(epfd int, evs []Event) (int, syscall.Errno) {
	if len(evs) == 0 {
		return 0, 0
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// Conn is a socket read and written with raw system calls: TryRead and
// TryWrite never wait, and Read and Write wait, like those of the
// net.Conn it wraps, through Go's netpoller and with its deadlines.
//
// Raw, because every call here is made only on a non-blocking socket
// and so cannot block. An ordinary one (unix.Read, or net.Conn's own)
// tells the scheduler the goroutine entered a system call; Go's sysmon
// thread then checks every 20 µs whether to hand its processor to
// another thread, and under load (tens of thousands of socket calls a
// second on every processor) it keeps finding some, waking a thread
// each time and never backing off to its idle rate. A call that cannot
// block gains nothing from that: it holds its processor for the few
// microseconds it runs.
//
// The calls handed to the net.Conn's RawConn are built once per Conn, so
// that a read or write allocates nothing. Like a net.Conn, a Conn takes
// one read and one write at a time: concurrent Writes go out one after
// the other, each whole.
type Conn struct {
	net.Conn
	rc   syscall.RawConn
	r, w rawOp
}

// rawOp is a Conn's reads or its writes: the lock that makes them one at
// a time (held through a Read or TryRead, a Write or TryWrite across its
// partial writes), and the call handed to RawConn with its arguments and
// results.
type rawOp struct {
	mu    sync.Mutex
	trap  uintptr // SYS_READ or SYS_WRITE
	p     []byte
	wait  bool // on EAGAIN, report false: the netpoller waits, then calls again
	n     int
	errno syscall.Errno
	fn    func(uintptr) bool
}

func (o *rawOp) call(fd uintptr) bool {
	for {
		n, errno := o.syscall(fd)
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN && o.wait:
			return false
		case errno != 0:
			o.n, o.errno = 0, errno
		default:
			o.n, o.errno = n, 0
		}
		return true
	}
}

// syscall makes o's read or write once.
func (o *rawOp) syscall(fd uintptr) (int, syscall.Errno) {
	if raceEnabled {
		// The race detector sees the buffers the kernel reads and
		// writes, and the order a socket gives, only through the
		// ordinary calls.
		var n int
		var err error
		if o.trap == unix.SYS_READ {
			n, err = syscall.Read(int(fd), o.p)
		} else {
			n, err = syscall.Write(int(fd), o.p)
		}
		if err != nil {
			return 0, err.(syscall.Errno)
		}
		return n, 0
	}
	n, _, errno := unix.RawSyscall(o.trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(o.p))), uintptr(len(o.p)))
	return int(n), errno
}

// do runs o once over p through rc; the caller holds o.mu.
func (o *rawOp) do(rc syscall.RawConn, p []byte, wait bool) (int, syscall.Errno, error) {
	o.p, o.wait = p, wait
	var err error
	if o.trap == unix.SYS_READ {
		err = rc.Read(o.fn)
	} else {
		err = rc.Write(o.fn)
	}
	n, errno := o.n, o.errno
	o.p = nil // keep no caller's buffer alive
	return n, errno, err
}

// try runs o once over p without waiting; again reports that the
// socket was empty (a read) or full (a write).
func (o *rawOp) try(rc syscall.RawConn, p []byte) (n int, again bool, err error) {
	o.mu.Lock()
	n, errno, err := o.do(rc, p, false)
	o.mu.Unlock()
	switch {
	case err != nil:
		return 0, false, err
	case errno == unix.EAGAIN:
		return 0, true, nil
	case errno != 0:
		return 0, false, os.NewSyscallError(o.name(), errno)
	}
	return n, false, nil
}

func (o *rawOp) name() string {
	if o.trap == unix.SYS_READ {
		return "read"
	}
	return "write"
}

// NewConn wraps c, which must be a non-blocking stream socket, as every
// TCP connection of package net is: a raw call on a blocking one could
// hold its thread, and the processor with it, for as long as it waits.
func NewConn(c net.Conn) (*Conn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, ErrNotSocket
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var typ, flags int
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		if typ, cerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); cerr == nil {
			flags, cerr = unix.FcntlInt(fd, unix.F_GETFL, 0)
		}
	}); err != nil {
		return nil, err
	}
	switch {
	case cerr != nil:
		return nil, fmt.Errorf("%w: %v", ErrNotSocket, cerr)
	case typ != unix.SOCK_STREAM:
		return nil, fmt.Errorf("%w: not a stream socket", ErrNotSocket)
	case flags&unix.O_NONBLOCK == 0:
		return nil, fmt.Errorf("%w: blocking", ErrNotSocket)
	}
	nc := &Conn{Conn: c, rc: rc}
	nc.r.trap, nc.w.trap = unix.SYS_READ, unix.SYS_WRITE
	nc.r.fn, nc.w.fn = nc.r.call, nc.w.call
	return nc, nil
}

// WrapConn returns c as a Conn if it is a *net.TCPConn, or else c itself:
// a type that wraps a socket may do something in its own Read or Write
// (count, throttle, inject faults) that a Conn would bypass.
func WrapConn(c net.Conn) net.Conn {
	if _, ok := c.(*net.TCPConn); !ok {
		return c
	}
	if nc, err := NewConn(c); err == nil {
		return nc
	}
	return c
}

// SyscallConn returns the socket's raw connection.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// Raw returns the socket's raw connection (for Poller.Arm).
func (c *Conn) Raw() syscall.RawConn { return c.rc }

// TryRead reads what the socket holds without waiting: ErrWouldBlock
// when it is empty, (0, nil) for a non-empty p at the end of the stream.
func (c *Conn) TryRead(p []byte) (int, error) {
	n, again, err := c.r.try(c.rc, p)
	if again {
		return 0, ErrWouldBlock
	}
	return n, err
}

// TryWrite writes what the socket takes without waiting: n < len(p)
// when it is full.
func (c *Conn) TryWrite(p []byte) (int, error) {
	n, _, err := c.w.try(c.rc, p)
	return n, err
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.r.mu.Lock()
	n, errno, err := c.r.do(c.rc, p, true)
	c.r.mu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *Conn) Write(p []byte) (int, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	n := 0
	for n < len(p) {
		m, errno, err := c.w.do(c.rc, p[n:], true)
		switch {
		case err != nil:
			return n, c.opError("write", err)
		case errno != 0:
			return n, c.opError("write", os.NewSyscallError("write", errno))
		case m <= 0 || m > len(p)-n:
			// A write that takes nothing without an error, or reports
			// more than it was given, would loop forever or overrun.
			return n, c.opError("write", io.ErrUnexpectedEOF)
		}
		n += m
	}
	return n, nil
}

// opError wraps err as net.Conn's methods do, so that callers' checks
// (errors.Is net.ErrClosed or os.ErrDeadlineExceeded, net.Error's
// Timeout) see what they would see there.
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
