// Package srv makes the broker of TR-069 Annex K findable: an
// authoritative DNS server for the broker's domain, and a check of what
// a resolver says about it.
//
// # Why
//
// A CPE finds its XMPP server the way RFC 6120 3.2.1 says: it looks up
// the SRV records of _xmpp-client._tcp.<Domain> (RFC 2782), where Domain
// is Device.XMPP.Connection.{i}.Domain, and connects to the targets they
// name, lowest priority first, sharing by weight. That is the default
// Device.XMPP.Connection.{i}.ServerConnectAlgorithm, DNS-SRV. Without
// SRV records a client falls back to the A and AAAA records of the
// domain itself, on port 5222 (RFC 6120 3.2.2). Clients that start with
// TLS rather than STARTTLS look up _xmpps-client._tcp instead (XEP-0368).
//
// # The server
//
// Server answers for one zone, the broker's domain, from its Config: the
// SRV records of _xmpp-client._tcp (and _xmpps-client._tcp when a target
// has a TLSPort), the A and AAAA records of the targets and of the domain
// itself, and the SOA and NS records at the apex that resolvers expect
// of the server a domain is delegated to. Its answers are authoritative
// (AA). Names are matched without regard to case, and answers spell
// names as the question did. A name of the zone without records of the
// type asked gets NODATA (NOERROR, no answer, the SOA in the authority
// section, RFC 2308 2.2), and so does an empty non-terminal such as
// _tcp.<Domain> (RFC 8020); other names inside the zone get NXDOMAIN with
// the SOA; names outside get REFUSED. The server never recurses, so it is
// never an open resolver. An ANY query gets one synthesised HINFO record
// (RFC 8482). Zone transfers are refused.
//
// Queries are checked in the order a reader meets them: a packet shorter
// than a header, or a response (QR set), is dropped without an answer;
// an opcode other than QUERY gets NOTIMP; a packet that does not parse,
// has other than one question (RFC 9619) or has OPT records where RFC
// 6891 6.1.1 forbids them gets FORMERR, with the header alone; an EDNS
// version other than 0 gets BADVERS (RFC 6891 6.1.3); a class other than
// IN gets REFUSED; meta-types other than ANY get NOTIMP.
//
// # Abuse
//
// DNS over UDP can be used to reflect traffic at a forged source, and to
// amplify it. So a response carries only what was asked: additional
// records (the targets' addresses with SRV, RFC 2782) only when they fit,
// compressed names, and no authority records with positive answers. A
// UDP response never exceeds 512 bytes unless the query's EDNS payload
// size allows more, and never Config.MaxUDPSize (1232 by default); an
// answer that does not fit is sent truncated (TC, question only) so that
// the client asks again over TCP (RFC 7766), where a forged source cannot
// follow. FORMERR, NOTIMP, REFUSED and BADVERS responses are never larger
// than the query. Each source
// (an IPv4 address or an IPv6 /64) may ask Config.RatePerSource queries
// per second; the rest are dropped.
//
// # Sockets
//
// Serve and ServeTCP take sockets that are already bound (so that tests
// use 127.0.0.1:0 and systemd socket activation works) and return nil
// when ctx is cancelled. A UDP socket bound to a wildcard address learns
// each query's destination (IP_PKTINFO) and answers from it.
//
// # Check
//
// Check asks a resolver, as a CPE's would be asked, for the SRV records,
// resolves their targets, and says whether they lead to this appliance's
// broker addresses; Report.Write prints the result for `crrelay check
// xmpp`. It reports targets that are aliases (CNAME, which RFC 2782
// forbids and some clients do not follow), ports that do not match,
// missing records (and then checks the fallback), NXDOMAIN, SERVFAIL and
// timeouts.
//
// # Metrics
//
// crrelay_dns_queries_total{rcode,type}, crrelay_dns_dropped_total{reason}
// (short, response, rate_limited, bad_source, tcp_limit, internal,
// send_error), crrelay_dns_truncated_total, crrelay_dns_read_errors_total.
// No label holds a name or an address.
package srv
