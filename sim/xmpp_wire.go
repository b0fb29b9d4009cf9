package sim

import (
	"bytes"
	"errors"
	"io"
	"strconv"
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
	p := xmlParser{b: raw}
	e, _, err := p.startTag(nil)
	if err != nil {
		return nil, err
	}
	if e.local != "stream" || e.space != nsStream {
		return nil, errXMLSyntax
	}
	return p.scope, nil
}

// parseElement parses one complete element within scope.
func parseElement(raw []byte, scope *nsScope) (*element, error) {
	p := xmlParser{b: raw}
	e, err := p.element(scope, 0)
	if err != nil {
		return nil, err
	}
	if p.i != len(p.b) {
		return nil, errXMLSyntax
	}
	return e, nil
}

// xmlParser parses one element from b.
type xmlParser struct {
	b     []byte
	i     int
	scope *nsScope // of the last start tag parsed
}

func (p *xmlParser) element(parent *nsScope, depth int) (*element, error) {
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
			if text, err = appendUnescaped(text, p.b[p.i:p.i+j]); err != nil {
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
			if name != qualified(e.prefix, e.local) {
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

func qualified(prefix, local string) string {
	if prefix == "" {
		return local
	}
	return prefix + ":" + local
}

// startTag parses the start tag at p.i, declares its namespaces on top of
// parent into p.scope, and resolves its name. empty is true for a
// self-closing tag.
func (p *xmlParser) startTag(parent *nsScope) (e *element, empty bool, err error) {
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
		v, err := appendUnescaped(nil, raw)
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
			if _, ok := scope.lookup(an.prefix); !ok {
				return nil, false, errXMLPrefix
			}
		}
	}
	space, ok := scope.lookup(e.prefix)
	if !ok {
		return nil, false, errXMLPrefix
	}
	e.space = space
	p.i, p.scope = i, scope
	return e, empty, nil
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

// appendUnescaped appends s with its references replaced: the five
// predefined entities and character references (RFC 6120 11.1 allows no
// others). Text must be valid UTF-8.
func appendUnescaped(dst, s []byte) ([]byte, error) {
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
