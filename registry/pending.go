package registry

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Pending-table defaults; see Options.
const (
	DefaultMaxPendingBindings = 100_000
	DefaultPendingBindingTTL  = 10 * time.Minute
)

// pendingTable keeps the bindings of STUN usernames no device has yet: a
// CPE often starts sending binding requests before the ACS registers it
// here. It is bounded (the least recently seen entry goes first) and
// expiring, so a stream of made-up usernames costs bounded memory. Entries
// are kept in a list by last request, oldest first, so both eviction and
// expiry take from the head. Expired entries go whenever the table is
// next used (a request, an attach, PendingBindings); no goroutine sweeps
// it, and MaxPendingBindings bounds it meanwhile.
//
// Its lock nests inside Registry.mu and takes no other.
type pendingTable struct {
	mu         sync.Mutex
	m          map[string]*pendingEntry
	head, tail *pendingEntry
	max        int
	ttl        int64 // ns
}

type pendingEntry struct {
	user       string
	b          binding
	prev, next *pendingEntry
}

func (p *pendingTable) init(n int, ttl time.Duration) {
	p.m = make(map[string]*pendingEntry)
	p.max, p.ttl = n, int64(ttl)
}

// observe records a request for user at time at.
func (p *pendingTable) observe(user string, mapped, local netip.AddrPort, at int64, bc bool) BindingOutcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked(at)
	if e := p.m[user]; e != nil {
		if at >= e.b.seen {
			p.unlink(e)
			p.pushTail(e)
		}
		e.b.observe(mapped, local, at, bc)
		return BindingPending
	}
	// A username no device could have (validate would refuse it) will
	// never be attached: do not let it take a slot.
	if checkText(user, MaxFieldLen) != "" {
		return BindingUnknown
	}
	for len(p.m) >= p.max && p.head != nil {
		p.removeLocked(p.head)
	}
	e := &pendingEntry{user: strings.Clone(user), b: newBinding(mapped, local, at)}
	p.m[e.user] = e
	p.pushTail(e)
	return BindingPending
}

// take removes and returns user's binding unless it has expired by now.
func (p *pendingTable) take(user string, now int64) (binding, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked(now)
	e := p.m[user]
	if e == nil || p.expired(e, now) {
		return binding{}, false
	}
	p.removeLocked(e)
	return e.b, true
}

// len drops the expired entries and returns how many are left.
func (p *pendingTable) len(now int64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked(now)
	return len(p.m)
}

func (p *pendingTable) expired(e *pendingEntry, now int64) bool { return now-e.b.seen >= p.ttl }

// expireLocked drops expired entries from the head. The list is in arrival
// order, which is request-time order up to the reordering between STUN
// sockets, so an expired entry stuck behind a live one goes a little late.
func (p *pendingTable) expireLocked(now int64) {
	for p.head != nil && p.expired(p.head, now) {
		p.removeLocked(p.head)
	}
}

func (p *pendingTable) removeLocked(e *pendingEntry) {
	p.unlink(e)
	delete(p.m, e.user)
}

func (p *pendingTable) pushTail(e *pendingEntry) {
	e.prev, e.next = p.tail, nil
	if p.tail != nil {
		p.tail.next = e
	} else {
		p.head = e
	}
	p.tail = e
}

func (p *pendingTable) unlink(e *pendingEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		p.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		p.tail = e.prev
	}
	e.prev, e.next = nil, nil
}
