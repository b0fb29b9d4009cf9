package main

import (
	"context"
	"net/netip"
	"time"

	"github.com/crrelay/crrelay/campaign"
	"github.com/crrelay/crrelay/events"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/wake"
	"github.com/crrelay/crrelay/xmpp"
)

// appEvents publishes what the appliance's parts report on the event bus:
// wake results and confirmations (a wake.Observer), campaign progress (a
// campaign.Publisher). Publish never blocks.
type appEvents struct{ bus *events.Bus }

func (e appEvents) Woke(device string, r wake.Result) {
	e.bus.Publish(events.New(events.WakeResult, device, r))
}

func (e appEvents) Confirmed(device string, r wake.Result) {
	e.bus.Publish(events.New(events.WakeConfirmed, device, r))
}

func (e appEvents) Progress(c campaign.Campaign) { e.campaign(events.CampaignProgress, c) }
func (e appEvents) Done(c campaign.Campaign)     { e.campaign(events.CampaignDone, c) }

func (e appEvents) campaign(typ string, c campaign.Campaign) {
	// The spec can list up to 100 devices: the event carries the
	// progress only.
	c.Spec = campaign.SpecView{DevicesTotal: c.Spec.DevicesTotal}
	ev := events.New(typ, "", c)
	ev.Campaign = c.ID
	e.bus.Publish(ev)
}

// bindingData is the data of binding events.
type bindingData struct {
	Mapped        string    `json:"mapped,omitempty"`
	Local         string    `json:"local,omitempty"`
	BindingChange bool      `json:"binding_change,omitempty"`
	LastSeen      time.Time `json:"last_seen,omitzero"`
}

// bindingEvents is the registry as the STUN server sees it, publishing
// new and changed bindings. Refreshes, the bulk of the traffic, cost one
// comparison.
type bindingEvents struct {
	*registry.Registry
	bus *events.Bus
}

func (b bindingEvents) ObserveBinding(o registry.BindingObservation) (registry.BindingResult, error) {
	res, err := b.Registry.ObserveBinding(o)
	if err != nil || res.DeviceID == "" {
		return res, err
	}
	typ := ""
	switch res.Outcome {
	case registry.BindingNew:
		typ = events.BindingNew
	case registry.BindingChanged:
		typ = events.BindingChanged
	default:
		return res, err
	}
	b.bus.Publish(events.New(typ, res.DeviceID, bindingData{Mapped: o.Mapped.String(), Local: o.Local.String(), BindingChange: o.BindingChange}))
	return res, err
}

// watchExpiry publishes binding.expired for each binding that goes
// stale (not refreshed for ttl), checking every interval, until ctx
// ends.
func watchExpiry(ctx context.Context, reg *registry.Registry, bus *events.Bus, ttl, interval time.Duration) error {
	last := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			reg.BindingsSeen(last.Add(-ttl), now.Add(-ttl), func(id string, b registry.UDPBinding) {
				bus.Publish(events.New(events.BindingExpired, id, bindingData{Mapped: addrString(b.Mapped), Local: addrString(b.Local), LastSeen: b.LastSeen}))
			})
			last = now
		}
	}
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// sessionData is the data of XMPP session events.
type sessionData struct {
	FullJID string `json:"full_jid"`
	Remote  string `json:"remote,omitempty"`
	TLS     bool   `json:"tls,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// sessionSink records the broker's sessions in the registry, where the
// API shows them, and publishes those of devices.
type sessionSink struct {
	reg *registry.Registry
	bus *events.Bus // nil: no events
}

func (s sessionSink) SessionUp(i xmpp.SessionInfo) {
	id := s.reg.XMPPSessionUp(registry.XMPPSession{FullJID: i.FullJID, Remote: i.Remote, TLS: i.TLS, Since: i.Since})
	if id != "" && s.bus != nil {
		s.bus.Publish(events.New(events.XMPPOnline, id, sessionData{FullJID: i.FullJID, Remote: i.Remote, TLS: i.TLS}))
	}
}

func (s sessionSink) SessionDown(i xmpp.SessionInfo) {
	id := s.reg.XMPPSessionDown(i.FullJID, i.EndedAt, i.Reason)
	if id != "" && s.bus != nil {
		s.bus.Publish(events.New(events.XMPPOffline, id, sessionData{FullJID: i.FullJID, Remote: i.Remote, Reason: i.Reason}))
	}
}

// expiryCheckInterval is how often watchExpiry looks for stale bindings:
// a binding.expired event comes at most this late.
const expiryCheckInterval = 10 * time.Second
