package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error codes of ServeSSE's JSON error bodies; the same shape as the API's.
const (
	CodeBadRequest       = "bad_request"        // bad filter or Last-Event-ID
	CodeMethodNotAllowed = "method_not_allowed" // not a GET
	CodeUnavailable      = "unavailable"        // too many clients, or the Bus is closed
)

// sseRetry is the reconnection delay ServeSSE suggests to clients, in
// milliseconds.
const sseRetry = 2000

// maxBurst bounds how many events ServeSSE writes between flushes, so a
// busy stream still reaches the client promptly.
const maxBurst = 256

// ServeSSE streams events as Server-Sent Events (WHATWG HTML, "Server-sent
// events"). It is a GET handler; the caller adds authentication and
// routing. The query selects events as ParseFilter describes; the
// Last-Event-ID header, or else the last_event_id query parameter, resumes
// after that event. The stream and its errors are described in the package
// documentation. It returns when the client goes away, the request's
// context ends, or the Bus is closed.
func (b *Bus) ServeSSE(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "use GET")
		return
	}
	q := r.URL.Query()
	f, err := ParseFilter(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		return
	}
	after, err := lastEventID(r, q)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		return
	}
	if b.clients.Add(1) > int64(b.cfg.MaxClients) {
		b.clients.Add(-1)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "too many event stream clients")
		return
	}
	defer b.clients.Add(-1)
	sub, err := b.subscribe(f, after, b.cfg.SubscriberBuffer, consumerSSE)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "event stream closed")
		return
	}
	defer sub.Close()
	b.m.clients.Inc()
	defer b.m.clients.Dec()

	rc := http.NewResponseController(w)
	// flush sets write deadlines; without a server WriteTimeout nothing
	// would reset the last one before the connection's next request.
	defer rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	s := &sseStream{w: w, rc: rc, timeout: b.cfg.WriteTimeout}
	s.buf.WriteString("retry: " + strconv.Itoa(sseRetry) + "\n\n")
	if n, reset := sub.Missed(); n > 0 || reset {
		s.dropped(n, reset)
	}
	if err := s.flush(); err != nil {
		b.log.Debug("events: SSE stream ended", "err", err)
		return
	}
	b.log.Debug("events: SSE client connected", "remote", r.RemoteAddr, "after", after)

	hb := time.NewTicker(b.cfg.Heartbeat)
	defer hb.Stop()
	var reported uint64 // sub.Dropped() already told to the client
	ctx := r.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			s.buf.WriteString(": keepalive\n\n")
		case e, ok := <-sub.C():
			if !ok {
				return // Bus closed
			}
			s.event(&e)
		drain:
			for range maxBurst - 1 {
				select {
				case e, ok := <-sub.C():
					if !ok {
						break drain
					}
					s.event(&e)
				default:
					break drain
				}
			}
			if d := sub.Dropped(); d > reported {
				s.dropped(d-reported, false)
				reported = d
			}
		}
		if err := s.flush(); err != nil {
			b.log.Debug("events: SSE stream ended", "remote", r.RemoteAddr, "err", err)
			return
		}
	}
}

// lastEventID returns the ID to resume after: the Last-Event-ID header a
// reconnecting EventSource sends, or else the last_event_id parameter,
// for a first connection that resumes; 0 when neither is there.
func lastEventID(r *http.Request, q url.Values) (uint64, error) {
	name := "Last-Event-ID"
	v := r.Header.Get(name)
	if v == "" {
		name = "last_event_id"
		v = q.Get(name)
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, errors.New(name + " must be an event id (a decimal number)")
	}
	return id, nil
}

// sseStream buffers a burst of messages and writes it in one Write.
type sseStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
}

func (s *sseStream) event(e *Event) {
	s.buf.WriteString("id: ")
	s.buf.WriteString(strconv.FormatUint(e.ID, 10))
	s.buf.WriteString("\nevent: ")
	s.buf.WriteString(e.Type)
	s.buf.WriteString("\ndata: ")
	s.buf.Write(encode(e))
	s.buf.WriteString("\n\n")
}

// dropped tells the client n events were lost. It carries no id, so the
// client's Last-Event-ID stays that of the last event it received.
func (s *sseStream) dropped(n uint64, reset bool) {
	s.buf.WriteString(`event: dropped` + "\n" + `data: {"dropped":`)
	s.buf.WriteString(strconv.FormatUint(n, 10))
	if reset {
		s.buf.WriteString(`,"reset":true`)
	}
	s.buf.WriteString("}\n\n")
}

// flush writes the burst and pushes it to the client.
func (s *sseStream) flush() error {
	// Each write gets its own deadline: a stream outlives any server
	// WriteTimeout, but a client that stops reading must not hold a slot.
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	s.buf.Reset()
	return s.rc.Flush()
}

// writeError answers with the JSON error body
// {"error":{"code":"...","message":"..."}}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	type detail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	body, _ := json.Marshal(struct {
		Error detail `json:"error"`
	}{detail{code, msg}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
