package httpcr

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []challenge
	}{
		{
			name: "apache mod_auth_digest",
			in:   `Digest realm="cwmp", nonce="HMGZm9VgBgA=0d3abc33c0c3cd4a73bb814b5635f03cff04b035", algorithm=MD5, qop="auth"`,
			want: []challenge{{scheme: "digest", params: []param{
				{"realm", "cwmp"}, {"nonce", "HMGZm9VgBgA=0d3abc33c0c3cd4a73bb814b5635f03cff04b035"},
				{"algorithm", "MD5"}, {"qop", "auth"},
			}}},
		},
		{
			name: "RFC 2617 3.5",
			in: `Digest realm="testrealm@host.com", qop="auth,auth-int", ` +
				`nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
			want: []challenge{{scheme: "digest", params: []param{
				{"realm", "testrealm@host.com"}, {"qop", "auth,auth-int"},
				{"nonce", "dcd98b7102dd2f0e8b11d0f600bfb0c093"}, {"opaque", "5ccc069c403ebaf9f0171e9517f40e41"},
			}}},
		},
		{
			name: "several challenges in one field",
			in:   `Digest realm="a", nonce="1", algorithm=SHA-256, Digest realm="a", nonce="2", algorithm=MD5, Basic realm="a"`,
			want: []challenge{
				{scheme: "digest", params: []param{{"realm", "a"}, {"nonce", "1"}, {"algorithm", "SHA-256"}}},
				{scheme: "digest", params: []param{{"realm", "a"}, {"nonce", "2"}, {"algorithm", "MD5"}}},
				{scheme: "basic", params: []param{{"realm", "a"}}},
			},
		},
		{
			name: "case-insensitive names keep value case",
			in:   `DiGeSt ReAlM="CPE", NONCE=AbC`,
			want: []challenge{{scheme: "digest", params: []param{{"realm", "CPE"}, {"nonce", "AbC"}}}},
		},
		{
			name: "quoted-pair escapes",
			in:   `Digest realm="a \"b\" \\ c", nonce="x,y"`,
			want: []challenge{{scheme: "digest", params: []param{{"realm", `a "b" \ c`}, {"nonce", "x,y"}}}},
		},
		{
			name: "whitespace around equals and commas",
			in:   "Digest  realm = \"r\" ,\tnonce= n ,, stale=TRUE",
			want: []challenge{{scheme: "digest", params: []param{{"realm", "r"}, {"nonce", "n"}, {"stale", "TRUE"}}}},
		},
		{
			name: "token68",
			in:   `Negotiate YIIBdgYGKwYBBQUCoIIB+/ajCC==, Basic realm="x"`,
			want: []challenge{
				{scheme: "negotiate", token68: "YIIBdgYGKwYBBQUCoIIB+/ajCC=="},
				{scheme: "basic", params: []param{{"realm", "x"}}},
			},
		},
		{
			name: "bare schemes",
			in:   `NTLM, Basic`,
			want: []challenge{{scheme: "ntlm"}, {scheme: "basic"}},
		},
		{
			name: "empty value",
			in:   `Digest nonce="", realm=`,
			want: []challenge{{scheme: "digest", params: []param{{"nonce", ""}, {"realm", ""}}}},
		},
		{
			// RFC 7235: "realm=" followed by a comma is a token68.
			name: "scheme and name= is token68",
			in:   `Digest realm=, Basic`,
			want: []challenge{{scheme: "digest", token68: "realm="}, {scheme: "basic"}},
		},
		{
			name: "unterminated quote runs to the end",
			in:   `Digest nonce="n", realm="cpe, x`,
			want: []challenge{{scheme: "digest", params: []param{{"nonce", "n"}, {"realm", "cpe, x"}}}},
		},
		{name: "empty", in: "", want: nil},
		{name: "only separators", in: " ,, \t,", want: nil},
		{
			name: "garbage bytes are skipped",
			in:   "\x00\"=@ Digest \x01nonce=n",
			want: []challenge{{scheme: "digest", params: []param{{"nonce", "n"}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseChallenges(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseChallenges(%q)\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatChallenges(t *testing.T) {
	cs := []challenge{
		{scheme: "digest", params: []param{{"realm", `a "b" \`}, {"nonce", "n"}}},
		{scheme: "negotiate", token68: "abc="},
		{scheme: "basic"},
	}
	const want = `digest realm="a \"b\" \\", nonce="n", negotiate abc=, basic`
	if got := formatChallenges(cs); got != want {
		t.Errorf("formatChallenges = %s, want %s", got, want)
	}
}

// FuzzParseChallenge checks that the WWW-Authenticate parser never panics,
// that its output survives a format and parse round trip unchanged, and
// that whatever it accepts yields an Authorization field that cannot break
// the request.
func FuzzParseChallenge(f *testing.F) {
	for _, s := range []string{
		`Digest realm="cwmp", nonce="abc", algorithm=MD5, qop="auth"`,
		`Digest realm="r", nonce="n", opaque="o", stale=true, Basic realm="r"`,
		`Negotiate abc==, NTLM`,
		`Digest realm="a \"b\"", nonce=n`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs := parseChallenges(s)
		text := formatChallenges(cs)
		again := parseChallenges(text)
		if !reflect.DeepEqual(cs, again) {
			t.Fatalf("round trip changed %q:\n first %#v\nformat %q\nsecond %#v", s, cs, text, again)
		}
		for i := range cs {
			c := &cs[i]
			if !isToken(c.scheme) || c.scheme != strings.ToLower(c.scheme) {
				t.Fatalf("scheme %q is not a lower-case token", c.scheme)
			}
			if c.token68 != "" && len(c.params) > 0 {
				t.Fatalf("challenge with both token68 and params: %#v", c)
			}
			p, why := planFor(c, true)
			if why != "" {
				continue
			}
			authz := p.authorization("user", "pass", "GET", "/", newCnonce())
			if strings.ContainsAny(authz, "\r\n") {
				t.Fatalf("Authorization with a line break: %q", authz)
			}
			if got := parseChallenges(authz); len(got) != 1 {
				t.Fatalf("Authorization %q does not parse as one credentials field", authz)
			}
		}
	})
}
