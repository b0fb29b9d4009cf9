package xmpp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Namespaces.
const (
	nsClient    = "jabber:client"
	nsStream    = "http://etherx.jabber.org/streams"
	nsTLS       = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL      = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind      = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession   = "urn:ietf:params:xml:ns:xmpp-session"
	nsStreamErr = "urn:ietf:params:xml:ns:xmpp-streams"
	nsStanzaErr = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsPing      = "urn:xmpp:ping"
	nsRoster    = "jabber:iq:roster"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	nsConnReq   = "urn:broadband-forum-org:cwmp:xmppConnReq-1-0"
)

// streamError is a stream error condition (RFC 6120 4.9.3) the broker
// ends a stream with.
type streamError string

func (e streamError) Error() string { return "xmpp: stream error " + string(e) }

const (
	seBadFormat             streamError = "bad-format"
	seConflict              streamError = "conflict"
	seConnectionTimeout     streamError = "connection-timeout"
	seHostUnknown           streamError = "host-unknown"
	seInvalidNamespace      streamError = "invalid-namespace"
	seNotAuthorized         streamError = "not-authorized"
	seNotWellFormed         streamError = "not-well-formed"
	sePolicyViolation       streamError = "policy-violation"
	seRestrictedXML         streamError = "restricted-xml"
	seSystemShutdown        streamError = "system-shutdown"
	seUnsupportedStanzaType streamError = "unsupported-stanza-type"
	seUnsupportedVersion    streamError = "unsupported-version"
)

// Errors that end a negotiation without a stream error of ours.
var (
	errStreamClosed = errors.New("xmpp: client closed the stream")
	errAuthFailed   = errors.New("xmpp: too many failed authentications")
)

// tlsError marks a failed TLS handshake.
type tlsError struct{ err error }

func (e tlsError) Error() string { return "xmpp: TLS handshake: " + e.err.Error() }
func (e tlsError) Unwrap() error { return e.err }

// maxAuthAttempts: RFC 6120 6.4.5 asks for at least 2 and at most 5
// retries before the stream is closed with not-authorized.
const maxAuthAttempts = 3

// negBufSize is the read buffer of a negotiation; TLS records are read
// through it in pieces.
const negBufSize = 2048

var negBufs = sync.Pool{New: func() any { b := make([]byte, negBufSize); return &b }}

// negotiation is one client's way from TCP connection to bound resource
// (RFC 6120 4 to 7): stream header, STARTTLS (unless the connection
// started with TLS), SASL, stream restarts, resource binding.
//
// It is written here rather than with mellium.im/xmpp's Negotiator,
// though that package is the model for it (and the client these tests
// log in with). Three things decided it: the SASL feature had to be
// custom anyway (mellium's SASLServer cannot serve SCRAM from stored
// keys); binding had to be custom (bind exactly the requested resource,
// list it as required); and the handover to the poller must know which
// bytes were consumed, while mellium's session decodes through an
// xml.Decoder that wraps a non-ByteReader (the tls.Conn that its STARTTLS
// feature creates) in a bufio.Reader, which may hold the client's first
// stanzas when negotiation ends. Here every byte read goes through one
// byteReader whose remainder moves on: to TLS after STARTTLS, to the
// session after bind.
type negotiation struct {
	b    *Broker
	ctx  context.Context
	conn net.Conn
	nb   *nbConn
	tc   *tls.Conn
	w    io.Writer // conn before TLS, tc after
	r    byteReader
	bufp *[]byte
	d    *xml.Decoder

	header   bool   // a stream header was sent on the current stream
	peer     string // the 'from' of the client's header, echoed as 'to'
	user     string // the localpart, once authenticated
	kind     kind
	failures int
}

func (b *Broker) newNegotiation(ctx context.Context, conn net.Conn, nb *nbConn) *negotiation {
	n := &negotiation{b: b, ctx: ctx, conn: conn, nb: nb, w: conn}
	n.bufp = negBufs.Get().(*[]byte)
	n.r.buf = *n.bufp
	n.r.reset(nb)
	return n
}

// release returns the read buffer; call it once the remainder is copied.
func (n *negotiation) release() {
	if n.bufp != nil {
		negBufs.Put(n.bufp)
		n.bufp, n.r.buf, n.d = nil, nil, nil
	}
}

// run negotiates until a resource is bound, returning the full JID and
// the bytes that followed the bind request.
func (n *negotiation) run(direct bool) (full string, addr address, err error) {
	if direct {
		if err := n.startTLS(); err != nil {
			return "", address{}, err
		}
	}
	for {
		if err := n.readHeader(); err != nil {
			return "", address{}, n.fail(err)
		}
		switch {
		case n.tc == nil:
			// RFC 6120 5.3.1: STARTTLS is mandatory-to-negotiate here,
			// and nothing else is offered before it.
			err = n.sendFeatures(`<starttls xmlns='` + nsTLS + `'><required/></starttls>`)
			if err == nil {
				err = n.negotiateTLS()
			}
		case n.user == "":
			var f strings.Builder
			f.WriteString(`<mechanisms xmlns='` + nsSASL + `'>`)
			for _, m := range mechanisms {
				f.WriteString(`<mechanism>` + m + `</mechanism>`)
			}
			f.WriteString(`</mechanisms>`)
			err = n.sendFeatures(f.String())
			if err == nil {
				err = n.authenticate()
			}
		default:
			// Bind is listed as required (RFC 6120 7.2; a common ACS
			// binds only then); the legacy session feature (RFC 3921 3)
			// as optional, for old agents that still send it.
			err = n.sendFeatures(`<bind xmlns='` + nsBind + `'><required/></bind>` +
				`<session xmlns='` + nsSession + `'><optional/></session>`)
			if err == nil {
				full, addr, err = n.bind()
				if err == nil {
					return full, addr, nil
				}
			}
		}
		if err != nil {
			return "", address{}, n.fail(err)
		}
	}
}

// fail sends the stream error err names, if any, and returns err.
func (n *negotiation) fail(err error) error {
	var se streamError
	if errors.As(err, &se) {
		n.b.m.streamErrs.WithLabelValues(string(se)).Inc()
		var b []byte
		if !n.header {
			b = n.appendHeader(b)
		}
		b = appendStreamError(b, se)
		_, _ = n.w.Write(b)
	}
	return err
}

func appendStreamError(b []byte, se streamError) []byte {
	b = append(b, `<stream:error><`...)
	b = append(b, se...)
	b = append(b, ` xmlns='`+nsStreamErr+`'/></stream:error></stream:stream>`...)
	return b
}

// readHeader reads the client's stream header (RFC 6120 4.7), starting a
// new XML document on the bytes not consumed yet.
func (n *negotiation) readHeader() error {
	n.header = false
	n.r.limit(n.b.cfg.MaxStanzaBytes)
	// Something that is not XML at all (an HTTP request, say) would have
	// the decoder wait for a '<' that never comes.
	for {
		c, err := n.r.ReadByte()
		if err != nil {
			return n.xmlError(err)
		}
		if c == '<' {
			n.r.UnreadByte()
			break
		}
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return seNotWellFormed
		}
	}
	n.d = xml.NewDecoder(&n.r)
	for {
		tok, err := n.d.Token()
		if err != nil {
			return n.xmlError(err)
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" {
				return seRestrictedXML
			}
		case xml.CharData:
			if len(strings.TrimSpace(string(t))) > 0 {
				return seNotWellFormed
			}
		case xml.StartElement:
			return n.checkHeader(t)
		default:
			return seRestrictedXML
		}
	}
}

func (n *negotiation) checkHeader(t xml.StartElement) error {
	if t.Name.Local != "stream" {
		return seBadFormat
	}
	if t.Name.Space != nsStream {
		return seInvalidNamespace
	}
	n.peer = ""
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			if a.Value != nsClient {
				return seInvalidNamespace
			}
		case a.Name.Space == "" && a.Name.Local == "to":
			to, err := parseJID(a.Value)
			if err != nil || to.hasLocal() || to.hasResource() || to.key != n.b.cfg.Domain {
				return seHostUnknown
			}
		case a.Name.Space == "" && a.Name.Local == "from":
			n.peer = a.Value
		case a.Name.Space == "" && a.Name.Local == "version":
			// RFC 6120 4.7.5: a major version above ours is refused; no
			// version at all (pre-RFC clients) is let through.
			if major, _, _ := strings.Cut(a.Value, "."); major != "1" && major != "0" {
				return seUnsupportedVersion
			}
		}
	}
	return nil
}

// appendHeader appends the broker's stream header. The literal prefixes
// "<stream:stream" and "<stream:features>" matter: a common ACS finds
// them by string matching.
func (n *negotiation) appendHeader(b []byte) []byte {
	var id [12]byte
	_, _ = rand.Read(id[:])
	b = append(b, `<?xml version='1.0'?><stream:stream xmlns='`+nsClient+`' xmlns:stream='`+nsStream+`' id='`...)
	b = hex.AppendEncode(b, id[:])
	b = append(b, `' from='`...)
	b = appendEscaped(b, n.b.cfg.Domain, true)
	if n.peer != "" {
		b = append(b, `' to='`...)
		b = appendEscaped(b, n.peer, true)
	}
	b = append(b, `' version='1.0' xml:lang='en'>`...)
	n.header = true
	return b
}

func (n *negotiation) sendFeatures(features string) error {
	b := n.appendHeader(nil)
	b = append(b, "<stream:features>"...)
	b = append(b, features...)
	b = append(b, "</stream:features>"...)
	_, err := n.w.Write(b)
	return err
}

// next returns the next top-level element's start.
func (n *negotiation) next() (xml.StartElement, error) {
	n.r.limit(n.b.cfg.MaxStanzaBytes)
	for {
		tok, err := n.d.Token()
		if err != nil {
			return xml.StartElement{}, n.xmlError(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, errStreamClosed
		case xml.CharData:
			if len(strings.TrimSpace(string(t))) > 0 {
				return xml.StartElement{}, seNotWellFormed
			}
		default:
			return xml.StartElement{}, seRestrictedXML
		}
	}
}

// xmlError turns a decoder error into what ends the negotiation.
func (n *negotiation) xmlError(err error) error {
	switch {
	case errors.Is(err, errTooLarge):
		n.b.m.oversized.Inc()
		return sePolicyViolation
	case n.r.err != nil:
		// The connection failed or timed out; the decoder reports that
		// as a syntax error (unexpected EOF) or as the error itself.
		return n.r.err
	}
	return seNotWellFormed
}

// negotiateTLS waits for <starttls/> and upgrades the connection (RFC
// 6120 5.4).
func (n *negotiation) negotiateTLS() error {
	start, err := n.next()
	if err != nil {
		return err
	}
	if start.Name.Space != nsTLS || start.Name.Local != "starttls" {
		// RFC 6120 5.3.1: TLS is required before anything else.
		return sePolicyViolation
	}
	if err := n.d.Skip(); err != nil {
		return n.xmlError(err)
	}
	if _, err := io.WriteString(n.w, `<proceed xmlns='`+nsTLS+`'/>`); err != nil {
		return err
	}
	// Whatever the client sent after <starttls/> belongs to TLS.
	if rest := n.r.rest(); len(rest) > 0 {
		n.nb.pre = append([]byte(nil), rest...)
	}
	return n.startTLS()
}

func (n *negotiation) startTLS() error {
	// TLS records start here (after STARTTLS, with the bytes in pre).
	n.nb.records.Restart()
	n.tc = tls.Server(n.nb, n.b.tls)
	if err := n.tc.HandshakeContext(n.ctx); err != nil {
		return tlsError{err}
	}
	n.w = n.tc
	n.r.reset(n.tc)
	return nil
}

// authenticate runs SASL (RFC 6120 6.4) until success, or until too many
// failures.
func (n *negotiation) authenticate() error {
	for {
		start, err := n.next()
		if err != nil {
			return err
		}
		if start.Name.Space != nsSASL || start.Name.Local != "auth" {
			// RFC 6120 4.9.3.12: nothing but SASL before authentication.
			return seNotAuthorized
		}
		var auth struct {
			Mechanism string `xml:"mechanism,attr"`
			Data      string `xml:",chardata"`
		}
		if err := n.d.DecodeElement(&auth, &start); err != nil {
			return n.xmlError(err)
		}
		mech := auth.Mechanism
		extra, fail, err := n.exchange(mech, auth.Data)
		if err != nil {
			return err
		}
		label := mech
		if label != mechSCRAMSHA256 && label != mechSCRAMSHA1 && label != mechPLAIN {
			label = "other"
		}
		if fail == "" {
			n.b.m.auth.WithLabelValues(label, "success").Inc()
			b := []byte(`<success xmlns='` + nsSASL + `'`)
			if extra != nil {
				b = append(b, '>')
				b = base64.StdEncoding.AppendEncode(b, extra)
				b = append(b, `</success>`...)
			} else {
				b = append(b, `/>`...)
			}
			_, err := n.w.Write(b)
			return err
		}
		n.b.m.auth.WithLabelValues(label, "failure").Inc()
		if fail != failAborted && fail != failInvalidMechanism {
			// Failed credentials are answered late, to slow guessing.
			if err := n.b.pause(n.ctx, n.b.cfg.AuthFailureDelay); err != nil {
				return err
			}
		}
		if _, err := io.WriteString(n.w, `<failure xmlns='`+nsSASL+`'><`+string(fail)+`/></failure>`); err != nil {
			return err
		}
		n.failures++
		if n.failures >= maxAuthAttempts {
			n.fail(seNotAuthorized)
			return errAuthFailed
		}
	}
}

// exchange runs one SASL exchange. It returns the additional data of
// success, or the failure condition.
func (n *negotiation) exchange(mech, initial string) ([]byte, saslFailure, error) {
	lookup := n.b.credentials
	data, hasData, fail := decodeSASLData(initial)
	if fail != "" {
		return nil, fail, nil
	}
	switch mech {
	case mechPLAIN:
		if !hasData {
			var err error
			if data, fail, err = n.challenge(nil); err != nil || fail != "" {
				return nil, fail, err
			}
		}
		user, k, fail := plain(data, n.b.cfg.Domain, lookup, n.b.fakeKey[:])
		if fail != "" {
			return nil, fail, nil
		}
		n.user, n.kind = user, k
		return nil, "", nil
	case mechSCRAMSHA1, mechSCRAMSHA256:
		s := newSCRAM(mech, n.b.cfg.Domain, lookup, n.b.fakeKey[:])
		if !hasData {
			var err error
			if data, fail, err = n.challenge(nil); err != nil || fail != "" {
				return nil, fail, err
			}
		}
		sf, fail := s.first(data)
		if fail != "" {
			return nil, fail, nil
		}
		resp, fail, err := n.challenge(sf)
		if err != nil || fail != "" {
			return nil, fail, err
		}
		final, fail := s.final(resp)
		if fail != "" {
			return nil, fail, nil
		}
		n.user, n.kind = s.user, s.kind
		return final, "", nil
	}
	return nil, failInvalidMechanism, nil
}

// challenge sends a challenge (empty if c is nil) and reads the response.
func (n *negotiation) challenge(c []byte) ([]byte, saslFailure, error) {
	b := []byte(`<challenge xmlns='` + nsSASL + `'`)
	if len(c) > 0 {
		b = append(b, '>')
		b = base64.StdEncoding.AppendEncode(b, c)
		b = append(b, `</challenge>`...)
	} else {
		b = append(b, `/>`...)
	}
	if _, err := n.w.Write(b); err != nil {
		return nil, "", err
	}
	start, err := n.next()
	if err != nil {
		return nil, "", err
	}
	if start.Name.Space != nsSASL {
		return nil, "", seNotAuthorized
	}
	switch start.Name.Local {
	case "abort":
		if err := n.d.Skip(); err != nil {
			return nil, "", n.xmlError(err)
		}
		return nil, failAborted, nil
	case "response":
	default:
		return nil, "", seNotAuthorized
	}
	var resp struct {
		Data string `xml:",chardata"`
	}
	if err := n.d.DecodeElement(&resp, &start); err != nil {
		return nil, "", n.xmlError(err)
	}
	data, _, fail := decodeSASLData(resp.Data)
	return data, fail, nil
}

// decodeSASLData decodes the base64 content of <auth/> or <response/>.
// RFC 6120 6.4.2: "=" is present-but-empty; no content is absent.
func decodeSASLData(s string) (data []byte, present bool, fail saslFailure) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return nil, false, ""
	case "=":
		return []byte{}, true, ""
	}
	d, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, false, failIncorrectEncoding
	}
	return d, true, ""
}

// bind waits for the resource binding request (RFC 6120 7) and answers
// it, binding exactly the resource asked for (CPE agents derive their
// ConnReqJabberID from it). A legacy session request (RFC 3921 3) before
// bind is answered too.
func (n *negotiation) bind() (string, address, error) {
	for {
		start, err := n.next()
		if err != nil {
			return "", address{}, err
		}
		if start.Name.Space != nsClient || start.Name.Local != "iq" {
			// RFC 6120 7.1: no stanzas before a resource is bound.
			return "", address{}, seNotAuthorized
		}
		var iq struct {
			Type string `xml:"type,attr"`
			ID   string `xml:"id,attr"`
			Bind *struct {
				Resource string `xml:"resource"`
			} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
			Session *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-session session"`
		}
		if err := n.d.DecodeElement(&iq, &start); err != nil {
			return "", address{}, n.xmlError(err)
		}
		var b []byte
		switch {
		case iq.Type == "set" && iq.Bind != nil:
			res := iq.Bind.Resource
			if res == "" {
				var r [6]byte
				_, _ = rand.Read(r[:])
				res = "crrelay-" + hex.EncodeToString(r[:])
			}
			full := n.user + "@" + n.b.cfg.Domain + "/" + res
			addr, err := parseFullJID(full)
			if err == nil {
				b = append(b, `<iq type='result' id='`...)
				b = appendEscaped(b, iq.ID, true)
				b = append(b, `'><bind xmlns='`+nsBind+`'><jid>`...)
				b = appendEscaped(b, full, false)
				b = append(b, `</jid></bind></iq>`...)
				_, err := n.w.Write(b)
				return full, addr, err
			}
			b = append(b, `<iq type='error' id='`...)
			b = appendEscaped(b, iq.ID, true)
			b = append(b, `'><bind xmlns='`+nsBind+`'/><error type='modify'><bad-request xmlns='`+nsStanzaErr+`'/></error></iq>`...)
		case iq.Type == "set" && iq.Session != nil:
			b = append(b, `<iq type='result' id='`...)
			b = appendEscaped(b, iq.ID, true)
			b = append(b, `'/>`...)
		default:
			return "", address{}, seNotAuthorized
		}
		if _, err := n.w.Write(b); err != nil {
			return "", address{}, err
		}
	}
}

// pause waits d, or until ctx is done or the broker closes.
func (b *Broker) pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.done:
		return ErrXmppClosed
	}
}

// appendEscaped appends s escaped for XML character data, or for an
// attribute value in either kind of quotes.
func appendEscaped(b []byte, s string, attr bool) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '&':
			esc = "&amp;"
		case '\'':
			if !attr {
				continue
			}
			esc = "&apos;"
		case '"':
			if !attr {
				continue
			}
			esc = "&quot;"
		default:
			continue
		}
		b = append(b, s[last:i]...)
		b = append(b, esc...)
		last = i + 1
	}
	return append(b, s[last:]...)
}
