package httpcr

import "strings"

// challenge is one parsed challenge of a WWW-Authenticate header
// (RFC 7235 section 4.1):
//
//	challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//	auth-param = token BWS "=" BWS ( token / quoted-string )
//
// Scheme and parameter names are lower-cased (both are case-insensitive);
// values are unquoted and unescaped. A challenge has either token68 or
// params, never both.
type challenge struct {
	scheme  string
	token68 string
	params  []param
}

type param struct {
	name, value string
}

// get returns the value of the first parameter called name (lower case).
func (c *challenge) get(name string) (string, bool) {
	for _, p := range c.params {
		if p.name == name {
			return p.value, true
		}
	}
	return "", false
}

// parseChallenges parses one WWW-Authenticate field value, which may hold
// several comma-separated challenges. It is lenient, because CPEs are: a
// byte that fits nowhere is skipped, an unterminated quoted string runs to
// the end, a parameter without a value gets "". It never fails; input it
// cannot make sense of yields fewer challenges.
//
// The grammar is ambiguous only where commas separate both challenges and
// parameters; like other clients, a token not followed by "=" starts a new
// challenge.
func parseChallenges(s string) []challenge {
	var out []challenge
	i := 0
	for i < len(s) {
		// Between challenges: skip whitespace, empty list elements and
		// bytes that cannot start a scheme.
		if !isTchar(s[i]) {
			i++
			continue
		}
		start := i
		for i < len(s) && isTchar(s[i]) {
			i++
		}
		c := challenge{scheme: strings.ToLower(s[start:i])}

		// token68 needs at least one space after the scheme and must be
		// followed by the end of the field or a comma.
		if j := skipSP(s, i); j > i && j < len(s) {
			if end, ok := scanToken68(s, j); ok {
				c.token68 = s[j:end]
				out = append(out, c)
				i = end
				continue
			}
		}

		i = parseParams(s, i, &c)
		out = append(out, c)
	}
	return out
}

// parseParams reads auth-params from s[i:] into c, stopping at the end or
// at a token that is not followed by "=" (the next challenge's scheme), and
// returns where it stopped.
func parseParams(s string, i int, c *challenge) int {
	for i < len(s) {
		b := s[i]
		if b == ',' || b == ' ' || b == '\t' {
			i++
			continue
		}
		if !isTchar(b) {
			i++ // lenient: skip a stray byte
			continue
		}
		start := i
		for i < len(s) && isTchar(s[i]) {
			i++
		}
		name := s[start:i]
		j := skipSP(s, i)
		if j >= len(s) || s[j] != '=' {
			return start // a new challenge begins here
		}
		j = skipSP(s, j+1)
		var value string
		switch {
		case j < len(s) && s[j] == '"':
			value, j = unquote(s, j)
		default:
			k := j
			for k < len(s) && isTchar(s[k]) {
				k++
			}
			value, j = s[j:k], k
		}
		c.params = append(c.params, param{name: strings.ToLower(name), value: value})
		i = j
	}
	return i
}

// unquote reads the quoted-string starting at s[i] == '"' and returns its
// unescaped content and the index after the closing quote. A missing
// closing quote ends the string at the end of s.
func unquote(s string, i int) (string, int) {
	i++ // opening quote
	start := i
	for i < len(s) && s[i] != '"' && s[i] != '\\' {
		i++
	}
	if i < len(s) && s[i] == '"' {
		return s[start:i], i + 1 // common case: no escapes, no allocation
	}
	var b strings.Builder
	b.WriteString(s[start:i])
	for i < len(s) {
		switch s[i] {
		case '"':
			return b.String(), i + 1
		case '\\':
			// RFC 7230 3.2.6: quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
			if i+1 < len(s) {
				i++
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String(), i
}

// scanToken68 reports whether s[i:] starts with a token68 that ends the
// challenge (followed by optional spaces and then a comma or the end), and
// returns the index after it.
//
//	token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
func scanToken68(s string, i int) (int, bool) {
	j := i
	for j < len(s) && isToken68(s[j]) {
		j++
	}
	if j == i {
		return 0, false
	}
	for j < len(s) && s[j] == '=' {
		j++
	}
	k := skipSP(s, j)
	if k < len(s) && s[k] != ',' {
		return 0, false
	}
	return j, true
}

func skipSP(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// formatChallenges writes challenges in canonical form: schemes and names
// as stored, every parameter value quoted. parseChallenges reads the output
// back to the same challenges (the fuzz target checks this).
func formatChallenges(cs []challenge) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.scheme)
		if c.token68 != "" {
			b.WriteByte(' ')
			b.WriteString(c.token68)
			continue
		}
		for j, p := range c.params {
			if j == 0 {
				b.WriteByte(' ')
			} else {
				b.WriteString(", ")
			}
			b.WriteString(p.name)
			b.WriteByte('=')
			writeQuoted(&b, p.value)
		}
	}
	return b.String()
}

// writeQuoted writes v as a quoted-string, escaping '"' and '\'
// (RFC 7230 3.2.6).
func writeQuoted(b *strings.Builder, v string) {
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
}

// isTchar reports whether b may appear in a token (RFC 7230 3.2.6).
func isTchar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func isToken68(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", b) >= 0
}
