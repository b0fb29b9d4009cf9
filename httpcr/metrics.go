package httpcr

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the client's Prometheus collectors. Labels never carry device
// ids or URLs. A nil *metrics records nothing.
type metrics struct {
	requests *prometheus.CounterVec
	duration prometheus.Histogram
	inflight prometheus.Gauge
	denied   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_http_cr_requests_total",
			Help: "HTTP connection requests by outcome.",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "crrelay_http_cr_duration_seconds",
			Help:    "Duration of HTTP connection requests, all round trips included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crrelay_http_cr_inflight",
			Help: "HTTP connection requests holding a concurrency slot.",
		}),
		denied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crrelay_http_cr_denied_total",
			Help: "HTTP connection requests refused by the destination policy.",
		}),
	}
	// A second Client on the same registry shares the collectors.
	var err error
	m.requests, err = register(reg, m.requests)
	if err == nil {
		m.duration, err = register(reg, m.duration)
	}
	if err == nil {
		m.inflight, err = register(reg, m.inflight)
	}
	if err == nil {
		m.denied, err = register(reg, m.denied)
	}
	if err != nil {
		return nil, fmt.Errorf("httpcr: register metrics: %w", err)
	}
	// Show every outcome from the start, at zero.
	for _, o := range []Outcome{Delivered, AuthFailed, Throttled, Unreachable, Timeout, Error} {
		m.requests.WithLabelValues(string(o))
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *metrics) start() {
	if m != nil {
		m.inflight.Inc()
	}
}

func (m *metrics) end() {
	if m != nil {
		m.inflight.Dec()
	}
}

func (m *metrics) observe(r *Result) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(string(r.Outcome)).Inc()
	m.duration.Observe(r.Duration.Seconds())
	if errors.Is(r.Err, ErrDenied) {
		m.denied.Inc()
	}
}
