//go:build linux

package nbio

import (
	"os"
	"syscall"

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
		n, werr = unix.EpollWait(int(fd), evs, 0)
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
		n, err := unix.EpollWait(p.fd, evs, 0)
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
			n, rerr = unix.Read(int(fd), p)
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
			n, werr = unix.Write(int(fd), p)
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
