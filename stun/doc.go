// Package stun is crrelay's STUN wire codec for a TR-111 (TR-069 Annex G)
// STUN server, and the codec of the Annex G UDP Connection Request. It is
// pure: no sockets, no server, no registry. It decodes and encodes both
// classic RFC 3489 messages and RFC 5389 ones, and does so without
// allocating, so that the server built on it can answer a few hundred
// thousand requests per CPU-second.
//
// # Why not pion/stun
//
// TR-111 CPE agents speak classic RFC 3489 STUN: a 16-byte random
// transaction id and no magic cookie, which they compare whole in the
// response. pion/stun v2's Message.Decode rejects a message without the
// magic cookie 0x2112A442, and its WriteHeader always writes the cookie,
// so it can neither read these requests nor echo their transaction id.
// It also knows only the RFC 5389 form of MESSAGE-INTEGRITY, not the
// 64-byte padded RFC 3489 form the agents use. This package therefore
// has its own codec for both kinds; the tests use pion/stun as an
// independent peer for RFC 5389 messages (built by one, read by the
// other, integrity and fingerprint checked by both).
//
// # Decoding
//
// A receiving goroutine keeps one Message and calls Decode for every
// packet; Message fields alias the packet (see Message). Decode
// distinguishes the two kinds by the cookie (Message.Classic), validates
// the header and every attribute TLV (RFC 3489 11, RFC 5389 6 and 15),
// checks FINGERPRINT when present, decodes the attributes a TR-111 server
// and its clients need, and collects the comprehension-required ones it
// does not understand in Message.Unknown, for a 420 answer. Errors are
// the sentinels of this package, returned unwrapped, so a server can
// count drops by kind without allocating.
//
// The TR-111 attributes (TR-069 Annex G) are CONNECTION-REQUEST-BINDING
// (0xC001, value "dslforum.org/TR-111 " with a trailing space), reported
// as present and as valid or not, and BINDING-CHANGE (0xC002, empty).
// USERNAME is given trimmed of the spaces agents pad it with.
//
// # MESSAGE-INTEGRITY
//
// Message.CheckIntegrity checks the HMAC-SHA1 with the device's STUN
// password as the key and tells which form matched, so that the response
// can use the same:
//
//   - RFC 3489 11.2.8: the message up to MESSAGE-INTEGRITY, its header
//     length counting MESSAGE-INTEGRITY, zero-padded to a multiple of 64
//     bytes. What TR-111 agents send.
//   - RFC 5389 15.4: the same without padding; the header length ends
//     right after MESSAGE-INTEGRITY, excluding a following FINGERPRINT.
//   - Vovida stun.cxx, from which many CPE STUN clients derive: no
//     padding and a header length of 0, the length being written only
//     after the HMAC.
//
// crypto/hmac needs a new state per key, that is an allocation per
// packet; the HMAC is therefore computed by hand with sha1.Sum over stack
// buffers (RFC 2104), and compared in constant time.
//
// # Encoding
//
// Messages are appended to a caller-owned buffer: StartMessage and the
// Append functions build any message, AppendSuccess and AppendError build
// the responses to a request, AppendBindingRequest builds a TR-111 Binding
// Request as the CPE simulator needs. Responses echo the request's 16
// bytes of transaction id. A classic request is answered with
// MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS (RFC 3489 11.2); an
// RFC 5389 request with XOR-MAPPED-ADDRESS and MAPPED-ADDRESS, and the
// RFC 5780 RESPONSE-ORIGIN and OTHER-ADDRESS in place of SOURCE-ADDRESS
// and CHANGED-ADDRESS, whose types RFC 5389 reserves as
// comprehension-required, plus FINGERPRINT. Error responses carry
// ERROR-CODE as their first attribute, because some agents read it only
// there. The named encoders write values whose length is a multiple of 4
// (strings padded with spaces), as RFC 3489 requires and naive CPE parsers
// assume.
//
// # UDP Connection Requests
//
// UDPConnectionRequest, AppendUDPConnectionRequest,
// ParseUDPConnectionRequest and UDPConnectionRequest.Verify build and
// check the Annex G UDP Connection Request, one datagram:
//
//	GET http://host:port?ts=<s>&id=<n>&un=<user>&cn=<cnonce>&sig=<40 hex> HTTP/1.1\r\n
//	Host: host:port\r\n
//	\r\n
//
// sig is HMAC-SHA1 keyed by the ConnectionRequestPassword over ts, id, un
// and cn concatenated. Annex G asks for "a valid HTTP 1.1 GET message"
// without a message body; HTTP/1.1 ends each line with CRLF and the
// header section with an empty line, so the datagram ends "\r\n\r\n", as
// GenieACS's does. The parser, used by the CPE simulator, accepts what
// lenient agents accept (bare LF, no final empty line) and compares sig
// without regard to case.
package stun
