package events

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitLimit bounds every wait for something that must happen, so a bug
// fails the test instead of hanging it. Tests never sleep to wait.
const waitLimit = 10 * time.Second

func newBus(t testing.TB, cfg Config) *Bus {
	t.Helper()
	b, err := NewBus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// sseMsg is one Server-Sent Events message as a client parses it; a
// comment block ends up in comments alone.
type sseMsg struct {
	id, event, data, retry string
	comments               []string
}

// readSSE parses an event stream (WHATWG HTML 9.2.6, "Interpreting an
// event stream") into messages, one per block ended by a blank line. The
// channel is closed at the end of the stream.
func readSSE(r io.Reader) <-chan sseMsg {
	ch := make(chan sseMsg, 1024)
	go func() {
		defer close(ch)
		br := bufio.NewReader(r)
		var m sseMsg
		var data []string
		empty := true
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			if line == "" {
				if !empty {
					m.data = strings.Join(data, "\n")
					ch <- m
				}
				m, data, empty = sseMsg{}, nil, true
				continue
			}
			empty = false
			if c, ok := strings.CutPrefix(line, ":"); ok {
				m.comments = append(m.comments, strings.TrimPrefix(c, " "))
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				m.id = value
			case "event":
				m.event = value
			case "data":
				data = append(data, value)
			case "retry":
				m.retry = value
			}
		}
	}()
	return ch
}

// next returns the next message, failing the test if the stream ends or
// nothing comes.
func next(t testing.TB, ch <-chan sseMsg) sseMsg {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("event stream ended")
		}
		return m
	case <-time.After(waitLimit):
		t.Fatal("no SSE message")
	}
	return sseMsg{}
}

// nextEvent skips keepalives and returns the next message with an event
// name.
func nextEvent(t testing.TB, ch <-chan sseMsg) sseMsg {
	t.Helper()
	for {
		if m := next(t, ch); m.event != "" {
			return m
		}
	}
}

// expectEnd waits for the stream to end.
func expectEnd(t testing.TB, ch <-chan sseMsg) {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("event stream did not end")
		}
	}
}

// openSSE serves bus on a loopback server and connects to it with query
// and Last-Event-ID lastID (if not empty). It returns the response, whose
// body the test's cleanup closes, and its messages; the first message,
// "retry", has been read, so the client is subscribed.
func openSSE(t testing.TB, srv *httptest.Server, query, lastID string) (*http.Response, <-chan sseMsg) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/events?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	ch := readSSE(resp.Body)
	if m := next(t, ch); m.retry != "2000" {
		t.Fatalf("first message %+v, want retry: 2000", m)
	}
	return resp, ch
}

func serveBus(t testing.TB, b *Bus) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(b.ServeSSE))
	t.Cleanup(srv.Close)
	return srv
}

// gateWriter is an http.ResponseWriter and http.Flusher whose write number
// blockAt waits for release; every write's bytes go to writes.
type gateWriter struct {
	header  http.Header
	writes  chan []byte
	blockAt int
	blocked chan struct{}
	release chan struct{}

	mu sync.Mutex
	n  int
}

func newGateWriter(blockAt int) *gateWriter {
	return &gateWriter{
		header:  make(http.Header),
		writes:  make(chan []byte, 100),
		blockAt: blockAt,
		blocked: make(chan struct{}),
		release: make(chan struct{}),
	}
}

func (w *gateWriter) Header() http.Header { return w.header }
func (w *gateWriter) WriteHeader(int)     {}
func (w *gateWriter) Flush()              {}

func (w *gateWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.n++
	n := w.n
	w.mu.Unlock()
	if n == w.blockAt {
		close(w.blocked)
		<-w.release
	}
	w.writes <- bytes.Clone(p)
	return len(p), nil
}

// handlerTransport answers requests with h in the calling goroutine: an
// HTTP round trip without sockets, for tests in a synctest bubble.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// waitFor receives from ch or fails the test.
func waitFor[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}
