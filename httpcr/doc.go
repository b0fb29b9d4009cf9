// Package httpcr sends TR-069 HTTP connection requests: the GET an ACS
// makes on a CPE's ConnectionRequestURL to make it open a CWMP session. It
// is a pure client: it knows no registry and no API, and keeps no state
// between requests other than concurrency accounting.
//
// # The exchange
//
// Do sends "GET <path?query> HTTP/1.1" with Host and "User-Agent: crrelay",
// never with credentials. If the CPE answers 401, Do picks the strongest
// challenge it supports and sends the authenticated request: on the same
// connection when the CPE keeps it open (some CPEs bind the nonce to the
// connection), on a new one when the CPE announced Connection: close, sent
// a body too large to skip, or closed the connection silently. Challenges
// are never cached and connections are never reused across requests. If
// the authenticated request draws a 401 with stale=true, Do retries once
// with the new nonce. Redirects are not followed. Response bodies are read
// up to Config.MaxBodyBytes and discarded; the connection is closed after
// that.
//
// The exchange uses net.Conn and http.ReadResponse rather than
// net/http.Client, because connection reuse must follow the CPE's behaviour
// above rather than a connection pool's.
//
// # Authentication
//
// Digest (RFC 7616, RFC 2617) with MD5, MD5-sess, SHA-256, SHA-256-sess,
// SHA-512-256 and SHA-512-256-sess. Of the challenges in all
// WWW-Authenticate fields Do takes the strongest, SHA-512-256 > SHA-256 >
// MD5 > Basic, the CPE's first among equals. With qop "auth" (or
// "auth-int" over the empty body when that is all the CPE offers) the
// request carries qop, nc=00000001 and a random cnonce; without qop (RFC
// 2069 style, common in CPEs) it carries none of them. opaque is echoed,
// userhash is honoured. Basic (RFC 7617) is used only when Config.AllowBasic
// or Request.AllowBasic says so, because it sends the password in clear
// text; a CPE that offers only Basic otherwise gives AuthFailed.
//
// # Outcomes
//
//   - Delivered: the CPE answered 2xx.
//   - AuthFailed: a 401 after authenticating, a 401 without a usable
//     challenge, or a 401 when the device has no credentials.
//   - Throttled: 503. The CPE is online and rate-limiting connection
//     requests.
//   - Unreachable: DNS failure, or the TCP connect failed (refused, no
//     route, or no answer within Config.ConnectTimeout).
//   - Timeout: the request's deadline (Config.Timeout, or the context's if
//     earlier) passed, including while waiting for a concurrency slot.
//   - Error: anything else: other statuses (HTTPStatus set), redirects,
//     malformed responses, TLS failures, bad URLs and policy denials
//     (Result.Err wraps ErrDenied).
//
// # Destination policy
//
// A relay that GETs URLs it is given is an SSRF proxy unless it checks
// where they lead (PROTOCOL-NOTES 4). A Policy holds allowed and denied
// prefixes; an address is checked after IPv4-mapped IPv6 is unmapped and
// any zone dropped, by these rules in order:
//
//  1. An address in a denied prefix is denied. Explicit deny always wins.
//  2. An address in an allowed prefix is allowed.
//  3. If there are allowed prefixes, any other address is denied.
//  4. Unspecified (0.0.0.0/8, ::), loopback, link-local, multicast and
//     broadcast addresses, and the appliance's own interface addresses
//     (listed when the Policy is made), are denied.
//  5. Anything else is allowed: private ranges too, because reaching CPE
//     management addresses the ACS cannot reach is what a DMZ relay is for.
//
// Do checks the policy on the address it actually connects to, after its
// own resolution and again in the dialer's Control hook, so a host name
// that resolves (or rebinds) to a forbidden address is refused at dial
// time. CheckURL lets the API reject bad or forbidden URLs at registration.
//
// # Limits
//
// Config.MaxConcurrent bounds requests in flight, Config.MaxPerHost those
// to one destination IP; waiting for a slot counts against the deadline.
// Response headers are capped at 16 KiB.
package httpcr
