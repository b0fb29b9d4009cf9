package registry

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Options configures a Registry.
type Options struct {
	// Key seals the devices' secrets: 32 bytes, required. See
	// LoadOrCreateKey and ParseKey.
	Key []byte
	// Logger receives what the registry cannot return as an error: a
	// failed background flush, dropped live state. Defaults to discarding.
	Logger *slog.Logger
	// LiveFlushInterval is how often dirty live state is written to the
	// store. Defaults to 2s.
	LiveFlushInterval time.Duration
	// BindingSeenPersistInterval is how far a UDP binding's LastSeen may
	// run ahead of its stored copy before a keepalive that changes
	// nothing else marks it for the next flush: keepalives cost one write
	// per device per interval, not one each. Changes of the binding are
	// marked at once whatever it is. Defaults to 30s.
	BindingSeenPersistInterval time.Duration
	// MaxPendingBindings bounds the bindings kept for STUN usernames no
	// device has yet; the least recently seen is evicted first. Defaults
	// to 100,000.
	MaxPendingBindings int
	// PendingBindingTTL is how long a pending binding is kept after its
	// last binding request. Defaults to 10m.
	PendingBindingTTL time.Duration
}

// Defaults of Options.
const (
	DefaultLiveFlushInterval          = 2 * time.Second
	DefaultBindingSeenPersistInterval = 30 * time.Second
)

func (o *Options) validate() error {
	if len(o.Key) != KeyLen {
		return fmt.Errorf("%w: key is %d bytes, want %d", ErrBadKey, len(o.Key), KeyLen)
	}
	if o.LiveFlushInterval < 0 {
		return fmt.Errorf("%w: LiveFlushInterval %v is negative", ErrInvalid, o.LiveFlushInterval)
	}
	if o.BindingSeenPersistInterval < 0 {
		return fmt.Errorf("%w: BindingSeenPersistInterval %v is negative", ErrInvalid, o.BindingSeenPersistInterval)
	}
	if o.MaxPendingBindings < 0 {
		return fmt.Errorf("%w: MaxPendingBindings %d is negative", ErrInvalid, o.MaxPendingBindings)
	}
	if o.PendingBindingTTL < 0 {
		return fmt.Errorf("%w: PendingBindingTTL %v is negative", ErrInvalid, o.PendingBindingTTL)
	}
	return nil
}

// Registry is the device registry: every device in memory, indexed for
// lookups, and written through to a Store. It is safe for concurrent use.
type Registry struct {
	store    Store
	sealer   *sealer
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	// mu guards the indexes and the write reservations. Readers take it
	// shared; a write takes it exclusively only to reserve and, after
	// its commit, to publish, never across store I/O.
	mu      sync.RWMutex
	closed  bool
	idx     *devindex
	pending map[string]*writeOp // device id → the write in flight
	claims  map[string]*writeOp // unique key → the write in flight that claimed it
	writers sync.WaitGroup      // writes in flight

	// lmu guards record.live, record.dirty and dirty. It nests inside mu
	// (shared is enough) so live updates do not stall lookups.
	lmu   sync.Mutex
	dirty []string // ids whose live state awaits a flush; may repeat

	// Bindings: each record's bindSlot has its own lock, which nests
	// inside lmu (flushReq) but is never held while taking lmu
	// (ObserveBinding). pendingBinds nests inside mu and lmu.
	bindSeenEvery time.Duration
	pendingBinds  pendingTable

	// XMPP sessions, in memory only; sessions.mu is a leaf lock.
	sessions sessionTable

	queue     commitQueue
	stopFlush chan struct{}
	flushDone chan struct{}
}

// New loads every device and its live state from store and starts the
// registry's two goroutines: the committer that groups writes, and the
// live-state flusher. Close stops them.
//
// A store sealed with another key fails with ErrBadKey; a damaged record
// with ErrCorrupt. On error the caller still owns store; on success the
// Registry does and closes it in Close.
func New(store Store, opts Options) (*Registry, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil store", ErrInvalid)
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s, err := newSealer(opts.Key)
	if err != nil {
		return nil, err
	}
	r := &Registry{
		store:     store,
		sealer:    s,
		log:       opts.Logger,
		interval:  cmp.Or(opts.LiveFlushInterval, DefaultLiveFlushInterval),
		now:       time.Now,
		pending:   make(map[string]*writeOp),
		claims:    make(map[string]*writeOp),
		stopFlush: make(chan struct{}),
		flushDone: make(chan struct{}),

		bindSeenEvery: cmp.Or(opts.BindingSeenPersistInterval, DefaultBindingSeenPersistInterval),
	}
	r.pendingBinds.init(cmp.Or(opts.MaxPendingBindings, DefaultMaxPendingBindings),
		cmp.Or(opts.PendingBindingTTL, DefaultPendingBindingTTL))
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := r.load(); err != nil {
		return nil, err
	}
	r.queue.start(store)
	go r.flushLoop()
	return r, nil
}

func (r *Registry) load() error {
	var check []byte
	err := r.store.Load(BucketMeta, func(k, v []byte) error {
		if string(k) == metaKeyCheck {
			check = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("registry: loading: %w", err)
	}
	if check != nil {
		pt, err := r.sealer.open(nil, check, metaKeyCheck, "")
		if err != nil || string(pt) != keyCheckText {
			return fmt.Errorf("%w: it does not open this store's secrets", ErrBadKey)
		}
	}

	var recs []*record
	var bad error
	dc := decoder{s: r.sealer}
	err = r.store.Load(BucketDevices, func(k, v []byte) error {
		rec, err := dc.device(k, v)
		if err != nil {
			bad = err
			return err
		}
		recs = append(recs, rec)
		return nil
	})
	if bad != nil {
		return bad // already says which device
	}
	if err != nil {
		return fmt.Errorf("registry: loading devices: %w", err)
	}
	byID := func(a, b *record) int { return cmp.Compare(a.id(), b.id()) }
	if !slices.IsSortedFunc(recs, byID) { // bbolt yields key order; other engines may not
		slices.SortFunc(recs, byID)
	}
	r.idx = newDevindex(len(recs))
	for _, rec := range recs {
		if clash := r.idx.add(rec); clash != "" {
			r.log.Warn("registry: duplicate unique key at load; the first device keeps the lookup",
				"field", clash, "device", rec.id())
		}
	}
	r.idx.order.build(recs)

	var orphans []Op
	err = r.store.Load(BucketLive, func(k, v []byte) error {
		rec := r.idx.get(string(k))
		if rec == nil {
			orphans = append(orphans, Op{Bucket: BucketLive, Key: append([]byte(nil), k...)})
			return nil
		}
		l, b, err := decodeLiveRecord(v)
		if err != nil {
			// Live state is what the appliance observed; it is
			// relearnt, so losing it is no reason not to start.
			r.log.Warn("registry: dropping undecodable live state", "device", rec.id(), "err", err)
			return nil
		}
		rec.live = l
		if b != nil {
			b.restored = true
			rec.bind.Store(&bindSlot{b: *b, saved: b.seen})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("registry: loading live state: %w", err)
	}

	var fix []Op
	if check == nil {
		fix = append(fix, Op{Bucket: BucketMeta, Key: []byte(metaKeyCheck),
			Value: r.sealer.seal(nil, keyCheckText, metaKeyCheck, "")})
	}
	fix = append(fix, orphans...)
	if len(fix) > 0 {
		if err := r.store.Write(fix); err != nil {
			return fmt.Errorf("registry: initialising store: %w", err)
		}
	}
	r.log.Info("registry: loaded", "devices", len(recs), "orphan_live_records", len(orphans))
	return nil
}

// Close stops accepting writes, waits for those in flight, flushes live
// state, stops the goroutines and closes the store. Reads keep answering
// from memory. Later calls return ErrClosed.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	r.mu.Unlock()

	r.writers.Wait()
	close(r.stopFlush)
	<-r.flushDone
	var errs []error
	if req, _ := r.flushReq(true); req != nil {
		if err := <-req.done; err != nil {
			errs = append(errs, fmt.Errorf("registry: flushing live state: %w", err))
		}
	}
	r.queue.stop()
	if err := r.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("registry: closing store: %w", err))
	}
	return errors.Join(errs...)
}

// Get returns a copy of the device with id.
func (r *Registry) Get(id string) (Device, bool) {
	r.mu.RLock()
	rec := r.idx.get(id)
	r.mu.RUnlock()
	return deviceOf(rec)
}

// BySTUNUsername returns the device whose stun_username is u, exactly.
func (r *Registry) BySTUNUsername(u string) (Device, bool) {
	if u == "" {
		return Device{}, false
	}
	r.mu.RLock()
	rec := r.idx.bySTUN(u)
	r.mu.RUnlock()
	return deviceOf(rec)
}

// STUNPassword returns the STUN password of the device whose stun_username
// is u; ok is false when there is no such device. Unlike BySTUNUsername it
// copies nothing: it serves the STUN server's per-packet integrity check.
func (r *Registry) STUNPassword(u string) (password string, ok bool) {
	if u == "" {
		return "", false
	}
	r.mu.RLock()
	rec := r.idx.bySTUN(u)
	r.mu.RUnlock()
	if rec == nil {
		return "", false
	}
	return rec.field(fSTUNPassword), true
}

// ByJID returns the device whose xmpp_jid has the same bare JID as jid,
// which may be bare or full. Localpart and domain compare without regard
// to case (RFC 7622 3.2, 3.3); the resource is ignored, since bare JIDs
// are unique across devices.
func (r *Registry) ByJID(jid string) (Device, bool) {
	if jid == "" {
		return Device{}, false
	}
	k := jidKey(jid)
	r.mu.RLock()
	rec := r.idx.byJID(k)
	r.mu.RUnlock()
	return deviceOf(rec)
}

// ByUDPAddress returns the device whose udp_address is addr, compared as
// an IP and port: "[::ffff:192.0.2.1]:7547" finds "192.0.2.1:7547".
func (r *Registry) ByUDPAddress(addr string) (Device, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Addr().Zone() != "" {
		return Device{}, false
	}
	k := makeUDPKey(ap)
	r.mu.RLock()
	rec := r.idx.byUDP(k)
	r.mu.RUnlock()
	return deviceOf(rec)
}

func deviceOf(rec *record) (Device, bool) {
	if rec == nil {
		return Device{}, false
	}
	return rec.device(), true
}

// Len returns the number of devices.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.idx.len()
}

// Page sizes of List.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// List returns up to limit devices with ids above cursor, in ascending id
// order (byte-wise), and the cursor of the next page, "" after the last.
// A cursor is an id, so devices deleted or added between pages neither
// repeat nor shift others. limit <= 0 means DefaultListLimit; it is capped
// at MaxListLimit.
func (r *Registry) List(cursor string, limit int) (devs []Device, next string) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	recs := make([]*record, 0, limit+1)
	r.mu.RLock()
	r.idx.order.after(cursor, func(rec *record) bool {
		recs = append(recs, rec)
		return len(recs) <= limit
	})
	r.mu.RUnlock()
	if len(recs) > limit {
		recs = recs[:limit]
		next = recs[limit-1].id()
	}
	devs = make([]Device, len(recs))
	for i, rec := range recs {
		devs[i] = rec.device()
	}
	return devs, next
}
