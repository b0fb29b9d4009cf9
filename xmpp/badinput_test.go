package xmpp

import (
	"context"
	"encoding/base64"
	"fmt"
	"github.com/crrelay/crrelay/internal/metrictest"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// bystander is a CPE whose session must survive whatever other clients do.
func bystander(t *testing.T, tb *testBroker) func() {
	startCPE(t, tb, "bystander", "cwmp", func(element) string { return "" })
	return func() {
		t.Helper()
		if r := tb.ConnectionRequest(context.Background(), "bystander@xmpp.test/cwmp", "u", "p"); r.Outcome != Delivered {
			t.Errorf("bystander: %+v", r)
		}
	}
}

func TestBadStanzas(t *testing.T) {
	tb := startBroker(t, func(c *Config) { c.MaxStanzaBytes = 4096 })
	check := bystander(t, tb)
	tb.accounts.set("bad@"+testDomain, creds(t, "pw"))
	for _, tc := range []struct{ name, send, cond string }{
		{"mismatched tags", `<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'></iq>`, "not-well-formed"},
		{"undefined entity", `<message to='a@xmpp.test'><body>&nope;</body></message>`, "not-well-formed"},
		{"text between stanzas", `hello<presence/>`, "not-well-formed"},
		{"comment", `<presence><!-- hi --></presence>`, "restricted-xml"},
		{"processing instruction", `<?xml version='1.0'?><presence/>`, "restricted-xml"},
		{"doctype", `<!DOCTYPE x [<!ENTITY a "aaaa">]><presence/>`, "restricted-xml"},
		{"oversized", `<message><body>` + strings.Repeat("x", 5000) + `</body></message>`, "policy-violation"},
		{"unknown top-level element", `<enable xmlns='urn:xmpp:sm:3'/>`, "unsupported-stanza-type"},
		{"wrong stanza namespace", `<iq xmlns='jabber:server' type='get' id='n'><ping xmlns='urn:xmpp:ping'/></iq>`, "invalid-namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, tb.addr, false)
			c.login("bad", "pw", "r")
			c.send("%s", tc.send)
			if cond := c.expectClosed(); cond != tc.cond {
				t.Errorf("stream error %q, want %q", cond, tc.cond)
			}
			check()
		})
	}
	if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_oversized_stanzas_total"); n != 1 {
		t.Errorf("oversized counted %v", n)
	}
	if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_stream_errors_total", "condition", "not-well-formed"); n != 3 {
		t.Errorf("not-well-formed counted %v", n)
	}
}

// A stanza that arrives a few bytes at a time, across many TLS records,
// is framed as one.
func TestStanzaInPieces(t *testing.T) {
	tb := startBroker(t, nil)
	tb.accounts.set("slow@"+testDomain, creds(t, "pw"))
	c := dial(t, tb.addr, false)
	c.login("slow", "pw", "r")
	s := `<iq type='get' id='pieces'><ping xmlns='urn:xmpp:ping'/></iq>`
	for i := 0; i < len(s); i += 3 {
		c.send("%s", s[i:min(i+3, len(s))])
	}
	if e := c.next(); e.attr("id") != "pieces" || e.attr("type") != "result" {
		t.Errorf("got %v", e.Attrs)
	}
}

func TestBadNegotiation(t *testing.T) {
	tb := startBroker(t, nil)
	check := bystander(t, tb)
	plain := base64.StdEncoding.EncodeToString([]byte("\x00bystander\x00pw-bystander"))
	for _, tc := range []struct {
		name   string
		direct bool
		steps  []step
		cond   string // expected stream error, "" for none
	}{
		{"not XML", false, []step{{send: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"}}, "not-well-formed"},
		{"wrong host", false, []step{{send: header("example.com")}}, "host-unknown"},
		{"wrong stream namespace", false, []step{{send: `<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='xmpp.test' version='1.0'>`}}, "invalid-namespace"},
		{"wrong content namespace", false, []step{{send: `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='xmpp.test' version='1.0'>`}}, "invalid-namespace"},
		{"auth before TLS", false, []step{
			{send: header(testDomain), want: "starttls"},
			{send: `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + plain + `</auth>`},
		}, "policy-violation"},
		{"stanza before auth", true, []step{
			{send: header(testDomain), want: "mechanisms"},
			{send: `<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`},
		}, "not-authorized"},
		{"unknown mechanism, bad encoding, channel binding, abort", true, []step{
			{send: header(testDomain), want: "mechanisms"},
			{send: `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>`, want: "invalid-mechanism"},
			{send: `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!!</auth>`, want: "incorrect-encoding"},
			{send: `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>` + base64.StdEncoding.EncodeToString([]byte("p=tls-unique,,n=bystander,r=abc")) + `</auth>`, want: "not-authorized"},
		}, "not-authorized"},
		{"abort and malformed", true, []step{
			{send: header(testDomain), want: "mechanisms"},
			{send: `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'/>`, want: "<challenge"},
			{send: `<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`, want: "aborted"},
			{send: `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>` + base64.StdEncoding.EncodeToString([]byte("n,,r=abc")) + `</auth>`, want: "malformed-request"},
			{send: `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + plain + `</auth>`, want: "success"},
			{send: header(testDomain), want: "bind"},
			{send: `<presence/>`},
		}, "not-authorized"},
		{"huge stream header", true, []step{
			{send: `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' x='` + strings.Repeat("a", 70000) + `'>`},
		}, "policy-violation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tb.addr
			if tc.direct {
				addr = tb.tlsAddr
			}
			c := dial(t, addr, tc.direct)
			for _, s := range tc.steps {
				c.send("%s", s.send)
				if s.want != "" {
					c.readUntil(s.want)
				}
			}
			if cond := c.readToEnd(); !strings.Contains(cond, tc.cond) {
				t.Errorf("got %q, want the stream error %q", cond, tc.cond)
			}
			check()
		})
	}
}

type step struct{ send, want string }

func header(to string) string {
	return `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + to + `' version='1.0'>`
}

// readUntil reads raw bytes until s has been seen.
func (c *client) readUntil(s string) string {
	c.t.Helper()
	var got []byte
	p := make([]byte, 4096)
	for !strings.Contains(string(got), s) {
		n, err := c.conn.Read(p)
		got = append(got, p[:n]...)
		if err != nil {
			c.t.Fatalf("reading until %q: got %q, %v", s, got, err)
		}
	}
	return string(got)
}

// readToEnd reads until the broker closes the connection.
func (c *client) readToEnd() string {
	c.t.Helper()
	b, err := io.ReadAll(c.conn)
	if err != nil && !isClosedErr(err) {
		c.t.Fatalf("reading to the end: %v (got %q)", err, b)
	}
	return string(b)
}

func TestSlowloris(t *testing.T) {
	tb := startBroker(t, func(c *Config) { c.NegotiationTimeout = 200 * time.Millisecond })
	check := bystander(t, tb)
	for _, tc := range []struct {
		name   string
		direct bool
		send   string
	}{
		{"half a header", false, `<stream:stream xmlns='jabber:client' to='xmpp`},
		{"nothing after TLS", true, ""},
		{"never starts TLS", true, "\x16\x03"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", map[bool]string{false: tb.addr, true: tb.tlsAddr}[tc.direct])
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := &client{t: t, raw: conn, conn: conn}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if tc.direct && tc.send == "" {
				c.startTLS()
			}
			if tc.send != "" {
				io.WriteString(c.conn, tc.send)
			}
			start := time.Now()
			c.readToEnd()
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("dropped after %v", d)
			}
		})
	}
	if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_connections_refused_total", "reason", "negotiation_timeout"); n != 3 {
		t.Errorf("negotiation timeouts counted %v", n)
	}
	check()
}

func TestTLSFailure(t *testing.T) {
	tb := startBroker(t, nil)
	conn, err := net.Dial("tcp", tb.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "<stream:stream>this is not TLS, but it is long enough to be read")
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(conn)
	if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_connections_refused_total", "reason", "tls_failure"); n != 1 {
		t.Errorf("TLS failures counted %v", n)
	}
}

func TestLimits(t *testing.T) {
	t.Run("max sessions", func(t *testing.T) {
		tb := startBroker(t, func(c *Config) { c.MaxSessions = 2 })
		startCPE(t, tb, "one", "r", func(element) string { return "" })
		startCPE(t, tb, "two", "r", func(element) string { return "" })
		conn, err := net.Dial("tcp", tb.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if b, _ := io.ReadAll(conn); len(b) != 0 {
			t.Errorf("third connection got %q", b)
		}
		if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_connections_refused_total", "reason", "max_sessions"); n != 1 {
			t.Errorf("refused max_sessions %v", n)
		}
	})
	t.Run("rate per IP", func(t *testing.T) {
		tb := startBroker(t, func(c *Config) { c.ConnRatePerIP, c.ConnBurstPerIP = 0.001, 2 })
		var conns []net.Conn
		for range 3 {
			conn, err := net.Dial("tcp", tb.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conns = append(conns, conn)
		}
		conns[2].SetDeadline(time.Now().Add(5 * time.Second))
		if b, _ := io.ReadAll(conns[2]); len(b) != 0 {
			t.Errorf("third connection got %q", b)
		}
		if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_connections_refused_total", "reason", "rate_per_ip"); n != 1 {
			t.Errorf("refused rate_per_ip %v", n)
		}
	})
	t.Run("read timeout", func(t *testing.T) {
		tb := startBroker(t, func(c *Config) { c.ReadTimeout = 150 * time.Millisecond })
		tb.accounts.set("idle@"+testDomain, creds(t, "pw"))
		c := dial(t, tb.addr, false)
		c.login("idle", "pw", "r")
		start := time.Now()
		if cond := c.expectClosed(); cond != "connection-timeout" {
			t.Errorf("closed with %q", cond)
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("closed after %v", d)
		}
		if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_read_timeouts_total"); n != 1 {
			t.Errorf("read timeouts %v", n)
		}
		if e := tb.sessions.wait(t); e != "up idle@xmpp.test/r" {
			t.Error(e)
		}
		if e := tb.sessions.wait(t); e != "down idle@xmpp.test/r read-timeout" {
			t.Error(e)
		}
	})
}

func TestShutdown(t *testing.T) {
	tb := startBroker(t, nil)
	tb.accounts.set("stay@"+testDomain, creds(t, "pw"))
	c := dial(t, tb.addr, false)
	c.login("stay", "pw", "r")
	neg := dial(t, tb.tlsAddr, true) // still negotiating
	tb.Close()
	if cond := c.expectClosed(); cond != "system-shutdown" {
		t.Errorf("closed with %q", cond)
	}
	neg.readToEnd()
	if r := tb.ConnectionRequest(context.Background(), "stay@xmpp.test/r", "u", "p"); r.Outcome != Offline {
		t.Errorf("after Close: %+v", r)
	}
	if n := tb.SessionCount(); n != 0 {
		t.Errorf("SessionCount %d after Close", n)
	}
	if err := tb.Serve(context.Background(), nil, false); err != ErrXmppClosed {
		t.Errorf("Serve after Close: %v", err)
	}
}

// Cancelling Serve's context closes the sessions it accepted and returns
// nil.
func TestServeContext(t *testing.T) {
	b, err := New(Config{Domain: testDomain, TLS: testTLS(t), Accounts: new(fakeAccounts), AuthFailureDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Serve(ctx, ln, false) }()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, header(testDomain))
	c := &client{t: t, raw: conn, conn: conn}
	c.readUntil("starttls")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve returned %v", err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	c.readToEnd()
}

// A client that sends but never reads is dropped, and no one waits on it
// meanwhile: the broker's writes to it never block, so other sessions
// are served while its backlog grows.
func TestClientThatNeverReads(t *testing.T) {
	tb := startBroker(t, func(c *Config) { c.WriteTimeout = 500 * time.Millisecond })
	check := bystander(t, tb)
	if e := tb.sessions.wait(t); e != "up bystander@xmpp.test/cwmp" {
		t.Fatalf("event %q", e)
	}
	tb.accounts.set("deaf@"+testDomain, creds(t, "pw"))
	c := dial(t, tb.addr, false)
	c.login("deaf", "pw", "r")
	if e := tb.sessions.wait(t); e != "up deaf@xmpp.test/r" {
		t.Fatalf("event %q", e)
	}
	c.raw.SetDeadline(time.Time{})
	// Pings, each answered, until the broker hangs up; never a read.
	stop := make(chan struct{})
	flooded := make(chan error, 1)
	go func() {
		ping := []byte(strings.Repeat(`<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>`, 100))
		for {
			select {
			case <-stop:
				flooded <- nil
				return
			default:
			}
			if _, err := c.conn.Write(ping); err != nil {
				flooded <- err
				return
			}
		}
	}()
	defer close(stop)
	for range 5 {
		check() // served while the deaf session is flooding
	}
	select {
	case e := <-tb.sessions.ch:
		if e != "down deaf@xmpp.test/r write-error" && e != "down deaf@xmpp.test/r write-timeout" {
			t.Fatalf("event %q", e)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a client that never reads was never dropped")
	}
	check()
}

// A client whose stanzas arrive in more TLS records than one turn reads
// (readTurn) has every one of them answered: its poller comes back to it.
func TestManyRecordsAnswered(t *testing.T) {
	tb := startBroker(t, nil)
	tb.accounts.set("chatty@"+testDomain, creds(t, "pw"))
	c := dial(t, tb.addr, false)
	c.login("chatty", "pw", "r")
	const n = 10 * readTurn
	for i := range n {
		c.send(`<iq type='get' id='r%d'><ping xmlns='urn:xmpp:ping'/></iq>`, i) // a record each
	}
	for i := range n {
		if e := c.next(); e.attr("id") != fmt.Sprintf("r%d", i) || e.attr("type") != "result" {
			t.Fatalf("answer %d: %v", i, e.Attrs)
		}
	}
}
