package srv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Server is the authoritative DNS server of the broker's domain. One
// Server serves any number of sockets, UDP and TCP, each with its own
// Serve or ServeTCP call.
type Server struct {
	cfg     Config
	log     *slog.Logger
	zone    *zone
	m       *metrics
	limiter *limiter
	epoch   time.Time // origin of the limiter's monotonic clock
}

// New returns a server for cfg, whose zero fields take their defaults.
// It fails with one of the Err* configuration errors, or if registering
// the metrics fails.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &Server{
		cfg: cfg,
		log: cfg.Logger,
		// The serial only needs to grow when the zone changes, which
		// takes a restart; seconds since 1970 do until 2106.
		zone:    newZone(&cfg, uint32(now.Unix())),
		m:       m,
		limiter: newLimiter(cfg.RatePerSource, cfg.RateBurst, cfg.RateTableSize),
		epoch:   now,
	}, nil
}

// handle answers one query from src, over UDP or TCP; nil means no
// response (counted by reason).
func (s *Server) handle(req []byte, src netip.Addr, udp bool, out []byte) []byte {
	if s.limiter != nil && !s.limiter.allow(src, int64(time.Since(s.epoch))) {
		s.m.dropped[dropRateLimited].Inc()
		return nil
	}
	resp, r := s.zone.answer(req, udp, out)
	s.m.count(r)
	return resp
}

// maxConsecutiveReadErrors ends Serve on a socket that keeps failing
// rather than spinning on it.
const maxConsecutiveReadErrors = 1000

// Serve answers DNS queries on pc, a bound UDP socket (from
// net.ListenPacket, or net.FilePacketConn for systemd socket
// activation), until ctx is cancelled or pc is closed; then it returns
// nil. Serve owns pc and closes it before returning.
//
// A *net.UDPConn bound to a wildcard address (0.0.0.0 or ::) learns the
// destination of every query from IP_PKTINFO / IPV6_PKTINFO and answers
// from it: a resolver discards an answer that comes from another
// address than it asked, which the kernel's choice of source could be on
// a host with several.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	defer pc.Close()
	defer onDone(ctx, func() { pc.Close() })()

	uc, _ := pc.(*net.UDPConn)
	wildcard := false
	if uc != nil {
		if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.IsUnspecified() {
			// Either family may fail (an IPv4 socket has no IPv6
			// options); both failing leaves answers to the kernel's
			// choice of source.
			err6 := ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
			err4 := ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
			wildcard = err4 == nil || err6 == nil
			if !wildcard {
				s.log.Warn("dns: cannot learn query destinations; answers may leave from another address", "local", la, "err", err4)
			}
		}
	}
	s.log.Debug("dns: serving udp", "local", pc.LocalAddr())

	buf := make([]byte, dns.MaxMsgSize)
	out := make([]byte, 0, maxUDPSize)
	readErrors := 0
	for {
		var (
			n    int
			src  netip.AddrPort
			sess *dns.SessionUDP
			err  error
		)
		switch {
		case wildcard:
			n, sess, err = dns.ReadFromSessionUDP(uc, buf)
			if err == nil {
				src = sess.RemoteAddr().(*net.UDPAddr).AddrPort()
			}
		case uc != nil:
			n, src, err = uc.ReadFromUDPAddrPort(buf)
		default:
			var a net.Addr
			n, a, err = pc.ReadFrom(buf)
			src = addrPort(a)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			readErrors++
			s.m.readErrs.Inc()
			if readErrors >= maxConsecutiveReadErrors {
				return fmt.Errorf("srv: reading on %v: %d errors in a row, last: %w", pc.LocalAddr(), readErrors, err)
			}
			s.log.Warn("dns: read error", "local", pc.LocalAddr(), "err", err)
			continue
		}
		readErrors = 0
		if src.Port() == 0 || !src.Addr().IsValid() {
			s.m.dropped[dropBadSource].Inc()
			continue
		}
		resp := s.handle(buf[:n], src.Addr(), true, out)
		if resp == nil {
			continue
		}
		switch {
		case wildcard:
			_, err = dns.WriteToSessionUDP(uc, resp, sess)
		case uc != nil:
			_, err = uc.WriteToUDPAddrPort(resp, src)
		default:
			_, err = pc.WriteTo(resp, net.UDPAddrFromAddrPort(src))
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.m.dropped[dropSendError].Inc()
		}
	}
}

// ServeTCP answers DNS queries over TCP (RFC 7766) on connections
// accepted from ln, a bound listener, until ctx is cancelled or ln is
// closed; then it closes the connections once their current query is
// answered, waits for them, and returns nil. ServeTCP owns ln and closes
// it before returning.
//
// A connection may carry any number of queries, answered in order. It is
// closed after Config.TCPIdleTimeout without a complete query, or when
// its source goes over its rate; connections over Config.MaxTCPConns are
// closed at once.
func (s *Server) ServeTCP(ctx context.Context, ln net.Listener) error {
	var (
		conns = connSet{m: make(map[net.Conn]struct{})}
		wg    sync.WaitGroup
	)
	stop := onDone(ctx, func() {
		ln.Close()
		conns.shutdown()
	})
	defer func() {
		stop()
		ln.Close()
		conns.shutdown()
		wg.Wait()
	}()
	s.log.Debug("dns: serving tcp", "local", ln.Addr())

	slots := make(chan struct{}, s.cfg.MaxTCPConns)
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			// EMFILE and the like: wait a little for connections to
			// close, as net/http does, rather than spin or give up.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("dns: accept error", "local", ln.Addr(), "err", err, "retry_in", delay)
				t := time.NewTimer(delay)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				continue
			}
			return fmt.Errorf("srv: accepting on %v: %w", ln.Addr(), err)
		}
		delay = 0
		select {
		case slots <- struct{}{}:
		default:
			s.m.dropped[dropTCPLimit].Inc()
			c.Close()
			continue
		}
		conns.add(c)
		wg.Go(func() {
			defer func() { <-slots }()
			defer conns.remove(c)
			defer c.Close()
			s.serveConn(c, &conns)
		})
	}
}

// onDone calls f once ctx is done, from a goroutine that the returned
// stop function ends and waits for (so f has run, or never will, when
// stop returns).
func onDone(ctx context.Context, f func()) (stop func()) {
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-ctx.Done():
			f()
		case <-quit:
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

// isTemporary reports whether err is an accept error worth retrying.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn answers the queries of one TCP connection: each a two-byte
// length and a message (RFC 1035 4.2.2).
func (s *Server) serveConn(c net.Conn, conns *connSet) {
	src := addrPort(c.RemoteAddr()).Addr()
	var (
		lenBuf [2]byte
		req    []byte
		out    = make([]byte, 0, 512)
	)
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		if conns.closing() {
			// Checked after setting the deadline: shutdown sets the
			// flag before waking connections with a past deadline, so
			// one of the two is seen.
			return
		}
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if cap(req) < n {
			req = make([]byte, n)
		}
		req = req[:n]
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		resp := s.handle(req, src, false, out)
		if resp == nil {
			// Rate-limited, or not a query: nothing to say on this
			// connection.
			return
		}
		out = resp[:0]
		binary.BigEndian.PutUint16(lenBuf[:], uint16(len(resp)))
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		bufs := net.Buffers{lenBuf[:], resp}
		if _, err := bufs.WriteTo(c); err != nil {
			s.m.dropped[dropSendError].Inc()
			return
		}
	}
}

// connSet tracks the open TCP connections of one ServeTCP, to wake them
// on shutdown.
type connSet struct {
	mu   sync.Mutex
	m    map[net.Conn]struct{}
	done bool
}

func (cs *connSet) add(c net.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.m[c] = struct{}{}
	if cs.done {
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
}

func (cs *connSet) remove(c net.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.m, c)
}

func (cs *connSet) closing() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.done
}

// shutdown makes every connection's pending read fail at once; answers
// being written finish (within their write deadline).
func (cs *connSet) shutdown() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.done = true
	for c := range cs.m {
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
}

// addrPort returns the address of a *net.UDPAddr or *net.TCPAddr (or
// anything whose String is host:port), unmapped; zero if none.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	case nil:
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
