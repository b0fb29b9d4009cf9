package campaign

import (
	"context"
	"time"
)

// burstWindow is how much unused rate a campaign may save up: a limit of
// 200/s allows bursts of 10, never a whole second's worth at once.
const burstWindow = 50 * time.Millisecond

// limiter is a token bucket used by one goroutine. A zero rate is
// unlimited.
type limiter struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newLimiter(rate float64) *limiter {
	l := &limiter{rate: rate, burst: max(1, rate*burstWindow.Seconds()), last: time.Now()}
	l.tokens = l.burst
	return l
}

func (l *limiter) refill() {
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
}

// wait takes one token, waiting for it if need be, or returns ctx's error.
func (l *limiter) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil || l.rate == 0 {
		return err
	}
	l.refill()
	if l.tokens < 1 {
		t := time.NewTimer(time.Duration((1 - l.tokens) / l.rate * float64(time.Second)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		l.refill()
	}
	// A timer that fires a hair early leaves the bucket a hair short:
	// a small debt repaid by the next wait.
	l.tokens--
	return nil
}
