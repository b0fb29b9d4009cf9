package stunserver

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"time"
	"unsafe"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/stun"
)

// Bounds on what the server sends, so that it never amplifies: a
// response is at most maxResponse bytes and at most maxAmplification
// times the request. The largest success response, to a 20-byte RFC 5389
// request from IPv6 with every address attribute and a 32-byte SOFTWARE,
// is 160 bytes (8x); a response over either bound is dropped and counted
// rather than sent. Errors go only to the request's source; the rate
// limiter bounds the volume one source (or one forged source) gets.
const (
	maxResponse      = 512
	maxAmplification = 10
)

// Reason phrases of errors whose cause the standard phrase hides.
const (
	reasonResponseAddress = "RESPONSE-ADDRESS must have the source IP"
	reasonChangeRequest   = "CHANGE-REQUEST not available"
)

// reply is a response to send, or nothing when msg is nil.
type reply struct {
	msg  []byte
	to   netip.AddrPort // the request's source, or its RESPONSE-ADDRESS
	from netip.AddrPort // the local address to send from
	via  *sock          // the socket to send from; nil for the receiving one
}

// worker is the per-socket state of the receiving goroutine: one decoded
// message and one key buffer reused for every packet, and local counters.
type worker struct {
	s   *Server
	sk  *sock
	msg stun.Message
	key []byte
	cnt counts

	// The packet being handled.
	pkt        []byte
	src, local netip.AddrPort
	out        []byte
}

func newWorker(s *Server, sk *sock) *worker {
	return &worker{s: s, sk: sk, key: make([]byte, 0, 128)}
}

// handle answers one packet: pkt from src, received on local (for a
// wildcard socket, the destination address the packet had), at now. The
// response is built in out's storage. handle does not allocate.
//
// The order of checks follows RFC 3489 8.2.1 and RFC 5389 10.1.2 and
// 7.3.1: authentication first, then unknown comprehension-required
// attributes, then the request proper.
func (w *worker) handle(pkt []byte, src, local netip.AddrPort, now time.Time, out []byte) reply {
	s := w.s
	w.pkt, w.src, w.local, w.out = pkt, src, local, out
	if !usableSource(src) {
		w.cnt[cDropBadSource]++
		return reply{}
	}
	if s.limiter != nil && !s.limiter.allow(src.Addr(), int64(now.Sub(s.epoch))) {
		w.cnt[cDropRateLimited]++
		return reply{}
	}
	m := &w.msg
	if err := m.Decode(pkt); err != nil {
		w.cnt[decodeDrop(err)]++
		return reply{}
	}
	if m.Type.Class() != stun.ClassRequest {
		w.cnt[cDropNotRequest]++
		return reply{}
	}
	if m.Type.Method() != stun.MethodBinding {
		// Shared Secret Requests belong on TLS (RFC 3489 9), other
		// methods to TURN and ICE servers: not answering costs the
		// client a timeout and gives a forger nothing.
		w.cnt[cDropMethod]++
		return reply{}
	}

	var form stun.IntegrityForm
	var key []byte
	if s.cfg.Integrity != IntegrityOff {
		switch {
		case !m.HasIntegrity():
			if s.cfg.Integrity == IntegrityRequired {
				// RFC 3489 8.2.1, RFC 5389 10.1.2: 401 to a request
				// without MESSAGE-INTEGRITY. The codec puts ERROR-CODE
				// first, where some CPE agents look for it.
				return w.fail(401, "", nil, 0, nil)
			}
			// Optional means optional for devices that have no STUN
			// password. A device that has one must prove it: otherwise
			// anyone knowing its username could move its binding to
			// themselves and receive its connection requests.
			if len(m.Username) > 0 && m.ConnectionRequestBinding {
				if _, ok := w.password(m.Username); ok {
					w.cnt[cAuthNeeded]++
					return w.fail(401, "", nil, 0, nil)
				}
			}
		case len(m.Username) == 0:
			// RFC 3489 8.2.1, RFC 5389 10.1.2: integrity without a
			// (non-empty, once the padding is trimmed) USERNAME.
			return w.fail(432, "", nil, 0, nil)
		default:
			k, ok := w.password(m.Username)
			if !ok {
				// No key to check with: the username is unknown, or
				// the device has no STUN password. RFC 3489 would say
				// 430 (Stale Credentials), which asks the client for a
				// new shared secret over TLS, something TR-111 agents
				// never do; 431 tells them their credentials are wrong.
				w.cnt[cAuthUnknownUser]++
				return w.fail(431, "", nil, 0, nil)
			}
			f, err := m.CheckIntegrity(k)
			if err != nil {
				w.cnt[cAuthBadMAC]++
				return w.fail(431, "", nil, 0, nil)
			}
			form, key = f, k
			w.cnt[cAuthOK3489+counter(f-stun.IntegrityRFC3489)]++
		}
	}

	if m.Unknown.Len() > 0 {
		// RFC 3489 8.2.1, RFC 5389 7.3.1: 420 listing them.
		return w.fail(420, "", m.Unknown.Slice(), form, key)
	}

	to := src
	if ra := m.ResponseAddress; ra.IsValid() {
		// RFC 3489 11.2.2 lets a client have the response sent
		// anywhere, which makes any STUN server a reflector (RFC 3489
		// 12.1 item 3, and the reason RFC 5389 dropped the attribute).
		// CPEs use it to probe their own NAT binding lifetime (TR-069
		// Annex G), always at their own address: honour it for the
		// request's source IP only, and refuse anything else with an
		// error to the source.
		ra = unmapAP(ra)
		if ra.Addr() != src.Addr() || ra.Port() == 0 {
			w.cnt[cRespAddrRefused]++
			return w.fail(400, reasonResponseAddress, nil, form, key)
		}
		w.cnt[cRespAddrHonoured]++
		to = ra
	}

	from, via := local, (*sock)(nil)
	if m.ChangeIP || m.ChangePort {
		// A CHANGE-REQUEST with neither flag asks for nothing and is
		// answered normally: Vovida-derived clients always send one.
		alt, ok := s.alternate(local, m.ChangeIP, m.ChangePort)
		if ok {
			via = s.socks.lookup(alt)
			ok = via != nil
		}
		if !ok {
			// RFC 5780 6.1: "If the Request contains the
			// CHANGE-REQUEST attribute and the server does not have an
			// alternate address and port as described above, the
			// server MUST generate an error response of type 420."
			// RFC 5389 7.3.1 (and RFC 3489 8.2.1) give a 420 its
			// UNKNOWN-ATTRIBUTES.
			w.cnt[cChangeRefused]++
			return w.fail(420, reasonChangeRequest, changeRequestType[:], form, key)
		}
		w.cnt[cChangeHonoured]++
		from = alt
	}

	if m.ConnectionRequestBinding {
		w.observe(m, now)
	}

	changed, _ := s.alternate(local, s.cfg.Primary.Addr() != s.cfg.Alternate.Addr(), s.cfg.Primary.Port() != s.cfg.Alternate.Port())
	succ := stun.Success{
		Mapped:   src,
		Source:   from,
		Changed:  changed,
		Software: s.cfg.Software,
		Form:     form,
		Key:      key,
	}
	var b []byte
	if m.Classic && m.ResponseAddress.IsValid() {
		b = appendReflectedSuccess(out, m, &succ, src)
	} else {
		b = stun.AppendSuccess(out, m, &succ)
	}
	return w.reply(b, 200, to, from, via)
}

var changeRequestType = [1]stun.AttrType{stun.AttrChangeRequest}

// fail builds an error response. It goes to the request's source, from
// the address it was sent to, never anywhere else. form and key sign it
// when the request was authenticated (RFC 5389 10.1.2).
func (w *worker) fail(code int, reason string, unknown []stun.AttrType, form stun.IntegrityForm, key []byte) reply {
	b := stun.AppendError(w.out, &w.msg, &stun.Error{
		Code:     code,
		Reason:   reason,
		Unknown:  unknown,
		Software: w.s.cfg.Software,
		Form:     form,
		Key:      key,
	})
	return w.reply(b, code, w.src, w.local, nil)
}

// reply checks b against the amplification bounds and counts it.
func (w *worker) reply(b []byte, code int, to, from netip.AddrPort, via *sock) reply {
	if len(b) > maxResponse || len(b) > maxAmplification*len(w.pkt) {
		w.cnt[cDropAmplification]++
		return reply{}
	}
	w.cnt[respCounter(code)]++
	return reply{msg: b, to: to, from: from, via: via}
}

// password returns the STUN password of the device with the STUN
// username user, copied into the worker's key buffer; false if there is
// no such device or it has no password.
func (w *worker) password(user []byte) ([]byte, bool) {
	pw, ok := w.s.cfg.Registry.STUNPassword(bytesString(user))
	if !ok || pw == "" {
		return nil, false
	}
	w.key = append(w.key[:0], pw...)
	return w.key, true
}

// observe records the binding of a request with CONNECTION-REQUEST-BINDING
// (TR-069 Annex G): Mapped is its source, Local the address it was sent
// to, which a connection request to the CPE must leave from.
//
// A value other than "dslforum.org/TR-111 " is accepted when it differs
// only by its trailing padding (NUL instead of space, or none) or by
// case: real agents get the padding wrong, and refusing them would make
// them unreachable. Any other value is treated as if the attribute were
// absent (answered, nothing recorded, counted), not as an error: a 400
// could make the agent stop STUN altogether, losing its NAT keepalive,
// and the plain answer still tells it its mapped address.
func (w *worker) observe(m *stun.Message, now time.Time) {
	switch {
	case m.ConnectionRequestBindingValid:
		w.cnt[cCRBExact]++
	case lenientCRB(m.ConnectionRequestBindingRaw):
		w.cnt[cCRBLenient]++
	default:
		w.cnt[cCRBInvalid]++
		return
	}
	reg := w.s.cfg.Registry
	if reg == nil {
		return
	}
	res, err := reg.ObserveBinding(registry.BindingObservation{
		STUNUsername:  bytesString(m.Username),
		Mapped:        w.src,
		Local:         w.local,
		At:            now,
		BindingChange: m.BindingChange,
	})
	if err != nil {
		w.cnt[cBindError]++
		if w.s.log.Enabled(context.Background(), slog.LevelDebug) {
			w.s.log.Debug("stun: recording binding", "mapped", w.src, "local", w.local, "err", err)
		}
		return
	}
	w.cnt[bindCounter(res.Outcome)]++
	if res.Outcome >= registry.BindingNew && res.Outcome != registry.BindingRefreshed &&
		w.s.log.Enabled(context.Background(), slog.LevelDebug) {
		w.s.log.Debug("stun: binding", "outcome", res.Outcome, "device", res.DeviceID,
			"mapped", w.src, "local", w.local, "binding_change", m.BindingChange)
	}
}

var crbTrimmed = []byte(stun.ConnectionRequestBindingValue[:len(stun.ConnectionRequestBindingValue)-1])

// lenientCRB reports whether v is the CONNECTION-REQUEST-BINDING value
// up to trailing spaces or NULs and ASCII case.
func lenientCRB(v []byte) bool {
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == 0) {
		v = v[:len(v)-1]
	}
	return bytes.EqualFold(v, crbTrimmed)
}

// alternate returns the address a response asked to change IP and/or
// port is sent from, for a request received on local: Primary's IP
// swapped for Alternate's or back, likewise the port. false if no
// alternate is configured, the requested change is not configured, or
// local is on neither configured IP (or port).
func (s *Server) alternate(local netip.AddrPort, changeIP, changePort bool) (netip.AddrPort, bool) {
	p, a := s.cfg.Primary, s.cfg.Alternate
	if !p.IsValid() || (!changeIP && !changePort) {
		return netip.AddrPort{}, false
	}
	ip, port := local.Addr(), local.Port()
	if changeIP {
		switch {
		case p.Addr() == a.Addr():
			return netip.AddrPort{}, false
		case ip == p.Addr():
			ip = a.Addr()
		case ip == a.Addr():
			ip = p.Addr()
		default:
			return netip.AddrPort{}, false
		}
	}
	if changePort {
		switch {
		case p.Port() == a.Port():
			return netip.AddrPort{}, false
		case port == p.Port():
			port = a.Port()
		case port == a.Port():
			port = p.Port()
		default:
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPortFrom(ip, port), true
}

// appendReflectedSuccess is stun.AppendSuccess for a classic request with
// RESPONSE-ADDRESS, whose response also carries REFLECTED-FROM, the
// request's source (RFC 3489 11.2.11). The codec's Success has no field
// for it; the attribute order is the codec's.
func appendReflectedSuccess(buf []byte, m *stun.Message, s *stun.Success, reflectedFrom netip.AddrPort) []byte {
	b := stun.StartMessage(buf, stun.NewMessageType(m.Type.Method(), stun.ClassSuccess), &m.TransactionID)
	b = stun.AppendAddress(b, stun.AttrMappedAddress, s.Mapped)
	b = stun.AppendAddress(b, stun.AttrSourceAddress, s.Source)
	b = stun.AppendAddress(b, stun.AttrChangedAddress, s.Changed)
	b = stun.AppendAddress(b, stun.AttrReflectedFrom, reflectedFrom)
	if s.Software != "" {
		b = stun.AppendSoftware(b, s.Software)
	}
	return stun.AppendIntegrity(b, s.Key, s.Form)
}

// usableSource reports whether a response may go to src: not port 0, not
// an unspecified, multicast or limited-broadcast address (forged sources
// that would make one answer reach many hosts, or none).
func usableSource(src netip.AddrPort) bool {
	ip := src.Addr()
	return src.Port() != 0 && ip.IsValid() && !ip.IsUnspecified() && !ip.IsMulticast() &&
		ip != ipv4Broadcast
}

// bytesString returns b as a string without copying. The string aliases
// the packet buffer: it is passed only to Registry methods, which copy
// what they keep (see Registry).
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// ipv4Broadcast is the limited broadcast address 255.255.255.255.
var ipv4Broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
