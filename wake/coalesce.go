package wake

import (
	"hash/maphash"
	"sync"
	"time"
)

// A call is one wake of one device that other wakes of the device may
// share: those that arrive while it runs, or within the minimum spacing
// after it started.
type call struct {
	id    string // the wake's id, as recorded in the device's history
	start time.Time

	done chan struct{} // closed once res and err are set
	res  Result
	err  error // the wake did not run (ErrBusy): nothing to share

	// confirmed is closed when an Inform confirms this wake; confirmAt is
	// set before.
	confirmed chan struct{}
	confirmAt time.Time
	waiters   int  // callers waiting for the confirmation; guarded by the shard lock
	recorded  bool // its record is in the registry; guarded by the shard lock
}

// isConfirmed reports whether cl was confirmed. The shard lock, or a
// receive from cl.confirmed, orders it with confirmAt.
func (cl *call) isConfirmed() bool {
	select {
	case <-cl.confirmed:
		return true
	default:
		return false
	}
}

// calls is the table of the devices woken recently, sharded to keep the
// lock out of the way of wakes of different devices. An entry lives while
// its wake runs, for the minimum spacing after it started, and while
// someone waits for its confirmation; then the next sweep drops it, and
// the device's history in the registry is all that remains.
type calls struct {
	seed    maphash.Seed
	spacing time.Duration
	shards  [64]callShard
}

type callShard struct {
	mu        sync.Mutex
	m         map[string]*call // the device's latest call
	lastSweep time.Time
}

func newCalls(spacing time.Duration) *calls {
	c := &calls{seed: maphash.MakeSeed(), spacing: spacing}
	for i := range c.shards {
		c.shards[i].m = map[string]*call{}
	}
	return c
}

func (c *calls) shard(device string) *callShard {
	return &c.shards[maphash.String(c.seed, device)%uint64(len(c.shards))]
}

// join returns the call a wake of device must share, with leader false;
// or a new call the caller must run and finish, with leader true.
func (c *calls) join(device, wakeID string, now time.Time) (cl *call, leader bool) {
	s := c.shard(device)
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastSweep) > time.Second {
		s.sweepLocked(now, c.spacing)
	}
	if cur := s.m[device]; cur != nil && cur.shareable(now, c.spacing) {
		return cur, false
	}
	cl = &call{id: wakeID, start: now, done: make(chan struct{}), confirmed: make(chan struct{})}
	s.m[device] = cl
	return cl, true
}

// shareable says whether a wake arriving at now shares cl: cl still runs,
// or ran and started within the spacing, and was not refused.
func (cl *call) shareable(now time.Time, spacing time.Duration) bool {
	select {
	case <-cl.done:
		return cl.err == nil && now.Sub(cl.start) < spacing
	default:
		return true
	}
}

// finish publishes the outcome of a call to those sharing it. A refused
// call (err != nil) leaves the table at once, so the next wake runs.
func (c *calls) finish(device string, cl *call, res Result, err error) {
	s := c.shard(device)
	s.mu.Lock()
	cl.res, cl.err = res, err
	close(cl.done)
	if err != nil && s.m[device] == cl {
		delete(s.m, device)
	}
	s.mu.Unlock()
}

// record writes cl's record with write, under the shard lock, so that an
// Inform either confirms cl before (write sees it confirmed) or finds the
// record after.
func (c *calls) record(device string, cl *call, write func(confirmed bool, at time.Time)) {
	s := c.shard(device)
	s.mu.Lock()
	defer s.mu.Unlock()
	confirmed := cl.isConfirmed()
	write(confirmed, cl.confirmAt)
	cl.recorded = true
}

// confirmPending confirms the device's latest call at at if its record is
// not written yet: the wake is still in progress. It returns the call's
// id and start, and whether it did.
func (c *calls) confirmPending(device string, at time.Time) (id string, start time.Time, ok bool) {
	s := c.shard(device)
	s.mu.Lock()
	defer s.mu.Unlock()
	cl := s.m[device]
	if cl == nil || cl.recorded || cl.isConfirmed() {
		return "", time.Time{}, false
	}
	cl.confirmAt = at
	close(cl.confirmed)
	return cl.id, cl.start, true
}

// confirm marks the device's call wakeID confirmed at at, waking those
// waiting for it, if the table still holds it.
func (c *calls) confirm(device, wakeID string, at time.Time) {
	s := c.shard(device)
	s.mu.Lock()
	defer s.mu.Unlock()
	cl := s.m[device]
	if cl == nil || cl.id != wakeID || cl.isConfirmed() {
		return
	}
	cl.confirmAt = at
	close(cl.confirmed)
}

// wait registers a caller waiting for cl's confirmation; the returned
// function unregisters it.
func (c *calls) wait(device string, cl *call) func() {
	s := c.shard(device)
	s.mu.Lock()
	cl.waiters++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		cl.waiters--
		s.mu.Unlock()
	}
}

// sweepLocked drops the calls no wake can share any more and no one waits
// on. s.mu held.
func (s *callShard) sweepLocked(now time.Time, spacing time.Duration) {
	s.lastSweep = now
	for k, cl := range s.m {
		select {
		case <-cl.done:
		default:
			continue
		}
		if cl.waiters == 0 && now.Sub(cl.start) >= spacing {
			delete(s.m, k)
		}
	}
}

// len is the number of calls held, for tests.
func (c *calls) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
