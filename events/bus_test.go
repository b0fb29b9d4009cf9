package events

import (
	"errors"
	"fmt"
	"github.com/crrelay/crrelay/internal/metrictest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNewBusConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"zero", Config{}, nil},
		{"negative history", Config{History: -1}, ErrConfig},
		{"negative buffer", Config{SubscriberBuffer: -1}, ErrConfig},
		{"negative clients", Config{MaxClients: -1}, ErrConfig},
		{"negative heartbeat", Config{Heartbeat: -time.Second}, ErrConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewBus(tc.cfg); !errors.Is(err, tc.want) {
				t.Errorf("NewBus: %v, want %v", err, tc.want)
			}
		})
	}
	b := newBus(t, Config{})
	if b.cfg.History != 4096 || b.cfg.SubscriberBuffer != 1024 || b.cfg.MaxClients != 256 ||
		b.cfg.Heartbeat != 15*time.Second || b.cfg.WriteTimeout != 10*time.Second {
		t.Errorf("defaults: %+v", b.cfg)
	}
}

func TestNewBusSharesMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	b1 := newBus(t, Config{Metrics: reg})
	b2 := newBus(t, Config{Metrics: reg})
	b1.Publish(Event{Type: WakeResult})
	b2.Publish(Event{Type: WakeResult})
	b2.Publish(Event{Type: "sim.tick"})
	if v := metrictest.Value(t, reg, "crrelay_events_published_total", "type", WakeResult); v != 2 {
		t.Errorf("published{wake.result} = %v, want 2", v)
	}
	if v := metrictest.Value(t, reg, "crrelay_events_published_total", "type", "other"); v != 1 {
		t.Errorf("published{other} = %v, want 1", v)
	}
}

func TestPublishNumbers(t *testing.T) {
	b := newBus(t, Config{})
	before := time.Now()
	e1 := b.Publish(New(WakeResult, "d", nil))
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("CEST", 2*3600))
	e2 := b.Publish(Event{Type: WakeResult, At: at})
	if e1.ID != 1 || e2.ID != 2 {
		t.Errorf("IDs %d, %d; want 1, 2", e1.ID, e2.ID)
	}
	if e1.At.Location() != time.UTC || e1.At.Before(before.Add(-time.Second)) || e1.At.After(time.Now()) {
		t.Errorf("At = %v, want now in UTC", e1.At)
	}
	if !e2.At.Equal(at) || e2.At.Location() != time.UTC {
		t.Errorf("At = %v, want %v in UTC", e2.At, at)
	}
}

func TestSubscribeFilters(t *testing.T) {
	published := []Event{
		{Type: BindingNew, Device: "d1"},                 // 1
		{Type: XMPPOnline, Device: "d2"},                 // 2
		{Type: WakeResult, Device: "d1"},                 // 3
		{Type: WakeConfirmed, Device: "d1"},              // 4
		{Type: CampaignProgress, Campaign: "c1"},         // 5
		{Type: WakeResult, Device: "d3", Campaign: "c1"}, // 6
		{Type: XMPPOffline, Device: "d2"},                // 7
		{Type: CampaignDone, Campaign: "c1"},             // 8
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"all", Filter{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"type", Filter{Types: []string{WakeResult}}, []uint64{3, 6}},
		{"family", Filter{Types: []string{"xmpp"}}, []uint64{2, 7}},
		{"families", Filter{Types: []string{"binding.", "campaign"}}, []uint64{1, 5, 8}},
		{"device", Filter{Devices: []string{"d1"}}, []uint64{1, 3, 4}},
		{"devices and family", Filter{Types: []string{"wake"}, Devices: []string{"d1", "d3"}}, []uint64{3, 4, 6}},
		{"campaign", Filter{Campaign: "c1"}, []uint64{5, 6, 8}},
		{"nothing", Filter{Devices: []string{"d9"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t, Config{})
			s, err := b.Subscribe(tc.f, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, e := range published {
				b.Publish(e)
			}
			// Publish delivers before it returns: what matched is buffered.
			var got []uint64
			for len(s.C()) > 0 {
				got = append(got, (<-s.C()).ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSubscriptionClose(t *testing.T) {
	b := newBus(t, Config{})
	s1, _ := b.Subscribe(Filter{}, 0)
	s2, _ := b.Subscribe(Filter{}, 0)
	s1.Close()
	s1.Close() // idempotent
	b.Publish(Event{Type: WakeResult})
	if _, ok := <-s1.C(); ok {
		t.Error("closed subscription received an event")
	}
	if e := <-s2.C(); e.ID != 1 {
		t.Errorf("s2 got %+v", e)
	}
	b.Close()
	if _, ok := <-s2.C(); ok {
		t.Error("Bus.Close left a subscription open")
	}
	s2.Close() // after Bus.Close: no panic
	b.Close()
	if _, err := b.Subscribe(Filter{}, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if e := b.Publish(Event{Type: WakeResult}); e.ID != 2 {
		t.Errorf("Publish after Close numbered %d, want 2", e.ID)
	}
}

func TestSlowSubscriberDrops(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newBus(t, Config{SubscriberBuffer: 3, Metrics: reg})
	slow, _ := b.Subscribe(Filter{}, 0)
	other, _ := b.Subscribe(Filter{Types: []string{"xmpp"}}, 0) // matches nothing: loses nothing
	for range 10 {
		b.Publish(Event{Type: WakeResult})
	}
	if got := slow.Dropped(); got != 7 {
		t.Errorf("Dropped = %d, want 7", got)
	}
	if got := other.Dropped(); got != 0 {
		t.Errorf("Dropped of the non-matching subscriber = %d, want 0", got)
	}
	// The buffer kept the oldest; the publisher was never held up.
	for want := uint64(1); want <= 3; want++ {
		if e := <-slow.C(); e.ID != want {
			t.Errorf("got ID %d, want %d", e.ID, want)
		}
	}
	b.Publish(Event{Type: WakeResult})
	if e := <-slow.C(); e.ID != 11 || slow.Dropped() != 7 {
		t.Errorf("after draining: got ID %d, dropped %d; want 11, 7", e.ID, slow.Dropped())
	}
	if v := metrictest.Value(t, reg, "crrelay_events_dropped_total", "consumer", "other"); v != 7 {
		t.Errorf("crrelay_events_dropped_total{consumer=other} = %v, want 7", v)
	}
}

func TestReplay(t *testing.T) {
	// History 5 after 8 events holds 4..8.
	for _, tc := range []struct {
		name      string
		f         Filter
		after     uint64
		want      []uint64
		missed    uint64
		wantReset bool
	}{
		{"live only", Filter{}, 0, nil, 0, false},
		{"within history", Filter{}, 5, []uint64{6, 7, 8}, 0, false},
		{"oldest kept", Filter{}, 3, []uint64{4, 5, 6, 7, 8}, 0, false},
		{"up to date", Filter{}, 8, nil, 0, false},
		{"older than history", Filter{}, 1, []uint64{4, 5, 6, 7, 8}, 2, false},
		{"filtered", Filter{Types: []string{XMPPOnline}}, 4, []uint64{6, 8}, 0, false},
		{"filtered, gap", Filter{Types: []string{XMPPOnline}}, 1, []uint64{4, 6, 8}, 2, false},
		{"from an earlier run", Filter{}, 1000, []uint64{4, 5, 6, 7, 8}, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t, Config{History: 5, SubscriberBuffer: 2})
			for i := range 8 {
				typ := WakeResult
				if i%2 == 1 {
					typ = XMPPOnline // even IDs
				}
				b.Publish(Event{Type: typ})
			}
			s, err := b.Subscribe(tc.f, tc.after)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			b.Publish(Event{Type: XMPPOnline}) // 9: live, after the replay
			var got []uint64
			for len(s.C()) > 0 {
				got = append(got, (<-s.C()).ID)
			}
			want := append(tc.want, 9)
			if !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
			if n, reset := s.Missed(); n != tc.missed || reset != tc.wantReset {
				t.Errorf("Missed = %d, %v; want %d, %v", n, reset, tc.missed, tc.wantReset)
			}
			if s.Dropped() != 0 {
				t.Errorf("Dropped = %d: the replay must fit", s.Dropped())
			}
		})
	}
}

// TestReplayConcurrent subscribes with Last-Event-ID while four goroutines
// publish, across many replay chunks: each subscriber must see every
// matching event after its ID exactly once, in order.
func TestReplayConcurrent(t *testing.T) {
	const publishers, perPublisher = 4, 2000
	const total = publishers * perPublisher
	b := newBus(t, Config{History: total, SubscriberBuffer: total})
	filters := []Filter{{}, {Types: []string{WakeResult}}, {Types: []string{"xmpp"}, Devices: []string{"d1"}}}

	type joined struct {
		f     Filter
		after uint64
		got   chan []Event
	}
	var (
		mu    sync.Mutex
		joins []joined
		subWG sync.WaitGroup
	)
	join := func(f Filter, after uint64) {
		s, err := b.Subscribe(f, after)
		if err != nil {
			t.Error(err)
			return
		}
		j := joined{f, after, make(chan []Event, 1)}
		mu.Lock()
		joins = append(joins, j)
		mu.Unlock()
		subWG.Go(func() {
			var got []Event
			for e := range s.C() { // until Bus.Close
				got = append(got, e)
			}
			j.got <- got
			if s.Dropped() != 0 {
				t.Errorf("subscriber dropped %d", s.Dropped())
			}
			if n, reset := s.Missed(); n != 0 || reset {
				t.Errorf("Missed = %d, %v", n, reset)
			}
		})
	}

	var pubWG sync.WaitGroup
	for p := range publishers {
		pubWG.Go(func() {
			types := []string{WakeResult, XMPPOnline, XMPPOffline}
			for i := range perPublisher {
				e := b.Publish(Event{Type: types[i%3], Device: fmt.Sprintf("d%d", i%2)})
				// Publishers subscribe now and then, resuming from a
				// few hundred events (a few replay chunks) back.
				if i%200 == 199 {
					join(filters[(p+i/200)%len(filters)], max(e.ID, 701)-700)
				}
			}
		})
	}
	pubWG.Wait()
	b.Close()
	subWG.Wait()

	// Every event is in history: the expected sequence is read from it.
	if len(joins) != publishers*perPublisher/200 {
		t.Fatalf("%d subscribers joined, want %d", len(joins), publishers*perPublisher/200)
	}
	for _, j := range joins {
		m := compile(j.f)
		var want []uint64
		for id := j.after + 1; id <= total; id++ {
			e := b.ring[(id-1)%uint64(len(b.ring))]
			if e.ID != id {
				t.Fatalf("history holds %d at the place of %d", e.ID, id)
			}
			if m.match(&e, typeIndex(e.Type)) {
				want = append(want, id)
			}
		}
		var got []uint64
		for _, e := range <-j.got {
			got = append(got, e.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("filter %+v after %d: got %d events, want %d; first difference at %d",
				j.f, j.after, len(got), len(want), firstDiff(got, want))
		}
	}
}

func firstDiff(a, b []uint64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// BenchmarkPublish measures the hot path: with no subscribers; with four
// drained by goroutines (on few CPUs they cannot keep up, and dropped/op
// shows how often the cheaper drop path ran); with four whose buffers always
// have room (pure delivery: the benchmark drains them with the timer
// stopped); with four that filter the event out; and from parallel
// publishers.
func BenchmarkPublish(b *testing.B) {
	e := New(WakeResult, "00D09E-CPE-000001", map[string]any{"transport": "udp", "ok": true})
	const deliveredBuffer = 1 << 14
	for _, tc := range []struct {
		name string
		subs int
		f    Filter
		mode string // "drained", "delivered", "parallel"
	}{
		{"subscribers=0", 0, Filter{}, "drained"},
		{"subscribers=4", 4, Filter{}, "drained"},
		{"subscribers=4/delivered", 4, Filter{}, "delivered"},
		{"subscribers=4/filtered-out", 4, Filter{Types: []string{"xmpp"}}, "drained"},
		{"subscribers=4/parallel", 4, Filter{}, "parallel"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := Config{Metrics: prometheus.NewRegistry()}
			if tc.mode == "delivered" {
				cfg.SubscriberBuffer = deliveredBuffer
			}
			bus := newBus(b, cfg)
			var wg sync.WaitGroup
			var subs []*Subscription
			for range tc.subs {
				s, err := bus.Subscribe(tc.f, 0)
				if err != nil {
					b.Fatal(err)
				}
				subs = append(subs, s)
				if tc.mode != "delivered" {
					wg.Go(func() {
						for range s.C() {
						}
					})
				}
			}
			// Warm up: touch the history ring and the channel buffers
			// once, so that short runs (-benchtime=2000x) do not
			// measure page faults.
			drain := func() { // only where no goroutine drains
				for _, s := range subs {
					for len(s.C()) > 0 {
						<-s.C()
					}
				}
			}
			for range max(bus.cfg.History, bus.cfg.SubscriberBuffer) {
				bus.Publish(e)
			}
			if tc.mode == "delivered" {
				drain()
			}
			var warmDropped uint64
			for _, s := range subs {
				warmDropped += s.Dropped()
			}
			b.ReportAllocs()
			b.ResetTimer()
			switch tc.mode {
			case "parallel":
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						bus.Publish(e)
					}
				})
			case "delivered":
				for i := range b.N {
					if i%deliveredBuffer == deliveredBuffer-1 {
						b.StopTimer()
						drain()
						b.StartTimer()
					}
					bus.Publish(e)
				}
			default:
				for b.Loop() {
					bus.Publish(e)
				}
			}
			b.StopTimer()
			var dropped uint64
			for _, s := range subs {
				dropped += s.Dropped()
			}
			dropped -= warmDropped
			b.ReportMetric(float64(dropped)/float64(b.N), "dropped/op")
			bus.Close()
			wg.Wait()
		})
	}
}
