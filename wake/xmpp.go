package wake

import (
	"context"
	"fmt"
	"time"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/xmpp"
)

// XMPPBroker is what the XMPP transport needs of the broker;
// *xmpp.Broker satisfies it.
type XMPPBroker interface {
	Online(jid string) (xmpp.SessionInfo, bool)
	ConnectionRequest(ctx context.Context, to, username, password string) xmpp.Result
}

// XMPP is the Annex K transport: a connectionRequest IQ from the relay's
// JID to the CPE's session on the broker. It is the one transport whose
// "delivered" means the CPE itself acknowledged the request.
type XMPP struct {
	Broker XMPPBroker
}

// Usable reports whether the device's xmpp_jid has a session now.
func (x XMPP) Usable(d registry.Device) (bool, string) {
	if d.XMPPJID == "" {
		return false, "no xmpp_jid registered"
	}
	if _, ok := x.Broker.Online(d.XMPPJID); !ok {
		return false, "no XMPP session for " + d.XMPPJID
	}
	return true, ""
}

// Wake sends the IQ with the device's connection-request credentials and
// maps the CPE's answer: result → delivered, not-authorized (or the
// misspelt not-autorized) → auth_failed, service-unavailable → refused,
// no session → offline, no answer in time → timeout. The CPE's raw error
// condition goes in the detail.
func (x XMPP) Wake(ctx context.Context, d registry.Device) Attempt {
	start := time.Now()
	r := x.Broker.ConnectionRequest(ctx, d.XMPPJID, d.Username, d.Password)
	a := Attempt{Transport: registry.TransportXMPP, DurationMS: ms(time.Since(start))}
	switch r.Outcome {
	case xmpp.Delivered:
		a.Status, a.Detail = Delivered, "IQ result from "+d.XMPPJID
	case xmpp.AuthFailed:
		a.Status = AuthFailed
	case xmpp.Refused:
		a.Status = Refused
	case xmpp.Offline:
		a.Status, a.Detail = Offline, "no XMPP session for "+d.XMPPJID
	case xmpp.Timeout:
		a.Status, a.Detail = Timeout, fmt.Sprintf("no answer from %s in %s", d.XMPPJID, r.RTT.Round(time.Millisecond))
	default:
		a.Status = Error
	}
	if r.Condition != "" {
		a.Detail = "CPE answered " + r.Condition
	}
	return a
}
