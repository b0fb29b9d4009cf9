package xmpp

import (
	"math"
	"net/netip"
	"sync"
)

// connLimiter limits new connections per source: an IPv4 address, or the
// /64 of an IPv6 address (one subscriber's usual allocation). It is a
// token bucket written as a time (GCRA): a source's theoretical arrival
// time tat moves one interval on per connection, and a connection at t
// is allowed while tat-t stays within burst-1 intervals. A source whose
// tat is in the past has a full bucket, like one never seen, so the
// table can forget it; when the table is full of recent sources, an
// arbitrary eighth is forgotten (they get fresh buckets, which matters
// only to someone who controls that many addresses).
type connLimiter struct {
	interval  int64
	tolerance int64
	size      int

	mu  sync.Mutex
	tat map[netip.Addr]int64
}

// newConnLimiter returns a limiter of rate connections per second with
// burst, or nil (no limit) if rate <= 0.
func newConnLimiter(rate float64, burst, size int) *connLimiter {
	if rate <= 0 {
		return nil
	}
	interval := int64(math.Ceil(1e9 / rate))
	return &connLimiter{
		interval:  interval,
		tolerance: int64(burst-1) * interval,
		size:      size,
		tat:       make(map[netip.Addr]int64),
	}
}

// allow reports whether a connection from ip at now (unix nanoseconds)
// is within the limit, and counts it if so.
func (l *connLimiter) allow(ip netip.Addr, now int64) bool {
	if l == nil || !ip.IsValid() {
		return true
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, ok := l.tat[ip]
	if !ok || tat < now {
		tat = now
	}
	if tat-now > l.tolerance {
		return false
	}
	if !ok && len(l.tat) >= l.size {
		l.forget(now)
	}
	l.tat[ip] = tat + l.interval
	return true
}

func (l *connLimiter) forget(now int64) {
	for k, t := range l.tat {
		if t <= now {
			delete(l.tat, k)
		}
	}
	drop := len(l.tat) - l.size*7/8
	for k := range l.tat {
		if drop <= 0 {
			break
		}
		delete(l.tat, k)
		drop--
	}
}
