package registry

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// UDPBinding is a CPE's NAT binding as learned by STUN (TR-069 Annex G,
// formerly TR-111 part 2): where a UDP connection request must go, and the
// relay socket it must leave from.
type UDPBinding struct {
	// Mapped is the public ip:port the CPE's binding requests came from,
	// where UDP connection requests go. An IPv4-mapped IPv6 address is
	// kept unmapped.
	Mapped netip.AddrPort
	// Local is the relay socket that received them, as the STUN server
	// reported it. A connection request must leave from it: address- and
	// port-restricted NATs drop anything else.
	Local netip.AddrPort
	// PrevMapped is Mapped before its last change; zero until one.
	PrevMapped netip.AddrPort
	// FirstSeen is the time of the first binding request of this binding.
	FirstSeen time.Time
	// LastSeen is the time (BindingObservation.At) of the latest binding
	// request the STUN server reported; an observation older than it
	// changes nothing. In memory it is exact. The store holds it lazily
	// (see Options.BindingSeenPersistInterval): after a restart, while
	// Restored is true, it may be older than the CPE's real last request
	// by up to BindingSeenPersistInterval + LiveFlushInterval, never newer.
	// Whether the binding is fresh enough to use is the caller's policy.
	LastSeen time.Time
	// Keepalive is the interval between the CPE's binding requests,
	// smoothed (EWMA, 1/4 weight per sample); 0 until two requests were
	// seen. Gaps under a second (retransmissions) are not samples, and a
	// gap counts for at most four times the current value, so an outage
	// does not pass for a keepalive period.
	Keepalive time.Duration
	// Changes counts the times Mapped changed, plus BINDING-CHANGEs that
	// did not merely confirm a change already counted: the one right after
	// a change of Mapped (the CPE learnt it from the answer to the request
	// before) and repeats of the one before are not counted, nor is one on
	// the binding's first request. A move of Local alone is the relay's
	// side, not the subscriber's NAT, and does not count.
	Changes int
	// LastChange is the time of the last counted change; zero if none.
	LastChange time.Time
	// NATTimeout estimates this subscriber's NAT UDP mapping timeout from
	// above; 0 = unknown. A mapping that changed after a silent gap g
	// shows a timeout of at most g; the estimate is the shortest such gap,
	// counting only gaps of at least MinNATTimeoutSample that are longer
	// than any gap the old mapping had survived (a change within the
	// rhythm the mapping was surviving is a rebinding, not an expiry). A
	// later gap at least as long that the mapping survives disproves the
	// estimate and resets it to 0.
	NATTimeout time.Duration
	// SurvivedGap is the longest silent gap after which the current Mapped
	// was seen again unchanged: the NAT timeout is longer than that.
	SurvivedGap time.Duration
	// Restored says the binding was loaded from the store at start-up and
	// no binding request has been seen since: LastSeen may lag (see
	// LastSeen), and the first gap after a restart is no sample, since the
	// CPE kept its NAT mapping open while the relay was not listening.
	Restored bool
}

// Keepalive recommendations; see RecommendedKeepalive.
const (
	// DefaultRecommendedKeepalive applies while the NAT timeout is
	// unknown. RFC 4787 REQ-5 asks NATs to keep a UDP mapping at least
	// 120 s, but timeouts of 30 s (cloud and some carrier NATs, Linux
	// conntrack's unreplied UDP), 180 s and 300 s are all seen in the
	// field; behind an unknown CGNAT, 25 s stays under the shortest.
	DefaultRecommendedKeepalive = 25 * time.Second
	// MinRecommendedKeepalive floors the recommendation: a binding request
	// every 10 s per CPE is already the load the relay is sized for.
	MinRecommendedKeepalive = 10 * time.Second
	// MinNATTimeoutSample is the shortest silent gap taken as a NAT
	// timeout measurement. No NAT in the field expires a mapping sooner
	// (the shortest seen is 30 s), so a change after a shorter gap is a
	// rebinding (new WAN address, CGNAT port reallocation, CPE restart)
	// and would only yield a silly estimate.
	MinNATTimeoutSample = 20 * time.Second
)

// RecommendedKeepalive returns a STUNMaximumKeepAlivePeriod for the CPE:
// half the NATTimeout estimate, so a keepalive lands at least twice per
// timeout (the estimate is an upper bound, and a tighter one is learnt if
// the mapping still expires), truncated to whole seconds as the data model
// holds it and floored at MinRecommendedKeepalive. Without an estimate it
// is DefaultRecommendedKeepalive.
func (b UDPBinding) RecommendedKeepalive() time.Duration {
	if b.NATTimeout <= 0 {
		return DefaultRecommendedKeepalive
	}
	return max(MinRecommendedKeepalive, (b.NATTimeout / 2).Truncate(time.Second))
}

// BindingObservation is one STUN Binding Request carrying
// CONNECTION-REQUEST-BINDING, as the STUN server reports it.
type BindingObservation struct {
	// STUNUsername is the request's USERNAME with its space padding
	// trimmed; empty if it had none. The registry copies it if it keeps it,
	// so it may point into a packet buffer.
	STUNUsername string
	// Mapped is the request's source address; Local, the relay socket that
	// received it. Both are required.
	Mapped, Local netip.AddrPort
	// At is when the request arrived. Zero means now.
	At time.Time
	// BindingChange says the request carried BINDING-CHANGE.
	BindingChange bool
}

// BindingOutcome says what ObserveBinding did.
type BindingOutcome uint8

const (
	// BindingUnknown: no device matches and nothing was kept: a request
	// without USERNAME whose source is no device's udp_address, or a
	// USERNAME no device could ever have.
	BindingUnknown BindingOutcome = iota
	// BindingNew: the device had no binding; it has one now.
	BindingNew
	// BindingRefreshed: the device's binding is unchanged but for its
	// LastSeen, Keepalive and NAT-timeout evidence.
	BindingRefreshed
	// BindingChanged: Mapped or Local moved, or a BINDING-CHANGE was
	// counted.
	BindingChanged
	// BindingPending: no device has the USERNAME yet; the binding is kept
	// in the pending table and attached when the ACS registers one.
	BindingPending
)

var outcomeNames = [...]string{"unknown", "new", "refreshed", "changed", "pending"}

// String returns the outcome's name, fit for a metric label.
func (o BindingOutcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("BindingOutcome(%d)", uint8(o))
}

// BindingResult is what ObserveBinding did, for the STUN server's metrics
// and events.
type BindingResult struct {
	Outcome  BindingOutcome
	DeviceID string // the device the binding belongs to; "" if pending or unknown
}

// ObserveBinding records a binding request. The device is found by
// STUNUsername, exactly; or, when the request had no USERNAME, by the
// udp_address the ACS registered equal to Mapped (compared as IP and port).
// A USERNAME no device has yet is kept in the bounded, expiring pending
// table (Options.MaxPendingBindings, PendingBindingTTL) and its binding is
// attached when Put or Update gives a device that stun_username.
//
// It is the STUN server's hot path: it takes the registry's shared lock
// and the device's own binding lock, never the write path. A request that
// only refreshes a binding allocates nothing and costs no store write of
// its own: a new or changed binding is written at the next live flush, a
// refreshed one only once its LastSeen has moved
// Options.BindingSeenPersistInterval past the stored copy.
//
// It fails with ErrInvalid if Mapped or Local is not a usable address, and
// with ErrClosed after Close.
func (r *Registry) ObserveBinding(o BindingObservation) (BindingResult, error) {
	if err := checkObservation(&o); err != nil {
		return BindingResult{}, err
	}
	mapped := netip.AddrPortFrom(o.Mapped.Addr().Unmap(), o.Mapped.Port())
	at := o.At
	if at.IsZero() {
		at = r.now()
	}
	ns := at.UnixNano()

	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return BindingResult{}, ErrClosed
	}
	var rec *record
	if o.STUNUsername != "" {
		if rec = r.idx.bySTUN(o.STUNUsername); rec == nil {
			// Under r.mu, so a Put publishing this username either
			// ran before (and we found it) or will find this entry.
			return BindingResult{Outcome: r.pendingBinds.observe(o.STUNUsername, mapped, o.Local, ns, o.BindingChange)}, nil
		}
	} else if rec = r.idx.byUDP(makeUDPKey(mapped)); rec == nil {
		return BindingResult{Outcome: BindingUnknown}, nil
	}

	res := BindingResult{DeviceID: rec.id()}
	var mark bool
	s := rec.bind.Load()
	if s == nil {
		n := &bindSlot{b: newBinding(mapped, o.Local, ns), queued: true}
		if rec.bind.CompareAndSwap(nil, n) {
			res.Outcome, mark = BindingNew, true
		} else {
			s = rec.bind.Load() // another request for the device won the race
		}
	}
	if s != nil {
		s.mu.Lock()
		var must bool
		res.Outcome, must = s.b.observe(mapped, o.Local, ns, o.BindingChange)
		mark = !s.queued && (must || s.b.seen-s.saved >= int64(r.bindSeenEvery))
		if mark {
			s.queued = true
		}
		s.mu.Unlock()
	}
	if mark {
		// Outside the binding lock: flushReq takes them the other way.
		r.lmu.Lock()
		r.markDirtyLocked(rec)
		r.lmu.Unlock()
	}
	return res, nil
}

func checkObservation(o *BindingObservation) error {
	for _, a := range [...]struct {
		name string
		ap   netip.AddrPort
	}{{"mapped", o.Mapped}, {"local", o.Local}} {
		if !a.ap.IsValid() || a.ap.Port() == 0 || a.ap.Addr().IsMulticast() ||
			(a.name == "mapped" && a.ap.Addr().IsUnspecified()) {
			return fmt.Errorf("%w: binding observation: %s address %v", ErrInvalid, a.name, a.ap)
		}
	}
	return nil
}

// Binding returns a copy of the device's UDP binding; false if the device
// is unknown or has none.
func (r *Registry) Binding(id string) (UDPBinding, bool) {
	r.mu.RLock()
	var s *bindSlot
	if rec := r.idx.get(id); rec != nil {
		s = rec.bind.Load()
	}
	r.mu.RUnlock()
	if s == nil {
		return UDPBinding{}, false
	}
	s.mu.Lock()
	b := s.b
	s.mu.Unlock()
	return b.export(), true
}

// PendingBindings returns how many bindings wait for their username to be
// registered, after dropping the expired ones: a gauge for metrics.
func (r *Registry) PendingBindings() int {
	return r.pendingBinds.len(r.now().UnixNano())
}

// bindSlot is a device's binding in memory. A record points at it, and a
// write that keeps the device's stun_username hands the same slot on to
// the record it publishes, so updates never copy device or live state.
type bindSlot struct {
	mu sync.Mutex
	b  binding
	// saved is b.seen as the last flush took it: a refresh marks the
	// device dirty only once seen has moved BindingSeenPersistInterval
	// beyond it.
	saved int64
	// queued says the device is marked dirty for this binding and the
	// flush has not taken it yet, so more refreshes need not mark it.
	queued bool
}

// binding is UDPBinding in compact form: times in Unix nanoseconds, 0 =
// none. It also carries what the observation rules need.
type binding struct {
	mapped, local, prev   netip.AddrPort
	first, seen, changed  int64
	keepalive, natTimeout time.Duration
	survived              time.Duration
	changes               int
	restored              bool // loaded from the store, not observed since
	ackable               bool // the last observation changed Mapped: a BINDING-CHANGE next confirms it
	lastBC                bool // the last observation carried BINDING-CHANGE
}

func newBinding(mapped, local netip.AddrPort, at int64) binding {
	return binding{mapped: mapped, local: local, first: at, seen: at}
}

// Observation rules; see UDPBinding's fields.
const (
	minKeepaliveSample = time.Second
	keepaliveMaxJump   = 4
)

// observe applies one binding request at time at. must says the change has
// to reach the store (a refresh alone need not).
func (b *binding) observe(mapped, local netip.AddrPort, at int64, bc bool) (out BindingOutcome, must bool) {
	if at < b.seen {
		// Overtaken by a later request on another socket or goroutine:
		// what it says is older than what we know.
		return BindingRefreshed, false
	}
	gap := time.Duration(at - b.seen)
	sample := !b.restored
	ack, prevBC := b.ackable, b.lastBC
	b.seen, b.restored, b.ackable, b.lastBC = at, false, false, bc
	if b.first == 0 {
		b.first = at
	}
	if sample && gap >= minKeepaliveSample {
		if b.keepalive == 0 {
			b.keepalive = gap
		} else {
			s := min(gap, keepaliveMaxJump*b.keepalive)
			b.keepalive += (s - b.keepalive) / 4
		}
	}
	out = BindingRefreshed
	switch {
	case mapped != b.mapped:
		if sample && gap >= MinNATTimeoutSample && gap > b.survived {
			if b.natTimeout == 0 || gap < b.natTimeout {
				b.natTimeout = gap
			}
		}
		b.prev, b.mapped, b.survived = b.mapped, mapped, 0
		b.changes++
		b.changed, b.ackable = at, true
		out, must = BindingChanged, true
	case sample && gap > 0:
		b.survived = max(b.survived, gap)
		if b.natTimeout > 0 && gap >= b.natTimeout {
			b.natTimeout, must = 0, true // disproved
		}
	}
	// BINDING-CHANGE with the same Mapped: the CPE confirms the change
	// we just counted (it learnt its new mapping from our answer to the
	// request before), repeats itself, or saw a change we did not.
	if bc && mapped == b.mapped && out != BindingChanged && !ack && !prevBC {
		b.changes++
		b.changed = at
		out, must = BindingChanged, true
	}
	if local != b.local {
		b.local = local
		out, must = BindingChanged, true
	}
	return out, must
}

func (b *binding) export() UDPBinding {
	return UDPBinding{
		Mapped:      b.mapped,
		Local:       b.local,
		PrevMapped:  b.prev,
		FirstSeen:   nsTime(b.first),
		LastSeen:    nsTime(b.seen),
		Keepalive:   b.keepalive,
		Changes:     b.changes,
		LastChange:  nsTime(b.changed),
		NATTimeout:  b.natTimeout,
		SurvivedGap: b.survived,
		Restored:    b.restored,
	}
}

func nsTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func timeNS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// BindingsSeen calls fn for every device whose UDP binding was last seen
// in [from, to), in id order: a caller that moves the window forward in
// time sees each binding go stale exactly once (a refresh moves its
// LastSeen, and it can go stale again later). It walks the devices in
// pages, taking the shared lock per page only, so the STUN server and the
// API are not held up; fn runs without the registry's locks.
func (r *Registry) BindingsSeen(from, to time.Time, fn func(id string, b UDPBinding)) {
	const page = 4096
	lo, hi := timeNS(from), timeNS(to)
	type hit struct {
		id string
		b  UDPBinding
	}
	var hits []hit
	var slots []*bindSlot
	var ids []string
	cursor := ""
	for {
		slots, ids = slots[:0], ids[:0]
		r.mu.RLock()
		if r.closed {
			r.mu.RUnlock()
			return
		}
		n := 0
		r.idx.order.after(cursor, func(rec *record) bool {
			n++
			cursor = rec.id()
			if s := rec.bind.Load(); s != nil {
				slots = append(slots, s)
				ids = append(ids, cursor)
			}
			return n < page
		})
		r.mu.RUnlock()
		hits = hits[:0]
		for i, s := range slots {
			s.mu.Lock()
			seen := s.b.seen
			var b UDPBinding
			if seen >= lo && seen < hi {
				b = s.b.export()
			}
			s.mu.Unlock()
			if seen >= lo && seen < hi {
				hits = append(hits, hit{ids[i], b})
			}
		}
		for _, h := range hits {
			fn(h.id, h.b)
		}
		if n < page {
			return
		}
	}
}
