// The Splitter: finds where each top-level element of a stream ends,
// checking only what it must to get that right.

package xmlframe

import "errors"

// Errors returned by this package.
var (
	// ErrTooLarge: an element is longer than Splitter.Max.
	ErrTooLarge = errors.New("xmlframe: element too large")
	// ErrRestricted: a comment, processing instruction or DTD (RFC 6120
	// 11.1).
	ErrRestricted = errors.New("xmlframe: restricted XML")
	// ErrSyntax: bytes that cannot be part of a well-formed stream, such
	// as text between top-level elements or a '<' not starting a tag.
	ErrSyntax = errors.New("xmlframe: not well-formed")
	// ErrTag: ParseStartTag was given bytes that do not start with a
	// well-formed start tag.
	ErrTag = errors.New("xmlframe: malformed start tag")
)

// Kind is what a unit returned by Splitter.Next is.
type Kind uint8

// Kinds of units.
const (
	// None: no complete unit yet; call Next again with more bytes.
	None Kind = iota
	// Element: one complete top-level element (a stanza, or a stream
	// level element such as <stream:error/>).
	Element
	// Space: whitespace between elements: a keepalive (RFC 6120 4.6.1).
	Space
	// StreamEnd: the closing tag of the stream, </stream:stream>.
	StreamEnd
)

var kindNames = [...]string{"none", "element", "space", "stream-end"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(?)"
}

// lexical states of the scanner.
const (
	sText    uint8 = iota // character data inside an element
	sLT                   // just after '<'
	sStart                // inside a start tag, outside quotes
	sValue                // inside a quoted attribute value
	sEnd                  // inside an end tag
	sCDATA                // inside <![CDATA[ ... ]]>
	sTopText              // at depth 0: between units
)

const cdataOpen = "<![CDATA["

// Splitter finds the boundaries of top-level elements in the byte stream
// that follows a stream header. The zero value is ready to use (with no
// size limit) and is positioned between units.
//
// Use: keep the bytes of the current, unfinished unit and what follows in
// one slice b, and call Next(b). When it returns a unit, drop its n bytes
// from the front of b and call again; when it returns None, append more
// input to b and call again with the same start. Next resumes where it
// stopped, so a unit arriving in many pieces is scanned once.
type Splitter struct {
	// Max is the largest element accepted, in bytes. 0 means no limit.
	Max int

	pos   int   // bytes of the current unit already scanned
	depth int32 // open elements in the current unit
	st    uint8 // lexical state at pos
	quote byte  // the quote of an attribute value (sValue)
	tagAt int32 // offset of the current tag's name

	// Offsets of the names of the open elements, to match end tags:
	// the first few inline, deeper ones in more (nil between units).
	open [4]int32
	more []int32
}

// Reset puts s between units, keeping Max.
func (s *Splitter) Reset() { *s = Splitter{Max: s.Max} }

func (s *Splitter) push(off int32) {
	if int(s.depth) < len(s.open) {
		s.open[s.depth] = off
	} else {
		s.more = append(s.more, off)
	}
	s.depth++
}

// pop closes the innermost element, reporting whether its name (at the
// offset pushed) is the one the end tag at end names.
func (s *Splitter) pop(b []byte, end int32) bool {
	s.depth--
	var start int32
	if int(s.depth) < len(s.open) {
		start = s.open[s.depth]
	} else {
		start = s.more[int(s.depth)-len(s.open)]
		s.more = s.more[:int(s.depth)-len(s.open)]
	}
	return string(nameAt(b, int(start))) == string(nameAt(b, int(end)))
}

// nameAt returns the XML name that starts at b[i].
func nameAt(b []byte, i int) []byte {
	j := i
	for j < len(b) && isNameByte(b[j]) {
		j++
	}
	return b[i:j]
}

// Pending reports whether s is inside a unit (bytes of it were scanned
// and must be passed again).
func (s *Splitter) Pending() bool { return s.pos > 0 }

// Next looks for the end of the unit at the start of b. It returns the
// unit's length and kind, or (0, None, nil) if b holds only part of it.
// After an error the stream cannot be resynchronised; s must be Reset
// before being used on another stream.
func (s *Splitter) Next(b []byte) (n int, k Kind, err error) {
	if s.pos == 0 {
		s.st, s.depth, s.more = sTopText, 0, nil
		// Whitespace between elements is a unit of its own, complete as
		// far as it goes: the caller can drop it at once.
		j := 0
		for j < len(b) && isSpace(b[j]) {
			j++
		}
		if j > 0 {
			return j, Space, nil
		}
		if len(b) == 0 {
			return 0, None, nil
		}
		if b[0] != '<' {
			return 0, None, ErrSyntax
		}
	}
	i := s.pos
	limit := len(b)
	if s.Max > 0 && limit > s.Max {
		limit = s.Max
	}
	for ; i < limit; i++ {
		c := b[i]
		switch s.st {
		case sTopText:
			// Only reached at i == 0: b[0] == '<'.
			s.st = sLT
		case sText:
			if c == '<' {
				s.st = sLT
			}
		case sLT:
			switch {
			case c == '/':
				s.st, s.tagAt = sEnd, int32(i+1)
			case c == '!':
				// Only CDATA sections are allowed, and only inside an
				// element.
				if s.depth == 0 {
					return 0, None, ErrRestricted
				}
				lt := i - 1
				avail := len(b) - lt
				if avail > len(cdataOpen) {
					avail = len(cdataOpen)
				}
				if string(b[lt:lt+avail]) != cdataOpen[:avail] {
					return 0, None, ErrRestricted
				}
				if avail < len(cdataOpen) {
					// Wait for the rest of "<![CDATA[", rescanning
					// from the '<'.
					s.pos, s.st = lt, sText
					return s.incomplete(b)
				}
				i = lt + len(cdataOpen) - 1
				s.st = sCDATA
			case c == '?':
				return 0, None, ErrRestricted
			case isNameStart(c):
				s.st, s.tagAt = sStart, int32(i)
			default:
				return 0, None, ErrSyntax
			}
		case sStart:
			switch c {
			case '"', '\'':
				s.st, s.quote = sValue, c
			case '<':
				return 0, None, ErrSyntax
			case '>':
				if b[i-1] == '/' {
					// An empty-element tag.
					if s.depth == 0 {
						return s.complete(i+1, Element)
					}
				} else {
					s.push(s.tagAt)
				}
				s.st = sText
			}
		case sValue:
			switch c {
			case s.quote:
				s.st = sStart
			case '<':
				return 0, None, ErrSyntax
			}
		case sEnd:
			switch c {
			case '<', '"', '\'':
				return 0, None, ErrSyntax
			case '>':
				if s.depth == 0 {
					// The end tag of the stream's root.
					return s.complete(i+1, StreamEnd)
				}
				if !s.pop(b, s.tagAt) {
					return 0, None, ErrSyntax
				}
				if s.depth == 0 {
					return s.complete(i+1, Element)
				}
				s.st = sText
			}
		case sCDATA:
			if c == '>' && b[i-1] == ']' && b[i-2] == ']' {
				s.st = sText
			}
		}
	}
	s.pos = i
	return s.incomplete(b)
}

func (s *Splitter) complete(n int, k Kind) (int, Kind, error) {
	if s.Max > 0 && n > s.Max {
		return 0, None, ErrTooLarge
	}
	s.pos, s.depth, s.st, s.more = 0, 0, sTopText, nil
	return n, k, nil
}

func (s *Splitter) incomplete(b []byte) (int, Kind, error) {
	if s.Max > 0 && len(b) >= s.Max {
		// The unit is at least Max bytes long and not finished.
		return 0, None, ErrTooLarge
	}
	return 0, None, nil
}

// isSpace reports whether c is XML whitespace (XML 1.0 production 3).
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// isNameStart reports whether c can start an XML name. Bytes of
// multi-byte UTF-8 sequences are accepted; the XML parser that reads the
// element judges them.
func isNameStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || c >= 0x80
}

// isNameByte reports whether c can continue an XML name.
func isNameByte(c byte) bool {
	return isNameStart(c) || c >= '0' && c <= '9' || c == '-' || c == '.'
}
