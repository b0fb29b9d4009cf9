package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crrelay/crrelay/internal/nbio"
)

// A fleet with Pollers set reads its bound sessions on a few goroutines
// that poll every socket (internal/nbio), instead of one goroutine
// parked in a read on each. The CPE's own goroutine still runs the
// session's life (login, retries) and waits, on a channel, for the
// poller to report the end. What changes is the cost of a stanza: no
// goroutine is woken through the runtime's netpoller, and the read that
// would only hear the socket is empty is skipped when nbio.Records says
// so. A load tool that holds tens of thousands of sessions and answers
// thousands of requests a second spends most of its time on those
// wake-ups otherwise, and it shares the machine with the server it
// measures.

// ErrXMPPPollers: Pollers is negative, or set where epoll is missing.
var ErrXMPPPollers = errors.New("sim: XMPP fleet Pollers must be 0, or positive on Linux")

// pollConn is the TCP connection under a polled CPE's TLS: it reads like
// the nbio.Conn it wraps until the session is bound, then without
// waiting. Writes go through the nbio.Conn, which waits when the socket
// is full (the poller goroutine writes answers; a server that stops
// reading holds it up, which a simulator accepts).
type pollConn struct {
	*nbio.Conn
	nonblock atomic.Bool
	// Used by the one goroutine reading at a time.
	records nbio.Records
	short   bool
}

func (c *pollConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if c.nonblock.Load() {
		n, err = c.TryRead(p)
		if err == nil && n == 0 && len(p) > 0 {
			err = io.EOF
		}
		c.short = n < len(p)
	} else {
		n, err = c.Conn.Read(p)
		c.short = false
	}
	c.records.Track(p[:n])
	return n, err
}

// pollable wraps conn for a polled session, or returns nil if it is not
// a socket (a test's pipe).
func pollable(conn net.Conn) *pollConn {
	sock, ok := conn.(*nbio.Conn)
	if !ok {
		return nil
	}
	return &pollConn{Conn: sock}
}

// cpePollers are a fleet's pollers; sessions are spread over them.
type cpePollers struct {
	ps   []*cpePoller
	next atomic.Uint32
}

func newCPEPollers(n int) (*cpePollers, error) {
	if n < 0 {
		return nil, ErrXMPPPollers
	}
	ps := &cpePollers{}
	for range n {
		p, err := nbio.NewPoller()
		if err != nil {
			ps.close()
			if errors.Is(err, nbio.ErrUnsupported) {
				return nil, ErrXMPPPollers
			}
			return nil, err
		}
		cp := &cpePoller{p: p, sessions: make(map[uint64]*cpeSession)}
		ps.ps = append(ps.ps, cp)
		go cp.loop()
	}
	return ps, nil
}

func (ps *cpePollers) pick() *cpePoller {
	return ps.ps[int(ps.next.Add(1))%len(ps.ps)]
}

func (ps *cpePollers) close() {
	for _, p := range ps.ps {
		p.p.Close()
	}
}

// cpePoller reads the sessions armed with it.
type cpePoller struct {
	p        *nbio.Poller
	mu       sync.Mutex
	sessions map[uint64]*cpeSession
	seq      uint64
}

// polled is what a polled session keeps.
type polled struct {
	pc       *pollConn
	key      uint64
	reader   nbio.Reader
	lastRead atomic.Int64
	done     chan error // the session's end, once
	ended    atomic.Bool
}

// serve reads s on the poller until the session ends or ctx is done (the
// caller then closes the connection), enforcing ReadTimeout.
func (p *cpePoller) serve(ctx context.Context, s *cpeSession, pc *pollConn) error {
	s.poll = &polled{pc: pc, done: make(chan error, 1)}
	s.poll.lastRead.Store(time.Now().UnixNano())
	p.mu.Lock()
	p.seq++
	s.poll.key = p.seq
	p.sessions[s.poll.key] = s
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.sessions, s.poll.key)
		p.mu.Unlock()
	}()
	pc.nonblock.Store(true)
	// What the negotiation read ahead is read first, then the socket is
	// armed; an event for bytes arriving meanwhile finds s busy and
	// makes this goroutine read again.
	s.poll.reader.Take()
	s.pump()
	if err := p.p.Arm(pc.Raw(), s.poll.key); err != nil {
		s.end(err)
	} else if s.poll.reader.Claim() {
		s.pump()
	}

	var tick <-chan time.Time
	if rt := s.c.cfg.ReadTimeout; rt > 0 {
		t := time.NewTicker(max(rt/4, 10*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-s.poll.done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			idle := time.Since(time.Unix(0, s.poll.lastRead.Load()))
			if idle >= s.c.cfg.ReadTimeout {
				return fmt.Errorf("sim: XMPP: nothing read for %v", idle.Round(time.Millisecond))
			}
		}
	}
}

func (p *cpePoller) loop() {
	evs := make([]nbio.Event, 256)
	for {
		n, err := p.p.Wait(evs)
		if err != nil {
			return // closed
		}
		for i := range evs[:n] {
			if !nbio.Readable(&evs[i]) {
				continue
			}
			p.mu.Lock()
			s := p.sessions[nbio.Key(&evs[i])]
			p.mu.Unlock()
			if s != nil && s.poll.reader.Claim() {
				s.pump()
			}
		}
	}
}

// pump reads and handles what the session's socket holds, until it is
// empty, and again while events came meanwhile. The caller is its reader.
func (s *cpeSession) pump() {
	q := s.poll
	for {
		q.reader.Begin()
		s.readAvailable()
		if !q.reader.Release() {
			return
		}
	}
}

// readAvailable handles the stanzas that can be read without waiting.
func (s *cpeSession) readAvailable() {
	q := s.poll
	if q.ended.Load() {
		return
	}
	q.lastRead.Store(time.Now().UnixNano())
	rd := s.st.rd
	for {
		q.pc.records.Reset()
		e, err := s.st.readElement()
		if err != nil {
			if errors.Is(err, nbio.ErrWouldBlock) {
				return
			}
			if errors.Is(err, ErrXMPPClosed) {
				s.st.write([]byte("</stream:stream>"))
			}
			s.end(err)
			return
		}
		s.stanza(e)
		// Nothing left in the reader, the one read it made took a whole
		// TLS record without filling its buffer, and the socket was
		// empty after it: do not read again only to hear so.
		drained := rd.r == rd.w && rd.w < len(rd.buf) && q.pc.records.OneWholeRecord(q.pc.short)
		rd.release()
		if drained {
			return
		}
	}
}

// end reports the session's end to its goroutine, once.
func (s *cpeSession) end(err error) {
	if s.poll.ended.CompareAndSwap(false, true) {
		s.poll.done <- err
	}
}
