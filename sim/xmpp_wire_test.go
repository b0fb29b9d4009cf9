package sim

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// Captured from Prosody 0.12.3 (Debian 12), reads split where Prosody
// split them.
const (
	prosodyHeader = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' " +
		"xmlns='jabber:client' xml:lang='en' version='1.0' id='1aaecefc-0450-4d9d-8e3a-e2fdacd87fa0' from='sim.example'>"
	prosodySASLFeatures = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" +
		"<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
	prosodyBindFeatures1 = "<stream:features><ver xmlns='urn:xmpp:features:rosterver'/>" +
		"<c ver='wBr6DNC6Vxj+iDPS/AmhkECMTr8=' xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://prosody.im'/>" +
		"<sub xmlns='urn:xmpp:features:pre-approval'/><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind>" +
		"<session xmlns='urn:ietf:params"
	prosodyBindFeatures2 = ":xml:ns:xmpp-session'><optional/></session></stream:features>"
	prosodyConnReq       = "<iq xml:lang='en' from='acs@sim.example/acs' id='cr1' to='cap@sim.example/cwmp' type='get'>" +
		"<connectionRequest xmlns='urn:broadband-forum-org:cwmp:xmppConnReq-1-0'><username>x</username>" +
		"<password>y</password></connectionRequest></iq>"
	prosodyLegacyError = "<iq xml:lang='en' from='cap@sim.example/cwmp' id='cr1' to='acs@sim.example/acs' type='error'>" +
		"<connectionRequest xmlns='urn:broadband-forum-org:cwmp:xmppConnReq-1-0'><username>x</username><password>y</password>" +
		"</connectionRequest><error type='cancel'><not-autorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
	prosodyConflict = "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" +
		"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced by new connection</text></stream:error></stream:stream>"
)

// chunks reads its parts one Read at a time, as the network delivers
// them.
type chunks []string

func (c *chunks) Read(b []byte) (int, error) {
	if len(*c) == 0 {
		return 0, io.EOF
	}
	n := copy(b, (*c)[0])
	if n == len((*c)[0]) {
		*c = (*c)[1:]
	} else {
		(*c)[0] = (*c)[0][n:]
	}
	return n, nil
}

func TestStreamReaderProsody(t *testing.T) {
	src := chunks{prosodyHeader + prosodySASLFeatures, prosodyBindFeatures1, prosodyBindFeatures2,
		" \n ", prosodyConnReq, prosodyLegacyError + " ", prosodyConflict}
	s := &xmppStream{rd: newStreamReader(&src, 0)}
	if _, k, err := s.rd.next(); err != nil || k != itemStreamOpen {
		t.Fatalf("header: %v %v", k, err)
	}
	feats, err := s.readElement()
	if err != nil || !feats.is(nsStream, "features") {
		t.Fatalf("features: %+v %v", feats, err)
	}
	ms := feats.child(nsSASL, "mechanisms")
	if ms == nil || len(ms.children) != 2 || ms.children[0].text != "SCRAM-SHA-1" || ms.children[1].text != "PLAIN" {
		t.Fatalf("mechanisms %+v", ms)
	}

	feats, err = s.readElement()
	if err != nil || feats.child(nsBind, "bind").childOrNil(nsBind, "required") == nil ||
		feats.child(nsSession, "session").childOrNil(nsSession, "optional") == nil {
		t.Fatalf("bind features: %+v %v", feats, err)
	}
	if c := feats.child("http://jabber.org/protocol/caps", "c"); c == nil || c.attr("node") != "http://prosody.im" {
		t.Errorf("caps %+v", c)
	}

	iq, err := s.readElement()
	if err != nil || !iq.is(nsClient, "iq") || iq.attr("from") != "acs@sim.example/acs" || iq.attr("xml:lang") != "en" {
		t.Fatalf("iq: %+v %v", iq, err)
	}
	cr := iq.firstChild()
	if !cr.is(nsConnReq, "connectionRequest") || cr.child(nsConnReq, "username").text != "x" || cr.child(nsConnReq, "password").text != "y" {
		t.Fatalf("connectionRequest %+v", cr)
	}
	if s.rd.whitespace != 3 {
		t.Errorf("%d whitespace bytes", s.rd.whitespace)
	}

	e, err := s.readElement()
	if err != nil || stanzaCondition(e) != "not-autorized" || e.child(nsConnReq, "connectionRequest") == nil {
		t.Fatalf("legacy error: %+v %v", e, err)
	}

	_, err = s.readElement()
	var se *XMPPStreamError
	if !errors.As(err, &se) || se.Condition != "conflict" || se.Text != "Replaced by new connection" {
		t.Fatalf("stream error: %v", err)
	}
	if _, err := s.readElement(); !errors.Is(err, ErrXMPPClosed) {
		t.Fatalf("after </stream:stream>: %v", err)
	}
}

// Byte by byte, the reader finds the same items.
func TestStreamReaderOneByte(t *testing.T) {
	in := prosodyHeader + prosodySASLFeatures + prosodyConnReq + "</stream:stream>"
	rd := newStreamReader(iotest.OneByteReader(strings.NewReader(in)), 0)
	var kinds []itemKind
	for {
		_, k, err := rd.next()
		if err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
		kinds = append(kinds, k)
	}
	want := []itemKind{itemStreamOpen, itemElement, itemElement, itemStreamClose}
	if len(kinds) != len(want) {
		t.Fatalf("items %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("items %v, want %v", kinds, want)
		}
	}
}

func TestStreamReaderRejects(t *testing.T) {
	h := "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
	cases := []struct {
		name, in string
		want     error
	}{
		{"comment", h + "<!-- hi --><iq/>", errXMLForbid},
		{"doctype", "<!DOCTYPE x><stream:stream/>", errXMLForbid},
		{"processing instruction", h + "<?php ?>", errXMLForbid},
		{"entity", h + "<message><body>&nbsp;</body></message>", errXMLForbid},
		{"text at top level", h + "hello", errXMLSyntax},
		{"mismatched end", h + "<a><b></a></b>", errXMLSyntax},
		{"undeclared prefix", h + "<x:iq/>", errXMLPrefix},
		{"repeated attribute", h + "<iq id='1' id='2'/>", errXMLSyntax},
		{"unquoted attribute", h + "<iq id=1/>", errXMLSyntax},
		{"bad char ref", h + "<a>&#0;</a>", errXMLSyntax},
		{"header not a stream", "<iq/>", errXMLSyntax},
		{"self-closed header", "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>", errXMLSyntax},
		{"too large", h + "<message><body>" + strings.Repeat("a", DefaultXMPPMaxStanza) + "</body></message>", errXMLTooLarge},
		{"too deep", h + strings.Repeat("<a>", maxDepth+1), errXMLDepth},
		{"cut short", h + "<iq><query", io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rd := newStreamReader(strings.NewReader(c.in), 0)
			var err error
			for err == nil {
				var raw []byte
				var k itemKind
				raw, k, err = rd.next()
				if err == nil && k == itemElement {
					_, err = parseElement(raw, rd.scope)
				}
			}
			if !errors.Is(err, c.want) {
				t.Errorf("error %v, want %v", err, c.want)
			}
		})
	}
}

func TestParseElementEscapes(t *testing.T) {
	scope := &nsScope{space: nsClient}
	e, err := parseElement([]byte(`<iq id="a&amp;b&#x27;&#60;" to='x'><q xmlns='urn:x' xmlns:p='urn:p'><p:r>1 &lt; 2<![CDATA[ & <3 ]]></p:r></q></iq>`), scope)
	if err != nil {
		t.Fatal(err)
	}
	if e.attr("id") != "a&b'<" || e.space != nsClient {
		t.Errorf("iq %+v", e)
	}
	r := e.child("urn:x", "q").childOrNil("urn:p", "r")
	if r == nil || r.text != "1 < 2 & <3 " {
		t.Fatalf("r %+v", r)
	}
	// Serialized back, it parses to the same tree.
	again, err := parseElement(e.appendXML(nil, nsClient), scope)
	if err != nil || !sameElement(e, again) {
		t.Errorf("round trip: %s, %v", e.appendXML(nil, nsClient), err)
	}
}

// sameElement compares names, unprefixed and xml: attributes, text and
// children.
func sameElement(a, b *element) bool {
	if a.space != b.space || a.local != b.local || a.text != b.text || len(a.children) != len(b.children) {
		return false
	}
	attrs := func(e *element) []xmlAttr {
		var out []xmlAttr
		for _, at := range e.attrs {
			n := splitName(at.name)
			if at.name != xmlnsAttr && (n.prefix == "" || n.prefix == "xml") {
				out = append(out, at)
			}
		}
		return out
	}
	aa, ba := attrs(a), attrs(b)
	if len(aa) != len(ba) {
		return false
	}
	for i := range aa {
		if aa[i] != ba[i] {
			return false
		}
	}
	for i := range a.children {
		if !sameElement(a.children[i], b.children[i]) {
			return false
		}
	}
	return true
}

// FuzzXMPPStream feeds arbitrary bytes after a stream header: the reader
// and parser never panic, and every element they accept serializes to
// XML they parse back to the same tree.
func FuzzXMPPStream(f *testing.F) {
	for _, s := range []string{
		prosodySASLFeatures, prosodyBindFeatures1 + prosodyBindFeatures2, prosodyConnReq,
		prosodyLegacyError, prosodyConflict, " <presence/> ",
		"<iq id='&amp;&#x41;'><a xmlns:p='urn:p'><p:b p:c='d'><![CDATA[<>]]></p:b></a></iq>",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		src := chunks{prosodyHeader, string(in)}
		rd := newStreamReader(&src, 4096)
		for range 64 {
			raw, k, err := rd.next()
			if err != nil {
				return
			}
			if k != itemElement {
				continue
			}
			e, err := parseElement(raw, rd.scope)
			if err != nil {
				continue
			}
			out := e.appendXML(nil, nsClient)
			again, err := parseElement(out, rd.scope)
			if err != nil {
				t.Fatalf("%q serialized as %q: %v", raw, out, err)
			}
			if !sameElement(e, again) {
				t.Fatalf("%q serialized as %q parses differently", raw, out)
			}
			if !bytes.Equal(again.appendXML(nil, nsClient), out) {
				t.Fatalf("%q: serialization not stable", out)
			}
		}
	})
}

// RFC 5802 5 and RFC 7677 3: the examples' exchanges.
func TestSCRAMClientRFCExamples(t *testing.T) {
	cases := []struct {
		mech                                 XMPPMechanism
		cnonce, serverFirst, final, verifier string
	}{
		{MechSCRAMSHA1, "fyko+d2lbbFgONRv9qkxdawL",
			"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
			"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
			"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="},
		{MechSCRAMSHA256, "rOprNGfwEbeRWgbNEkqO",
			"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
			"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
			"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="},
	}
	var cache saltCache
	for _, c := range cases {
		for round := range 2 { // the second from the cache
			s := newSCRAMClient(c.mech, "user", "pencil", &cache)
			s.cnonce, s.clientFirst = c.cnonce, "n=user,r="+c.cnonce
			final, err := s.final([]byte(c.serverFirst))
			if err != nil || string(final) != c.final {
				t.Fatalf("%s round %d: %q, %v", c.mech, round, final, err)
			}
			if err := s.verify([]byte(c.verifier)); err != nil {
				t.Errorf("%s: %v", c.mech, err)
			}
			if err := s.verify([]byte("v=AAAA")); err == nil {
				t.Errorf("%s: a wrong server signature verified", c.mech)
			}
		}
	}
	s := newSCRAMClient(MechSCRAMSHA1, "user", "pencil", nil)
	for _, bad := range []string{"r=other,s=QSXCR+Q6sek8bf92,i=4096", "r=" + s.cnonce + "x,s=QSXCR+Q6sek8bf92,i=0", "r=" + s.cnonce + "x,s=!!,i=1", "junk"} {
		if _, err := s.final([]byte(bad)); err == nil {
			t.Errorf("server-first %q accepted", bad)
		}
	}
	if got := scramName("a=b,c"); got != "a=3Db=2Cc" {
		t.Errorf("saslname %q", got)
	}
}
