package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Webhook request headers.
const (
	HeaderTimestamp = "X-Crrelay-Timestamp" // Unix time in seconds, decimal
	HeaderSignature = "X-Crrelay-Signature" // "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)
)

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// URL receives the POSTs: an absolute http:// or https:// URL.
	// Required.
	URL string
	// Secret is the HMAC-SHA256 key of X-Crrelay-Signature. Required.
	Secret []byte
	// Filter selects the events sent. Defaults to all.
	Filter Filter
	// QueueSize bounds the events waiting for delivery; past it new events
	// are dropped and counted. Defaults to 10000.
	QueueSize int
	// BatchSize bounds the events per POST. Defaults to 100.
	BatchSize int
	// MaxAttempts bounds the POSTs of one batch, the first included;
	// after the last fails, the batch is dropped and counted. Defaults
	// to 8.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry; each retry
	// doubles it, up to MaxBackoff, and a random part of up to half of it
	// is taken off. Defaults to 500ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between attempts, Retry-After included.
	// Defaults to 30s.
	MaxBackoff time.Duration
	// Timeout bounds each POST, response included. Defaults to 5s.
	Timeout time.Duration
	// ShutdownGrace bounds how long Run keeps delivering what is queued
	// once its context ends. Defaults to 5s.
	ShutdownGrace time.Duration
	// Client sends the POSTs. Defaults to a client on
	// http.DefaultTransport that does not follow redirects (a 3xx fails
	// the batch: the signed events are not forwarded elsewhere).
	Client *http.Client
	// Metrics registers the Webhook's collectors (crrelay_webhook_*);
	// dropped events are counted by the Bus it runs on. Defaults to none.
	Metrics prometheus.Registerer
	// Logger defaults to discarding.
	Logger *slog.Logger
}

func (c *WebhookConfig) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrWebhookURL, err)
	}
	if !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: got %q", ErrWebhookURL, c.URL)
	}
	if len(c.Secret) == 0 {
		return ErrWebhookSecret
	}
	if c.QueueSize < 0 || c.BatchSize < 0 || c.MaxAttempts < 0 {
		return fmt.Errorf("%w: webhook QueueSize, BatchSize and MaxAttempts must not be negative", ErrConfig)
	}
	if c.InitialBackoff < 0 || c.MaxBackoff < 0 || c.Timeout < 0 || c.ShutdownGrace < 0 {
		return fmt.Errorf("%w: webhook durations must not be negative", ErrConfig)
	}
	for _, t := range c.Filter.Types {
		if !knownTypeOrFamily(t) {
			return fmt.Errorf("%w: unknown event type %q in webhook filter", ErrBadFilter, t)
		}
	}
	return nil
}

func (c *WebhookConfig) setDefaults() {
	if c.QueueSize == 0 {
		c.QueueSize = 10000
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	c.MaxBackoff = max(c.MaxBackoff, c.InitialBackoff)
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Webhook pushes events to an HTTP endpoint, in order, in signed batches.
// See the package documentation for the requests it sends.
type Webhook struct {
	cfg WebhookConfig
	log *slog.Logger
	m   *webhookMetrics

	running  atomic.Bool
	sub      atomic.Pointer[Subscription] // of the current Run
	inFlight atomic.Int64                 // events taken from the queue, not yet settled
	lost     atomic.Uint64                // events given up, and queue overflow of past Runs

	subscribed     chan struct{} // closed once Run first subscribes (tests)
	subscribedOnce sync.Once
}

// NewWebhook returns a Webhook configured by cfg; Run starts it.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	w := &Webhook{cfg: cfg, log: cfg.Logger, subscribed: make(chan struct{})}
	m, err := newWebhookMetrics(cfg.Metrics, func() float64 { return float64(w.queued()) })
	if err != nil {
		return nil, err
	}
	w.m = m
	return w, nil
}

// queued returns the events taken from bus and not yet delivered or
// dropped.
func (w *Webhook) queued() int64 {
	n := w.inFlight.Load()
	if s := w.sub.Load(); s != nil {
		n += int64(len(s.ch))
	}
	return n
}

// Dropped returns how many events this Webhook lost: queue overflow and
// batches given up.
func (w *Webhook) Dropped() uint64 {
	n := w.lost.Load()
	if s := w.sub.Load(); s != nil {
		n += s.Dropped()
	}
	return n
}

// Run subscribes to bus and delivers the events matching the filter until
// ctx ends or bus is closed; events published before Run subscribes are
// not sent. It then stops taking events and, for up to ShutdownGrace, keeps
// delivering those queued (a POST in flight when ctx ends completes first,
// within Timeout); what remains is dropped and counted. It returns nil
// then, or an error if it could not start.
func (w *Webhook) Run(ctx context.Context, bus *Bus) error {
	if bus == nil {
		return fmt.Errorf("%w: webhook Run needs a Bus", ErrConfig)
	}
	if !w.running.CompareAndSwap(false, true) {
		return ErrWebhookRunning
	}
	defer w.running.Store(false)
	sub, err := bus.subscribe(w.cfg.Filter, 0, w.cfg.QueueSize, consumerWebhook)
	if err != nil {
		return fmt.Errorf("events: webhook: %w", err)
	}
	w.sub.Store(sub)
	w.subscribedOnce.Do(func() { close(w.subscribed) })
	defer func() {
		w.sub.Store(nil)
		w.lost.Add(sub.Dropped())
	}()

	// POSTs in flight outlive ctx, bounded by Timeout: cancelling one
	// would only send its batch again during the flush.
	reqCtx := context.WithoutCancel(ctx)
	batch := make([]Event, 0, w.cfg.BatchSize)
	attempts := 0 // POSTs of the current batch
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case e, open := <-sub.C():
			if open {
				batch = append(batch, e)
			}
		}
		if len(batch) == 0 {
			break // ctx ended or bus closed
		}
		batch = w.fill(batch, sub)
		attempts = 0
		if !w.deliver(ctx, reqCtx, batch, &attempts) {
			break // ctx ended while waiting to retry: the flush retries
		}
		batch = w.settled(batch)
	}

	// Flush: take no more events, send what is queued while time remains.
	sub.Close()
	fctx, cancel := context.WithTimeout(reqCtx, w.cfg.ShutdownGrace)
	defer cancel()
	for fctx.Err() == nil {
		if len(batch) == 0 {
			batch = w.fill(batch, sub)
			if len(batch) == 0 {
				break // all delivered
			}
			attempts = 0
		}
		if !w.deliver(fctx, fctx, batch, &attempts) {
			break
		}
		batch = w.settled(batch)
	}
	n := len(batch)
	for range sub.C() {
		n++
	}
	w.settled(batch)
	if n > 0 {
		w.drop(n)
		w.log.Warn("events: webhook stopped with events undelivered", "events", n)
	}
	return nil
}

// settled empties batch once it is delivered or dropped.
func (w *Webhook) settled(batch []Event) []Event {
	w.inFlight.Store(0)
	clear(batch) // let the events' Data be collected
	return batch[:0]
}

// fill adds queued events to batch, without waiting, up to BatchSize.
func (w *Webhook) fill(batch []Event, sub *Subscription) []Event {
loop:
	for len(batch) < w.cfg.BatchSize {
		select {
		case e, ok := <-sub.C():
			if !ok {
				break loop
			}
			batch = append(batch, e)
		default:
			break loop
		}
	}
	w.inFlight.Store(int64(len(batch)))
	return batch
}

// deliver POSTs batch until it is accepted or given up (and returns
// true), or until waitCtx ends during a wait between attempts (and
// returns false, leaving the batch to the caller). attempts counts the
// batch's POSTs across calls.
func (w *Webhook) deliver(waitCtx, reqCtx context.Context, batch []Event, attempts *int) bool {
	body := batchBody(batch)
	for {
		*attempts++
		retry, wait, err := w.post(reqCtx, body)
		if err == nil {
			w.m.ok.Inc()
			return true
		}
		if !retry || *attempts >= w.cfg.MaxAttempts {
			w.m.failed.Inc()
			w.drop(len(batch))
			w.log.Warn("events: webhook batch dropped", "err", err, "attempts", *attempts,
				"events", len(batch), "first_id", batch[0].ID, "last_id", batch[len(batch)-1].ID)
			return true
		}
		w.m.retry.Inc()
		if wait < 0 {
			wait = w.backoff(*attempts)
		}
		w.log.Debug("events: webhook retrying", "err", err, "attempt", *attempts, "wait", wait)
		if waitCtx.Err() != nil {
			return false
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-waitCtx.Done():
			t.Stop()
			return false
		}
	}
}

// drop counts n events lost, here and in the metrics of the Bus of the
// current Run.
func (w *Webhook) drop(n int) {
	w.lost.Add(uint64(n))
	if s := w.sub.Load(); s != nil {
		s.bus.m.hookDrop.Add(float64(n))
	}
}

// post sends one POST. retry says whether a failure is worth another
// attempt; wait is the server's Retry-After, capped, or -1 if it gave
// none.
func (w *Webhook) post(ctx context.Context, body []byte) (retry bool, wait time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, -1, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "crrelay-webhook")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, sign(w.cfg.Secret, ts, body))
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return true, -1, err
	}
	// Read a little of the body so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, 0, nil
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return true, w.retryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("webhook: HTTP %d", c)
	default:
		return false, -1, fmt.Errorf("webhook: HTTP %d", c)
	}
}

// retryAfter parses a Retry-After value (RFC 9110 10.2.3: seconds, or an
// HTTP date), capped at MaxBackoff; -1 if there is none or it is invalid.
func (w *Webhook) retryAfter(v string) time.Duration {
	if v == "" {
		return -1
	}
	var d time.Duration
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(time.Until(t), 0)
	} else {
		return -1
	}
	return min(d, w.cfg.MaxBackoff)
}

// backoff returns the wait after the attempt-th failure: exponential, and
// "equal jitter" (a random half taken off) so that appliances retrying
// after an outage of the receiver spread out.
func (w *Webhook) backoff(attempt int) time.Duration {
	d := w.cfg.MaxBackoff
	if shift := attempt - 1; shift < 32 {
		d = min(w.cfg.InitialBackoff<<shift, d)
	}
	half := d / 2
	return d - half + rand.N(half+1)
}

// batchBody is the POST body: {"events":[...]}.
func batchBody(batch []Event) []byte {
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i := range batch {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(encode(&batch[i]))
	}
	b.WriteString("]}")
	return b.Bytes()
}

// sign returns the X-Crrelay-Signature value for a request.
func sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a webhook request as its receiver: timestamp and signature
// are the X-Crrelay-Timestamp and X-Crrelay-Signature headers, body the
// raw request body. It returns an error wrapping ErrTimestamp if the
// timestamp is malformed or more than maxSkew away from now (maxSkew <= 0
// skips that check, which lets a captured request be replayed), or
// wrapping ErrSignature if the signature is malformed or does not match.
func Verify(secret []byte, timestamp, signature string, body []byte, maxSkew time.Duration) error {
	if len(secret) == 0 {
		return ErrWebhookSecret
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not Unix seconds", ErrTimestamp, timestamp)
	}
	if maxSkew > 0 {
		if skew := time.Since(time.Unix(ts, 0)); skew > maxSkew || skew < -maxSkew {
			return fmt.Errorf("%w: %v away from now, more than %v", ErrTimestamp, skew.Round(time.Second), maxSkew)
		}
	}
	hexSig, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return fmt.Errorf("%w: want sha256=<hex>", ErrSignature)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: want sha256=<64 hex digits>", ErrSignature)
	}
	want, _ := hex.DecodeString(strings.TrimPrefix(sign(secret, timestamp, body), "sha256="))
	if !hmac.Equal(got, want) {
		return fmt.Errorf("%w: does not match", ErrSignature)
	}
	return nil
}
