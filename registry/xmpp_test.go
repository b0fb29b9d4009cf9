package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestXMPPCredentials(t *testing.T) {
	r := open(t, newMemStore())
	d := testDevice(1)
	d.XMPPJID = "CPE-1@xmpp.example.net/cwmp"
	d.XMPPPassword = "s3cret"
	saved := mustPut(t, r, d)
	if saved.XMPPPassword == "s3cret" || !strings.HasPrefix(saved.XMPPPassword, "scram1$") {
		t.Fatalf("stored XMPP password %q: not salted", saved.XMPPPassword)
	}
	for _, jid := range []string{"cpe-1@xmpp.example.net", "CPE-1@XMPP.example.net/other", "cpe-1@xmpp.example.net/cwmp"} {
		c, ok := r.XMPPCredentials(jid)
		if !ok || !c.VerifyPlain("s3cret") || c.VerifyPlain("S3cret") {
			t.Errorf("%s: credentials %v", jid, ok)
		}
	}
	if _, ok := r.XMPPCredentials("cpe-2@xmpp.example.net"); ok {
		t.Error("credentials for an unknown JID")
	}
	if _, ok := r.XMPPCredentials(""); ok {
		t.Error("credentials for an empty JID")
	}

	// A change of another field keeps the credentials as they were.
	u, err := r.Update(context.Background(), d.ID, func(d *Device) error { d.Username = "other"; return nil })
	if err != nil || u.XMPPPassword != saved.XMPPPassword {
		t.Fatalf("update changed the credentials: %v", err)
	}
	// A new password is salted anew.
	if _, err := r.Update(context.Background(), d.ID, func(d *Device) error { d.XMPPPassword = "n3w"; return nil }); err != nil {
		t.Fatal(err)
	}
	if c, _ := r.XMPPCredentials(d.XMPPJID); !c.VerifyPlain("n3w") || c.VerifyPlain("s3cret") {
		t.Error("new password not in effect")
	}
	// Credentials given as such are kept; a value that only looks like
	// them is refused.
	d2 := testDevice(2)
	if got := mustPut(t, r, d2); got.XMPPPassword != testXMPPCredentials {
		t.Error("given credentials were not kept")
	}
	d2.XMPPPassword = "scram1$not-really"
	var fe *FieldError
	if _, _, err := r.Put(context.Background(), d2); !errors.As(err, &fe) || fe.Field != "xmpp_password" {
		t.Errorf("Put with malformed credentials: %v", err)
	}
	// No password: no credentials, the JID alone does not log in.
	d3 := testDevice(3)
	d3.XMPPPassword = ""
	mustPut(t, r, d3)
	if _, ok := r.XMPPCredentials(d3.XMPPJID); ok {
		t.Error("credentials for a device without an XMPP password")
	}
}

func TestXMPPSessions(t *testing.T) {
	r := open(t, newMemStore())
	d := testDevice(1) // cpe1@xmpp.example.net/cr
	mustPut(t, r, d)
	if _, ok := r.XMPPSession(d.ID); ok {
		t.Fatal("session before any login")
	}
	t0 := time.Unix(1000, 0)
	r.XMPPSessionUp(XMPPSession{FullJID: "CPE1@xmpp.example.net/cr", Remote: "192.0.2.1:4000", TLS: true, Since: t0})
	s, ok := r.XMPPSession(d.ID)
	if !ok || !s.Online || s.FullJID != "CPE1@xmpp.example.net/cr" || !s.TLS || !s.Since.Equal(t0) {
		t.Fatalf("session %+v %v", s, ok)
	}
	// Another resource of the account is not the device's session (it is
	// registered with the full JID .../cr): neither its start nor its end
	// changes what the device shows.
	r.XMPPSessionUp(XMPPSession{FullJID: "cpe1@xmpp.example.net/other", Since: t0.Add(time.Second)})
	r.XMPPSessionDown("cpe1@xmpp.example.net/other", t0.Add(2*time.Second), "closed")
	if s, _ := r.XMPPSession(d.ID); !s.Online || s.FullJID != "CPE1@xmpp.example.net/cr" {
		t.Fatalf("another resource came and went: %+v", s)
	}
	// A new session of the same full JID replaces the first; the first's
	// end changes nothing.
	r.XMPPSessionUp(XMPPSession{FullJID: "cpe1@xmpp.example.net/cr", Since: t0.Add(time.Second)})
	r.XMPPSessionDown("CPE1@xmpp.example.net/cr", t0.Add(2*time.Second), "replaced")
	if s, _ := r.XMPPSession(d.ID); !s.Online || s.FullJID != "cpe1@xmpp.example.net/cr" {
		t.Fatalf("after the old session ended: %+v", s)
	}
	r.XMPPSessionDown("cpe1@xmpp.example.net/cr", t0.Add(3*time.Second), "read timeout")
	if s, _ := r.XMPPSession(d.ID); s.Online || s.EndReason != "read timeout" || !s.EndedAt.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("after the end: %+v", s)
	}
	// A device registered with a bare JID shows its newest session,
	// whatever the resource.
	bare := testDevice(2)
	bare.XMPPJID = "cpe2@xmpp.example.net"
	mustPut(t, r, bare)
	r.XMPPSessionUp(XMPPSession{FullJID: "cpe2@xmpp.example.net/a", Since: t0})
	r.XMPPSessionUp(XMPPSession{FullJID: "cpe2@xmpp.example.net/b", Since: t0})
	if s, _ := r.XMPPSession(bare.ID); !s.Online || s.FullJID != "cpe2@xmpp.example.net/b" {
		t.Fatalf("bare JID device: %+v", s)
	}
	// Unknown accounts and devices without a JID have none.
	if _, ok := r.XMPPSession("nope"); ok {
		t.Error("session for an unknown device")
	}
}
