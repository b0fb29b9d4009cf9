package wake

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crrelay/crrelay/registry"
)

// ErrBusy is returned, wrapped with the limit that was hit, when a wake is
// refused by the appliance's own rate or concurrency limits. Nothing was
// sent to the CPE; the caller may try again later (the API answers 429).
var ErrBusy = errors.New("wake: over the limit")

// Limit bounds wakes: how many may start per second and how many may run
// at once. Zero values mean no bound.
type Limit struct {
	Rate        float64 // wakes started per second, smoothed by a token bucket
	Burst       int     // bucket size; 0 = max(1, Rate/10), a tenth of a second's worth
	Concurrency int     // wakes running at once
}

// Limits are the appliance-wide limit and one per transport. A transport's
// limit counts the attempts made with it, whatever wake they belong to.
type Limits struct {
	Global       Limit
	PerTransport map[registry.Transport]Limit
}

// limiter enforces one Limit without blocking: a wake over it is refused,
// never queued, so the caller learns at once.
type limiter struct {
	name    string // in errors: "global", "xmpp"...
	lim     Limit
	running atomic.Int64

	mu     sync.Mutex
	tokens float64
	last   time.Time
	burst  float64
}

func newLimiter(name string, l Limit) *limiter {
	if l.Rate <= 0 && l.Concurrency <= 0 {
		return nil
	}
	b := float64(l.Burst)
	if b <= 0 {
		b = max(1, l.Rate/10)
	}
	return &limiter{name: name, lim: l, burst: b, tokens: b}
}

// acquire takes a slot and a token, or says which is missing. A nil
// limiter always admits. Each successful acquire needs one release.
func (l *limiter) acquire(now time.Time) error {
	if l == nil {
		return nil
	}
	if c := int64(l.lim.Concurrency); c > 0 {
		if l.running.Add(1) > c {
			l.running.Add(-1)
			return fmt.Errorf("%w: %s concurrency limit of %d wakes at once reached", ErrBusy, l.name, c)
		}
	}
	if l.lim.Rate > 0 {
		l.mu.Lock()
		if !l.last.IsZero() {
			l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.lim.Rate)
		}
		l.last = now
		ok := l.tokens >= 1
		if ok {
			l.tokens--
		}
		l.mu.Unlock()
		if !ok {
			if l.lim.Concurrency > 0 {
				l.running.Add(-1)
			}
			return fmt.Errorf("%w: %s rate limit of %g wakes/s reached", ErrBusy, l.name, l.lim.Rate)
		}
	}
	return nil
}

func (l *limiter) release() {
	if l != nil && l.lim.Concurrency > 0 {
		l.running.Add(-1)
	}
}

func (l Limit) validate(name string) error {
	if l.Rate < 0 || l.Burst < 0 || l.Concurrency < 0 {
		return fmt.Errorf("wake: config: %s limit must not be negative: %+v", name, l)
	}
	return nil
}
