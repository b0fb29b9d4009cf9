package campaign

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// flushEvery is how often results are committed: a crash loses at
	// most this much (those devices become "unknown").
	flushEvery = 200 * time.Millisecond
	// claimAhead is how much work one claim covers at the observed pace:
	// what a crash can leave claimed but never handed out.
	claimAhead = 500 * time.Millisecond
	// rateWindow is the span of Campaign.RatePerS.
	rateWindow = 5 * time.Second
	// The back-off before retrying a device after ErrBusy.
	busyMin = 10 * time.Millisecond
	busyMax = 50 * time.Millisecond
)

// entry is one campaign in memory.
type entry struct {
	mu      sync.Mutex
	meta    meta // ID, CreatedAt, Spec and Total never change
	counts  [numCodes]int
	results []byte       // one code per device while running
	dirty   map[int]bool // result chunks changed since the last commit
	samples []sample     // for the observed rate
}

type sample struct {
	t    time.Time
	done int
}

func (e *entry) state() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.meta.State
}

func (e *entry) markDirty(chunk int) {
	if e.dirty == nil {
		e.dirty = map[int]bool{}
	}
	e.dirty[chunk] = true
}

func (e *entry) doneCount() int {
	n := 0
	for _, c := range e.counts {
		n += c
	}
	return n
}

// record sets device i's result.
func (e *entry) record(i int, c byte) {
	e.mu.Lock()
	e.results[i] = c
	if c != codeReleased {
		e.counts[c]++
	}
	e.markDirty(i / chunkSize)
	e.mu.Unlock()
}

// persisted returns the meta to store. e.mu held.
func (e *entry) persisted() meta {
	md := e.meta
	md.Counts = countMap(&e.counts)
	return md
}

func countMap(counts *[numCodes]int) map[string]int {
	m := map[string]int{}
	for c, n := range counts {
		if n > 0 {
			m[statusWords[c]] = n
		}
	}
	return m
}

// sample notes the progress at now, keeping the newest sample at least
// rateWindow old and all after it. e.mu held.
func (e *entry) sample(now time.Time) {
	e.samples = append(e.samples, sample{now, e.doneCount()})
	i := 0
	for i+1 < len(e.samples) && now.Sub(e.samples[i+1].t) >= rateWindow {
		i++
	}
	e.samples = append(e.samples[:0], e.samples[i:]...)
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// view returns the campaign as reported.
func (e *entry) view(now time.Time) Campaign {
	e.mu.Lock()
	defer e.mu.Unlock()
	md := &e.meta
	done := e.doneCount()
	spec := md.Spec
	spec.Devices = slices.Clone(spec.Devices)
	spec.Transports = slices.Clone(spec.Transports)
	c := Campaign{
		ID:        md.ID,
		Name:      md.Spec.Name,
		State:     md.State,
		CreatedAt: md.CreatedAt,
		Spec:      SpecView{Spec: spec, DevicesTotal: md.Total},
		Total:     md.Total,
		Done:      done,
		Pending:   md.Total - done,
		Counts:    countMap(&e.counts),
	}
	end := now
	if md.FinishedAt != nil {
		t := *md.FinishedAt
		c.FinishedAt, end = &t, t
	}
	elapsed := max(0, end.Sub(md.CreatedAt).Seconds())
	c.ElapsedS = round3(elapsed)
	switch {
	case md.State == StateRunning && len(e.samples) > 0:
		s := e.samples[0]
		if dt := now.Sub(s.t).Seconds(); dt > 0 {
			rate := float64(done-s.done) / dt
			c.RatePerS = round3(rate)
			if rate > 0 {
				eta := round3(float64(c.Pending) / rate)
				c.ETASeconds = &eta
			}
		}
	case md.State != StateRunning && elapsed > 0:
		c.RatePerS = round3(float64(done) / elapsed)
	}
	return c
}

// job is one device to wake: its index in the campaign and its id.
type job struct {
	i  int
	id string
}

// runner runs one campaign: a dispatcher claims devices and hands them to
// Spec.Concurrency workers through an unbuffered channel (which is what
// bounds the concurrency), workers record results in the entry, and a
// ticker commits them and publishes progress.
type runner struct {
	m       *Manager
	e       *entry
	total   int
	conc    int
	rate    float64
	opts    WakeOptions
	cursor  int   // claimed cursor when the runner starts
	requeue []job // released devices to wake first

	stopDispatch context.CancelFunc // no further device is handed out
	abortWakes   context.CancelFunc // wakes in flight are abandoned
	cancelled    atomic.Bool        // set by Cancel, as opposed to a stop
	exited       chan struct{}
}

// startRunner starts running e, whose results are loaded. m.mu held, and
// m not closed.
func (m *Manager) startRunner(e *entry, cursor int, requeue []job) {
	r := &runner{
		m:       m,
		e:       e,
		total:   e.meta.Total,
		conc:    e.meta.Spec.Concurrency,
		rate:    e.meta.Spec.RatePerS,
		opts:    e.meta.wakeOptions(),
		cursor:  cursor,
		requeue: requeue,
		exited:  make(chan struct{}),
	}
	dctx, dstop := context.WithCancel(context.Background())
	wctx, wstop := context.WithCancel(context.Background())
	r.stopDispatch, r.abortWakes = dstop, wstop
	m.runners[e.meta.ID] = r
	m.running.Inc()
	e.mu.Lock()
	e.samples = []sample{{time.Now(), e.doneCount()}}
	e.mu.Unlock()
	m.wg.Go(func() { r.run(dctx, wctx) })
}

func (r *runner) run(dctx, wctx context.Context) {
	defer close(r.exited)
	defer r.stopDispatch()
	defer r.abortWakes()

	jobs := make(chan job)
	var workers sync.WaitGroup
	for range max(1, min(r.conc, r.total)) {
		workers.Go(func() {
			for j := range jobs {
				c := r.wake(dctx, wctx, j.id)
				r.e.record(j.i, c)
				if c != codeReleased {
					r.m.wakes[c].Inc()
				}
			}
		})
	}
	stopTicks := make(chan struct{})
	var ticker sync.WaitGroup
	ticker.Go(func() { r.tick(stopTicks) })

	next, left := r.dispatch(dctx, jobs)
	close(jobs)
	workers.Wait()
	close(stopTicks)
	ticker.Wait()

	v, ended := r.finish(next, left)
	r.m.mu.Lock()
	delete(r.m.runners, v.ID)
	r.m.mu.Unlock()
	r.m.running.Dec()
	if ended {
		r.m.finished(v)
	}
}

// dispatch hands devices to the workers until all are handed out or ctx
// ends. It returns where the cursor belongs (the first device of the
// claimed range not handed out) and the requeued devices not handed out.
func (r *runner) dispatch(ctx context.Context, jobs chan<- job) (next int, left []job) {
	lim := newLimiter(r.rate)
	for k, j := range r.requeue {
		if lim.wait(ctx) != nil {
			return r.cursor, r.requeue[k:]
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			return r.cursor, r.requeue[k:]
		}
	}
	next, claimed := r.cursor, r.cursor
	var (
		ids       []string // the device chunk holding next
		idsChunk  = -1
		size      int // of the last claim
		claimedAt time.Time
	)
	for next < r.total {
		if next == claimed {
			chunk := claimed / chunkSize
			to := min(r.total, claimed+r.claimSize(size, claimedAt), (chunk+1)*chunkSize)
			start := time.Now()
			got, err := r.m.claim(r.e, claimed, to, chunk != idsChunk)
			if err != nil {
				// Never wake a device whose claim is not durable.
				r.m.log.Error("campaign: claiming devices; retrying in 1s", "campaign", r.e.meta.ID, "err", err)
				if sleep(ctx, time.Second) != nil {
					return next, nil
				}
				continue
			}
			if got != nil {
				ids, idsChunk = got, chunk
			}
			size, claimedAt, claimed = to-claimed, start, to
		}
		if lim.wait(ctx) != nil {
			return next, nil
		}
		select {
		case jobs <- job{i: next, id: ids[next%chunkSize]}:
			next++
		case <-ctx.Done():
			return next, nil
		}
	}
	return next, nil
}

// claimSize is how many devices to claim next: claimAhead's worth at the
// pace of the last claim, and at least enough to fill the workers, unless
// the rate limit says fewer will be needed.
func (r *runner) claimSize(last int, at time.Time) int {
	n := r.conc
	if el := time.Since(at).Seconds(); last > 0 && el > 0 {
		n = max(n, int(min(chunkSize, float64(last)/el*claimAhead.Seconds())))
	}
	if r.rate > 0 {
		n = min(n, max(1, int(math.Ceil(r.rate*claimAhead.Seconds()))))
	}
	return min(n, chunkSize)
}

// wake wakes one device and returns its result code, or codeReleased if
// it certainly was not woken.
func (r *runner) wake(dctx, wctx context.Context, id string) byte {
	backoff := busyMin
	for {
		if dctx.Err() != nil {
			return codeReleased
		}
		o := r.m.cfg.Waker.Wake(wctx, id, r.opts)
		switch {
		case o.Err == nil:
			if c, ok := statusCodes[o.Status]; ok {
				return c
			}
			r.m.log.Debug("campaign: unknown wake status counted as error", "campaign", r.e.meta.ID, "device", id, "status", o.Status)
			return codeError
		case errors.Is(o.Err, ErrBusy):
			d := backoff + rand.N(backoff/4)
			if sleep(dctx, min(d, busyMax)) != nil {
				return codeReleased
			}
			backoff = min(2*backoff, busyMax)
		case errors.Is(o.Err, ErrDeviceNotFound):
			return codeNotFound
		case wctx.Err() != nil:
			// Abandoned in flight: it may or may not have gone out.
			return codeUnknown
		default:
			r.m.log.Debug("campaign: wake failed", "campaign", r.e.meta.ID, "device", id, "err", o.Err)
			return codeError
		}
	}
}

// tick commits results every flushEvery and publishes progress every
// Config.ProgressEvery, until stop is closed.
func (r *runner) tick(stop <-chan struct{}) {
	flush := time.NewTicker(flushEvery)
	defer flush.Stop()
	progress := time.NewTicker(r.m.cfg.ProgressEvery)
	defer progress.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-flush.C:
			if err := r.m.flush(r.e, -1, false); err != nil {
				r.m.log.Error("campaign: storing results; retrying", "campaign", r.e.meta.ID, "err", err)
			}
			r.e.mu.Lock()
			r.e.sample(now)
			r.e.mu.Unlock()
		case <-progress.C:
			if p := r.m.cfg.Publisher; p != nil {
				p.Progress(r.e.view(time.Now()))
			}
		}
	}
}

// finish stores the campaign's state once its workers have stopped: the
// results, the cursor moved back to next, the requeued devices left over
// released, and the new state. ended reports done or cancelled.
func (r *runner) finish(next int, left []job) (v Campaign, ended bool) {
	e := r.e
	now := time.Now().UTC()
	e.mu.Lock()
	for _, j := range left {
		e.results[j.i] = codeReleased
		e.markDirty(j.i / chunkSize)
	}
	switch {
	case r.cancelled.Load():
		// Even if every device has a result now: those in flight
		// were abandoned.
		e.meta.State, e.meta.FinishedAt = StateCancelled, &now
	case e.doneCount() == e.meta.Total:
		e.meta.State, e.meta.FinishedAt = StateDone, &now
	}
	ended = e.meta.State != StateRunning
	e.mu.Unlock()
	if err := r.m.flush(e, next, true); err != nil {
		// The store still says running with devices claimed: after a
		// restart they count as unknown, never woken twice.
		r.m.log.Error("campaign: storing final state", "campaign", e.meta.ID, "err", err)
	}
	if ended {
		e.mu.Lock()
		e.results, e.dirty, e.samples = nil, nil, nil
		e.mu.Unlock()
	}
	return e.view(time.Now()), ended
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
