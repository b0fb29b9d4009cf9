package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/crrelay/crrelay/internal/nbio"
)

// The client side of an XMPP stream (RFC 6120) as CPE agents negotiate
// it, shared by the simulated CPEs and the simulated ACS: TCP, then TLS
// (STARTTLS, or direct TLS from the first byte, XEP-0368), SASL, resource
// binding, and the legacy session IQ for servers that still ask for it.
//
// The stream is hand-written on top of xmpp_wire.go rather than a
// mellium.im/xmpp client Session: a mellium session keeps an XML decoder
// with its bufio.Reader, an encoder and their goroutines per stream,
// where a fleet of 20,000 CPEs needs each idle session to be no more than
// its tls.Conn, a 512-byte read buffer and one parked goroutine.
// mellium.im/xmpp/jid is used for JIDs.

var (
	// ErrXMPPNoTLS: the server offers no STARTTLS and the client insists
	// on TLS (UseTLS).
	ErrXMPPNoTLS = errors.New("sim: XMPP server offers no STARTTLS")
	// ErrXMPPMechanism: the server does not offer the configured SASL
	// mechanism.
	ErrXMPPMechanism = errors.New("sim: XMPP server does not offer the SASL mechanism")
	// ErrXMPPAuth: SASL authentication failed (wrapped with the failure
	// condition), or the server's SCRAM signature did not verify.
	ErrXMPPAuth = errors.New("sim: XMPP authentication failed")
	// ErrXMPPBind: the server refused to bind the resource, or offered no
	// binding.
	ErrXMPPBind = errors.New("sim: XMPP resource binding failed")
	// ErrXMPPClosed: the server closed the stream or the connection.
	ErrXMPPClosed = errors.New("sim: XMPP stream closed")
	// ErrXMPPProtocol: the server sent something out of order.
	ErrXMPPProtocol = errors.New("sim: XMPP protocol violation by the server")
)

// XMPPStreamError is a stream error the server sent (RFC 6120 4.9)
// before closing the stream.
type XMPPStreamError struct {
	Condition string // the defined condition, such as "conflict"
	Text      string // the optional <text/>
}

func (e *XMPPStreamError) Error() string {
	if e.Text != "" {
		return "sim: XMPP stream error " + e.Condition + ": " + e.Text
	}
	return "sim: XMPP stream error " + e.Condition
}

// xmppLogin is how to open one client stream.
type xmppLogin struct {
	server, domain       string
	user, pass, resource string
	directTLS, useTLS    bool
	polled               bool // read by a fleet's pollers once bound
	tls                  *tls.Config
	mech                 XMPPMechanism
	salts                *saltCache
	dial                 func(ctx context.Context, network, address string) (net.Conn, error)
	maxStanza            int
}

// xmppStream is a negotiated client stream, bound to a resource.
type xmppStream struct {
	conn net.Conn // the TLS connection once TLS is up, else TCP
	rd   *streamReader
	jid  string // the full JID the server bound
	tls  bool
	pc   *pollConn // under TLS, when a poller is to read the session
}

// write sends b as one Write, so stanzas written by several goroutines
// never interleave: net.Conn and tls.Conn serialize Writes.
func (s *xmppStream) write(b []byte) error {
	_, err := s.conn.Write(b)
	return err
}

// readElement returns the next top-level element. A stream error, the
// stream's close and a closed connection end the stream with an error.
func (s *xmppStream) readElement() (*element, error) {
	raw, kind, err := s.rd.next()
	if err != nil {
		if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %v", ErrXMPPClosed, err)
		}
		return nil, err
	}
	switch kind {
	case itemStreamClose:
		return nil, ErrXMPPClosed
	case itemStreamOpen:
		return nil, fmt.Errorf("%w: stream header within the stream", ErrXMPPProtocol)
	}
	e, err := parseElement(raw, s.rd.scope)
	if err != nil {
		return nil, err
	}
	if e.is(nsStream, "error") {
		se := &XMPPStreamError{Condition: "undefined-condition"}
		for _, c := range e.children {
			if c.space == nsStreams {
				if c.local == "text" {
					se.Text = c.text
				} else {
					se.Condition = c.local
				}
			}
		}
		return nil, se
	}
	return e, nil
}

// bufPool holds the buffers stanzas are built in.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// openXMPP dials and negotiates a stream as l says. Cancelling ctx aborts
// it; the caller sets no deadline.
func openXMPP(ctx context.Context, l *xmppLogin) (*xmppStream, error) {
	conn, err := l.dial(ctx, "tcp", l.server)
	if err != nil {
		return nil, err
	}
	conn = nbio.WrapConn(conn)
	var pc *pollConn
	if l.polled {
		if pc = pollable(conn); pc != nil {
			conn = pc
		}
	}
	s := &xmppStream{conn: conn, pc: pc}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err = s.negotiate(ctx, l)
	if !stop() || err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return s, nil
}

func (s *xmppStream) negotiate(ctx context.Context, l *xmppLogin) error {
	if l.directTLS {
		if err := s.startTLS(ctx, l); err != nil {
			return err
		}
	}
	s.rd = newStreamReader(s.conn, l.maxStanza)
	feats, err := s.restart(l.domain)
	if err != nil {
		return err
	}

	// RFC 6120 5: STARTTLS when the server requires it, or whenever
	// offered if the client insists on TLS (TR-181 UseTLS).
	if !s.tls {
		st := feats.child(nsTLS, "starttls")
		switch {
		case st != nil && (l.useTLS || st.child(nsTLS, "required") != nil):
			if err := s.write([]byte("<starttls xmlns='" + nsTLS + "'/>")); err != nil {
				return err
			}
			e, err := s.readElement()
			if err != nil {
				return err
			}
			if !e.is(nsTLS, "proceed") {
				return fmt.Errorf("%w: <%s/> in answer to STARTTLS", ErrXMPPProtocol, e.local)
			}
			if s.rd.buffered() > 0 {
				// RFC 6120 5.4.3.3: nothing may follow <proceed/> in the clear.
				return fmt.Errorf("%w: data after <proceed/>", ErrXMPPProtocol)
			}
			if err := s.startTLS(ctx, l); err != nil {
				return err
			}
			if feats, err = s.restart(l.domain); err != nil {
				return err
			}
		case l.useTLS:
			return ErrXMPPNoTLS
		}
	}

	if err := s.authenticate(feats, l); err != nil {
		return err
	}
	if feats, err = s.restart(l.domain); err != nil {
		return err
	}
	return s.bind(feats, l)
}

func (s *xmppStream) startTLS(ctx context.Context, l *xmppLogin) error {
	if s.pc != nil {
		s.pc.records.Restart() // TLS records start here (STARTTLS)
	}
	tc := tls.Client(s.conn, l.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("sim: XMPP TLS: %w", err)
	}
	s.conn, s.tls = tc, true
	return nil
}

// restart opens a stream (RFC 6120 4.2), at the start or after STARTTLS
// or SASL (RFC 6120 5.4.3.3, 6.4.6), and reads the server's header and
// features.
func (s *xmppStream) restart(domain string) (*element, error) {
	s.rd.reset(s.conn)
	b := []byte("<?xml version='1.0'?><stream:stream to='")
	b = appendEscaped(b, domain)
	b = append(b, "' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"...)
	if err := s.write(b); err != nil {
		return nil, err
	}
	if _, kind, err := s.rd.next(); err != nil {
		return nil, err
	} else if kind != itemStreamOpen {
		return nil, fmt.Errorf("%w: no stream header", ErrXMPPProtocol)
	}
	e, err := s.readElement()
	if err != nil {
		return nil, err
	}
	if !e.is(nsStream, "features") {
		return nil, fmt.Errorf("%w: <%s/> instead of stream features", ErrXMPPProtocol, e.local)
	}
	return e, nil
}

// authenticate runs SASL (RFC 6120 6) with l's mechanism.
func (s *xmppStream) authenticate(feats *element, l *xmppLogin) error {
	offered := false
	if ms := feats.child(nsSASL, "mechanisms"); ms != nil {
		for _, m := range ms.children {
			if m.is(nsSASL, "mechanism") && m.text == string(l.mech) {
				offered = true
			}
		}
	}
	if !offered {
		return fmt.Errorf("%w: %s", ErrXMPPMechanism, l.mech)
	}
	var scram *scramClient
	var first []byte
	if l.mech == MechPLAIN {
		first = plainMessage(l.user, l.pass)
	} else {
		scram = newSCRAMClient(l.mech, l.user, l.pass, l.salts)
		first = scram.first()
	}
	if err := s.write(saslElement("auth", string(l.mech), first)); err != nil {
		return err
	}
	answered := false
	for {
		e, err := s.readElement()
		if err != nil {
			return err
		}
		if e.space != nsSASL {
			return fmt.Errorf("%w: <%s/> during SASL", ErrXMPPProtocol, e.local)
		}
		data, err := saslData(e.text)
		if err != nil {
			return err
		}
		switch e.local {
		case "challenge":
			if scram == nil {
				return fmt.Errorf("%w: challenge to PLAIN", ErrXMPPProtocol)
			}
			var resp []byte
			if !answered {
				if resp, err = scram.final(data); err != nil {
					s.write([]byte("<abort xmlns='" + nsSASL + "'/>"))
					return fmt.Errorf("%w: %w", ErrXMPPAuth, err)
				}
				answered = true
			} else if err := scram.verify(data); err != nil {
				// The server-final-message as a challenge (RFC 6120 6.3.10
				// lets it travel in <success/> instead).
				return fmt.Errorf("%w: %w", ErrXMPPAuth, err)
			} else {
				scram = nil // verified: expect <success/>
			}
			if err := s.write(saslElement("response", "", resp)); err != nil {
				return err
			}
		case "success":
			if scram != nil {
				if err := scram.verify(data); err != nil {
					return fmt.Errorf("%w: %w", ErrXMPPAuth, err)
				}
			}
			return nil
		case "failure":
			cond := "failure"
			if c := e.firstChild(); c != nil {
				cond = c.local
			}
			return fmt.Errorf("%w: %s", ErrXMPPAuth, cond)
		default:
			return fmt.Errorf("%w: <%s/> during SASL", ErrXMPPProtocol, e.local)
		}
	}
}

func saslElement(name, mech string, data []byte) []byte {
	b := append([]byte("<"), name...)
	b = append(b, " xmlns='"+nsSASL+"'"...)
	if mech != "" {
		b = append(b, " mechanism='"...)
		b = append(b, mech...)
		b = append(b, '\'')
	}
	switch {
	case data == nil:
		return append(b, "/>"...)
	case len(data) == 0:
		b = append(b, "=</"...) // RFC 6120 6.4.2: "=" is an empty response
	default:
		b = append(b, '>')
		b = base64.StdEncoding.AppendEncode(b, data)
		b = append(b, "</"...)
	}
	b = append(b, name...)
	return append(b, '>')
}

// saslData decodes the base64 payload of a SASL element; "=" and nothing
// are both empty.
func saslData(s string) ([]byte, error) {
	s = string(bytes.TrimSpace([]byte(s)))
	if s == "" || s == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: bad base64 in SASL", ErrXMPPProtocol)
	}
	return b, nil
}

// bind binds l.resource (RFC 6120 7), then opens the legacy session
// (RFC 3921 3) when the server lists it without <optional/>, as old
// agents do.
func (s *xmppStream) bind(feats *element, l *xmppLogin) error {
	if feats.child(nsBind, "bind") == nil {
		return fmt.Errorf("%w: no <bind/> feature", ErrXMPPBind)
	}
	b := []byte("<iq type='set' id='bind1'><bind xmlns='" + nsBind + "'>")
	if l.resource != "" {
		b = append(b, "<resource>"...)
		b = appendEscaped(b, l.resource)
		b = append(b, "</resource>"...)
	}
	b = append(b, "</bind></iq>"...)
	if err := s.write(b); err != nil {
		return err
	}
	res, err := s.awaitIQ("bind1")
	if err != nil {
		return err
	}
	if res.attr("type") != "result" {
		return fmt.Errorf("%w: %s", ErrXMPPBind, stanzaCondition(res))
	}
	if j := res.child(nsBind, "bind").childOrNil(nsBind, "jid"); j != nil {
		s.jid = strings.Clone(j.text) // kept for the session: not the whole stanza
	}
	if s.jid == "" {
		return fmt.Errorf("%w: no JID in the answer", ErrXMPPBind)
	}
	if sess := feats.child(nsSession, "session"); sess != nil && sess.child(nsSession, "optional") == nil {
		if err := s.write([]byte("<iq type='set' id='sess1'><session xmlns='" + nsSession + "'/></iq>")); err != nil {
			return err
		}
		if res, err = s.awaitIQ("sess1"); err != nil {
			return err
		}
		if res.attr("type") != "result" {
			return fmt.Errorf("%w: session: %s", ErrXMPPBind, stanzaCondition(res))
		}
	}
	return nil
}

// awaitIQ reads until the answer to IQ id, skipping anything else.
func (s *xmppStream) awaitIQ(id string) (*element, error) {
	for {
		e, err := s.readElement()
		if err != nil {
			return nil, err
		}
		if e.is(nsClient, "iq") && e.attr("id") == id {
			if t := e.attr("type"); t == "result" || t == "error" {
				return e, nil
			}
		}
	}
}

func (e *element) childOrNil(space, local string) *element {
	if e == nil {
		return nil
	}
	return e.child(space, local)
}

// stanzaCondition returns the defined condition of an error stanza
// (RFC 6120 8.3), whatever its spelling, or "" when there is none.
func stanzaCondition(e *element) string {
	if er := e.child(e.space, "error"); er != nil {
		for _, c := range er.children {
			if c.space == nsStanzas && c.local != "text" {
				return c.local
			}
		}
		return "undefined-condition"
	}
	return ""
}
