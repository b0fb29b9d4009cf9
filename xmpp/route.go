package xmpp

import (
	"encoding/xml"
	"errors"
	"sync"
	"time"

	"github.com/crrelay/crrelay/xmpp/xmlframe"
)

// stanza is what the router reads of a stanza: the root's name and
// routing attributes (decoded), its first child, the condition of an
// error, and the raw start tag for rewriting.
type stanza struct {
	name, space   string
	typ, id, to   string
	payload       xml.Name // first child element
	children      int
	errType, cond string // of a type='error' stanza: <error type=...><cond/>
	tag           xmlframe.Tag
	attrStore     [8]xmlframe.Attr
	hasTo         bool
	toAddr        address
	toAddrValid   bool
}

// inspect checks that elem is one well-formed element (xmlframe.Walker:
// strict, with the restrictions of RFC 6120 11.1) and reads it. It makes
// strings only of what outlives elem and is not a value the broker knows
// (one allocation holds the id and the to), so that reading the common
// stanza costs a single allocation.
func inspect(elem []byte, st *stanza) error {
	// str returns b as a string, allocating only when it is none of
	// known.
	str := func(b []byte, known ...string) string {
		for _, k := range known {
			if string(b) == k {
				return k
			}
		}
		return string(b)
	}
	var w xmlframe.Walker
	w.Reset(elem)
	var id, to []byte
	var small [16]byte // decodes type attributes
	inErr := false
	for {
		step, err := w.Next()
		if err != nil {
			if errors.Is(err, xmlframe.ErrRestricted) {
				return seRestrictedXML
			}
			return seNotWellFormed
		}
		switch step {
		case xmlframe.Done:
			// Values are decoded as encoding/xml did: references
			// expanded, line ends made LF.
			var buf [128]byte
			b := xmlframe.AppendValue(buf[:0], id)
			n := len(b)
			b = xmlframe.AppendValue(b, to)
			s := string(b)
			st.id, st.to = s[:n], s[n:]
			return nil
		case xmlframe.Close:
			if w.Depth() == 2 {
				inErr = false
			}
		case xmlframe.Open:
			d := w.Depth()
			if d > 3 {
				break
			}
			n := w.Name()
			switch d {
			case 1:
				st.tag.Attrs = st.attrStore[:0]
				w.StartTag(&st.tag)
				st.name = str(n.Local, "iq", "message", "presence")
				st.space = str(n.Space, "", nsClient)
				if v, ok := w.AttrValue("type"); ok {
					st.typ = str(xmlframe.AppendValue(small[:0], v), "get", "set", "result", "error")
				}
				id, _ = w.AttrValue("id")
				to, st.hasTo = w.AttrValue("to")
			case 2:
				st.children++
				if st.children == 1 {
					st.payload = xml.Name{
						Space: str(n.Space, nsConnReq, nsPing, nsSession, nsRoster, nsDiscoInfo, "", nsClient),
						Local: str(n.Local, "connectionRequest", "ping", "session", "query", "error"),
					}
				}
				if string(n.Local) == "error" {
					inErr = true
					if v, ok := w.AttrValue("type"); ok {
						st.errType = str(xmlframe.AppendValue(small[:0], v), "auth", "cancel", "continue", "modify", "wait")
					}
				}
			case 3:
				if inErr && st.cond == "" && string(n.Local) != "text" {
					// RFC 6120 8.3.3, and a widespread agent's
					// misspelling.
					st.cond = str(n.Local, "bad-request", "conflict", "feature-not-implemented", "forbidden",
						"gone", "internal-server-error", "item-not-found", "jid-malformed", "not-acceptable",
						"not-allowed", "not-authorized", "not-autorized", "policy-violation", "recipient-unavailable",
						"redirect", "registration-required", "remote-server-not-found", "remote-server-timeout",
						"resource-constraint", "service-unavailable", "subscription-required",
						"undefined-condition", "unexpected-request")
				}
			}
		}
	}
}

// stanzas are the routers' scratch: a stanza is some 750 bytes, and
// every stanza in and every answer out would otherwise allocate one.
// Nothing keeps a *stanza past handle (what outlives it is copied:
// strings, Result).
var stanzas = sync.Pool{New: func() any { return new(stanza) }}

// handle routes one stanza from s (RFC 6120 8 and 10, with the policy of
// a connection-request broker: see the package documentation).
func (b *Broker) handle(s *session, elem []byte) {
	b.m.stanzasIn.Inc()
	st := stanzas.Get().(*stanza)
	defer func() {
		*st = stanza{} // keeps no slice of elem
		stanzas.Put(st)
	}()
	if err := inspect(elem, st); err != nil {
		se := err.(streamError)
		s.close(string(se), se)
		return
	}
	switch st.name {
	case "iq", "message", "presence":
	default:
		s.close(string(seUnsupportedStanzaType), seUnsupportedStanzaType)
		return
	}
	if st.space != "" && st.space != nsClient {
		s.close(string(seInvalidNamespace), seInvalidNamespace)
		return
	}
	if st.hasTo && st.to != "" {
		if a, err := parseJID(st.to); err == nil {
			st.toAddr, st.toAddrValid = a, true
		}
	}
	switch st.name {
	case "iq":
		b.handleIQ(s, elem, st)
	case "message":
		// No chat through the broker. Errors are never answered (RFC
		// 6120 8.3.1), lest two entities bounce them forever.
		if st.typ != "error" {
			b.refuse(s, st, "cancel", "service-unavailable")
		}
	case "presence":
		// Swallowed: presence is neither broadcast nor delivered, so
		// nothing about one CPE ever reaches another.
	}
}

func (b *Broker) handleIQ(s *session, elem []byte, st *stanza) {
	now := time.Now()
	switch st.typ {
	case "result", "error":
		b.answer(s, elem, st, now)
		return
	case "get", "set":
	default:
		b.refuse(s, st, "modify", "bad-request")
		return
	}
	if st.id == "" || st.children != 1 {
		// RFC 6120 8.2.3: a get or set has an id and exactly one payload.
		b.refuse(s, st, "modify", "bad-request")
		return
	}
	if !st.hasTo || st.to == "" || st.toAddrValid && (st.toAddr.key == b.cfg.Domain || st.toAddr.key == s.addr.bareKey()) {
		b.serverIQ(s, st)
		return
	}
	if !st.toAddrValid {
		b.refuse(s, st, "modify", "jid-malformed")
		return
	}
	// Only ACS accounts may ask CPEs anything.
	var dst *session
	if s.kind == kindACS {
		dst = b.lookup(st.toAddr, kindCPE)
	}
	if dst == nil {
		b.refuse(s, st, "cancel", "service-unavailable")
		return
	}
	p := pendingIQ{id: st.id, from: s, req: s.addr, expires: now.Add(pendingTTL).UnixNano()}
	if !dst.addPending(p, now.UnixNano()) {
		b.refuse(s, st, "wait", "resource-constraint")
		return
	}
	bp := b.getWriteBuf()
	out := appendStamped((*bp)[:0], elem, &st.tag, s.full, "")
	err := dst.write(out)
	b.putWriteBuf(bp, out)
	if err != nil {
		dst.removeFrom(st.id, s)
		b.refuse(s, st, "cancel", "service-unavailable")
	}
}

// answer routes an IQ result or error from s back to whoever asked s;
// answers nobody asked for are dropped (RFC 6120 8.2.3: never answer a
// result or an error).
func (b *Broker) answer(s *session, elem []byte, st *stanza, now time.Time) {
	if st.hasTo && st.to != "" && !st.toAddrValid {
		return
	}
	p, ok := s.takeAnswer(st.id, st.toAddr, st.toAddrValid, b.cfg.Domain, now.UnixNano())
	if !ok {
		return
	}
	if p.call != nil {
		p.call.finish(resultOf(st))
		return
	}
	to := ""
	if !st.hasTo || st.to == "" {
		to = p.from.full
	}
	bp := b.getWriteBuf()
	out := appendStamped((*bp)[:0], elem, &st.tag, s.full, to)
	if s.round != nil {
		// Written with the other answers of this round.
		p.from.queue(out, s.round)
	} else {
		_ = p.from.write(out)
	}
	b.putWriteBuf(bp, out)
}

// resultOf maps a CPE's answer to a connection request (TR-069 Annex K).
func resultOf(st *stanza) Result {
	if st.typ == "result" {
		return Result{Outcome: Delivered}
	}
	r := Result{Outcome: Error, Condition: st.cond}
	switch st.cond {
	case "not-authorized", "not-autorized":
		// A widespread agent misspells it.
		r.Outcome = AuthFailed
	case "service-unavailable":
		r.Outcome = Refused
	}
	return r
}

// serverIQ answers an IQ get or set addressed to the server (or to the
// sender's own bare JID, which the server handles for it: RFC 6120
// 10.3.3).
func (b *Broker) serverIQ(s *session, st *stanza) {
	from := b.cfg.Domain
	if st.hasTo && st.to != "" {
		from = st.to
	}
	var payload string
	switch {
	case st.typ == "get" && st.payload == xml.Name{Space: nsPing, Local: "ping"}:
		// XEP-0199 4.3 (agents reuse one id for every ping: fine).
	case st.typ == "set" && st.payload == xml.Name{Space: nsSession, Local: "session"}:
		// RFC 3921 3: the legacy session request is a no-op.
	case st.typ == "get" && st.payload == xml.Name{Space: nsRoster, Local: "query"}:
		// Agents built on chat libraries fetch a roster; it is empty.
		payload = `<query xmlns="` + nsRoster + `"/>`
	case st.typ == "get" && st.payload == xml.Name{Space: nsDiscoInfo, Local: "query"}:
		payload = `<query xmlns="` + nsDiscoInfo + `"><identity category="server" type="im" name="crrelay"/>` +
			`<feature var="` + nsDiscoInfo + `"/><feature var="` + nsPing + `"/></query>`
	default:
		b.refuse(s, st, "cancel", "service-unavailable")
		return
	}
	bp := b.getWriteBuf()
	out := append((*bp)[:0], `<iq type="result" id="`...)
	out = appendEscaped(out, st.id, true)
	out = append(out, `" from="`...)
	out = appendEscaped(out, from, true)
	out = append(out, `" to="`...)
	out = appendEscaped(out, s.full, true)
	if payload == "" {
		out = append(out, `"/>`...)
	} else {
		out = append(out, `">`...)
		out = append(out, payload...)
		out = append(out, `</iq>`...)
	}
	_ = s.write(out)
	b.putWriteBuf(bp, out)
}

// refuse answers st with a stanza error, from the address st was sent to
// (RFC 6120 8.3.1).
func (b *Broker) refuse(s *session, st *stanza, typ, cond string) {
	from := b.cfg.Domain
	if st.hasTo && st.to != "" {
		from = st.to
	}
	b.sendError(s, st.name, st.id, from, s.full, typ, cond)
}

// sendError writes a stanza error to s.
func (b *Broker) sendError(s *session, name, id, from, to, typ, cond string) {
	b.m.stanzaErrs.WithLabelValues(cond).Inc()
	bp := b.getWriteBuf()
	out := append((*bp)[:0], '<')
	out = append(out, name...)
	out = append(out, ` type="error"`...)
	if id != "" || name == "iq" {
		out = append(out, ` id="`...)
		out = appendEscaped(out, id, true)
		out = append(out, '"')
	}
	out = append(out, ` from="`...)
	out = appendEscaped(out, from, true)
	out = append(out, `" to="`...)
	out = appendEscaped(out, to, true)
	out = append(out, `"><error type="`...)
	out = append(out, typ...)
	out = append(out, `"><`...)
	out = append(out, cond...)
	out = append(out, ` xmlns="`+nsStanzaErr+`"/></error></`...)
	out = append(out, name...)
	out = append(out, '>')
	_ = s.write(out)
	b.putWriteBuf(bp, out)
}

// appendStamped appends elem with its 'from' replaced by from, the one
// the broker vouches for (RFC 6120 8.1.2.1), and 'to' set when to is not
// empty. Everything else is copied as the client wrote it.
func appendStamped(dst, elem []byte, t *xmlframe.Tag, from, to string) []byte {
	dst = append(dst, '<')
	dst = append(dst, t.Name...)
	for _, a := range t.Attrs {
		n := string(a.Name)
		if n == "from" || n == "to" && to != "" {
			continue
		}
		dst = append(dst, ' ')
		dst = append(dst, a.Name...)
		dst = append(dst, '=', a.Quote)
		dst = append(dst, a.Value...)
		dst = append(dst, a.Quote)
	}
	dst = append(dst, ` from="`...)
	dst = appendEscaped(dst, from, true)
	dst = append(dst, '"')
	if to != "" {
		dst = append(dst, ` to="`...)
		dst = appendEscaped(dst, to, true)
		dst = append(dst, '"')
	}
	return append(dst, elem[t.Close:]...)
}

// writeBufs hold outgoing stanzas while they are built.
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (b *Broker) getWriteBuf() *[]byte { return writeBufs.Get().(*[]byte) }

func (b *Broker) putWriteBuf(bp *[]byte, used []byte) {
	if cap(used) > 64<<10 {
		return
	}
	*bp = used[:0]
	writeBufs.Put(bp)
}
