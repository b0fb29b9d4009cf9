package stun

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// UDPConnectionRequest is a TR-069 Annex G UDP Connection Request: the
// datagram an ACS (here the relay, from its STUN socket) sends to a CPE's
// UDPConnectionRequestAddress to make it open a CWMP session. It is an
// HTTP/1.1 GET with no body, sent once per datagram:
//
//	GET http://203.0.113.7:51234?ts=1120673700&id=1234&un=CPE57689&cn=XTGRWIPC6D3IPXS3&sig=<40 hex> HTTP/1.1\r\n
//	Host: 203.0.113.7:51234\r\n
//	\r\n
//
// Annex G asks for "a valid HTTP 1.1 GET message" with no message body,
// an absolute Request-URI with an empty path, and the query encoded as
// application/x-www-form-urlencoded. A valid HTTP/1.1 request ends every
// line with CRLF and ends its header section with an empty line, so the
// datagram ends with "\r\n\r\n" (GenieACS sends the same bytes). The
// parser is more lenient, as CPE agents are: bare LF line ends, a missing
// final empty line and a "/" path are accepted.
type UDPConnectionRequest struct {
	// Authority is host:port of the Request-URI, the CPE's
	// UDPConnectionRequestAddress (the port may be left out only if it is
	// 80). Append also writes it as the Host header.
	Authority string
	// Host is the Host header, filled by ParseUDPConnectionRequest.
	Host string
	// Timestamp is ts, the Unix time in seconds when the request was made.
	// It is 64 bits so that a parser sees an ACS that wrongly sends
	// milliseconds; deployed agents read it into 32 bits.
	Timestamp uint64
	// ID is id, the message id: the same for retransmissions of one
	// request, different for each new request.
	ID uint32
	// Username is un, the CPE's ConnectionRequestUsername.
	Username string
	// CNonce is cn, a random client nonce.
	CNonce string
	// Signature is sig as received: 40 hex digits, any case.
	// AppendUDPConnectionRequest computes it and ignores this field.
	Signature string
}

// UDPConnectionRequestSignature returns sig for a UDP Connection Request:
// HMAC-SHA1 keyed by the ConnectionRequestPassword over the decimal ts,
// the decimal id, un and cn concatenated, as 40 lower-case hex digits.
func UDPConnectionRequestSignature(password []byte, ts uint64, id uint32, username, cnonce string) string {
	mac := udpConnReqMAC(password, ts, id, username, cnonce)
	return hex.EncodeToString(mac[:])
}

func udpConnReqMAC(password []byte, ts uint64, id uint32, username, cnonce string) [sha1.Size]byte {
	var text []byte
	text = strconv.AppendUint(text, ts, 10)
	text = strconv.AppendUint(text, uint64(id), 10)
	text = append(text, username...)
	text = append(text, cnonce...)
	h := hmac.New(sha1.New, password)
	h.Write(text)
	var mac [sha1.Size]byte
	h.Sum(mac[:0])
	return mac
}

// AppendUDPConnectionRequest appends to dst the datagram for r, signed
// with password, and returns it. un and cn are query-escaped when they
// hold characters that need it (the signature covers the unescaped
// values); the usual letters, digits and "-._~" go as they are, since
// some agents do not unescape.
func AppendUDPConnectionRequest(dst []byte, r *UDPConnectionRequest, password []byte) []byte {
	mac := udpConnReqMAC(password, r.Timestamp, r.ID, r.Username, r.CNonce)
	dst = append(dst, "GET http://"...)
	dst = append(dst, r.Authority...)
	dst = append(dst, "?ts="...)
	dst = strconv.AppendUint(dst, r.Timestamp, 10)
	dst = append(dst, "&id="...)
	dst = strconv.AppendUint(dst, uint64(r.ID), 10)
	dst = append(dst, "&un="...)
	dst = append(dst, url.QueryEscape(r.Username)...)
	dst = append(dst, "&cn="...)
	dst = append(dst, url.QueryEscape(r.CNonce)...)
	dst = append(dst, "&sig="...)
	dst = hex.AppendEncode(dst, mac[:])
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, r.Authority...)
	return append(dst, "\r\n\r\n"...)
}

// IsUDPConnectionRequest reports whether datagram looks like a UDP
// Connection Request rather than STUN: it starts with "GET ". A STUN
// message cannot ('G' has a top bit set, RFC 5389 6), so a CPE reading
// both from one socket can tell them apart by this test.
func IsUDPConnectionRequest(datagram []byte) bool {
	return bytes.HasPrefix(datagram, []byte("GET "))
}

// ParseUDPConnectionRequest parses a UDP Connection Request datagram, as
// a CPE does on its connection-request socket. It checks the form (GET,
// an http absolute URI, HTTP/1.x, the five query fields once each, ts
// and id decimal, sig 40 hex digits, Content-Length zero if present) but
// not the signature: see Verify. Errors wrap ErrUDPConnReqMalformed.
//
// What a CPE agent then checks is up to the caller: un equal to its
// ConnectionRequestUsername, id not seen before (a repeated id is a
// retransmission), and, as one common agent does, ts strictly greater
// than the last accepted one and within 32 bits.
func ParseUDPConnectionRequest(datagram []byte) (UDPConnectionRequest, error) {
	var r UDPConnectionRequest
	s := string(datagram)
	line, rest, _ := cutLine(s)
	method, line, ok1 := strings.Cut(line, " ")
	target, version, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || method != "GET" {
		return r, malformed("request line is not GET <uri> <version>")
	}
	if !strings.HasPrefix(version, "HTTP/1.") {
		return r, malformed("version %q is not HTTP/1.x", version)
	}
	if len(target) < 7 || !strings.EqualFold(target[:7], "http://") {
		return r, malformed("Request-URI is not an absolute http URI")
	}
	authority, query, _ := strings.Cut(target[7:], "?")
	authority, path, _ := strings.Cut(authority, "/")
	if authority == "" || path != "" {
		return r, malformed("Request-URI has no authority or a non-empty path")
	}
	r.Authority = authority
	if err := r.parseQuery(query); err != nil {
		return r, err
	}
	for rest != "" {
		line, rest, _ = cutLine(rest)
		if line == "" {
			break // end of the header section; a body is ignored
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return r, malformed("header line without colon")
		}
		value = strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Host"):
			r.Host = value
		case strings.EqualFold(name, "Content-Length") && value != "0":
			return r, malformed("Content-Length %q is not 0", value)
		}
	}
	return r, nil
}

// queryFields are the query fields of a UDP Connection Request.
var queryFields = [...]string{"ts", "id", "un", "cn", "sig"}

func (r *UDPConnectionRequest) parseQuery(query string) error {
	var seen [len(queryFields)]bool
	for query != "" {
		var field string
		field, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(field, "=")
		i := slices.Index(queryFields[:], k)
		if i < 0 {
			continue // not one of ours: ignored
		}
		if seen[i] {
			return malformed("query field %q repeated", k)
		}
		seen[i] = true
		v, err := url.QueryUnescape(v)
		if err != nil {
			return malformed("query field %q: %v", k, err)
		}
		switch k {
		case "ts":
			r.Timestamp, err = strconv.ParseUint(v, 10, 64)
		case "id":
			var id uint64
			id, err = strconv.ParseUint(v, 10, 32)
			r.ID = uint32(id)
		case "un":
			r.Username = v
		case "cn":
			r.CNonce = v
		case "sig":
			if len(v) != 2*sha1.Size {
				return malformed("sig is not 40 hex digits")
			}
			_, err = hex.DecodeString(v)
			r.Signature = v
		}
		if err != nil {
			return malformed("query field %q: %v", k, err)
		}
	}
	for i, ok := range seen {
		if !ok {
			return malformed("query field %q missing", queryFields[i])
		}
	}
	return nil
}

// Verify checks r.Signature against password, ignoring case, as CPE
// agents do. It returns ErrUDPConnReqSignature on a mismatch. ts and id
// are hashed in canonical decimal, as an agent that parsed them into
// integers does.
func (r *UDPConnectionRequest) Verify(password []byte) error {
	got, err := hex.DecodeString(r.Signature)
	if err != nil || len(got) != sha1.Size {
		return ErrUDPConnReqSignature
	}
	want := udpConnReqMAC(password, r.Timestamp, r.ID, r.Username, r.CNonce)
	if !hmac.Equal(got, want[:]) {
		return ErrUDPConnReqSignature
	}
	return nil
}

// cutLine splits s after its first line, which ends with CRLF or LF.
func cutLine(s string) (line, rest string, found bool) {
	line, rest, found = strings.Cut(s, "\n")
	return strings.TrimSuffix(line, "\r"), rest, found
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUDPConnReqMalformed}, args...)...)
}
