//go:build linux

package stunserver

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/crrelay/crrelay/stun"
)

// Batched UDP I/O with recvmmsg(2) and sendmmsg(2), and the socket's
// local destination address from IP_PKTINFO / IPV6_PKTINFO (ip(7),
// ipv6(7)).
//
// golang.org/x/net's ipv4.PacketConn ReadBatch does the same system call
// but allocates a *net.UDPAddr per packet received, and its
// ControlMessage.Marshal allocates per packet sent; at a few hundred
// thousand packets per second that garbage costs more than the rest of
// the server. Here the message headers, address and control buffers are
// allocated once per socket and reused, and addresses are read and
// written as bytes: no allocation per packet.

// mmsghdr is struct mmsghdr: a msghdr and the byte count the kernel
// fills in. Go pads it to the alignment of Msghdr as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

const (
	sockaddrLen = unix.SizeofSockaddrInet6 // room for either family
	oobLen      = 64                       // one in6_pktinfo or in_pktinfo, with room to spare
	// readBufLen exceeds stun.MaxMessageSize, so an oversized packet is
	// seen as such (by its length, or MSG_TRUNC beyond this).
	readBufLen = 2048
	// writeBufLen bounds a response; see maxResponse.
	writeBufLen = 1024
)

// batchIO reads and writes batches of datagrams on one socket. It is
// used by one goroutine at a time.
type batchIO struct {
	rc       syscall.RawConn
	v6       bool // AF_INET6 socket (dual-stack or not)
	wildcard bool // read and write PKTINFO

	rhs   []mmsghdr
	riov  []unix.Iovec
	rname []byte
	roob  []byte
	rbuf  []byte

	whs   []mmsghdr
	wiov  []unix.Iovec
	wname []byte
	woob  []byte
	wbuf  []byte

	// syscall state, in the struct so that the functions passed to
	// RawConn are bound once and calls allocate nothing.
	recvFn, sendFn func(fd uintptr) bool
	rn             int
	rerr           syscall.Errno
	woff, wend     int
	werr           syscall.Errno
}

func newBatchIO(sk *sock, n int) (*batchIO, error) {
	rc, err := sk.conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batchIO{
		rc:       rc,
		v6:       sk.v6,
		wildcard: sk.wildcard,
		rhs:      make([]mmsghdr, n),
		riov:     make([]unix.Iovec, n),
		rname:    make([]byte, n*sockaddrLen),
		roob:     make([]byte, n*oobLen),
		rbuf:     make([]byte, n*readBufLen),
		whs:      make([]mmsghdr, n),
		wiov:     make([]unix.Iovec, n),
		wname:    make([]byte, n*sockaddrLen),
		woob:     make([]byte, n*oobLen),
		wbuf:     make([]byte, n*writeBufLen),
	}
	for i := range n {
		b.riov[i].Base = &b.rbuf[i*readBufLen]
		b.riov[i].SetLen(readBufLen)
		h := &b.rhs[i].hdr
		h.Name = &b.rname[i*sockaddrLen]
		h.Iov = &b.riov[i]
		h.SetIovlen(1)
		if b.wildcard {
			h.Control = &b.roob[i*oobLen]
		}
		w := &b.whs[i].hdr
		w.Name = &b.wname[i*sockaddrLen]
		w.Iov = &b.wiov[i]
		w.SetIovlen(1)
	}
	b.recvFn = b.recvmmsg
	b.sendFn = b.sendmmsg
	return b, nil
}

// recv reads up to a batch of packets, blocking until at least one
// arrives; see packet.
func (b *batchIO) recv() (int, error) {
	for i := range b.rhs {
		h := &b.rhs[i].hdr
		h.Namelen = sockaddrLen
		if b.wildcard {
			h.SetControllen(oobLen)
		}
		h.Flags = 0
		b.rhs[i].n = 0
	}
	b.rn, b.rerr = 0, 0
	if err := b.rc.Read(b.recvFn); err != nil {
		return 0, err
	}
	if b.rerr != 0 {
		return 0, os.NewSyscallError("recvmmsg", b.rerr)
	}
	return b.rn, nil
}

func (b *batchIO) recvmmsg(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.rhs[0])), uintptr(len(b.rhs)), 0, 0, 0)
		switch e {
		case 0:
			b.rn = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until readable
		default:
			b.rerr = e
			return true
		}
	}
}

// packet returns the i-th packet of the last recv: its bytes, source,
// destination IP (for a wildcard socket; from PKTINFO), whether that
// destination is unicast, and whether the kernel truncated it.
func (b *batchIO) packet(i int) (pkt []byte, src netip.AddrPort, dst netip.Addr, unicast, truncated bool) {
	h := &b.rhs[i]
	pkt = b.rbuf[i*readBufLen : i*readBufLen+int(h.n)]
	src = parseSockaddr(b.rname[i*sockaddrLen : i*sockaddrLen+int(h.hdr.Namelen)])
	if b.wildcard {
		dst, unicast = parsePktinfo(b.roob[i*oobLen : i*oobLen+int(h.hdr.Controllen)])
	}
	return pkt, src, dst, unicast, h.hdr.Flags&unix.MSG_TRUNC != 0
}

// out returns the buffer for the i-th response of the next send.
func (b *batchIO) out(i int) []byte {
	return b.wbuf[i*writeBufLen : i*writeBufLen : (i+1)*writeBufLen]
}

// queue sets the i-th message of the next send: msg to dst, from src (a
// wildcard socket sends it from src's IP). It reports false if dst cannot
// be reached from this socket (IPv6 on an IPv4 socket).
func (b *batchIO) queue(i int, msg []byte, dst netip.AddrPort, src netip.Addr) bool {
	name := b.wname[i*sockaddrLen : (i+1)*sockaddrLen]
	nl := putSockaddr(name, dst, b.v6)
	if nl == 0 || len(msg) == 0 {
		return false
	}
	w := &b.whs[i].hdr
	w.Namelen = uint32(nl)
	b.wiov[i].Base = &msg[0]
	b.wiov[i].SetLen(len(msg))
	w.Control = nil
	w.SetControllen(0)
	if b.wildcard {
		oob := b.woob[i*oobLen : (i+1)*oobLen]
		if n := putPktinfo(oob, b.v6, src); n > 0 {
			w.Control = &oob[0]
			w.SetControllen(n)
		}
	}
	return true
}

// send sends the first n queued messages and returns how many the system
// refused. A refused message (EPERM from a firewall, EINVAL for a source
// address that is not local, ...) is skipped and the rest still sent.
func (b *batchIO) send(n int) (failed int, err error) {
	b.woff, b.wend = 0, n
	for b.woff < b.wend {
		b.werr = 0
		if err := b.rc.Write(b.sendFn); err != nil {
			return failed + b.wend - b.woff, err
		}
		if b.werr != 0 {
			failed++
			b.woff++
		}
	}
	return failed, nil
}

func (b *batchIO) sendmmsg(fd uintptr) bool {
	for b.woff < b.wend {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.whs[b.woff])), uintptr(b.wend-b.woff), 0, 0, 0)
		switch {
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			return false // wait until writable
		case e != 0:
			b.werr = e
			return true
		case n == 0:
			b.werr = unix.EIO // cannot happen; do not spin
			return true
		default:
			b.woff += int(n)
		}
	}
	return true
}

// parseSockaddr decodes a sockaddr_in or sockaddr_in6, unmapping an
// IPv4-mapped address. The IPv6 scope is dropped.
func parseSockaddr(b []byte) netip.AddrPort {
	if len(b) < 2 {
		return netip.AddrPort{}
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) >= unix.SizeofSockaddrInet4 {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
		}
	case unix.AF_INET6:
		if len(b) >= unix.SizeofSockaddrInet6 {
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), binary.BigEndian.Uint16(b[2:4]))
		}
	}
	return netip.AddrPort{}
}

// putSockaddr encodes ap for a socket of the given family into b and
// returns its length; 0 if ap does not fit the family. An IPv6 socket
// reaches IPv4 peers by IPv4-mapped addresses.
func putSockaddr(b []byte, ap netip.AddrPort, v6 bool) int {
	clear(b)
	ip := ap.Addr()
	if !v6 {
		ip = ip.Unmap()
		if !ip.Is4() {
			return 0
		}
		binary.NativeEndian.PutUint16(b, unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ip.As4()
		copy(b[4:8], a[:])
		return unix.SizeofSockaddrInet4
	}
	if !ip.IsValid() {
		return 0
	}
	binary.NativeEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ip.As16()
	copy(b[8:24], a[:])
	return unix.SizeofSockaddrInet6
}

var cmsgHdrLen = unix.CmsgLen(0)

// parsePktinfo finds the packet's destination in its control messages:
// IP_PKTINFO's ipi_addr (the header's destination) or IPV6_PKTINFO's
// ipi6_addr (IPv4 packets on a dual-stack socket come as IPv4-mapped).
// unicast is false for IPv4 when ipi_addr differs from ipi_spec_dst,
// which is how a broadcast shows (the kernel puts the interface address
// in ipi_spec_dst), and for multicast.
func parsePktinfo(oob []byte) (dst netip.Addr, unicast bool) {
	for len(oob) >= cmsgHdrLen {
		var l int
		if unix.SizeofPtr == 8 {
			l = int(binary.NativeEndian.Uint64(oob))
		} else {
			l = int(binary.NativeEndian.Uint32(oob))
		}
		if l < cmsgHdrLen || l > len(oob) {
			break
		}
		level := int32(binary.NativeEndian.Uint32(oob[unix.SizeofPtr:]))
		typ := int32(binary.NativeEndian.Uint32(oob[unix.SizeofPtr+4:]))
		data := oob[cmsgHdrLen:l]
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
			dst = netip.AddrFrom4([4]byte(data[8:12]))
			return dst, [4]byte(data[4:8]) == dst.As4() && !dst.IsMulticast()
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo { in6_addr ipi6_addr; int ipi6_ifindex; }
			dst = netip.AddrFrom16([16]byte(data[:16])).Unmap()
			return dst, !dst.IsMulticast() && dst != ipv4Broadcast
		}
		oob = oob[min(unix.CmsgSpace(l-cmsgHdrLen), len(oob)):]
	}
	return netip.Addr{}, false
}

// putPktinfo writes into oob the control message that makes a wildcard
// socket send from src, and returns its length (0 if src is invalid):
// IP_PKTINFO with ipi_spec_dst on an IPv4 socket, IPV6_PKTINFO on an IPv6
// one (IPv4-mapped for IPv4; Linux honours it on a dual-stack socket).
// The interface index is left 0: routing picks the interface.
func putPktinfo(oob []byte, v6 bool, src netip.Addr) int {
	if !src.IsValid() {
		return 0
	}
	var level, typ, dlen int
	if v6 {
		level, typ, dlen = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo
	} else {
		src = src.Unmap()
		if !src.Is4() {
			return 0
		}
		level, typ, dlen = unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo
	}
	n := unix.CmsgSpace(dlen)
	clear(oob[:n])
	if unix.SizeofPtr == 8 {
		binary.NativeEndian.PutUint64(oob, uint64(unix.CmsgLen(dlen)))
	} else {
		binary.NativeEndian.PutUint32(oob, uint32(unix.CmsgLen(dlen)))
	}
	binary.NativeEndian.PutUint32(oob[unix.SizeofPtr:], uint32(level))
	binary.NativeEndian.PutUint32(oob[unix.SizeofPtr+4:], uint32(typ))
	data := oob[cmsgHdrLen:]
	if v6 {
		a := src.As16()
		copy(data[:16], a[:])
	} else {
		a := src.As4()
		copy(data[4:8], a[:]) // ipi_spec_dst: the source address to use
	}
	return n
}

// inspectSocket finds the socket's family and whether it is dual-stack,
// and for a wildcard bind turns on PKTINFO so that every packet tells
// which local address it was sent to.
func inspectSocket(sk *sock) error {
	rc, err := sk.conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		var domain int
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if serr != nil {
			return
		}
		sk.v6 = domain == unix.AF_INET6
		if sk.v6 {
			var only int
			only, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
			sk.v6only = only != 0
		}
		if serr != nil || !sk.wildcard {
			return
		}
		if sk.v6 {
			// Also delivered, IPv4-mapped, for IPv4 packets on a
			// dual-stack socket.
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	return errors.Join(err, serr)
}

// writeMsg sends one datagram from the socket, from src's IP on a
// wildcard socket.
func (sk *sock) writeMsg(b []byte, dst netip.AddrPort, src netip.Addr) error {
	var oob [oobLen]byte
	n := 0
	if sk.wildcard {
		n = putPktinfo(oob[:], sk.v6, src)
	}
	_, _, err := sk.conn.WriteMsgUDPAddrPort(b, oob[:n], dst)
	return err
}

// ListenReusePort opens n UDP sockets bound to the same address with
// SO_REUSEPORT, so that the kernel spreads the packets of different
// sources over them and one Serve per socket uses that many cores.
// network is "udp", "udp4" or "udp6" as for net.ListenPacket; with port
// 0 all n share the port the first one got. n below 1 means 1. On error
// no socket is left open.
func ListenReusePort(network, addr string, n int) ([]net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		// A wildcard socket gets PKTINFO before it is bound, so that
		// no packet arrives without it (see Config.NotifyServing).
		wildcard := false
		if ap, err := netip.ParseAddrPort(address); err == nil {
			wildcard = ap.Addr().IsUnspecified()
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			switch {
			case serr != nil || !wildcard:
			case network == "udp6":
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
			default:
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	conns := make([]net.PacketConn, 0, max(n, 1))
	for i := range max(n, 1) {
		c, err := lc.ListenPacket(context.Background(), network, addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		if i == 0 {
			addr = c.LocalAddr().String()
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// The read buffer must hold a packet one byte longer than stun.Decode
// accepts, and the write buffer the largest response.
var (
	_ [readBufLen - stun.MaxMessageSize - 1]struct{}
	_ [writeBufLen - maxResponse]struct{}
)
