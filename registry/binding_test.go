package registry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var (
	relayA = netip.MustParseAddrPort("198.51.100.1:3478")
	relayB = netip.MustParseAddrPort("[2001:db8:ffff::1]:3478")
	natA   = netip.MustParseAddrPort("203.0.113.7:51234")
	natB   = netip.MustParseAddrPort("203.0.113.7:40000")
	natC   = netip.MustParseAddrPort("203.0.113.99:40000")
	t0     = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
)

func mustObserve(t testing.TB, r *Registry, o BindingObservation) BindingResult {
	t.Helper()
	res, err := r.ObserveBinding(o)
	if err != nil {
		t.Fatalf("ObserveBinding(%+v): %v", o, err)
	}
	return res
}

func mustBinding(t testing.TB, r *Registry, id string) UDPBinding {
	t.Helper()
	b, ok := r.Binding(id)
	if !ok {
		t.Fatalf("Binding(%s): none", id)
	}
	return b
}

// at is t0 plus s seconds.
func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestObserveBinding(t *testing.T) {
	r := open(t, newMemStore())
	d := mustPut(t, r, testDevice(1))
	u := d.STUNUsername
	steps := []struct {
		name    string
		o       BindingObservation
		want    BindingOutcome
		changes int
		check   func(t *testing.T, b UDPBinding)
	}{
		{"first request", BindingObservation{STUNUsername: u, Mapped: natA, Local: relayA, At: at(0)}, BindingNew, 0,
			func(t *testing.T, b UDPBinding) {
				if b.Mapped != natA || b.Local != relayA || !b.FirstSeen.Equal(at(0)) || !b.LastSeen.Equal(at(0)) ||
					b.Keepalive != 0 || b.PrevMapped.IsValid() || !b.LastChange.IsZero() || b.Restored {
					t.Errorf("new binding %+v", b)
				}
			}},
		{"keepalive", BindingObservation{STUNUsername: u, Mapped: natA, Local: relayA, At: at(20)}, BindingRefreshed, 0,
			func(t *testing.T, b UDPBinding) {
				if !b.LastSeen.Equal(at(20)) || !b.FirstSeen.Equal(at(0)) || b.Keepalive != 20*time.Second || b.SurvivedGap != 20*time.Second {
					t.Errorf("refreshed binding %+v", b)
				}
			}},
		{"retransmission is no keepalive sample", BindingObservation{STUNUsername: u, Mapped: natA, Local: relayA, At: at(20.3)}, BindingRefreshed, 0,
			func(t *testing.T, b UDPBinding) {
				if b.Keepalive != 20*time.Second {
					t.Errorf("Keepalive = %v after a 0.3s gap, want 20s", b.Keepalive)
				}
			}},
		{"mapped address changes", BindingObservation{STUNUsername: u, Mapped: natB, Local: relayA, At: at(40)}, BindingChanged, 1,
			func(t *testing.T, b UDPBinding) {
				if b.Mapped != natB || b.PrevMapped != natA || !b.LastChange.Equal(at(40)) || b.SurvivedGap != 0 {
					t.Errorf("changed binding %+v", b)
				}
			}},
		{"BINDING-CHANGE confirming it is not counted again", BindingObservation{STUNUsername: u, Mapped: natB, Local: relayA, At: at(40.2), BindingChange: true}, BindingRefreshed, 1, nil},
		{"its retransmission neither", BindingObservation{STUNUsername: u, Mapped: natB, Local: relayA, At: at(40.4), BindingChange: true}, BindingRefreshed, 1, nil},
		{"keepalive on the new mapping", BindingObservation{STUNUsername: u, Mapped: natB, Local: relayA, At: at(60)}, BindingRefreshed, 1, nil},
		{"BINDING-CHANGE we did not see", BindingObservation{STUNUsername: u, Mapped: natB, Local: relayA, At: at(80), BindingChange: true}, BindingChanged, 2,
			func(t *testing.T, b UDPBinding) {
				if !b.LastChange.Equal(at(80)) || b.Mapped != natB {
					t.Errorf("after BINDING-CHANGE %+v", b)
				}
			}},
		{"changed mapping with BINDING-CHANGE counts once", BindingObservation{STUNUsername: u, Mapped: natC, Local: relayA, At: at(100), BindingChange: true}, BindingChanged, 3, nil},
		{"local socket moves", BindingObservation{STUNUsername: u, Mapped: natC, Local: relayB, At: at(120)}, BindingChanged, 3,
			func(t *testing.T, b UDPBinding) {
				if b.Local != relayB || !b.LastChange.Equal(at(100)) {
					t.Errorf("after a move of Local %+v", b)
				}
			}},
		{"an older request changes nothing", BindingObservation{STUNUsername: u, Mapped: natA, Local: relayA, At: at(110)}, BindingRefreshed, 3,
			func(t *testing.T, b UDPBinding) {
				if b.Mapped != natC || b.Local != relayB || !b.LastSeen.Equal(at(120)) {
					t.Errorf("after a reordered request %+v", b)
				}
			}},
		{"IPv4-mapped spelling is the same address", BindingObservation{STUNUsername: u, Mapped: netip.MustParseAddrPort("[::ffff:203.0.113.99]:40000"), Local: relayB, At: at(140)}, BindingRefreshed, 3,
			func(t *testing.T, b UDPBinding) {
				if b.Mapped != natC {
					t.Errorf("Mapped = %v, want %v", b.Mapped, natC)
				}
			}},
	}
	for _, s := range steps {
		res := mustObserve(t, r, s.o)
		if res.Outcome != s.want || res.DeviceID != d.ID {
			t.Errorf("%s: got %v for %q, want %v for %q", s.name, res.Outcome, res.DeviceID, s.want, d.ID)
		}
		b := mustBinding(t, r, d.ID)
		if b.Changes != s.changes {
			t.Errorf("%s: Changes = %d, want %d", s.name, b.Changes, s.changes)
		}
		if s.check != nil {
			t.Run(s.name, func(t *testing.T) { s.check(t, b) })
		}
	}
	if _, ok := r.Binding(mustPut(t, r, testDevice(2)).ID); ok {
		t.Error("a device never seen by STUN has a binding")
	}
	if _, ok := r.Binding("unknown"); ok {
		t.Error("an unknown device has a binding")
	}
}

func TestKeepaliveSmoothing(t *testing.T) {
	r := open(t, newMemStore())
	d := mustPut(t, r, testDevice(1))
	var s float64
	obs := func(gap float64) UDPBinding {
		s += gap
		mustObserve(t, r, BindingObservation{STUNUsername: d.STUNUsername, Mapped: natA, Local: relayA, At: at(s)})
		return mustBinding(t, r, d.ID)
	}
	obs(0)
	for range 5 {
		if b := obs(20); b.Keepalive != 20*time.Second {
			t.Fatalf("steady 20s keepalives: Keepalive = %v", b.Keepalive)
		}
	}
	// An hour of silence counts as four keepalives at most: 20 + (80-20)/4.
	if b := obs(3600); b.Keepalive != 35*time.Second {
		t.Errorf("after an outage Keepalive = %v, want 35s", b.Keepalive)
	}
	for range 30 {
		obs(20)
	}
	if b := obs(20); b.Keepalive < 20*time.Second || b.Keepalive > 20*time.Second+100*time.Millisecond {
		t.Errorf("back to 20s keepalives: Keepalive = %v", b.Keepalive)
	}
}

// TestNATTimeoutEstimate walks one subscriber through the evidence a NAT
// gives: gaps its mapping survived and gaps after which it had changed.
func TestNATTimeoutEstimate(t *testing.T) {
	r := open(t, newMemStore())
	type step struct {
		gap    float64 // seconds since the previous request
		mapped netip.AddrPort
		nat    time.Duration // NATTimeout after the step
		surv   time.Duration // SurvivedGap after the step
	}
	run := func(t *testing.T, i int, steps []step) {
		d := mustPut(t, r, testDevice(i))
		s := 0.0
		for n, st := range steps {
			s += st.gap
			mustObserve(t, r, BindingObservation{STUNUsername: d.STUNUsername, Mapped: st.mapped, Local: relayA, At: at(s)})
			b := mustBinding(t, r, d.ID)
			if b.NATTimeout != st.nat || b.SurvivedGap != st.surv {
				t.Errorf("step %d (+%vs, %v): NATTimeout %v SurvivedGap %v; want %v, %v",
					n, st.gap, st.mapped, b.NATTimeout, b.SurvivedGap, st.nat, st.surv)
			}
		}
	}
	const sec = time.Second
	t.Run("silence then a new mapping measures the timeout", func(t *testing.T) {
		run(t, 1, []step{
			{0, natA, 0, 0},
			{20, natA, 0, 20 * sec}, // survived 20s: the timeout is longer, no estimate
			{10, natA, 0, 20 * sec},
			{65, natB, 65 * sec, 0}, // changed after 65s of silence: timeout <= 65s
			{10, natB, 65 * sec, 10 * sec},
			{10, natB, 65 * sec, 10 * sec},
			{40, natA, 40 * sec, 0}, // a shorter silent gap lowers it
			{10, natA, 40 * sec, 10 * sec},
			{70, natB, 40 * sec, 0}, // a longer one does not raise it
			{10, natB, 40 * sec, 10 * sec},
			{45, natB, 0, 45 * sec}, // the mapping survived 45s: 40s was wrong
		})
	})
	t.Run("rebindings while the CPE is refreshing are no measurement", func(t *testing.T) {
		run(t, 2, []step{
			{0, natA, 0, 0},
			{10, natA, 0, 10 * sec},
			{10, natB, 0, 0}, // 10s: no NAT expires a mapping that fast
			{5, natC, 0, 0},
			{30, natC, 0, 30 * sec},
			{30, natC, 0, 30 * sec},
			{30, natA, 0, 0}, // changed within the rhythm it survived: a rebinding
			{25, natB, 25 * sec, 0},
		})
	})
	t.Run("a timeout shorter than the keepalive", func(t *testing.T) {
		run(t, 3, []step{
			{0, natA, 0, 0},
			{60, natB, 60 * sec, 0},
			{60, natC, 60 * sec, 0},
			{30, natA, 30 * sec, 0},
			{15, natA, 30 * sec, 15 * sec},
		})
	})
}

func TestRecommendedKeepalive(t *testing.T) {
	for _, tt := range []struct {
		nat, want time.Duration
	}{
		{0, DefaultRecommendedKeepalive},
		{65 * time.Second, 32 * time.Second},
		{40 * time.Second, 20 * time.Second},
		{21 * time.Second, MinRecommendedKeepalive},
		{180 * time.Second, 90 * time.Second},
		{300 * time.Second, 150 * time.Second},
	} {
		if got := (UDPBinding{NATTimeout: tt.nat}).RecommendedKeepalive(); got != tt.want {
			t.Errorf("NATTimeout %v: RecommendedKeepalive = %v, want %v", tt.nat, got, tt.want)
		}
	}
}

func TestObserveBindingMatch(t *testing.T) {
	r := open(t, newMemStore())
	r.now = func() time.Time { return at(10) } // the observations' clock
	byAddr := mustPut(t, r, Device{ID: "by-address", UDPAddress: natA.String()})
	byUser := mustPut(t, r, testDevice(2))
	tests := []struct {
		name string
		o    BindingObservation
		want BindingOutcome
		id   string
	}{
		{"no username: the registered udp_address",
			BindingObservation{Mapped: netip.MustParseAddrPort("[::ffff:203.0.113.7]:51234"), Local: relayA, At: at(0)}, BindingNew, byAddr.ID},
		{"no username, no such udp_address",
			BindingObservation{Mapped: natB, Local: relayA, At: at(1)}, BindingUnknown, ""},
		{"a username wins over the address",
			BindingObservation{STUNUsername: byUser.STUNUsername, Mapped: natA, Local: relayA, At: at(2)}, BindingNew, byUser.ID},
		{"an unknown username goes pending whatever the address",
			BindingObservation{STUNUsername: "not-yet", Mapped: natA, Local: relayA, At: at(3)}, BindingPending, ""},
		{"usernames are exact",
			BindingObservation{STUNUsername: strings.ToUpper(byUser.STUNUsername), Mapped: natA, Local: relayA, At: at(4)}, BindingPending, ""},
		{"a username no device can have is not kept",
			BindingObservation{STUNUsername: "bad\x00name", Mapped: natA, Local: relayA, At: at(5)}, BindingUnknown, ""},
		{"nor is one too long",
			BindingObservation{STUNUsername: strings.Repeat("u", MaxFieldLen+1), Mapped: natA, Local: relayA, At: at(6)}, BindingUnknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustObserve(t, r, tt.o)
			if res.Outcome != tt.want || res.DeviceID != tt.id {
				t.Errorf("got %v %q, want %v %q", res.Outcome, res.DeviceID, tt.want, tt.id)
			}
		})
	}
	if b := mustBinding(t, r, byAddr.ID); b.Mapped != natA {
		t.Errorf("binding by address: Mapped %v", b.Mapped)
	}
	if n := r.PendingBindings(); n != 2 {
		t.Errorf("PendingBindings = %d, want 2", n)
	}
}

func TestObserveBindingInvalid(t *testing.T) {
	r, err := New(newMemStore(), Options{Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	d := mustPut(t, r, testDevice(1))
	for name, o := range map[string]BindingObservation{
		"no mapped":          {Local: relayA},
		"mapped port 0":      {Mapped: netip.MustParseAddrPort("203.0.113.7:0"), Local: relayA},
		"mapped unspecified": {Mapped: netip.MustParseAddrPort("0.0.0.0:1"), Local: relayA},
		"mapped multicast":   {Mapped: netip.MustParseAddrPort("224.0.0.1:1"), Local: relayA},
		"no local":           {Mapped: natA},
		"local port 0":       {Mapped: natA, Local: netip.MustParseAddrPort("198.51.100.1:0")},
	} {
		o.STUNUsername = d.STUNUsername
		if _, err := r.ObserveBinding(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: ObserveBinding = %v, want ErrInvalid", name, err)
		}
	}
	if _, ok := r.Binding(d.ID); ok {
		t.Error("an invalid observation made a binding")
	}
	// A socket bound to the wildcard address is a usable Local.
	mustObserve(t, r, BindingObservation{STUNUsername: d.STUNUsername, Mapped: natA, Local: netip.MustParseAddrPort("[::]:3478")})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ObserveBinding(BindingObservation{STUNUsername: d.STUNUsername, Mapped: natA, Local: relayA}); !errors.Is(err, ErrClosed) {
		t.Errorf("ObserveBinding after Close = %v, want ErrClosed", err)
	}
	if _, ok := r.Binding(d.ID); !ok {
		t.Error("Binding after Close: reads should keep answering")
	}
}

func TestPendingBindingAttach(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		st := newMemStore()
		r := open(t, st)
		obs := func(user string, m netip.AddrPort) BindingResult {
			return mustObserve(t, r, BindingObservation{STUNUsername: user, Mapped: m, Local: relayA, At: time.Now()})
		}
		first := time.Now()
		if res := obs("cpe-x", natA); res.Outcome != BindingPending || res.DeviceID != "" {
			t.Fatalf("unknown username: %+v", res)
		}
		time.Sleep(20 * time.Second)
		obs("cpe-x", natA)
		time.Sleep(20 * time.Second)
		obs("cpe-x", natB) // changes while pending are kept too
		if n := r.PendingBindings(); n != 1 {
			t.Fatalf("PendingBindings = %d, want 1", n)
		}

		mustPut(t, r, Device{ID: "x", STUNUsername: "cpe-x"})
		b := mustBinding(t, r, "x")
		if b.Mapped != natB || !b.FirstSeen.Equal(first) || !b.LastSeen.Equal(first.Add(40*time.Second)) ||
			b.Changes != 1 || b.PrevMapped != natA || b.Keepalive != 20*time.Second {
			t.Errorf("attached binding %+v", b)
		}
		if n := r.PendingBindings(); n != 0 {
			t.Errorf("PendingBindings = %d after attaching, want 0", n)
		}
		if res := obs("cpe-x", natB); res.Outcome != BindingRefreshed || res.DeviceID != "x" {
			t.Errorf("next request: %+v", res)
		}

		// Update giving a device the username attaches too.
		mustPut(t, r, Device{ID: "y"})
		obs("cpe-y", natC)
		if _, err := r.Update(ctx, "y", func(d *Device) error { d.STUNUsername = "cpe-y"; return nil }); err != nil {
			t.Fatal(err)
		}
		if b := mustBinding(t, r, "y"); b.Mapped != natC {
			t.Errorf("binding attached by Update: %+v", b)
		}

		// An attached binding is persisted like any other.
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[string]netip.AddrPort{"x": natB, "y": natC} {
			_, sb, err := decodeLiveRecord(st.buckets[BucketLive][id])
			if err != nil || sb == nil || sb.mapped != want {
				t.Errorf("stored binding of %s: %+v, %v", id, sb, err)
			}
		}
	})
}

func TestPendingBindingBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := New(newMemStore(), Options{Key: testKey, MaxPendingBindings: 3, PendingBindingTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		obs := func(user string) {
			mustObserve(t, r, BindingObservation{STUNUsername: user, Mapped: natA, Local: relayA})
			time.Sleep(time.Second)
		}
		attached := func(user string) bool {
			id := "dev-" + user
			mustPut(t, r, Device{ID: id, STUNUsername: user})
			_, ok := r.Binding(id)
			return ok
		}
		for _, u := range []string{"u1", "u2", "u3", "u4"} {
			obs(u)
		}
		if n := r.PendingBindings(); n != 3 {
			t.Errorf("PendingBindings = %d, want the bound 3", n)
		}
		obs("u2") // refreshed: now the newest
		obs("u5") // evicts the least recently seen, u3
		for u, want := range map[string]bool{"u1": false, "u3": false, "u2": true} {
			if got := attached(u); got != want {
				t.Errorf("%s attached = %v, want %v", u, got, want)
			}
		}
		if n := r.PendingBindings(); n != 2 {
			t.Errorf("PendingBindings = %d, want 2 (u4, u5)", n)
		}

		// Expiry counts from the last request.
		time.Sleep(time.Minute - 3*time.Second) // u4 was seen 3s before u5
		if n := r.PendingBindings(); n != 1 {
			t.Errorf("PendingBindings = %d a minute after u4, want 1", n)
		}
		time.Sleep(2 * time.Second)
		if n := r.PendingBindings(); n != 0 {
			t.Errorf("PendingBindings = %d after the TTL, want 0", n)
		}
		obs("u6")
		time.Sleep(time.Minute)
		if attached("u6") {
			t.Error("an expired pending binding was attached")
		}
	})
}

// TestBindingRestart checks that bindings outlive a restart, and how much
// of a binding a restart may forget.
func TestBindingRestart(t *testing.T) {
	dir := t.TempDir()
	r, err := openBolt(t, dir, testKey)
	if err != nil {
		t.Fatal(err)
	}
	d := mustPut(t, r, testDevice(1))
	other := mustPut(t, r, testDevice(2))
	obs := func(r *Registry, user string, m netip.AddrPort, s float64) {
		mustObserve(t, r, BindingObservation{STUNUsername: user, Mapped: m, Local: relayA, At: at(s)})
	}
	for i, s := range []float64{0, 20, 40, 60, 125} { // a change after 65s of silence
		m := natA
		if i == 4 {
			m = natB
		}
		obs(r, d.STUNUsername, m, s)
	}
	obs(r, other.STUNUsername, natC, 0)
	obs(r, other.STUNUsername, natC, 20)
	obs(r, other.STUNUsername, natC, 40)
	if err := r.Flush(context.Background()); err != nil { // stores LastSeen 40s
		t.Fatal(err)
	}
	obs(r, other.STUNUsername, natC, 50) // 10s more: not worth a write
	r.RecordWake(d.ID, WakeRecord{Status: "sent", Transport: "udp"})
	want := mustBinding(t, r, d.ID)
	wantOther := mustBinding(t, r, other.ID)
	if want.NATTimeout != 65*time.Second || want.Changes != 1 {
		t.Fatalf("before restart: %+v", want)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r, err = openBolt(t, dir, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := mustBinding(t, r, d.ID)
	if !got.Restored {
		t.Error("a loaded binding is not marked Restored")
	}
	got.Restored = false
	if got != want {
		t.Errorf("binding after restart\n got %+v\nwant %+v", got, want)
	}
	if l, _ := r.Live(d.ID); len(l.Wakes) != 1 {
		t.Errorf("wakes lost beside the binding: %+v", l)
	}
	gotOther := mustBinding(t, r, other.ID)
	if lag := wantOther.LastSeen.Sub(gotOther.LastSeen); gotOther.Mapped != natC || lag != 10*time.Second {
		t.Errorf("keepalive-only binding after restart: %+v, LastSeen lags %v, want 10s", gotOther, lag)
	}

	// The relay was away, not the CPE: the first gap after a restart is
	// no NAT or keepalive measurement, but a change is still a change.
	obs(r, d.STUNUsername, natC, 1000)
	b := mustBinding(t, r, d.ID)
	if b.Restored || b.Changes != 2 || b.NATTimeout != 65*time.Second || b.Keepalive != want.Keepalive || b.Mapped != natC {
		t.Errorf("first request after restart: %+v", b)
	}
	obs(r, d.STUNUsername, natC, 1020)
	if b := mustBinding(t, r, d.ID); b.SurvivedGap != 20*time.Second {
		t.Errorf("second request after restart: %+v", b)
	}
}

func TestLiveRecordCompat(t *testing.T) {
	st := newMemStore()
	r := open(t, st)
	d := mustPut(t, r, testDevice(1))
	e := mustPut(t, r, testDevice(2))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	st.buckets[BucketLive][d.ID] = []byte(`{"wakes":[{"at":"2025-01-01T00:00:00Z","status":"sent","duration_ms":3}]}`)
	st.buckets[BucketLive][e.ID] = []byte(`{"wakes":[{"status":"sent"}],"udp_binding":{"mapped":"","local":"198.51.100.1:3478"}}`)
	r = open(t, st)
	if _, ok := r.Binding(d.ID); ok {
		t.Error("a record from before bindings has one")
	}
	if l, _ := r.Live(d.ID); len(l.Wakes) != 1 || l.Wakes[0].Status != "sent" {
		t.Errorf("old record's wakes: %+v", l)
	}
	if _, ok := r.Binding(e.ID); ok {
		t.Error("a binding without a mapped address was loaded")
	}

	// A binding joins the wakes in the same record.
	mustObserve(t, r, BindingObservation{STUNUsername: d.STUNUsername, Mapped: natA, Local: relayA, At: at(0)})
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := st.buckets[BucketLive][d.ID]
	l, b, err := decodeLiveRecord(v)
	if err != nil || b == nil || b.mapped != natA || len(l.Wakes) != 1 {
		t.Errorf("stored %s: %v %+v %v", v, l, b, err)
	}
}

// TestBindingWrites checks the persistence rule: keepalives that change
// nothing cost a write per BindingSeenPersistInterval, not one each, and
// a change is written at the next flush.
func TestBindingWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := &countingStore{Store: newMemStore()}
		st := cs.Store.(*memStore)
		r := open(t, cs)
		d := mustPut(t, r, testDevice(1))
		base := cs.count()
		obs := func(m netip.AddrPort) BindingResult {
			return mustObserve(t, r, BindingObservation{STUNUsername: d.STUNUsername, Mapped: m, Local: relayA, At: time.Now()})
		}
		if res := obs(natA); res.Outcome != BindingNew {
			t.Fatalf("first request: %v", res.Outcome)
		}
		const n = 10_000
		for range n { // 100s of requests every 10ms, flushes running
			time.Sleep(10 * time.Millisecond)
			if res := obs(natA); res.Outcome != BindingRefreshed {
				t.Fatalf("keepalive: %v", res.Outcome)
			}
		}
		time.Sleep(DefaultLiveFlushInterval)
		synctest.Wait()
		writes := cs.since(base)
		// The new binding, then LastSeen about every 30s: 4 or 5.
		if len(writes) > 5 || len(writes) < 2 {
			t.Errorf("%d store writes for %d keepalives, want 2..5", len(writes), n)
		}
		for _, w := range writes {
			if len(w) != 1 || w[0].Bucket != BucketLive || string(w[0].Key) != d.ID {
				t.Errorf("write %+v, want the device's live record", w)
			}
		}
		_, sb, _ := decodeLiveRecord(st.buckets[BucketLive][d.ID])
		if sb == nil {
			t.Fatal("no binding stored")
		}
		if lag := time.Since(sb.export().LastSeen); lag > DefaultBindingSeenPersistInterval+DefaultLiveFlushInterval {
			t.Errorf("stored LastSeen lags %v", lag)
		}
		t.Logf("%d keepalives over %v: %d store writes", n, n*10*time.Millisecond, len(writes))

		base = cs.count()
		if res := obs(natB); res.Outcome != BindingChanged {
			t.Fatalf("change: %v", res.Outcome)
		}
		time.Sleep(DefaultLiveFlushInterval)
		synctest.Wait()
		if w := cs.since(base); len(w) != 1 {
			t.Fatalf("%d writes after a change, want 1", len(w))
		}
		if _, sb, _ := decodeLiveRecord(st.buckets[BucketLive][d.ID]); sb == nil || sb.mapped != natB {
			t.Errorf("the change was not written: %+v", sb)
		}
	})
}

func TestBindingDropped(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r := open(t, st)
	r.now = func() time.Time { return at(10) } // the observations' clock
	bind := func(d Device, m netip.AddrPort) {
		t.Helper()
		mustObserve(t, r, BindingObservation{STUNUsername: d.STUNUsername, Mapped: m, Local: relayA, At: at(0)})
	}
	stored := func(id string) (*binding, bool) {
		t.Helper()
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		v, ok := st.buckets[BucketLive][id]
		if !ok {
			return nil, false
		}
		_, b, err := decodeLiveRecord(v)
		if err != nil {
			t.Fatal(err)
		}
		return b, true
	}

	t.Run("delete", func(t *testing.T) {
		d := mustPut(t, r, testDevice(1))
		bind(d, natA)
		if b, _ := stored(d.ID); b == nil {
			t.Fatal("binding not stored")
		}
		if err := r.Delete(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
		if _, ok := r.Binding(d.ID); ok {
			t.Error("binding outlived its device")
		}
		if _, ok := stored(d.ID); ok {
			t.Error("live record outlived its device")
		}
		mustPut(t, r, testDevice(1))
		if _, ok := r.Binding(d.ID); ok {
			t.Error("a re-created device got the old binding")
		}
	})
	t.Run("other changes keep it", func(t *testing.T) {
		d := mustPut(t, r, testDevice(2))
		bind(d, natA)
		if _, err := r.Update(ctx, d.ID, func(d *Device) error { d.Username = "renamed"; return nil }); err != nil {
			t.Fatal(err)
		}
		d.UDPAddress = "192.0.2.200:1"
		mustPut(t, r, d)
		if b, ok := r.Binding(d.ID); !ok || b.Mapped != natA {
			t.Fatalf("binding after unrelated writes: %+v %v", b, ok)
		}
		if res := mustObserve(t, r, BindingObservation{STUNUsername: d.STUNUsername, Mapped: natA, Local: relayA, At: at(1)}); res.Outcome != BindingRefreshed {
			t.Errorf("next request: %v, want the same binding refreshed", res.Outcome)
		}
	})
	t.Run("new stun_username", func(t *testing.T) {
		d := mustPut(t, r, testDevice(3))
		bind(d, natA)
		r.RecordWake(d.ID, WakeRecord{Status: "sent"})
		if _, err := r.Update(ctx, d.ID, func(d *Device) error { d.STUNUsername = "renamed-3"; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, ok := r.Binding(d.ID); ok {
			t.Error("binding kept across a stun_username change")
		}
		if b, ok := stored(d.ID); !ok || b != nil {
			t.Errorf("stored after the change: %+v (record %v), want wakes only", b, ok)
		}
		if l, _ := r.Live(d.ID); len(l.Wakes) != 1 {
			t.Errorf("wakes lost with the binding: %+v", l)
		}
	})
	t.Run("new stun_username, no wakes", func(t *testing.T) {
		d := mustPut(t, r, testDevice(4))
		bind(d, natA)
		if _, ok := stored(d.ID); !ok {
			t.Fatal("binding not stored")
		}
		d.STUNUsername = ""
		mustPut(t, r, d)
		if _, ok := stored(d.ID); ok {
			t.Error("an empty live record was left in the store")
		}
	})
	t.Run("new stun_username with a pending binding", func(t *testing.T) {
		d := mustPut(t, r, testDevice(5))
		bind(d, natA)
		mustObserve(t, r, BindingObservation{STUNUsername: "next-5", Mapped: natC, Local: relayB, At: at(1)})
		d.STUNUsername = "next-5"
		mustPut(t, r, d)
		if b, ok := r.Binding(d.ID); !ok || b.Mapped != natC || b.Local != relayB {
			t.Errorf("binding after taking a pending username: %+v", b)
		}
		if b, _ := stored(d.ID); b == nil || b.mapped != natC {
			t.Errorf("stored: %+v", b)
		}
	})
}

// TestBindingConcurrent races binding requests against writes, deletes,
// flushes and reads of the same devices and usernames, then checks that a
// reopened registry has exactly the bindings the first one had.
func TestBindingConcurrent(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	// Every moved LastSeen is marked, so Close leaves the store exact.
	r, err := New(st, Options{Key: testKey, BindingSeenPersistInterval: time.Nanosecond, MaxPendingBindings: 8})
	if err != nil {
		t.Fatal(err)
	}
	addrs := []netip.AddrPort{natA, natB, natC}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for range 2000 {
				id := fmt.Sprintf("dev-%02d", rng.IntN(10))
				user := fmt.Sprintf("stun-%d", rng.IntN(15))
				var err error
				switch op := rng.IntN(20); {
				case op < 12:
					o := BindingObservation{STUNUsername: user, Mapped: addrs[rng.IntN(3)], Local: relayA, BindingChange: rng.IntN(8) == 0}
					if rng.IntN(5) == 0 {
						o.STUNUsername = ""
					}
					_, err = r.ObserveBinding(o)
				case op < 15:
					_, _, err = r.Put(ctx, Device{ID: id, STUNUsername: user, UDPAddress: addrs[rng.IntN(3)].String()})
				case op < 16:
					err = r.Delete(ctx, id)
				case op < 17:
					r.RecordWake(id, WakeRecord{Status: "sent"})
				case op < 18:
					err = r.Flush(ctx)
				default:
					r.Binding(id)
					r.PendingBindings()
				}
				if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := r.PendingBindings(); n > 8 {
		t.Errorf("PendingBindings = %d over its bound", n)
	}
	before := map[string]UDPBinding{}
	devs, _ := r.List("", MaxListLimit)
	for _, d := range devs {
		if b, ok := r.Binding(d.ID); ok {
			before[d.ID] = b
		}
	}
	if len(before) == 0 {
		t.Fatal("no device ended with a binding: the test proves nothing")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2 := open(t, st)
	for _, d := range devs {
		got, ok := r2.Binding(d.ID)
		want, had := before[d.ID]
		got.Restored = false
		if ok != had || got != want {
			t.Errorf("%s after reopening: %+v %v\nwant %+v %v", d.ID, got, ok, want, had)
		}
	}
}

func TestObserveBindingAllocs(t *testing.T) {
	r := open(t, newMemStore())
	d := mustPut(t, r, testDevice(1))
	s := 0
	o := BindingObservation{STUNUsername: d.STUNUsername, Mapped: natA, Local: relayA, At: t0}
	mustObserve(t, r, o)
	allocs := testing.AllocsPerRun(1000, func() {
		s++
		o.At = at(float64(s) * 20)
		if _, err := r.ObserveBinding(o); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a keepalive allocates %v times, want 0", allocs)
	}
}

func TestBindingOutcomeString(t *testing.T) {
	for o, want := range map[BindingOutcome]string{
		BindingUnknown: "unknown", BindingNew: "new", BindingRefreshed: "refreshed",
		BindingChanged: "changed", BindingPending: "pending", 9: "BindingOutcome(9)",
	} {
		if got := o.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", o, got, want)
		}
	}
}

func TestBindingOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"negative seen interval": {Key: testKey, BindingSeenPersistInterval: -time.Second},
		"negative pending bound": {Key: testKey, MaxPendingBindings: -1},
		"negative pending TTL":   {Key: testKey, PendingBindingTTL: -time.Second},
	} {
		if r, err := New(newMemStore(), o); !errors.Is(err, ErrInvalid) {
			if r != nil {
				r.Close()
			}
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
		}
	}
	r := open(t, newMemStore())
	if r.bindSeenEvery != DefaultBindingSeenPersistInterval || r.pendingBinds.max != DefaultMaxPendingBindings ||
		r.pendingBinds.ttl != int64(DefaultPendingBindingTTL) {
		t.Errorf("defaults: %v %d %v", r.bindSeenEvery, r.pendingBinds.max, time.Duration(r.pendingBinds.ttl))
	}
}

// TestSTUNPassword: the STUN server's per-packet key lookup answers like
// BySTUNUsername and copies nothing, even for a device listing transports
// (BySTUNUsername copies that slice).
func TestSTUNPassword(t *testing.T) {
	r := open(t, newMemStore())
	d := testDevice(1)
	d.Transports = []Transport{TransportUDP, TransportHTTP}
	d = mustPut(t, r, d)
	nopass := testDevice(2)
	nopass.STUNPassword = ""
	nopass = mustPut(t, r, nopass)
	for _, c := range []struct {
		user, want string
		ok         bool
	}{
		{d.STUNUsername, d.STUNPassword, true},
		{nopass.STUNUsername, "", true},
		{"nobody", "", false},
		{"", "", false},
	} {
		if got, ok := r.STUNPassword(c.user); got != c.want || ok != c.ok {
			t.Errorf("STUNPassword(%q) = %q, %v; want %q, %v", c.user, got, ok, c.want, c.ok)
		}
	}
	if allocs := testing.AllocsPerRun(1000, func() { r.STUNPassword(d.STUNUsername) }); allocs != 0 {
		t.Errorf("STUNPassword allocates %v times, want 0", allocs)
	}
}

func TestBindingsSeen(t *testing.T) {
	r := open(t, newMemStore())
	var devs []Device
	for i := 1; i <= 5; i++ {
		devs = append(devs, mustPut(t, r, testDevice(i)))
	}
	// Devices 1 to 4 bind at seconds 10, 20, 30, 40; device 5 never.
	for i, d := range devs[:4] {
		mapped := netip.AddrPortFrom(natA.Addr(), uint16(40000+i))
		if _, err := r.ObserveBinding(BindingObservation{STUNUsername: d.STUNUsername, Mapped: mapped, Local: relayA, At: at(float64(10 * (i + 1)))}); err != nil {
			t.Fatal(err)
		}
	}
	seen := func(from, to float64) []string {
		var ids []string
		r.BindingsSeen(at(from), at(to), func(id string, b UDPBinding) {
			if b.LastSeen.Before(at(from)) || !b.LastSeen.Before(at(to)) {
				t.Errorf("%s last seen %v, outside [%v, %v)", id, b.LastSeen, at(from), at(to))
			}
			ids = append(ids, id)
		})
		return ids
	}
	if got := seen(15, 35); !slices.Equal(got, []string{devs[1].ID, devs[2].ID}) {
		t.Errorf("[15, 35): %v", got)
	}
	if got := seen(10, 20); !slices.Equal(got, []string{devs[0].ID}) {
		t.Errorf("[10, 20) includes from, excludes to: %v", got)
	}
	// Consecutive windows see each binding once.
	var all []string
	for s := 0.0; s < 60; s += 7 {
		all = append(all, seen(s, s+7)...)
	}
	if len(all) != 4 {
		t.Errorf("sliding windows saw %v", all)
	}
	// A refresh moves the binding out of the old window.
	r.ObserveBinding(BindingObservation{STUNUsername: devs[0].STUNUsername, Mapped: netip.AddrPortFrom(natA.Addr(), 40000), Local: relayA, At: at(50)})
	if got := seen(10, 20); len(got) != 0 {
		t.Errorf("after a refresh: %v", got)
	}
}
