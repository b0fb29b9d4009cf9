// Package sim simulates CPEs: the devices crrelay wakes. It is the far end
// of the tests, of `make demo` and `make bench`, and a tool for operators
// to check a deployment. It is written from the CPE's side of TR-069 and
// the RFCs, independently of the appliance's own clients, so a test that
// passes against it is not merely self-consistent.
//
// # HTTP connection requests
//
// An HTTPCPE is one connection-request endpoint (TR-069 3.2.2) with its own
// username, password and authentication Mode, behaving like deployed agents
// (PROTOCOL-NOTES §3).
//
// A GET without credentials gets 401 and a challenge, by mode:
//
//	digest-md5          Digest realm="cwmp", qop="auth", nonce="…", opaque="…"
//	digest-md5-noqop    Digest realm="cwmp", nonce="…", opaque="…"
//	digest-md5-sess     Digest realm="cwmp", qop="auth", algorithm=MD5-sess, nonce="…", opaque="…"
//	digest-sha256       Digest realm="cwmp", qop="auth", algorithm=SHA-256, nonce="…", opaque="…"
//	digest-sha256-sess  Digest realm="cwmp", qop="auth", algorithm=SHA-256-sess, nonce="…", opaque="…"
//	basic               Basic realm="cwmp"
//	none                no challenge: every GET is a wake
//
// Then:
//
//   - A right answer is a wake: 204 (or 200) with an empty body, counted,
//     and reported to FleetConfig.OnWake.
//   - A wrong answer gets 401 with a fresh challenge: wrong password, user,
//     realm or scheme, opaque not echoed, algorithm not the one offered,
//     unknown nonce, qop other than "auth" (qop=undefined included), nc not
//     increasing, and in digest-md5-noqop any qop, nc or cnonce at all.
//   - A right answer with an expired nonce gets 401 with stale=true.
//   - A malformed header, a missing parameter, two Authorization headers or
//     a uri other than the request-target get 400 (RFC 2617 3.2.2.5);
//     headers over 8 KiB get 431 from net/http; other methods get 405.
//   - With a rate limit, a CPE past its budget answers every request 503
//     without Retry-After, before looking at credentials.
//
// Options copy awkward agents: CloseAfter401 closes the connection after
// each 401, NoncePerConnection accepts a nonce only on the connection that
// received it.
//
// Nonces are self-validating (an HMAC over the time and connection they
// were issued for), so unanswered challenges cost no memory; answered ones
// are remembered until they expire, to check nc.
//
// # Fleets
//
// A Fleet serves any number of CPEs on one listener, each at /cr/<name>,
// so thousands fit on loopback. NewFleet generates CPEs with modes
// assigned round-robin and credentials derived from a seed; Fleet.Add adds
// CPEs one by one. Fleet.Devices lists what to register with the appliance
// and Fleet.Register registers it through the appliance's API (the
// simulator is a client of the appliance like any CPE, never a back door
// into it). Fleet.Stats and HTTPCPE.Counters count what the CPEs saw.
//
// The STUN (TR-069 Annex G) and XMPP (Annex K) sides of a CPE will join
// the fleet as further CPE kinds beside HTTPCPE.
package sim
