//go:build !linux

package nbio

import (
	"net"
	"syscall"
)

// Poller needs epoll; elsewhere NewPoller fails with ErrUnsupported.
type Poller struct{}

// Event is one readiness report.
type Event struct{}

func NewPoller() (*Poller, error)                   { return nil, ErrUnsupported }
func (p *Poller) Arm(syscall.RawConn, uint64) error { return ErrUnsupported }
func (p *Poller) Wait([]Event) (int, error)         { return 0, ErrUnsupported }
func (p *Poller) Poll([]Event) (int, error)         { return 0, ErrUnsupported }
func (p *Poller) Close() error                      { return nil }
func Key(*Event) uint64                             { return 0 }
func Readable(*Event) bool                          { return false }
func Writable(*Event) bool                          { return false }

// Conn needs Linux's raw system calls; elsewhere NewConn fails with
// ErrUnsupported and WrapConn returns its argument.
type Conn struct{ net.Conn }

func NewConn(net.Conn) (*Conn, error)                 { return nil, ErrUnsupported }
func WrapConn(c net.Conn) net.Conn                    { return c }
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return nil, ErrUnsupported }
func (c *Conn) Raw() syscall.RawConn                  { return nil }
func (c *Conn) TryRead([]byte) (int, error)           { return 0, ErrUnsupported }
func (c *Conn) TryWrite([]byte) (int, error)          { return 0, ErrUnsupported }
