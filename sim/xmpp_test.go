package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// xmppTestbed is a Prosody with an ACS account and an outsider account
// logged in, and helpers to run CPEs against it.
type xmppTestbed struct {
	t        *testing.T
	p        *prosodyServer
	acs      *XMPPACS // acs@sim.example/acs
	outsider *XMPPACS // other@sim.example/acs: not in any allow-list
}

func newXMPPTestbed(t *testing.T) *xmppTestbed {
	t.Helper()
	p := startProsody(t)
	p.addAccount(t, "acs", "acs-pass")
	p.addAccount(t, "other", "other-pass")
	b := &xmppTestbed{t: t, p: p}
	b.acs = b.dialACS("acs", "acs-pass")
	b.outsider = b.dialACS("other", "other-pass")
	return b
}

func (b *xmppTestbed) dialACS(user, pass string) *XMPPACS {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a, err := DialXMPPACS(ctx, XMPPACSConfig{
		Server: b.p.addr, Domain: testDomain, Username: user, Password: pass, TLSConfig: b.p.tls,
	})
	if err != nil {
		b.t.Fatalf("ACS %s: %v", user, err)
	}
	b.t.Cleanup(func() { a.Close() })
	return a
}

// runCPE creates the CPE's account, runs it, and returns once it is
// online, with a channel of its wakes.
func (b *xmppTestbed) runCPE(cfg XMPPCPEConfig) (*XMPPCPE, <-chan string) {
	b.t.Helper()
	if cfg.Server == "" {
		cfg.Server = b.p.addr
	}
	cfg.Domain = testDomain
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = b.p.tls
	}
	b.p.addAccount(b.t, cfg.Name, cfg.Password)
	online := make(chan string, 4)
	wakes := make(chan string, 16)
	cfg.OnOnline = func(_, j string, _ time.Time) { online <- j }
	cfg.OnWake = func(name string, _ time.Time) { wakes <- name }
	c, err := NewXMPPCPE(cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	c.events = make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	b.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.t.Errorf("Run: %v", err)
		}
	})
	select {
	case j := <-online:
		if j != c.ConnReqJID() {
			b.t.Fatalf("bound %q, want %q", j, c.ConnReqJID())
		}
	case err := <-done:
		b.t.Fatalf("Run returned early: %v", err)
	case <-time.After(testTimeout):
		b.t.Fatalf("CPE never online: %+v", c.Counters())
	}
	return c, wakes
}

func (b *xmppTestbed) wake(a *XMPPACS, to, user, pass string) XMPPIQResult {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r, err := a.ConnectionRequest(ctx, to, user, pass)
	if err != nil {
		b.t.Fatalf("connection request to %s: %v", to, err)
	}
	return r
}

func TestXMPPCPEAnswersConnectionRequests(t *testing.T) {
	b := newXMPPTestbed(t)
	cases := []struct {
		name      string
		cfg       XMPPCPEConfig
		directTLS bool
	}{
		{"STARTTLS, SCRAM-SHA-1", XMPPCPEConfig{Mechanism: MechSCRAMSHA1}, false},
		{"STARTTLS, PLAIN, UseTLS", XMPPCPEConfig{Mechanism: MechPLAIN, UseTLS: true}, false},
		{"direct TLS, SCRAM-SHA-1, ping keepalives", XMPPCPEConfig{Keepalive: KeepalivePing}, true},
		{"legacy errors", XMPPCPEConfig{LegacyErrors: true}, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b.t = t
			cfg := tc.cfg
			cfg.Name = "cpe-" + string(rune('a'+i))
			cfg.Password = "xmpp-secret-" + cfg.Name
			cfg.CRUsername, cfg.CRPassword = "cr-user", "cr-pass <&>"
			cfg.AllowedJIDs = []string{"acs@" + testDomain}
			if tc.directTLS {
				cfg.Server, cfg.DirectTLS = b.p.tlsAddr, true
			}
			c, wakes := b.runCPE(cfg)
			to := c.ConnReqJID()

			r := b.wake(b.acs, to, "cr-user", "cr-pass <&>")
			if !r.OK() || r.From != to {
				t.Fatalf("right credentials: %+v", r)
			}
			select {
			case name := <-wakes:
				if name != cfg.Name {
					t.Errorf("OnWake(%q)", name)
				}
			default:
				t.Error("OnWake not called before the answer")
			}

			wantAuth, wantType := "not-authorized", "auth"
			if cfg.LegacyErrors {
				wantAuth, wantType = "not-autorized", "cancel"
			}
			r = b.wake(b.acs, to, "cr-user", "wrong")
			if r.Type != "error" || r.Condition != wantAuth || r.ErrorType != wantType || r.Echo != cfg.LegacyErrors {
				t.Errorf("wrong password: %+v", r)
			}
			r = b.wake(b.outsider, to, "cr-user", "cr-pass <&>")
			if r.Type != "error" || r.Condition != "service-unavailable" || r.ErrorType != "cancel" || r.Echo != cfg.LegacyErrors {
				t.Errorf("sender not allowed: %+v", r)
			}

			cc := c.Counters()
			if cc.CRAccepted != 1 || cc.CRNotAuthorized != 1 || cc.CRNotAllowed != 1 || cc.CRNoFrom != 0 {
				t.Errorf("counters %+v", cc)
			}
			if cc.LastWakeFrom != b.acs.JID() || !cc.Online || cc.JID != to || cc.Logins != 1 || cc.OtherResource != 0 {
				t.Errorf("counters %+v", cc)
			}
		})
	}
}

// The CPE never answers pings; it answers other requests it does not
// understand service-unavailable (RFC 6120 8.4).
func TestXMPPCPEIgnoresPings(t *testing.T) {
	b := newXMPPTestbed(t)
	c, _ := b.runCPE(XMPPCPEConfig{Name: "quiet", Password: "p", Keepalive: KeepaliveNone})

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := b.acs.iq(ctx, "get", c.ConnReqJID(), []byte("<ping xmlns='urn:xmpp:ping'/>"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ping answered: %v", err)
	}
	if ev := <-c.events; ev != "ping-ignored" {
		t.Errorf("event %q", ev)
	}

	ctx, cancel = context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r, err := b.acs.iq(ctx, "get", c.ConnReqJID(), []byte("<query xmlns='jabber:iq:version'/>"))
	if err != nil || r.Condition != "service-unavailable" || r.ErrorType != "cancel" {
		t.Errorf("version query: %+v, %v", r, err)
	}
	if cc := c.Counters(); cc.PingsIgnored != 1 || cc.OtherIQs != 1 || cc.Keepalives != 0 {
		t.Errorf("counters %+v", cc)
	}
}

func TestXMPPCPEKeepalives(t *testing.T) {
	b := newXMPPTestbed(t)
	for _, k := range []XMPPKeepalive{KeepalivePingS2C1, KeepalivePing, KeepaliveWhitespace} {
		t.Run(string(k), func(t *testing.T) {
			b.t = t
			c, _ := b.runCPE(XMPPCPEConfig{Name: "ka-" + string(k), Password: "p", Keepalive: k, KeepAlive: 10 * time.Millisecond})
			want := map[string]int{"keepalive": 3}
			if k != KeepaliveWhitespace {
				want["pong"] = 3 // Prosody answers pings to itself
			}
			got := map[string]int{}
			timeout := time.After(testTimeout)
			for got["keepalive"] < want["keepalive"] || got["pong"] < want["pong"] {
				select {
				case ev := <-c.events:
					got[ev]++
				case <-timeout:
					t.Fatalf("events %v, counters %+v", got, c.Counters())
				}
			}
		})
	}
}

// A dropped session is reopened, with the same resource.
func TestXMPPCPEReconnects(t *testing.T) {
	b := newXMPPTestbed(t)
	px := newCutProxy(t, b.p.addr)
	p := b.p
	p.addAccount(t, "phoenix", "p")
	online := make(chan string, 4)
	c, err := NewXMPPCPE(XMPPCPEConfig{
		Name: "phoenix", Password: "p", Server: px.addr(), Domain: testDomain, TLSConfig: p.tls,
		RetryInitial: 20 * time.Millisecond,
		OnOnline:     func(_, j string, _ time.Time) { online <- j },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for round := range 3 {
		select {
		case j := <-online:
			if j != c.ConnReqJID() {
				t.Fatalf("round %d: bound %q", round, j)
			}
		case <-time.After(testTimeout):
			t.Fatalf("round %d: not online: %+v", round, c.Counters())
		}
		px.cut()
	}
	if cc := c.Counters(); cc.Logins != 3 || cc.Drops < 2 {
		t.Errorf("counters %+v", cc)
	}
	if err := c.Run(ctx); !errors.Is(err, ErrXMPPBusy) {
		t.Errorf("second Run: %v", err)
	}
}

// Wrong account passwords fail SASL, and are counted.
func TestXMPPCPEAuthFailure(t *testing.T) {
	p := startProsody(t)
	p.addAccount(t, "locked", "right")
	for _, m := range []XMPPMechanism{MechSCRAMSHA1, MechPLAIN} {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		_, err := DialXMPPACS(ctx, XMPPACSConfig{Server: p.addr, Domain: testDomain, Username: "locked", Password: "wrong", Mechanism: m, TLSConfig: p.tls})
		cancel()
		if !errors.Is(err, ErrXMPPAuth) {
			t.Errorf("%s: %v", m, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := DialXMPPACS(ctx, XMPPACSConfig{Server: p.addr, Domain: testDomain, Username: "locked", Password: "right", Mechanism: MechSCRAMSHA256, TLSConfig: p.tls}); !errors.Is(err, ErrXMPPMechanism) {
		t.Errorf("SCRAM-SHA-256, which internal_hashed does not offer: %v", err)
	}
}

func TestXMPPAllowedSender(t *testing.T) {
	allowed := []string{"acs@example.net", "relay@example.net/crrelay", "ExAmple.org"}
	cases := []struct {
		from string
		want bool
	}{
		{"acs@example.net/any", true},
		{"acs@example.net", true},
		{"ACS@Example.NET/x", true}, // PRECIS case folding of the localpart and domain
		{"relay@example.net/crrelay", true},
		{"relay@example.net/other", false},
		{"relay@example.net", false},
		{"example.org", true},
		{"example.org/res", true}, // a bare JID, if only a domain, matches any resource
		{"eve@example.net/acs", false},
		{"", false},
		{"@@bad", false},
	}
	c, err := NewXMPPCPE(XMPPCPEConfig{Name: "x", Server: "127.0.0.1:1", Domain: "example.net", AllowedJIDs: allowed})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		if got := c.allowedSender(tc.from); got != tc.want {
			t.Errorf("from %q: allowed %v", tc.from, got)
		}
	}
	anyone, _ := NewXMPPCPE(XMPPCPEConfig{Name: "y", Server: "127.0.0.1:1", Domain: "example.net"})
	if !anyone.allowedSender("") || !anyone.allowedSender("x@y/z") {
		t.Error("an empty list must allow anyone")
	}
	if _, err := jid.Parse("ExAmple.org"); err != nil {
		t.Fatal(err)
	}
}

func TestXMPPCPEConfigErrors(t *testing.T) {
	ok := XMPPCPEConfig{Name: "x", Server: "127.0.0.1:5222", Domain: "example.net"}
	cases := []struct {
		name string
		edit func(*XMPPCPEConfig)
		want error
	}{
		{"bad name", func(c *XMPPCPEConfig) { c.Name = "a b" }, ErrBadName},
		{"no server", func(c *XMPPCPEConfig) { c.Server = "" }, ErrNoXMPPServer},
		{"no domain", func(c *XMPPCPEConfig) { c.Domain = "" }, ErrBadXMPPDomain},
		{"bad localpart", func(c *XMPPCPEConfig) { c.Username = "a@b" }, ErrBadXMPPAccount},
		{"mechanism", func(c *XMPPCPEConfig) { c.Mechanism = "DIGEST-MD5" }, ErrUnknownMechanism},
		{"keepalive", func(c *XMPPCPEConfig) { c.Keepalive = "tcp" }, ErrUnknownKeepalive},
		{"allowed", func(c *XMPPCPEConfig) { c.AllowedJIDs = []string{"a@b@c"} }, ErrBadAllowedJID},
		{"timers", func(c *XMPPCPEConfig) { c.RetryMultiplier = 0.5 }, ErrBadXMPPTimers},
	}
	for _, tc := range cases {
		cfg := ok
		tc.edit(&cfg)
		if _, err := NewXMPPCPE(cfg); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := NewXMPPCPE(ok); err != nil {
		t.Error(err)
	}
}

func TestXMPPRetryWait(t *testing.T) {
	c, err := NewXMPPCPE(XMPPCPEConfig{Name: "x", Server: "h:1", Domain: "d", RetryInitial: time.Second, RetryMax: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for n, bound := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 40: 5 * time.Second} {
		var top time.Duration
		for range 200 {
			w := c.retryWait(n)
			if w < 0 || w > bound {
				t.Fatalf("attempt %d: wait %v beyond [0, %v]", n, w, bound)
			}
			top = max(top, w)
		}
		if top < bound/2 {
			t.Errorf("attempt %d: longest of 200 waits %v, bound %v", n, top, bound)
		}
	}
}

// cutProxy relays TCP connections to a server and cuts them all on
// demand, as a NAT losing its state.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Go(func() { io.Copy(s, c); s.Close() })
			p.wg.Go(func() { io.Copy(c, s); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// The answers on the wire, byte for byte, to requests as a server
// delivers them.
func TestXMPPCPEAnswerBytes(t *testing.T) {
	const req = "<iq xml:lang='en' from='acs@sim.example/acs' id='cr1' to='cpe@sim.example/cwmp' type='get'>" +
		"<connectionRequest xmlns='urn:broadband-forum-org:cwmp:xmppConnReq-1-0'><username>u</username>" +
		"<password>%s</password></connectionRequest></iq>"
	echo := "<connectionRequest xmlns='urn:broadband-forum-org:cwmp:xmppConnReq-1-0'><username>u</username><password>bad</password></connectionRequest>"
	cases := []struct {
		name   string
		legacy bool
		allow  []string
		in     string
		want   string
	}{
		{"accepted", false, []string{"acs@sim.example"}, fmt.Sprintf(req, "p&amp;"),
			"<iq type='result' id='cr1' to='acs@sim.example/acs'/>"},
		{"wrong password", false, nil, fmt.Sprintf(req, "bad"),
			"<iq type='error' id='cr1' to='acs@sim.example/acs'><error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"wrong password, legacy", true, nil, fmt.Sprintf(req, "bad"),
			"<iq type='error' id='cr1' to='acs@sim.example/acs'>" + echo + "<error type='cancel'><not-autorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"sender not allowed", false, []string{"acs@sim.example/other"}, fmt.Sprintf(req, "p&amp;"),
			"<iq type='error' id='cr1' to='acs@sim.example/acs'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"no from", false, []string{"acs@sim.example"},
			"<iq id='x' type='get'><connectionRequest xmlns='urn:broadband-forum-org:cwmp:xmppConnReq-1-0'><username>u</username><password>p&amp;</password></connectionRequest></iq>",
			"<iq type='error' id='x'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"set, not get", false, nil, "<iq id='s' type='set' from='a@b/c'><connectionRequest xmlns='urn:broadband-forum-org:cwmp:xmppConnReq-1-0'/></iq>",
			"<iq type='error' id='s' to='a@b/c'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewXMPPCPE(XMPPCPEConfig{Name: "cpe", Server: "h:1", Domain: testDomain, CRUsername: "u", CRPassword: "p&",
				AllowedJIDs: tc.allow, LegacyErrors: tc.legacy})
			if err != nil {
				t.Fatal(err)
			}
			ours, theirs := net.Pipe()
			defer ours.Close()
			defer theirs.Close()
			s := &cpeSession{c: c, st: &xmppStream{conn: ours}}
			e, err := parseElement([]byte(tc.in), &nsScope{space: nsClient})
			if err != nil {
				t.Fatal(err)
			}
			go s.stanza(e)
			buf := make([]byte, 1024)
			n, err := theirs.Read(buf)
			if err != nil || string(buf[:n]) != tc.want {
				t.Errorf("answer\n%s\nwant\n%s", buf[:n], tc.want)
			}
			if cc := c.Counters(); (cc.CRNoFrom == 1) != (tc.name == "no from") {
				t.Errorf("counters %+v", cc)
			}
		})
	}
}

func TestXMPPTextValues(t *testing.T) {
	var m XMPPMechanism
	if err := m.UnmarshalText([]byte("scram-sha-256")); err != nil || m != MechSCRAMSHA256 {
		t.Errorf("mechanism %q, %v", m, err)
	}
	if err := m.UnmarshalText([]byte("DIGEST-MD5")); !errors.Is(err, ErrUnknownMechanism) {
		t.Errorf("DIGEST-MD5: %v", err)
	}
	var k XMPPKeepalive
	if err := k.UnmarshalText([]byte("ping-s2c1")); err != nil || k != KeepalivePingS2C1 {
		t.Errorf("keepalive %q, %v", k, err)
	}
	if err := k.UnmarshalText([]byte("tcp")); !errors.Is(err, ErrUnknownKeepalive) {
		t.Errorf("tcp: %v", err)
	}
}
