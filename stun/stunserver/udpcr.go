package stunserver

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/crrelay/crrelay/stun"
)

// CRRequest asks for one UDP connection request (TR-069 Annex G). Local
// and Mapped must come from a binding the STUN server recorded
// (registry.UDPBinding): the server sends wherever it is told, so aiming
// it only at learned bindings is the caller's duty.
type CRRequest struct {
	// DeviceID identifies the CPE for coalescing; required.
	DeviceID string
	// Local is the relay address the CPE sends its binding requests to
	// (UDPBinding.Local); the request leaves from it.
	Local netip.AddrPort
	// Mapped is the CPE's public address (UDPBinding.Mapped), where the
	// request goes. It is also the request's authority, as the CPE
	// reports it in UDPConnectionRequestAddress.
	Mapped netip.AddrPort
	// Username and Password are the CPE's ConnectionRequestUsername and
	// ConnectionRequestPassword: un, and the key of sig.
	Username, Password string
}

// CRResult describes the UDP connection request sent.
type CRResult struct {
	// Timestamp, ID and CNonce are the request's ts, id and cn.
	Timestamp uint64
	ID        uint32
	CNonce    string
	// From and To are the addresses it left from and went to.
	From, To netip.AddrPort
	// SentAt is when the first copy was sent.
	SentAt time.Time
	// Copies is the number of copies of the datagram sent or scheduled:
	// the first and Config.Retransmits more (fewer if the socket stops).
	Copies int
	// Coalesced is true when this call sent nothing because a request
	// to the same device went out in the same second: the result is
	// that request's.
	Coalesced bool
}

// SendConnectionRequest sends a UDP connection request (TR-069 Annex G)
// from the served socket that has r.Local's address (bound to it, or a
// wildcard socket of its port, which then sets the source IP), and
// schedules Config.Retransmits copies of the same datagram (same ts, id,
// cn and sig, so the CPE sees duplicates, not new requests) spaced by
// Config.RetransmitDelay, then twice that.
//
// It never sends two distinct requests to one device within the same
// second: CPE agents require ts, in seconds, to increase strictly, and
// drop the second. A call for a device that already had a request in the
// current second (or a later one, should the clock step back) sends
// nothing and returns that request's result with Coalesced set; if that
// request is still being sent, it waits for it or for ctx.
//
// It returns ErrBadRequest for a request without a device id or usable
// addresses, ErrNoSocket when no served socket sends from r.Local, and an
// error wrapping ErrSend when the system refuses the datagram (a failed
// request is not coalesced with: the CPE got nothing).
func (s *Server) SendConnectionRequest(ctx context.Context, r CRRequest) (CRResult, error) {
	r.Local, r.Mapped = unmapAP(r.Local), unmapAP(r.Mapped)
	if r.DeviceID == "" || !usableSource(r.Mapped) || !r.Local.IsValid() || r.Local.Port() == 0 ||
		r.Local.Addr().IsUnspecified() || r.Local.Addr().IsMulticast() {
		s.m.crBadRequest.Inc()
		return CRResult{}, fmt.Errorf("%w: device %q, local %v, mapped %v", ErrBadRequest, r.DeviceID, r.Local, r.Mapped)
	}
	now := s.now()
	e, first := s.cr.claim(r.DeviceID, now.Unix())
	if !first {
		select {
		case <-e.done:
		case <-ctx.Done():
			return CRResult{}, ctx.Err()
		}
		s.m.crCoalesced.Inc()
		res := e.res
		res.Coalesced = true
		return res, e.err
	}
	e.res, e.err = s.sendCR(r, uint64(e.sec), now)
	if e.err != nil {
		s.cr.release(r.DeviceID, e)
	}
	close(e.done)
	return e.res, e.err
}

// sendCR builds, sends and schedules the copies of one request.
func (s *Server) sendCR(r CRRequest, ts uint64, now time.Time) (CRResult, error) {
	sk := s.socks.lookup(r.Local)
	if sk == nil || !sk.acquire() {
		s.m.crNoSocket.Inc()
		return CRResult{}, fmt.Errorf("%w: %v (device %q)", ErrNoSocket, r.Local, r.DeviceID)
	}
	req := stun.UDPConnectionRequest{
		Authority: r.Mapped.String(),
		Timestamp: ts,
		ID:        mrand.Uint32(),
		Username:  r.Username,
		CNonce:    cnonce(),
	}
	msg := stun.AppendUDPConnectionRequest(nil, &req, []byte(r.Password))
	if err := sk.writeMsg(msg, r.Mapped, r.Local.Addr()); err != nil {
		sk.wg.Done()
		s.m.crSendError.Inc()
		return CRResult{}, fmt.Errorf("%w: connection request to %v from %v (device %q): %w",
			ErrSend, r.Mapped, r.Local, r.DeviceID, err)
	}
	s.m.crSent.Inc()
	res := CRResult{
		Timestamp: ts,
		ID:        req.ID,
		CNonce:    req.CNonce,
		From:      r.Local,
		To:        r.Mapped,
		SentAt:    now,
		Copies:    1 + s.cfg.Retransmits,
	}
	if s.cfg.Retransmits == 0 {
		sk.wg.Done()
		return res, nil
	}
	if !sk.rtq.add(now, s.cfg.RetransmitDelay, msg, r.Mapped, r.Local.Addr()) {
		sk.wg.Done()
		res.Copies = 1
	}
	return res, nil
}

// cnonceAlphabet is the base32 alphabet (RFC 4648 6) of cn.
const cnonceAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// cnonce returns a request's cn: 16 base32 characters, 80 bits from
// math/rand/v2's global generator, which the runtime runs as a
// per-thread ChaCha8 seeded from the system's entropy: unpredictable to
// an observer, without the system call crypto/rand may cost per request.
func cnonce() string {
	var b [16]byte
	x, y := mrand.Uint64(), mrand.Uint64()
	for i := range 12 {
		b[i] = cnonceAlphabet[x&31]
		x >>= 5
	}
	for i := 12; i < 16; i++ {
		b[i] = cnonceAlphabet[y&31]
		y >>= 5
	}
	return string(b[:])
}

// crTable remembers, per device, the second of the last connection
// request, so that no two distinct ones go out in one second.
type crTable struct {
	mu    sync.Mutex
	m     map[string]*crEntry
	swept int64 // the second of the last sweep
}

type crEntry struct {
	sec  int64
	done chan struct{} // closed once res and err are set
	res  CRResult
	err  error
}

// claim returns the entry a request for device at second sec must use:
// a new one (first is true) that the caller fills and closes, or the
// entry of a request made in the same second or later.
func (t *crTable) claim(device string, sec int64) (e *crEntry, first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[device]; e != nil && sec <= e.sec {
		return e, false
	}
	if sec != t.swept {
		// Entries of past seconds can no longer coalesce anything; one
		// sweep a second keeps the table at one second of requests.
		for id, e := range t.m {
			if e.sec < sec {
				delete(t.m, id)
			}
		}
		t.swept = sec
	}
	e = &crEntry{sec: sec, done: make(chan struct{})}
	t.m[device] = e
	return e, true
}

// release forgets e, a request that was not sent, so that the next call
// tries again.
func (t *crTable) release(device string, e *crEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[device] == e {
		delete(t.m, device)
	}
}
