package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
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

// parseSeeds are real stanzas and the edges of the parser: what the
// differential fuzz test starts from.
var parseSeeds = []string{
	prosodySASLFeatures, prosodyBindFeatures1 + prosodyBindFeatures2, prosodyConnReq, prosodyLegacyError,
	prosodyConflict[:len(prosodyConflict)-len("</stream:stream>")],
	prosodyHeader[len("<?xml version='1.0'?>"):],
	"<iq type='result' id='cr1' to='acs@sim.example/acs'/>",
	"<iq type='error' id='cr1' to='acs@sim.example/acs'><error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
	"<iq type='get' id='ping1' to='sim.example'><ping xmlns='urn:xmpp:ping'/></iq>",
	"<iq type='result' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>cpe@sim.example/cwmp</jid></bind></iq>",
	"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1meWtvK2QybGJiRmdPTlJ2OXFreGRhd0wzcmZjTkhZSlkxWlZ2V1ZzN2oscz1RU1hDUitRNnNlazhiZjkyLGk9NDA5Ng==</challenge>",
	"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text xml:lang='en'>Unable to authorize you</text></failure>",
	"<message from='a@b/c' type='chat'><body>1 &lt; 2 &amp;&amp; 3 &gt; 2 &#x1F600; &#233;t&#xE9;</body></message>",
	"<presence>\n  <show>away</show>\n  <status>back <![CDATA[<soon>]]> &amp; later</status>\n</presence>",
	"<iq id=\"a&amp;b&#x27;&#60;\" to='x'><q xmlns='urn:x' xmlns:p='urn:p'><p:r p:s='t'>1 &lt; 2<![CDATA[ & <3 ]]></p:r></q></iq>",
	"<a>x<b>&amp;</b>y<c/>z&lt;<![CDATA[]]>w</a>",
	"<a><![CDATA[x]]><![CDATA[y]]>&amp;<b/><![CDATA[z]]></a>",
	"<:a :b='c'></a>", "<a xmlns:p=''/>", "<x:iq/>", "<a b='1' b='2'/>", "<a b='&nbsp;'/>", "<a>]]></a>", "<a>]]>&amp;</a>",
	"<a>&amp;]]></a>", "<a b='>'/>", "<a b='<'/>", "<a>&#0;</a>", "<a>&#xD800;</a>", "<a>&#x;</a>", "<a>&#+1;</a>", "<a>\xff</a>",
	"<a b='\xff'/>", "<a\xc3\xa9 b\xc3\xa9='1'/>", "<a>< /a>", "<a></a >", "<a></ a>", "<a/><b/>", "<a><!-- x --></a>", "<a><?x?></a>",
	"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", "<xml:a xml:lang='en'/>", "<xmlns:a/>",
	"<a>x&amp;<b>y&lt;</b>z&gt;<c>w<![CDATA[<]]></c>v&#65;<d>&quot;</d></a>",
	// Beyond the sizes the parser guesses or keeps on its stack.
	"<r>" + strings.Repeat("<a/>", 20) + "<b><![CDATA[<<<<]]></b></r>",
	"<r a1='1' a2='2' a3='3' a4='4' a5='5' a6='6' a7='7' a8='8' a9='9' b1='1' b2='2' b3='3'/>",
	"<r xmlns:p0='urn:0'><a xmlns:p1='urn:1' xmlns:p2='urn:2' xmlns:p3='urn:3'><b xmlns:p4='urn:4' xmlns:p5='urn:5' xmlns:p6='urn:6'>" +
		"<c xmlns:p7='urn:7' xmlns:p8='urn:8' xmlns='urn:9'><p0:d p8:e='f'/><p1:d/></c><p7:x/></b></a></r>",
	"<r><![CDATA[" + strings.Repeat("<", 100) + "]]></r>",
	strings.Repeat("<a>", maxDepth-1) + strings.Repeat("</a>", maxDepth-1),
	strings.Repeat("<a>", maxDepth) + strings.Repeat("</a>", maxDepth),
	strings.Repeat("<a>", maxDepth+1) + strings.Repeat("</a>", maxDepth+1),
}

// FuzzParseElement compares parseElement and parseStreamHeader with the
// parser they replaced (oldParseElement): the same error, or the same
// tree, which shares no byte with its input.
func FuzzParseElement(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	for _, s := range benchStanzas {
		f.Add([]byte(s.raw))
	}
	// FuzzXMPPStream's corpus, as the fuzzer found it.
	corpus, _ := filepath.Glob("testdata/fuzz/FuzzXMPPStream/*")
	for _, name := range corpus {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		_, lit, _ := strings.Cut(string(b), "[]byte(")
		if s, err := strconv.Unquote(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(lit), ")"))); err == nil {
			f.Add([]byte(s))
		}
	}
	client := &nsScope{space: nsClient}
	scopes := []*nsScope{nil, client, {prefix: "stream", space: nsStream, parent: client}}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, scope := range scopes {
			want, wantErr := oldParseElement(in, scope)
			raw := bytes.Clone(in)
			got, err := parseElement(raw, scope)
			for i := range raw {
				raw[i] = '#' // the stream reader reusing its buffer
			}
			if err != wantErr {
				t.Fatalf("%q in %+v: error %v, want %v", in, scope, err, wantErr)
			}
			if err == nil {
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%q in %+v: tree\n%s\nwant\n%s", in, scope, dumpElement(got), dumpElement(want))
				}
				checkFullSlices(t, got)
			}
		}
		want, wantErr := oldParseStreamHeader(in)
		raw := bytes.Clone(in)
		got, err := parseStreamHeader(raw)
		for i := range raw {
			raw[i] = '#'
		}
		if err != wantErr || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: stream header %+v, %v, want %+v, %v", in, got, err, want, wantErr)
		}
	})
}

// The tree outlives the buffer it was parsed from, which the stream
// reader refills with the next stanzas.
func TestParseElementCopiesRaw(t *testing.T) {
	for _, s := range append(parseSeeds, benchStanzas[0].raw, benchStanzas[3].raw) {
		want, wantErr := oldParseElement([]byte(s), &nsScope{space: nsClient})
		if wantErr != nil {
			continue
		}
		raw := []byte(s)
		e, err := parseElement(raw, &nsScope{space: nsClient})
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		for i := range raw {
			raw[i] = "<&'x>\xff"[i%6]
		}
		if !reflect.DeepEqual(e, want) {
			t.Errorf("%q after its buffer changed:\n%s\nwant\n%s", s, dumpElement(e), dumpElement(want))
		}
		checkFullSlices(t, e)
	}

	// The load bench's connection request, field by field.
	raw := []byte(benchStanzas[0].raw)
	iq, err := parseElement(raw, benchStanzas[0].scope)
	if err != nil {
		t.Fatal(err)
	}
	clear(raw)
	cr := iq.firstChild()
	if !iq.is(nsClient, "iq") || iq.attr("type") != "get" || iq.attr("id") != "p1k.2f" ||
		iq.attr("to") != "bench-00001@example.net/cwmp" || iq.attr("from") != "acs@example.net/bench-0" ||
		!cr.is(nsConnReq, "connectionRequest") || cr.attr("xmlns") != nsConnReq ||
		cr.child(nsConnReq, "username").text != "cr-user-1" || cr.child(nsConnReq, "password").text != "cr-pass-1" {
		t.Errorf("connection request after its buffer was cleared:\n%s", dumpElement(iq))
	}
}

// checkFullSlices checks that appending to an element's attributes or
// children, which share arenas, cannot overwrite another element's.
func checkFullSlices(t *testing.T, e *element) {
	t.Helper()
	if cap(e.attrs) != len(e.attrs) || cap(e.children) != len(e.children) {
		t.Fatalf("<%s>: attributes %d/%d, children %d/%d", e.local, len(e.attrs), cap(e.attrs), len(e.children), cap(e.children))
	}
	for _, c := range e.children {
		checkFullSlices(t, c)
	}
}

// dumpElement shows every field of the tree.
func dumpElement(e *element) string {
	var b strings.Builder
	var dump func(e *element, indent string)
	dump = func(e *element, indent string) {
		fmt.Fprintf(&b, "%s{space %q local %q prefix %q text %q attrs %q (nil %t) children %d (nil %t)}\n",
			indent, e.space, e.local, e.prefix, e.text, e.attrs, e.attrs == nil, len(e.children), e.children == nil)
		for _, c := range e.children {
			dump(c, indent+"  ")
		}
	}
	if e != nil {
		dump(e, "")
	}
	return b.String()
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

// The parser as it was before it parsed into arenas (commit 2390b18),
// renamed, kept as the reference FuzzParseElement compares parseElement
// with. Only the parser is copied: the element, xmlAttr and nsScope types
// it builds, and the name and character checks it calls (unchanged since),
// are the package's.
func oldLookup(s *nsScope, prefix string) (string, bool) {
	switch prefix {
	case "xml":
		return nsXML, true
	case "xmlns":
		return "", false
	}
	for ; s != nil; s = s.parent {
		if s.prefix == prefix {
			return s.space, true
		}
	}
	return "", prefix == "" // no default namespace: the empty one
}

// oldParseStreamHeader parses the stream header's start tag (RFC 6120
// 4.7) and returns the namespace scope it declares.
func oldParseStreamHeader(raw []byte) (*nsScope, error) {
	p := oldXMLParser{b: raw}
	e, _, err := p.startTag(nil)
	if err != nil {
		return nil, err
	}
	if e.local != "stream" || e.space != nsStream {
		return nil, errXMLSyntax
	}
	return p.scope, nil
}

// oldParseElement parses one complete element within scope.
func oldParseElement(raw []byte, scope *nsScope) (*element, error) {
	p := oldXMLParser{b: raw}
	e, err := p.element(scope, 0)
	if err != nil {
		return nil, err
	}
	if p.i != len(p.b) {
		return nil, errXMLSyntax
	}
	return e, nil
}

// oldXMLParser parses one element from b.
type oldXMLParser struct {
	b     []byte
	i     int
	scope *nsScope // of the last start tag parsed
}

func (p *oldXMLParser) element(parent *nsScope, depth int) (*element, error) {
	if depth >= maxDepth {
		return nil, errXMLDepth
	}
	e, empty, err := p.startTag(parent)
	if err != nil || empty {
		return e, err
	}
	scope := p.scope
	var text []byte
	for {
		j := bytes.IndexByte(p.b[p.i:], '<')
		if j < 0 {
			return nil, errXMLSyntax
		}
		if j > 0 {
			if text, err = oldAppendUnescaped(text, p.b[p.i:p.i+j]); err != nil {
				return nil, err
			}
		}
		p.i += j
		switch {
		case bytes.HasPrefix(p.b[p.i:], []byte("</")):
			k := bytes.IndexByte(p.b[p.i:], '>')
			if k < 0 {
				return nil, errXMLSyntax
			}
			name := string(bytes.TrimRight(p.b[p.i+2:p.i+k], " \t\r\n"))
			if name != oldQualified(e.prefix, e.local) {
				return nil, errXMLSyntax
			}
			p.i += k + 1
			e.text = string(text)
			return e, nil
		case bytes.HasPrefix(p.b[p.i:], []byte("<![CDATA[")):
			k := bytes.Index(p.b[p.i+9:], []byte("]]>"))
			if k < 0 {
				return nil, errXMLSyntax
			}
			text = append(text, p.b[p.i+9:p.i+9+k]...)
			p.i += 9 + k + 3
		case bytes.HasPrefix(p.b[p.i:], []byte("<!")), bytes.HasPrefix(p.b[p.i:], []byte("<?")):
			return nil, errXMLForbid
		default:
			c, err := p.element(scope, depth+1)
			if err != nil {
				return nil, err
			}
			e.children = append(e.children, c)
		}
	}
}

func oldQualified(prefix, local string) string {
	if prefix == "" {
		return local
	}
	return prefix + ":" + local
}

// startTag parses the start tag at p.i, declares its namespaces on top of
// parent into p.scope, and resolves its name. empty is true for a
// self-closing tag.
func (p *oldXMLParser) startTag(parent *nsScope) (e *element, empty bool, err error) {
	b := p.b
	if p.i >= len(b) || b[p.i] != '<' {
		return nil, false, errXMLSyntax
	}
	i := p.i + 1
	start := i
	for i < len(b) && !isSpace(b[i]) && b[i] != '>' && b[i] != '/' {
		i++
	}
	if i == start || i >= len(b) {
		return nil, false, errXMLSyntax
	}
	name := splitName(string(b[start:i]))
	if !validXMLName(name) {
		return nil, false, errXMLSyntax
	}
	e = &element{prefix: name.prefix, local: name.local}
	scope := parent
	for {
		sp := i
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) {
			return nil, false, errXMLSyntax
		}
		if b[i] == '>' {
			i++
			break
		}
		if b[i] == '/' {
			if i+1 >= len(b) || b[i+1] != '>' {
				return nil, false, errXMLSyntax
			}
			i += 2
			empty = true
			break
		}
		if sp == i {
			return nil, false, errXMLSyntax // attributes must be separated by space
		}
		as := i
		for i < len(b) && b[i] != '=' && !isSpace(b[i]) && b[i] != '>' && b[i] != '/' {
			i++
		}
		aname := string(b[as:i])
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if aname == "" || i >= len(b) || b[i] != '=' {
			return nil, false, errXMLSyntax
		}
		i++
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) || (b[i] != '"' && b[i] != '\'') {
			return nil, false, errXMLSyntax
		}
		q := b[i]
		k := bytes.IndexByte(b[i+1:], q)
		if k < 0 {
			return nil, false, errXMLSyntax
		}
		raw := b[i+1 : i+1+k]
		if bytes.IndexByte(raw, '<') >= 0 {
			return nil, false, errXMLSyntax
		}
		v, err := oldAppendUnescaped(nil, raw)
		if err != nil {
			return nil, false, err
		}
		i += k + 2
		for _, a := range e.attrs {
			if a.name == aname {
				return nil, false, errXMLSyntax // a repeated attribute
			}
		}
		an := splitName(aname)
		if !validXMLName(an) {
			return nil, false, errXMLSyntax
		}
		e.attrs = append(e.attrs, xmlAttr{aname, string(v)})
		switch {
		case aname == xmlnsAttr:
			scope = &nsScope{prefix: "", space: string(v), parent: scope}
		case an.prefix == xmlnsAttr:
			if len(v) == 0 {
				return nil, false, errXMLPrefix // undeclaring a prefix is XML 1.1
			}
			scope = &nsScope{prefix: an.local, space: string(v), parent: scope}
		}
	}
	for _, a := range e.attrs {
		if an := splitName(a.name); an.prefix != "" && an.prefix != xmlnsAttr {
			if _, ok := oldLookup(scope, an.prefix); !ok {
				return nil, false, errXMLPrefix
			}
		}
	}
	space, ok := oldLookup(scope, e.prefix)
	if !ok {
		return nil, false, errXMLPrefix
	}
	e.space = space
	p.i, p.scope = i, scope
	return e, empty, nil
}

// oldAppendUnescaped appends s with its references replaced: the five
// predefined entities and character references (RFC 6120 11.1 allows no
// others). Text must be valid UTF-8.
func oldAppendUnescaped(dst, s []byte) ([]byte, error) {
	if !utf8.Valid(s) {
		return nil, errXMLSyntax
	}
	for {
		i := bytes.IndexByte(s, '&')
		if i < 0 {
			if bytes.IndexByte(s, '>') >= 0 && bytes.Contains(s, []byte("]]>")) {
				return nil, errXMLSyntax
			}
			return append(dst, s...), nil
		}
		dst = append(dst, s[:i]...)
		s = s[i:]
		j := bytes.IndexByte(s, ';')
		if j < 0 {
			return nil, errXMLSyntax
		}
		ref := s[1:j]
		s = s[j+1:]
		switch string(ref) {
		case "lt":
			dst = append(dst, '<')
		case "gt":
			dst = append(dst, '>')
		case "amp":
			dst = append(dst, '&')
		case "apos":
			dst = append(dst, '\'')
		case "quot":
			dst = append(dst, '"')
		default:
			if len(ref) < 2 || ref[0] != '#' {
				return nil, errXMLForbid
			}
			base, digits := 10, ref[1:]
			if digits[0] == 'x' {
				base, digits = 16, digits[1:]
			}
			if len(digits) == 0 || len(digits) > 8 || digits[0] == '-' || digits[0] == '+' {
				return nil, errXMLSyntax
			}
			r, err := strconv.ParseUint(string(digits), base, 32)
			if err != nil || !validXMLChar(rune(r)) {
				return nil, errXMLSyntax
			}
			dst = utf8.AppendRune(dst, rune(r))
		}
	}
}
