package wake

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/stun/stunserver"
)

// UDPSender sends Annex G UDP connection requests from the STUN server's
// own sockets; *stunserver.Server satisfies it.
type UDPSender interface {
	SendConnectionRequest(ctx context.Context, r stunserver.CRRequest) (stunserver.CRResult, error)
}

// AddrPolicy vets a destination address (*httpcr.Policy satisfies it).
type AddrPolicy interface {
	Check(ip netip.Addr) error
}

// Bindings is what the UDP transport needs of the registry.
type Bindings interface {
	Binding(id string) (registry.UDPBinding, bool)
}

// UDP is the Annex G transport: a signed UDP connection request sent to
// the CPE's binding from the socket the CPE sends its STUN requests to,
// so it passes the CPE's NAT. It only ever aims at bindings the STUN
// server learned, or, when AllowRegistered, at the udp_address the ACS
// registered: the API can never point it at an arbitrary address.
type UDP struct {
	Sender   UDPSender
	Bindings Bindings
	// TTL is how long a binding stays usable after its last refresh.
	TTL time.Duration
	// AllowRegistered lets a device without a fresh binding be reached at
	// its registered udp_address, sent from RegisteredFrom.
	AllowRegistered bool
	RegisteredFrom  netip.AddrPort
	// Policy vets registered udp_addresses (loopback, link-local, the
	// relay's own addresses...); nil allows any. Learned bindings need no
	// check: the CPE's own packets came from there.
	Policy AddrPolicy
	// Now is time.Now unless a test sets it.
	Now func() time.Time
}

func (u UDP) now() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

// target picks where the request goes and which socket it leaves from.
func (u UDP) target(d registry.Device) (local, mapped netip.AddrPort, why string) {
	b, ok := u.Bindings.Binding(d.ID)
	if ok {
		age := u.now().Sub(b.LastSeen)
		limit := u.freshness(b)
		if age <= limit {
			return b.Local, b.Mapped, ""
		}
		why = fmt.Sprintf("STUN binding is stale: last binding request %s ago (limit %s)", age.Round(time.Second), limit.Round(time.Second))
	} else {
		why = "no STUN binding learned yet"
		if d.STUNUsername == "" && d.UDPAddress == "" {
			why += " (no stun_username or udp_address registered to match one)"
		}
	}
	if u.AllowRegistered && d.UDPAddress != "" && u.RegisteredFrom.IsValid() {
		if ap, err := netip.ParseAddrPort(d.UDPAddress); err == nil {
			to := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			if u.Policy != nil {
				if err := u.Policy.Check(to.Addr()); err != nil {
					return netip.AddrPort{}, netip.AddrPort{}, why + "; registered udp_address refused: " + err.Error()
				}
			}
			return u.RegisteredFrom, to, ""
		}
	}
	return netip.AddrPort{}, netip.AddrPort{}, why
}

// freshness is how long after its last binding request a binding is
// still trusted: TTL, and no more than three observed keepalive periods
// plus slack (a CPE that stopped refreshing has likely lost its NAT
// mapping, whose timeout is often 30-300 s), the slack also covering the
// lazily persisted LastSeen of a binding restored after a restart.
func (u UDP) freshness(b registry.UDPBinding) time.Duration {
	limit := u.TTL
	if b.Keepalive > 0 {
		limit = min(limit, 3*b.Keepalive+45*time.Second)
	}
	return limit
}

// Usable reports whether the device has a fresh binding (or an allowed
// registered address).
func (u UDP) Usable(d registry.Device) (bool, string) {
	_, _, why := u.target(d)
	return why == "", why
}

// Wake sends the UDP connection request. "sent" is the best it can say:
// Annex G has no acknowledgement.
func (u UDP) Wake(ctx context.Context, d registry.Device) Attempt {
	start := time.Now()
	local, mapped, why := u.target(d)
	if why != "" {
		return Attempt{Transport: registry.TransportUDP, Status: Offline, Detail: why}
	}
	res, err := u.Sender.SendConnectionRequest(ctx, stunserver.CRRequest{
		DeviceID: d.ID, Local: local, Mapped: mapped, Username: d.Username, Password: d.Password,
	})
	a := Attempt{Transport: registry.TransportUDP, DurationMS: ms(time.Since(start))}
	switch {
	case err == nil:
		a.Status = Sent
		a.Detail = fmt.Sprintf("to %s from %s, %d copies, ts %d id %d", res.To, res.From, res.Copies, res.Timestamp, res.ID)
		if res.Coalesced {
			a.Detail += " (coalesced: a request went out in the same second)"
		}
	case errors.Is(err, stunserver.ErrNoSocket):
		a.Status, a.Detail = Offline, fmt.Sprintf("no STUN socket sends from %s (restarted with other listen addresses?)", local)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		a.Status, a.Detail = Timeout, err.Error()
	default:
		a.Status, a.Detail = Error, err.Error()
	}
	return a
}
