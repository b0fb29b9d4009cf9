package sim

import (
	"errors"
	"strings"
	"testing"
)

// unfold joins an RFC example header written over several lines.
func unfold(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Worked examples from the RFCs, as printed there.
var rfcExamples = []struct {
	name     string
	mode     Mode
	password string
	header   string
	response string
}{
	{
		name:     "RFC 2617 3.5",
		mode:     ModeDigestMD5,
		password: "Circle Of Life",
		header: unfold(`Digest username="Mufasa",
			realm="testrealm@host.com",
			nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
			uri="/dir/index.html",
			qop=auth,
			nc=00000001,
			cnonce="0a4f113b",
			response="6629fae49393a05397450978507c4ef1",
			opaque="5ccc069c403ebaf9f0171e9517f40e41"`),
		response: "6629fae49393a05397450978507c4ef1",
	},
	{
		name:     "RFC 7616 3.9.1 MD5",
		mode:     ModeDigestMD5,
		password: "Circle of Life",
		header: unfold(`Digest username="Mufasa",
			realm="http-auth@example.org",
			uri="/dir/index.html",
			algorithm=MD5,
			nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
			nc=00000001,
			cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			qop=auth,
			response="8ca523f5e9506fed4657c9700eebdbec",
			opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`),
		response: "8ca523f5e9506fed4657c9700eebdbec",
	},
	{
		name:     "RFC 7616 3.9.1 SHA-256",
		mode:     ModeDigestSHA256,
		password: "Circle of Life",
		header: unfold(`Digest username="Mufasa",
			realm="http-auth@example.org",
			uri="/dir/index.html",
			algorithm=SHA-256,
			nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
			nc=00000001,
			cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			qop=auth,
			response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
			opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`),
		response: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
	},
	{
		// The response printed in RFC 2069 2.4 is wrong (erratum 749);
		// this is the corrected one.
		name:     "RFC 2069 2.4 erratum 749",
		mode:     ModeDigestMD5NoQop,
		password: "CircleOfLife",
		header: unfold(`Digest username="Mufasa",
			realm="testrealm@host.com",
			nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
			uri="/dir/index.html",
			response="1949323746fe6a43ef61f9606e7febea",
			opaque="5ccc069c403ebaf9f0171e9517f40e41"`),
		response: "1949323746fe6a43ef61f9606e7febea",
	},
}

func TestVerifyResponseRFCExamples(t *testing.T) {
	for _, tc := range rfcExamples {
		t.Run(tc.name, func(t *testing.T) {
			scheme, rest := splitAuthorization(tc.header)
			if scheme != "Digest" {
				t.Fatalf("scheme = %q", scheme)
			}
			p, err := parseDigestParams(rest)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			alg, _ := modeAlgorithm(tc.mode)
			if !alg.acceptsAlgorithm(p.get(dpAlgorithm)) {
				t.Errorf("algorithm %q not accepted by %s", p.get(dpAlgorithm), tc.mode)
			}
			if got := string(alg.appendResponse(nil, tc.password, &p, "GET")); got != tc.response {
				t.Errorf("response = %s, want %s", got, tc.response)
			}
			if !alg.verifyResponse(tc.password, &p, "GET") {
				t.Error("right password rejected")
			}
			if alg.verifyResponse(tc.password+"x", &p, "GET") {
				t.Error("wrong password accepted")
			}
			if alg.verifyResponse(tc.password, &p, "POST") {
				t.Error("wrong method accepted")
			}
			p.set(dpResponse, strings.ToUpper(tc.response))
			if alg.verifyResponse(tc.password, &p, "GET") {
				t.Error("upper-case response accepted")
			}
		})
	}
}

func TestParseDigestParams(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[int]string
		err  error
	}{
		{name: "tokens and quoted", in: `username="u", nc=00000001, qop=auth`,
			want: map[int]string{dpUsername: "u", dpNC: "00000001", dpQop: "auth"}},
		{name: "no spaces", in: `username="u",realm="r"`,
			want: map[int]string{dpUsername: "u", dpRealm: "r"}},
		{name: "spaces around equals", in: `username = "u" , realm= r`,
			want: map[int]string{dpUsername: "u", dpRealm: "r"}},
		{name: "names are case-insensitive", in: `UserName="u", NONCE="n"`,
			want: map[int]string{dpUsername: "u", dpNonce: "n"}},
		{name: "escapes", in: `username="a\"b\\c"`,
			want: map[int]string{dpUsername: `a"b\c`}},
		{name: "empty list elements", in: `, ,username="u",,`,
			want: map[int]string{dpUsername: "u"}},
		{name: "empty quoted value", in: `opaque=""`,
			want: map[int]string{dpOpaque: ""}},
		{name: "unknown parameters ignored", in: `username*=UTF-8''J%C3%A4s, foo="bar", uri="/"`,
			want: map[int]string{dpURI: "/"}},
		{name: "comma inside quotes", in: `uri="/a,b", realm="x"`,
			want: map[int]string{dpURI: "/a,b", dpRealm: "x"}},
		{name: "empty", in: ``, want: map[int]string{}},

		{name: "duplicate", in: `nonce="a", nonce="b"`, err: errAuthDuplicate},
		{name: "duplicate any case", in: `nonce="a", Nonce="a"`, err: errAuthDuplicate},
		{name: "unterminated quote", in: `username="u`, err: errAuthSyntax},
		{name: "escape at end", in: `username="u\`, err: errAuthSyntax},
		{name: "no equals", in: `username`, err: errAuthSyntax},
		{name: "no value", in: `username=`, err: errAuthSyntax},
		{name: "no name", in: `="u"`, err: errAuthSyntax},
		{name: "missing comma", in: `username="u" realm="r"`, err: errAuthSyntax},
		{name: "token68 is not Digest", in: `dXNlcjpwYXNz`, err: errAuthSyntax},
		{name: "control character", in: "username=\"u\x01\"", err: errAuthSyntax},
		{name: "newline", in: "username=\"u\nv\"", err: errAuthSyntax},
		{name: "too many", in: strings.Repeat("a=b, ", maxAuthParams+1), err: errAuthTooMany},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseDigestParams(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err != nil {
				return
			}
			for k, name := range digestParamNames {
				want, ok := tc.want[k]
				if p.has(k) != ok || p.get(k) != want {
					t.Errorf("%s = %q (present %v), want %q (present %v)", name, p.get(k), p.has(k), want, ok)
				}
			}
		})
	}
}

// FuzzParseDigest: whatever parses, formatted again, parses to the same.
func FuzzParseDigest(f *testing.F) {
	for _, tc := range rfcExamples {
		_, rest := splitAuthorization(tc.header)
		f.Add(rest)
	}
	f.Add(`username="a\"b", realm=r,,nonce=""`)
	f.Fuzz(func(t *testing.T, in string) {
		p, err := parseDigestParams(in)
		if err != nil {
			return
		}
		out := string(p.appendTo(nil))
		q, err := parseDigestParams(out)
		if err != nil {
			t.Fatalf("reparse %q (from %q): %v", out, in, err)
		}
		if p != q {
			t.Fatalf("round trip of %q: %+v != %+v", in, p, q)
		}
	})
}

func BenchmarkDigestVerify(b *testing.B) {
	tc := rfcExamples[0]
	_, rest := splitAuthorization(tc.header)
	alg, _ := modeAlgorithm(tc.mode)
	b.ReportAllocs()
	for b.Loop() {
		p, err := parseDigestParams(rest)
		if err != nil || !alg.verifyResponse(tc.password, &p, "GET") {
			b.Fatal("verify failed")
		}
	}
}
