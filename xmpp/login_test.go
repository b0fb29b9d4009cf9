package xmpp

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"github.com/crrelay/crrelay/internal/metrictest"
	"net"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// melliumLogin logs in with mellium's client: an implementation of
// STARTTLS, SCRAM and bind not written here.
func melliumLogin(t *testing.T, addr string, direct bool, full, password string, mech sasl.Mechanism) (*xmpp.Session, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tlsCfg := &tls.Config{ServerName: testDomain, InsecureSkipVerify: true}
	features := []xmpp.StreamFeature{xmpp.SASL("", password, mech), xmpp.BindResource()}
	var rw net.Conn = conn
	if direct {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			t.Fatal(err)
		}
		rw = tc
	} else {
		features = append([]xmpp.StreamFeature{xmpp.StartTLS(tlsCfg)}, features...)
	}
	return xmpp.NewClientSession(ctx, jid.MustParse(full), rw, features...)
}

func TestLoginMellium(t *testing.T) {
	tb := startBroker(t, nil)
	for _, direct := range []bool{false, true} {
		for _, mech := range []sasl.Mechanism{sasl.ScramSha1, sasl.ScramSha256, sasl.Plain} {
			name := "starttls/" + mech.Name
			if direct {
				name = "direct/" + mech.Name
			}
			t.Run(name, func(t *testing.T) {
				user := strings.ToLower(strings.ReplaceAll(name, "/", "-"))
				tb.accounts.set(user+"@"+testDomain, creds(t, "secret"))
				full := user + "@" + testDomain + "/cwmp"
				addr := tb.addr
				if direct {
					addr = tb.tlsAddr
				}
				s, err := melliumLogin(t, addr, direct, full, "secret", mech)
				if err != nil {
					t.Fatalf("login: %v", err)
				}
				// mellium v0.23.0's client sends an empty <resource/>
				// (bindPayload writes the JID, not the resource), so the
				// broker picks one; TestBindExactResource checks binding
				// the requested one.
				bound := s.LocalAddr().String()
				if !strings.HasPrefix(bound, user+"@"+testDomain+"/") {
					t.Errorf("bound %s, want %s/...", bound, user+"@"+testDomain)
				}
				full = bound
				if e := tb.sessions.wait(t); e != "up "+full {
					t.Errorf("session event %q", e)
				}
				info, ok := tb.Online(full)
				if !ok || info.FullJID != full || info.BareJID != user+"@"+testDomain || !info.TLS || info.Remote == "" {
					t.Errorf("Online: %+v %v", info, ok)
				}
				if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_auth_total", "mechanism", mech.Name, "result", "success"); n < 1 {
					t.Errorf("auth success count %v", n)
				}
				s.Close()
				if e := tb.sessions.wait(t); e != "down "+full+" closed" {
					t.Errorf("session event %q", e)
				}
			})
		}
	}
}

func TestLoginACSWithSCRAM(t *testing.T) {
	tb := startBroker(t, nil)
	s, err := melliumLogin(t, tb.addr, false, "acs@"+testDomain+"/crrelay", "acs-pass", sasl.ScramSha256)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := metrictest.Value(t, tb.reg, "crrelay_xmpp_sessions", "kind", "acs"); got != 1 {
		// The gauge moves just after the bind result; ping to be sure.
		c := dial(t, tb.addr, false)
		c.login("acs", "acs-pass", "other")
		if got := metrictest.Value(t, tb.reg, "crrelay_xmpp_sessions", "kind", "acs"); got < 1 {
			t.Errorf("acs sessions %v", got)
		}
	}
}

func TestWrongPassword(t *testing.T) {
	const delay = 50 * time.Millisecond
	tb := startBroker(t, func(c *Config) { c.AuthFailureDelay = delay })
	tb.accounts.set("cpe@"+testDomain, creds(t, "right"))

	t.Run("scram", func(t *testing.T) {
		start := time.Now()
		if _, err := melliumLogin(t, tb.addr, false, "cpe@"+testDomain+"/x", "wrong", sasl.ScramSha256); err == nil {
			t.Fatal("login with a wrong password succeeded")
		}
		if d := time.Since(start); d < delay {
			t.Errorf("failure answered after %v, want at least %v", d, delay)
		}
		if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_auth_total", "mechanism", "SCRAM-SHA-256", "result", "failure"); n != 1 {
			t.Errorf("failures counted: %v", n)
		}
	})

	t.Run("plain, then locked out", func(t *testing.T) {
		c := dial(t, tb.tlsAddr, true)
		c.open()
		for i := range maxAuthAttempts {
			start := time.Now()
			msg := base64.StdEncoding.EncodeToString([]byte("\x00cpe\x00wrong"))
			c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>`, msg)
			e := c.next()
			if e.XMLName.Local != "failure" || !strings.Contains(e.Inner, "<not-authorized") {
				t.Fatalf("attempt %d: <%s>%s", i, e.XMLName.Local, e.Inner)
			}
			if d := time.Since(start); d < delay {
				t.Errorf("failure answered after %v, want at least %v", d, delay)
			}
		}
		if cond := c.expectClosed(); cond != "not-authorized" {
			t.Errorf("stream error %q, want not-authorized", cond)
		}
		if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_auth_total", "mechanism", "PLAIN", "result", "failure"); n != maxAuthAttempts {
			t.Errorf("failures counted: %v", n)
		}
		if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_connections_refused_total", "reason", "auth_failure"); n != 1 {
			t.Errorf("refused auth_failure: %v", n)
		}
	})

	t.Run("unknown user", func(t *testing.T) {
		if _, err := melliumLogin(t, tb.addr, false, "nobody@"+testDomain+"/x", "x", sasl.ScramSha1); err == nil {
			t.Fatal("unknown user logged in")
		}
	})
}

func TestAccountAddedAfterStart(t *testing.T) {
	tb := startBroker(t, nil)
	c := dial(t, tb.tlsAddr, true)
	c.open()
	if err := c.auth("late", "pw"); err == nil {
		t.Fatal("login before the account existed")
	}
	tb.accounts.set("late@"+testDomain, creds(t, "pw"))
	if err := c.auth("late", "pw"); err != nil {
		t.Fatalf("login right after the account was added: %v", err)
	}
	// A changed password applies to the next login at once too.
	tb.accounts.set("late@"+testDomain, creds(t, "new"))
	c2 := dial(t, tb.tlsAddr, true)
	c2.open()
	if err := c2.auth("late", "pw"); err == nil {
		t.Fatal("old password still accepted")
	}
	if err := c2.auth("late", "new"); err != nil {
		t.Fatal(err)
	}
}

func TestBindExactResource(t *testing.T) {
	tb := startBroker(t, nil)
	for _, tc := range []struct{ user, resource, want string }{
		{"cpe-0001", "cwmp", "cpe-0001@xmpp.test/cwmp"},
		{"CPE-0002", "CWMP Agent/1.0", "CPE-0002@xmpp.test/CWMP Agent/1.0"},
	} {
		tb.accounts.set(tc.user+"@"+testDomain, creds(t, "pw"))
		c := dial(t, tb.addr, false)
		c.login(tc.user, "pw", tc.resource)
		if c.jid != tc.want {
			t.Errorf("bound %q, want %q", c.jid, tc.want)
		}
		if _, ok := tb.Online(strings.ToLower(tc.want)); !ok && !strings.Contains(tc.want, " ") {
			t.Errorf("%s not found case-insensitively", tc.want)
		}
		if _, ok := tb.Online(tc.want); !ok {
			t.Errorf("%s not online", tc.want)
		}
	}
	// No resource asked for: the broker makes one up.
	tb.accounts.set("plain@"+testDomain, creds(t, "pw"))
	c := dial(t, tb.tlsAddr, true)
	c.open()
	if err := c.auth("plain", "pw"); err != nil {
		t.Fatal(err)
	}
	c.open()
	c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`)
	e := c.next()
	if e.attr("type") != "result" || !strings.Contains(e.Inner, "plain@xmpp.test/crrelay-") {
		t.Errorf("bind without resource: %s", e.Inner)
	}
}

func TestSameFullJIDReplaces(t *testing.T) {
	tb := startBroker(t, nil)
	tb.accounts.set("cpe@"+testDomain, creds(t, "pw"))
	old := dial(t, tb.addr, false)
	old.login("cpe", "pw", "cwmp")
	if e := tb.sessions.wait(t); e != "up cpe@xmpp.test/cwmp" {
		t.Fatal(e)
	}
	p := startCPE(t, tb, "cpe", "cwmp", func(element) string { return "" })
	if cond := old.expectClosed(); cond != "conflict" {
		t.Errorf("old session closed with %q, want conflict", cond)
	}
	want := []string{"down cpe@xmpp.test/cwmp replaced", "up cpe@xmpp.test/cwmp"}
	for _, w := range want {
		if e := tb.sessions.wait(t); e != w {
			t.Errorf("event %q, want %q", e, w)
		}
	}
	if r := tb.ConnectionRequest(context.Background(), "cpe@xmpp.test/cwmp", "u", "p"); r.Outcome != Delivered {
		t.Errorf("request to the new session: %+v", r)
	}
	if n := tb.SessionCount(); n != 1 {
		t.Errorf("SessionCount %d", n)
	}
	_ = p
}
