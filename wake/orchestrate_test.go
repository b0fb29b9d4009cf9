package wake

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crrelay/crrelay/registry"
)

// gated answers with status once released, counting calls and the most
// running at once.
type gated struct {
	status  Status
	release chan struct{}
	calls   atomic.Int64
	running atomic.Int64
	peak    atomic.Int64
	delay   time.Duration
}

func newGated(s Status) *gated { return &gated{status: s, release: make(chan struct{})} }

func (g *gated) Usable(registry.Device) (bool, string) { return true, "" }
func (g *gated) Wake(ctx context.Context, _ registry.Device) Attempt {
	g.calls.Add(1)
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	t0 := time.Now()
	if g.release != nil {
		select {
		case <-g.release:
		case <-ctx.Done():
			return Attempt{Status: Timeout, DurationMS: ms(time.Since(t0))}
		}
	}
	time.Sleep(g.delay)
	return Attempt{Status: g.status, DurationMS: ms(time.Since(t0))}
}

func released(g *gated) *gated { close(g.release); return g }

func devices(ids ...string) *fakeDevices {
	f := &fakeDevices{devs: map[string]registry.Device{}}
	for _, id := range ids {
		f.devs[id] = registry.Device{ID: id}
	}
	return f
}

func waker(t *testing.T, cfg Config) *Waker {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestCoalesceConcurrent(t *testing.T) {
	g := newGated(Delivered)
	w := waker(t, Config{Devices: devices("d"), Transports: map[registry.Transport]Transport{"http": g}})
	const n = 20
	results := make([]Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var err error
			if results[i], err = w.Wake(context.Background(), "d", Request{}); err != nil {
				t.Error(err)
			}
		})
	}
	// All 20 are in (one running, 19 sharing) before the answer comes.
	for deadline := time.Now().Add(2 * time.Second); g.calls.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(g.release)
	wg.Wait()
	if got := g.calls.Load(); got != 1 {
		t.Fatalf("transport called %d times, want 1", got)
	}
	coalesced := 0
	for _, r := range results {
		if r.Status != Delivered || r.ID != results[0].ID {
			t.Errorf("result %+v, want delivered with id %s", r, results[0].ID)
		}
		if r.Coalesced {
			coalesced++
		}
	}
	if coalesced != n-1 {
		t.Errorf("%d coalesced, want %d", coalesced, n-1)
	}
}

func TestCoalesceSpacing(t *testing.T) {
	g := released(newGated(Sent))
	devs := devices("d", "e")
	w := waker(t, Config{Devices: devs, Transports: map[registry.Transport]Transport{"udp": g}, MinSpacing: 150 * time.Millisecond})
	ctx := context.Background()
	first, _ := w.Wake(ctx, "d", Request{})
	second, _ := w.Wake(ctx, "d", Request{Transports: []registry.Transport{"udp"}})
	other, _ := w.Wake(ctx, "e", Request{})
	if first.Coalesced || !second.Coalesced || second.ID != first.ID || second.Status != Sent {
		t.Errorf("within the spacing: first %+v second %+v", first, second)
	}
	if other.Coalesced {
		t.Error("another device's wake was coalesced")
	}
	time.Sleep(200 * time.Millisecond)
	third, _ := w.Wake(ctx, "d", Request{})
	if third.Coalesced || third.ID == first.ID {
		t.Errorf("after the spacing: %+v", third)
	}
	if got := g.calls.Load(); got != 3 {
		t.Errorf("transport called %d times, want 3", got)
	}
	// Coalesced wakes leave no record of their own.
	if len(devs.recs) != 3 {
		t.Errorf("%d records, want 3", len(devs.recs))
	}
	// The table forgets old calls.
	time.Sleep(1100 * time.Millisecond)
	w.Wake(ctx, "e", Request{})
	if n := w.calls.len(); n > 2 {
		t.Errorf("%d calls kept after sweeps, want at most 2", n)
	}
}

func TestGlobalConcurrencyLimit(t *testing.T) {
	g := newGated(Delivered)
	w := waker(t, Config{Devices: devices("a", "b", "c"), Transports: map[registry.Transport]Transport{"http": g},
		Limits: Limits{Global: Limit{Concurrency: 2}}})
	var wg sync.WaitGroup
	for _, id := range []string{"a", "b"} {
		wg.Go(func() { w.Wake(context.Background(), id, Request{}) })
	}
	for deadline := time.Now().Add(2 * time.Second); g.running.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	_, err := w.Wake(context.Background(), "c", Request{})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("third wake: %v, want ErrBusy", err)
	}
	close(g.release)
	wg.Wait()
	// A refused wake is not remembered: the next one runs.
	if res, err := w.Wake(context.Background(), "c", Request{}); err != nil || res.Coalesced || res.Status != Delivered {
		t.Errorf("after the limit cleared: %+v %v", res, err)
	}
}

func TestRateLimit(t *testing.T) {
	g := released(newGated(Sent))
	ids := []string{"a", "b", "c", "d", "e", "f"}
	w := waker(t, Config{Devices: devices(ids...), Transports: map[registry.Transport]Transport{"udp": g},
		Limits: Limits{Global: Limit{Rate: 10, Burst: 3}}})
	ok, busy := 0, 0
	for _, id := range ids {
		_, err := w.Wake(context.Background(), id, Request{})
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrBusy):
			busy++
		default:
			t.Fatal(err)
		}
	}
	if ok != 3 || busy != 3 {
		t.Errorf("%d admitted, %d refused; want the burst of 3, then refusals", ok, busy)
	}
	time.Sleep(150 * time.Millisecond) // one more token at 10/s
	if _, err := w.Wake(context.Background(), "d", Request{}); err != nil {
		t.Errorf("after refill: %v", err)
	}
}

func TestTransportLimitFallsBack(t *testing.T) {
	udp, http := newGated(Sent), released(newGated(Delivered))
	w := waker(t, Config{Devices: devices("a", "b"), Transports: map[registry.Transport]Transport{"udp": udp, "http": http},
		Limits: Limits{PerTransport: map[registry.Transport]Limit{"udp": {Concurrency: 1}}}})
	done := make(chan struct{})
	go func() {
		w.Wake(context.Background(), "a", Request{Transports: []registry.Transport{"udp"}})
		close(done)
	}()
	for deadline := time.Now().Add(2 * time.Second); udp.running.Load() < 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	res, err := w.Wake(context.Background(), "b", Request{Transports: []registry.Transport{"udp", "http"}})
	if err != nil || res.Status != Delivered || res.Transport != "http" || len(res.Attempts) != 2 || res.Attempts[0].Status != Throttled {
		t.Errorf("fallback past a busy transport: %+v %v", res, err)
	}
	close(udp.release)
	<-done
}

func TestTransportLimitRefuses(t *testing.T) {
	udp := newGated(Sent)
	w := waker(t, Config{Devices: devices("a", "b"), Transports: map[registry.Transport]Transport{"udp": udp},
		Limits: Limits{PerTransport: map[registry.Transport]Limit{"udp": {Concurrency: 1}}}})
	done := make(chan struct{})
	go func() { w.Wake(context.Background(), "a", Request{}); close(done) }()
	for deadline := time.Now().Add(2 * time.Second); udp.running.Load() < 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if _, err := w.Wake(context.Background(), "b", Request{}); !errors.Is(err, ErrBusy) {
		t.Errorf("only transport busy: %v, want ErrBusy", err)
	}
	close(udp.release)
	<-done
}

func TestParallel(t *testing.T) {
	udp := released(newGated(Sent))
	http := released(newGated(Delivered))
	http.delay = 30 * time.Millisecond
	w := waker(t, Config{Devices: devices("a"), Transports: map[registry.Transport]Transport{"udp": udp, "http": http, "xmpp": unusable{}}})
	res, err := w.Wake(context.Background(), "a", Request{Strategy: Parallel, Transports: []registry.Transport{"udp", "http", "xmpp"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != Delivered || res.Transport != "http" || res.Strategy != Parallel || len(res.Attempts) != 3 {
		t.Errorf("parallel: %+v", res)
	}
	if res.Attempts[0].Status != Sent || res.Attempts[1].Status != Delivered || res.Attempts[2].Status != Offline {
		t.Errorf("attempts: %+v", res.Attempts)
	}
	if udp.calls.Load() != 1 || http.calls.Load() != 1 {
		t.Errorf("calls udp %d http %d", udp.calls.Load(), http.calls.Load())
	}
	if err := w.Check(Request{Strategy: "random"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("unknown strategy: %v", err)
	}
}

type recObserver struct {
	mu        sync.Mutex
	woke      []Result
	confirmed []Result
}

func (o *recObserver) Woke(_ string, r Result) {
	o.mu.Lock()
	o.woke = append(o.woke, r)
	o.mu.Unlock()
}
func (o *recObserver) Confirmed(_ string, r Result) {
	o.mu.Lock()
	o.confirmed = append(o.confirmed, r)
	o.mu.Unlock()
}

func TestInformConfirms(t *testing.T) {
	g := released(newGated(Sent))
	devs := devices("a", "b")
	obs := &recObserver{}
	w := waker(t, Config{Devices: devs, Transports: map[registry.Transport]Transport{"udp": g}, Observer: obs, ConfirmWindow: time.Minute})
	res, _ := w.Wake(context.Background(), "a", Request{})

	c, err := w.Inform("a", []string{"1 BOOT"}, time.Now())
	if err != nil || c.Confirmed {
		t.Errorf("Inform without 6 CONNECTION REQUEST: %+v %v", c, err)
	}
	c, err = w.Inform("a", []string{"4 VALUE CHANGE", "6 CONNECTION REQUEST"}, time.Now().Add(40*time.Millisecond))
	if err != nil || !c.Confirmed || c.Wake == nil || c.Wake.ID != res.ID || c.Wake.ConfirmMS < 40 {
		t.Fatalf("Inform: %+v %v", c, err)
	}
	if rec := devs.live["a"].Wakes[0]; rec.ConfirmedAt == nil || rec.ConfirmMS != c.Wake.ConfirmMS {
		t.Errorf("record not confirmed: %+v", rec)
	}
	// A second Inform finds nothing more to confirm.
	if c, _ := w.Inform("a", []string{"6 CONNECTION REQUEST"}, time.Now()); c.Confirmed {
		t.Errorf("confirmed twice: %+v", c)
	}
	// Nothing to confirm; unknown device; bad events.
	if c, err := w.Inform("b", []string{"6 CONNECTION REQUEST"}, time.Now()); err != nil || c.Confirmed || c.Reason == "" {
		t.Errorf("no wake: %+v %v", c, err)
	}
	if _, err := w.Inform("zz", []string{"6 CONNECTION REQUEST"}, time.Now()); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown device: %v", err)
	}
	for _, ev := range [][]string{nil, {""}, {string(make([]byte, 65))}} {
		if _, err := w.Inform("a", ev, time.Now()); !errors.Is(err, ErrBadRequest) {
			t.Errorf("events %q: %v", ev, err)
		}
	}
	// Outside the window.
	w.Wake(context.Background(), "b", Request{})
	if c, _ := w.Inform("b", []string{"6 CONNECTION REQUEST"}, time.Now().Add(2*time.Minute)); c.Confirmed {
		t.Errorf("confirmed outside the window: %+v", c)
	}
	if len(obs.woke) != 2 || len(obs.confirmed) != 1 || obs.confirmed[0].Status != Confirmed {
		t.Errorf("observer: woke %d confirmed %+v", len(obs.woke), obs.confirmed)
	}
}

func TestWaitConfirmed(t *testing.T) {
	g := released(newGated(Sent))
	devs := devices("a", "b")
	w := waker(t, Config{Devices: devs, Transports: map[registry.Transport]Transport{"udp": g}})
	go func() {
		time.Sleep(60 * time.Millisecond)
		w.Inform("a", []string{"6 CONNECTION REQUEST"}, time.Now())
	}()
	res, err := w.Wake(context.Background(), "a", Request{Wait: WaitConfirmed})
	if err != nil || res.Status != Confirmed || res.ConfirmMS < 50 || res.Transport != "udp" {
		t.Fatalf("wait confirmed: %+v %v", res, err)
	}
	// A coalesced wake waiting for confirmation sees it too.
	if res, _ := w.Wake(context.Background(), "a", Request{Wait: WaitConfirmed}); res.Status != Confirmed || !res.Coalesced {
		t.Errorf("coalesced wait: %+v", res)
	}
	// No Inform: the timeout ends the wait with the transport's status.
	res, err = w.Wake(context.Background(), "b", Request{Wait: WaitConfirmed, Timeout: 100 * time.Millisecond})
	if err != nil || res.Status != Sent || !res.ConfirmTimedOut {
		t.Errorf("no confirmation: %+v %v", res, err)
	}
}

func TestInformWhilePending(t *testing.T) {
	g := newGated(Delivered)
	devs := devices("a")
	w := waker(t, Config{Devices: devs, Transports: map[registry.Transport]Transport{"http": g}})
	done := make(chan Result)
	go func() { r, _ := w.Wake(context.Background(), "a", Request{}); done <- r }()
	for deadline := time.Now().Add(2 * time.Second); g.running.Load() < 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	c, err := w.Inform("a", []string{"6 CONNECTION REQUEST"}, time.Now())
	if err != nil || !c.Confirmed {
		t.Fatalf("Inform during the wake: %+v %v", c, err)
	}
	close(g.release)
	res := <-done
	if rec := devs.live["a"].Wakes[0]; rec.ID != res.ID || rec.ConfirmedAt == nil {
		t.Errorf("record of a wake confirmed while pending: %+v", rec)
	}
}
