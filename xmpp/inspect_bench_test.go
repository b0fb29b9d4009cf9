// inspect's cost per stanza, beside the encoding/xml inspect it replaced
// (kept here as oldInspect), and a differential fuzz test of the two.

package xmpp

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/crrelay/crrelay/xmpp/xmlframe"
)

// oldInspect is inspect as it was with encoding/xml, the reference for
// FuzzInspect and the baseline of BenchmarkInspect.
func oldInspect(elem []byte, st *stanza) error {
	st.tag.Attrs = st.attrStore[:0]
	if err := xmlframe.ParseStartTag(elem, &st.tag); err != nil {
		return seNotWellFormed
	}
	d := xml.NewDecoder(bytes.NewReader(elem))
	depth, inErr := 0, false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return seNotWellFormed
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 1:
				st.name, st.space = t.Name.Local, t.Name.Space
				for _, a := range t.Attr {
					if a.Name.Space != "" {
						continue
					}
					switch a.Name.Local {
					case "type":
						st.typ = a.Value
					case "id":
						st.id = a.Value
					case "to":
						st.to, st.hasTo = a.Value, true
					}
				}
			case 2:
				st.children++
				if st.children == 1 {
					st.payload = t.Name
				}
				if t.Name.Local == "error" {
					inErr = true
					for _, a := range t.Attr {
						if a.Name.Space == "" && a.Name.Local == "type" {
							st.errType = a.Value
						}
					}
				}
			case 3:
				if inErr && st.cond == "" && t.Name.Local != "text" {
					st.cond = t.Name.Local
				}
			}
		case xml.EndElement:
			if depth == 2 {
				inErr = false
			}
			depth--
		case xml.ProcInst, xml.Comment, xml.Directive:
			return seRestrictedXML
		}
	}
	return nil
}

// inspectStanzas are what the broker reads most: an ACS's connection
// request, the CPE's result, and an error answer (a widespread agent's,
// echoing the request).
var inspectStanzas = []struct{ name, elem string }{
	{"connreq", `<iq type="set" id="abc123" to="cpe1@example.net/res"><connectionRequest xmlns="urn:broadband-forum-org:cwmp:xmppConnReq-1-0"><username>u</username><password>p</password></connectionRequest></iq>`},
	{"result", `<iq type="result" id="abc123" to="acs@example.net/r" from="x"/>`},
	{"error", `<iq type="error" id="abc123" to="acs@example.net/r" from="cpe1@example.net/res"><connectionRequest xmlns="urn:broadband-forum-org:cwmp:xmppConnReq-1-0"><username>u</username><password>p</password></connectionRequest><error type="cancel"><not-autorized xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
}

// BenchmarkInspect: run with
//
//	go test -run='^$' -bench=Inspect -benchmem ./xmpp/
func BenchmarkInspect(b *testing.B) {
	for _, s := range inspectStanzas {
		for _, impl := range []struct {
			name string
			fn   func([]byte, *stanza) error
		}{{"old", oldInspect}, {"new", inspect}} {
			b.Run(s.name+"/"+impl.name, func(b *testing.B) {
				elem := []byte(s.elem)
				var st stanza
				b.ReportAllocs()
				b.SetBytes(int64(len(elem)))
				for b.Loop() {
					st = stanza{}
					if err := impl.fn(elem, &st); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestInspectAllocs holds inspect to one allocation, for the id and to
// that outlive the read buffer, on the stanzas the broker reads most.
func TestInspectAllocs(t *testing.T) {
	for _, s := range inspectStanzas {
		elem := []byte(s.elem)
		var st stanza
		n := testing.AllocsPerRun(100, func() {
			st = stanza{}
			if err := inspect(elem, &st); err != nil {
				t.Fatal(err)
			}
		})
		if n > 1 {
			t.Errorf("%s: %v allocations", s.name, n)
		}
	}
}

// FuzzInspect: what inspect reads of a stanza is what oldInspect read,
// and inspect refuses what oldInspect refused. xmlframe's FuzzWalk holds
// the Walker's refusals that oldInspect would not have made to the rules
// it adds, and checks which of the two stream errors each refusal maps
// to; here they only need to be refusals.
func FuzzInspect(f *testing.F) {
	for _, s := range inspectStanzas {
		f.Add([]byte(s.elem))
	}
	for _, s := range []string{
		`<iq type='get' id='s2c1' to='xmpp.test'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`,
		`<iq type='get' id='d' to='xmpp.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
		`<iq type='error' id='x'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>not allowed</text></error></iq>`,
		`<iq type='error' id='y'><error type='wait'><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>busy</text><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
		`<message to='a@xmpp.test' id='m&amp;1'><body>&lt;hi&gt; &#x263A;</body></message>`,
		`<presence xmlns="jabber:client" type="unavailable"/>`,
		`<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`,
		`<iq xmlns='jabber:server' type='get' id='n'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<presence><!-- hi --></presence>`,
		`<message><body><![CDATA[<x>]]></body></message>`,
		`<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'></iq>`,
		`<message to='a@xmpp.test'><body>&nope;</body></message>`,
		`<iq xmlns='jabber:client' type='get' id='x'><xmlns/></iq>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, elem []byte) {
		var old, st stanza
		oldErr := oldInspect(elem, &old)
		err := inspect(elem, &st)
		switch {
		case err == nil && oldErr != nil:
			t.Fatalf("%q: accepted, oldInspect refused it: %v", elem, oldErr)
		case err != nil:
			// Which of the two stream errors is FuzzWalk's to check:
			// it knows where each parser stopped, and why.
			if err != seNotWellFormed && err != seRestrictedXML {
				t.Fatalf("%q: %v", elem, err)
			}
		default:
			if old.space == "stream" && st.space == nsStream {
				old.space = nsStream
			}
			if old.payload.Space == "stream" && st.payload.Space == nsStream {
				old.payload.Space = nsStream
			}
			// encoding/xml put an element called xmlns in no
			// namespace; it is in the default one.
			if old.name == "xmlns" && old.space == "" {
				old.space = st.space
			}
			if old.payload.Local == "xmlns" && old.payload.Space == "" {
				old.payload.Space = st.payload.Space
			}
			if old.name != st.name || old.space != st.space || old.typ != st.typ || old.id != st.id ||
				old.to != st.to || old.hasTo != st.hasTo || old.payload != st.payload ||
				old.children != st.children || old.errType != st.errType || old.cond != st.cond {
				t.Fatalf("%q:\nread %+v\nwant %+v", elem, summary(&st), summary(&old))
			}
		}
	})
}

func summary(st *stanza) string {
	return strings.Join([]string{st.name, st.space, st.typ, st.id, st.to, st.payload.Space, st.payload.Local, st.errType, st.cond}, "|")
}
