package xmpp

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crrelay/crrelay/internal/nbio"
	"github.com/crrelay/crrelay/xmpp/xmlframe"
)

// kind is the kind of account a session authenticated as.
type kind uint8

const (
	kindCPE kind = iota
	kindACS
	nKinds
)

func (k kind) String() string {
	if k == kindACS {
		return "acs"
	}
	return "cpe"
}

// Session states.
const (
	stateOpen uint32 = iota
	stateClosing
)

// maxPending bounds the IQs outstanding to one session.
const maxPending = 64

// pendingTTL is how long an IQ routed from an ACS to a CPE waits for its
// answer before the answer is no longer routed back.
const pendingTTL = time.Minute

var errSessionClosed = errors.New("xmpp: session closed")

// session is one bound client stream. Idle, it is this struct, its
// tls.Conn and socket, and an entry in the poller: no goroutine, no
// buffer. When the poller reports bytes, its goroutine borrows a read buffer,
// drains the TLS connection without blocking, handles every complete
// stanza, keeps a copy of an unfinished one (rare: stanzas are small and
// arrive in one record), returns the buffer and re-arms the poller.
type session struct {
	b      *Broker
	ln     *listener
	conn   net.Conn
	nb     *nbConn
	tc     *tls.Conn
	full   string  // full JID as bound, localpart as authenticated
	addr   address // normalised full JID, for lookups
	remote string
	since  time.Time
	kind   kind
	slot   uint32
	gen    uint32

	// Guarded by b.mu.
	listed       bool     // in b.byFull and b.byBare
	older, newer *session // sessions of the same bare JID, by bind time

	state    atomic.Uint32
	lastRead atomic.Int64 // unix nanoseconds of the last readiness
	// round is that of the poller reading s, nil when another goroutine
	// does; only the reader uses it.
	round *round

	wmu sync.Mutex // serialises writes to tc, and nb's backlog

	// Writes are combined: a stanza written while another write is in
	// progress is queued, and the writer in progress sends the queue when
	// its own write is done, in one TLS record and one system call. A
	// session that many answers go to at once (an ACS's) then costs far
	// fewer; an idle session holds no buffer.
	qmu         sync.Mutex
	writing     bool    // a writer is in the loop of send
	queued      *[]byte // stanzas waiting for it; nil when none
	roundListed bool    // on a poller's round list (queue)

	// The read side, used by one goroutine at a time: reader's (an event
	// while it reads makes it read once more, see drive). rmu makes the
	// hand-over between goroutines visible to Go's race detector.
	reader  nbio.Reader
	rmu     sync.Mutex
	split   xmlframe.Splitter
	partial []byte // an unfinished stanza kept while idle
	armed   bool   // registered with the poller (guarded by rmu)

	mu      sync.Mutex
	pending []pendingIQ
	dead    bool // no more pending IQs accepted
}

// pendingIQ is an IQ get or set delivered to this session whose answer
// will be routed back to the requester: a session, or the relay's call.
type pendingIQ struct {
	id      string
	from    *session // nil for the relay
	call    *call
	req     address // the requester's JID, which the answer is addressed to
	expires int64
}

// bareJID returns the bare JID as bound.
func (s *session) bareJID() string { return s.full[:len(s.full)-(len(s.addr.key)-s.addr.bare)] }

func (s *session) info(reason string, ended time.Time) SessionInfo {
	return SessionInfo{
		BareJID: s.bareJID(),
		FullJID: s.full,
		Remote:  s.remote,
		TLS:     true,
		Since:   s.since,
		EndedAt: ended,
		Reason:  reason,
	}
}

func (s *session) open() bool { return s.state.Load() == stateOpen }

// write sends one or more complete stanzas. It never waits for the
// client: what its socket does not take waits in nbConn's backlog (see
// nbConn), and a session whose backlog overflows is closed.
func (s *session) write(p []byte) error {
	s.qmu.Lock()
	if s.writing {
		if s.queued == nil {
			s.queued = queueBufs.Get().(*[]byte)
		}
		*s.queued = append(*s.queued, p...)
		s.qmu.Unlock()
		// Sent by the writer in progress; if that fails, the session
		// closes and whoever waits for an answer hears it is offline.
		s.b.m.stanzasOut.Inc()
		return nil
	}
	s.writing = true
	s.qmu.Unlock()
	err := s.send(p, nil)
	if err == nil {
		s.b.m.stanzasOut.Inc()
	}
	return err
}

// round is the sessions a poller queued stanzas for while handling one
// round of events: it writes them when the round is done, so that the
// answers of many CPEs to one ACS go in one TLS record and one system
// call.
type round struct{ queued []*session }

// queue adds p to the stanzas waiting for s, to be written at the end of
// the round r at the latest.
func (s *session) queue(p []byte, r *round) {
	s.qmu.Lock()
	if s.queued == nil {
		s.queued = queueBufs.Get().(*[]byte)
	}
	*s.queued = append(*s.queued, p...)
	listed := s.roundListed
	s.roundListed = true
	s.qmu.Unlock()
	s.b.m.stanzasOut.Inc()
	if !listed {
		r.queued = append(r.queued, s)
	}
}

// writeQueued writes what queue kept, unless a writer in progress will.
func (s *session) writeQueued() {
	s.qmu.Lock()
	s.roundListed = false
	if s.writing || s.queued == nil {
		s.qmu.Unlock()
		return
	}
	s.writing = true
	q := s.queued
	s.queued = nil
	s.qmu.Unlock()
	_ = s.send(*q, q)
}

// send writes buf (which comes from the queue buffer sent, if that is
// not nil), then what was queued meanwhile, until nothing is. The caller
// has set s.writing; send clears it.
func (s *session) send(buf []byte, sent *[]byte) error {
	for {
		s.wmu.Lock()
		err := errSessionClosed
		if s.open() {
			_, err = s.tc.Write(buf)
		}
		s.wmu.Unlock()
		if sent != nil {
			putQueueBuf(sent)
			sent = nil
		}
		s.qmu.Lock()
		if err != nil || s.queued == nil {
			q := s.queued
			s.queued, s.writing = nil, false
			s.qmu.Unlock()
			if q != nil {
				putQueueBuf(q)
			}
			switch {
			case err == errSessionClosed:
				return err
			case err != nil:
				s.close("write-error", "")
				return err
			}
			return nil
		}
		sent, s.queued = s.queued, nil
		s.qmu.Unlock()
		buf = *sent
	}
}

// flush sends what the socket did not take before; the poller calls it
// when the socket has room again.
func (s *session) flush() {
	s.wmu.Lock()
	err := s.nb.flush()
	s.wmu.Unlock()
	if err != nil {
		s.close("write-error", "")
	}
}

// queueBufs hold the stanzas queued behind a write in progress.
var queueBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// putQueueBuf returns b to the pool, unless a burst made it large.
func putQueueBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	queueBufs.Put(b)
}

// close ends the session: it leaves the tables at once, and the closing
// tag (after a stream error, if cond is set) is written and the socket
// closed in the background. Only the first call does anything.
func (s *session) close(reason string, cond streamError) {
	if !s.state.CompareAndSwap(stateOpen, stateClosing) {
		return
	}
	s.b.unregister(s, reason)
	s.mu.Lock()
	pending := s.pending
	s.pending, s.dead = nil, true
	s.mu.Unlock()
	if cond != "" {
		s.b.m.streamErrs.WithLabelValues(string(cond)).Inc()
	}
	s.b.spawn(func() { s.teardown(pending, cond) })
}

func (s *session) teardown(pending []pendingIQ, cond streamError) {
	// Whoever waits for an answer from this session hears now that none
	// will come.
	for _, p := range pending {
		if p.call != nil {
			p.call.finish(Result{Outcome: Offline})
		} else if p.from != nil {
			s.b.sendError(p.from, "iq", p.id, s.full, p.req.key, "cancel", "service-unavailable")
		}
	}
	var b []byte
	if cond != "" {
		b = appendStreamError(b, cond)
	} else {
		b = append(b, "</stream:stream>"...)
	}
	// The closing tag goes if the socket takes it now; a client that
	// does not read is not waited for.
	s.wmu.Lock()
	if _, err := s.tc.Write(b); err == nil {
		_ = s.nb.flush()
	}
	s.wmu.Unlock()
	// Closing the socket rather than the tls.Conn: close_notify would
	// wait up to 5s on a peer that reads nothing, and the stream's own
	// closing tag has said what matters.
	_ = s.conn.Close()
	s.b.connClosed(s.ln)
}

// addPending records an IQ routed to s; false if s is closing or has too
// many outstanding.
func (s *session) addPending(p pendingIQ, now int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return false
	}
	live := s.pending[:0]
	for _, q := range s.pending {
		if q.expires > now {
			live = append(live, q)
		}
	}
	clear(s.pending[len(live):])
	s.pending = live
	if len(s.pending) >= maxPending {
		return false
	}
	if s.pending == nil {
		s.pending = make([]pendingIQ, 0, 1)
	}
	s.pending = append(s.pending, p)
	return true
}

// takeAnswer removes and returns the pending IQ an answer from s answers:
// the same id, addressed to the requester (full or bare JID), to the
// domain, or to no one (agents that leave out 'to' when answering).
func (s *session) takeAnswer(id string, to address, hasTo bool, domain string, now int64) (pendingIQ, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if p.id != id || p.expires <= now {
			continue
		}
		if hasTo && to.key != p.req.key && to.key != p.req.bareKey() && to.key != domain {
			continue
		}
		s.removeLocked(i)
		return p, true
	}
	return pendingIQ{}, false
}

// removeCall removes the pending IQ of c; false if it was already taken.
func (s *session) removeCall(c *call) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if p.call == c {
			s.removeLocked(i)
			return true
		}
	}
	return false
}

// removeFrom removes the pending IQ id from requester r.
func (s *session) removeFrom(id string, r *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if p.id == id && p.from == r {
			s.removeLocked(i)
			return
		}
	}
}

func (s *session) removeLocked(i int) {
	last := len(s.pending) - 1
	s.pending[i] = s.pending[last]
	s.pending[last] = pendingIQ{}
	s.pending = s.pending[:last]
	if len(s.pending) == 0 {
		s.pending = nil
	}
}

// readTurn is how many reads a session gets before its poller turns to
// the others: a client that keeps sending cannot hold up the sessions
// that share its poller.
const readTurn = 16

// serviceRead drains the session's TLS connection, handles the stanzas,
// and re-arms the poller. One goroutine at a time runs it. It reports
// more when it stopped at the end of the session's turn, with bytes
// possibly left to read: the caller reads again later.
func (s *session) serviceRead() (more bool) {
	b := s.b
	s.rmu.Lock()
	bp := b.readBufs.Get().(*[]byte)
	buf := append((*bp)[:0], s.partial...)
	s.partial = nil
	for reads := 0; ; reads++ {
		if !s.frame(&buf) {
			break
		}
		if reads == readTurn {
			more = true
			if len(buf) > 0 {
				s.partial = append([]byte(nil), buf...)
			}
			break
		}
		room := cap(buf) - len(buf)
		s.nb.startRead()
		n, err := s.tc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == nil && (n == room || !s.nb.drained()) {
			continue
		}
		if n > 0 && !s.frame(&buf) {
			break
		}
		if err == nil || err == errWouldBlock {
			// Idle again: keep what is unfinished, give the buffer back,
			// and let the poller watch the socket.
			if len(buf) > 0 {
				s.partial = append([]byte(nil), buf...)
			}
			*bp = buf[:0]
			b.readBufs.Put(bp)
			s.rmu.Unlock()
			s.arm()
			return false
		}
		if s.open() {
			s.close("eof", "")
		}
		break
	}
	*bp = buf[:0]
	b.readBufs.Put(bp)
	s.rmu.Unlock()
	return more
}

// frame handles the complete units at the start of *buf and moves the
// rest to its front. It reports false once the session is closing.
func (s *session) frame(buf *[]byte) bool {
	data := *buf
	off := 0
	for s.open() {
		n, k, err := s.split.Next(data[off:])
		if err != nil {
			switch err {
			case xmlframe.ErrTooLarge:
				s.b.m.oversized.Inc()
				s.close(string(sePolicyViolation), sePolicyViolation)
			case xmlframe.ErrRestricted:
				s.close(string(seRestrictedXML), seRestrictedXML)
			default:
				s.close(string(seNotWellFormed), seNotWellFormed)
			}
			return false
		}
		if k == xmlframe.None {
			break
		}
		switch k {
		case xmlframe.Element:
			s.b.handle(s, data[off:off+n])
		case xmlframe.StreamEnd:
			// RFC 6120 4.4: the client closed its stream; close ours.
			s.close("closed", "")
		}
		off += n
	}
	if off > 0 {
		*buf = data[:copy(data, data[off:])]
	}
	return s.open()
}

// arm hands the session back to the poller. Only the reader that just
// drained the session calls it, after giving up rmu.
func (s *session) arm() {
	if !s.open() {
		return
	}
	s.rmu.Lock()
	first := !s.armed
	s.armed = true
	s.rmu.Unlock()
	if !first {
		return // registered for good: edges keep coming
	}
	if err := s.b.pollerOf(s).Arm(s.nb.Raw(), uint64(s.slot)|uint64(s.gen)<<32); err != nil {
		s.close("error", "")
	}
}

// drive reads s until it is drained, and again as long as the poller
// reported new bytes meanwhile. The caller is s's reader (nbio.Reader);
// drive lets go, unless its turn ends first: then it reports more and
// stays the reader, and the caller must drive s again.
func (s *session) drive(r *round) (more bool) {
	s.round = r
	for {
		s.reader.Begin()
		if s.serviceRead() {
			return true
		}
		if !s.reader.Release() {
			return false
		}
	}
}
