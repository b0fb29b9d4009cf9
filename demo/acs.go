package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/wake"
)

// Session set-up: a CPE that accepted a connection request opens its
// CWMP session (TCP, TLS, the Inform) some tens of milliseconds later.
const (
	sessionSetupMin = 20 * time.Millisecond
	sessionSetupMax = 80 * time.Millisecond
)

// informer plays the ACS's side of confirmation: when a simulated CPE
// accepts a connection request it "opens a session" after a random
// set-up delay, and the ACS reports its Inform, with the event
// "6 CONNECTION REQUEST" (TR-069 3.7.1.5, Table 7), to the appliance
// through POST /v1/devices/{id}/inform. The CPEs' OnWake callbacks only
// start a timer, so they never block; when it fires the Inform is queued
// for a fixed pool of workers, which only post.
type informer struct {
	api   *apiclient.Client
	queue chan string // device ids whose Inform is due

	scheduled atomic.Int64 // wakes whose Inform is to come
	confirmed atomic.Int64 // posted, answered confirmed: true
	refused   atomic.Int64 // posted, answered confirmed: false
	failed    atomic.Int64 // the API call failed
	dropped   atomic.Int64 // the queue was full
	lastDone  atomic.Int64 // unix nanoseconds of the last post

	mu       sync.Mutex
	firstErr error
}

// newInformer makes an informer whose queue holds capacity Informs.
func newInformer(c *apiclient.Client, capacity int) *informer {
	return &informer{api: c, queue: make(chan string, capacity)}
}

// woke schedules the Inform of a CPE that accepted a connection request
// at at, once its session is set up. It never blocks: the timer's
// function queues the Inform, or drops and counts it when the queue is
// full.
func (in *informer) woke(id string, at time.Time) {
	setup := sessionSetupMin + rand.N(sessionSetupMax-sessionSetupMin)
	in.scheduled.Add(1)
	time.AfterFunc(time.Until(at.Add(setup)), func() {
		select {
		case in.queue <- id:
		default:
			in.dropped.Add(1)
		}
	})
}

// run posts queued Informs with the given number of workers until ctx is
// cancelled.
func (in *informer) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case id := <-in.queue:
					in.post(ctx, id)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
}

// post reports one Inform.
func (in *informer) post(ctx context.Context, id string) {
	res, err := in.api.Inform(ctx, id, api.InformRequest{Events: []string{wake.EventConnectionRequest}})
	switch {
	case err != nil:
		in.failed.Add(1)
		in.mu.Lock()
		if in.firstErr == nil {
			in.firstErr = err
		}
		in.mu.Unlock()
	case res.Confirmed:
		in.confirmed.Add(1)
	default:
		in.refused.Add(1)
	}
	in.lastDone.Store(time.Now().UnixNano())
}

// posted is the number of Informs posted, whatever the answer.
func (in *informer) posted() int64 {
	return in.confirmed.Load() + in.refused.Load() + in.failed.Load()
}

// pending is the number of Informs scheduled, queued or being posted.
func (in *informer) pending() int64 {
	return in.scheduled.Load() - in.posted() - in.dropped.Load()
}

// err returns the first failed API call, if any.
func (in *informer) err() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.firstErr
}

// settle waits until every one of want Informs has been posted, or none
// is pending and none completed for quiet, or limit has passed, and returns
// how long it waited.
func (in *informer) settle(ctx context.Context, want int64, quiet, limit time.Duration) time.Duration {
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		last := time.Unix(0, in.lastDone.Load())
		switch {
		case in.posted() >= want,
			in.pending() == 0 && now.Sub(last) >= quiet && now.Sub(start) >= quiet,
			now.Sub(start) >= limit:
			return now.Sub(start)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return time.Since(start)
		}
	}
}
