package events

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors returned by this package.
var (
	// ErrClosed: the Bus is closed.
	ErrClosed = errors.New("events: bus closed")
	// ErrBadFilter: a query's filter names an unknown event type or is
	// too large.
	ErrBadFilter = errors.New("events: bad filter")
	// ErrConfig: a Config or WebhookConfig field is out of range.
	ErrConfig = errors.New("events: bad config")
	// ErrWebhookURL: WebhookConfig.URL is not an absolute http or https
	// URL.
	ErrWebhookURL = errors.New("events: webhook URL must be an absolute http:// or https:// URL")
	// ErrWebhookSecret: WebhookConfig.Secret is empty.
	ErrWebhookSecret = errors.New("events: webhook secret is empty")
	// ErrWebhookRunning: Run was called on a Webhook already running.
	ErrWebhookRunning = errors.New("events: webhook already running")
	// ErrSignature: Verify found the signature malformed or not matching.
	ErrSignature = errors.New("events: bad webhook signature")
	// ErrTimestamp: Verify found the timestamp malformed or too far from
	// now.
	ErrTimestamp = errors.New("events: bad webhook timestamp")
)

// replayChunk bounds how many history events Subscribe copies per hold of
// the Bus lock, so a replay never stalls Publish for long.
const replayChunk = 256

// Config configures a Bus.
type Config struct {
	// History is how many recent events are kept for replay to clients
	// that reconnect with Last-Event-ID. Defaults to 4096.
	History int
	// SubscriberBuffer is how many events a subscriber (an SSE client) may
	// fall behind before it loses events. Defaults to 1024.
	SubscriberBuffer int
	// MaxClients bounds concurrent ServeSSE streams; more are answered
	// 503. Defaults to 256.
	MaxClients int
	// Heartbeat is the interval of ServeSSE's keepalive comments, which
	// keep proxies and NATs from closing an idle stream. Defaults to 15s.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to an SSE client; a client that
	// stops reading is disconnected after it. Defaults to 10s.
	WriteTimeout time.Duration
	// Metrics registers the Bus's collectors (crrelay_events_*). Defaults
	// to none.
	Metrics prometheus.Registerer
	// Logger defaults to discarding.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.History < 0 || c.SubscriberBuffer < 0 || c.MaxClients < 0 {
		return fmt.Errorf("%w: History, SubscriberBuffer and MaxClients must not be negative", ErrConfig)
	}
	if c.Heartbeat < 0 || c.WriteTimeout < 0 {
		return fmt.Errorf("%w: Heartbeat and WriteTimeout must not be negative", ErrConfig)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.History == 0 {
		c.History = 4096
	}
	if c.SubscriberBuffer == 0 {
		c.SubscriberBuffer = 1024
	}
	if c.MaxClients == 0 {
		c.MaxClients = 256
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Bus numbers events, keeps the recent ones, and hands them to
// subscribers. Its methods are safe for concurrent use.
type Bus struct {
	cfg     Config
	log     *slog.Logger
	m       *busMetrics
	clients atomic.Int64 // ServeSSE streams

	// mu guards what follows. Publish holds it to number, store and fan
	// out an event, so every subscriber sees events in ID order and a
	// replay joins live delivery without a gap or a duplicate.
	mu     sync.Mutex
	last   uint64  // ID of the last event published
	ring   []Event // event ID i is at ring[(i-1)%len(ring)]
	subs   []*Subscription
	closed bool
}

// NewBus returns a Bus configured by cfg.
func NewBus(cfg Config) (*Bus, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	m, err := newBusMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Bus{cfg: cfg, log: cfg.Logger, m: m, ring: make([]Event, cfg.History)}, nil
}

// Publish numbers e, sets its At to now if zero (and to UTC), keeps it in
// history and delivers it to every subscriber whose filter it matches. It
// returns e as numbered.
//
// Publish never waits for a consumer: a subscriber whose buffer is full
// loses the event, and the loss is counted. The lock it takes is held only
// to number, store and offer events (Subscribe holds it at most to copy
// replayChunk events). It allocates nothing; the caller must not modify
// e.Data afterwards, as it is shared, not copied.
// Publishing on a closed Bus still numbers the event, but nobody receives
// it.
func (b *Bus) Publish(e Event) Event {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = e.At.UTC() // also strips the monotonic reading
	ti := typeIndex(e.Type)

	b.mu.Lock()
	b.last++
	e.ID = b.last
	b.ring[(e.ID-1)%uint64(len(b.ring))] = e
	for _, s := range b.subs {
		if s.m.match(&e, ti) {
			s.send(e)
		}
	}
	b.mu.Unlock()

	b.m.published[ti].Inc()
	return e
}

// Close ends every subscription (their channels are closed, and ServeSSE
// handlers return) and refuses new ones. It is idempotent.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for _, s := range b.subs {
		s.closed = true
		close(s.ch)
	}
	b.subs = nil
}

// Subscription is a stream of the events matching a Filter. It must be
// closed when no longer read.
type Subscription struct {
	bus     *Bus
	m       *matcher
	ch      chan Event
	dropped atomic.Uint64
	drop    prometheus.Counter
	missed  uint64 // set before the subscription is returned
	reset   bool
	closed  bool // guarded by bus.mu
}

// Subscribe returns a subscription to the events matching f.
//
// If after is 0, it receives the events published from now on. Otherwise
// it first receives, in order, the events of the history with an ID
// greater than after that match f, and then the live ones, with neither a
// gap nor a duplicate between the two: this implements SSE's
// Last-Event-ID. If events after the given ID have already left the
// history, Missed reports how many. An after greater than any ID this Bus
// has assigned comes from an earlier run of the process: the whole history
// is replayed, and Missed reports a reset.
//
// C's buffer holds Config.SubscriberBuffer events beyond those replayed.
func (b *Bus) Subscribe(f Filter, after uint64) (*Subscription, error) {
	return b.subscribe(f, after, b.cfg.SubscriberBuffer, consumerOther)
}

// subscribe is Subscribe with the buffer size and the consumer that
// metrics count drops under.
//
// The replay copies at most replayChunk events per hold of the lock and
// delivers them outside it; only the last chunk is delivered under the
// lock, together with joining the subscribers, so that no event published
// in between is missed or repeated.
func (b *Bus) subscribe(f Filter, after uint64, buf int, consumer string) (*Subscription, error) {
	s := &Subscription{bus: b, m: compile(f), drop: b.m.droppedFor(consumer)}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	if after == 0 {
		s.ch = make(chan Event, buf)
		b.subs = append(b.subs, s)
		b.mu.Unlock()
		return s, nil
	}
	cursor := after // the last ID replayed or skipped
	if after > b.last {
		s.reset = true
		cursor = 0
	}
	pending := min(b.last-cursor, uint64(len(b.ring)))
	b.mu.Unlock()

	// The channel has room for the replay as it stands now; events
	// published while it runs share the live buffer.
	s.ch = make(chan Event, buf+int(pending))
	chunk := make([]Event, 0, min(pending, replayChunk))
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, ErrClosed
		}
		if oldest := b.oldest(); cursor+1 < oldest {
			s.missed += oldest - 1 - cursor
			cursor = oldest - 1
		}
		n := min(b.last-cursor, replayChunk)
		chunk = chunk[:0]
		for id := cursor + 1; id <= cursor+n; id++ {
			chunk = append(chunk, b.ring[(id-1)%uint64(len(b.ring))])
		}
		cursor += n
		if cursor == b.last {
			s.deliver(chunk)
			b.subs = append(b.subs, s)
			b.mu.Unlock()
			return s, nil
		}
		b.mu.Unlock()
		s.deliver(chunk)
	}
}

// oldest returns the ID of the oldest event in history (last+1 when there
// is none). b.mu must be held.
func (b *Bus) oldest() uint64 {
	if b.last < uint64(len(b.ring)) {
		return 1
	}
	return b.last - uint64(len(b.ring)) + 1
}

// deliver sends the events of a replay chunk that match.
func (s *Subscription) deliver(chunk []Event) {
	for i := range chunk {
		if s.m.match(&chunk[i], typeIndex(chunk[i].Type)) {
			s.send(chunk[i])
		}
	}
}

// send delivers e or counts it lost. It runs under the Bus lock once s is
// subscribed, which keeps it from racing with close(s.ch).
func (s *Subscription) send(e Event) {
	select {
	case s.ch <- e:
	default:
		s.dropped.Add(1)
		s.drop.Inc()
	}
}

// C returns the channel of events. It is closed by Close and by the Bus's
// Close.
func (s *Subscription) C() <-chan Event { return s.ch }

// Dropped returns how many events matching the filter were lost since
// Subscribe because the subscriber did not keep up and its buffer was
// full. It never decreases.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Missed reports what the replay could not provide. n counts the events
// after the requested ID that had already left the history (whether or not
// they matched the filter: they are gone). reset is true when the requested
// ID was greater than any this Bus assigned, meaning it comes from an
// earlier run of the process: what happened between that event and this
// run's history is unknown.
func (s *Subscription) Missed() (n uint64, reset bool) { return s.missed, s.reset }

// Close ends the subscription and closes C. It is idempotent.
func (s *Subscription) Close() {
	b := s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if i := slices.Index(b.subs, s); i >= 0 {
		b.subs = slices.Delete(b.subs, i, i+1)
	}
	close(s.ch)
}
