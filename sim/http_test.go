package sim

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

const path1 = "/cr/cpe-1"

var nonceRE = `[0-9a-f]{80}`
var opaqueRE = `[0-9a-f]{32}`

func TestModesAcceptRightAnswer(t *testing.T) {
	tests := []struct {
		mode      Mode
		challenge string // regexp of the whole WWW-Authenticate value; "" = no challenge
	}{
		{ModeDigestMD5, `Digest realm="cwmp", qop="auth", nonce="` + nonceRE + `", opaque="` + opaqueRE + `"`},
		{ModeDigestMD5NoQop, `Digest realm="cwmp", nonce="` + nonceRE + `", opaque="` + opaqueRE + `"`},
		{ModeDigestMD5Sess, `Digest realm="cwmp", qop="auth", algorithm=MD5-sess, nonce="` + nonceRE + `", opaque="` + opaqueRE + `"`},
		{ModeDigestSHA256, `Digest realm="cwmp", qop="auth", algorithm=SHA-256, nonce="` + nonceRE + `", opaque="` + opaqueRE + `"`},
		{ModeDigestSHA256Sess, `Digest realm="cwmp", qop="auth", algorithm=SHA-256-sess, nonce="` + nonceRE + `", opaque="` + opaqueRE + `"`},
		{ModeBasic, `Basic realm="cwmp"`},
		{ModeNone, ``},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode), func(t *testing.T) {
			c, addr := oneCPE(t, HTTPCPEConfig{Mode: tc.mode}, nil)
			w := dial(t, addr)
			resp := w.get(path1)
			wantEmpty(t, resp)
			if tc.challenge == "" {
				wantStatus(t, resp, http.StatusNoContent)
			} else {
				wantStatus(t, resp, http.StatusUnauthorized)
				h := resp.Header.Get("WWW-Authenticate")
				if !regexp.MustCompile(`^` + tc.challenge + `$`).MatchString(h) {
					t.Fatalf("challenge %q does not match %q", h, tc.challenge)
				}
				if resp.Close {
					t.Fatal("401 closed the connection without CloseAfter401")
				}
				var auth string
				if tc.mode == ModeBasic {
					auth = basicHeader("cr-user", "cr-pass")
				} else {
					auth = answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: challengeParams(t, resp)}.header()
				}
				// Answered on the same connection.
				resp = w.get(path1, auth)
				wantStatus(t, resp, http.StatusNoContent)
				wantEmpty(t, resp)
			}
			got := c.Counters()
			want := Counters{Requests: 2, Challenges: 1, Accepted: 1, LastWake: got.LastWake}
			if tc.challenge == "" {
				want = Counters{Requests: 1, Accepted: 1, LastWake: got.LastWake}
			}
			if got != want || got.LastWake.IsZero() {
				t.Errorf("counters %+v, want %+v", got, want)
			}
		})
	}
}

func TestWrongCredentialsRejected(t *testing.T) {
	for _, mode := range Modes() {
		if mode == ModeNone {
			continue
		}
		for _, wrong := range []struct{ name, user, pass string }{
			{"password", "cr-user", "cr-pass!"},
			{"username", "cr-user2", "cr-pass"},
		} {
			t.Run(string(mode)+"/"+wrong.name, func(t *testing.T) {
				c, addr := oneCPE(t, HTTPCPEConfig{Mode: mode}, nil)
				w := dial(t, addr)
				first := w.get(path1)
				var auth string
				if mode == ModeBasic {
					auth = basicHeader(wrong.user, wrong.pass)
				} else {
					auth = answer{user: wrong.user, pass: wrong.pass, uri: path1, ch: challengeParams(t, first)}.header()
				}
				resp := w.get(path1, auth)
				wantStatus(t, resp, http.StatusUnauthorized)
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without a new challenge")
				}
				if got := c.Counters(); got.Rejected != 1 || got.Challenges != 2 || got.Accepted != 0 {
					t.Errorf("counters %+v", got)
				}
			})
		}
	}
}

func TestNoQopModeRejectsQopAnswers(t *testing.T) {
	tests := []struct {
		name string
		edit func(a answer, ch map[string]string) string
	}{
		{"RFC 2617 answer with qop=auth", func(a answer, ch map[string]string) string {
			a.qop = "auth"
			return a.header()
		}},
		{"qop=undefined (ACS bug)", func(a answer, ch map[string]string) string {
			a.qop = "undefined"
			return a.header()
		}},
		{"nc and cnonce without qop", func(a answer, ch map[string]string) string {
			return a.header() + `, nc=00000001, cnonce="0a4f113b"`
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, addr := oneCPE(t, HTTPCPEConfig{Mode: ModeDigestMD5NoQop}, nil)
			w := dial(t, addr)
			ch := challengeParams(t, w.get(path1))
			a := answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: ch}
			wantStatus(t, w.get(path1, tc.edit(a, ch)), http.StatusUnauthorized)
			if got := c.Counters(); got.Rejected != 1 || got.Accepted != 0 {
				t.Errorf("counters %+v", got)
			}
		})
	}
}

func TestQopModeRejectsRFC2069Answer(t *testing.T) {
	c, addr := oneCPE(t, HTTPCPEConfig{Mode: ModeDigestMD5}, nil)
	w := dial(t, addr)
	ch := challengeParams(t, w.get(path1))
	wantStatus(t, w.get(path1, answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: ch, noqop: true}.header()), http.StatusUnauthorized)
	if got := c.Counters(); got.Rejected != 1 {
		t.Errorf("counters %+v", got)
	}
}

func TestCloseAfter401(t *testing.T) {
	for _, mode := range []Mode{ModeDigestMD5, ModeBasic} {
		t.Run(string(mode), func(t *testing.T) {
			c, addr := oneCPE(t, HTTPCPEConfig{Mode: mode, CloseAfter401: true}, nil)
			w := dial(t, addr)
			resp := w.get(path1)
			wantStatus(t, resp, http.StatusUnauthorized)
			if !resp.Close {
				t.Error("401 without Connection: close")
			}
			if !w.closedByPeer() {
				t.Fatal("connection still open after the 401")
			}
			auth := basicHeader("cr-user", "cr-pass")
			if mode != ModeBasic {
				auth = answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: challengeParams(t, resp)}.header()
			}
			wantStatus(t, getOnce(t, addr, path1, auth), http.StatusNoContent)
			if got := c.Counters(); got.Accepted != 1 {
				t.Errorf("counters %+v", got)
			}
		})
	}
}

func TestNoncePerConnection(t *testing.T) {
	tests := []struct {
		name       string
		perConn    bool
		otherConn  int // status for the answer on another connection
		sameConnOK bool
	}{
		{"bound to its connection", true, http.StatusUnauthorized, true},
		{"not bound", false, http.StatusNoContent, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, addr := oneCPE(t, HTTPCPEConfig{NoncePerConnection: tc.perConn}, nil)
			a, b := dial(t, addr), dial(t, addr)
			ch := challengeParams(t, a.get(path1))
			auth := answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: ch}.header()
			wantStatus(t, b.get(path1, auth), tc.otherConn)
			if tc.sameConnOK {
				wantStatus(t, a.get(path1, auth), http.StatusNoContent)
				if got := c.Counters(); got.Rejected != 1 || got.Accepted != 1 {
					t.Errorf("counters %+v", got)
				}
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	clock := newFakeClock()
	c, addr := oneCPE(t, HTTPCPEConfig{RateLimit: 1, RateWindow: time.Minute}, clock)
	wake := func() *http.Response {
		w := dial(t, addr)
		resp := w.get(path1)
		if resp.StatusCode != http.StatusUnauthorized {
			return resp
		}
		return w.get(path1, answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: challengeParams(t, resp)}.header())
	}
	wantStatus(t, wake(), http.StatusNoContent)

	clock.Advance(time.Minute - time.Nanosecond)
	resp := wake()
	wantStatus(t, resp, http.StatusServiceUnavailable)
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		t.Errorf("Retry-After: %q; TR-069 says none", ra)
	}

	clock.Advance(time.Nanosecond)
	wantStatus(t, wake(), http.StatusNoContent)
	if got := c.Counters(); got.Throttled != 1 || got.Accepted != 2 {
		t.Errorf("counters %+v", got)
	}
}

func TestRateLimitCountsOnlyAcceptedRequests(t *testing.T) {
	clock := newFakeClock()
	c, addr := oneCPE(t, HTTPCPEConfig{RateLimit: 1, RateWindow: time.Minute}, clock)
	w := dial(t, addr)
	for range 3 { // challenges and wrong answers use no budget
		ch := challengeParams(t, w.get(path1))
		wantStatus(t, w.get(path1, answer{user: "cr-user", pass: "wrong", uri: path1, ch: ch}.header()), http.StatusUnauthorized)
	}
	ch := challengeParams(t, w.get(path1))
	wantStatus(t, w.get(path1, answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: ch}.header()), http.StatusNoContent)
	if got := c.Counters(); got.Throttled != 0 || got.Rejected != 3 {
		t.Errorf("counters %+v", got)
	}
}

func TestStaleNonce(t *testing.T) {
	clock := newFakeClock()
	c, addr := oneCPE(t, HTTPCPEConfig{NonceTTL: 30 * time.Second}, clock)
	w := dial(t, addr)
	old := challengeParams(t, w.get(path1))
	clock.Advance(30 * time.Second)

	// Wrong password with an expired nonce: a plain 401, no stale.
	resp := w.get(path1, answer{user: "cr-user", pass: "wrong", uri: path1, ch: old}.header())
	wantStatus(t, resp, http.StatusUnauthorized)
	if ch := challengeParams(t, resp); ch["stale"] != "" {
		t.Errorf("stale=%s after a wrong password", ch["stale"])
	}

	// Right answer with the expired nonce: stale=true and a new nonce.
	resp = w.get(path1, answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: old}.header())
	wantStatus(t, resp, http.StatusUnauthorized)
	fresh := challengeParams(t, resp)
	if fresh["stale"] != "true" {
		t.Fatalf("challenge %q lacks stale=true", resp.Header.Get("WWW-Authenticate"))
	}
	if fresh["nonce"] == old["nonce"] {
		t.Fatal("stale challenge repeats the old nonce")
	}
	wantStatus(t, w.get(path1, answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: fresh}.header()), http.StatusNoContent)
	if got := c.Counters(); got.Rejected != 1 || got.Challenges != 3 || got.Accepted != 1 {
		t.Errorf("counters %+v", got)
	}
}

func TestNonceCount(t *testing.T) {
	tests := []struct {
		name  string
		mode  Mode
		ncs   []string // nc of successive answers to one challenge
		wants []int
	}{
		{"replay rejected", ModeDigestMD5, []string{"00000001", "00000001"}, []int{204, 401}},
		{"increasing nc reuses the nonce", ModeDigestMD5, []string{"00000001", "00000002", "0000000a"}, []int{204, 204, 204}},
		{"decreasing nc rejected", ModeDigestMD5Sess, []string{"00000002", "00000001"}, []int{204, 401}},
		{"nc zero rejected", ModeDigestSHA256, []string{"00000000"}, []int{401}},
		{"no-qop nonce is single-use", ModeDigestMD5NoQop, []string{"", ""}, []int{204, 401}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := oneCPE(t, HTTPCPEConfig{Mode: tc.mode}, nil)
			w := dial(t, addr)
			ch := challengeParams(t, w.get(path1))
			for i, nc := range tc.ncs {
				wantStatus(t, w.get(path1, answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: ch, nc: nc}.header()), tc.wants[i])
			}
		})
	}
}

func TestMalformedAuthorization(t *testing.T) {
	// edit turns a right Authorization line into the case's header lines.
	tests := []struct {
		name string
		mode Mode
		edit func(right string, ch map[string]string) []string
		want int
	}{
		{"garbage", ModeDigestMD5, lines("Authorization: ??!!{}[] <>"), 401},
		{"control character", ModeDigestMD5, lines("Authorization: Digest username=\"\x01\""), 400},
		{"empty value", ModeDigestMD5, lines("Authorization: "), 401},
		{"Bearer", ModeDigestMD5, lines("Authorization: Bearer abc.def"), 401},
		{"Basic to a Digest CPE", ModeDigestMD5, lines(basicHeader("cr-user", "cr-pass")), 401},
		{"Digest without parameters", ModeDigestMD5, lines("Authorization: Digest"), 400},
		{"Digest token68", ModeDigestMD5, lines("Authorization: Digest Y3ItdXNlcjpjci1wYXNz"), 400},
		{"missing response", ModeDigestMD5, drop("response"), 400},
		{"missing uri", ModeDigestMD5, drop("uri"), 400},
		{"missing nonce", ModeDigestMD5, drop("nonce"), 400},
		{"missing username", ModeDigestMD5, drop("username"), 400},
		{"missing cnonce", ModeDigestMD5, drop("cnonce"), 400},
		{"missing nc", ModeDigestMD5, drop("nc"), 400},
		{"missing qop", ModeDigestMD5, drop("qop"), 401},
		{"missing opaque", ModeDigestMD5, drop("opaque"), 401},
		{"duplicate nonce", ModeDigestMD5, appendLine(func(ch map[string]string) string { return `, nonce="` + ch["nonce"] + `"` }), 400},
		{"duplicate realm other case", ModeDigestMD5, appendLine(func(map[string]string) string { return `, REALM="cwmp"` }), 400},
		{"unterminated quote", ModeDigestMD5, appendLine(func(map[string]string) string { return `, foo="bar` }), 400},
		{"too many parameters", ModeDigestMD5, appendLine(func(map[string]string) string { return strings.Repeat(", x=y", 40) }), 400},
		{"nc not hex", ModeDigestMD5, replace("nc=00000001", "nc=0000000g"), 400},
		{"nc too long", ModeDigestMD5, replace("nc=00000001", "nc=000000001"), 400},
		{"uri other than request-target", ModeDigestMD5, replace(`uri="/cr/cpe-1"`, `uri="/cr/cpe-2"`), 400},
		{"two Authorization headers", ModeDigestMD5, func(right string, _ map[string]string) []string { return []string{right, right} }, 400},
		{"unknown algorithm", ModeDigestMD5, appendLine(func(map[string]string) string { return `, algorithm=SHA-512-256` }), 401},
		{"MD5-sess to an MD5 CPE", ModeDigestMD5, appendLine(func(map[string]string) string { return `, algorithm=MD5-sess` }), 401},
		{"SHA-256 answer without algorithm", ModeDigestSHA256, replace(", algorithm=SHA-256", ""), 401},
		{"qop=auth-int", ModeDigestMD5, replace("qop=auth", "qop=auth-int"), 401},
		{"qop=undefined", ModeDigestMD5, replace("qop=auth", "qop=undefined"), 401},
		{"userhash", ModeDigestMD5, appendLine(func(map[string]string) string { return `, userhash=true` }), 401},
		{"wrong opaque", ModeDigestMD5, replaceParam("opaque", "00000000000000000000000000000000"), 401},
		{"wrong realm", ModeDigestMD5, replaceParam("realm", "other"), 401},
		{"forged nonce", ModeDigestMD5, replaceParam("nonce", strings.Repeat("0", 80)), 401},
		{"nonce not hex", ModeDigestMD5, replaceParam("nonce", strings.Repeat("z", 80)), 401},
		{"huge nonce", ModeDigestMD5, replaceParam("nonce", strings.Repeat("a", 6000)), 401},
		{"huge username", ModeDigestMD5, replaceParam("username", strings.Repeat("u", 6000)), 401},
		{"upper-case response", ModeDigestMD5, func(right string, _ map[string]string) []string {
			i := strings.Index(right, `response="`) + len(`response="`)
			return []string{right[:i] + strings.ToUpper(right[i:i+32]) + right[i+32:]}
		}, 401},
		{"header over the cap", ModeDigestMD5, appendLine(func(map[string]string) string { return `, foo="` + strings.Repeat("x", 64<<10) + `"` }), 431},
		{"Basic not base64", ModeBasic, lines("Authorization: Basic !!!"), 400},
		{"Basic without colon", ModeBasic, lines("Authorization: Basic Y3ItdXNlcg=="), 400},
		{"Digest to a Basic CPE", ModeBasic, lines(`Authorization: Digest username="cr-user"`), 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, addr := oneCPE(t, HTTPCPEConfig{Mode: tc.mode}, nil)
			w := dial(t, addr)
			first := w.get(path1)
			right := basicHeader("cr-user", "cr-pass")
			var ch map[string]string
			if tc.mode != ModeBasic {
				ch = challengeParams(t, first)
				right = answer{user: "cr-user", pass: "cr-pass", uri: path1, ch: ch}.header()
			}
			wantStatus(t, getOnce(t, addr, path1, tc.edit(right, ch)...), tc.want)

			// The CPE still works.
			wantStatus(t, w.get(path1, right), http.StatusNoContent)
			if got := c.Counters(); got.Accepted != 1 {
				t.Errorf("counters %+v", got)
			}
		})
	}
}

func lines(ls ...string) func(string, map[string]string) []string {
	return func(string, map[string]string) []string { return ls }
}

func appendLine(extra func(map[string]string) string) func(string, map[string]string) []string {
	return func(right string, ch map[string]string) []string { return []string{right + extra(ch)} }
}

func replace(old, new string) func(string, map[string]string) []string {
	return func(right string, _ map[string]string) []string {
		if !strings.Contains(right, old) {
			panic(fmt.Sprintf("%q not in %q", old, right))
		}
		return []string{strings.Replace(right, old, new, 1)}
	}
}

var paramRE = func(name string) *regexp.Regexp {
	return regexp.MustCompile(`(^Authorization: Digest |, )` + name + `=("[^"]*"|[^,]*)`)
}

func drop(name string) func(string, map[string]string) []string {
	return func(right string, _ map[string]string) []string {
		return []string{paramRE(name).ReplaceAllString(right, "$1")}
	}
}

func replaceParam(name, value string) func(string, map[string]string) []string {
	return func(right string, _ map[string]string) []string {
		return []string{paramRE(name).ReplaceAllString(right, `${1}`+name+`="`+value+`"`)}
	}
}

func TestMethodsAndPaths(t *testing.T) {
	tests := []struct {
		method, target string
		want           int
	}{
		{"POST", path1, http.StatusMethodNotAllowed},
		{"HEAD", path1, http.StatusMethodNotAllowed},
		{"GET", "/cr/nobody", http.StatusNotFound},
		{"GET", "/cr/", http.StatusNotFound},
		{"GET", "/cr/cpe-1/x", http.StatusNotFound},
		{"GET", "/", http.StatusNotFound},
		{"GET", path1 + "?x=1", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			_, addr := oneCPE(t, HTTPCPEConfig{}, nil)
			resp := dial(t, addr).request(tc.method, tc.target)
			wantStatus(t, resp, tc.want)
			wantEmpty(t, resp)
			if tc.want == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET" {
				t.Errorf("Allow: %q", resp.Header.Get("Allow"))
			}
		})
	}
}
