package registry

import (
	"context"
	"slices"
	"time"
)

// Live returns a copy of the device's live state; false for unknown ids.
func (r *Registry) Live(id string) (Live, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rec := r.idx.get(id)
	if rec == nil {
		return Live{}, false
	}
	r.lmu.Lock()
	l := rec.live
	r.lmu.Unlock()
	return cloneLive(l), true
}

// RecordWake appends w to the device's recent wakes, keeping the last
// MaxWakeRecords. Unknown ids are ignored: the device may have been
// deleted while it was being woken.
func (r *Registry) RecordWake(id string, w WakeRecord) {
	r.UpdateLive(id, func(l *Live) { l.Wakes = append(l.Wakes, w) })
}

// UpdateLive changes the device's live state with fn, which gets a copy it
// may change freely, and marks it for the next flush: many updates between
// flushes cost one write. It returns false, without calling fn, for an
// unknown id or a closed registry. fn runs under the registry's live lock,
// so it must be quick and must not call the Registry.
func (r *Registry) UpdateLive(id string, fn func(*Live)) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rec := r.idx.get(id)
	if rec == nil || r.closed {
		return false
	}
	r.lmu.Lock()
	defer r.lmu.Unlock()
	l := cloneLive(rec.live)
	fn(&l)
	if n := len(l.Wakes); n > MaxWakeRecords {
		l.Wakes = slices.Clone(l.Wakes[n-MaxWakeRecords:])
	}
	rec.live = &l
	r.markDirtyLocked(rec)
	return true
}

// markDirtyLocked queues rec's live state for the next flush. r.lmu held.
func (r *Registry) markDirtyLocked(rec *record) {
	if !rec.dirty {
		rec.dirty = true
		r.dirty = append(r.dirty, rec.id())
	}
}

// Flush writes dirty live state now and waits for it to be durable. The
// registry does this every LiveFlushInterval and in Close on its own.
// After Close it returns ErrClosed.
func (r *Registry) Flush(ctx context.Context) error {
	req, err := r.flushReq(false)
	if req == nil {
		return err
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		// The flush goes on; its failure is logged and retried.
		return ctx.Err()
	}
}

type liveItem struct {
	id      string
	live    *Live   // never changed once published, so encodable unlocked
	bind    binding // a copy, taken under the binding's lock
	hasBind bool
}

// flushReq takes the dirty live states and queues their write, or returns
// nil when nothing is dirty. It queues under r.mu so the write keeps its
// place against deletes: a state taken here was taken before any later
// Delete reserved its id, so its write reaches the store before that
// delete's; and a device whose delete is in flight is skipped.
//
// Only Close's own final call (final) may run once the registry is
// closed: the commit queue stops right after it.
func (r *Registry) flushReq(final bool) (*commitReq, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed && !final {
		return nil, ErrClosed
	}
	r.lmu.Lock()
	defer r.lmu.Unlock()
	ids := r.dirty
	r.dirty = nil
	var items []liveItem
	for _, id := range ids {
		rec := r.idx.get(id)
		if rec == nil || !rec.dirty {
			continue
		}
		if p := r.pending[id]; p != nil && p.deleting {
			r.dirty = append(r.dirty, id) // flushed next time if the delete fails
			continue
		}
		rec.dirty = false
		it := liveItem{id: rec.id(), live: rec.live}
		if s := rec.bind.Load(); s != nil {
			s.mu.Lock()
			it.bind, it.hasBind = s.b, true
			s.saved, s.queued = s.b.seen, false
			s.mu.Unlock()
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return nil, nil
	}
	req := newCommitReq(nil, nil)
	req.build = func() ([]Op, error) {
		ops := make([]Op, 0, len(items))
		for i := range items {
			it := &items[i]
			var b *binding
			if it.hasBind {
				b = &it.bind
			}
			v, err := encodeLiveRecord(it.live, b)
			if err != nil {
				return nil, err
			}
			// v is nil when the device has no live state left (its
			// binding was dropped): the op deletes the record.
			ops = append(ops, Op{Bucket: BucketLive, Key: []byte(it.id), Value: v})
		}
		return ops, nil
	}
	req.after = func(err error) {
		if err != nil {
			r.log.Error("registry: flushing live state failed; will retry", "devices", len(items), "err", err)
			r.redirty(items)
		}
	}
	r.queue.enqueue(req)
	return req, nil
}

// redirty marks the items of a failed flush dirty again, unless their
// device has gone since.
func (r *Registry) redirty(items []liveItem) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.lmu.Lock()
	defer r.lmu.Unlock()
	for _, it := range items {
		if rec := r.idx.get(it.id); rec != nil {
			r.markDirtyLocked(rec)
		}
	}
}

func (r *Registry) flushLoop() {
	defer close(r.flushDone)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stopFlush:
			return
		case <-t.C:
			if req, _ := r.flushReq(false); req != nil {
				<-req.done
			}
		}
	}
}
