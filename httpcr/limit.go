package httpcr

import (
	"context"
	"net/netip"
	"sync"
)

// limiter bounds connection requests in flight overall and per destination
// IP. Waiting respects the context.
type limiter struct {
	all     chan struct{}
	perHost int

	mu    sync.Mutex
	hosts map[netip.Addr]*hostSlots // entries exist only while in use
}

type hostSlots struct {
	ch   chan struct{}
	refs int // holders and waiters; the entry is deleted at zero
}

func newLimiter(all, perHost int) *limiter {
	return &limiter{
		all:     make(chan struct{}, all),
		perHost: perHost,
		hosts:   map[netip.Addr]*hostSlots{},
	}
}

func (l *limiter) acquire(ctx context.Context) error {
	select {
	case l.all <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *limiter) release() { <-l.all }

// acquireHost takes one of ip's slots and returns the function that gives
// it back.
func (l *limiter) acquireHost(ctx context.Context, ip netip.Addr) (func(), error) {
	l.mu.Lock()
	h := l.hosts[ip]
	if h == nil {
		h = &hostSlots{ch: make(chan struct{}, l.perHost)}
		l.hosts[ip] = h
	}
	h.refs++
	l.mu.Unlock()

	select {
	case h.ch <- struct{}{}:
		return func() {
			<-h.ch
			l.unref(ip, h)
		}, nil
	case <-ctx.Done():
		l.unref(ip, h)
		return nil, ctx.Err()
	}
}

func (l *limiter) unref(ip netip.Addr, h *hostSlots) {
	l.mu.Lock()
	h.refs--
	if h.refs == 0 {
		delete(l.hosts, ip)
	}
	l.mu.Unlock()
}

// hostsInUse reports how many destination IPs have holders or waiters.
func (l *limiter) hostsInUse() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.hosts)
}
