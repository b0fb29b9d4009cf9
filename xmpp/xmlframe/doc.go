// Package xmlframe is the XML codec under the XMPP broker. It splits the
// inside of a stream into top-level elements (stanzas) without decoding
// them, reads the start tag of a framed element, and checks a framed
// element strictly while reporting its tags. It is pure and allocation
// free on the paths stanzas take, and owns no socket. The Splitter keeps
// a few words of state between calls and never holds the bytes it
// scans, so an idle connection costs it nothing.
//
// RFC 6120 11.1 restricts the XML of a stream: no comments, processing
// instructions or document type declarations. The Splitter refuses them,
// which also keeps it simple: what is left to track is tags, quoted
// attribute values and CDATA sections. It checks just enough syntax to
// find element boundaries; the Walker then checks everything else.
//
// # What the Walker checks
//
// A Walker accepts its input only if it is exactly one element that is
// well-formed XML 1.0 and namespace-well-formed (Namespaces in XML 1.0),
// within the restrictions of RFC 6120 11.1. It replaced encoding/xml on
// the broker's hot path and refuses everything encoding/xml (strict mode)
// refused; where the two differ, the Walker is the stricter.
//
//   - The input starts with a start tag and ends with the matching end
//     tag: nothing, not even whitespace, before or after.
//   - Names are XML names: the ASCII letters, '_' and ':' start one, and
//     digits, '-' and '.' may follow; other characters are those of XML
//     1.0 (fourth edition) Appendix B, the classes encoding/xml applies
//     (names_table.go is generated from it). A qualified name has at
//     most one colon, neither first nor last, and its local part starts
//     like a name.
//   - Start tags: whitespace separates the name and each attribute;
//     name="value" or name='value', whitespace allowed around '='; '>'
//     or '/>' ends the tag. No attribute appears twice, by its name as
//     written nor by its namespace and local name.
//   - End tags: '</', the qualified name of the open element exactly,
//     optional whitespace, '>'.
//   - Attribute values and text hold only XML characters (#x9, #xA,
//     #xD, #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF) in valid UTF-8,
//     no '<' in values, no ']]>' in text. '&' starts a reference: one of
//     &amp; &lt; &gt; &quot; &apos;, or &#N; or &#xH; naming an XML
//     character (encoding/xml let references to surrogates through).
//   - CDATA sections may appear in an element and hold XML characters.
//   - Comments, processing instructions and declarations (<!DOCTYPE and
//     the like) inside the element are refused with ErrRestricted; every
//     other fault, including such markup before the element, is
//     ErrSyntax.
//   - Namespaces: the prefix xml is bound to its namespace and may only
//     be declared as such; the prefix xmlns is never declared, nor used
//     on an element; no other prefix is bound to either of their
//     namespaces, nor to the empty string (xmlns:p="" is XML 1.1); the
//     default namespace is not one of them either. A prefix used on an
//     element or attribute is declared on it or an ancestor, except
//     stream, which the stream header declared
//     (http://etherx.jabber.org/streams). An unprefixed element with no
//     default namespace in scope has none: the broker does not know the
//     stream's default here.
//
// encoding/xml did not check what the Walker adds: undeclared prefixes
// and the other namespace constraints, the placement of colons, repeated
// attributes, whitespace between attributes, bytes after the element and
// references to surrogates (which it read as U+FFFD). Two names also
// resolve differently: the undeclared prefix stream to the stream
// namespace, where encoding/xml left the prefix itself as the namespace,
// and an element called xmlns to the default namespace, where
// encoding/xml put it in none.
//
// The Walker reads what it checks once, byte by byte, with a table per
// byte for the common ASCII case; it keeps offsets into the element
// rather than copies, in arrays sized for real stanzas, so walking one
// allocates nothing. Prefix lookups and the check for repeated
// attributes switch to maps beyond sixteen bindings or attributes, so
// that no element, even one built to be slow, takes more than linear
// time.
package xmlframe

//go:generate go run gen_names.go
