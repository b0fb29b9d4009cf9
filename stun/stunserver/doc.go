// Package stunserver is crrelay's TR-111 STUN server (TR-069 Annex G,
// formerly TR-111 part 2) and the sender of UDP connection requests. The
// wire format is package stun's; this package owns the sockets.
//
// # Why one package does both
//
// A CPE behind a NAT keeps a UDP mapping open by sending Binding
// Requests to the STUN server. A UDP connection request crosses an
// address- or port-restricted NAT (or a symmetric one) only if it comes
// from the very address and port those Binding Requests went to. So the
// connection request must leave from the STUN server's own socket, and
// this package sends both from the same sockets. The binding it records
// for a CPE says which local address that is (registry.UDPBinding.Local);
// SendConnectionRequest finds the socket for it.
//
// # Sockets
//
// Serve takes a bound *net.UDPConn (listening is the caller's, so tests
// bind 127.0.0.1:0 and systemd socket activation works) and runs one
// goroutine for it. ListenReusePort opens several sockets on one address
// with SO_REUSEPORT so that one Serve per socket spreads the load over
// cores. Each goroutine reads up to Config.BatchSize packets per
// recvmmsg(2), answers them, and writes the answers with one sendmmsg(2);
// its message, buffers and counters are reused, so the hot path does not
// allocate (see BenchmarkHandle) and costs no atomic operation per
// packet.
//
// A socket bound to 0.0.0.0 or :: receives for every local address. It
// turns on IP_PKTINFO / IPV6_PKTINFO (ip(7), ipv6(7)) to learn each
// packet's destination, answers from that address, records it as the
// binding's Local, and sends connection requests from it with the same
// control message. Packets to a broadcast or multicast destination are
// dropped.
//
// # Requests
//
// One port serves classic RFC 3489 clients (no magic cookie; the 16-byte
// transaction id is echoed whole) and RFC 5389 ones. Answers carry
// MAPPED-ADDRESS and SOURCE-ADDRESS (RFC 3489 11.2), XOR-MAPPED-ADDRESS
// and RESPONSE-ORIGIN for RFC 5389 clients, and CHANGED-ADDRESS (or
// OTHER-ADDRESS, RFC 5780 7.4) when an alternate address is configured.
// Checks run in the order of RFC 3489 8.2.1 and RFC 5389 10.1.2 and
// 7.3.1: authentication, then unknown comprehension-required attributes
// (420 with UNKNOWN-ATTRIBUTES), then the request proper. Error
// responses carry ERROR-CODE first, where some CPE agents look for it,
// and go to the request's source only.
//
// MESSAGE-INTEGRITY (Config.Integrity) is keyed by the device's STUN
// password, found in the registry by USERNAME (trimmed of the spaces
// agents pad it with); both the RFC 3489 form (zero-padded to 64 bytes)
// and the RFC 5389 one are accepted, and the response is signed in the
// form that matched. The registry is consulted only when a request
// carries MESSAGE-INTEGRITY or CONNECTION-REQUEST-BINDING.
//
//	                          off       optional     required
//	no MI, device w/o password answered answered     401
//	no MI, device w/ password answered  401          401
//	MI, good                  answered  signed       signed
//	MI, bad HMAC              answered  431          431
//	MI, unknown user          answered  431          431
//	MI, user has no password  answered  431          431
//	MI, no USERNAME           answered  432          432
//
// "answered" and "signed" requests record their binding (if they carry
// CONNECTION-REQUEST-BINDING); errors record nothing. Under off the
// response is never signed and no password is looked up.
//
// Under optional, a request carrying CONNECTION-REQUEST-BINDING whose
// USERNAME belongs to a device with a STUN password must be signed:
// otherwise anyone who knows or guesses the username could move the
// device's binding to an address of their own and receive its connection
// requests (and, with them, material for guessing the connection-request
// password offline). Optional stays optional for devices without one.
//
// So an unknown username creates state (a pending binding, kept by the
// registry, bounded and expiring, until the ACS registers the device)
// only when it was not asked to prove anything: under off, and under
// optional without MESSAGE-INTEGRITY. Under required nothing that cannot
// be authenticated reaches the registry. RFC 3489 would answer 430 to an
// unknown username; that asks for a new shared secret over TLS, which no
// TR-111 agent does, so it gets 431.
//
// A request with CONNECTION-REQUEST-BINDING records the binding (Mapped =
// the request's source, Local = the address it was sent to, plus
// BINDING-CHANGE). The value must be "dslforum.org/TR-111 "; one that
// differs only by its padding (a NUL, or none) or case is accepted, since
// agents get the padding wrong; any other value is treated as absent:
// answered, not recorded, counted. A 400 instead could make an agent give
// up STUN, and with it the NAT keepalive. Binding Requests without the
// attribute (NAT-type and lifetime discovery) are answered and record
// nothing.
//
// RESPONSE-ADDRESS (RFC 3489 11.2.2) is honoured only when its IP is the
// source's: CPEs use it to probe their own binding lifetime from a
// second port, while any other target would make the server a reflector
// (RFC 3489 12.1). Others are refused with 400, to the source, and
// counted. A classic answer sent to RESPONSE-ADDRESS carries
// REFLECTED-FROM (RFC 3489 11.2.11).
//
// CHANGE-REQUEST (RFC 3489 11.2.4, RFC 5780 7.2) is honoured when
// Config.Primary and Config.Alternate provide the change asked for and a
// served socket can send from the changed address; otherwise the answer
// is 420 with UNKNOWN-ATTRIBUTES listing CHANGE-REQUEST, as RFC 5780 6.1
// prescribes for a server without an alternate address (to an RFC 5389
// server the attribute is unknown anyway). A CHANGE-REQUEST with no flag
// set asks for nothing and is answered normally (clients derived from
// Vovida's stun.cxx always send one).
//
// # Abuse
//
// Malformed, truncated, oversized (over stun.MaxMessageSize) and
// non-request packets, requests of methods other than Binding, and packets
// from unusable sources (port 0, broadcast, multicast) are dropped
// without an answer and counted by reason. A response never exceeds 512
// bytes nor 10 times its request (in practice at most 8 times, for a
// 20-byte request). Config.RatePerSource limits each source (an IPv4
// address, or an IPv6 /64) with a token bucket in a fixed-size table.
//
// # UDP connection requests
//
// SendConnectionRequest builds the Annex G datagram (ts in Unix seconds,
// a random id and cn, sig = HMAC-SHA1 keyed by the connection-request
// password) with package stun, sends it from the socket of the binding's
// Local, and sends Config.Retransmits identical copies later from a
// goroutine that the Serve of that socket waits for (with a grace
// period, after which the copies are cancelled). Because CPE agents
// require ts to increase strictly, two distinct requests never go to one
// device within a second: a second call is coalesced with the first.
//
// # Metrics
//
// crrelay_stun_packets_total, _dropped_total{reason},
// _responses_total{code}, _response_address_total{result},
// _change_request_total{result}, _integrity_total{result},
// _connection_request_binding_total{value}, _bindings_total{outcome},
// _send_errors_total, _udp_cr_sent_total, _udp_cr_coalesced_total,
// _udp_cr_retransmits_total, _udp_cr_errors_total{reason}. No label
// holds a device id or an address.
package stunserver
