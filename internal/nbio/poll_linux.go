//go:build linux

package nbio

import (
	"io"
	"net"
	"os"
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
//
// Every system call here cannot block (epoll_wait with a zero timeout,
// read and write on non-blocking sockets), so each is made raw, without
// telling the scheduler a system call began (see rawSyscall).
type Poller struct {
	f  *os.File
	rc syscall.RawConn
	fd int
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
	return &Poller{f: f, rc: rc, fd: fd}, nil
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
func (p *Poller) Wait(evs []Event) (int, error) {
	var n int
	var werr error
	err := p.rc.Read(func(fd uintptr) bool {
		n, werr = epollPoll(int(fd), evs)
		if werr == unix.EINTR {
			n, werr = 0, nil
		}
		return n > 0 || werr != nil
	})
	if err != nil {
		return 0, err
	}
	if werr != nil {
		return 0, os.NewSyscallError("epoll_wait", werr)
	}
	return n, nil
}

// Poll fills evs with the events ready now, without waiting.
func (p *Poller) Poll(evs []Event) (int, error) {
	for {
		n, err := epollPoll(p.fd, evs)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		}
		return 0, os.NewSyscallError("epoll_wait", err)
	}
}

// Close releases the poller; a goroutine in Wait returns an error.
func (p *Poller) Close() error { return p.f.Close() }

// Read reads what the socket of c holds without waiting: ErrWouldBlock
// when it is empty, (0, nil) at the end of the stream.
func Read(c syscall.RawConn, p []byte) (int, error) {
	var n int
	var rerr error
	if err := c.Read(func(fd uintptr) bool {
		for {
			n, rerr = rawSyscall(unix.SYS_READ, int(fd), p)
			if rerr != unix.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	switch {
	case rerr == unix.EAGAIN:
		return 0, ErrWouldBlock
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	}
	return n, nil
}

// Write writes what the socket of c takes without waiting: n < len(p)
// when it is full.
func Write(c syscall.RawConn, p []byte) (int, error) {
	var n int
	var werr error
	if err := c.Write(func(fd uintptr) bool {
		for {
			n, werr = rawSyscall(unix.SYS_WRITE, int(fd), p)
			if werr != unix.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	switch {
	case werr == unix.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, os.NewSyscallError("write", werr)
	}
	return n, nil
}

// rawSyscall makes read or write on fd, which must not block, as a raw
// system call. An ordinary one (unix.Read) tells the scheduler the
// goroutine entered a system call; Go's sysmon thread then checks every
// 20 µs whether to hand that goroutine's processor to another thread,
// and under load (tens of thousands of socket calls a second on every
// processor) it keeps finding some, waking a thread each time and never
// backing off to its idle rate. A call that cannot block gains nothing
// from that: it holds its processor for the few microseconds it runs.
func rawSyscall(trap uintptr, fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// epollPoll is epoll_wait with a zero timeout as a raw system call (see
// rawSyscall).
func epollPoll(epfd int, evs []Event) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// Conn is a socket whose reads and writes wait, like the net.Conn it
// wraps, through Go's netpoller and with the net.Conn's deadlines, but
// whose system calls are raw (see rawSyscall): a read or write is tried
// first and, when the socket is empty or full, the goroutine parks until
// it is not. It is for the goroutines that keep a busy connection each
// (a load tool's ACS, a session still negotiating).
type Conn struct {
	net.Conn
	rc syscall.RawConn
}

// WrapConn returns c as a Conn, or c itself if it is not a socket (a
// test's pipe).
func WrapConn(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{Conn: c, rc: rc}
}

// SyscallConn returns the socket's raw connection.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = rawSyscall(unix.SYS_READ, int(fd), p)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case rerr != nil:
		return 0, c.opError("read", os.NewSyscallError("read", rerr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *Conn) Write(p []byte) (int, error) {
	var n int
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := rawSyscall(unix.SYS_WRITE, int(fd), p[n:])
			switch err {
			case nil:
				n += m
			case unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				werr = err
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case werr != nil:
		return n, c.opError("write", os.NewSyscallError("write", werr))
	}
	return n, nil
}

// opError wraps err as net.Conn's methods do, so that callers' checks
// (errors.Is net.ErrClosed or os.ErrDeadlineExceeded, net.Error's
// Timeout) see what they would see there.
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
