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
func Read(syscall.RawConn, []byte) (int, error)     { return 0, ErrUnsupported }
func Write(syscall.RawConn, []byte) (int, error)    { return 0, ErrUnsupported }

// WrapConn returns c: raw system calls need Linux here.
func WrapConn(c net.Conn) net.Conn { return c }
