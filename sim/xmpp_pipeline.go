package sim

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// A pipeline keeps a fixed number of connection requests in flight on an
// ACS session, as an ACS waking a fleet does, without a goroutine, a
// channel or a context per request: the session's reader hears each
// answer, reports it and queues the next request in the same step, and
// the writer sends what was queued in one write. It is what a load tool
// needs to measure a broker rather than itself; XMPPACS.ConnectionRequest
// remains the call for one request at a time.

// PipelineTarget is the CPE a pipelined connection request goes to.
type PipelineTarget struct {
	JID                string // the CPE's full JID
	Username, Password string // its connection-request credentials
}

// PipelineAnswer is what became of one pipelined request.
type PipelineAnswer struct {
	Target PipelineTarget
	// Result is the answer; zero when TimedOut.
	Result XMPPIQResult
	// RTT is the time from queueing the request to reading its answer.
	RTT time.Duration
	// TimedOut reports that no answer came within the timeout.
	TimedOut bool
}

// PipelineConfig describes a pipelined run.
type PipelineConfig struct {
	// InFlight is how many requests are outstanding at once (required).
	InFlight int
	// Timeout ends a request that has no answer; defaults to 5s.
	Timeout time.Duration
	// Next gives the target of each new request (required). It is
	// called from one goroutine at a time.
	Next func() PipelineTarget
	// Done hears every request's outcome (required). It is called from
	// one goroutine at a time and must not block: it runs on the
	// session's reader.
	Done func(PipelineAnswer)
}

// Errors of Pipeline.
var (
	ErrPipelineConfig  = errors.New("sim: pipeline needs InFlight > 0, Next and Done")
	ErrPipelineRunning = errors.New("sim: a pipeline is already running on this ACS session")
)

// pipeline is a running Pipeline. Request ids are "p<slot>.<gen>": the
// slot of the request in flight and its generation, so that a late
// answer to a timed-out request is not taken for its successor's.
type pipeline struct {
	a   *XMPPACS
	cfg PipelineConfig

	mu       sync.Mutex // Next, Done and the slots
	slots    []pipeSlot
	stopping bool
	idle     int           // slots not refilled since stopping
	drained  chan struct{} // closed when every slot is idle
}

type pipeSlot struct {
	gen    uint64
	target PipelineTarget
	start  time.Time
	busy   bool
}

// Pipeline sends connection requests until ctx ends, cfg.InFlight at a
// time, and returns once every request in flight has been answered or
// has timed out. It returns an error if the session ended.
func (a *XMPPACS) Pipeline(ctx context.Context, cfg PipelineConfig) error {
	if cfg.InFlight <= 0 || cfg.Next == nil || cfg.Done == nil {
		return ErrPipelineConfig
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	p := &pipeline{a: a, cfg: cfg, slots: make([]pipeSlot, cfg.InFlight), drained: make(chan struct{})}
	a.pmu.Lock()
	if a.pipe != nil {
		a.pmu.Unlock()
		return ErrPipelineRunning
	}
	a.pipe = p
	a.pmu.Unlock()
	defer func() {
		a.pmu.Lock()
		a.pipe = nil
		a.pmu.Unlock()
	}()

	p.mu.Lock()
	for i := range p.slots {
		p.sendLocked(i)
	}
	p.mu.Unlock()
	a.signalWriter()

	tick := time.NewTicker(min(cfg.Timeout/4, 100*time.Millisecond))
	defer tick.Stop()
	stop := ctx.Done()
	for {
		select {
		case <-stop:
			stop = nil
			p.mu.Lock()
			p.stopping = true
			for _, s := range p.slots {
				if !s.busy {
					p.idle++
				}
			}
			if p.idle == len(p.slots) {
				close(p.drained)
			}
			p.mu.Unlock()
		case <-tick.C:
			p.expire(time.Now())
		case <-p.drained:
			return nil
		case <-a.done:
			return fmt.Errorf("%w: %v", ErrXMPPACSClosed, a.err)
		}
	}
}

// sendLocked queues the next request in slot i, or leaves the slot idle
// once the pipeline is stopping.
func (p *pipeline) sendLocked(i int) {
	s := &p.slots[i]
	if p.stopping {
		s.busy = false
		p.idle++
		if p.idle == len(p.slots) {
			close(p.drained)
		}
		return
	}
	s.gen++
	s.target = p.cfg.Next()
	s.busy = true
	var idb [32]byte
	id := append(idb[:0], 'p')
	id = strconv.AppendInt(id, int64(i), 36)
	id = append(id, '.')
	id = strconv.AppendUint(id, s.gen, 36)

	a := p.a
	a.wmu.Lock()
	b := append(a.wbuf, "<iq type='get' id='"...)
	b = append(b, id...)
	b = append(b, "' to='"...)
	b = appendEscaped(b, s.target.JID)
	b = append(b, "'><connectionRequest xmlns='"+nsConnReq+"'><username>"...)
	b = appendEscaped(b, s.target.Username)
	b = append(b, "</username><password>"...)
	b = appendEscaped(b, s.target.Password)
	a.wbuf = append(b, "</password></connectionRequest></iq>"...)
	a.wmu.Unlock()
	s.start = time.Now()
}

// answer takes the answer e (of type typ) to the request id, if it is
// one of this pipeline's in flight, and sends the next in its slot. It
// runs on the session's reader.
func (p *pipeline) answer(id string, e *element, typ string) {
	slot, gen, ok := parsePipeID(id)
	if !ok || slot >= len(p.slots) {
		return
	}
	now := time.Now()
	p.mu.Lock()
	s := &p.slots[slot]
	if !s.busy || s.gen != gen {
		p.mu.Unlock()
		return // the answer to a request that timed out
	}
	p.cfg.Done(PipelineAnswer{Target: s.target, Result: iqResult(e, typ), RTT: now.Sub(s.start)})
	p.sendLocked(slot)
	p.mu.Unlock()
	p.a.signalWriter()
}

// expire ends the requests older than the timeout.
func (p *pipeline) expire(now time.Time) {
	sent := false
	p.mu.Lock()
	for i := range p.slots {
		s := &p.slots[i]
		if !s.busy || now.Sub(s.start) < p.cfg.Timeout {
			continue
		}
		p.cfg.Done(PipelineAnswer{Target: s.target, RTT: now.Sub(s.start), TimedOut: true})
		p.sendLocked(i)
		sent = true
	}
	p.mu.Unlock()
	if sent {
		p.a.signalWriter()
	}
}

// parsePipeID reads "p<slot>.<gen>".
func parsePipeID(id string) (slot int, gen uint64, ok bool) {
	if len(id) < 4 || id[0] != 'p' {
		return 0, 0, false
	}
	dot := -1
	for i := 1; i < len(id); i++ {
		if id[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 2 {
		return 0, 0, false
	}
	sl, err := strconv.ParseUint(id[1:dot], 36, 31)
	if err != nil {
		return 0, 0, false
	}
	g, err := strconv.ParseUint(id[dot+1:], 36, 64)
	if err != nil {
		return 0, 0, false
	}
	return int(sl), g, true
}
