package stun

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The PROTOCOL-NOTES 1 vector: key "secret", text
// "11206737001234CPE57689XTGRWIPC6D3IPXS3".
const (
	vecTS       = 1120673700
	vecID       = 1234
	vecUser     = "CPE57689"
	vecCNonce   = "XTGRWIPC6D3IPXS3"
	vecPassword = "secret"
	vecSig      = "fda44088e52a347ce49d6312521d5621eeb40037"
	vecDatagram = "GET http://203.0.113.7:51234?ts=1120673700&id=1234&un=CPE57689&cn=XTGRWIPC6D3IPXS3" +
		"&sig=fda44088e52a347ce49d6312521d5621eeb40037 HTTP/1.1\r\n" +
		"Host: 203.0.113.7:51234\r\n" +
		"\r\n"
)

func TestUDPConnectionRequestSignature(t *testing.T) {
	h := hmac.New(sha1.New, []byte(vecPassword))
	h.Write([]byte("11206737001234CPE57689XTGRWIPC6D3IPXS3"))
	if got := hex.EncodeToString(h.Sum(nil)); got != vecSig {
		t.Fatalf("the vector itself: %s, want %s", got, vecSig)
	}
	if got := UDPConnectionRequestSignature([]byte(vecPassword), vecTS, vecID, vecUser, vecCNonce); got != vecSig {
		t.Errorf("UDPConnectionRequestSignature = %s, want %s", got, vecSig)
	}
}

func TestAppendUDPConnectionRequest(t *testing.T) {
	r := UDPConnectionRequest{Authority: "203.0.113.7:51234", Timestamp: vecTS, ID: vecID, Username: vecUser,
		CNonce: vecCNonce, Signature: "ignored"}
	prefix := []byte("keep")
	got := AppendUDPConnectionRequest(prefix, &r, []byte(vecPassword))
	if string(got) != "keep"+vecDatagram {
		t.Errorf("got\n%q\nwant\n%q", got, "keep"+vecDatagram)
	}
}

func TestParseUDPConnectionRequest(t *testing.T) {
	vec := UDPConnectionRequest{Authority: "203.0.113.7:51234", Host: "203.0.113.7:51234", Timestamp: vecTS,
		ID: vecID, Username: vecUser, CNonce: vecCNonce, Signature: vecSig}
	tests := []struct {
		name     string
		datagram string
		want     UDPConnectionRequest
		password string // Verify must pass with it
	}{
		{"Annex G example", vecDatagram, vec, vecPassword},
		{"upper-case sig", strings.Replace(vecDatagram, vecSig, strings.ToUpper(vecSig), 1),
			with(vec, func(r *UDPConnectionRequest) { r.Signature = strings.ToUpper(vecSig) }), vecPassword},
		{"bare LF, no final empty line", strings.ReplaceAll(strings.TrimSuffix(vecDatagram, "\r\n"), "\r\n", "\n"), vec, vecPassword},
		{"HTTP scheme, slash path, extra field, Content-Length 0",
			"GET HTTP://203.0.113.7:51234/?ts=1120673700&id=1234&x=y&un=CPE57689&cn=XTGRWIPC6D3IPXS3&sig=" + vecSig +
				" HTTP/1.1\r\nhost: 203.0.113.7:51234\r\nContent-Length: 0\r\n\r\n", vec, vecPassword},
		{"no Host header", "GET http://203.0.113.7:51234?ts=1120673700&id=1234&un=CPE57689&cn=XTGRWIPC6D3IPXS3&sig=" +
			vecSig + " HTTP/1.1\r\n\r\n", with(vec, func(r *UDPConnectionRequest) { r.Host = "" }), vecPassword},
		{"timestamp in milliseconds (an ACS bug) still parses", string(AppendUDPConnectionRequest(nil,
			&UDPConnectionRequest{Authority: "h:1", Timestamp: 1120673700123, ID: 7, Username: "u", CNonce: "c"}, []byte("p"))),
			UDPConnectionRequest{Authority: "h:1", Host: "h:1", Timestamp: 1120673700123, ID: 7, Username: "u", CNonce: "c",
				Signature: UDPConnectionRequestSignature([]byte("p"), 1120673700123, 7, "u", "c")}, "p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUDPConnectionRequest([]byte(tt.datagram))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			if err := got.Verify([]byte(tt.password)); err != nil {
				t.Errorf("Verify: %v", err)
			}
			if err := got.Verify([]byte(tt.password + "x")); err != ErrUDPConnReqSignature {
				t.Errorf("Verify(wrong password) = %v", err)
			}
		})
	}
}

func with(r UDPConnectionRequest, f func(*UDPConnectionRequest)) UDPConnectionRequest {
	f(&r)
	return r
}

// TestUDPConnectionRequestRoundTrip: Append then Parse then Verify, with
// values that need escaping and an IPv6 authority.
func TestUDPConnectionRequestRoundTrip(t *testing.T) {
	for _, r := range []UDPConnectionRequest{
		{Authority: "[2001:db8::7]:7547", Timestamp: 1700000000, ID: 4294967295, Username: "cpe 01&x=y+z", CNonce: "a/b?c"},
		{Authority: "192.0.2.1", Timestamp: 0, ID: 0, Username: "", CNonce: ""},
		{Authority: "cpe.example:51234", Timestamp: 1700000001, ID: 1, Username: "ünïcode", CNonce: "0123456789abcdef"},
	} {
		pw := []byte("conn-req-pass")
		b := AppendUDPConnectionRequest(nil, &r, pw)
		if !IsUDPConnectionRequest(b) {
			t.Errorf("IsUDPConnectionRequest(%q) = false", b)
		}
		got, err := ParseUDPConnectionRequest(b)
		if err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		if got.Authority != r.Authority || got.Host != r.Authority || got.Timestamp != r.Timestamp ||
			got.ID != r.ID || got.Username != r.Username || got.CNonce != r.CNonce {
			t.Errorf("got %+v, want %+v", got, r)
		}
		if err := got.Verify(pw); err != nil {
			t.Errorf("%q: Verify: %v", b, err)
		}
	}
}

func TestParseUDPConnectionRequestErrors(t *testing.T) {
	q := "?ts=1120673700&id=1234&un=CPE57689&cn=XTGRWIPC6D3IPXS3&sig=" + vecSig
	get := func(uri string) string { return "GET " + uri + " HTTP/1.1\r\nHost: h\r\n\r\n" }
	for name, datagram := range map[string]string{
		"empty":                  "",
		"STUN":                   string(tr111Plain),
		"POST":                   "POST http://h:1" + q + " HTTP/1.1\r\n\r\n",
		"no version":             "GET http://h:1" + q + "\r\n\r\n",
		"HTTP/2":                 "GET http://h:1" + q + " HTTP/2\r\n\r\n",
		"https":                  get("https://h:1" + q),
		"relative URI":           get("/" + q),
		"no authority":           get("http://" + q),
		"path":                   get("http://h:1/cr" + q),
		"no query":               get("http://h:1"),
		"sig missing":            get("http://h:1?ts=1&id=2&un=u&cn=c"),
		"ts missing":             get("http://h:1?id=2&un=u&cn=c&sig=" + vecSig),
		"sig 39 digits":          get("http://h:1?ts=1&id=2&un=u&cn=c&sig=" + vecSig[1:]),
		"sig not hex":            get("http://h:1?ts=1&id=2&un=u&cn=c&sig=" + strings.Repeat("g", 40)),
		"ts not a number":        get("http://h:1?ts=x1&id=2&un=u&cn=c&sig=" + vecSig),
		"ts negative":            get("http://h:1?ts=-1&id=2&un=u&cn=c&sig=" + vecSig),
		"id beyond 32 bits":      get("http://h:1?ts=1&id=4294967296&un=u&cn=c&sig=" + vecSig),
		"id repeated":            get("http://h:1?ts=1&id=2&id=3&un=u&cn=c&sig=" + vecSig),
		"bad escape":             get("http://h:1?ts=1&id=2&un=%zz&cn=c&sig=" + vecSig),
		"Content-Length not 0":   "GET http://h:1" + q + " HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody",
		"header line, no colon":  "GET http://h:1" + q + " HTTP/1.1\r\nHost h\r\n\r\n",
		"space-separated target": "GET http://h:1" + q + " x HTTP/1.1\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseUDPConnectionRequest([]byte(datagram))
			if !errors.Is(err, ErrUDPConnReqMalformed) {
				t.Errorf("err = %v, want ErrUDPConnReqMalformed", err)
			}
		})
	}
}

func TestVerifyBadSignature(t *testing.T) {
	for _, sig := range []string{"", "zz", vecSig[:38], strings.Repeat("0", 40)} {
		r := UDPConnectionRequest{Timestamp: vecTS, ID: vecID, Username: vecUser, CNonce: vecCNonce, Signature: sig}
		if err := r.Verify([]byte(vecPassword)); err != ErrUDPConnReqSignature {
			t.Errorf("Verify with sig %q = %v", sig, err)
		}
	}
}
