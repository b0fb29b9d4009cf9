//go:build linux

package xmpp

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller tells which idle sessions have bytes to read, or room to write
// what they hold back. It is one epoll instance in which every bound
// session's socket is registered once, edge-triggered: an event says new
// bytes arrived, or the socket took a write again after refusing one. A session is read by
// one goroutine at a time (session.busy); an event for a session being
// read only tells that reader to read again (session.again), so a
// drained socket needs no system call to be watched again, and an idle
// session costs no goroutine at all.
//
// The epoll descriptor is itself handed to Go's netpoller (os.NewFile on
// a non-blocking descriptor), so waiting for events parks a goroutine
// instead of blocking a thread, and closing the file wakes it.
type poller struct {
	f  *os.File
	rc syscall.RawConn
	fd int
}

// pollEvents: readable, the peer shut its side, or writable again;
// edge-triggered. A socket reports writable only after a write found it
// full (or together with another event), so EPOLLOUT costs nothing while
// writes go through.
const pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT | unix.EPOLLET

// readable and writable tell what an event reports; errors and hang-ups
// count as both, so that the reader and the writer each hear of them.
func readable(ev *pollEvent) bool {
	return ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
}

func writable(ev *pollEvent) bool {
	return ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0
}

func newPoller() (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	f := os.NewFile(uintptr(fd), "xmpp-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &poller{f: f, rc: rc, fd: fd}, nil
}

// arm registers the socket of c to report key whenever new bytes
// arrive, and at once if some are waiting. It runs inside c.Control, so
// the descriptor cannot be closed, and its number reused by another
// connection, while epoll_ctl runs.
func (p *poller) arm(c syscall.RawConn, key uint64) error {
	op := unix.EPOLL_CTL_ADD
	ev := unix.EpollEvent{Events: pollEvents, Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))}
	var cerr error
	if err := c.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(p.fd, op, int(fd), &ev)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return os.NewSyscallError("epoll_ctl", cerr)
	}
	return nil
}

// pollEvent is one readiness report.
type pollEvent = unix.EpollEvent

func eventKey(ev *pollEvent) uint64 { return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32 }

// wait blocks until at least one socket is ready and fills evs. It
// returns an error once the poller is closed.
func (p *poller) wait(evs []pollEvent) (int, error) {
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

// poll fills evs with the events ready now, without waiting.
func (p *poller) poll(evs []pollEvent) (int, error) {
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

func (p *poller) close() error { return p.f.Close() }

// readNonblock reads what the socket of c holds without waiting:
// wouldBlock when it is empty, io.EOF-style (0, nil) at the end.
func readNonblock(c syscall.RawConn, p []byte) (int, error) {
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
		return 0, errWouldBlock
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	}
	return n, nil
}

// writeNonblock writes what the socket of c takes without waiting: n <
// len(p) when it is full.
func writeNonblock(c syscall.RawConn, p []byte) (int, error) {
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
