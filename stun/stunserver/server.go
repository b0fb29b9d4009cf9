package stunserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Server is a TR-111 STUN server and UDP connection-request sender. One
// Server serves any number of sockets, each with its own Serve call; a
// connection request leaves from whichever served socket matches the
// binding's local address.
type Server struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	limiter *limiter
	epoch   time.Time // origin of the limiter's monotonic clock
	socks   sockTable
	cr      crTable
	// now is the clock of UDP connection requests (their ts); tests
	// replace it.
	now func() time.Time
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
	return &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		m:       m,
		limiter: newLimiter(cfg.RatePerSource, cfg.RateBurst, cfg.RateTableSize),
		epoch:   time.Now(),
		cr:      crTable{m: make(map[string]*crEntry)},
		now:     time.Now,
	}, nil
}

// Serve answers STUN requests on conn, which must be a bound
// *net.UDPConn (from net.ListenPacket, ListenReusePort or
// net.FilePacketConn for systemd socket activation), until ctx is
// cancelled or conn is closed; then it returns nil. Serve owns conn and
// closes it before returning (unless it returns ErrNotUDP or
// ErrServing). While Serve runs, SendConnectionRequest can send from
// conn's address.
//
// A socket bound to a wildcard address (0.0.0.0 or ::) learns the
// destination of every request from IP_PKTINFO / IPV6_PKTINFO and
// answers from that address, which is also the binding's Local: a UDP
// connection request must leave from exactly the address the CPE sends
// its binding requests to.
//
// Call Serve once per socket (a second call returns ErrServing). On
// stopping, it lets the retransmissions of connection requests sent from
// conn finish for up to Config.ShutdownGrace, then cancels them, and
// waits for its goroutines.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("%w, got %T", ErrNotUDP, conn)
	}
	sk, err := newSock(uc)
	if err != nil {
		uc.Close()
		return fmt.Errorf("stunserver: socket %v: %w", conn.LocalAddr(), err)
	}
	sk.rtq = newRTQueue(s.cfg.Retransmits)
	if err := s.socks.add(sk); err != nil {
		return err // served already: leave it to the Serve that owns it
	}
	bio, err := newBatchIO(sk, s.cfg.BatchSize)
	var rtio *batchIO
	if err == nil {
		rtio, err = newBatchIO(sk, rtBatch)
	}
	if err != nil {
		s.socks.remove(sk)
		uc.Close()
		return fmt.Errorf("stunserver: socket %v: %w", sk.local, err)
	}
	rtDone := make(chan struct{})
	go func() {
		defer close(rtDone)
		s.retransmitLoop(sk, s.batchSender(sk, rtio))
	}()
	s.log.Debug("stun: serving", "local", sk.local, "wildcard", sk.wildcard)
	if s.cfg.NotifyServing != nil {
		s.cfg.NotifyServing(sk.local)
	}

	// Cancelling ctx wakes the reader with a read deadline in the past
	// rather than by closing the socket, which the retransmissions still
	// need.
	stopWatch, watchDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-ctx.Done():
			_ = uc.SetReadDeadline(time.Unix(1, 0))
		case <-stopWatch:
		}
	}()

	err = s.readLoop(ctx, sk, bio)

	close(stopWatch)
	<-watchDone
	s.socks.remove(sk)
	s.drain(sk)
	<-rtDone
	uc.Close()
	return err
}

// readLoop reads batches of packets, answers them in a batch, and counts.
// maxConsecutiveReadErrors ends Serve on a socket that keeps failing
// rather than spinning on it.
const maxConsecutiveReadErrors = 1000

func (s *Server) readLoop(ctx context.Context, sk *sock, bio *batchIO) error {
	w := newWorker(s, sk)
	defer w.cnt.flush(s.m)
	readErrors := 0
	for {
		n, err := bio.recv()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// Someone else's deadline, though Serve owns the
				// socket: clear it, unless ctx was cancelled
				// meanwhile (the cancel sets it after ctx is done).
				_ = sk.conn.SetReadDeadline(time.Time{})
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			// ENOMEM, ENOBUFS and the like pass: count, log, go on.
			// Only a socket that keeps failing ends Serve (and with it,
			// through the caller's errgroup, the appliance).
			readErrors++
			w.cnt[cReadError]++
			if readErrors >= maxConsecutiveReadErrors {
				return fmt.Errorf("stunserver: reading on %v: %d errors in a row, last: %w", sk.local, readErrors, err)
			}
			s.log.Warn("stun: read error", "local", sk.local, "err", err)
			continue
		}
		readErrors = 0
		now := time.Now()
		nout := 0
		for i := range n {
			pkt, src, dst, unicast, truncated := bio.packet(i)
			w.cnt[cPackets]++
			local := sk.local
			if sk.wildcard {
				switch {
				case !dst.IsValid():
					w.cnt[cDropNoDestination]++
					continue
				case !unicast:
					// Never answer a broadcast or multicast: the
					// source would be the group, and one packet would
					// get many answers.
					w.cnt[cDropNotUnicast]++
					continue
				}
				local = netip.AddrPortFrom(dst, sk.local.Port())
			}
			if truncated {
				w.cnt[cDropTooLarge]++
				continue
			}
			r := w.handle(pkt, src, local, now, bio.out(nout))
			switch {
			case r.msg == nil:
			case r.via != nil && r.via != sk:
				// CHANGE-REQUEST: answered from another socket; rare.
				if err := r.via.writeMsg(r.msg, r.to, r.from.Addr()); err != nil {
					w.cnt[cSendError]++
				}
			case bio.queue(nout, r.msg, r.to, r.from.Addr()):
				nout++
			default:
				w.cnt[cSendError]++
			}
		}
		// Counted before sending, so that whoever got an answer sees
		// the metrics of its batch; send errors go with the next batch.
		w.cnt.flush(s.m)
		if nout > 0 {
			failed, err := bio.send(nout)
			w.cnt[cSendError] += uint64(failed)
			if err != nil && !errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("stunserver: writing on %v: %w", sk.local, err)
			}
		}
	}
}

// drain stops new work on sk, lets its retransmissions run for the grace
// period, cancels the rest and waits for them.
func (s *Server) drain(sk *sock) {
	sk.mu.Lock()
	sk.closing = true
	sk.mu.Unlock()
	done := make(chan struct{})
	go func() {
		sk.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(s.cfg.ShutdownGrace)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	close(sk.cancel)
	<-done
}

// sock is one served socket.
type sock struct {
	conn     *net.UDPConn
	local    netip.AddrPort // bound address, unmapped; unspecified IP for a wildcard
	v6       bool           // AF_INET6
	v6only   bool           // AF_INET6 without IPv4-mapped traffic
	wildcard bool

	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup // connection requests with copies still to send
	cancel  chan struct{}  // closed to cancel retransmissions
	rtq     *rtQueue       // their schedule
}

func newSock(uc *net.UDPConn) (*sock, error) {
	la, ok := uc.LocalAddr().(*net.UDPAddr)
	if !ok || la == nil {
		return nil, ErrNotUDP
	}
	local := unmapAP(la.AddrPort())
	sk := &sock{
		conn:     uc,
		local:    netip.AddrPortFrom(local.Addr().WithZone(""), local.Port()),
		wildcard: local.Addr().IsUnspecified(),
		cancel:   make(chan struct{}),
	}
	if err := inspectSocket(sk); err != nil {
		return nil, err
	}
	return sk, nil
}

// acquire registers one connection request on sk; false if sk is
// stopping. sk.wg.Done is called after its last copy (or when it is
// dropped).
func (sk *sock) acquire() bool {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if sk.closing {
		return false
	}
	sk.wg.Add(1)
	return true
}

// sendsFrom reports whether sk can send from local: bound to it, or a
// wildcard of its port and family.
func (sk *sock) sendsFrom(local netip.AddrPort) bool {
	if sk.local == local {
		return true
	}
	if !sk.wildcard || sk.local.Port() != local.Port() {
		return false
	}
	if local.Addr().Is4() {
		return !sk.v6 || !sk.v6only
	}
	return sk.v6
}

// sockTable is the set of served sockets.
type sockTable struct {
	mu   sync.RWMutex
	list []*sock
}

func (t *sockTable) add(sk *sock) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range t.list {
		if o.conn == sk.conn {
			return fmt.Errorf("%w: %v", ErrServing, sk.local)
		}
	}
	t.list = append(t.list, sk)
	return nil
}

func (t *sockTable) remove(sk *sock) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, o := range t.list {
		if o == sk {
			t.list = append(t.list[:i], t.list[i+1:]...)
			return
		}
	}
}

// lookup returns a socket that sends from local: one bound to exactly
// local, else a wildcard socket of local's port and family; nil if none.
// Sockets sharing an address (SO_REUSEPORT) are interchangeable: the
// datagrams leave from the same address and port.
func (t *sockTable) lookup(local netip.AddrPort) *sock {
	local = unmapAP(local)
	t.mu.RLock()
	defer t.mu.RUnlock()
	var wild *sock
	for _, sk := range t.list {
		if sk.local == local {
			return sk
		}
		if wild == nil && sk.sendsFrom(local) {
			wild = sk
		}
	}
	return wild
}
