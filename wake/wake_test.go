package wake

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/crrelay/crrelay/registry"
)

type fakeDevices struct {
	mu   sync.Mutex
	devs map[string]registry.Device
	recs []registry.WakeRecord
	live map[string]*registry.Live
}

func (f *fakeDevices) Get(id string) (registry.Device, bool) { d, ok := f.devs[id]; return d, ok }
func (f *fakeDevices) RecordWake(id string, w registry.WakeRecord) {
	f.mu.Lock()
	f.recs = append(f.recs, w)
	f.mu.Unlock()
	f.UpdateLive(id, func(l *registry.Live) { l.Wakes = append(l.Wakes, w) })
}
func (f *fakeDevices) UpdateLive(id string, fn func(*registry.Live)) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.devs[id]; !ok {
		return false
	}
	if f.live == nil {
		f.live = map[string]*registry.Live{}
	}
	l := f.live[id]
	if l == nil {
		l = &registry.Live{}
		f.live[id] = l
	}
	fn(l)
	return true
}

// scripted answers with a fixed status, or waits for the deadline.
type scripted struct {
	status Status
	block  bool
	calls  int
}

func (s *scripted) Usable(registry.Device) (bool, string) { return true, "" }
func (s *scripted) Wake(ctx context.Context, _ registry.Device) Attempt {
	s.calls++
	if s.block {
		<-ctx.Done()
		return Attempt{Status: Timeout, Detail: "no answer"}
	}
	return Attempt{Status: s.status, Detail: string(s.status)}
}

type unusable struct{}

func (unusable) Usable(registry.Device) (bool, string) { return false, "no binding" }
func (unusable) Wake(context.Context, registry.Device) Attempt {
	panic("Wake called on an unusable transport")
}

func newWaker(t *testing.T, tr map[registry.Transport]Transport, dev registry.Device) (*Waker, *fakeDevices) {
	t.Helper()
	devs := &fakeDevices{devs: map[string]registry.Device{dev.ID: dev}}
	w, err := New(Config{Devices: devs, Transports: tr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return w, devs
}

func TestFallbackAndOrder(t *testing.T) {
	cases := []struct {
		name       string
		order      []registry.Transport
		udp, http  Status
		wantStatus Status
		wantVia    registry.Transport
		wantCalls  [2]int // udp, http
	}{
		{"first wins", []registry.Transport{"udp", "http"}, Sent, Delivered, Sent, "udp", [2]int{1, 0}},
		{"falls back", []registry.Transport{"udp", "http"}, Error, Delivered, Delivered, "http", [2]int{1, 1}},
		{"all fail: last reported", []registry.Transport{"http", "udp"}, Unreachable, AuthFailed, Unreachable, "udp", [2]int{1, 1}},
		{"request restricts", []registry.Transport{"http"}, Sent, Throttled, Throttled, "http", [2]int{0, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, h := &scripted{status: c.udp}, &scripted{status: c.http}
			w, devs := newWaker(t, map[registry.Transport]Transport{"udp": u, "http": h}, registry.Device{ID: "d"})
			res, err := w.Wake(context.Background(), "d", Request{Transports: c.order})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != c.wantStatus || res.Transport != c.wantVia || u.calls != c.wantCalls[0] || h.calls != c.wantCalls[1] {
				t.Fatalf("got %s via %s, calls %d/%d", res.Status, res.Transport, u.calls, h.calls)
			}
			if len(devs.recs) != 1 || devs.recs[0].Status != string(c.wantStatus) {
				t.Fatalf("recorded %+v", devs.recs)
			}
		})
	}
}

func TestDeviceOrderAndUnusable(t *testing.T) {
	h := &scripted{status: Delivered}
	dev := registry.Device{ID: "d", Transports: []registry.Transport{"xmpp", "udp", "http"}}
	w, _ := newWaker(t, map[registry.Transport]Transport{"udp": unusable{}, "http": h}, dev)
	res, err := w.Wake(context.Background(), "d", Request{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != Delivered || len(res.Attempts) != 3 || res.Attempts[0].Transport != "http" ||
		res.Attempts[1].Status != Offline || res.Attempts[2].Detail != "no binding" {
		t.Fatalf("%+v", res)
	}
	// Nothing usable at all: offline, with the reason of a transport that
	// runs here rather than "not enabled".
	w2, devs := newWaker(t, map[registry.Transport]Transport{"udp": unusable{}}, registry.Device{ID: "d"})
	res, _ = w2.Wake(context.Background(), "d", Request{Transports: []registry.Transport{"xmpp", "udp"}})
	if res.Status != Offline || res.Transport != "" || len(res.Attempts) != 2 || devs.recs[0].Detail != "no binding" {
		t.Fatalf("%+v %+v", res, devs.recs)
	}
}

func TestDeadline(t *testing.T) {
	h := &scripted{block: true}
	w, _ := newWaker(t, map[registry.Transport]Transport{"http": h}, registry.Device{ID: "d"})
	start := time.Now()
	res, err := w.Wake(context.Background(), "d", Request{Timeout: 20 * time.Millisecond, Transports: []registry.Transport{"http"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != Timeout || time.Since(start) > 5*time.Second {
		t.Fatalf("%+v after %v", res, time.Since(start))
	}
}

func TestRequestErrors(t *testing.T) {
	w, _ := newWaker(t, nil, registry.Device{ID: "d"})
	for name, c := range map[string]struct {
		id   string
		req  Request
		want error
	}{
		"unknown device":    {"nope", Request{}, ErrNotFound},
		"unknown transport": {"d", Request{Transports: []registry.Transport{"sms"}}, ErrUnknownTransport},
		"duplicate":         {"d", Request{Transports: []registry.Transport{"http", "http"}}, ErrUnknownTransport},
		"negative timeout":  {"d", Request{Timeout: -1}, ErrBadTimeout},
		"huge timeout":      {"d", Request{Timeout: time.Hour}, ErrBadTimeout},
	} {
		if _, err := w.Wake(context.Background(), c.id, c.req); !errors.Is(err, c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("config without Devices accepted")
	}
	if _, err := New(Config{Devices: &fakeDevices{}, Default: []registry.Transport{"fax"}}); !errors.Is(err, ErrUnknownTransport) {
		t.Errorf("bad default order: %v", err)
	}
}
