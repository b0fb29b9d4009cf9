package xmpp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/crrelay/crrelay/internal/nbio"
	"github.com/crrelay/crrelay/internal/scramcred"
)

// Broker is an XMPP server for TR-069 Annex K connection requests. Create
// it with New, serve listeners with Serve, and release it with Close.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	tls     *tls.Config
	relay   address
	acs     map[string]scramcred.Credentials // by normalised bare JID
	limiter *connLimiter
	fakeKey [32]byte // salts shown to unknown SCRAM users
	idBase  string   // prefix of the relay's IQ ids
	idSeq   atomic.Uint64

	polls    []*nbio.Poller // a bound session belongs to polls[slot%len]
	readBufs sync.Pool
	done     chan struct{} // closed by Close

	conns atomic.Int64 // open connections, negotiating or bound

	mu        sync.RWMutex
	closed    bool
	listeners map[*listener]struct{}
	byFull    map[string]*session
	byBare    map[string]*session // the most recently bound of a bare JID
	slots     []*session          // poller keys: slot index and generation
	gens      []uint32
	free      []uint32
	count     [nKinds]int

	notifyMu sync.Mutex // orders Sessions calls

	spawnMu  sync.Mutex
	draining bool
	wg       sync.WaitGroup // pollers, sweeper, teardowns
}

// listener is one served socket and the connections it accepted.
type listener struct {
	ln     net.Listener
	direct bool

	mu          sync.Mutex
	closing     bool
	active      int                   // connections not yet closed
	negotiating map[net.Conn]struct{} // not bound yet
	idle        chan struct{}         // closed when closing and active is 0
}

// New returns a broker for cfg.
func New(cfg Config) (*Broker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	relay, _ := parseFullJID(cfg.RelayJID)
	b := &Broker{
		cfg:       cfg,
		log:       cfg.Logger,
		m:         m,
		tls:       serverTLS(cfg.TLS),
		relay:     relay,
		acs:       make(map[string]scramcred.Credentials, len(cfg.ACSAccounts)),
		limiter:   newConnLimiter(cfg.ConnRatePerIP, cfg.ConnBurstPerIP, 1<<16),
		done:      make(chan struct{}),
		listeners: make(map[*listener]struct{}),
		byFull:    make(map[string]*session),
		byBare:    make(map[string]*session),
	}
	for _, a := range cfg.ACSAccounts {
		k, _ := parseJID(a.JID)
		b.acs[k.key] = a.Credentials
	}
	_, _ = rand.Read(b.fakeKey[:])
	var idb [4]byte
	_, _ = rand.Read(idb[:])
	b.idBase = "cr" + hex.EncodeToString(idb[:]) + "-"
	// A read buffer holds the largest stanza plus one TLS record's
	// plaintext, so that a record always fits after an unfinished stanza.
	size := cfg.MaxStanzaBytes + 16<<10 + 256
	b.readBufs.New = func() any { buf := make([]byte, 0, size); return &buf }
	// One poller per processor: each reads and routes its sessions on
	// one goroutine, with no hand-over between goroutines per stanza
	// (writes never wait, see nbConn, so a poller never blocks).
	for range max(1, runtime.GOMAXPROCS(0)) {
		p, err := nbio.NewPoller()
		if err != nil {
			for _, p := range b.polls {
				p.Close()
			}
			if errors.Is(err, nbio.ErrUnsupported) {
				err = ErrXmppUnsupported
			}
			return nil, err
		}
		b.polls = append(b.polls, p)
	}
	b.wg.Add(1 + len(b.polls))
	for _, p := range b.polls {
		go b.pollLoop(p)
	}
	go b.sweep()
	return b, nil
}

// Serve accepts XMPP client connections on ln: STARTTLS streams, or, if
// directTLS, connections that start with TLS (XEP-0368, port 5223). It
// returns nil once ctx is cancelled, ln is closed or the broker is
// closed, after closing the sessions ln accepted (with a system-shutdown
// stream error) and waiting for them up to Config.ShutdownGrace.
func (b *Broker) Serve(ctx context.Context, ln net.Listener, directTLS bool) error {
	l := &listener{ln: ln, direct: directTLS, negotiating: make(map[net.Conn]struct{}), idle: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrXmppClosed
	}
	b.listeners[l] = struct{}{}
	b.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var err error
	delay := 5 * time.Millisecond
	for {
		c, aerr := ln.Accept()
		if aerr == nil {
			delay = 5 * time.Millisecond
			b.accept(ctx, l, c)
			continue
		}
		if errors.Is(aerr, net.ErrClosed) || ctx.Err() != nil || b.isClosed() {
			break
		}
		if !transientAccept(aerr) {
			err = fmt.Errorf("xmpp: accepting on %v: %w", ln.Addr(), aerr)
			break
		}
		// Out of descriptors or memory: wait a little, as net/http does.
		b.log.Warn("xmpp: accept failed; retrying", "addr", ln.Addr(), "err", aerr, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-b.done:
		}
		t.Stop()
		delay = min(2*delay, time.Second)
	}
	ln.Close()
	b.stopListener(l)
	return err
}

func transientAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// stopListener closes what l accepted and waits for it, up to the grace
// period.
func (b *Broker) stopListener(l *listener) {
	l.mu.Lock()
	l.closing = true
	if l.active == 0 {
		close(l.idle)
	}
	neg := make([]net.Conn, 0, len(l.negotiating))
	for c := range l.negotiating {
		neg = append(neg, c)
	}
	l.mu.Unlock()
	for _, c := range neg {
		c.Close()
	}
	b.closeSessions(func(s *session) bool { return s.ln == l })
	t := time.NewTimer(b.cfg.ShutdownGrace)
	select {
	case <-l.idle:
	case <-t.C:
		b.log.Warn("xmpp: sessions still closing after the grace period", "addr", l.ln.Addr())
	}
	t.Stop()
	b.mu.Lock()
	delete(b.listeners, l)
	b.mu.Unlock()
}

// closeSessions closes the bound sessions that match.
func (b *Broker) closeSessions(match func(*session) bool) {
	b.mu.RLock()
	var list []*session
	for _, s := range b.slots {
		if s != nil && match(s) {
			list = append(list, s)
		}
	}
	b.mu.RUnlock()
	for _, s := range list {
		s.close("shutdown", seSystemShutdown)
	}
}

// Close closes every listener and session, stops the broker's goroutines
// and waits for them up to Config.ShutdownGrace. Connection requests made
// after Close find no session.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	lns := make([]*listener, 0, len(b.listeners))
	for l := range b.listeners {
		lns = append(lns, l)
	}
	b.mu.Unlock()
	close(b.done)
	for _, l := range lns {
		l.ln.Close()
	}
	b.closeSessions(func(*session) bool { return true })
	for _, p := range b.polls {
		p.Close()
	}

	b.spawnMu.Lock()
	b.draining = true
	b.spawnMu.Unlock()
	waited := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(waited)
	}()
	t := time.NewTimer(b.cfg.ShutdownGrace)
	defer t.Stop()
	select {
	case <-waited:
	case <-t.C:
		b.log.Warn("xmpp: broker goroutines still running after the grace period")
	}
	return nil
}

func (b *Broker) isClosed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// spawn runs f in a goroutine the broker waits for; once Close is
// waiting, in the caller.
func (b *Broker) spawn(f func()) {
	b.spawnMu.Lock()
	if b.draining {
		b.spawnMu.Unlock()
		f()
		return
	}
	b.wg.Add(1)
	b.spawnMu.Unlock()
	go func() {
		defer b.wg.Done()
		f()
	}()
}

// accept admits a new connection, or refuses it.
func (b *Broker) accept(ctx context.Context, l *listener, c net.Conn) {
	sock, err := nbio.NewConn(c)
	if err != nil {
		if errors.Is(err, nbio.ErrNotSocket) {
			b.log.Error("xmpp: connection without a socket", "err", ErrXmppListener, "type", fmt.Sprintf("%T", c))
		}
		c.Close()
		return
	}
	var ip netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr()
	}
	if !b.limiter.allow(ip, time.Now().UnixNano()) {
		b.m.refused.WithLabelValues(refusedRatePerIP).Inc()
		c.Close()
		return
	}
	if b.conns.Add(1) > int64(b.cfg.MaxSessions) {
		b.conns.Add(-1)
		b.m.refused.WithLabelValues(refusedMaxSessions).Inc()
		c.Close()
		return
	}
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		b.conns.Add(-1)
		c.Close()
		return
	}
	l.active++
	l.negotiating[c] = struct{}{}
	l.mu.Unlock()
	if tc, ok := c.(*net.TCPConn); ok {
		// Dead peers that the read timeout has not caught yet.
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Minute, Interval: 15 * time.Second, Count: 4})
	}
	b.m.accepted.Inc()
	go b.negotiate(ctx, l, c, sock)
}

// connClosed accounts for a closed connection of l.
func (b *Broker) connClosed(l *listener) {
	b.conns.Add(-1)
	l.mu.Lock()
	l.active--
	if l.closing && l.active == 0 {
		close(l.idle)
	}
	l.mu.Unlock()
}

// negotiate runs the negotiation of one connection and hands the bound
// session to the poller. The goroutine ends there: a bound session has
// none of its own.
func (b *Broker) negotiate(ctx context.Context, l *listener, c net.Conn, sock *nbio.Conn) {
	_ = c.SetDeadline(time.Now().Add(b.cfg.NegotiationTimeout))
	nb := &nbConn{Conn: sock}
	n := b.newNegotiation(ctx, c, nb)
	full, addr, err := n.run(l.direct)
	l.mu.Lock()
	delete(l.negotiating, c)
	closing := l.closing
	l.mu.Unlock()
	if err == nil && closing {
		err = ErrXmppClosed
	}
	if err != nil {
		n.release()
		b.negotiationFailed(c, err)
		c.Close()
		b.connClosed(l)
		return
	}
	s := &session{
		b:      b,
		ln:     l,
		conn:   c,
		nb:     nb,
		tc:     n.tc,
		full:   full,
		addr:   addr,
		remote: c.RemoteAddr().String(),
		since:  time.Now(),
		kind:   n.kind,
	}
	s.split.Max = b.cfg.MaxStanzaBytes
	if rest := n.r.rest(); len(rest) > 0 {
		s.partial = append([]byte(nil), rest...)
	}
	n.release()
	s.lastRead.Store(s.since.UnixNano())
	if err := c.SetDeadline(time.Time{}); err != nil {
		c.Close()
		b.connClosed(l)
		return
	}
	// From here on, reads and writes never wait (set before the session
	// is listed, where others may write to it).
	nb.nonblock = true
	if !b.register(s) {
		c.Close()
		b.connClosed(l)
		return
	}
	// The client may have sent stanzas already: read them, then arm.
	s.reader.Take()
	for s.drive(nil) {
	}
}

// negotiationFailed counts and logs why a connection never got bound.
func (b *Broker) negotiationFailed(c net.Conn, err error) {
	var reason string
	var se streamError
	var te tlsError
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		reason = refusedTimeout
	case errors.As(err, &te):
		reason = refusedTLS
	case errors.Is(err, errAuthFailed):
		reason = refusedAuth
	case errors.As(err, &se):
		reason = refusedNegotiation
	default:
		// The client went away, or the broker is closing.
		b.log.Debug("xmpp: negotiation ended", "remote", c.RemoteAddr(), "err", err)
		return
	}
	b.m.refused.WithLabelValues(reason).Inc()
	b.log.Debug("xmpp: negotiation failed", "remote", c.RemoteAddr(), "reason", reason, "err", err)
}

// credentials finds the account of a localpart: an ACS account from the
// configuration, else a CPE account from the store, looked up now.
func (b *Broker) credentials(local string) (scramcred.Credentials, kind, bool) {
	bare := local + "@" + b.cfg.Domain
	a, err := parseJID(bare)
	if err != nil || !a.hasLocal() || a.hasResource() || a.domain() != b.cfg.Domain {
		return scramcred.Credentials{}, 0, false
	}
	if c, ok := b.acs[a.key]; ok {
		return c, kindACS, true
	}
	if b.cfg.Accounts == nil {
		return scramcred.Credentials{}, 0, false
	}
	c, ok := b.cfg.Accounts.XMPPCredentials(bare)
	return c, kindCPE, ok
}

// register lists a newly bound session; a session with the same full
// JID is replaced (RFC 6120 7.7.2.2: the older one is closed with a
// conflict stream error). It reports false if the broker is closed.
func (b *Broker) register(s *session) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	if len(b.free) > 0 {
		s.slot = b.free[len(b.free)-1]
		b.free = b.free[:len(b.free)-1]
	} else {
		s.slot = uint32(len(b.slots))
		b.slots = append(b.slots, nil)
		b.gens = append(b.gens, 0)
	}
	b.gens[s.slot]++
	s.gen = b.gens[s.slot]
	b.slots[s.slot] = s

	old := b.byFull[s.addr.key]
	if old != nil {
		b.unlistLocked(old)
	}
	b.byFull[s.addr.key] = s
	bare := s.addr.bareKey()
	if prev := b.byBare[bare]; prev != nil {
		s.older, prev.newer = prev, s
	}
	b.byBare[bare] = s
	s.listed = true
	b.count[s.kind]++
	b.m.sessions[s.kind].Set(float64(b.count[s.kind]))
	b.notifyMu.Lock()
	b.mu.Unlock()
	now := time.Now()
	if b.cfg.Sessions != nil {
		if old != nil && old.kind == kindCPE {
			b.cfg.Sessions.SessionDown(old.info("replaced", now))
		}
		if s.kind == kindCPE {
			b.cfg.Sessions.SessionUp(s.info("", time.Time{}))
		}
	}
	b.notifyMu.Unlock()
	if old != nil {
		old.close("replaced", seConflict)
	}
	return true
}

// unlistLocked removes s from the JID tables. b.mu is held.
func (b *Broker) unlistLocked(s *session) {
	if !s.listed {
		return
	}
	s.listed = false
	if b.byFull[s.addr.key] == s {
		delete(b.byFull, s.addr.key)
	}
	bare := s.addr.bareKey()
	if s.newer != nil {
		s.newer.older = s.older
	}
	if s.older != nil {
		s.older.newer = s.newer
	}
	if b.byBare[bare] == s {
		if s.older != nil {
			b.byBare[bare] = s.older
		} else {
			delete(b.byBare, bare)
		}
	}
	s.older, s.newer = nil, nil
	b.count[s.kind]--
	b.m.sessions[s.kind].Set(float64(b.count[s.kind]))
}

// unregister removes a closing session from every table, telling
// Sessions unless a replacing session already did.
func (b *Broker) unregister(s *session, reason string) {
	b.mu.Lock()
	listed := s.listed
	b.unlistLocked(s)
	if b.slots[s.slot] == s {
		b.slots[s.slot] = nil
		b.free = append(b.free, s.slot)
	}
	if !listed || b.cfg.Sessions == nil || s.kind != kindCPE {
		b.mu.Unlock()
		return
	}
	b.notifyMu.Lock()
	b.mu.Unlock()
	b.cfg.Sessions.SessionDown(s.info(reason, time.Now()))
	b.notifyMu.Unlock()
}

// lookup finds the session a JID addresses: the session of a full JID,
// or the most recent session of a bare JID; nil unless it is of kind k.
func (b *Broker) lookup(a address, k kind) *session {
	b.mu.RLock()
	var s *session
	if a.hasResource() {
		s = b.byFull[a.key]
	} else {
		s = b.byBare[a.key]
	}
	b.mu.RUnlock()
	if s == nil || s.kind != k {
		return nil
	}
	return s
}

// pollLoop reads and routes the sessions of p that have bytes, flushes
// those that have room for what they held back, and writes what the
// round queued (see round).
func (b *Broker) pollLoop(p *nbio.Poller) {
	defer b.wg.Done()
	evs := make([]nbio.Event, 256)
	// Sessions whose turn ended with bytes possibly left (still claimed):
	// read again after the events at hand, before waiting for more.
	var turn, next []*session
	var r round
	for {
		var n int
		var err error
		if len(turn) > 0 {
			n, err = p.Poll(evs)
		} else {
			n, err = p.Wait(evs)
		}
		if err != nil {
			if !b.isClosed() {
				b.log.Error("xmpp: poller failed; sessions can no longer be read", "err", err)
			}
			return
		}
		now := time.Now().UnixNano()
		for i := range evs[:n] {
			ev := &evs[i]
			key := nbio.Key(ev)
			slot, gen := uint32(key), uint32(key>>32)
			b.mu.RLock()
			var s *session
			if int(slot) < len(b.slots) && b.gens[slot] == gen {
				s = b.slots[slot]
			}
			b.mu.RUnlock()
			if s == nil {
				continue
			}
			if nbio.Writable(ev) && s.nb.outSince.Load() != 0 {
				s.flush()
			}
			if !nbio.Readable(ev) {
				continue
			}
			s.lastRead.Store(now)
			if s.reader.Claim() && s.drive(&r) {
				next = append(next, s)
			}
		}
		for _, s := range turn {
			if s.drive(&r) {
				next = append(next, s)
			}
		}
		clear(turn)
		turn, next = next, turn[:0]
		for _, s := range r.queued {
			s.writeQueued()
		}
		clear(r.queued)
		r.queued = r.queued[:0]
	}
}

// pollerOf returns the poller s belongs to.
func (b *Broker) pollerOf(s *session) *nbio.Poller { return b.polls[int(s.slot)%len(b.polls)] }

// sweep closes sessions that sent nothing within the read timeout (RFC
// 6120 4.6.1: dead connections are found by the lack of traffic, not by
// pinging CPEs, many of which never answer pings).
func (b *Broker) sweep() {
	defer b.wg.Done()
	period := min(max(min(b.cfg.ReadTimeout, b.cfg.WriteTimeout)/8, 10*time.Millisecond), 5*time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	var expired, stalled []*session
	for {
		select {
		case <-t.C:
		case <-b.done:
			return
		}
		now := time.Now()
		cutoff := now.Add(-b.cfg.ReadTimeout).UnixNano()
		wcutoff := now.Add(-b.cfg.WriteTimeout).UnixNano()
		expired, stalled = expired[:0], stalled[:0]
		b.mu.RLock()
		for _, s := range b.slots {
			switch {
			case s == nil:
			case s.lastRead.Load() < cutoff:
				expired = append(expired, s)
			case s.nb.stalledSince(wcutoff):
				stalled = append(stalled, s)
			}
		}
		b.mu.RUnlock()
		for _, s := range expired {
			b.m.timeouts.Inc()
			s.close("read-timeout", seConnectionTimeout)
		}
		for _, s := range stalled {
			b.m.writeStalls.Inc()
			s.close("write-timeout", "")
		}
		clear(stalled)
		clear(expired)
	}
}

// Online returns the session a JID addresses: a full JID's, or the most
// recent of a bare JID's.
func (b *Broker) Online(jid string) (SessionInfo, bool) {
	a, err := parseJID(jid)
	if err != nil {
		return SessionInfo{}, false
	}
	b.mu.RLock()
	var s *session
	if a.hasResource() {
		s = b.byFull[a.key]
	} else {
		s = b.byBare[a.key]
	}
	b.mu.RUnlock()
	if s == nil {
		return SessionInfo{}, false
	}
	return s.info("", time.Time{}), true
}

// SessionCount returns the number of bound sessions (CPE and ACS).
func (b *Broker) SessionCount() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := 0
	for _, c := range b.count {
		n += c
	}
	return n
}

// nextID returns a new IQ id for the relay: unique for the life of the
// broker, and unlike another broker's.
func (b *Broker) nextID() string {
	return b.idBase + strconv.FormatUint(b.idSeq.Add(1), 36)
}
