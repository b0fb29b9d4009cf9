package wake

import (
	"context"
	"sync"
)

// MaxBatch is the most devices one WakeEach call takes: enough for an ACS
// to hand over thousands at a time, bounded so one answer stays a few
// megabytes.
const MaxBatch = 10000

// WakeEach wakes every device in ids with r, at most conc at a time (conc
// below 1 means 1), and calls done(i, res, err) as device ids[i]'s wake
// ends, from the worker goroutines: done must be safe for concurrent use.
// A device not in the registry gets an error wrapping ErrNotFound. If ctx
// ends first, the devices not yet started get ctx's error. It returns once
// every done has returned.
//
// Each device goes through Wake, so a batch shares everything a single
// wake does: transport choice, coalescing per device, the recorded history.
func (w *Waker) WakeEach(ctx context.Context, ids []string, r Request, conc int, done func(i int, res Result, err error)) error {
	if err := w.Check(r); err != nil {
		return err
	}
	conc = max(1, min(conc, len(ids)))
	next := make(chan int)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := range next {
				if err := ctx.Err(); err != nil {
					done(i, Result{}, err)
					continue
				}
				res, err := w.Wake(ctx, ids[i], r)
				done(i, res, err)
			}
		})
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	return nil
}
