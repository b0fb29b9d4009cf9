package wake

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/stun/stunserver"
)

type fakeBindings map[string]registry.UDPBinding

func (f fakeBindings) Binding(id string) (registry.UDPBinding, bool) { b, ok := f[id]; return b, ok }

type fakeSender struct{ got []stunserver.CRRequest }

func (f *fakeSender) SendConnectionRequest(_ context.Context, r stunserver.CRRequest) (stunserver.CRResult, error) {
	f.got = append(f.got, r)
	return stunserver.CRResult{From: r.Local, To: r.Mapped, Copies: 3}, nil
}

type denyLoopback struct{}

func (denyLoopback) Check(ip netip.Addr) error {
	if ip.IsLoopback() {
		return errors.New("loopback denied")
	}
	return nil
}

func TestUDPTarget(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	local := netip.MustParseAddrPort("192.0.2.1:3478")
	mapped := netip.MustParseAddrPort("203.0.113.7:51234")
	bind := func(ago, keepalive time.Duration) registry.UDPBinding {
		return registry.UDPBinding{Local: local, Mapped: mapped, LastSeen: now.Add(-ago), Keepalive: keepalive}
	}
	cases := []struct {
		name     string
		binding  *registry.UDPBinding
		dev      registry.Device
		allowReg bool
		wantTo   string // "" = not usable
		wantWhy  string
	}{
		{"fresh binding", ptr(bind(20*time.Second, 30*time.Second)), registry.Device{ID: "d"}, false, mapped.String(), ""},
		{"no binding", nil, registry.Device{ID: "d", STUNUsername: "u"}, false, "", "no STUN binding"},
		{"older than the TTL", ptr(bind(11*time.Minute, 0)), registry.Device{ID: "d"}, false, "", "stale"},
		{"silent for more than 3 keepalives", ptr(bind(3*time.Minute, 30*time.Second)), registry.Device{ID: "d"}, false, "", "stale"},
		{"registered address not allowed", nil, registry.Device{ID: "d", UDPAddress: "198.51.100.9:7547"}, false, "", "no STUN binding"},
		{"registered address allowed", nil, registry.Device{ID: "d", UDPAddress: "198.51.100.9:7547"}, true, "198.51.100.9:7547", ""},
		{"registered loopback refused by policy", nil, registry.Device{ID: "d", UDPAddress: "127.0.0.1:9"}, true, "", "refused"},
		{"stale binding falls back to allowed address", ptr(bind(time.Hour, 0)), registry.Device{ID: "d", UDPAddress: "198.51.100.9:7547"}, true, "198.51.100.9:7547", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bs := fakeBindings{}
			if c.binding != nil {
				bs["d"] = *c.binding
			}
			s := &fakeSender{}
			u := UDP{Sender: s, Bindings: bs, TTL: 10 * time.Minute, AllowRegistered: c.allowReg,
				RegisteredFrom: local, Policy: denyLoopback{}, Now: func() time.Time { return now }}
			a := u.Wake(context.Background(), c.dev)
			if c.wantTo == "" {
				if a.Status != Offline || !strings.Contains(a.Detail, c.wantWhy) || len(s.got) != 0 {
					t.Fatalf("got %+v, sent %v; want offline with %q", a, s.got, c.wantWhy)
				}
				return
			}
			if a.Status != Sent || len(s.got) != 1 || s.got[0].Mapped.String() != c.wantTo || s.got[0].Local != local {
				t.Fatalf("got %+v, sent %+v; want sent to %s", a, s.got, c.wantTo)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
