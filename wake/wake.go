// Package wake is the one path every connection request takes, whatever
// asked for it: a single API wake, a batch, a campaign. It picks the
// transports a device can use now, runs them under one deadline and one
// strategy (sequential fallback, or all at once), records each attempt and
// reports the outcome with the status words shared by every transport.
//
// Around that it keeps the promises an ACS relies on:
//
//   - coalescing: concurrent wakes of one device share one attempt, and a
//     wake within the minimum spacing after the last one returns that
//     one's result, marked coalesced, so a CPE is never flooded;
//   - limits: global and per-transport rate and concurrency bounds; a wake
//     over them is refused with ErrBusy before anything is sent;
//   - confirmation: the ACS reports the CPE's Inform (Inform), which
//     confirms the pending or most recent wake, and a wake may wait for
//     it (Request.Wait);
//   - an audit log line for every wake, and an Observer for events.
//
// Transports are reached through the Transport interface, so they know
// nothing of each other, of the API, or of this package.
package wake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crrelay/crrelay/registry"
)

// Status is the outcome of one attempt or of a whole wake. The words are the
// API's, shared by every transport.
type Status string

// The status words. Delivered, Sent and Confirmed count as success.
const (
	Delivered   Status = "delivered"   // the CPE acknowledged (HTTP 200/204, XMPP IQ result)
	Sent        Status = "sent"        // UDP, where no acknowledgement exists
	Confirmed   Status = "confirmed"   // the ACS reported the Inform the wake caused
	AuthFailed  Status = "auth_failed" // the CPE rejected the credentials
	Throttled   Status = "throttled"   // the CPE answered 503, or a transport limit of this appliance
	Refused     Status = "refused"     // the CPE or broker refused the sender
	Offline     Status = "offline"     // no way to reach it now
	Unreachable Status = "unreachable" // connect failed
	Timeout     Status = "timeout"     // no answer in time
	Error       Status = "error"       // anything else
)

// OK reports whether s means the request reached the CPE.
func (s Status) OK() bool { return s == Delivered || s == Sent || s == Confirmed }

var (
	ErrNotFound         = errors.New("wake: device not found")
	ErrUnknownTransport = errors.New("wake: unknown transport")
	ErrBadTimeout       = errors.New("wake: timeout out of range")
	ErrBadRequest       = errors.New("wake: bad request")
)

// Strategy is how a wake uses the transports it may try.
type Strategy string

const (
	// Sequential tries the transports in order and falls back to the next
	// on failure, stopping at the first that reaches the CPE.
	Sequential Strategy = "sequential"
	// Parallel fires every usable transport at once (as some ACSes do
	// with UDP and HTTP) and waits for them all; the winner is the first
	// to be delivered, else the first sent.
	Parallel Strategy = "parallel"
)

// Valid reports whether s is a known strategy; empty (the default) is.
func (s Strategy) Valid() bool { return s == "" || s == Sequential || s == Parallel }

// Wait is when a wake returns.
type Wait string

const (
	// WaitDelivered returns at the transports' outcome (the default).
	WaitDelivered Wait = "delivered"
	// WaitConfirmed then waits, within the wake's timeout, for the ACS to
	// report the CPE's Inform (Waker.Inform).
	WaitConfirmed Wait = "confirmed"
)

// Valid reports whether w is a known wait; empty (the default) is.
func (w Wait) Valid() bool { return w == "" || w == WaitDelivered || w == WaitConfirmed }

// Attempt is one transport's try at waking a device.
type Attempt struct {
	Transport  registry.Transport `json:"transport"`
	Status     Status             `json:"status"`
	Detail     string             `json:"detail,omitempty"`
	HTTPStatus int                `json:"http_status,omitempty"`
	DurationMS float64            `json:"duration_ms"`
}

// Result is the outcome of a wake: the winning (or last) attempt's status
// and transport, the total time, and every attempt made.
type Result struct {
	ID         string             `json:"id"` // the wake's id; coalesced wakes share it
	Status     Status             `json:"status"`
	Transport  registry.Transport `json:"transport,omitempty"`
	Strategy   Strategy           `json:"strategy"`
	DurationMS float64            `json:"duration_ms"`
	// Coalesced says this call sent nothing: it shares the wake that was
	// running, or had just run, for the same device.
	Coalesced bool      `json:"coalesced,omitempty"`
	Attempts  []Attempt `json:"attempts"`
	// ConfirmMS is the time from the wake to the Inform that confirmed
	// it; ConfirmTimedOut says the caller waited for one (Wait
	// confirmed) and none came in time.
	ConfirmMS       float64 `json:"confirm_ms,omitempty"`
	ConfirmTimedOut bool    `json:"confirm_timed_out,omitempty"`
}

// Transport is what the wake path needs of a transport.
type Transport interface {
	// Usable reports whether the device can be reached this way now, and
	// if not, why (it becomes the offline attempt's detail).
	Usable(d registry.Device) (ok bool, why string)
	// Wake makes one connection request. It must honour ctx's deadline
	// and never return a success status it did not observe.
	Wake(ctx context.Context, d registry.Device) Attempt
}

// Devices is what the wake path needs of the registry.
type Devices interface {
	Get(id string) (registry.Device, bool)
	RecordWake(id string, w registry.WakeRecord)
	UpdateLive(id string, fn func(*registry.Live)) bool
}

// Observer learns of every wake that ran and every confirmation, for
// events and webhooks. Its methods are called on the wake path and must
// not block.
type Observer interface {
	Woke(device string, r Result)
	Confirmed(device string, r Result)
}

// Config configures a Waker.
type Config struct {
	Devices    Devices                          // required
	Transports map[registry.Transport]Transport // the transports this appliance runs
	// Default is the order tried for a device that lists no transports.
	// Defaults to xmpp, udp, http.
	Default []registry.Transport
	// Strategy is used by wakes that name none. Defaults to Sequential.
	Strategy Strategy
	// Timeout bounds a wake that names none. Defaults to 10s.
	Timeout time.Duration
	// MaxTimeout is the longest timeout a caller may ask for. Defaults to 60s.
	MaxTimeout time.Duration
	// MinSpacing is the least time between two wakes of one device; a wake
	// sooner shares the last one's result. Defaults to 1s; negative
	// disables it (concurrent wakes are still shared).
	MinSpacing time.Duration
	// ConfirmWindow is how long after a wake an Inform still confirms it.
	// Defaults to 5 minutes.
	ConfirmWindow time.Duration
	Limits        Limits
	Observer      Observer              // nil: none
	Logger        *slog.Logger          // nil discards; audit lines are logged at Info
	Metrics       prometheus.Registerer // nil registers nothing
}

func (c *Config) validate() error {
	if c.Devices == nil {
		return errors.New("wake: config: Devices is required")
	}
	if len(c.Default) == 0 {
		c.Default = []registry.Transport{registry.TransportXMPP, registry.TransportUDP, registry.TransportHTTP}
	}
	for _, t := range c.Default {
		if !t.Valid() {
			return fmt.Errorf("%w: %q in default order", ErrUnknownTransport, t)
		}
	}
	if c.Strategy == "" {
		c.Strategy = Sequential
	}
	if !c.Strategy.Valid() {
		return fmt.Errorf("wake: config: unknown strategy %q (sequential or parallel)", c.Strategy)
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxTimeout == 0 {
		c.MaxTimeout = 60 * time.Second
	}
	if c.Timeout < 0 || c.Timeout > c.MaxTimeout {
		return fmt.Errorf("%w: default %v, max %v", ErrBadTimeout, c.Timeout, c.MaxTimeout)
	}
	if c.MinSpacing == 0 {
		c.MinSpacing = time.Second
	}
	if c.MinSpacing < 0 {
		c.MinSpacing = 0
	}
	if c.ConfirmWindow == 0 {
		c.ConfirmWindow = 5 * time.Minute
	}
	if c.ConfirmWindow < 0 {
		return errors.New("wake: config: ConfirmWindow must not be negative")
	}
	if err := c.Limits.Global.validate("global"); err != nil {
		return err
	}
	for t, l := range c.Limits.PerTransport {
		if !t.Valid() {
			return fmt.Errorf("%w: %q in limits", ErrUnknownTransport, t)
		}
		if err := l.validate(string(t)); err != nil {
			return err
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Waker runs wakes. It is safe for concurrent use.
type Waker struct {
	cfg    Config
	calls  *calls
	global *limiter
	per    map[registry.Transport]*limiter

	idPrefix string
	idSeq    atomic.Uint64

	wakes     *prometheus.CounterVec
	attempts  *prometheus.HistogramVec
	coalesced prometheus.Counter
	busy      *prometheus.CounterVec
	confirmed *prometheus.HistogramVec
}

// New builds a Waker.
func New(cfg Config) (*Waker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var p [4]byte
	rand.Read(p[:])
	w := &Waker{
		cfg:      cfg,
		calls:    newCalls(cfg.MinSpacing),
		global:   newLimiter("global", cfg.Limits.Global),
		per:      map[registry.Transport]*limiter{},
		idPrefix: "w" + hex.EncodeToString(p[:]) + "-",
		wakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_wakes_total",
			Help: "Connection requests by winning transport and final status (coalesced ones excluded).",
		}, []string{"transport", "status"}),
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crrelay_wake_attempt_duration_seconds",
			Help:    "Duration of single transport attempts, by transport and status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"transport", "status"}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crrelay_wakes_coalesced_total",
			Help: "Wakes that shared a running or recent wake of the same device instead of sending.",
		}),
		busy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_wakes_refused_total",
			Help: "Wakes refused by this appliance's limits, by limit (global or a transport).",
		}, []string{"limit"}),
		confirmed: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crrelay_wake_confirm_seconds",
			Help:    "Time from a wake to the Inform that confirmed it, by winning transport.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 120, 300},
		}, []string{"transport"}),
	}
	for t, l := range cfg.Limits.PerTransport {
		if lim := newLimiter(string(t), l); lim != nil {
			w.per[t] = lim
		}
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{w.wakes, w.attempts, w.coalesced, w.busy, w.confirmed} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("wake: register metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Request is what a caller may ask of one wake.
type Request struct {
	// Transports restricts and orders the transports tried. Empty means the
	// device's own order, else the configured default.
	Transports []registry.Transport
	// Strategy; empty means the configured one.
	Strategy Strategy
	// Wait; empty means WaitDelivered.
	Wait Wait
	// Timeout bounds the whole wake, waiting for confirmation included.
	// Zero means the configured default.
	Timeout time.Duration
	// Origin says who asked, for the audit log ("api token=… remote=…",
	// "campaign c-…").
	Origin string
}

// Check validates r without running it, so callers can answer bad input
// before any work starts.
func (w *Waker) Check(r Request) error {
	seen := map[registry.Transport]bool{}
	for _, t := range r.Transports {
		if !t.Valid() {
			return fmt.Errorf("%w: %q", ErrUnknownTransport, t)
		}
		if seen[t] {
			return fmt.Errorf("%w: %q listed twice", ErrUnknownTransport, t)
		}
		seen[t] = true
	}
	if r.Timeout < 0 || r.Timeout > w.cfg.MaxTimeout {
		return fmt.Errorf("%w: %v (max %v)", ErrBadTimeout, r.Timeout, w.cfg.MaxTimeout)
	}
	if !r.Strategy.Valid() {
		return fmt.Errorf("%w: unknown strategy %q (sequential or parallel)", ErrBadRequest, r.Strategy)
	}
	if !r.Wait.Valid() {
		return fmt.Errorf("%w: unknown wait %q (delivered or confirmed)", ErrBadRequest, r.Wait)
	}
	return nil
}

// MaxTimeout is the longest timeout a Request may carry.
func (w *Waker) MaxTimeout() time.Duration { return w.cfg.MaxTimeout }

// Wake makes a connection request to device id.
//
// A wake of a device that is being woken, or was within the minimum
// spacing, sends nothing and returns that wake's result with Coalesced
// set. Otherwise the transports are used under the strategy: in order
// with fallback (sequential), or all at once (parallel). A transport this
// appliance does not run, or that cannot reach the device now, is reported
// as an offline attempt rather than skipped silently, so the ACS sees why.
//
// It returns ErrNotFound for an unknown device, and ErrBusy (wrapped with
// the limit) when the appliance's limits refuse the wake before anything
// was sent.
func (w *Waker) Wake(ctx context.Context, id string, r Request) (Result, error) {
	if err := w.Check(r); err != nil {
		return Result{}, err
	}
	d, ok := w.cfg.Devices.Get(id)
	if !ok {
		return Result{}, fmt.Errorf("wake %s: %w", id, ErrNotFound)
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = w.cfg.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	start := time.Now()
	cl, leader := w.calls.join(id, w.newID(), start)
	var res Result
	if leader {
		var err error
		res, err = w.run(ctx, d, r, cl)
		w.calls.finish(id, cl, res, err)
		if err != nil {
			w.cfg.Logger.Info("audit: connection request", "device", id, "origin", r.Origin, "status", "refused_by_limit", "err", err)
			return Result{}, err
		}
	} else {
		select {
		case <-cl.done:
		case <-ctx.Done():
			res = Result{ID: cl.id, Status: Timeout, Coalesced: true, Strategy: w.strategy(r),
				DurationMS: ms(time.Since(start)), Attempts: []Attempt{}}
			w.audit(id, r, res)
			return res, nil
		}
		if cl.err != nil {
			return Result{}, cl.err
		}
		res = cl.res
		res.Attempts = append([]Attempt(nil), res.Attempts...)
		res.Coalesced = true
		w.coalesced.Inc()
	}
	if r.Wait == WaitConfirmed && res.Status.OK() {
		w.awaitConfirm(ctx, id, cl, &res)
	}
	w.audit(id, r, res)
	return res, nil
}

func (w *Waker) strategy(r Request) Strategy {
	if r.Strategy != "" {
		return r.Strategy
	}
	return w.cfg.Strategy
}

func (w *Waker) newID() string {
	return w.idPrefix + strconv.FormatUint(w.idSeq.Add(1), 36)
}

// run makes the wake a leader call stands for, records it and tells the
// observer.
func (w *Waker) run(ctx context.Context, d registry.Device, r Request, cl *call) (Result, error) {
	if err := w.global.acquire(cl.start); err != nil {
		w.busy.WithLabelValues("global").Inc()
		return Result{}, err
	}
	defer w.global.release()

	order := r.Transports
	if len(order) == 0 {
		order = d.Transports
	}
	if len(order) == 0 {
		order = w.cfg.Default
	}
	strategy := w.strategy(r)
	// Split the order into what can be tried and what cannot, with why.
	type usable struct {
		name registry.Transport
		t    Transport
	}
	var can []usable
	var unusable []Attempt
	for _, name := range order {
		t, ok := w.cfg.Transports[name]
		if !ok {
			unusable = append(unusable, Attempt{Transport: name, Status: Offline, Detail: "transport " + string(name) + " is not enabled on this appliance"})
			continue
		}
		if ok, why := t.Usable(d); !ok {
			unusable = append(unusable, Attempt{Transport: name, Status: Offline, Detail: why})
			continue
		}
		can = append(can, usable{name, t})
	}

	// attempt runs one transport under its own limit. A limit that
	// refuses is reported as a throttled attempt; it is also returned, so
	// that a wake refused before anything was tried becomes ErrBusy.
	attempt := func(u usable) (Attempt, error) {
		lim := w.per[u.name]
		if err := lim.acquire(time.Now()); err != nil {
			w.busy.WithLabelValues(string(u.name)).Inc()
			return Attempt{Transport: u.name, Status: Throttled, Detail: err.Error()}, err
		}
		defer lim.release()
		if ctx.Err() != nil {
			return Attempt{Transport: u.name, Status: Timeout, Detail: "wake deadline passed before this transport was tried"}, nil
		}
		a := u.t.Wake(ctx, d)
		a.Transport = u.name
		w.attempts.WithLabelValues(string(u.name), string(a.Status)).Observe(a.DurationMS / 1000)
		return a, nil
	}

	var tried []Attempt
	busyOnly := len(can) > 0 // every transport tried was refused by a limit
	var busyErr error
	switch strategy {
	case Parallel:
		out := make([]Attempt, len(can))
		errs := make([]error, len(can))
		done := make(chan struct{}, len(can))
		for i, u := range can {
			go func() {
				out[i], errs[i] = attempt(u)
				done <- struct{}{}
			}()
		}
		for range can {
			<-done
		}
		tried = out
		for _, err := range errs {
			if err == nil {
				busyOnly = false
			} else if busyErr == nil {
				busyErr = err
			}
		}
	default:
		for _, u := range can {
			a, err := attempt(u)
			tried = append(tried, a)
			if err == nil {
				busyOnly = false
			} else if busyErr == nil {
				busyErr = err
			}
			if a.Status.OK() || a.Status == Timeout && ctx.Err() != nil {
				break
			}
		}
	}
	if busyOnly {
		return Result{}, busyErr
	}

	res := Result{ID: cl.id, Strategy: strategy, Attempts: make([]Attempt, 0, len(tried)+len(unusable))}
	// Attempts in the order they happened; unusable transports last, so the
	// list reads as "what we did, then what we could not do".
	res.Attempts = append(append(res.Attempts, tried...), unusable...)
	res.DurationMS = ms(time.Since(cl.start))
	outcome := w.outcome(tried, unusable)
	res.Status, res.Transport = outcome.Status, outcome.Transport
	w.wakes.WithLabelValues(string(res.Transport), string(res.Status)).Inc()
	confirmed := false
	var rec registry.WakeRecord
	w.calls.record(d.ID, cl, func(ok bool, at time.Time) {
		rec = registry.WakeRecord{
			ID: cl.id, At: cl.start.UTC(), Status: string(res.Status), Transport: string(res.Transport),
			DurationMS: res.DurationMS, Detail: outcome.Detail,
		}
		if ok {
			// An Inform arrived before the wake ended.
			t := at.UTC()
			rec.ConfirmedAt, rec.ConfirmMS, confirmed = &t, ms(at.Sub(cl.start)), true
		}
		w.cfg.Devices.RecordWake(d.ID, rec)
	})
	if w.cfg.Observer != nil {
		w.cfg.Observer.Woke(d.ID, res)
	}
	if confirmed {
		w.noteConfirmed(d.ID, rec)
	}
	return res, nil
}

// outcome picks the attempt that stands for the wake: the first
// delivered, else the first sent, else the last failure tried; with
// nothing tried, offline for the best reason given.
func (w *Waker) outcome(tried, unusable []Attempt) Attempt {
	for _, want := range []Status{Delivered, Sent} {
		for _, a := range tried {
			if a.Status == want {
				return a
			}
		}
	}
	if len(tried) > 0 {
		return tried[len(tried)-1]
	}
	if len(unusable) == 0 {
		return Attempt{Status: Offline, Detail: "no transport can reach this device"}
	}
	// Prefer a reason from a transport this appliance runs ("no
	// connection_request_url") over "not enabled".
	why := unusable[0].Detail
	for _, a := range unusable {
		if _, enabled := w.cfg.Transports[a.Transport]; enabled {
			why = a.Detail
			break
		}
	}
	return Attempt{Status: Offline, Detail: why}
}

// audit logs one line per wake, whatever the outcome and whoever asked.
// It is on every wake's path: attributes are passed typed, not boxed.
func (w *Waker) audit(id string, r Request, res Result) {
	w.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "audit: connection request",
		slog.String("device", id), slog.String("origin", r.Origin), slog.String("wake", res.ID),
		slog.String("transport", string(res.Transport)), slog.String("status", string(res.Status)),
		slog.Bool("coalesced", res.Coalesced), slog.Float64("duration_ms", res.DurationMS))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Usable tells whether transport t runs on this appliance and whether it
// could reach d now, and if not, why.
func (w *Waker) Usable(d registry.Device, t registry.Transport) (enabled, usable bool, why string) {
	tr, ok := w.cfg.Transports[t]
	if !ok {
		return false, false, "transport " + string(t) + " is not enabled on this appliance"
	}
	usable, why = tr.Usable(d)
	return true, usable, why
}
