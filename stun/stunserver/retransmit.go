package stunserver

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// rtBatch is the most retransmissions one sendmmsg carries.
const rtBatch = 64

// rtItem is one connection request waiting for its next copy.
type rtItem struct {
	due  time.Time
	msg  []byte
	to   netip.AddrPort
	from netip.Addr
	left int // copies still to send after the next one
}

// rtQueue holds the scheduled retransmissions of one socket's connection
// requests, sent by one goroutine per socket in sendmmsg batches, rather
// than by a goroutine and two single sends per request: at tens of
// thousands of requests a second that difference is most of the cost.
//
// Copy k of every request waits d·2^(k-1) after the previous one, the
// same delay for all requests, so each stage is a FIFO already in due
// order and the loop only looks at the stages' heads.
type rtQueue struct {
	mu     sync.Mutex
	stages [][]rtItem // stage k holds requests waiting for copy k+1
	kick   chan struct{}
	closed bool
}

func newRTQueue(retransmits int) *rtQueue {
	return &rtQueue{stages: make([][]rtItem, retransmits), kick: make(chan struct{}, 1)}
}

// add schedules the retransmissions of msg, just sent at now. The
// caller holds one sk.wg count for it, released after the last copy; if
// add returns false (the socket is stopping), the caller releases it.
func (q *rtQueue) add(now time.Time, delay time.Duration, msg []byte, to netip.AddrPort, from netip.Addr) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	wasEmpty := len(q.stages[0]) == 0
	q.stages[0] = append(q.stages[0], rtItem{due: now.Add(delay), msg: msg, to: to, from: from, left: len(q.stages) - 1})
	q.mu.Unlock()
	if wasEmpty {
		// The loop may sleep until a later stage's head; a new head of
		// stage 0 can only be due sooner than a sleeping loop knows.
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// due moves up to len(out) items due by now into out, rescheduling those
// with copies left into the next stage, and returns how many it took and
// when the next item is due (zero if none is pending).
func (q *rtQueue) due(now time.Time, delay time.Duration, out []rtItem) (n int, next time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for k := range q.stages {
		st := q.stages[k]
		i := 0
		for ; i < len(st) && n < len(out) && !st[i].due.After(now); i++ {
			it := st[i]
			out[n] = it
			n++
			if it.left > 0 {
				it.left--
				it.due = now.Add(delay << (k + 1))
				q.stages[k+1] = append(q.stages[k+1], it)
			}
		}
		// Shift rather than reslice, so a stage's backing array is
		// reused instead of growing forever.
		m := copy(st, st[i:])
		clear(st[m:])
		q.stages[k] = st[:m]
	}
	for _, st := range q.stages {
		if len(st) > 0 && (next.IsZero() || st[0].due.Before(next)) {
			next = st[0].due
		}
	}
	return n, next
}

// close forgets every pending request, refuses new ones, and returns
// how many it dropped.
func (q *rtQueue) close() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	n := 0
	for k := range q.stages {
		n += len(q.stages[k]) // a request is in one stage at a time
		q.stages[k] = nil
	}
	return n
}

// retransmitLoop sends sk's due retransmissions with send, which returns
// how many of them the system refused, until sk.cancel closes; then it
// drops the rest, releasing their wg counts. Serve owns it.
func (s *Server) retransmitLoop(sk *sock, send func([]rtItem) (failed int)) {
	batch := make([]rtItem, rtBatch)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n, next := sk.rtq.due(time.Now(), s.cfg.RetransmitDelay, batch)
		if n > 0 {
			failed := send(batch[:n])
			s.m.crSendError.Add(float64(failed))
			s.m.crRetransmits.Add(float64(n - failed))
			for i := range batch[:n] {
				if batch[i].left == 0 {
					sk.wg.Done()
				}
				batch[i] = rtItem{}
			}
			if n == len(batch) {
				continue // more may be due already
			}
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-sk.rtq.kick:
			timer.Stop()
		case <-sk.cancel:
			for range sk.rtq.close() {
				sk.wg.Done()
			}
			return
		}
	}
}

// batchSender sends retransmissions in sendmmsg batches on bio, which
// only the retransmission loop uses.
func (s *Server) batchSender(sk *sock, bio *batchIO) func([]rtItem) int {
	return func(items []rtItem) int {
		q, failed := 0, 0
		for i := range items {
			if bio.queue(q, items[i].msg, items[i].to, items[i].from) {
				q++
			} else {
				failed++
			}
		}
		f, err := bio.send(q)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("stun: retransmitting connection requests", "local", sk.local, "err", err)
		}
		return failed + f
	}
}
