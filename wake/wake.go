// Package wake is the one path every connection request takes, whatever
// asked for it (the API today; campaigns later). It picks the transports a
// device can use, runs them under one deadline, records each attempt and
// reports the outcome with the status words shared by every transport.
//
// Transports (httpcr today; the STUN/UDP and XMPP transports as they land)
// are reached through the Transport interface, so they know nothing of each
// other, of the API, or of this package.
package wake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crrelay/crrelay/registry"
)

// Status is the outcome of one attempt or of a whole wake. The words are the
// API's, shared by every transport.
type Status string

// The status words. Delivered and Sent count as success.
const (
	Delivered   Status = "delivered"   // the CPE acknowledged (HTTP 200/204)
	Sent        Status = "sent"        // UDP, where no acknowledgement exists
	AuthFailed  Status = "auth_failed" // the CPE rejected the credentials
	Throttled   Status = "throttled"   // the CPE answered 503
	Refused     Status = "refused"     // the CPE or broker refused the sender
	Offline     Status = "offline"     // no way to reach it now
	Unreachable Status = "unreachable" // connect failed
	Timeout     Status = "timeout"     // no answer in time
	Error       Status = "error"       // anything else
)

// OK reports whether s means the request reached the CPE.
func (s Status) OK() bool { return s == Delivered || s == Sent }

var (
	ErrNotFound         = errors.New("wake: device not found")
	ErrUnknownTransport = errors.New("wake: unknown transport")
	ErrBadTimeout       = errors.New("wake: timeout out of range")
)

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
	Status     Status             `json:"status"`
	Transport  registry.Transport `json:"transport,omitempty"`
	DurationMS float64            `json:"duration_ms"`
	Attempts   []Attempt          `json:"attempts"`
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
}

// Config configures a Waker.
type Config struct {
	Devices    Devices                          // required
	Transports map[registry.Transport]Transport // the transports this appliance runs
	// Default is the order tried for a device that lists no transports.
	// Defaults to xmpp, udp, http.
	Default []registry.Transport
	// Timeout bounds a wake that names none. Defaults to 10s.
	Timeout time.Duration
	// MaxTimeout is the longest timeout a caller may ask for. Defaults to 60s.
	MaxTimeout time.Duration
	Logger     *slog.Logger          // nil discards
	Metrics    prometheus.Registerer // nil registers nothing
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
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxTimeout == 0 {
		c.MaxTimeout = 60 * time.Second
	}
	if c.Timeout < 0 || c.Timeout > c.MaxTimeout {
		return fmt.Errorf("%w: default %v, max %v", ErrBadTimeout, c.Timeout, c.MaxTimeout)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Waker runs wakes. It is safe for concurrent use.
type Waker struct {
	cfg      Config
	wakes    *prometheus.CounterVec
	attempts *prometheus.HistogramVec
}

// New builds a Waker.
func New(cfg Config) (*Waker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w := &Waker{
		cfg: cfg,
		wakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_wakes_total",
			Help: "Connection requests by winning transport and final status.",
		}, []string{"transport", "status"}),
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crrelay_wake_attempt_duration_seconds",
			Help:    "Duration of single transport attempts, by transport and status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"transport", "status"}),
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{w.wakes, w.attempts} {
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
	// Timeout bounds the whole wake. Zero means the configured default.
	Timeout time.Duration
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
	return nil
}

// MaxTimeout is the longest timeout a Request may carry.
func (w *Waker) MaxTimeout() time.Duration { return w.cfg.MaxTimeout }

// Wake makes a connection request to device id. Transports are tried in
// order until one reaches the CPE (delivered or sent); each failure falls
// back to the next. A transport this appliance does not run, or that cannot
// reach the device now, is reported as an offline attempt rather than
// skipped silently, so the ACS sees why.
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

	order := r.Transports
	if len(order) == 0 {
		order = d.Transports
	}
	if len(order) == 0 {
		order = w.cfg.Default
	}
	start := time.Now()
	res := Result{Attempts: make([]Attempt, 0, len(order))}
	var tried, unusable []Attempt
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
		if ctx.Err() != nil {
			tried = append(tried, Attempt{Transport: name, Status: Timeout, Detail: "wake deadline passed before this transport was tried"})
			break
		}
		a := t.Wake(ctx, d)
		a.Transport = name
		w.attempts.WithLabelValues(string(name), string(a.Status)).Observe(a.DurationMS / 1000)
		tried = append(tried, a)
		if a.Status.OK() {
			break
		}
	}
	// Attempts in the order they happened; unusable transports last, so the
	// list reads as "what we did, then what we could not do".
	res.Attempts = append(append(res.Attempts, tried...), unusable...)
	res.DurationMS = ms(time.Since(start))
	// The outcome is the last transport tried (the winner, or the last
	// failure); with nothing tried, the device is offline for the first
	// reason given.
	outcome := Attempt{Status: Offline, Detail: "no transport can reach this device"}
	if len(tried) > 0 {
		outcome = tried[len(tried)-1]
	} else if len(unusable) > 0 {
		// Prefer a reason from a transport this appliance runs ("no
		// connection_request_url") over "not enabled".
		why := unusable[0].Detail
		for _, a := range unusable {
			if _, enabled := w.cfg.Transports[a.Transport]; enabled {
				why = a.Detail
				break
			}
		}
		outcome = Attempt{Status: Offline, Detail: why}
	}
	res.Status, res.Transport = outcome.Status, outcome.Transport
	w.wakes.WithLabelValues(string(res.Transport), string(res.Status)).Inc()
	w.cfg.Devices.RecordWake(id, registry.WakeRecord{
		At: start.UTC(), Status: string(res.Status), Transport: string(res.Transport),
		DurationMS: res.DurationMS, Detail: outcome.Detail,
	})
	w.cfg.Logger.Debug("wake", "device", id, "status", res.Status, "transport", res.Transport, "duration_ms", res.DurationMS, "attempts", len(res.Attempts))
	return res, nil
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
