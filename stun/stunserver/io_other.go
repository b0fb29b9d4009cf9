//go:build !linux

package stunserver

import (
	"net"
	"net/netip"
)

// The appliance runs on Linux: Serve needs recvmmsg/sendmmsg and
// IP_PKTINFO as io_linux.go uses them. Elsewhere the package compiles
// (for its codec-level tests and tools) but Serve fails.

type batchIO struct{}

func newBatchIO(*sock, int) (*batchIO, error) { return nil, ErrUnsupported }

func (*batchIO) recv() (int, error) { return 0, ErrUnsupported }

func (*batchIO) packet(int) (pkt []byte, src netip.AddrPort, dst netip.Addr, unicast, truncated bool) {
	return
}

func (*batchIO) out(int) []byte { return nil }

func (*batchIO) queue(int, []byte, netip.AddrPort, netip.Addr) bool { return false }

func (*batchIO) send(n int) (int, error) { return n, ErrUnsupported }

func inspectSocket(*sock) error { return ErrUnsupported }

func (sk *sock) writeMsg(b []byte, dst netip.AddrPort, _ netip.Addr) error {
	_, err := sk.conn.WriteToUDPAddrPort(b, dst)
	return err
}

// ListenReusePort is supported on Linux only.
func ListenReusePort(network, addr string, n int) ([]net.PacketConn, error) {
	return nil, ErrUnsupported
}
