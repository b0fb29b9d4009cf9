package sim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The XML codec of the simulator's XMPP clients (CPEs and the ACS): a
// stream reader that cuts top-level elements out of an XMPP stream, and a
// parser that turns one element into a small tree. It is pure and
// allocation-aware, and does only what an XMPP client needs: RFC 6120
// 11.1 forbids comments, processing instructions (bar the XML
// declaration), DTDs and entities other than the five predefined ones, so
// none of them is accepted.
//
// It is hand-written rather than encoding/xml (as mellium.im/xmpp uses):
// the simulator holds tens of thousands of sessions, and encoding/xml's
// token-by-token decoder keeps a bufio.Reader and costs several
// allocations per token, where this keeps a 512-byte buffer per idle
// session and parses a stanza in one pass.

// XML namespaces of RFC 6120, XEP-0199 and TR-069 Annex K.
const (
	nsClient   = "jabber:client"
	nsStream   = "http://etherx.jabber.org/streams"
	nsTLS      = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL     = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind     = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession  = "urn:ietf:params:xml:ns:xmpp-session"
	nsStanzas  = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsStreams  = "urn:ietf:params:xml:ns:xmpp-streams"
	nsPing     = "urn:xmpp:ping"
	nsConnReq  = "urn:broadband-forum-org:cwmp:xmppConnReq-1-0"
	nsXML      = "http://www.w3.org/XML/1998/namespace"
	xmlnsAttr  = "xmlns"
	xmlnsColon = "xmlns:"
)

const (
	// minReadBuffer is the read buffer an idle session keeps: a
	// connection request routed by a server is about 400 bytes.
	minReadBuffer = 512
	// DefaultXMPPMaxStanza is the largest element a client accepts.
	DefaultXMPPMaxStanza = 64 << 10
	// maxDepth bounds element nesting, so parsing cannot recurse without
	// end.
	maxDepth = 64
)

var (
	errXMLSyntax   = errors.New("sim: XMPP: malformed XML")
	errXMLForbid   = errors.New("sim: XMPP: comment, processing instruction, DTD or unknown entity (RFC 6120 11.1)")
	errXMLTooLarge = errors.New("sim: XMPP: stanza too large")
	errXMLDepth    = errors.New("sim: XMPP: elements nested too deep")
	errXMLPrefix   = errors.New("sim: XMPP: undeclared namespace prefix")
)

// itemKind is what streamReader.next found.
type itemKind int

const (
	itemElement     itemKind = iota // a complete top-level element: a stanza or a nonza
	itemStreamOpen                  // the stream header, <stream:stream ...> (unclosed)
	itemStreamClose                 // </stream:stream>
	itemXMLDecl                     // <?xml ...?>, skipped by next
)

// xmlName is an element or attribute name as written: prefix:local.
type xmlName struct{ prefix, local string }

func splitName(s string) xmlName {
	if i := indexByteStr(s, ':'); i >= 0 {
		return xmlName{s[:i], s[i+1:]}
	}
	return xmlName{"", s}
}

func indexByteStr(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// nsScope is a namespace declaration scope: prefix → namespace, the empty
// prefix being the default namespace. It is a linked list from the
// innermost element out.
type nsScope struct {
	prefix, space string
	parent        *nsScope
}

func (s *nsScope) lookup(prefix string) (string, bool) {
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

// xmlAttr is one attribute, its name as written and its value unescaped.
type xmlAttr struct{ name, value string }

// element is one parsed XML element.
type element struct {
	space, local string    // resolved namespace and local name
	prefix       string    // the prefix it was written with
	attrs        []xmlAttr // in order, namespace declarations included
	text         string    // its character data, unescaped, children's excluded
	children     []*element
}

// attr returns the value of the unprefixed attribute name, or "".
func (e *element) attr(name string) string {
	for _, a := range e.attrs {
		if a.name == name {
			return a.value
		}
	}
	return ""
}

// child returns the first child with the given namespace and local name.
func (e *element) child(space, local string) *element {
	for _, c := range e.children {
		if c.local == local && c.space == space {
			return c
		}
	}
	return nil
}

// firstChild returns the first child element, or nil.
func (e *element) firstChild() *element {
	if len(e.children) == 0 {
		return nil
	}
	return e.children[0]
}

// is reports whether e has the given namespace and local name.
func (e *element) is(space, local string) bool {
	return e != nil && e.space == space && e.local == local
}

// streamReader cuts an XMPP stream into its header, its top-level
// elements and its close. Between items it holds only what it has read
// ahead, in a buffer that shrinks back to minReadBuffer when it had to
// grow.
type streamReader struct {
	src  io.Reader
	buf  []byte
	r, w int
	max  int // largest item; defaults to DefaultXMPPMaxStanza
	// header is true until the stream header has been read.
	header bool
	// scope is the namespace scope the stream header declared: the
	// parent of every top-level element.
	scope *nsScope
	// whitespace counts whitespace bytes seen between items:
	// keepalives (RFC 6120 4.6.1).
	whitespace uint64
}

func newStreamReader(src io.Reader, max int) *streamReader {
	if max <= 0 {
		max = DefaultXMPPMaxStanza
	}
	return &streamReader{src: src, max: max, header: true}
}

// reset expects a new stream header (after STARTTLS or SASL, RFC 6120
// 5.4.3.3 and 6.4.6) on src.
func (s *streamReader) reset(src io.Reader) {
	s.src = src
	s.header = true
	s.scope = nil
}

// buffered returns how many bytes have been read ahead.
func (s *streamReader) buffered() int { return s.w - s.r }

// next returns the next item. For itemElement, raw is the element's bytes,
// valid until the next call. A stream that ends within an item gives
// io.ErrUnexpectedEOF.
func (s *streamReader) next() (raw []byte, kind itemKind, err error) {
	for {
		// Skip whitespace between items.
		for s.r < s.w && isSpace(s.buf[s.r]) {
			s.r++
			s.whitespace++
		}
		if s.r < s.w {
			n, k, err := scanItem(s.buf[s.r:s.w], s.header)
			if err != nil {
				return nil, 0, err
			}
			if n > 0 {
				raw = s.buf[s.r : s.r+n]
				s.r += n
				switch k {
				case itemXMLDecl:
					continue
				case itemStreamOpen:
					scope, err := parseStreamHeader(raw)
					if err != nil {
						return nil, 0, err
					}
					s.header, s.scope = false, scope
				}
				return raw, k, nil
			}
		}
		if err := s.fill(); err != nil {
			return nil, 0, err
		}
	}
}

// release drops the read-ahead buffer when nothing is pending, so an idle
// session keeps only a small one.
func (s *streamReader) release() {
	if s.r == s.w && cap(s.buf) > minReadBuffer {
		s.buf, s.r, s.w = nil, 0, 0
	}
}

// fill reads more into the buffer, compacting or growing it.
func (s *streamReader) fill() error {
	if s.r == s.w {
		s.r, s.w = 0, 0
		if cap(s.buf) > minReadBuffer {
			s.buf = nil
		}
	}
	if s.buf == nil {
		s.buf = make([]byte, minReadBuffer)
	}
	if s.w == len(s.buf) {
		if s.r > 0 {
			s.w = copy(s.buf, s.buf[s.r:s.w])
			s.r = 0
		} else {
			if len(s.buf) >= s.max {
				return errXMLTooLarge
			}
			nb := make([]byte, min(2*len(s.buf), s.max))
			copy(nb, s.buf[:s.w])
			s.buf = nb
		}
	}
	n, err := s.src.Read(s.buf[s.w:])
	s.w += n
	if n > 0 {
		return nil
	}
	if err == io.EOF && s.r != s.w {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// scanItem finds the end of the item at the start of b: an element, the
// stream header (when header is true, or the XML declaration before it),
// or the stream's close. n is 0 when b holds only part of it.
func scanItem(b []byte, header bool) (n int, kind itemKind, err error) {
	if b[0] != '<' {
		return 0, 0, errXMLSyntax // text at the top level
	}
	if len(b) < 2 {
		return 0, 0, nil
	}
	switch b[1] {
	case '?':
		// Only the XML declaration, and only before the stream header.
		if !header {
			return 0, 0, errXMLForbid
		}
		if len(b) < 6 {
			return 0, 0, nil
		}
		if !bytes.HasPrefix(b, []byte("<?xml")) || !isSpace(b[5]) {
			return 0, 0, errXMLForbid
		}
		i := bytes.Index(b, []byte("?>"))
		if i < 0 {
			return 0, 0, nil
		}
		return i + 2, itemXMLDecl, nil
	case '/':
		if header {
			return 0, 0, errXMLSyntax
		}
		i := bytes.IndexByte(b, '>')
		if i < 0 {
			return 0, 0, nil
		}
		name := string(bytes.TrimRight(b[2:i], " \t\r\n"))
		if splitName(name).local != "stream" {
			return 0, 0, errXMLSyntax
		}
		return i + 1, itemStreamClose, nil
	case '!':
		return 0, 0, errXMLForbid
	}
	if header {
		end, _, err := scanStartTag(b)
		if err != nil || end == 0 {
			return 0, 0, err
		}
		if b[end-2] == '/' {
			return 0, 0, errXMLSyntax // a stream header closed at once
		}
		return end, itemStreamOpen, nil
	}
	depth := 0
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 {
			return 0, 0, nil
		}
		i += j
		if i+1 >= len(b) {
			return 0, 0, nil
		}
		switch b[i+1] {
		case '/':
			k := bytes.IndexByte(b[i:], '>')
			if k < 0 {
				return 0, 0, nil
			}
			i += k + 1
			depth--
			if depth == 0 {
				return i, itemElement, nil
			}
		case '!':
			if len(b)-i < 9 {
				return 0, 0, nil
			}
			if !bytes.HasPrefix(b[i:], []byte("<![CDATA[")) {
				return 0, 0, errXMLForbid
			}
			k := bytes.Index(b[i+9:], []byte("]]>"))
			if k < 0 {
				return 0, 0, nil
			}
			i += 9 + k + 3
		case '?':
			return 0, 0, errXMLForbid
		default:
			end, selfClosing, err := scanStartTag(b[i:])
			if err != nil || end == 0 {
				return 0, 0, err
			}
			i += end
			if !selfClosing {
				depth++
				if depth > maxDepth {
					return 0, 0, errXMLDepth
				}
			} else if depth == 0 {
				return i, itemElement, nil
			}
		}
	}
}

// scanStartTag finds the '>' ending the start tag at the start of b,
// skipping quoted attribute values, and returns the length of the tag, or
// 0 when b holds only part of it.
func scanStartTag(b []byte) (n int, selfClosing bool, err error) {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; c {
		case '"', '\'':
			k := bytes.IndexByte(b[i+1:], c)
			if k < 0 {
				return 0, false, nil
			}
			i += k + 1
		case '<':
			return 0, false, errXMLSyntax
		case '>':
			return i + 1, b[i-1] == '/', nil
		}
	}
	return 0, false, nil
}

// parseStreamHeader parses the stream header's start tag (RFC 6120
// 4.7) and returns the namespace scope it declares.
func parseStreamHeader(raw []byte) (*nsScope, error) {
	var declBuf [4]nsDecl
	p := xmlParser{b: raw, s: string(raw)}
	p.allocArenas()
	e, decls, _, err := p.startTag(declBuf[:0])
	if err != nil {
		return nil, err
	}
	if e.local != "stream" || e.space != nsStream {
		return nil, errXMLSyntax
	}
	// The scope lasts as long as the stream: the prefixes and namespaces
	// it knows are interned, so that it need not keep the header's bytes.
	var scope *nsScope
	for _, d := range decls {
		scope = &nsScope{prefix: d.prefix, space: d.space, parent: scope}
	}
	return scope, nil
}

// parseElement parses one complete element within scope.
//
// The tree shares nothing with raw, which the stream reader reuses, yet
// a parse allocates only a few blocks (the load bench's CPEs parse a
// connection request per wake): one string copy of raw, which every name,
// and every value and text without references, is a slice of; the values
// and texts unescaped or joined, if any, in one strings.Builder; and
// arenas for the elements and their children, and for the attributes,
// sized from raw (allocArenas). Whatever keeps a string or an element of
// the tree keeps all of that alive.
func parseElement(raw []byte, scope *nsScope) (*element, error) {
	// Parsing state that lives only as long as the parse, on the stack
	// unless a stanza nests or declares unusually much. It is kept out
	// of xmlParser: escape analysis does not tell one field from
	// another, and the parser's arenas end up in the tree.
	var (
		declBuf [8]nsDecl
		openBuf [8]openElement
		kidBuf  [16]*element
	)
	decls, open, kids := declBuf[:0], openBuf[:0], kidBuf[:0]
	p := xmlParser{b: raw, s: string(raw), outer: scope}
	p.allocArenas()
	var root *element
	for root == nil {
		// At a start tag, of the root or of a child of open's last.
		if len(open) >= maxDepth {
			return nil, errXMLDepth
		}
		nd := len(decls)
		e, d, empty, err := p.startTag(decls)
		if err != nil {
			return nil, err
		}
		decls = d
		switch {
		case !empty:
			open = append(open, openElement{e: e, decls: nd, kids: len(kids), textEnd: -1})
		case len(open) == 0:
			return p.end(e)
		default:
			decls = decls[:nd]
			kids = append(kids, e)
		}
	content:
		for {
			o := &open[len(open)-1]
			rest := p.b[p.i:]
			j := bytes.IndexByte(rest, '<')
			if j < 0 {
				return nil, errXMLSyntax
			}
			if j > 0 {
				if err := p.addText(o, p.i, p.i+j, false); err != nil {
					return nil, err
				}
			}
			p.i += j
			rest = rest[j:]
			var next byte // what follows '<'
			if len(rest) > 1 {
				next = rest[1]
			}
			switch {
			case next == '/':
				e := o.e
				k := endTag(rest, e.prefix, e.local)
				if k < 0 {
					return nil, errXMLSyntax
				}
				p.i += k + 1
				e.text = o.text
				if len(kids) > o.kids {
					if p.kids == nil {
						p.kids = make([]*element, 0, max(p.n-1, len(kids)-o.kids))
					}
					n := len(p.kids)
					p.kids = append(p.kids, kids[o.kids:]...)
					e.children = p.kids[n:len(p.kids):len(p.kids)]
				}
				kids, decls, open = kids[:o.kids], decls[:o.decls], open[:len(open)-1]
				if len(open) == 0 {
					root = e
					break content
				}
				kids = append(kids, e)
			case next == '!' && bytes.HasPrefix(rest, []byte("<![CDATA[")):
				k := bytes.Index(rest[9:], []byte("]]>"))
				if k < 0 {
					return nil, errXMLSyntax
				}
				if err := p.addText(o, p.i+9, p.i+9+k, true); err != nil {
					return nil, err
				}
				p.i += 9 + k + 3
			case next == '!' || next == '?':
				return nil, errXMLForbid
			default:
				break content // a child's start tag
			}
		}
	}
	return p.end(root)
}

// xmlParser parses one element from b, copying what it keeps out of b
// into s (b as a string) and esc, and its elements, attributes and
// children into arenas.
type xmlParser struct {
	b     []byte
	s     string // string(b): names, and values and texts without references, are slices of it
	i     int
	outer *nsScope        // the scope the element is parsed in
	esc   strings.Builder // values and texts that are not slices of s

	n     int // how many elements allocArenas expects
	elems []element
	attrs []xmlAttr
	kids  []*element
}

// nsDecl is a namespace declaration of an element being parsed: the
// declarations of the open elements, outermost first, extend outer.
type nsDecl struct{ prefix, space string }

// openElement is an element whose end tag is still to come.
type openElement struct {
	e       *element
	decls   int    // len(decls) before its own declarations
	kids    int    // where its children start on the stack of children
	text    string // its character data so far
	textEnd int    // esc.Len() just after text when text is the tail of esc, else -1
}

// end checks that the root element e ended b.
func (p *xmlParser) end(e *element) (*element, error) {
	if p.i != len(p.b) {
		return nil, errXMLSyntax
	}
	return e, nil
}

// allocArenas sizes the arenas for the elements of b. In well-formed XML
// only markup and CDATA sections hold '<', and an element has a start and
// an end tag, or only a start tag when it is empty: so a stanza with
// count '<' has about count/2 elements, exactly (count+1)/2 when at most
// one is written empty, as the root of an IQ result, and no CDATA section
// holds '<'. In a large stanza, where CDATA could make that overshoot by
// much, the start tags are counted instead. An arena that turns out too
// small grows, keeping the slices already taken from it; those of a
// large stanza start small, so that bytes that are not XML cost little.
func (p *xmlParser) allocArenas() {
	b := p.b
	n := bytes.Count(b, []byte("<"))
	if n <= 64 {
		n = (n + 1) / 2
	} else {
		n = countStartTags(b)
	}
	p.n = n
	// Elements and children together, for the stanzas a client mostly
	// parses: connection requests, pings and their answers.
	switch n {
	case 0:
	case 1:
		p.elems = make([]element, 0, 1)
	case 2:
		t := new(struct {
			e [2]element
			k [1]*element
		})
		p.elems, p.kids = t.e[:0], t.k[:0]
	case 3:
		t := new(struct {
			e [3]element
			k [2]*element
		})
		p.elems, p.kids = t.e[:0], t.k[:0]
	case 4:
		t := new(struct {
			e [4]element
			k [3]*element
		})
		p.elems, p.kids = t.e[:0], t.k[:0]
	default:
		p.elems = make([]element, 0, min(n, 16))
	}
}

// countStartTags counts the start tags in b, skipping CDATA sections.
func countStartTags(b []byte) int {
	n := 0
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 || i+j+1 >= len(b) {
			break
		}
		i += j + 1
		switch b[i] {
		case '/':
		case '!':
			if bytes.HasPrefix(b[i:], []byte("![CDATA[")) {
				if k := bytes.Index(b[i+8:], []byte("]]>")); k >= 0 {
					i += 8 + k
				}
			}
		default:
			n++
		}
	}
	return n
}

// newElement takes an element from the arena, at the start tag at p.i.
func (p *xmlParser) newElement() *element {
	if len(p.elems) == cap(p.elems) {
		p.elems = make([]element, 0, max(1, countStartTags(p.b[p.i:])))
	}
	p.elems = p.elems[:len(p.elems)+1]
	return &p.elems[len(p.elems)-1]
}

// lookup resolves prefix in decls on top of p.outer.
func (p *xmlParser) lookup(decls []nsDecl, prefix string) (string, bool) {
	switch prefix {
	case "xml":
		return nsXML, true
	case "xmlns":
		return "", false
	}
	for i := len(decls) - 1; i >= 0; i-- {
		if decls[i].prefix == prefix {
			return decls[i].space, true
		}
	}
	return p.outer.lookup(prefix)
}

// endTag returns the index of the '>' ending the end tag at the start of
// b, "</" prefix:local or local when prefix is empty, and optional space;
// or -1 when b holds no '>', or another name.
func endTag(b []byte, prefix, local string) int {
	n := len(local)
	if prefix != "" {
		n += len(prefix) + 1
	}
	// Names hold no '>', so a match followed by '>' is the whole tag.
	if len(b) > 2+n && b[2+n] == '>' && isQualified(b[2:2+n], prefix, local) {
		return 2 + n
	}
	k := bytes.IndexByte(b, '>')
	if k < 0 {
		return -1
	}
	name := b[2:k]
	for len(name) > 0 && isSpace(name[len(name)-1]) {
		name = name[:len(name)-1]
	}
	if !isQualified(name, prefix, local) {
		return -1
	}
	return k
}

// isQualified reports whether name is prefix:local, or local when prefix
// is empty, without building the string.
func isQualified(name []byte, prefix, local string) bool {
	if prefix == "" {
		return string(name) == local
	}
	return len(name) == len(prefix)+1+len(local) && name[len(prefix)] == ':' &&
		string(name[:len(prefix)]) == prefix && string(name[len(prefix)+1:]) == local
}

// startTag parses the start tag at p.i, appends the namespaces it
// declares to decls, and resolves its name. empty is true for a
// self-closing tag.
func (p *xmlParser) startTag(decls []nsDecl) (e *element, _ []nsDecl, empty bool, err error) {
	b := p.b
	if p.i >= len(b) || b[p.i] != '<' {
		return nil, nil, false, errXMLSyntax
	}
	start := p.i + 1
	i, name, ok := p.scanName(start, false)
	if i == start || i >= len(b) || !ok {
		return nil, nil, false, errXMLSyntax
	}
	e = p.newElement()
	e.prefix, e.local = name.prefix, name.local
	first := len(p.attrs)
	prefixed := false // an attribute's prefix to resolve
	for {
		sp := i
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) {
			return nil, nil, false, errXMLSyntax
		}
		if b[i] == '>' {
			i++
			break
		}
		if b[i] == '/' {
			if i+1 >= len(b) || b[i+1] != '>' {
				return nil, nil, false, errXMLSyntax
			}
			i += 2
			empty = true
			break
		}
		if sp == i {
			return nil, nil, false, errXMLSyntax // attributes must be separated by space
		}
		as := i
		var an xmlName
		var aok bool
		i, an, aok = p.scanName(as, true)
		aname := p.s[as:i]
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if aname == "" || i >= len(b) || b[i] != '=' {
			return nil, nil, false, errXMLSyntax
		}
		i++
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) || (b[i] != '"' && b[i] != '\'') {
			return nil, nil, false, errXMLSyntax
		}
		k := bytes.IndexByte(b[i+1:], b[i])
		if k < 0 {
			return nil, nil, false, errXMLSyntax
		}
		cls := classes(b[i+1 : i+1+k])
		if cls&clsLT != 0 && bytes.IndexByte(b[i+1:i+1+k], '<') >= 0 {
			return nil, nil, false, errXMLSyntax
		}
		v, err := p.unescaped(i+1, i+1+k, cls)
		if err != nil {
			return nil, nil, false, err
		}
		i += k + 2
		for _, a := range p.attrs[first:] {
			if a.name == aname {
				return nil, nil, false, errXMLSyntax // a repeated attribute
			}
		}
		if !aok {
			return nil, nil, false, errXMLSyntax
		}
		if p.attrs == nil {
			// An attribute takes an '=', but text may hold many.
			p.attrs = make([]xmlAttr, 0, min(bytes.Count(b[as:], []byte("=")), 8*max(p.n, 1)))
		}
		p.attrs = append(p.attrs, xmlAttr{aname, v})
		switch {
		case aname == xmlnsAttr:
			decls = append(decls, nsDecl{"", intern(v)})
		case an.prefix == xmlnsAttr:
			if v == "" {
				return nil, nil, false, errXMLPrefix // undeclaring a prefix is XML 1.1
			}
			decls = append(decls, nsDecl{intern(an.local), intern(v)})
		case an.prefix != "":
			prefixed = true
		}
	}
	if n := len(p.attrs); n > first {
		e.attrs = p.attrs[first:n:n] // full: appending to it cannot overwrite the next element's
	}
	if prefixed {
		for _, a := range e.attrs {
			if an := splitName(a.name); an.prefix != "" && an.prefix != xmlnsAttr {
				if _, ok := p.lookup(decls, an.prefix); !ok {
					return nil, nil, false, errXMLPrefix
				}
			}
		}
	}
	space, ok := p.lookup(decls, e.prefix)
	if !ok {
		return nil, nil, false, errXMLPrefix
	}
	e.space = space
	p.i = i
	return e, decls, empty, nil
}

// validXMLName is a loose check of an XML name: no empty parts, at most
// one colon, none of the characters that delimit markup.
func validXMLName(n xmlName) bool {
	if n.local == "" || indexByteStr(n.local, ':') >= 0 {
		return false
	}
	if n.prefix == "" && n.local != "" {
		return validNameChars(n.local)
	}
	return validNameChars(n.prefix) && validNameChars(n.local)
}

func validNameChars(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') || s[0] == '-' || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.', c >= 0x80:
		default:
			return false
		}
	}
	return utf8.ValidString(s)
}

// Byte classes, for scanning names, attribute values and text.
const (
	clsName  = 1 << iota // ASCII letters, digits, '-', '_' and '.'
	clsLT                // '<'
	clsAmp               // '&'
	clsGT                // '>'
	clsQuote             // '"' and '\''
	clsHigh              // not ASCII
)

var byteClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			t[c] = clsName
		case c >= 0x80:
			t[c] = clsHigh
		}
	}
	t['<'], t['&'], t['>'], t['"'], t['\''] = clsLT, clsAmp, clsGT, clsQuote, clsQuote
	return t
}()

// scanName scans the name that starts at b[i] up to where it ends: a
// space, '>', '/', '=' too for an attribute, or the end of b. It splits
// it as splitName does, and ok is validXMLName's verdict, found without
// a second pass for a name of name characters with at most one colon.
func (p *xmlParser) scanName(i int, attr bool) (end int, n xmlName, ok bool) {
	b := p.b
	start, colon, simple := i, -1, true
	for ; i < len(b); i++ {
		c := b[i]
		if byteClass[c] == clsName {
			continue
		}
		if c == ':' {
			if colon >= 0 {
				simple = false // a second colon
			} else {
				colon = i
			}
			continue
		}
		if isSpace(c) || c == '>' || c == '/' || (attr && c == '=') {
			break
		}
		simple = false
	}
	s := p.s[start:i]
	if !simple {
		n = splitName(s)
		return i, n, validXMLName(n)
	}
	if colon < 0 {
		return i, xmlName{"", s}, s != "" && nameStart(s[0])
	}
	n = xmlName{p.s[start:colon], p.s[colon+1 : i]}
	return i, n, n.local != "" && nameStart(n.local[0]) && (n.prefix == "" || nameStart(n.prefix[0]))
}

// nameStart reports whether the name character c may start a name part
// (validNameChars).
func nameStart(c byte) bool { return !(c >= '0' && c <= '9') && c != '-' && c != '.' }

// classes returns which of clsAmp, clsLT, clsGT and clsHigh t's bytes
// are of: clsAmp exactly; clsLT and clsGT together when t holds '<' or
// '>', which are one bit apart; clsHigh when t holds a byte over 0x7f. It
// reads eight bytes at a time.
func classes(t []byte) uint8 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	// hasZero is nonzero when a byte of x is 0 (Hacker's Delight 6-1).
	hasZero := func(x uint64) uint64 { return (x - ones) &^ x & highs }
	var amp, angle, high uint64
	for ; len(t) >= 8; t = t[8:] {
		x := binary.LittleEndian.Uint64(t)
		high |= x
		amp |= hasZero(x ^ ones*'&')
		angle |= hasZero((x | ones*2) ^ ones*'>') // '<' is '>' less 2
	}
	var cls uint8
	for _, c := range t {
		cls |= byteClass[c]
	}
	cls &= clsAmp | clsLT | clsGT | clsHigh
	if cls&(clsLT|clsGT) != 0 || angle != 0 {
		cls |= clsLT | clsGT
	}
	if amp != 0 {
		cls |= clsAmp
	}
	if high&highs != 0 {
		cls |= clsHigh
	}
	return cls
}

// intern returns the package's constant for a namespace or prefix it
// knows, so that what keeps a declaration does not keep the stanza.
func intern(s string) string {
	switch s {
	case "":
		return ""
	case "stream":
		return "stream"
	case nsClient:
		return nsClient
	case nsStream:
		return nsStream
	case nsTLS:
		return nsTLS
	case nsSASL:
		return nsSASL
	case nsBind:
		return nsBind
	case nsSession:
		return nsSession
	case nsStanzas:
		return nsStanzas
	case nsStreams:
		return nsStreams
	case nsPing:
		return nsPing
	case nsConnReq:
		return nsConnReq
	}
	return s
}

// unescaped returns b[from:to], whose bytes are of the classes cls,
// with its references replaced as writeUnescaped does: a slice of s when
// it holds none, else of esc.
func (p *xmlParser) unescaped(from, to int, cls uint8) (string, error) {
	t := p.b[from:to]
	if cls&clsAmp == 0 {
		// What writeUnescaped checks of text without references.
		if (cls&clsHigh != 0 && !utf8.Valid(t)) || (cls&clsGT != 0 && bytes.Contains(t, []byte("]]>"))) {
			return "", errXMLSyntax
		}
		return p.s[from:to], nil
	}
	p.growEsc(from)
	n := p.esc.Len()
	if err := writeUnescaped(&p.esc, t); err != nil {
		return "", err
	}
	return p.esc.String()[n:], nil
}

// addText adds b[from:to] to o's character data: unescaped, or as it is
// for a CDATA section. Text split by children (or by CDATA and
// references) is joined in esc.
func (p *xmlParser) addText(o *openElement, from, to int, cdata bool) error {
	if o.text == "" {
		if cdata {
			o.text, o.textEnd = p.s[from:to], -1
			return nil
		}
		n := p.esc.Len()
		v, err := p.unescaped(from, to, classes(p.b[from:to]))
		if err != nil {
			return err
		}
		o.text, o.textEnd = v, -1
		if p.esc.Len() != n {
			o.textEnd = p.esc.Len() // v is the tail of esc
		}
		return nil
	}
	p.growEsc(from)
	if o.textEnd != p.esc.Len() {
		p.esc.WriteString(o.text) // something was written after it
	}
	n := p.esc.Len() - len(o.text)
	if cdata {
		p.esc.Write(p.b[from:to])
	} else if err := writeUnescaped(&p.esc, p.b[from:to]); err != nil {
		return err
	}
	o.text, o.textEnd = p.esc.String()[n:], p.esc.Len()
	return nil
}

// growEsc makes room in esc, on its first use, for what is left of b
// from from on: unescaping only shrinks text.
func (p *xmlParser) growEsc(from int) {
	if p.esc.Cap() == 0 {
		p.esc.Grow(len(p.b) - from)
	}
}

// writeUnescaped writes s with its references replaced: the five
// predefined entities and character references (RFC 6120 11.1 allows no
// others). Text must be valid UTF-8.
func writeUnescaped(dst *strings.Builder, s []byte) error {
	if !utf8.Valid(s) {
		return errXMLSyntax
	}
	for {
		i := bytes.IndexByte(s, '&')
		if i < 0 {
			if bytes.IndexByte(s, '>') >= 0 && bytes.Contains(s, []byte("]]>")) {
				return errXMLSyntax
			}
			dst.Write(s)
			return nil
		}
		dst.Write(s[:i])
		s = s[i:]
		j := bytes.IndexByte(s, ';')
		if j < 0 {
			return errXMLSyntax
		}
		ref := s[1:j]
		s = s[j+1:]
		switch string(ref) {
		case "lt":
			dst.WriteByte('<')
		case "gt":
			dst.WriteByte('>')
		case "amp":
			dst.WriteByte('&')
		case "apos":
			dst.WriteByte('\'')
		case "quot":
			dst.WriteByte('"')
		default:
			if len(ref) < 2 || ref[0] != '#' {
				return errXMLForbid
			}
			base, digits := 10, ref[1:]
			if digits[0] == 'x' {
				base, digits = 16, digits[1:]
			}
			if len(digits) == 0 || len(digits) > 8 || digits[0] == '-' || digits[0] == '+' {
				return errXMLSyntax
			}
			r, err := strconv.ParseUint(string(digits), base, 32)
			if err != nil || !validXMLChar(rune(r)) {
				return errXMLSyntax
			}
			dst.WriteRune(rune(r))
		}
	}
}

// validXMLChar is XML 1.0's Char production.
func validXMLChar(r rune) bool {
	return r == 0x9 || r == 0xA || r == 0xD ||
		(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}

// appendEscaped appends s escaped for an attribute value in single or
// double quotes, or for character data.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '<':
			dst = append(dst, "&lt;"...)
		case '>':
			dst = append(dst, "&gt;"...)
		case '&':
			dst = append(dst, "&amp;"...)
		case '\'':
			dst = append(dst, "&apos;"...)
		case '"':
			dst = append(dst, "&quot;"...)
		case '\t', '\n', '\r':
			dst = append(dst, "&#x"...)
			dst = strconv.AppendUint(dst, uint64(c), 16)
			dst = append(dst, ';')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendXML serializes e, declaring its namespace where its parent's
// (space) differs, with every element unprefixed. Attributes other than
// namespace declarations are kept as written when unprefixed, or xml:*.
func (e *element) appendXML(dst []byte, parentSpace string) []byte {
	dst = append(dst, '<')
	dst = append(dst, e.local...)
	if e.space != parentSpace {
		dst = append(dst, " xmlns='"...)
		dst = appendEscaped(dst, e.space)
		dst = append(dst, '\'')
	}
	for _, a := range e.attrs {
		n := splitName(a.name)
		if a.name == xmlnsAttr || n.prefix == xmlnsAttr || (n.prefix != "" && n.prefix != "xml") {
			continue
		}
		dst = append(dst, ' ')
		dst = append(dst, a.name...)
		dst = append(dst, "='"...)
		dst = appendEscaped(dst, a.value)
		dst = append(dst, '\'')
	}
	if len(e.children) == 0 && e.text == "" {
		return append(dst, "/>"...)
	}
	dst = append(dst, '>')
	dst = appendEscaped(dst, e.text)
	for _, c := range e.children {
		dst = c.appendXML(dst, e.space)
	}
	dst = append(dst, "</"...)
	dst = append(dst, e.local...)
	return append(dst, '>')
}
