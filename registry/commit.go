package registry

import (
	"context"
	"sync"
)

// commitQueue is the registry's group commit. Writers enqueue requests
// without blocking; one goroutine takes everything queued, writes it in one
// Store.Write (one transaction, one fsync) and answers each request. While
// it waits on the disk, new requests queue up and go out together in the
// next write, so concurrent writers share fsyncs and a lone writer pays no
// batching delay.
type commitQueue struct {
	store Store
	mu    sync.Mutex
	reqs  []*commitReq
	wake  chan struct{} // one token: the queue is not empty
	quit  chan struct{}
	done  chan struct{}
}

// commitReq is one atomic unit of a group write.
type commitReq struct {
	// ctx, if set, lets the request be dropped while it is still queued.
	// Once in a transaction it is carried out whatever happens to ctx:
	// its outcome must be known to keep the index true to the store.
	ctx context.Context
	ops []Op
	// build, if set, makes ops when the committer takes the request, so
	// slow encoding runs outside the registry's locks while the request
	// keeps its place in the queue.
	build func() ([]Op, error)
	// after, if set, sees the outcome before done does.
	after func(error)
	done  chan error // buffered: the committer never blocks on it
}

func newCommitReq(ctx context.Context, ops []Op) *commitReq {
	return &commitReq{ctx: ctx, ops: ops, done: make(chan error, 1)}
}

func (q *commitQueue) start(s Store) {
	q.store = s
	q.wake = make(chan struct{}, 1)
	q.quit = make(chan struct{})
	q.done = make(chan struct{})
	go q.loop()
}

// enqueue never blocks, so it may be called under the registry's locks,
// which fixes the request's place in the commit order.
func (q *commitQueue) enqueue(req *commitReq) {
	q.mu.Lock()
	q.reqs = append(q.reqs, req)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// stop writes what is queued and ends the goroutine. Nothing may be
// enqueued after stop.
func (q *commitQueue) stop() {
	close(q.quit)
	<-q.done
}

func (q *commitQueue) loop() {
	defer close(q.done)
	for {
		select {
		case <-q.wake:
			q.drain()
		case <-q.quit:
			q.drain()
			return
		}
	}
}

func (q *commitQueue) drain() {
	for {
		q.mu.Lock()
		reqs := q.reqs
		q.reqs = nil
		q.mu.Unlock()
		if len(reqs) == 0 {
			return
		}
		q.write(reqs)
	}
}

func (q *commitQueue) write(reqs []*commitReq) {
	var ops []Op
	live := reqs[:0]
	for _, req := range reqs {
		if req.ctx != nil && req.ctx.Err() != nil {
			req.finish(req.ctx.Err())
			continue
		}
		if req.build != nil {
			var err error
			if req.ops, err = req.build(); err != nil {
				req.finish(err)
				continue
			}
		}
		ops = append(ops, req.ops...)
		live = append(live, req)
	}
	if len(live) == 0 {
		return
	}
	err := q.store.Write(ops)
	if err == nil || len(live) == 1 {
		for _, req := range live {
			req.finish(err)
		}
		return
	}
	// The group failed. Retry each request alone, so one request the
	// store rejects does not fail the others, and each gets its own
	// outcome.
	for _, req := range live {
		req.finish(q.store.Write(req.ops))
	}
}

func (req *commitReq) finish(err error) {
	if req.after != nil {
		req.after(err)
	}
	req.done <- err
}
