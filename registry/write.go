package registry

import (
	"context"
	"time"
)

// writeOp is a write in flight. It holds its device id, and the unique
// keys it is about to take, until done is closed: a second write to the
// same id, or one claiming the same key, waits for it. Writes to other ids
// run side by side and share fsyncs in the commit queue.
//
// A write reserves its id before it claims keys, and claims all its keys
// at once or none, so a write that waits on another never holds keys: no
// cycle of waits can form.
type writeOp struct {
	id       string
	deleting bool
	keys     []string // claims held
	done     chan struct{}
}

// acquire reserves id for a write.
func (r *Registry) acquire(ctx context.Context, id string, deleting bool) (*writeOp, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		p := r.pending[id]
		if p == nil {
			op := &writeOp{id: id, deleting: deleting, done: make(chan struct{})}
			r.pending[id] = op
			r.writers.Add(1)
			r.mu.Unlock()
			return op, nil
		}
		r.mu.Unlock()
		select {
		case <-p.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// claim checks rec's unique keys against the index and against writes in
// flight, and reserves them for op.
func (r *Registry) claim(ctx context.Context, op *writeOp, rec *record) error {
	stun, jid, udp, hasUDP := rec.keys()
	var keys []string
	if stun != "" {
		keys = append(keys, "s"+stun)
	}
	if jid != "" {
		keys = append(keys, "j"+jid)
	}
	if hasUDP {
		keys = append(keys, "u"+string(udp[:]))
	}
	for {
		r.mu.Lock()
		if o := r.idx.bySTUN(stun); stun != "" && o != nil && o.id() != op.id {
			r.mu.Unlock()
			return &ConflictError{Field: "stun_username"}
		}
		if o := r.idx.byJID(jid); jid != "" && o != nil && o.id() != op.id {
			r.mu.Unlock()
			return &ConflictError{Field: "xmpp_jid"}
		}
		if o := r.idx.byUDP(udp); hasUDP && o != nil && o.id() != op.id {
			r.mu.Unlock()
			return &ConflictError{Field: "udp_address"}
		}
		var busy *writeOp
		for _, k := range keys {
			if p := r.claims[k]; p != nil {
				busy = p
				break
			}
		}
		if busy == nil {
			for _, k := range keys {
				r.claims[k] = op
			}
			op.keys = keys
			r.mu.Unlock()
			return nil
		}
		r.mu.Unlock()
		// Whether the other write commits decides whether this one
		// conflicts: wait for it, then look again.
		select {
		case <-busy.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// releaseLocked ends op. r.mu must be held.
func (r *Registry) releaseLocked(op *writeOp) {
	delete(r.pending, op.id)
	for _, k := range op.keys {
		delete(r.claims, k)
	}
	close(op.done)
	r.writers.Done()
}

func (r *Registry) release(op *writeOp) {
	r.mu.Lock()
	r.releaseLocked(op)
	r.mu.Unlock()
}

// Put creates the device d.ID or replaces it whole. It validates d, keeps
// the CreatedAt of an existing device and ignores d's, and sets UpdatedAt.
// It returns once the write is durable; the lookups see the new device
// only then. A validation failure is a *FieldError (ErrInvalid), a clash
// of stun_username, xmpp_jid or udp_address a *ConflictError (ErrConflict).
func (r *Registry) Put(ctx context.Context, d Device) (saved Device, created bool, err error) {
	// Fail fast, before waiting behind other writes.
	if err := validate(&d); err != nil {
		return Device{}, false, err
	}
	return r.write(ctx, d.ID, func(Device, bool) (Device, error) { return d, nil })
}

// Update reads, changes and writes back the device id as one step: no
// other write to id comes between. fn gets a copy to change; its error is
// returned as is and nothing is written. The result is validated as in
// Put, and fn must not change the id. Unknown ids give ErrNotFound.
// fn runs without the registry's locks held but must not write to id.
func (r *Registry) Update(ctx context.Context, id string, fn func(*Device) error) (Device, error) {
	d, _, err := r.write(ctx, id, func(cur Device, exists bool) (Device, error) {
		if !exists {
			return Device{}, ErrNotFound
		}
		if err := fn(&cur); err != nil {
			return Device{}, err
		}
		if cur.ID != id {
			return Device{}, &FieldError{"id", "cannot be changed"}
		}
		return cur, nil
	})
	return d, err
}

func (r *Registry) write(ctx context.Context, id string, mutate func(cur Device, exists bool) (Device, error)) (Device, bool, error) {
	op, err := r.acquire(ctx, id, false)
	if err != nil {
		return Device{}, false, err
	}
	// Holding the id, nobody else changes its record.
	r.mu.RLock()
	old := r.idx.get(id)
	r.mu.RUnlock()
	cur, exists := deviceOf(old)
	d, err := mutate(cur, exists)
	if err == nil {
		err = validate(&d)
	}
	if err == nil {
		err = saltXMPPPassword(&d)
	}
	if err != nil {
		r.release(op)
		return Device{}, false, err
	}
	now := r.now()
	d.CreatedAt, d.UpdatedAt = now, now
	if old != nil {
		d.CreatedAt = time.Unix(0, old.created)
	}
	rec := newRecord(&d)
	if err := r.claim(ctx, op, rec); err != nil {
		r.release(op)
		return Device{}, false, err
	}
	val := encodeDevice(nil, r.sealer, rec)
	req := newCommitReq(ctx, []Op{{Bucket: BucketDevices, Key: []byte(id), Value: val}})
	r.queue.enqueue(req)
	if err := <-req.done; err != nil {
		r.release(op)
		return Device{}, false, err
	}

	r.mu.Lock()
	r.lmu.Lock()
	if old != nil {
		rec.live, rec.dirty = old.live, old.dirty
	}
	r.handOnBindingLocked(old, rec, now)
	r.lmu.Unlock()
	r.idx.set(rec)
	r.releaseLocked(op)
	r.mu.Unlock()
	return rec.device(), old == nil, nil
}

// handOnBindingLocked gives rec, about to replace old (nil for a new
// device), its UDP binding. A binding belongs to the STUN identity that
// sent it: rec keeps old's while the stun_username stays; when it is new
// or changed, rec takes the pending binding of its username if there is
// one, and otherwise has none. Either way a binding that came or went is
// marked for the next flush. r.mu and r.lmu held.
func (r *Registry) handOnBindingLocked(old, rec *record, now time.Time) {
	user := rec.field(fSTUNUsername)
	var had *bindSlot
	if old != nil {
		had = old.bind.Load()
		if old.field(fSTUNUsername) == user {
			rec.bind.Store(had)
			return
		}
	}
	if user != "" {
		if b, ok := r.pendingBinds.take(user, now.UnixNano()); ok {
			rec.bind.Store(&bindSlot{b: b, queued: true})
			r.markDirtyLocked(rec)
			return
		}
	}
	if had != nil {
		r.markDirtyLocked(rec) // rewrites the live record without it
	}
}

// Delete removes the device id and its live state, UDP binding included,
// once durably.
func (r *Registry) Delete(ctx context.Context, id string) error {
	op, err := r.acquire(ctx, id, true)
	if err != nil {
		return err
	}
	r.mu.RLock()
	old := r.idx.get(id)
	r.mu.RUnlock()
	if old == nil {
		r.release(op)
		return ErrNotFound
	}
	key := []byte(id)
	req := newCommitReq(ctx, []Op{{Bucket: BucketDevices, Key: key}, {Bucket: BucketLive, Key: key}})
	r.queue.enqueue(req)
	if err := <-req.done; err != nil {
		r.release(op)
		return err
	}
	r.mu.Lock()
	r.idx.remove(id)
	r.releaseLocked(op)
	r.mu.Unlock()
	return nil
}
