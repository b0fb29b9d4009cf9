package xmpp

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// naiveACS talks like a common open-source ACS's XMPP client: plain TCP,
// STARTTLS only because it is required, PLAIN, bind only because bind is
// marked required, no presence, its IQ sent from its bare JID, and a
// parser that looks for literal strings.
type naiveACS struct {
	t    *testing.T
	conn net.Conn
	buf  []byte
}

func (a *naiveACS) write(s string) {
	a.t.Helper()
	if _, err := a.conn.Write([]byte(s)); err != nil {
		a.t.Fatal(err)
	}
}

// waitFor reads until the text received (since the last call) contains
// all of want, and returns it.
func (a *naiveACS) waitFor(want ...string) string {
	a.t.Helper()
	p := make([]byte, 4096)
	for {
		s := string(a.buf)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(s, w)
		}
		if ok {
			a.buf = a.buf[:0]
			return s
		}
		n, err := a.conn.Read(p)
		if err != nil {
			a.t.Fatalf("waiting for %q in %q: %v", want, s, err)
		}
		a.buf = append(a.buf, p[:n]...)
	}
}

func (a *naiveACS) openStream() string {
	a.write(`<?xml version="1.0"?><stream:stream to="xmpp.test" xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" version="1.0">`)
	return a.waitFor("<stream:stream", "stream:features", "</stream:features>")
}

func TestNaiveACSWakesCPE(t *testing.T) {
	tb := startBroker(t, nil)
	reqs := make(chan element, 1)
	startCPE(t, tb, "cpe-0001", "cwmp", func(e element) string {
		reqs <- e
		return ""
	})

	conn, err := net.Dial("tcp", tb.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	a := &naiveACS{t: t, conn: conn}
	f := a.openStream()
	if !regexp.MustCompile(`<starttls[^>]*>\s*<required/>`).MatchString(f) {
		t.Fatalf("STARTTLS not required: %s", f)
	}
	a.write(`<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>`)
	a.waitFor("<proceed")
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	a.conn = tc
	f = a.openStream()
	if !strings.Contains(f, "<mechanism>PLAIN</mechanism>") {
		t.Fatalf("no PLAIN: %s", f)
	}
	a.write(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">` +
		base64.StdEncoding.EncodeToString([]byte("\x00acs\x00acs-pass")) + `</auth>`)
	a.waitFor("<success")
	f = a.openStream()
	if !regexp.MustCompile(`<bind[^>]*>\s*<required/>`).MatchString(f) {
		t.Fatalf("bind not marked required; this ACS would not bind: %s", f)
	}
	a.write(`<iq type="set" id="bind_1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><resource>acs</resource></bind></iq>`)
	a.waitFor(`bind_1`, `</iq>`)

	a.write(`<iq type="get" from="acs@xmpp.test" to="cpe-0001@xmpp.test/cwmp" id="cr001">` +
		`<connectionRequest xmlns="urn:broadband-forum-org:cwmp:xmppConnReq-1-0"><username>u</username><password>p</password></connectionRequest></iq>`)
	got := a.waitFor(`cr001`, `/>`)
	if !strings.Contains(got, `type="result"`) && !strings.Contains(got, `type='result'`) {
		t.Fatalf("answer: %s", got)
	}
	if !strings.Contains(got, `from="cpe-0001@xmpp.test/cwmp"`) {
		t.Errorf("answer not stamped with the CPE's JID: %s", got)
	}
	e := <-reqs
	if e.attr("from") != "acs@xmpp.test/acs" {
		t.Errorf("CPE saw the request from %q, want the ACS's full JID", e.attr("from"))
	}
}

func TestRoutingPolicy(t *testing.T) {
	tb := startBroker(t, nil)
	victim := make(chan element, 10)
	startCPE(t, tb, "victim", "cwmp", func(e element) string {
		victim <- e
		return ""
	})
	tb.accounts.set("evil@"+testDomain, creds(t, "pw"))
	evil := dial(t, tb.addr, false)
	evil.login("evil", "pw", "cwmp")

	// CPE to CPE: refused, and nothing is delivered.
	evil.send(`<iq type='get' to='victim@xmpp.test/cwmp' id='e1'><connectionRequest xmlns='urn:broadband-forum-org:cwmp:xmppConnReq-1-0'/></iq>`)
	if e := evil.next(); e.attr("type") != "error" || e.attr("id") != "e1" || !strings.Contains(e.Inner, "service-unavailable") || e.attr("from") != "victim@xmpp.test/cwmp" {
		t.Errorf("CPE to CPE IQ: %v %s", e.Attrs, e.Inner)
	}
	evil.send(`<message to='victim@xmpp.test/cwmp' id='m1'><body>hi</body></message>`)
	if e := evil.next(); e.XMLName.Local != "message" || e.attr("type") != "error" || !strings.Contains(e.Inner, "service-unavailable") {
		t.Errorf("CPE to CPE message: %v %s", e.Attrs, e.Inner)
	}
	// Presence, broadcast or directed: swallowed. A result nobody asked
	// for: dropped. The ping is a barrier: the broker handled all of
	// them before answering it.
	evil.send(`<presence/><presence to='victim@xmpp.test/cwmp'/><presence to='victim@xmpp.test' type='subscribe'/>`)
	evil.send(`<iq type='result' to='victim@xmpp.test/cwmp' id='r1'/>`)
	evil.ping()
	// So the first thing the victim gets now is the relay's request.
	if r := tb.ConnectionRequest(context.Background(), "victim@xmpp.test/cwmp", "u", "p"); r.Outcome != Delivered {
		t.Fatalf("request: %+v", r)
	}
	if e := <-victim; e.attr("from") != "crrelay@xmpp.test/relay" {
		t.Errorf("victim first got %v %s", e.Attrs, e.Inner)
	}

	// The ACS: its forged from is replaced, and the answer comes back.
	acs := dial(t, tb.tlsAddr, true)
	acs.login("acs", "acs-pass", "main")
	acs.send(`<iq type='get' from='someone@else/x' to='victim@xmpp.test/cwmp' id='a1'><connectionRequest xmlns='urn:broadband-forum-org:cwmp:xmppConnReq-1-0'/></iq>`)
	if e := <-victim; e.attr("from") != "acs@xmpp.test/main" || e.attr("id") != "a1" {
		t.Errorf("victim got %v", e.Attrs)
	}
	if e := acs.next(); e.attr("type") != "result" || e.attr("id") != "a1" || e.attr("from") != "victim@xmpp.test/cwmp" || e.attr("to") != "acs@xmpp.test/main" {
		t.Errorf("ACS got %v %s", e.Attrs, e.Inner)
	}
	// To an offline CPE: service-unavailable, from the CPE's address.
	acs.send(`<iq type='get' to='gone@xmpp.test/cwmp' id='a2'><connectionRequest xmlns='urn:broadband-forum-org:cwmp:xmppConnReq-1-0'/></iq>`)
	if e := acs.next(); e.attr("type") != "error" || !strings.Contains(e.Inner, "service-unavailable") || e.attr("from") != "gone@xmpp.test/cwmp" {
		t.Errorf("offline: %v %s", e.Attrs, e.Inner)
	}
	// Nor may an ACS reach the relay, itself or another ACS.
	acs.send(`<iq type='get' to='crrelay@xmpp.test/relay' id='a3'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if e := acs.next(); e.attr("type") != "error" || !strings.Contains(e.Inner, "service-unavailable") {
		t.Errorf("to the relay: %v %s", e.Attrs, e.Inner)
	}
	// A forged answer from the CPE, to a request it never got: dropped.
	evil.send(`<iq type='result' to='acs@xmpp.test/main' id='a2'/>`)
	evil.ping()
	acs.ping()
}

func TestServerIQs(t *testing.T) {
	tb := startBroker(t, nil)
	tb.accounts.set("agent@"+testDomain, creds(t, "pw"))
	c := dial(t, tb.addr, false)
	c.login("agent", "pw", "cwmp")
	for _, tc := range []struct {
		name, send, wantType, wantIn string
	}{
		{"ping", `<iq type='get' id='s2c1' to='xmpp.test'><ping xmlns='urn:xmpp:ping'/></iq>`, "result", ""},
		{"ping again, same id", `<iq type='get' id='s2c1' to='xmpp.test'><ping xmlns='urn:xmpp:ping'/></iq>`, "result", ""},
		{"ping without to", `<iq type='get' id='p3'><ping xmlns='urn:xmpp:ping'/></iq>`, "result", ""},
		{"legacy session", `<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`, "result", ""},
		{"roster", `<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>`, "result", "jabber:iq:roster"},
		{"disco", `<iq type='get' id='d' to='xmpp.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, "result", "urn:xmpp:ping"},
		{"unknown namespace", `<iq type='get' id='u'><query xmlns='urn:example:unknown'/></iq>`, "error", "service-unavailable"},
		{"no payload", `<iq type='get' id='n'/>`, "error", "bad-request"},
		{"bad type", `<iq type='fetch' id='t'><ping xmlns='urn:xmpp:ping'/></iq>`, "error", "bad-request"},
		{"message to server", `<message id='m' to='xmpp.test'><body>x</body></message>`, "error", "service-unavailable"},
	} {
		c.send("%s", tc.send)
		e := c.next()
		if e.attr("type") != tc.wantType || !strings.Contains(e.Inner, tc.wantIn) || e.attr("to") != c.jid || e.attr("from") == "" {
			t.Errorf("%s: %v %s", tc.name, e.Attrs, e.Inner)
		}
	}
	// Whitespace keepalives between stanzas are fine.
	c.send("  \n\t ")
	c.ping()
}

// TestManyAnswersToOneACS: an ACS pipelining connection requests to many
// CPEs at once gets every answer, whole and once, though the answers are
// written to its session concurrently (and combined into fewer writes).
func TestManyAnswersToOneACS(t *testing.T) {
	tb := startBroker(t, nil)
	const cpes, perCPE = 12, 25
	for i := range cpes {
		startCPE(t, tb, fmt.Sprintf("cpe-%04d", i), "cwmp", func(element) string { return "" })
	}
	acs := dial(t, tb.addr, false)
	acs.login("acs", "acs-pass", "load")
	var sb strings.Builder
	for n := range cpes * perCPE {
		fmt.Fprintf(&sb, `<iq type="get" to="cpe-%04d@xmpp.test/cwmp" id="q%d"><connectionRequest xmlns="urn:broadband-forum-org:cwmp:xmppConnReq-1-0"><username>u</username><password>p</password></connectionRequest></iq>`, n%cpes, n)
	}
	acs.send("%s", sb.String())
	seen := map[string]bool{}
	for range cpes * perCPE {
		e := acs.next()
		id := e.attr("id")
		if e.XMLName.Local != "iq" || e.attr("type") != "result" || seen[id] {
			t.Fatalf("answer %d: %+v (seen %v)", len(seen), e, seen[id])
		}
		seen[id] = true
	}
}
