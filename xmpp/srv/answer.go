package srv

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// Header layout (RFC 1035 4.1.1).
const (
	headerLen = 12
	flagQR    = 1 << 15
	flagRD    = 1 << 8
	flagCD    = 1 << 4 // RFC 4035 3.2.2: copied into the response
)

// result says what answer did with a query, for the metrics.
type result struct {
	drop      drop   // why there is no response; dropNone if there is one
	rcode     int    // of the response
	qtype     string // metric label of the question's type
	truncated bool   // TC set: the answer did not fit
}

// answer returns the response to the query req, packed into out (grown
// if too small), or nil with the reason in result.drop. It is the whole
// of the DNS logic and does no I/O, so that it can be fuzzed. udp
// selects the UDP size limit (RFC 1035 4.2.1, RFC 6891 6.2.3-5); over
// TCP anything fits.
func (z *zone) answer(req []byte, udp bool, out []byte) ([]byte, result) {
	if len(req) < headerLen {
		// Not even an ID to answer to.
		return nil, result{drop: dropShort}
	}
	flags := binary.BigEndian.Uint16(req[2:])
	if flags&flagQR != 0 {
		// A response. Answering it could start a loop between two
		// servers (or reflect someone's traffic at them).
		return nil, result{drop: dropResponse}
	}
	resp := &dns.Msg{MsgHdr: dns.MsgHdr{
		Id:               binary.BigEndian.Uint16(req),
		Response:         true,
		Opcode:           int(flags>>11) & 0xF,
		RecursionDesired: flags&flagRD != 0, // RFC 1035 4.1.1: copied
		CheckingDisabled: flags&flagCD != 0,
	}}
	r := result{qtype: "none"}
	limit := dns.MaxMsgSize
	if udp {
		limit = minUDPSize
	}
	if resp.Opcode != dns.OpcodeQuery {
		// RFC 8906 3.1.3: NOTIFY, UPDATE and unknown opcodes get
		// NOTIMP; the header alone is enough.
		return z.reply(resp, dns.RcodeNotImplemented, nil, nil, limit, out, r)
	}
	// RFC 9619: a query has exactly one question; anything else is a
	// format error, answered with the header alone, which is never
	// larger than the query.
	if binary.BigEndian.Uint16(req[4:]) != 1 {
		return z.reply(resp, dns.RcodeFormatError, nil, nil, limit, out, r)
	}
	var q dns.Msg
	if !wholeQuestion(req) || q.Unpack(req) != nil || len(q.Question) != 1 {
		return z.reply(resp, dns.RcodeFormatError, nil, nil, limit, out, r)
	}
	qopt, ok := queryOPT(&q)
	if !ok {
		return z.reply(resp, dns.RcodeFormatError, nil, nil, limit, out, r)
	}
	question := q.Question[0]
	resp.Question = q.Question
	r.qtype = typeLabel(question.Qtype)

	// RFC 6891 6.2.3-5: the client's EDNS payload size (512 if it gave
	// less, or none), capped by ours.
	var opt *dns.OPT
	if qopt != nil {
		opt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(uint16(z.maxUDP))
		opt.SetDo(qopt.Do()) // RFC 3225 3: the DO bit is copied
		if udp {
			limit = min(max(int(qopt.UDPSize()), minUDPSize), z.maxUDP)
		}
		if qopt.Version() != 0 {
			// RFC 6891 6.1.3: BADVERS, with the version we speak (0).
			return z.reply(resp, dns.RcodeBadVers, nil, opt, limit, out, r)
		}
	}

	switch t := question.Qtype; {
	case question.Qclass != dns.ClassINET:
		// The zone is IN; CHAOS (version.bind) and others are not ours.
		return z.reply(resp, dns.RcodeRefused, nil, opt, limit, out, r)
	case t == dns.TypeNone || t == dns.TypeOPT:
		// RFC 6891 6.1.1: OPT is not a type one can ask for.
		return z.reply(resp, dns.RcodeFormatError, nil, opt, limit, out, r)
	case t == dns.TypeAXFR || t == dns.TypeIXFR:
		// No zone transfers: the zone is the configuration.
		return z.reply(resp, dns.RcodeRefused, nil, opt, limit, out, r)
	case t >= 128 && t <= 255 && t != dns.TypeANY:
		// RFC 6895 3.1: the other Q and meta-types (TKEY, TSIG,
		// MAILA...).
		return z.reply(resp, dns.RcodeNotImplemented, nil, opt, limit, out, r)
	}

	name := question.Name
	if !dns.IsSubDomain(z.apex, name) {
		// Not ours: no recursion, no referral to the root (RFC 8906
		// 3.1.4). Never an open resolver.
		return z.reply(resp, dns.RcodeRefused, nil, opt, limit, out, r)
	}
	resp.Authoritative = true
	key := dns.CanonicalName(name)
	n := z.nodes[key]
	if n == nil && !z.ents[key] {
		// RFC 2308 3: NXDOMAIN with the SOA, whose MINIMUM bounds the
		// negative caching.
		resp.Ns = []dns.RR{z.soaAt(name)}
		return z.reply(resp, dns.RcodeNameError, nil, opt, limit, out, r)
	}
	var ans, extra []dns.RR
	if n != nil {
		switch question.Qtype {
		case dns.TypeA:
			ans = n.a
		case dns.TypeAAAA:
			ans = n.aaaa
		case dns.TypeSRV:
			// RFC 2782: the targets' addresses go in the additional
			// section, which saves the client a round trip.
			ans, extra = n.srv, n.srvExtra
		case dns.TypeSOA:
			if key == z.apex {
				ans = []dns.RR{z.soa}
			}
		case dns.TypeNS:
			if key == z.apex {
				ans, extra = z.ns, z.nsExtra
			}
		case dns.TypeANY:
			// RFC 8482 4.2: one small synthesised record rather than
			// everything, which would make the server an amplifier.
			// Every node has records (the apex has its SOA).
			ans = []dns.RR{&dns.HINFO{Hdr: z.hdr(key, dns.TypeHINFO), Cpu: "RFC8482"}}
		}
	}
	if len(ans) == 0 {
		// RFC 2308 2.2: NODATA, the name exists (perhaps as an empty
		// non-terminal) but has no record of this type.
		resp.Ns = []dns.RR{z.soaAt(name)}
		return z.reply(resp, dns.RcodeSuccess, nil, opt, limit, out, r)
	}
	resp.Answer = withOwner(ans, name)
	return z.reply(resp, dns.RcodeSuccess, extra, opt, limit, out, r)
}

// reply packs resp with rcode, the additional records extra and opt (nil
// if the query had no OPT) into out, within limit bytes. What does not
// fit is dropped in the order of RFC 2181 9: first the additional
// records, which are optional; then, if the answer itself does not fit,
// everything but the question, with TC set, so that the client asks
// again over TCP (RFC 7766 5). A response is thus never larger than it
// must be.
func (z *zone) reply(resp *dns.Msg, rcode int, extra []dns.RR, opt *dns.OPT, limit int, out []byte, r result) ([]byte, result) {
	resp.Rcode = rcode
	resp.Compress = true
	r.rcode = rcode
	resp.Extra = make([]dns.RR, 0, len(extra)+1)
	resp.Extra = append(resp.Extra, extra...)
	if opt != nil {
		resp.Extra = append(resp.Extra, opt)
	}
	b, err := resp.PackBuffer(out)
	if err == nil && len(b) > limit && len(extra) != 0 {
		resp.Extra = resp.Extra[len(extra):]
		b, err = resp.PackBuffer(out)
	}
	if err == nil && len(b) > limit {
		resp.Answer, resp.Ns = nil, nil
		resp.Truncated = true
		r.truncated = true
		b, err = resp.PackBuffer(out)
	}
	if err != nil || len(b) > limit {
		// Not expected: the names were checked and the question came
		// from a packet no larger than the limit.
		return nil, result{drop: dropInternal, qtype: r.qtype}
	}
	return b, r
}

// wholeQuestion reports whether req holds a whole question after its
// header: a name without compression pointer, then a type and a class.
// RFC 1035 4.1.4: a pointer refers to a prior name, and the question's
// is the first of a query. The parser would take a pointer into the
// header, or a question cut before its type, and the question echoed in
// the answer would then be longer than the query's.
func wholeQuestion(req []byte) bool {
	for off := headerLen; off < len(req); {
		l := int(req[off])
		switch {
		case l == 0:
			return off+1+4 <= len(req)
		case l&0xC0 != 0:
			return false
		}
		off += 1 + l
	}
	return false
}

// queryOPT returns the query's OPT record (nil if none), and false if
// the query has OPT records where RFC 6891 6.1.1 forbids them: more than
// one, outside the additional section, or not owned by the root.
func queryOPT(q *dns.Msg) (*dns.OPT, bool) {
	for _, rr := range q.Answer {
		if rr.Header().Rrtype == dns.TypeOPT {
			return nil, false
		}
	}
	for _, rr := range q.Ns {
		if rr.Header().Rrtype == dns.TypeOPT {
			return nil, false
		}
	}
	var opt *dns.OPT
	for _, rr := range q.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil || o.Hdr.Name != "." {
				return nil, false
			}
			opt = o
		}
	}
	return opt, true
}

// soaAt returns the SOA for the authority section of a negative answer
// to name, its owner spelt as the apex is in name so that it compresses
// against the question (and keeps a resolver's 0x20 case pattern).
func (z *zone) soaAt(name string) dns.RR {
	idx := dns.Split(name)
	apex := name[idx[len(idx)-z.labels]:]
	return withOwner([]dns.RR{z.soa}, apex)[0]
}

// withOwner returns rrs with their owner spelt as name (which equals it
// but for case), copying them if it differs: records are shared by every
// query.
func withOwner(rrs []dns.RR, name string) []dns.RR {
	if rrs[0].Header().Name == name {
		return rrs
	}
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
		out[i].Header().Name = name
	}
	return out
}

// typeLabel returns the metric label of a query type: its mnemonic for
// the types a resolver or a client of this zone asks for, "other" for
// the rest, which keeps the label's values few.
func typeLabel(t uint16) string {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeSOA, dns.TypeNS, dns.TypeANY,
		dns.TypeCNAME, dns.TypeTXT, dns.TypeMX, dns.TypePTR, dns.TypeDS, dns.TypeDNSKEY,
		dns.TypeHTTPS, dns.TypeSVCB, dns.TypeCAA, dns.TypeAXFR, dns.TypeIXFR:
		return dns.TypeToString[t]
	}
	return "other"
}
