package stunserver

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/stun"
)

// counter names one of the per-packet counters. The receiving goroutines
// count into a local array and add it to the Prometheus counters once
// per batch, so the hot path costs no atomic operation per packet.
type counter uint8

const (
	cPackets counter = iota

	// Drops, by reason.
	cDropTruncated
	cDropTooLarge
	cDropNotSTUN
	cDropBadLength
	cDropAttrOverflow
	cDropBadAttribute
	cDropTooManyAttrs
	cDropFingerprint
	cDropMalformed
	cDropNotRequest
	cDropMethod
	cDropRateLimited
	cDropBadSource
	cDropNoDestination
	cDropNotUnicast
	cDropAmplification

	// Responses sent, by code.
	cResp200
	cResp400
	cResp401
	cResp420
	cResp431
	cResp432

	cRespAddrHonoured
	cRespAddrRefused
	cChangeHonoured
	cChangeRefused

	cAuthOK3489
	cAuthOK5389
	cAuthOKZeroLength
	cAuthBadMAC
	cAuthUnknownUser
	cAuthNeeded // optional policy, no MESSAGE-INTEGRITY, but the device has a password

	cCRBExact
	cCRBLenient
	cCRBInvalid

	cBindUnknown // + registry.BindingOutcome
	cBindNew
	cBindRefreshed
	cBindChanged
	cBindPending
	cBindError

	cSendError
	cReadError

	nCounters
)

// counterDefs gives each counter its metric and label value.
var counterDefs = [nCounters]struct{ vec, label string }{
	cPackets:           {"packets", ""},
	cDropTruncated:     {"dropped", "truncated"},
	cDropTooLarge:      {"dropped", "too_large"},
	cDropNotSTUN:       {"dropped", "not_stun"},
	cDropBadLength:     {"dropped", "bad_length"},
	cDropAttrOverflow:  {"dropped", "attribute_overflow"},
	cDropBadAttribute:  {"dropped", "bad_attribute"},
	cDropTooManyAttrs:  {"dropped", "too_many_attributes"},
	cDropFingerprint:   {"dropped", "bad_fingerprint"},
	cDropMalformed:     {"dropped", "malformed"},
	cDropNotRequest:    {"dropped", "not_request"},
	cDropMethod:        {"dropped", "unknown_method"},
	cDropRateLimited:   {"dropped", "rate_limited"},
	cDropBadSource:     {"dropped", "bad_source"},
	cDropNoDestination: {"dropped", "no_destination"},
	cDropNotUnicast:    {"dropped", "not_unicast"},
	cDropAmplification: {"dropped", "amplification"},
	cResp200:           {"responses", "200"},
	cResp400:           {"responses", "400"},
	cResp401:           {"responses", "401"},
	cResp420:           {"responses", "420"},
	cResp431:           {"responses", "431"},
	cResp432:           {"responses", "432"},
	cRespAddrHonoured:  {"response_address", "honoured"},
	cRespAddrRefused:   {"response_address", "refused"},
	cChangeHonoured:    {"change_request", "honoured"},
	cChangeRefused:     {"change_request", "refused"},
	cAuthOK3489:        {"integrity", "ok_rfc3489"},
	cAuthOK5389:        {"integrity", "ok_rfc5389"},
	cAuthOKZeroLength:  {"integrity", "ok_zero_length"},
	cAuthBadMAC:        {"integrity", "bad_mac"},
	cAuthUnknownUser:   {"integrity", "unknown_username"},
	cAuthNeeded:        {"integrity", "required_by_device"},
	cCRBExact:          {"connection_request_binding", "exact"},
	cCRBLenient:        {"connection_request_binding", "lenient"},
	cCRBInvalid:        {"connection_request_binding", "invalid"},
	cBindUnknown:       {"bindings", "unknown"},
	cBindNew:           {"bindings", "new"},
	cBindRefreshed:     {"bindings", "refreshed"},
	cBindChanged:       {"bindings", "changed"},
	cBindPending:       {"bindings", "pending"},
	cBindError:         {"bindings", "error"},
	cSendError:         {"send_errors", ""},
	cReadError:         {"read_errors", ""},
}

// bindCounter returns the counter of a binding outcome.
func bindCounter(o registry.BindingOutcome) counter {
	if c := cBindUnknown + counter(o); o <= registry.BindingPending && c <= cBindPending {
		return c
	}
	return cBindUnknown
}

// decodeDrop returns the drop counter for an error of stun.Decode.
func decodeDrop(err error) counter {
	switch err {
	case stun.ErrTruncated:
		return cDropTruncated
	case stun.ErrTooLarge:
		return cDropTooLarge
	case stun.ErrNotSTUN:
		return cDropNotSTUN
	case stun.ErrBadLength:
		return cDropBadLength
	case stun.ErrAttrOverflow:
		return cDropAttrOverflow
	case stun.ErrBadAttribute:
		return cDropBadAttribute
	case stun.ErrTooManyAttributes:
		return cDropTooManyAttrs
	case stun.ErrFingerprint:
		return cDropFingerprint
	}
	return cDropMalformed
}

// respCounter returns the counter of a response code.
func respCounter(code int) counter {
	switch code {
	case 400:
		return cResp400
	case 401:
		return cResp401
	case 420:
		return cResp420
	case 431:
		return cResp431
	case 432:
		return cResp432
	}
	return cResp200
}

type metrics struct {
	c [nCounters]prometheus.Counter

	crSent        prometheus.Counter
	crCoalesced   prometheus.Counter
	crRetransmits prometheus.Counter
	crNoSocket    prometheus.Counter
	crSendError   prometheus.Counter
	crBadRequest  prometheus.Counter
}

// newMetrics builds the metrics and registers them with reg, if not nil.
// No label carries a device id or an address.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := new(metrics)
	vecs := map[string]*prometheus.CounterVec{
		"dropped": prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_stun_dropped_total",
			Help: "STUN packets dropped without an answer, by reason.",
		}, []string{"reason"}),
		"responses": prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_stun_responses_total",
			Help: "STUN responses sent, by code (200 = success).",
		}, []string{"code"}),
		"response_address": prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_stun_response_address_total",
			Help: "Requests with RESPONSE-ADDRESS: honoured (same IP as the source) or refused (another IP; answered 400 to the source).",
		}, []string{"result"}),
		"change_request": prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_stun_change_request_total",
			Help: "Requests with CHANGE-REQUEST asking for a change: honoured, or refused with 420.",
		}, []string{"result"}),
		"integrity": prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_stun_integrity_total",
			Help: "MESSAGE-INTEGRITY checks, by result (and form when it matched).",
		}, []string{"result"}),
		"connection_request_binding": prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_stun_connection_request_binding_total",
			Help: "CONNECTION-REQUEST-BINDING attributes by value: exact, lenient (padding or case differs; accepted), invalid (treated as absent).",
		}, []string{"value"}),
		"bindings": prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_stun_bindings_total",
			Help: "Binding observations handed to the registry, by outcome.",
		}, []string{"outcome"}),
	}
	singles := map[string]prometheus.Counter{
		"packets": prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crrelay_stun_packets_total",
			Help: "Packets received on STUN sockets.",
		}),
		"send_errors": prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crrelay_stun_send_errors_total",
			Help: "STUN responses the system refused to send.",
		}),
		"read_errors": prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crrelay_stun_read_errors_total",
			Help: "Failed reads on STUN sockets (transient errors are survived).",
		}),
	}
	for i, d := range counterDefs {
		if v, ok := vecs[d.vec]; ok {
			m.c[i] = v.WithLabelValues(d.label)
		} else {
			m.c[i] = singles[d.vec]
		}
	}
	m.crSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crrelay_stun_udp_cr_sent_total",
		Help: "UDP connection requests sent (distinct datagrams; retransmissions not counted).",
	})
	m.crCoalesced = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crrelay_stun_udp_cr_coalesced_total",
		Help: "UDP connection requests coalesced with one sent to the same device in the same second.",
	})
	m.crRetransmits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crrelay_stun_udp_cr_retransmits_total",
		Help: "Retransmitted copies of UDP connection request datagrams.",
	})
	crErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_stun_udp_cr_errors_total",
		Help: "UDP connection requests not sent, by reason.",
	}, []string{"reason"})
	m.crNoSocket = crErrors.WithLabelValues("no_socket")
	m.crSendError = crErrors.WithLabelValues("send")
	m.crBadRequest = crErrors.WithLabelValues("bad_request")

	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{crErrors, m.crSent, m.crCoalesced, m.crRetransmits}
	for _, v := range vecs {
		cs = append(cs, v)
	}
	for _, c := range singles {
		cs = append(cs, c)
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, c := range cs[:i] {
				reg.Unregister(c)
			}
			return nil, fmt.Errorf("stunserver: registering metrics: %w", err)
		}
	}
	return m, nil
}

// counts is a receiving goroutine's local tally.
type counts [nCounters]uint64

// flush adds the tally to the metrics and clears it.
func (c *counts) flush(m *metrics) {
	for i, n := range c {
		if n != 0 {
			m.c[i].Add(float64(n))
			c[i] = 0
		}
	}
}
