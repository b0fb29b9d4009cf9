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
// # STUN CPEs and UDP connection requests
//
// A STUNCPE is the TR-111 side of a CPE (TR-069 Annex G), behaving like
// deployed agents (PROTOCOL-NOTES §1). It owns one UDP socket, as a real
// CPE does: its Binding Requests leave from it, so its NAT mapping is the
// address the relay learns, and UDP connection requests arrive on it.
//
//   - Binding Requests are classic RFC 3489 (16 random bytes of
//     transaction id, no magic cookie) with USERNAME padded with spaces
//     and CONNECTION-REQUEST-BINDING; RFC5389 makes an RFC 5389 client.
//   - The first carries no MESSAGE-INTEGRITY. After a 401 the CPE asks
//     again at once with it, HMAC-SHA1 keyed by the STUNPassword over the
//     message zero-padded to 64 bytes (RFC 3489 11.2.8), and keeps it.
//   - ERROR-CODE is read only as the first attribute. 431 and other
//     errors make it back off; responses must echo all 16 bytes of the
//     transaction id, and a wrong MESSAGE-INTEGRITY voids a response.
//   - One request per Keepalive, retransmitted while unanswered (RFC 3489
//     9.3 timers); when the mapped address changes, the next request,
//     sent at once, carries BINDING-CHANGE.
//   - A UDP connection request is accepted when its sig is right (hex in
//     either case), un is the ConnectionRequestUsername, its id is new
//     and its ts greater than the last accepted one: of two requests in
//     one second the second is dropped, and an ACS's retransmitted copies
//     count as duplicates. Nothing is ever answered.
//
// STUNCPE.Run keeps a binding and listens; STUNCPE.BindOnce does one
// exchange. STUNCPE.Counters counts requests, answers, errors, binding
// changes, and connection requests accepted and rejected by reason.
// NewSTUNFleet generates STUN CPEs with credentials derived from a seed,
// each on its own socket when STUNFleet.Run runs them; STUNFleet.Devices
// and STUNFleet.Register give the appliance what it needs to know.
//
// The XMPP (Annex K) side of a CPE will join the simulator as a further
// CPE kind.
package sim
