package xmpp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a connection is refused or dropped before it is bound.
const (
	refusedMaxSessions = "max_sessions"
	refusedRatePerIP   = "rate_per_ip"
	refusedTimeout     = "negotiation_timeout"
	refusedTLS         = "tls_failure"
	refusedAuth        = "auth_failure"
	refusedNegotiation = "negotiation_error"
)

// metrics are the broker's Prometheus metrics. Counters that hot paths
// touch are resolved to their label values once, here.
type metrics struct {
	sessions   [nKinds]prometheus.Gauge
	accepted   prometheus.Counter
	refused    *prometheus.CounterVec
	auth       *prometheus.CounterVec
	stanzasIn  prometheus.Counter
	stanzasOut prometheus.Counter
	stanzaErrs *prometheus.CounterVec
	streamErrs *prometheus.CounterVec
	oversized  prometheus.Counter
	crOutcome  [nOutcomes]prometheus.Counter
	crSeconds  prometheus.Histogram
	timeouts   prometheus.Counter
	// writeStalls: sessions closed because their socket took nothing
	// for WriteTimeout.
	writeStalls prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := new(metrics)
	sessions := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "crrelay_xmpp_sessions",
		Help: "Bound XMPP sessions, by kind of account (cpe, acs).",
	}, []string{"kind"})
	for k := range m.sessions {
		m.sessions[k] = sessions.WithLabelValues(kind(k).String())
	}
	m.accepted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crrelay_xmpp_connections_accepted_total",
		Help: "TCP connections accepted on XMPP listeners and allowed to negotiate.",
	})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_xmpp_connections_refused_total",
		Help: "Connections refused or dropped before binding, by reason (max_sessions, rate_per_ip, negotiation_timeout, tls_failure, auth_failure, negotiation_error).",
	}, []string{"reason"})
	for _, r := range []string{refusedMaxSessions, refusedRatePerIP, refusedTimeout, refusedTLS, refusedAuth, refusedNegotiation} {
		m.refused.WithLabelValues(r)
	}
	m.auth = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_xmpp_auth_total",
		Help: "SASL authentications, by mechanism and result (success, failure).",
	}, []string{"mechanism", "result"})
	m.stanzasIn = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crrelay_xmpp_stanzas_in_total",
		Help: "Stanzas received from bound sessions.",
	})
	m.stanzasOut = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crrelay_xmpp_stanzas_out_total",
		Help: "Stanzas written to bound sessions.",
	})
	m.stanzaErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_xmpp_stanza_errors_total",
		Help: "Stanza errors the broker returned, by condition.",
	}, []string{"condition"})
	m.streamErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_xmpp_stream_errors_total",
		Help: "Streams the broker closed with a stream error, by condition.",
	}, []string{"condition"})
	m.oversized = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crrelay_xmpp_oversized_stanzas_total",
		Help: "Stanzas or negotiation elements longer than the limit (the stream is closed).",
	})
	crs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_xmpp_connection_requests_total",
		Help: "Connection requests sent by the relay, by outcome.",
	}, []string{"outcome"})
	for o := range m.crOutcome {
		if o > 0 {
			m.crOutcome[o] = crs.WithLabelValues(Outcome(o).String())
		}
	}
	m.crSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "crrelay_xmpp_connection_request_seconds",
		Help:    "Round-trip time of connection requests that got an answer.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	m.timeouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crrelay_xmpp_read_timeouts_total",
		Help: "Sessions closed because nothing arrived within the read timeout.",
	})
	m.writeStalls = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crrelay_xmpp_write_stalls_total",
		Help: "Sessions closed because their socket took none of the bytes waiting for it within the write timeout.",
	})
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{sessions, m.accepted, m.refused, m.auth, m.stanzasIn, m.stanzasOut,
		m.stanzaErrs, m.streamErrs, m.oversized, crs, m.crSeconds, m.timeouts, m.writeStalls}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, c := range cs[:i] {
				reg.Unregister(c)
			}
			return nil, fmt.Errorf("xmpp: registering metrics: %w", err)
		}
	}
	return m, nil
}
