// ParseStartTag: the start tag of a framed element, as written, so that
// the broker can copy it with the addresses it vouches for.

package xmlframe

// Attr is one attribute of a start tag, as written: Value is the raw text
// between the quotes (entity references not expanded) and Quote the quote
// character, so that the attribute can be copied back unchanged.
type Attr struct {
	Name  []byte
	Value []byte
	Quote byte
}

// Tag is the start tag at the beginning of an element.
type Tag struct {
	// Name is the element's qualified name (with its prefix, if any).
	Name []byte
	// Attrs are the attributes in document order. ParseStartTag appends
	// to the slice it finds here, so a caller can supply the storage.
	Attrs []Attr
	// Close is the index of the "/>" or ">" that ends the tag.
	Close int
	// End is the index just past the tag.
	End int
	// Empty reports an empty-element tag ("<x/>").
	Empty bool
}

// Attr returns the raw value of the attribute called name (a qualified
// name, such as "to" or "xml:lang").
func (t *Tag) Attr(name string) (value []byte, ok bool) {
	for _, a := range t.Attrs {
		if string(a.Name) == name {
			return a.Value, true
		}
	}
	return nil, false
}

// ParseStartTag reads the start tag at the beginning of b into t, reusing
// t.Attrs' storage. The slices in t alias b.
func ParseStartTag(b []byte, t *Tag) error {
	attrs := t.Attrs[:0]
	*t = Tag{Attrs: attrs}
	if len(b) < 2 || b[0] != '<' || !isNameStart(b[1]) {
		return ErrTag
	}
	i := 2
	for i < len(b) && isNameByte(b[i]) {
		i++
	}
	t.Name = b[1:i]
	for {
		sp := i
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) {
			return ErrTag
		}
		switch b[i] {
		case '>':
			t.Close, t.End = i, i+1
			t.Attrs = attrs
			return nil
		case '/':
			if i+1 >= len(b) || b[i+1] != '>' {
				return ErrTag
			}
			t.Close, t.End, t.Empty = i, i+2, true
			t.Attrs = attrs
			return nil
		}
		if i == sp || !isNameStart(b[i]) {
			// Attributes are separated from what precedes them by
			// whitespace.
			return ErrTag
		}
		ns := i
		for i < len(b) && isNameByte(b[i]) {
			i++
		}
		name := b[ns:i]
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) || b[i] != '=' {
			return ErrTag
		}
		i++
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) || b[i] != '"' && b[i] != '\'' {
			return ErrTag
		}
		q := b[i]
		i++
		vs := i
		for i < len(b) && b[i] != q {
			if b[i] == '<' {
				return ErrTag
			}
			i++
		}
		if i >= len(b) {
			return ErrTag
		}
		attrs = append(attrs, Attr{Name: name, Value: b[vs:i], Quote: q})
		i++
	}
}
