package events

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Consumers, as labelled in crrelay_events_dropped_total.
const (
	consumerSSE     = "sse"     // ServeSSE clients
	consumerWebhook = "webhook" // Webhook queue overflow and batches given up
	consumerOther   = "other"   // direct Subscribe callers
)

// busMetrics are the Bus's collectors, created even without a registry so
// that Publish needs no nil checks. No label carries a device or campaign.
type busMetrics struct {
	published [typeOther + 1]prometheus.Counter // by typeIndex
	dropped   *prometheus.CounterVec
	sseDrop   prometheus.Counter
	hookDrop  prometheus.Counter
	otherDrop prometheus.Counter
	clients   prometheus.Gauge
}

func newBusMetrics(reg prometheus.Registerer) (*busMetrics, error) {
	published := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_events_published_total",
		Help: "Events published on the event bus, by type (types not known to crrelay count as other).",
	}, []string{"type"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_events_dropped_total",
		Help: "Events lost by a consumer: a full SSE client buffer or webhook queue, or a webhook batch given up.",
	}, []string{"consumer"})
	clients := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "crrelay_events_sse_clients",
		Help: "Connected Server-Sent Events clients.",
	})
	if reg != nil {
		// A second Bus on the same registry (tests) shares the collectors.
		var err error
		published, err = register(reg, published)
		if err == nil {
			dropped, err = register(reg, dropped)
		}
		if err == nil {
			clients, err = register(reg, clients)
		}
		if err != nil {
			return nil, fmt.Errorf("events: register metrics: %w", err)
		}
	}
	m := &busMetrics{
		dropped:   dropped,
		sseDrop:   dropped.WithLabelValues(consumerSSE),
		hookDrop:  dropped.WithLabelValues(consumerWebhook),
		otherDrop: dropped.WithLabelValues(consumerOther),
		clients:   clients,
	}
	for i, t := range knownTypes {
		m.published[i] = published.WithLabelValues(t)
	}
	m.published[typeOther] = published.WithLabelValues("other")
	return m, nil
}

func (m *busMetrics) droppedFor(consumer string) prometheus.Counter {
	switch consumer {
	case consumerSSE:
		return m.sseDrop
	case consumerWebhook:
		return m.hookDrop
	}
	return m.otherDrop
}

// webhookMetrics are a Webhook's collectors; its drops are counted by the
// Bus it runs on, in crrelay_events_dropped_total.
type webhookMetrics struct {
	ok, retry, failed prometheus.Counter
}

func newWebhookMetrics(reg prometheus.Registerer, queued func() float64) (*webhookMetrics, error) {
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_webhook_deliveries_total",
		Help: "Webhook POSTs: ok (2xx), retry (failed, will be retried), failed (batch given up).",
	}, []string{"result"})
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crrelay_webhook_queue_length",
		Help: "Events waiting for webhook delivery, the batch in flight included.",
	}, queued)
	if reg != nil {
		// The queue gauge reads this Webhook's queue: a second Webhook on
		// the same registry is an error rather than a silent mix-up.
		var err error
		deliveries, err = register(reg, deliveries)
		if err == nil {
			err = reg.Register(queue)
		}
		if err != nil {
			return nil, fmt.Errorf("events: register webhook metrics: %w", err)
		}
	}
	return &webhookMetrics{
		ok:     deliveries.WithLabelValues("ok"),
		retry:  deliveries.WithLabelValues("retry"),
		failed: deliveries.WithLabelValues("failed"),
	}, nil
}

// register registers c, or returns the identical collector already
// registered.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
