// The Walker: a strict check of one framed element, in one pass and
// without allocating, that reports its tags with their namespaces
// resolved. What it checks is listed in doc.go.

package xmlframe

import (
	"fmt"
	"math"
	"unicode"
	"unicode/utf8"
)

// Namespace names that specifications fix rather than documents declare.
const (
	nsXML    = "http://www.w3.org/XML/1998/namespace" // Namespaces in XML 1.0, 3: the prefix xml
	nsXMLNS  = "http://www.w3.org/2000/xmlns/"        // and the prefix xmlns
	nsStream = "http://etherx.jabber.org/streams"     // RFC 6120 4.8.1: what the stream header binds "stream" to
)

// Step is what Walker.Next found.
type Step uint8

// Steps of a walk.
const (
	// Done: the element ended, and nothing follows it.
	Done Step = iota
	// Open: a start tag. An empty-element tag ("<x/>") is an Open and
	// then a Close.
	Open
	// Close: an end tag.
	Close
)

var stepNames = [...]string{"done", "open", "close"}

func (s Step) String() string {
	if int(s) < len(stepNames) {
		return stepNames[s]
	}
	return "step(?)"
}

// Name is a namespace-resolved name. Its slices alias the walked element
// or the Walker's storage, stay valid until the next Reset, and must not
// be modified.
type Name struct {
	// Space is the namespace name, references expanded; empty for none.
	Space []byte
	// Prefix is the prefix as written; empty for none.
	Prefix []byte
	Local  []byte
}

// rule is why a Walker refused its input. The errors say it for people;
// the differential fuzz test uses it to hold every refusal encoding/xml
// would not have made to a rule that the Walker adds on purpose.
type rule uint8

const (
	ruleNone rule = iota
	ruleEOF
	ruleNotElement
	ruleName
	ruleTag
	ruleValue
	ruleRef
	ruleChar
	ruleCDEnd
	ruleMismatch
	ruleMarkup
	ruleRestricted
	ruleTooLarge

	// The rules from here on are those encoding/xml did not apply.
	ruleTrailing
	ruleSpace
	ruleQName
	ruleUndeclared
	ruleBinding
	ruleDuplicate
	ruleSurrogate
)

var ruleNames = [...]string{
	ruleNone:       "no error",
	ruleEOF:        "element not closed",
	ruleNotElement: "not a start tag",
	ruleName:       "invalid name",
	ruleTag:        "malformed tag",
	ruleValue:      "'<' in attribute value",
	ruleRef:        "invalid reference",
	ruleChar:       "invalid character",
	ruleCDEnd:      "']]>' in text",
	ruleMismatch:   "end tag does not match",
	ruleMarkup:     "malformed markup",
	ruleRestricted: "comment, processing instruction or declaration",
	ruleTooLarge:   "element too large",
	ruleTrailing:   "bytes after the element",
	ruleSpace:      "no whitespace before attribute",
	ruleQName:      "invalid qualified name",
	ruleUndeclared: "undeclared prefix",
	ruleBinding:    "reserved prefix or namespace",
	ruleDuplicate:  "repeated attribute",
	ruleSurrogate:  "reference to a surrogate",
}

func (r rule) String() string {
	if int(r) < len(ruleNames) {
		return ruleNames[r]
	}
	return "rule(?)"
}

// stricter reports whether r is a rule encoding/xml did not apply.
func (r rule) stricter() bool { return r >= ruleTrailing }

// Byte classes for the scanning loops, one table lookup per byte.
const (
	cText      = 1 << iota // stands for itself in text
	cValue                 // stands for itself in an attribute value
	cNameStart             // starts a name
	cName                  // continues a name (':' included)
	cNCName                // continues a name that has no colon
)

var class = func() (t [256]uint8) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = cText | cValue
	}
	for _, c := range "\t\n\r" {
		t[c] = cText | cValue
	}
	for _, c := range "<&" {
		t[c] = 0
	}
	t[']'] &^= cText // "]]>" is not allowed in text
	t['"'] &^= cValue
	t['\''] &^= cValue
	t['\r'] &^= cValue // decoded to LF: noted in the attribute
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= cNameStart | cName | cNCName
		t[c-'a'+'A'] |= cNameStart | cName | cNCName
	}
	t['_'] |= cNameStart | cName | cNCName
	for _, c := range "0123456789-." {
		t[c] |= cName | cNCName
	}
	t[':'] |= cName
	return t
}()

// span locates bytes the Walker hands out: in the element, in its
// scratch space (namespace names that had references), or one of the
// fixed namespace names. Offsets rather than slices keep the Walker free
// of pointers into itself, so that it can live on its user's stack.
type span struct {
	off, n int32
	src    uint8
}

const (
	inElem uint8 = iota
	inScratch
	fixedXML
	fixedXMLNS
	fixedStream
)

var fixed = [...][]byte{
	fixedXML:    []byte(nsXML),
	fixedXMLNS:  []byte(nsXMLNS),
	fixedStream: []byte(nsStream),
}

// elemRec is an open element.
type elemRec struct {
	name  span  // qualified name, as written
	plen  int32 // length of its prefix, 0 if none
	space span
	nbind int32 // bindings in scope before the element's own
}

// attrRec is an attribute of the current start tag.
type attrRec struct {
	name  span
	plen  int32
	value span // raw
	space span
	coded bool // the value has references or CRs
	decl  bool // a namespace declaration
}

// binding is a namespace declaration in scope.
type binding struct {
	prefix span // empty for the default namespace
	uri    span
	shadow int32 // the binding of the same prefix it hides, -1 if none; kept while index is in use
}

const (
	// indexAt is the number of bindings in scope from which prefixes are
	// looked up in a map rather than by a scan: the scan is faster for
	// the few bindings of real stanzas, the map keeps a walk linear when
	// an element declares thousands.
	indexAt = 16
	// scanAttrs is the number of attributes up to which repeats are
	// found by comparing every pair.
	scanAttrs = 16
)

// Walker checks one element strictly (see the package documentation)
// and reports its start and end tags, in one pass over the bytes. The
// zero value is ready for Reset. A Walker holds a few small arrays so
// that the common stanza needs no allocation; it allocates only when an
// element nests, or has attributes or namespace declarations, beyond
// them, for namespace names written with references, and to refuse.
type Walker struct {
	b            []byte
	i            int // where scanning resumes
	depth        int // open elements
	started      bool
	pendingClose bool // the last Open was an empty-element tag

	curDepth int // depth of the element of the last step
	tagClose int // offset of the "/>" or ">" of the last start tag
	tagEnd   int // offset past it

	err      error
	rule     rule
	errTok   int // offset of the token (tag, text, CDATA section) refused
	errAt    int // offset of the fault in it
	elems    [8]elemRec
	elemMore []elemRec
	attrs    [8]attrRec
	attrMore []attrRec
	nattr    int
	ndecl    int // namespace declarations among the attributes
	nprefix  int // prefixed attributes, declarations aside
	binds    [8]binding
	bindMore []binding
	nbind    int
	index    map[string]int32 // prefix to binding, from indexAt bindings
	scratch  []byte
}

// Reset starts a walk of elem, which must not change until the walk is
// over.
func (w *Walker) Reset(elem []byte) {
	w.b, w.i, w.depth = elem, 0, 0
	w.started, w.pendingClose = false, false
	w.curDepth = 0
	w.err, w.rule, w.errTok, w.errAt = nil, ruleNone, 0, 0
	w.elemMore, w.attrMore, w.bindMore = w.elemMore[:0], w.attrMore[:0], w.bindMore[:0]
	w.nattr, w.nbind, w.index = 0, 0, nil
	w.scratch = w.scratch[:0]
}

// Check walks all of elem and returns the Walker's refusal, if any.
func Check(elem []byte) error {
	var w Walker
	w.Reset(elem)
	for {
		s, err := w.Next()
		if err != nil || s == Done {
			return err
		}
	}
}

// Next checks the input up to the next tag and reports it. It returns
// (Done, nil) once the element has ended with nothing after it, and after
// a refusal keeps returning the error: ErrRestricted for a comment,
// processing instruction or declaration inside the element, ErrSyntax
// (wrapped, with the reason) for any other fault, ErrTooLarge for input
// beyond 2 GiB.
func (w *Walker) Next() (Step, error) {
	if w.err != nil {
		return Done, w.err
	}
	if w.pendingClose {
		w.pendingClose = false
		w.closeElem()
		return Close, nil
	}
	b := w.b
	if w.depth == 0 {
		if w.started {
			if w.i < len(b) {
				return w.fail(ruleTrailing, w.i, w.i)
			}
			return Done, nil
		}
		w.started = true
		if len(b) > math.MaxInt32 {
			w.rule, w.err = ruleTooLarge, ErrTooLarge
			return Done, w.err
		}
		// Markup before the element is no element at all: a syntax
		// error, as it was when encoding/xml's caller first read the
		// start tag.
		if len(b) < 2 || b[0] != '<' || b[1] == '/' || b[1] == '!' || b[1] == '?' {
			return w.fail(ruleNotElement, 0, 0)
		}
		return w.startTag(0)
	}
	for {
		i := w.text(w.i)
		switch {
		case i < 0:
			return Done, w.err
		case i+1 >= len(b):
			return w.fail(ruleEOF, i, i)
		}
		switch b[i+1] {
		case '/':
			return w.endTag(i)
		case '?':
			return w.fail(ruleRestricted, i, i)
		case '!':
			if len(b)-i >= len(cdataOpen) && string(b[i:i+len(cdataOpen)]) == cdataOpen {
				if w.i = w.cdata(i); w.i < 0 {
					return Done, w.err
				}
				continue
			}
			return w.bang(i)
		}
		return w.startTag(i)
	}
}

// Depth is the depth of the element of the last step: 1 for the root.
func (w *Walker) Depth() int { return w.curDepth }

// Name is the name of the element of the last step.
func (w *Walker) Name() Name {
	if w.curDepth == 0 {
		return Name{}
	}
	e := w.elemAt(w.curDepth - 1)
	p, l := w.split(e.name, e.plen)
	return Name{Space: w.bytes(e.space), Prefix: p, Local: l}
}

// NumAttr is the number of attributes of the start tag of the last step;
// 0 after a Close.
func (w *Walker) NumAttr() int { return w.nattr }

// Attr returns the k-th attribute of the start tag of the last step:
// its name and its value as written (see AppendValue). Unprefixed
// attributes have no namespace; namespace declarations have the xmlns
// namespace.
func (w *Walker) Attr(k int) (Name, []byte) {
	a := w.attr(k)
	p, l := w.split(a.name, a.plen)
	return Name{Space: w.bytes(a.space), Prefix: p, Local: l}, w.bytes(a.value)
}

// AttrValue returns the value, as written (see AppendValue), of the
// unprefixed attribute called local of the start tag of the last step.
func (w *Walker) AttrValue(local string) ([]byte, bool) {
	for k := 0; k < w.nattr; k++ {
		a := w.attr(k)
		if a.plen == 0 && string(w.b[a.name.off:a.name.off+a.name.n]) == local {
			return w.b[a.value.off : a.value.off+a.value.n], true
		}
	}
	return nil, false
}

// StartTag fills t with the start tag of the last Open, as
// ParseStartTag reads it, reusing t.Attrs' storage.
func (w *Walker) StartTag(t *Tag) {
	attrs := t.Attrs[:0]
	for k := 0; k < w.nattr; k++ {
		a := w.attr(k)
		attrs = append(attrs, Attr{Name: w.bytes(a.name), Value: w.bytes(a.value), Quote: w.b[a.value.off-1]})
	}
	*t = Tag{Name: w.bytes(w.elemAt(w.curDepth - 1).name), Attrs: attrs, Close: w.tagClose, End: w.tagEnd, Empty: w.tagEnd-w.tagClose == 2}
}

func (w *Walker) fail(r rule, tok, at int) (Step, error) {
	base := ErrSyntax
	if r == ruleRestricted {
		base = ErrRestricted
	}
	w.rule, w.errTok, w.errAt = r, tok, at
	w.err = fmt.Errorf("%w: %s at offset %d", base, r, at)
	return Done, w.err
}

func (w *Walker) bytes(s span) []byte {
	switch s.src {
	case inElem:
		return w.b[s.off : s.off+s.n : s.off+s.n]
	case inScratch:
		return w.scratch[s.off : s.off+s.n : s.off+s.n]
	}
	return fixed[s.src]
}

func (w *Walker) split(s span, plen int32) (prefix, local []byte) {
	q := w.bytes(s)
	if plen == 0 {
		return nil, q
	}
	return q[:plen], q[plen+1:]
}

// text checks the character data at b[i:] and returns the offset of the
// '<' that ends it, or len(b), or -1 after a refusal.
func (w *Walker) text(i int) int {
	b, tok := w.b, i
	for {
		for i < len(b) && class[b[i]]&cText != 0 {
			i++
		}
		if i >= len(b) {
			return i
		}
		switch c := b[i]; {
		case c == '<':
			return i
		case c == '&':
			if i = w.ref(i, tok); i < 0 {
				return -1
			}
		case c == ']':
			// XML 1.0 2.4: "]]>" only ends a CDATA section.
			if i+2 < len(b) && b[i+1] == ']' && b[i+2] == '>' {
				w.fail(ruleCDEnd, tok, i)
				return -1
			}
			i++
		case c >= utf8.RuneSelf:
			if i = w.char(i, tok); i < 0 {
				return -1
			}
		default:
			w.fail(ruleChar, tok, i)
			return -1
		}
	}
}

// cdata checks the CDATA section at b[i:] and returns the offset past
// it, or -1.
func (w *Walker) cdata(i int) int {
	b := w.b
	j := i + len(cdataOpen)
	for j < len(b) {
		c := b[j]
		if c >= utf8.RuneSelf {
			if j = w.char(j, i); j < 0 {
				return -1
			}
			continue
		}
		if class[c]&cText == 0 {
			switch c {
			case '<', '&':
			case ']':
				if j+2 < len(b) && b[j+1] == ']' && b[j+2] == '>' {
					return j + 3
				}
			default:
				w.fail(ruleChar, i, j)
				return -1
			}
		}
		j++
	}
	w.fail(ruleEOF, i, j)
	return -1
}

// bang refuses the markup at b[i:], which starts "<!" but not a CDATA
// section: a comment or a declaration is restricted XML (RFC 6120 11.1),
// anything else is not XML.
func (w *Walker) bang(i int) (Step, error) {
	b := w.b
	if i+2 >= len(b) {
		return w.fail(ruleEOF, i, len(b))
	}
	switch b[i+2] {
	case '[':
		return w.fail(ruleMarkup, i, i)
	case '-':
		if i+3 >= len(b) {
			return w.fail(ruleEOF, i, len(b))
		}
		if b[i+3] != '-' {
			return w.fail(ruleMarkup, i, i)
		}
	}
	return w.fail(ruleRestricted, i, i)
}

// ref checks the reference at b[i:] (b[i] is '&') and returns the offset
// past it, or -1. tok is the offset of the token it is in.
func (w *Walker) ref(i, tok int) int {
	r, n := readRef(w.b[i:])
	switch {
	case n == 0:
		w.fail(ruleRef, tok, i)
		return -1
	case r >= 0xD800 && r <= 0xDFFF:
		w.fail(ruleSurrogate, tok, i)
		return -1
	case !isChar(r):
		// XML 1.0 4.1: a character reference must match Char.
		w.fail(ruleRef, tok, i)
		return -1
	}
	return i + n
}

// char checks the multi-byte character at b[i:] and returns the offset
// past it, or -1.
func (w *Walker) char(i, tok int) int {
	r, n := utf8.DecodeRune(w.b[i:])
	// DecodeRune refuses surrogates and values past U+10FFFF; the
	// non-characters left out of XML's Char are U+FFFE and U+FFFF.
	if r == utf8.RuneError && n == 1 || r == 0xFFFE || r == 0xFFFF {
		w.fail(ruleChar, tok, i)
		return -1
	}
	return i + n
}

// isChar reports whether r matches XML 1.0 production 2, Char.
func isChar(r rune) bool {
	return r == 0x9 || r == 0xA || r == 0xD ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= unicode.MaxRune
}

// The entities every XML processor knows (XML 1.0 4.6), with their ';'.
var entities = [...]struct {
	name string
	r    rune
}{{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}}

// readRef reads the reference at the start of b (b[0] is '&') and
// returns the character it stands for and its length, or a length of 0
// if it is not a reference. The character is not checked against Char.
func readRef(b []byte) (rune, int) {
	if len(b) > 1 && b[1] == '#' {
		i, base := 2, uint32(10)
		if len(b) > 2 && b[2] == 'x' {
			i, base = 3, 16
		}
		start := i
		var v uint32
		for ; i < len(b); i++ {
			d := digit(b[i])
			if d >= base {
				break
			}
			if v <= unicode.MaxRune {
				// Past MaxRune the value is refused anyway; stop
				// before it can overflow.
				v = v*base + d
			}
		}
		if i == start || i >= len(b) || b[i] != ';' || v > unicode.MaxRune {
			return 0, 0
		}
		return rune(v), i + 1
	}
	for _, e := range entities {
		if len(b) > len(e.name) && string(b[1:1+len(e.name)]) == e.name {
			return e.r, 1 + len(e.name)
		}
	}
	return 0, 0
}

func digit(c byte) uint32 {
	switch {
	case c >= '0' && c <= '9':
		return uint32(c - '0')
	case c >= 'a' && c <= 'f':
		return uint32(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return uint32(c-'A') + 10
	}
	return math.MaxUint32
}

// AppendValue appends to dst the text of raw, an attribute value as the
// Walker reported it, as encoding/xml decoded it: references replaced by
// their characters, and each line end (CR LF or a lone CR) by LF. Bytes
// that are not a reference are copied as they are.
func AppendValue(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		j := i
		for j < len(raw) && raw[j] != '&' && raw[j] != '\r' {
			j++
		}
		dst = append(dst, raw[i:j]...)
		if j == len(raw) {
			break
		}
		if raw[j] == '\r' {
			dst = append(dst, '\n')
			j++
			if j < len(raw) && raw[j] == '\n' {
				j++
			}
			i = j
			continue
		}
		r, n := readRef(raw[j:])
		if n == 0 {
			dst = append(dst, '&')
			i = j + 1
			continue
		}
		dst = utf8.AppendRune(dst, r)
		i = j + n
	}
	return dst
}

// qname checks the qualified name at b[i:] and returns its end and the
// length of its prefix, or -1 after a refusal. tok is the offset of the
// tag.
func (w *Walker) qname(i, tok int) (int, int32) {
	b := w.b
	// Most names are ASCII with no prefix.
	if i < len(b) && class[b[i]]&cNameStart != 0 {
		j := i + 1
		for j < len(b) && class[b[j]]&cNCName != 0 {
			j++
		}
		if j == len(b) || b[j] < utf8.RuneSelf && b[j] != ':' {
			return j, 0
		}
	}
	return w.qnameSlow(i, tok)
}

// qnameSlow is qname for names with a colon or beyond ASCII, and for
// refusals.
func (w *Walker) qnameSlow(i, tok int) (int, int32) {
	b := w.b
	start, colon := i, -1
	atStart := true // at the first character of the name or of its local part
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			k := class[c]
			if k&cName == 0 {
				break
			}
			if c == ':' {
				switch {
				case colon >= 0:
					// encoding/xml refused this as well.
					w.fail(ruleName, tok, i)
					return -1, 0
				case i == start:
					w.fail(ruleQName, tok, i)
					return -1, 0
				}
				colon, atStart = i, true
				i++
				continue
			}
			if atStart && k&cNameStart == 0 {
				w.failNameStart(i == start, tok, i)
				return -1, 0
			}
			i++
			atStart = false
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			w.fail(ruleName, tok, i)
			return -1, 0
		case unicode.Is(nameStartTable, r):
		case !unicode.Is(nameRestTable, r):
			w.fail(ruleName, tok, i)
			return -1, 0
		case atStart:
			w.failNameStart(i == start, tok, i)
			return -1, 0
		}
		i += n
		atStart = false
	}
	switch {
	case i == start:
		w.fail(ruleName, tok, i)
		return -1, 0
	case colon == i-1:
		// Namespaces in XML 1.0, 4: the local part is an NCName.
		w.fail(ruleQName, tok, colon)
		return -1, 0
	case colon < 0:
		return i, 0
	}
	return i, int32(colon - start)
}

// failNameStart refuses a character that may be in a name but not start
// one: at the start of the name XML refuses it, after a colon
// Namespaces in XML does.
func (w *Walker) failNameStart(first bool, tok, at int) {
	if first {
		w.fail(ruleName, tok, at)
	} else {
		w.fail(ruleQName, tok, at)
	}
}

// startTag checks the start tag at b[lt:] and opens its element.
func (w *Walker) startTag(lt int) (Step, error) {
	b := w.b
	end, plen := w.qname(lt+1, lt)
	if end < 0 {
		return Done, w.err
	}
	// Records are filled in place: building one and copying it in
	// costs a store-forwarding stall per record.
	e := w.newElem(w.depth)
	e.name = span{off: int32(lt + 1), n: int32(end - lt - 1)}
	e.plen, e.nbind = plen, int32(w.nbind)
	w.nattr, w.ndecl, w.nprefix = 0, 0, 0
	w.attrMore = w.attrMore[:0]
	i, empty := end, false
	for {
		sp := i
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) {
			return w.fail(ruleEOF, lt, i)
		}
		switch b[i] {
		case '>':
			w.tagClose = i
			i++
		case '/':
			if i+1 >= len(b) {
				return w.fail(ruleEOF, lt, i+1)
			}
			if b[i+1] != '>' {
				return w.fail(ruleTag, lt, i)
			}
			w.tagClose = i
			i, empty = i+2, true
		default:
			// XML 1.0 production 40: whitespace before each
			// attribute.
			if i == sp {
				return w.fail(ruleSpace, lt, i)
			}
			if i = w.attribute(i, lt); i < 0 {
				return Done, w.err
			}
			continue
		}
		break
	}
	if !w.scope(e, lt) {
		return Done, w.err
	}
	w.i, w.tagEnd = i, i
	w.depth++
	w.curDepth = w.depth
	w.pendingClose = empty
	return Open, nil
}

// attribute checks the attribute at b[i:], records it, and returns the
// offset past it, or -1.
func (w *Walker) attribute(i, lt int) int {
	b := w.b
	ns := i
	ne, plen := w.qname(i, lt)
	if ne < 0 {
		return -1
	}
	i = ne
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i < len(b) && b[i] == '=' {
		i++
		for i < len(b) && isSpace(b[i]) {
			i++
		}
	} else if i < len(b) {
		w.fail(ruleTag, lt, i)
		return -1
	}
	if i >= len(b) {
		w.fail(ruleEOF, lt, i)
		return -1
	}
	q := b[i]
	if q != '"' && q != '\'' {
		w.fail(ruleTag, lt, i)
		return -1
	}
	i++
	vs := i
	i, coded := w.value(i, q, lt)
	if i < 0 {
		return -1
	}
	var a *attrRec
	if w.nattr < len(w.attrs) {
		a = &w.attrs[w.nattr]
	} else {
		w.attrMore = append(w.attrMore, attrRec{})
		a = &w.attrMore[len(w.attrMore)-1]
	}
	w.nattr++
	a.name = span{off: int32(ns), n: int32(ne - ns)}
	a.value = span{off: int32(vs), n: int32(i - vs)}
	a.plen, a.coded, a.decl, a.space = plen, coded, false, span{}
	switch {
	case plen == 0 && string(b[ns:ne]) == "xmlns", plen == 5 && string(b[ns:ns+5]) == "xmlns":
		a.decl, a.space = true, span{src: fixedXMLNS}
		w.ndecl++
	case plen > 0:
		w.nprefix++
	}
	return i + 1
}

// value checks the attribute value at b[i:], quoted by q, and returns
// the offset of the closing quote, or -1, and whether AppendValue would
// change the value.
func (w *Walker) value(i int, q byte, tok int) (int, bool) {
	b := w.b
	coded := false
	for {
		for i < len(b) && class[b[i]]&cValue != 0 {
			i++
		}
		if i >= len(b) {
			w.fail(ruleEOF, tok, i)
			return -1, false
		}
		switch c := b[i]; {
		case c == q:
			return i, coded
		case c == '"' || c == '\'':
			i++
		case c == '\r':
			i, coded = i+1, true
		case c == '<':
			// XML 1.0 production 10.
			w.fail(ruleValue, tok, i)
			return -1, false
		case c == '&':
			if i = w.ref(i, tok); i < 0 {
				return -1, false
			}
			coded = true
		case c >= utf8.RuneSelf:
			if i = w.char(i, tok); i < 0 {
				return -1, false
			}
		default:
			w.fail(ruleChar, tok, i)
			return -1, false
		}
	}
}

// endTag checks the end tag at b[lt:] and closes the open element.
func (w *Walker) endTag(lt int) (Step, error) {
	b := w.b
	name := w.bytes(w.elemAt(w.depth - 1).name)
	i := lt + 2
	j := i + len(name)
	// XML 1.0 3 (element type match): the same name, as written.
	if j > len(b) || string(b[i:j]) != string(name) ||
		j < len(b) && (b[j] >= utf8.RuneSelf || class[b[j]]&cName != 0) {
		return w.fail(ruleMismatch, lt, i)
	}
	for j < len(b) && isSpace(b[j]) {
		j++
	}
	if j >= len(b) {
		return w.fail(ruleEOF, lt, j)
	}
	if b[j] != '>' {
		return w.fail(ruleTag, lt, j)
	}
	w.i = j + 1
	w.closeElem()
	return Close, nil
}

func (w *Walker) elemAt(k int) *elemRec {
	if k < len(w.elems) {
		return &w.elems[k]
	}
	return &w.elemMore[k-len(w.elems)]
}

// newElem returns the record of an element opened at depth k+1.
func (w *Walker) newElem(k int) *elemRec {
	if k < len(w.elems) {
		return &w.elems[k]
	}
	if k-len(w.elems) == len(w.elemMore) {
		w.elemMore = append(w.elemMore, elemRec{})
	}
	return &w.elemMore[k-len(w.elems)]
}

// closeElem closes the innermost element. Its record stays, for Name,
// until another element takes its place.
func (w *Walker) closeElem() {
	w.unbind(int(w.elemAt(w.depth - 1).nbind))
	w.curDepth = w.depth
	w.depth--
	w.nattr = 0
}

func (w *Walker) attr(k int) *attrRec {
	if k < len(w.attrs) {
		return &w.attrs[k]
	}
	return &w.attrMore[k-len(w.attrs)]
}

// scope applies the namespace declarations of the start tag at tok,
// resolves the names of e and of the tag's attributes, and refuses
// repeated attributes (Namespaces in XML 1.0, 3 to 6).
func (w *Walker) scope(e *elemRec, tok int) bool {
	// Declarations first: they hold for every name in the tag that
	// makes them, wherever they are written in it.
	for k := 0; w.ndecl > 0 && k < w.nattr; k++ {
		a := w.attr(k)
		if !a.decl {
			continue
		}
		var prefix span
		if a.plen > 0 {
			prefix = span{off: a.name.off + 6, n: a.name.n - 6}
		}
		uri := a.value
		if a.coded {
			uri = w.decode(a.value)
		}
		p, u := w.bytes(prefix), w.bytes(uri)
		switch {
		case string(p) == "xml":
			// It may be declared, only as what it is.
			if string(u) != nsXML {
				w.fail(ruleBinding, tok, int(a.name.off))
				return false
			}
			continue
		case string(p) == "xmlns", string(u) == nsXML, string(u) == nsXMLNS:
			w.fail(ruleBinding, tok, int(a.name.off))
			return false
		case len(p) > 0 && len(u) == 0:
			// Undeclaring a prefix is XML 1.1's.
			w.fail(ruleBinding, tok, int(a.name.off))
			return false
		}
		w.bind(prefix, uri)
	}
	p, _ := w.split(e.name, e.plen)
	if string(p) == "xmlns" {
		w.fail(ruleBinding, tok, int(e.name.off))
		return false
	}
	sp, ok := w.lookup(p)
	if !ok {
		w.fail(ruleUndeclared, tok, int(e.name.off))
		return false
	}
	e.space = sp
	for k := 0; w.nprefix > 0 && k < w.nattr; k++ {
		a := w.attr(k)
		if a.plen == 0 || a.decl {
			// Unprefixed attributes are in no namespace.
			continue
		}
		p, _ := w.split(a.name, a.plen)
		if a.space, ok = w.lookup(p); !ok {
			w.fail(ruleUndeclared, tok, int(a.name.off))
			return false
		}
	}
	return w.unique(tok)
}

// decode returns the value at s as AppendValue makes it, in the scratch
// space.
func (w *Walker) decode(s span) span {
	off := len(w.scratch)
	w.scratch = AppendValue(w.scratch, w.bytes(s))
	return span{off: int32(off), n: int32(len(w.scratch) - off), src: inScratch}
}

func (w *Walker) binding(k int) *binding {
	if k < len(w.binds) {
		return &w.binds[k]
	}
	return &w.bindMore[k-len(w.binds)]
}

// lookup returns the namespace name prefix p is bound to (p empty: the
// default namespace, or none).
func (w *Walker) lookup(p []byte) (span, bool) {
	if string(p) == "xml" {
		return span{src: fixedXML}, true
	}
	if w.index != nil {
		if k, ok := w.index[string(p)]; ok {
			return w.binding(int(k)).uri, true
		}
	} else {
		for k := w.nbind - 1; k >= 0; k-- {
			bd := w.binding(k)
			if string(w.bytes(bd.prefix)) == string(p) {
				return bd.uri, true
			}
		}
	}
	switch {
	case len(p) == 0:
		return span{}, true
	case string(p) == "stream":
		return span{src: fixedStream}, true
	}
	return span{}, false
}

func (w *Walker) bind(prefix, uri span) {
	if w.index == nil && w.nbind >= indexAt {
		w.index = make(map[string]int32, 2*indexAt)
		for k := 0; k < w.nbind; k++ {
			w.indexAdd(w.binding(k), k)
		}
	}
	var bd *binding
	if w.nbind < len(w.binds) {
		bd = &w.binds[w.nbind]
	} else {
		w.bindMore = append(w.bindMore[:w.nbind-len(w.binds)], binding{})
		bd = &w.bindMore[len(w.bindMore)-1]
	}
	bd.prefix, bd.uri, bd.shadow = prefix, uri, -1
	if w.index != nil {
		w.indexAdd(bd, w.nbind)
	}
	w.nbind++
}

func (w *Walker) indexAdd(bd *binding, k int) {
	key := w.bytes(bd.prefix)
	bd.shadow = -1
	if s, ok := w.index[string(key)]; ok {
		bd.shadow = s
	}
	w.index[string(key)] = int32(k)
}

// unbind takes the bindings in scope back to the first n.
func (w *Walker) unbind(n int) {
	for w.nbind > n {
		w.nbind--
		if w.index != nil {
			bd := w.binding(w.nbind)
			key := w.bytes(bd.prefix)
			if bd.shadow >= 0 {
				w.index[string(key)] = bd.shadow
			} else {
				delete(w.index, string(key))
			}
		}
	}
	if w.nbind >= len(w.binds) {
		w.bindMore = w.bindMore[:w.nbind-len(w.binds)]
	} else {
		w.bindMore = w.bindMore[:0]
	}
}

// unique refuses an attribute written twice, or two whose prefixes are
// bound to the same namespace and whose local parts are the same
// (Namespaces in XML 1.0, 6.3).
func (w *Walker) unique(tok int) bool {
	n := w.nattr
	if n < 2 {
		return true
	}
	if n <= scanAttrs {
		for x := 1; x < n; x++ {
			ax := w.attr(x)
			for y := 0; y < x; y++ {
				if w.same(ax, w.attr(y)) {
					w.fail(ruleDuplicate, tok, int(ax.name.off))
					return false
				}
			}
		}
		return true
	}
	// Keys: the name as written, and for a prefixed attribute its
	// namespace and local part joined by a NUL, which neither holds.
	seen := make(map[string]struct{}, 2*n)
	var key []byte
	for k := 0; k < n; k++ {
		a := w.attr(k)
		keys := [2][]byte{w.bytes(a.name)}
		if a.plen > 0 && !a.decl {
			_, local := w.split(a.name, a.plen)
			key = append(append(append(key[:0], w.bytes(a.space)...), 0), local...)
			keys[1] = key
		}
		for _, kk := range keys {
			if kk == nil {
				continue
			}
			if _, dup := seen[string(kk)]; dup {
				w.fail(ruleDuplicate, tok, int(a.name.off))
				return false
			}
			seen[string(kk)] = struct{}{}
		}
	}
	return true
}

// same reports whether attributes x and y have the same name.
func (w *Walker) same(x, y *attrRec) bool {
	b := w.b
	nx := b[x.name.off : x.name.off+x.name.n]
	ny := b[y.name.off : y.name.off+y.name.n]
	if string(nx) == string(ny) {
		return true
	}
	if x.plen == 0 || y.plen == 0 || x.decl || y.decl {
		return false
	}
	return string(nx[x.plen+1:]) == string(ny[y.plen+1:]) &&
		string(w.bytes(x.space)) == string(w.bytes(y.space))
}
