package srv

import (
	"math"
	"net/netip"
	"sync"
)

// limiter is a per-source token bucket with bounded memory.
//
// Each source has one number, its theoretical arrival time (the generic
// cell rate algorithm, a token bucket written as a time): a query at time
// now is allowed if tat-now is within the tolerance, and then moves tat
// one interval on. A source whose tat has passed has a full bucket, as
// if never seen, so forgetting it loses nothing.
//
// When the table is full, sources with full buckets are forgotten; if
// more than half of it is still in use (more sources within one burst
// time than it holds, which only a flood from many addresses does), the
// whole table is, and those sources get fresh buckets. Either way the
// cost is paid once per half a table of new sources.
//
// A source is an IPv4 address, or the /64 of an IPv6 address, which is
// what one IPv6 subscriber usually has.
type limiter struct {
	interval  int64 // nanoseconds per query
	tolerance int64 // (burst-1) intervals
	size      int

	mu  sync.Mutex
	tat map[netip.Addr]int64
}

// newLimiter returns a limiter for rate queries per second with burst,
// remembering up to size sources; nil if rate <= 0.
func newLimiter(rate float64, burst, size int) *limiter {
	if rate <= 0 {
		return nil
	}
	interval := int64(math.Ceil(1e9 / rate))
	return &limiter{
		interval:  interval,
		tolerance: int64(burst-1) * interval,
		size:      size,
		tat:       make(map[netip.Addr]int64),
	}
}

// sourceKey returns the limiting key of ip: the IPv4 address, or the
// IPv6 /64.
func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// allow reports whether a query from ip at now (nanoseconds on a
// monotonic clock) is within the source's rate, and takes a token if so.
func (l *limiter) allow(ip netip.Addr, now int64) bool {
	k := sourceKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, ok := l.tat[k]
	if !ok && len(l.tat) >= l.size {
		l.forget(now)
	}
	tat = max(tat, now)
	if tat-now > l.tolerance {
		return false
	}
	l.tat[k] = tat + l.interval
	return true
}

// forget drops the sources with full buckets, or all of them if that
// frees less than half the table.
func (l *limiter) forget(now int64) {
	for k, tat := range l.tat {
		if tat <= now {
			delete(l.tat, k)
		}
	}
	if len(l.tat) > l.size/2 {
		clear(l.tat)
	}
}
