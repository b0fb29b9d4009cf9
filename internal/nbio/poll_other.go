//go:build !linux

package xmpp

import "syscall"

// poller needs epoll; elsewhere New fails with ErrXmppUnsupported.
type poller struct{}

type pollEvent struct{}

func newPoller() (*poller, error)                        { return nil, ErrXmppUnsupported }
func (p *poller) arm(syscall.RawConn, uint64) error      { return ErrXmppUnsupported }
func (p *poller) wait([]pollEvent) (int, error)          { return 0, ErrXmppUnsupported }
func (p *poller) poll([]pollEvent) (int, error)          { return 0, ErrXmppUnsupported }
func (p *poller) close() error                           { return nil }
func readable(*pollEvent) bool                           { return false }
func writable(*pollEvent) bool                           { return false }
func writeNonblock(syscall.RawConn, []byte) (int, error) { return 0, ErrXmppUnsupported }
func eventKey(*pollEvent) uint64                         { return 0 }
func readNonblock(syscall.RawConn, []byte) (int, error)  { return 0, ErrXmppUnsupported }
