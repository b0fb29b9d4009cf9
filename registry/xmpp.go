package registry

import (
	"strings"
	"sync"
	"time"

	"github.com/crrelay/crrelay/internal/scramcred"
)

// The XMPP password (Annex K) is never stored: at every write a plain
// xmpp_password becomes salted SCRAM credentials (RFC 5802 3), from which
// the broker verifies SCRAM-SHA-1, SCRAM-SHA-256 and PLAIN logins. The
// Device's XMPPPassword field then holds their encoded form, sealed at
// rest like the other secrets. A value already in that form (the stored
// credentials a PATCH carries over, or ones an operator derived with
// `crrelay xmpp-credentials`) is kept as is and must decode.

// saltXMPPPassword replaces d's plain XMPP password by its credentials.
// It costs two PBKDF2 derivations (a few milliseconds) per new password.
func saltXMPPPassword(d *Device) error {
	p := d.XMPPPassword
	if p == "" {
		return nil
	}
	if scramcred.IsEncoded(p) {
		if _, err := scramcred.Parse(p); err != nil {
			return &FieldError{"xmpp_password", "starts like SCRAM credentials (scram1$) but does not decode as them"}
		}
		return nil
	}
	c, err := scramcred.Derive(p)
	if err != nil {
		return err
	}
	d.XMPPPassword = c.String()
	return nil
}

// XMPPCredentials returns the SCRAM credentials of the device whose
// xmpp_jid has the bare JID of jid (bare or full; compared as ByJID
// does). ok is false when no device has that JID or it has no XMPP
// password. It serves the broker's logins: a device registered or changed
// through the API can log in at once.
func (r *Registry) XMPPCredentials(jid string) (c scramcred.Credentials, ok bool) {
	if jid == "" {
		return c, false
	}
	k := jidKey(jid)
	r.mu.RLock()
	rec := r.idx.byJID(k)
	r.mu.RUnlock()
	if rec == nil {
		return c, false
	}
	c, err := scramcred.Parse(rec.field(fXMPPPassword))
	return c, err == nil
}

// XMPPSession is a CPE's session on the XMPP broker (Annex K), as the
// broker reports it. Sessions live in memory only: after a restart of the
// relay, CPEs log in again.
type XMPPSession struct {
	Online  bool
	FullJID string // the bound JID, resource included
	Remote  string // the CPE's ip:port as the broker sees it
	TLS     bool
	Since   time.Time // login (bind) time
	// EndedAt and EndReason describe the last session once it is over.
	EndedAt   time.Time
	EndReason string
}

// sessionTable holds the sessions by account (the bare JID's index key).
// A bare JID is one device's, so this is per device, whatever the resource.
type sessionTable struct {
	mu sync.Mutex
	m  map[string]XMPPSession
}

// XMPPSessionUp records that s.FullJID is online, replacing any earlier
// session of the same account (a CPE that reconnects). A device registered
// with a full JID is reached at that JID only, so another resource of its
// account is not its session and is not recorded; one registered with a
// bare JID is reached at its newest session, whatever the resource. It
// returns the device's id, or "" when the session is no device's.
func (r *Registry) XMPPSessionUp(s XMPPSession) (device string) {
	s.Online, s.EndedAt, s.EndReason = true, time.Time{}, ""
	r.mu.RLock()
	rec := r.idx.byJID(jidKey(s.FullJID))
	var registered string
	if rec != nil {
		registered, device = rec.field(fXMPPJID), rec.id()
	}
	r.mu.RUnlock()
	if _, res, full := strings.Cut(registered, "/"); full {
		if _, got, _ := strings.Cut(s.FullJID, "/"); got != res {
			return ""
		}
	}
	t := &r.sessions
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]XMPPSession{}
	}
	t.m[jidKey(s.FullJID)] = s
	return device
}

// XMPPSessionDown records the end of the session of fullJID, unless a
// newer session of the account replaced it already. It returns the
// device's id when it recorded the end, else "".
func (r *Registry) XMPPSessionDown(fullJID string, at time.Time, reason string) (device string) {
	t := &r.sessions
	t.mu.Lock()
	k := jidKey(fullJID)
	s, ok := t.m[k]
	if !ok || !s.Online || s.FullJID != fullJID {
		t.mu.Unlock()
		return ""
	}
	s.Online, s.EndedAt, s.EndReason = false, at, reason
	t.m[k] = s
	t.mu.Unlock()
	r.mu.RLock()
	defer r.mu.RUnlock()
	if rec := r.idx.byJID(k); rec != nil {
		return rec.id()
	}
	return ""
}

// XMPPSession returns the session (current, or the last one) of device
// id's XMPP account; ok is false if it never had one since the start.
func (r *Registry) XMPPSession(id string) (XMPPSession, bool) {
	r.mu.RLock()
	rec := r.idx.get(id)
	var jid string
	if rec != nil {
		jid = rec.field(fXMPPJID)
	}
	r.mu.RUnlock()
	if jid == "" {
		return XMPPSession{}, false
	}
	t := &r.sessions
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[jidKey(jid)]
	return s, ok
}
