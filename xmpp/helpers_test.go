package xmpp

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crrelay/crrelay/internal/scramcred"
)

const testDomain = "xmpp.test"

var (
	certOnce sync.Once
	testCert tls.Certificate
)

func testTLS(t testing.TB) *tls.Config {
	certOnce.Do(func() {
		var err error
		testCert, _, _, err = selfSigned(testDomain)
		if err != nil {
			panic(err)
		}
	})
	return &tls.Config{Certificates: []tls.Certificate{testCert}}
}

// creds derives test credentials (few iterations: tests log in often).
func creds(t testing.TB, password string) scramcred.Credentials {
	t.Helper()
	c, err := scramcred.DeriveWith(password, []byte("salt-"+password), 64)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fakeAccounts is the CPE account store: a map, case-folded like the
// registry.
type fakeAccounts struct {
	mu sync.Mutex
	m  map[string]scramcred.Credentials
}

func (a *fakeAccounts) set(bare string, c scramcred.Credentials) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[string]scramcred.Credentials)
	}
	a.m[strings.ToLower(bare)] = c
}

func (a *fakeAccounts) XMPPCredentials(bare string) (scramcred.Credentials, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.m[strings.ToLower(bare)]
	return c, ok
}

// sessionLog records Sessions calls in order.
type sessionLog struct {
	mu     sync.Mutex
	events []string
	ch     chan string
}

func newSessionLog() *sessionLog { return &sessionLog{ch: make(chan string, 1000)} }

func (l *sessionLog) SessionUp(s SessionInfo) { l.add("up " + s.FullJID) }
func (l *sessionLog) SessionDown(s SessionInfo) {
	l.add("down " + s.FullJID + " " + s.Reason)
}

func (l *sessionLog) add(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	l.ch <- e
}

// wait returns the next event.
func (l *sessionLog) wait(t testing.TB) string {
	t.Helper()
	select {
	case e := <-l.ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no session event")
		return ""
	}
}

// testBroker is a broker serving STARTTLS and direct TLS on loopback.
type testBroker struct {
	*Broker
	accounts *fakeAccounts
	sessions *sessionLog
	reg      *prometheus.Registry
	addr     string // STARTTLS
	tlsAddr  string // direct TLS
}

func startBroker(t testing.TB, edit func(*Config)) *testBroker {
	t.Helper()
	tb := &testBroker{accounts: new(fakeAccounts), sessions: newSessionLog(), reg: prometheus.NewRegistry()}
	cfg := Config{
		Domain:           testDomain,
		TLS:              testTLS(t),
		Accounts:         tb.accounts,
		Sessions:         tb.sessions,
		ACSAccounts:      []ACSAccount{{JID: "acs@" + testDomain, Credentials: creds(t, "acs-pass")}},
		AuthFailureDelay: -1,
		ConnRatePerIP:    -1,
		Registerer:       tb.reg,
	}
	if edit != nil {
		edit(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tb.Broker = b
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, direct := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if direct {
			tb.tlsAddr = ln.Addr().String()
		} else {
			tb.addr = ln.Addr().String()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Serve(ctx, ln, direct); err != nil {
				t.Errorf("Serve: %v", err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		b.Close()
	})
	return tb
}

// element is a stanza or stream element as a test client reads it.
type element struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   string     `xml:",innerxml"`
}

func (e element) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// client is a raw XMPP client for tests: it speaks the protocol by hand,
// and reads with encoding/xml (not with the broker's framer).
type client struct {
	t      testing.TB
	raw    net.Conn
	conn   net.Conn
	d      *xml.Decoder
	jid    string // full JID once bound
	header xml.StartElement
}

// dial connects and reads up to the first features (after TLS).
func dial(t testing.TB, addr string, direct bool) *client {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	c := &client{t: t, raw: raw, conn: raw}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	if direct {
		c.startTLS()
	}
	return c
}

func (c *client) startTLS() {
	c.t.Helper()
	tc := tls.Client(c.raw, &tls.Config{ServerName: testDomain, InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn = tc
}

func (c *client) send(format string, args ...any) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, format, args...); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// open sends a stream header and reads the broker's header and features.
func (c *client) open() element {
	c.t.Helper()
	c.send(`<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`, testDomain)
	c.d = xml.NewDecoder(c.conn)
	for {
		tok, err := c.d.Token()
		if err != nil {
			c.t.Fatalf("reading stream header: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			c.header = se
			break
		}
	}
	f := c.next()
	if f.XMLName.Local != "features" {
		c.t.Fatalf("got %v, want features", f.XMLName)
	}
	return f
}

// next reads the next top-level element.
func (c *client) next() element {
	c.t.Helper()
	e, err := c.tryNext()
	if err != nil {
		c.t.Fatalf("reading: %v", err)
	}
	return e
}

func (c *client) tryNext() (element, error) {
	for {
		tok, err := c.d.Token()
		if err != nil {
			return element{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			var e element
			err := c.d.DecodeElement(&e, &t)
			return e, err
		case xml.EndElement:
			return element{}, io.EOF
		}
	}
}

// login negotiates TLS (unless done), PLAIN, and binds resource.
func (c *client) login(user, password, resource string) {
	c.t.Helper()
	f := c.open()
	if c.conn == c.raw {
		if !strings.Contains(f.Inner, "starttls") {
			c.t.Fatalf("no starttls in %s", f.Inner)
		}
		c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
		if e := c.next(); e.XMLName.Local != "proceed" {
			c.t.Fatalf("got %v, want proceed", e.XMLName)
		}
		c.startTLS()
		c.open()
	}
	if err := c.auth(user, password); err != nil {
		c.t.Fatal(err)
	}
	c.open()
	c.bind(resource)
	c.ping()
}

// ping pings the server and waits for the answer: a barrier, since the
// broker handles a session's stanzas in order.
func (c *client) ping() {
	c.t.Helper()
	c.send(`<iq type='get' id='barrier'><ping xmlns='urn:xmpp:ping'/></iq>`)
	for {
		e := c.next()
		if e.XMLName.Local == "iq" && e.attr("id") == "barrier" {
			if e.attr("type") != "result" {
				c.t.Fatalf("ping: %s", e.Inner)
			}
			return
		}
	}
}

// auth authenticates with PLAIN.
func (c *client) auth(user, password string) error {
	c.t.Helper()
	msg := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>`, msg)
	e := c.next()
	if e.XMLName.Local != "success" {
		return fmt.Errorf("auth: got <%s>%s", e.XMLName.Local, e.Inner)
	}
	return nil
}

func (c *client) bind(resource string) {
	c.t.Helper()
	c.send(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>%s</resource></bind></iq>`, resource)
	e := c.next()
	if e.attr("type") != "result" {
		c.t.Fatalf("bind: %s", e.Inner)
	}
	var r struct {
		JID string `xml:"bind>jid"`
	}
	if err := xml.Unmarshal([]byte("<iq>"+e.Inner+"</iq>"), &r); err != nil {
		c.t.Fatal(err)
	}
	c.jid = r.JID
}

// expectClosed reads until the broker closes the connection, returning
// the stream error condition, if any.
func (c *client) expectClosed() string {
	c.t.Helper()
	cond := ""
	for {
		e, err := c.tryNext()
		if err != nil {
			var se *xml.SyntaxError
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isClosedErr(err) && !errors.As(err, &se) {
				c.t.Fatalf("waiting for the stream to close: %v", err)
			}
			// The stream ended; wait for the socket to close too.
			if _, err := io.Copy(io.Discard, c.conn); err != nil && !isClosedErr(err) {
				c.t.Fatalf("waiting for the connection to close: %v", err)
			}
			return cond
		}
		if e.XMLName.Local == "error" && e.XMLName.Space == nsStream {
			var inner element
			xml.Unmarshal([]byte(e.Inner), &inner)
			cond = inner.XMLName.Local
		}
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}

// cpe is a test CPE agent: it logs in and answers connection requests
// with what answer returns ("" for a result).
type cpe struct {
	*client
	done chan struct{}
}

type answerFunc func(req element) string

func startCPE(t testing.TB, tb *testBroker, user, resource string, answer answerFunc) *cpe {
	t.Helper()
	tb.accounts.set(user+"@"+testDomain, creds(t, "pw-"+user))
	c := dial(t, tb.addr, false)
	c.login(user, "pw-"+user, resource)
	c.raw.SetDeadline(time.Time{})
	p := &cpe{client: c, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			e, err := c.tryNext()
			if err != nil {
				return
			}
			if e.XMLName.Local != "iq" || e.attr("type") != "get" {
				continue
			}
			reply := answer(e)
			if reply == "" {
				reply = fmt.Sprintf(`<iq type='result' id='%s' to='%s'/>`, e.attr("id"), e.attr("from"))
			}
			if _, err := io.WriteString(c.conn, reply); err != nil {
				return
			}
		}
	}()
	return p
}
