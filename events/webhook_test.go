package events

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/crrelay/crrelay/internal/metrictest"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var testSecret = []byte("s3cret")

// receiver is a webhook endpoint on loopback that checks every request
// with Verify and answers with respond (200 if nil).
type receiver struct {
	t       testing.TB
	srv     *httptest.Server
	respond func(n int) int // n counts requests from 1

	mu       sync.Mutex
	requests [][]uint64 // event IDs of every request
	accepted []uint64   // event IDs of the accepted ones, in order
	arrived  chan int   // request numbers, as they arrive
	answered chan int   // request numbers, once accepted is updated
}

func newReceiver(t testing.TB, respond func(n int) int) *receiver {
	rc := &receiver{t: t, respond: respond, arrived: make(chan int, 1000), answered: make(chan int, 1000)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Errorf("reading body: %v", err)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		rc.t.Errorf("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
	}
	if err := Verify(testSecret, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, time.Minute); err != nil {
		rc.t.Errorf("Verify: %v", err)
	}
	var b struct {
		Events []Event `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil || len(b.Events) == 0 {
		rc.t.Errorf("body %s: %v", body, err)
	}
	var ids []uint64
	for _, e := range b.Events {
		ids = append(ids, e.ID)
	}
	rc.mu.Lock()
	rc.requests = append(rc.requests, ids)
	n := len(rc.requests)
	rc.mu.Unlock()
	rc.arrived <- n
	status := http.StatusOK
	if rc.respond != nil {
		status = rc.respond(n)
	}
	if status/100 == 2 {
		rc.mu.Lock()
		rc.accepted = append(rc.accepted, ids...)
		rc.mu.Unlock()
	}
	rc.answered <- n
	w.WriteHeader(status)
}

func (rc *receiver) snapshot() (requests [][]uint64, accepted []uint64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.requests), slices.Clone(rc.accepted)
}

// waitAccepted waits until n events have been accepted.
func (rc *receiver) waitAccepted(n int) {
	for {
		if _, acc := rc.snapshot(); len(acc) >= n {
			return
		}
		waitFor(rc.t, rc.answered, "an answered request")
	}
}

// runWebhook starts w on b once subscribed, and returns a function that
// cancels it and returns Run's result.
func runWebhook(t testing.TB, w *Webhook, b *Bus) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, b) }()
	waitFor(t, w.subscribed, "the webhook to subscribe")
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = waitFor(t, errc, "Run to return")
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func newWebhook(t testing.TB, cfg WebhookConfig) *Webhook {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = testSecret
	}
	w, err := NewWebhook(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWebhookConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  WebhookConfig
		want error
	}{
		{"valid", WebhookConfig{URL: "https://acs.example/hooks/crrelay", Secret: testSecret}, nil},
		{"http", WebhookConfig{URL: "http://10.0.0.1:8080/", Secret: testSecret}, nil},
		{"no URL", WebhookConfig{Secret: testSecret}, ErrWebhookURL},
		{"relative URL", WebhookConfig{URL: "/hooks", Secret: testSecret}, ErrWebhookURL},
		{"no host", WebhookConfig{URL: "http:///hooks", Secret: testSecret}, ErrWebhookURL},
		{"other scheme", WebhookConfig{URL: "ftp://acs.example/", Secret: testSecret}, ErrWebhookURL},
		{"unparsable URL", WebhookConfig{URL: "http://acs.example/%zz", Secret: testSecret}, ErrWebhookURL},
		{"no secret", WebhookConfig{URL: "https://acs.example/"}, ErrWebhookSecret},
		{"negative queue", WebhookConfig{URL: "https://acs.example/", Secret: testSecret, QueueSize: -1}, ErrConfig},
		{"negative timeout", WebhookConfig{URL: "https://acs.example/", Secret: testSecret, Timeout: -1}, ErrConfig},
		{"unknown filter type", WebhookConfig{URL: "https://acs.example/", Secret: testSecret,
			Filter: Filter{Types: []string{"wake.sent"}}}, ErrBadFilter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewWebhook(tc.cfg); !errors.Is(err, tc.want) {
				t.Errorf("NewWebhook: %v, want %v", err, tc.want)
			}
		})
	}
	w := newWebhook(t, WebhookConfig{URL: "https://acs.example/"})
	c := w.cfg
	if c.QueueSize != 10000 || c.BatchSize != 100 || c.MaxAttempts != 8 || c.InitialBackoff != 500*time.Millisecond ||
		c.MaxBackoff != 30*time.Second || c.Timeout != 5*time.Second || c.ShutdownGrace != 5*time.Second {
		t.Errorf("defaults: %+v", c)
	}
}

func TestVerify(t *testing.T) {
	// Signatures computed independently:
	//   printf '%s' "$ts.$body" | openssl dgst -sha256 -hmac "$secret"
	const (
		ts   = "1700000000"
		body = `{"events":[{"id":1,"type":"wake.result","at":"2023-11-14T22:13:20Z","device":"00D09E-CPE-1","data":{"transport":"udp"}}]}`
		sig  = "sha256=4985a00dffe1b277516a8957f27a88489a9136fa3e4bb4238a77df0eb80ac2e5"
	)
	// Our encoder produces exactly that body, and sign that signature.
	e := Event{ID: 1, Type: WakeResult, At: time.Unix(1700000000, 0).UTC(), Device: "00D09E-CPE-1",
		Data: json.RawMessage(`{"transport":"udp"}`)}
	if got := string(batchBody([]Event{e})); got != body {
		t.Errorf("batchBody =\n%s\nwant\n%s", got, body)
	}
	if got := sign(testSecret, ts, []byte(body)); got != sig {
		t.Errorf("sign = %s, want %s", got, sig)
	}
	if got := sign([]byte("secret"), ts, []byte(`{"events":[]}`)); got != "sha256=3947de27ec923573170fccda604ddfb25583ff98dc51e96cca2e11c59545026a" {
		t.Errorf("sign of an empty batch = %s", got)
	}

	now := strconv.FormatInt(time.Now().Unix(), 10)
	nowSig := sign(testSecret, now, []byte(body))
	future := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	for _, tc := range []struct {
		name      string
		secret    []byte
		ts, sig   string
		body      string
		maxSkew   time.Duration
		wantError error
	}{
		{"valid, fresh", testSecret, now, nowSig, body, time.Minute, nil},
		{"valid, age unchecked", testSecret, ts, sig, body, 0, nil},
		{"upper-case hex", testSecret, ts, "sha256=4985A00DFFE1B277516A8957F27A88489A9136FA3E4BB4238A77DF0EB80AC2E5", body, 0, nil},
		{"stale", testSecret, ts, sig, body, time.Minute, ErrTimestamp},
		{"from the future", testSecret, future, sign(testSecret, future, []byte(body)), body, time.Minute, ErrTimestamp},
		{"malformed timestamp", testSecret, "17e8", sig, body, 0, ErrTimestamp},
		{"empty timestamp", testSecret, "", sig, body, 0, ErrTimestamp},
		{"timestamp changed", testSecret, "1700000001", sig, body, 0, ErrSignature},
		{"body changed", testSecret, ts, sig, body + " ", 0, ErrSignature},
		{"wrong secret", []byte("other"), ts, sig, body, 0, ErrSignature},
		{"no prefix", testSecret, ts, sig[len("sha256="):], body, 0, ErrSignature},
		{"other algorithm", testSecret, ts, "sha1=" + sig[len("sha256="):], body, 0, ErrSignature},
		{"not hex", testSecret, ts, "sha256=zz", body, 0, ErrSignature},
		{"truncated", testSecret, ts, sig[:len(sig)-2], body, 0, ErrSignature},
		{"empty signature", testSecret, ts, "", body, 0, ErrSignature},
		{"no secret", nil, ts, sig, body, 0, ErrWebhookSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.ts, tc.sig, []byte(tc.body), tc.maxSkew)
			if !errors.Is(err, tc.wantError) || (tc.wantError == nil) != (err == nil) {
				t.Errorf("Verify: %v, want %v", err, tc.wantError)
			}
		})
	}
}

func TestWebhookDelivers(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newBus(t, Config{})
	rc := newReceiver(t, nil)
	w := newWebhook(t, WebhookConfig{URL: rc.srv.URL, BatchSize: 3, Metrics: reg,
		Filter: Filter{Types: []string{"wake", "campaign"}}})
	stop := runWebhook(t, w, b)
	var want []uint64
	for i := range 10 {
		typ := []string{WakeResult, XMPPOnline, CampaignProgress}[i%3]
		e := b.Publish(New(typ, "d", map[string]int{"i": i}))
		if typ != XMPPOnline {
			want = append(want, e.ID)
		}
	}
	rc.waitAccepted(len(want))
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	requests, accepted := rc.snapshot()
	if !slices.Equal(accepted, want) {
		t.Errorf("delivered %v, want %v", accepted, want)
	}
	for _, r := range requests {
		if len(r) > 3 {
			t.Errorf("a batch of %d events, BatchSize is 3", len(r))
		}
	}
	if v := metrictest.Value(t, reg, "crrelay_webhook_deliveries_total", "result", "ok"); int(v) != len(requests) {
		t.Errorf("deliveries{ok} = %v, want %d", v, len(requests))
	}
	if v := metrictest.Value(t, reg, "crrelay_webhook_queue_length"); v != 0 {
		t.Errorf("queue length %v after delivery", v)
	}
}

func TestWebhookRetryKeepsOrder(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newBus(t, Config{})
	rc := newReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	w := newWebhook(t, WebhookConfig{URL: rc.srv.URL, BatchSize: 2, InitialBackoff: time.Millisecond,
		MaxBackoff: 2 * time.Millisecond, Metrics: reg})
	stop := runWebhook(t, w, b)
	for range 5 {
		b.Publish(Event{Type: WakeResult})
	}
	rc.waitAccepted(5)
	stop()
	requests, accepted := rc.snapshot()
	if !slices.Equal(accepted, []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("delivered %v, want 1..5 once each, in order", accepted)
	}
	// The failed batch was sent again, whole, before anything later.
	if len(requests) < 3 || !slices.Equal(requests[0], requests[1]) || !slices.Equal(requests[1], requests[2]) || requests[0][0] != 1 {
		t.Errorf("requests %v: the first batch must be retried as is", requests)
	}
	if v := metrictest.Value(t, reg, "crrelay_webhook_deliveries_total", "result", "retry"); v != 2 {
		t.Errorf("deliveries{retry} = %v, want 2", v)
	}
	if v := metrictest.Value(t, reg, "crrelay_webhook_deliveries_total", "result", "failed"); v != 0 {
		t.Errorf("deliveries{failed} = %v, want 0", v)
	}
	if w.Dropped() != 0 {
		t.Errorf("Dropped = %d", w.Dropped())
	}
}

// TestWebhookStatuses: which answers are retried, and how often.
func TestWebhookStatuses(t *testing.T) {
	for _, tc := range []struct {
		status   int
		attempts int // with MaxAttempts 3
	}{
		{http.StatusBadRequest, 1},
		{http.StatusUnauthorized, 1},
		{http.StatusNotFound, 1},
		{http.StatusUnprocessableEntity, 1},
		{http.StatusFound, 1}, // redirects are not followed
		{http.StatusRequestTimeout, 3},
		{http.StatusTooManyRequests, 3},
		{http.StatusInternalServerError, 3},
		{http.StatusServiceUnavailable, 3},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			b := newBus(t, Config{Metrics: reg})
			rc := newReceiver(t, func(int) int { return tc.status })
			w := newWebhook(t, WebhookConfig{URL: rc.srv.URL, MaxAttempts: 3, InitialBackoff: time.Millisecond,
				MaxBackoff: time.Millisecond, Metrics: reg})
			stop := runWebhook(t, w, b)
			b.Publish(Event{Type: WakeResult})
			for range tc.attempts {
				waitFor(t, rc.arrived, "a request")
			}
			// Once given up, the batch is not sent again, not even by
			// the flush that follows.
			stop()
			requests, accepted := rc.snapshot()
			if len(requests) != tc.attempts || len(accepted) != 0 {
				t.Errorf("%d requests, %d accepted; want %d, 0", len(requests), len(accepted), tc.attempts)
			}
			for _, c := range []struct {
				name   string
				labels []string
				want   float64
			}{
				{"crrelay_webhook_deliveries_total", []string{"result", "failed"}, 1},
				{"crrelay_webhook_deliveries_total", []string{"result", "retry"}, float64(tc.attempts - 1)},
				{"crrelay_webhook_deliveries_total", []string{"result", "ok"}, 0},
				{"crrelay_events_dropped_total", []string{"consumer", "webhook"}, 1},
			} {
				if v := metrictest.Value(t, reg, c.name, c.labels...); v != c.want {
					t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
				}
			}
			if w.Dropped() != 1 {
				t.Errorf("Dropped = %d, want 1", w.Dropped())
			}
		})
	}
}

// TestWebhookWaits checks the wait between attempts in a synctest bubble,
// where time is exact.
func TestWebhookWaits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter func() string // of the first answer, a 503
		min, max   time.Duration
	}{
		{"Retry-After seconds", func() string { return "2" }, 2 * time.Second, 2 * time.Second},
		{"Retry-After zero", func() string { return "0" }, 0, 0},
		{"Retry-After date", func() string { return time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat) }, 3 * time.Second, 3 * time.Second},
		{"Retry-After capped", func() string { return "3600" }, 5 * time.Second, 5 * time.Second},
		{"Retry-After invalid: backoff", func() string { return "soon" }, 500 * time.Millisecond, time.Second},
		{"no Retry-After: backoff", func() string { return "" }, 500 * time.Millisecond, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var times []time.Time
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					mu.Lock()
					times = append(times, time.Now())
					n := len(times)
					mu.Unlock()
					if n == 1 {
						if v := tc.retryAfter(); v != "" {
							w.Header().Set("Retry-After", v)
						}
						w.WriteHeader(http.StatusServiceUnavailable)
					}
				})
				b := newBus(t, Config{})
				w := newWebhook(t, WebhookConfig{URL: "http://acs.test/hook", InitialBackoff: time.Second,
					MaxBackoff: 5 * time.Second, Client: &http.Client{Transport: handlerTransport{h}}})
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error)
				go func() { done <- w.Run(ctx, b) }()
				<-w.subscribed
				b.Publish(Event{Type: WakeResult})
				time.Sleep(time.Minute) // bubble time: every wait is over
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if len(times) != 2 {
					t.Fatalf("%d attempts, want 2", len(times))
				}
				if d := times[1].Sub(times[0]); d < tc.min || d > tc.max {
					t.Errorf("waited %v, want %v to %v", d, tc.min, tc.max)
				}
			})
		})
	}
}

func TestWebhookBackoff(t *testing.T) {
	w := newWebhook(t, WebhookConfig{URL: "http://acs.test/", InitialBackoff: 100 * time.Millisecond, MaxBackoff: 3 * time.Second})
	for i, ceiling := range []time.Duration{100, 200, 400, 800, 1600, 3000, 3000} {
		attempt := i + 1
		ceiling *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 200 {
			d := w.backoff(attempt)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want %v to %v", attempt, d, ceiling/2, ceiling)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoff(%d) took %d values in 200 draws: no jitter?", attempt, len(seen))
		}
	}
	if d := w.backoff(1000); d < 1500*time.Millisecond || d > 3*time.Second {
		t.Errorf("backoff(1000) = %v: overflowed past MaxBackoff", d)
	}
}

func TestWebhookQueueOverflow(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newBus(t, Config{Metrics: reg})
	release := make(chan struct{})
	rc := newReceiver(t, func(n int) int {
		if n == 1 {
			<-release
		}
		return http.StatusOK
	})
	w := newWebhook(t, WebhookConfig{URL: rc.srv.URL, QueueSize: 3, BatchSize: 1, Metrics: reg})
	stop := runWebhook(t, w, b)
	b.Publish(Event{Type: WakeResult})
	waitFor(t, rc.arrived, "event 1") // in flight, out of the queue
	for range 10 {
		b.Publish(Event{Type: WakeResult}) // 2..4 queued, 5..11 dropped
	}
	if w.Dropped() != 7 {
		t.Errorf("Dropped = %d, want 7", w.Dropped())
	}
	if v := metrictest.Value(t, reg, "crrelay_events_dropped_total", "consumer", "webhook"); v != 7 {
		t.Errorf("dropped{webhook} = %v, want 7", v)
	}
	if v := metrictest.Value(t, reg, "crrelay_webhook_queue_length"); v != 4 {
		t.Errorf("queue length %v, want 4 (3 queued, 1 in flight)", v)
	}
	close(release)
	rc.waitAccepted(4)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, acc := rc.snapshot(); !slices.Equal(acc, []uint64{1, 2, 3, 4}) {
		t.Errorf("delivered %v, want 1..4", acc)
	}
	if w.Dropped() != 7 {
		t.Errorf("Dropped after Run = %d, want 7", w.Dropped())
	}
}

// TestWebhookFlush: events queued when Run's context ends are still
// delivered, after the POST in flight completes.
func TestWebhookFlush(t *testing.T) {
	b := newBus(t, Config{})
	release := make(chan struct{})
	rc := newReceiver(t, func(n int) int {
		if n == 1 {
			<-release
		}
		return http.StatusOK
	})
	w := newWebhook(t, WebhookConfig{URL: rc.srv.URL, BatchSize: 2})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, b) }()
	waitFor(t, w.subscribed, "the webhook to subscribe")
	b.Publish(Event{Type: WakeResult})
	waitFor(t, rc.arrived, "event 1")
	for range 4 {
		b.Publish(Event{Type: WakeResult}) // queued
	}
	cancel() // before the POST in flight is answered
	close(release)
	if err := waitFor(t, errc, "Run to return"); err != nil {
		t.Fatal(err)
	}
	requests, accepted := rc.snapshot()
	if !slices.Equal(accepted, []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("delivered %v (requests %v), want 1..5", accepted, requests)
	}
	if w.Dropped() != 0 {
		t.Errorf("Dropped = %d", w.Dropped())
	}
}

// TestWebhookFlushBounded: a receiver that never accepts does not hold
// shutdown past ShutdownGrace; what is left is dropped and counted.
func TestWebhookFlushBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
		})
		b := newBus(t, Config{Metrics: reg})
		w := newWebhook(t, WebhookConfig{URL: "http://acs.test/hook", BatchSize: 2, MaxAttempts: 1000,
			InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, ShutdownGrace: 3 * time.Second,
			Client: &http.Client{Transport: handlerTransport{h}}})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- w.Run(ctx, b) }()
		<-w.subscribed
		for range 5 {
			b.Publish(Event{Type: WakeResult})
		}
		time.Sleep(10 * time.Second) // retrying the first batch
		cancel()
		start := time.Now()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Run returned %v after its context ended, ShutdownGrace is 3s", d)
		}
		if w.Dropped() != 5 {
			t.Errorf("Dropped = %d, want 5", w.Dropped())
		}
		if v := metrictest.Value(t, reg, "crrelay_events_dropped_total", "consumer", "webhook"); v != 5 {
			t.Errorf("dropped{webhook} = %v, want 5", v)
		}
	})
}

func TestWebhookRunErrors(t *testing.T) {
	b := newBus(t, Config{})
	rc := newReceiver(t, nil)
	w := newWebhook(t, WebhookConfig{URL: rc.srv.URL})
	if err := w.Run(t.Context(), nil); !errors.Is(err, ErrConfig) {
		t.Errorf("Run without a Bus: %v, want ErrConfig", err)
	}
	runWebhook(t, w, b)
	if err := w.Run(t.Context(), b); !errors.Is(err, ErrWebhookRunning) {
		t.Errorf("second Run: %v, want ErrWebhookRunning", err)
	}
	closed := newBus(t, Config{})
	closed.Close()
	w2 := newWebhook(t, WebhookConfig{URL: rc.srv.URL})
	if err := w2.Run(t.Context(), closed); !errors.Is(err, ErrClosed) {
		t.Errorf("Run on a closed Bus: %v, want ErrClosed", err)
	}
}

// TestWebhookBusClose: closing the Bus ends Run after delivering what was
// queued.
func TestWebhookBusClose(t *testing.T) {
	b := newBus(t, Config{})
	rc := newReceiver(t, nil)
	w := newWebhook(t, WebhookConfig{URL: rc.srv.URL})
	errc := make(chan error, 1)
	go func() { errc <- w.Run(t.Context(), b) }()
	waitFor(t, w.subscribed, "the webhook to subscribe")
	b.Publish(Event{Type: WakeResult})
	b.Publish(Event{Type: WakeResult})
	b.Close()
	if err := waitFor(t, errc, "Run to return"); err != nil {
		t.Fatal(err)
	}
	if _, acc := rc.snapshot(); !slices.Equal(acc, []uint64{1, 2}) {
		t.Errorf("delivered %v, want 1, 2", acc)
	}
}
