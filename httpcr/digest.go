package httpcr

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// digestAlg is one Digest algorithm (RFC 7616 section 3.2 and 6.1).
type digestAlg struct {
	name    string // as registered, compared case-insensitively
	auth    string // Result.Auth
	newHash func() hash.Hash
	sess    bool
	rank    int // higher is stronger
}

var digestAlgs = []digestAlg{
	{"MD5", "digest-md5", md5.New, false, 2},
	{"MD5-sess", "digest-md5-sess", md5.New, true, 2},
	{"SHA-256", "digest-sha-256", sha256.New, false, 3},
	{"SHA-256-sess", "digest-sha-256-sess", sha256.New, true, 3},
	{"SHA-512-256", "digest-sha-512-256", sha512.New512_256, false, 4},
	{"SHA-512-256-sess", "digest-sha-512-256-sess", sha512.New512_256, true, 4},
}

const rankBasic = 1

// basicDisabled describes a Basic offer that the configuration forbids.
const basicDisabled = "Basic (disabled)"

// authPlan is what the client will send in answer to one challenge.
type authPlan struct {
	name string // Result.Auth: "basic", "digest-md5", ...
	rank int

	// Digest only.
	alg      *digestAlg
	algToken string // the algorithm as the CPE spelled it; "" if it sent none
	realm    string
	nonce    string
	opaque   string
	hasOpq   bool
	qop      string // "", "auth" or "auth-int"
	userhash bool
	stale    bool
}

// planFor returns how to answer c, or a reason why c cannot be answered.
// allowBasic says whether Basic may be used.
func planFor(c *challenge, allowBasic bool) (authPlan, string) {
	switch c.scheme {
	case "basic":
		if !allowBasic {
			return authPlan{}, basicDisabled
		}
		return authPlan{name: "basic", rank: rankBasic}, ""
	case "digest":
		return planDigest(c)
	default:
		return authPlan{}, c.scheme
	}
}

func planDigest(c *challenge) (authPlan, string) {
	p := authPlan{}
	p.algToken, _ = c.get("algorithm")
	if p.algToken == "" {
		p.alg = &digestAlgs[0] // RFC 7616 3.3: absent means MD5
	} else {
		for i := range digestAlgs {
			if strings.EqualFold(p.algToken, digestAlgs[i].name) {
				p.alg = &digestAlgs[i]
				break
			}
		}
		if p.alg == nil || !isToken(p.algToken) {
			return authPlan{}, "Digest algorithm=" + p.algToken
		}
	}
	p.name, p.rank = p.alg.auth, p.alg.rank

	var ok bool
	if p.nonce, ok = c.get("nonce"); !ok || p.nonce == "" {
		return authPlan{}, "Digest without nonce"
	}
	p.realm, _ = c.get("realm") // required by the RFCs, tolerated when missing
	p.opaque, p.hasOpq = c.get("opaque")
	for _, v := range []string{p.nonce, p.realm, p.opaque} {
		if hasCTL(v) {
			return authPlan{}, "Digest with control characters in a parameter"
		}
	}

	// RFC 7616 3.3: qop is a list. Prefer auth; auth-int over our empty
	// body costs nothing. No qop at all is RFC 2069 compatibility, which
	// CPEs still use.
	if q, ok := c.get("qop"); ok && strings.TrimSpace(q) != "" {
		for _, v := range strings.Split(q, ",") {
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "auth":
				p.qop = "auth"
			case "auth-int":
				if p.qop == "" {
					p.qop = "auth-int"
				}
			}
		}
		if p.qop == "" {
			return authPlan{}, "Digest qop=" + q
		}
	}
	if v, _ := c.get("userhash"); strings.EqualFold(v, "true") {
		p.userhash = true
	}
	if v, _ := c.get("stale"); strings.EqualFold(v, "true") {
		p.stale = true
	}
	return p, ""
}

// choosePlan picks the strongest usable challenge from all WWW-Authenticate
// field values: Digest SHA-512-256 > SHA-256 > MD5 > Basic (if allowed).
// Among equals the CPE's first offer wins. If none is usable it returns
// the offers it could not use, for the error detail.
func choosePlan(fields []string, allowBasic bool) (best authPlan, ok bool, offered []string) {
	for _, f := range fields {
		cs := parseChallenges(f)
		for i := range cs {
			p, why := planFor(&cs[i], allowBasic)
			if why != "" {
				offered = append(offered, why)
				continue
			}
			if !ok || p.rank > best.rank {
				best, ok = p, true
			}
		}
	}
	return best, ok, offered
}

// authorization returns the Authorization field value for the plan.
// cnonce is used only when the plan needs one.
func (p *authPlan) authorization(user, pass, method, uri, cnonce string) string {
	if p.alg == nil {
		// RFC 7617 2: user-id ":" password, base64.
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	const nc = "00000001" // a fresh challenge for every request: first use
	qop := p.qop
	if qop == "" && !p.alg.sess {
		cnonce = "" // RFC 2617 3.2.2: no qop, no cnonce (nor nc)
	}
	resp := digestResponse(p.alg.newHash, p.alg.sess, user, p.realm, pass, method, uri, p.nonce, nc, cnonce, qop)

	name := user
	if p.userhash {
		name = hexHash(p.alg.newHash, user+":"+p.realm) // RFC 7616 3.4.4
	}
	var b strings.Builder
	b.Grow(256)
	b.WriteString("Digest username=")
	writeQuoted(&b, name)
	b.WriteString(", realm=")
	writeQuoted(&b, p.realm)
	b.WriteString(", nonce=")
	writeQuoted(&b, p.nonce)
	b.WriteString(", uri=")
	writeQuoted(&b, uri)
	if p.algToken != "" {
		b.WriteString(", algorithm=")
		b.WriteString(p.algToken)
	}
	b.WriteString(", response=")
	writeQuoted(&b, resp)
	if qop != "" {
		b.WriteString(", qop=")
		b.WriteString(qop)
		b.WriteString(", nc=")
		b.WriteString(nc)
	}
	if cnonce != "" {
		b.WriteString(", cnonce=")
		writeQuoted(&b, cnonce)
	}
	if p.hasOpq {
		b.WriteString(", opaque=")
		writeQuoted(&b, p.opaque)
	}
	if p.userhash {
		b.WriteString(", userhash=true")
	}
	return b.String()
}

// digestResponse computes the request-digest of RFC 7616 3.4.1 (RFC 2617
// 3.2.2.1 for MD5):
//
//	A1       = username ":" realm ":" passwd
//	A1 -sess = H(username ":" realm ":" passwd) ":" nonce ":" cnonce
//	A2       = method ":" uri               (qop auth or none)
//	A2       = method ":" uri ":" H(body)   (qop auth-int; the body is empty)
//	response = H(H(A1) ":" nonce ":" nc ":" cnonce ":" qop ":" H(A2))
//	response = H(H(A1) ":" nonce ":" H(A2))  (no qop, RFC 2069)
func digestResponse(newHash func() hash.Hash, sess bool, user, realm, pass, method, uri, nonce, nc, cnonce, qop string) string {
	ha1 := hexHash(newHash, user+":"+realm+":"+pass)
	if sess {
		ha1 = hexHash(newHash, ha1+":"+nonce+":"+cnonce)
	}
	a2 := method + ":" + uri
	if qop == "auth-int" {
		a2 += ":" + hexHash(newHash, "")
	}
	ha2 := hexHash(newHash, a2)
	if qop == "" {
		return hexHash(newHash, ha1+":"+nonce+":"+ha2)
	}
	return hexHash(newHash, ha1+":"+nonce+":"+nc+":"+cnonce+":"+qop+":"+ha2)
}

func hexHash(newHash func() hash.Hash, s string) string {
	h := newHash()
	h.Write([]byte(s))
	var buf [64]byte
	return hex.EncodeToString(h.Sum(buf[:0]))
}

// newCnonce returns 128 random bits in hex: no quoting concerns.
func newCnonce() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// describeOffers renders unusable offers for an error detail.
func describeOffers(offered []string) string {
	if len(offered) == 0 {
		return "none"
	}
	const max = 4
	if len(offered) > max {
		return fmt.Sprintf("%s and %d more", strings.Join(offered[:max], ", "), len(offered)-max)
	}
	return strings.Join(offered, ", ")
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return s != ""
}

// hasCTL reports whether s holds a control character other than HTAB: such
// a value cannot be echoed in a header without breaking it.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < ' ' && s[i] != '\t') || s[i] == 0x7f {
			return true
		}
	}
	return false
}
