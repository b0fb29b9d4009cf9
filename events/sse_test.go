package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/crrelay/crrelay/internal/metrictest"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSSEStream(t *testing.T) {
	b := newBus(t, Config{Heartbeat: time.Hour})
	srv := serveBus(t, b)
	resp, msgs := openSSE(t, srv, "type=wake&device=d1,d2", "")
	for name, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}

	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	e1 := b.Publish(Event{Type: WakeResult, Device: "d1", At: at, Data: json.RawMessage(`{"transport":"udp"}`)})
	b.Publish(Event{Type: XMPPOnline, Device: "d1"}) // other type
	b.Publish(Event{Type: WakeResult, Device: "d9"}) // other device
	e4 := b.Publish(New(WakeConfirmed, "d2", nil))

	m := next(t, msgs)
	want := sseMsg{id: "1", event: "wake.result",
		data: `{"id":1,"type":"wake.result","at":"2025-01-02T03:04:05Z","device":"d1","data":{"transport":"udp"}}`}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("message\n%+v\nwant\n%+v", m, want)
	}
	var got Event
	if err := json.Unmarshal([]byte(m.data), &got); err != nil || got.ID != e1.ID || string(got.Data) != string(e1.Data) {
		t.Errorf("data %s decodes to %+v (%v)", m.data, got, err)
	}
	if m := next(t, msgs); m.id != "4" || m.event != WakeConfirmed || !strings.Contains(m.data, `"device":"d2"`) {
		t.Errorf("second message %+v, want event %d", m, e4.ID)
	}
}

func TestSSEResume(t *testing.T) {
	for _, tc := range []struct {
		name        string
		query       string
		header      string
		wantDropped string // data of the dropped message first, if any
		wantIDs     []string
	}{
		{"no ID: live only", "", "", "", []string{"9"}},
		{"Last-Event-ID", "", "6", "", []string{"7", "8", "9"}},
		{"query parameter", "last_event_id=7", "", "", []string{"8", "9"}},
		{"header wins", "last_event_id=2", "7", "", []string{"8", "9"}},
		{"with a filter", "type=xmpp.online&last_event_id=4", "", "", []string{"6", "8", "9"}},
		{"older than history", "", "2", `{"dropped":1}`, []string{"4", "5", "6", "7", "8", "9"}},
		{"from an earlier run", "", "500", `{"dropped":3,"reset":true}`, []string{"4", "5", "6", "7", "8", "9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t, Config{History: 5, Heartbeat: time.Hour})
			for i := range 8 { // history: 4..8
				typ := WakeResult
				if i%2 == 1 {
					typ = XMPPOnline
				}
				b.Publish(Event{Type: typ})
			}
			srv := serveBus(t, b)
			_, msgs := openSSE(t, srv, tc.query, tc.header)
			b.Publish(Event{Type: XMPPOnline}) // 9, live
			if tc.wantDropped != "" {
				if m := next(t, msgs); m.event != "dropped" || m.data != tc.wantDropped || m.id != "" {
					t.Errorf("got %+v, want a dropped message %s without id", m, tc.wantDropped)
				}
			}
			for _, id := range tc.wantIDs {
				if m := next(t, msgs); m.id != id {
					t.Fatalf("got %+v, want id %s", m, id)
				}
			}
		})
	}
}

func TestSSEHeartbeat(t *testing.T) {
	b := newBus(t, Config{Heartbeat: 5 * time.Millisecond})
	_, msgs := openSSE(t, serveBus(t, b), "", "")
	for range 3 {
		if m := next(t, msgs); len(m.comments) != 1 || m.comments[0] != "keepalive" || m.event != "" || m.data != "" {
			t.Fatalf("got %+v, want a keepalive comment", m)
		}
	}
}

// TestSSEOutlivesServerTimeouts: the API's http.Server has a ReadTimeout
// and may get a WriteTimeout; neither may end a stream.
func TestSSEOutlivesServerTimeouts(t *testing.T) {
	b := newBus(t, Config{Heartbeat: 10 * time.Millisecond})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(b.ServeSSE))
	srv.Config.ReadTimeout = 30 * time.Millisecond
	srv.Config.WriteTimeout = 30 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	_, msgs := openSSE(t, srv, "", "")
	start := time.Now()
	for time.Since(start) < 5*srv.Config.WriteTimeout {
		next(t, msgs) // keepalives
	}
	b.Publish(Event{Type: WakeResult})
	if m := nextEvent(t, msgs); m.id != "1" {
		t.Errorf("got %+v, want event 1", m)
	}
}

func TestSSEErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		method     string
		query      string
		header     string
		wantStatus int
		wantCode   string
	}{
		{"unknown type", "GET", "type=wake.sent", "", 400, CodeBadRequest},
		{"two campaigns", "GET", "campaign=a&campaign=b", "", 400, CodeBadRequest},
		{"bad Last-Event-ID", "GET", "", "abc", 400, CodeBadRequest},
		{"negative last_event_id", "GET", "last_event_id=-1", "", 400, CodeBadRequest},
		{"POST", "POST", "", "", 405, CodeMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t, Config{})
			srv := serveBus(t, b)
			req, _ := http.NewRequest(tc.method, srv.URL+"/v1/events?"+tc.query, nil)
			if tc.header != "" {
				req.Header.Set("Last-Event-ID", tc.header)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			checkErrorBody(t, resp, tc.wantStatus, tc.wantCode)
		})
	}
}

// checkErrorBody checks resp is a JSON error
// {"error":{"code":...,"message":...}} and nothing else.
func checkErrorBody(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d", resp.StatusCode, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(resp.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("body: %v", err)
	}
	if body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("error %+v, want code %s and a message", body.Error, code)
	}
}

func TestSSEClientLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newBus(t, Config{MaxClients: 2, Metrics: reg})
	srv := serveBus(t, b)
	openSSE(t, srv, "", "")
	openSSE(t, srv, "type=xmpp", "")
	if v := metrictest.Value(t, reg, "crrelay_events_sse_clients"); v != 2 {
		t.Errorf("crrelay_events_sse_clients = %v, want 2", v)
	}
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" {
		t.Error("503 without Retry-After")
	}
	checkErrorBody(t, resp, http.StatusServiceUnavailable, CodeUnavailable)
}

func TestSSECloseEndsHandlers(t *testing.T) {
	b := newBus(t, Config{Heartbeat: time.Hour})
	srv := serveBus(t, b)
	_, msgs1 := openSSE(t, srv, "", "")
	_, msgs2 := openSSE(t, srv, "type=wake", "5")
	b.Close()
	expectEnd(t, msgs1)
	expectEnd(t, msgs2)
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	checkErrorBody(t, resp, http.StatusServiceUnavailable, CodeUnavailable)
}

// TestSSEDropped holds a client's stream still while events overflow its
// buffer, and checks it is told how many it lost.
func TestSSEDropped(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newBus(t, Config{SubscriberBuffer: 4, Heartbeat: time.Hour, Metrics: reg})
	w := newGateWriter(2) // write 1: "retry"; write 2: event 1, held
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/events", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.ServeSSE(w, req)
	}()
	var out bytes.Buffer
	out.Write(waitFor(t, w.writes, "the stream's start")) // subscribed
	b.Publish(Event{Type: WakeResult})
	waitFor(t, w.blocked, "the write of event 1")
	for range 10 {
		b.Publish(Event{Type: WakeResult}) // 2..5 fit the buffer, 6..11 do not
	}
	close(w.release)
	out.Write(waitFor(t, w.writes, "event 1"))
	out.Write(waitFor(t, w.writes, "events 2 to 5"))
	b.Publish(Event{Type: WakeResult}) // 12: the stream goes on
	out.Write(waitFor(t, w.writes, "event 12"))
	cancel()
	waitFor(t, done, "ServeSSE to return")

	var got []string
	for m := range readSSE(&out) {
		got = append(got, fmt.Sprintf("id=%s event=%s", m.id, m.event))
		if m.event == "dropped" && m.data != `{"dropped":6}` {
			t.Errorf("dropped data %s, want {\"dropped\":6}", m.data)
		}
	}
	want := []string{"id= event=", // retry
		"id=1 event=wake.result", "id=2 event=wake.result", "id=3 event=wake.result",
		"id=4 event=wake.result", "id=5 event=wake.result", "id= event=dropped", "id=12 event=wake.result"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stream:\n%s\nwant\n%s\nraw:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), out.String())
	}
	if v := metrictest.Value(t, reg, "crrelay_events_dropped_total", "consumer", "sse"); v != 6 {
		t.Errorf("crrelay_events_dropped_total{consumer=sse} = %v, want 6", v)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) != 0 {
		t.Errorf("%d subscriptions left after the handler returned", len(b.subs))
	}
}

// TestSSEWrappedWriter: a middleware's ResponseWriter that only offers
// Unwrap still streams (http.ResponseController finds the Flusher).
func TestSSEWrappedWriter(t *testing.T) {
	b := newBus(t, Config{Heartbeat: time.Hour})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.ServeSSE(unwrapper{w}, r)
	}))
	t.Cleanup(srv.Close)
	_, msgs := openSSE(t, srv, "", "")
	b.Publish(Event{Type: CampaignDone, Campaign: "c"})
	if m := next(t, msgs); m.event != CampaignDone {
		t.Errorf("got %+v", m)
	}
}

type unwrapper struct{ w http.ResponseWriter }

func (u unwrapper) Header() http.Header         { return u.w.Header() }
func (u unwrapper) Write(p []byte) (int, error) { return u.w.Write(p) }
func (u unwrapper) WriteHeader(code int)        { u.w.WriteHeader(code) }
func (u unwrapper) Unwrap() http.ResponseWriter { return u.w }
