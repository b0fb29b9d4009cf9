package sim

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// This file is the wire codec of the HTTP CPE: parsing Authorization
// headers and computing Digest responses. It does no I/O and, for headers
// without backslash escapes, no allocation.

// maxAuthParams bounds the work one header can cause. RFC 7616 defines
// eleven parameters; real clients send at most ten.
const maxAuthParams = 32

// Indexes of the Digest parameters a CPE reads (RFC 7616 3.4).
const (
	dpUsername = iota
	dpRealm
	dpNonce
	dpURI
	dpResponse
	dpAlgorithm
	dpCnonce
	dpOpaque
	dpQop
	dpNC
	dpUserhash
	dpCount
)

var digestParamNames = [dpCount]string{
	"username", "realm", "nonce", "uri", "response", "algorithm",
	"cnonce", "opaque", "qop", "nc", "userhash",
}

// digestParams is a parsed Digest credentials header. Values are the
// unquoted strings; unknown parameters are ignored (RFC 7616 3.4).
type digestParams struct {
	v    [dpCount]string
	seen uint16 // bit i set when parameter i was present
}

func (p *digestParams) get(i int) string    { return p.v[i] }
func (p *digestParams) has(i int) bool      { return p.seen&(1<<i) != 0 }
func (p *digestParams) set(i int, s string) { p.v[i] = s; p.seen |= 1 << i }

// parseDigestParams parses the part of a Digest Authorization header after
// the scheme: #auth-param with auth-param = token BWS "=" BWS ( token /
// quoted-string ) (RFC 7235 2.1, RFC 7230 7 for the list rule).
func parseDigestParams(s string) (digestParams, error) {
	var p digestParams
	n := 0
	i := 0
	for {
		// Empty list elements are allowed (RFC 7230 7).
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
			i++
		}
		if i == len(s) {
			return p, nil
		}
		start := i
		for i < len(s) && isTchar(s[i]) {
			i++
		}
		if i == start {
			return p, errAuthSyntax
		}
		name := s[start:i]
		i = skipOWS(s, i)
		if i == len(s) || s[i] != '=' {
			return p, errAuthSyntax
		}
		i = skipOWS(s, i+1)
		var val string
		var err error
		if i < len(s) && s[i] == '"' {
			val, i, err = parseQuoted(s, i)
			if err != nil {
				return p, err
			}
		} else {
			start := i
			for i < len(s) && isTchar(s[i]) {
				i++
			}
			if i == start {
				return p, errAuthSyntax
			}
			val = s[start:i]
		}
		i = skipOWS(s, i)
		if i < len(s) && s[i] != ',' {
			return p, errAuthSyntax
		}
		if n++; n > maxAuthParams {
			return p, errAuthTooMany
		}
		for k, known := range digestParamNames {
			if strings.EqualFold(name, known) {
				if p.has(k) {
					return p, errAuthDuplicate
				}
				p.set(k, val)
				break
			}
		}
	}
}

// parseQuoted reads the quoted-string starting at s[i] == '"' and returns
// its unescaped value and the index after the closing quote (RFC 7230 3.2.6).
func parseQuoted(s string, i int) (string, int, error) {
	i++ // opening quote
	start := i
	escaped := false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			if !escaped {
				return s[start:i], i + 1, nil
			}
			return unescapeQuoted(s[start:i]), i + 1, nil
		case c == '\\':
			if i+1 == len(s) || !isQdtext(s[i+1]) && s[i+1] != '"' && s[i+1] != '\\' {
				return "", i, errAuthSyntax
			}
			escaped = true
			i++
		case !isQdtext(c):
			return "", i, errAuthSyntax
		}
	}
	return "", i, errAuthSyntax // unterminated
}

func unescapeQuoted(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isQdtext reports whether c may appear unescaped in a quoted-string:
// HTAB, SP, VCHAR except '"' and '\', obs-text.
func isQdtext(c byte) bool {
	return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E) || c >= 0x80
}

// isTchar reports whether c is a token character (RFC 7230 3.2.6).
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func skipOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// appendQuoted appends s as a quoted-string, escaping '"' and '\'.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// appendTo writes the parameters back as a header value, every value
// quoted; parseDigestParams reads it back to an equal digestParams.
func (p *digestParams) appendTo(b []byte) []byte {
	first := true
	for k, name := range digestParamNames {
		if !p.has(k) {
			continue
		}
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = append(b, name...)
		b = append(b, '=')
		b = appendQuoted(b, p.v[k])
	}
	return b
}

// splitAuthorization splits an Authorization header value into its scheme
// and the rest (RFC 7235 2.1: auth-scheme [ 1*SP ... ]).
func splitAuthorization(h string) (scheme, rest string) {
	scheme, rest, _ = strings.Cut(strings.TrimLeft(h, " \t"), " ")
	return scheme, strings.TrimLeft(rest, " ")
}

// parseBasic decodes Basic credentials (RFC 7617 2).
func parseBasic(s string) (user, pass string, err error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return "", "", errAuthSyntax
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", errAuthSyntax
	}
	return user, pass, nil
}

// digestAlg is one Digest variant as a CPE offers it.
type digestAlg struct {
	name   string // canonical algorithm token (RFC 7616 3.3)
	named  bool   // the challenge names the algorithm; MD5 CPEs usually leave it out
	sha256 bool   // SHA-256 instead of MD5
	sess   bool   // the -sess variant: HA1 hashed again with nonce and cnonce
	qop    bool   // the challenge offers qop="auth"
}

func modeAlgorithm(m Mode) (digestAlg, bool) {
	switch m {
	case ModeDigestMD5:
		return digestAlg{name: "MD5", qop: true}, true
	case ModeDigestMD5NoQop:
		return digestAlg{name: "MD5"}, true
	case ModeDigestMD5Sess:
		return digestAlg{name: "MD5-sess", named: true, sess: true, qop: true}, true
	case ModeDigestSHA256:
		return digestAlg{name: "SHA-256", named: true, sha256: true, qop: true}, true
	case ModeDigestSHA256Sess:
		return digestAlg{name: "SHA-256-sess", named: true, sha256: true, sess: true, qop: true}, true
	}
	return digestAlg{}, false
}

// acceptsAlgorithm reports whether an answer's algorithm parameter names
// this variant; an absent parameter means MD5 (RFC 7616 3.4).
func (a digestAlg) acceptsAlgorithm(s string) bool {
	if s == "" {
		return a.name == "MD5"
	}
	return strings.EqualFold(s, a.name)
}

// appendHashHex appends the lowercase hex of H(b).
func (a digestAlg) appendHashHex(dst, b []byte) []byte {
	if a.sha256 {
		s := sha256.Sum256(b)
		return hex.AppendEncode(dst, s[:])
	}
	s := md5.Sum(b)
	return hex.AppendEncode(dst, s[:])
}

// maxHexLen is the longest response: SHA-256 in hex.
const maxHexLen = 2 * sha256.Size

// appendResponse appends the response the answer p must carry for the
// given password and request method, computed from p's own username, realm,
// nonce, uri, cnonce, nc and qop; the caller checks those against its own.
//
//	RFC 7616 3.4.2: A1 = username ":" realm ":" passwd, or for -sess
//	                A1 = H(username ":" realm ":" passwd) ":" nonce ":" cnonce
//	RFC 7616 3.4.3: A2 = Method ":" request-uri (qop=auth)
//	RFC 7616 3.4.1: response = KD(H(A1), nonce ":" nc ":" cnonce ":" qop ":" H(A2))
//	RFC 2069 2.1.2: without qop, response = KD(H(A1), nonce ":" H(A2))
func (a digestAlg) appendResponse(dst []byte, password string, p *digestParams, method string) []byte {
	var scratch [512]byte
	var ha1Buf, ha2Buf [maxHexLen]byte

	b := append(scratch[:0], p.get(dpUsername)...)
	b = append(b, ':')
	b = append(b, p.get(dpRealm)...)
	b = append(b, ':')
	b = append(b, password...)
	ha1 := a.appendHashHex(ha1Buf[:0], b)
	if a.sess {
		b = append(scratch[:0], ha1...)
		b = append(b, ':')
		b = append(b, p.get(dpNonce)...)
		b = append(b, ':')
		b = append(b, p.get(dpCnonce)...)
		ha1 = a.appendHashHex(ha1Buf[:0], b)
	}

	b = append(scratch[:0], method...)
	b = append(b, ':')
	b = append(b, p.get(dpURI)...)
	ha2 := a.appendHashHex(ha2Buf[:0], b)

	b = append(scratch[:0], ha1...)
	b = append(b, ':')
	b = append(b, p.get(dpNonce)...)
	b = append(b, ':')
	if p.has(dpQop) {
		b = append(b, p.get(dpNC)...)
		b = append(b, ':')
		b = append(b, p.get(dpCnonce)...)
		b = append(b, ':')
		b = append(b, p.get(dpQop)...)
		b = append(b, ':')
	}
	b = append(b, ha2...)
	return a.appendHashHex(dst, b)
}

// verifyResponse reports whether p's response is right for password and
// method. The comparison takes constant time for a response of the right
// length; response is lowercase hex (RFC 7616 3.4.1), other spellings fail.
func (a digestAlg) verifyResponse(password string, p *digestParams, method string) bool {
	var wantBuf, gotBuf [maxHexLen]byte
	want := a.appendResponse(wantBuf[:0], password, p, method)
	got := p.get(dpResponse)
	if len(got) != len(want) {
		return false
	}
	copy(gotBuf[:], got)
	return subtle.ConstantTimeCompare(gotBuf[:len(want)], want) == 1
}

// appendDigestChallenge appends a WWW-Authenticate value for this variant
// in the shape CPE agents send it:
//
//	Digest realm="cwmp", qop="auth", nonce="…", opaque="…"
func (a digestAlg) appendDigestChallenge(b []byte, realm, nonce, opaque string, stale bool) []byte {
	b = append(b, "Digest realm="...)
	b = appendQuoted(b, realm)
	if a.qop {
		b = append(b, `, qop="auth"`...)
	}
	if a.named {
		b = append(b, ", algorithm="...)
		b = append(b, a.name...)
	}
	b = append(b, ", nonce="...)
	b = appendQuoted(b, nonce)
	b = append(b, ", opaque="...)
	b = appendQuoted(b, opaque)
	if stale {
		// RFC 7616 3.3: the response was right, only the nonce was old.
		b = append(b, ", stale=true"...)
	}
	return b
}
