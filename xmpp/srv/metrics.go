package srv

import (
	"fmt"
	"strconv"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// drop names why a query got no response.
type drop uint8

const (
	dropNone        drop = iota
	dropShort            // shorter than a DNS header
	dropResponse         // QR set: a response, not a query
	dropRateLimited      // over Config.RatePerSource
	dropBadSource        // source port 0, or an unusable address
	dropTCPLimit         // a TCP connection over Config.MaxTCPConns
	dropInternal         // the response could not be packed
	dropSendError        // the system refused to send the response

	nDrops
)

var dropLabels = [nDrops]string{
	dropShort:       "short",
	dropResponse:    "response",
	dropRateLimited: "rate_limited",
	dropBadSource:   "bad_source",
	dropTCPLimit:    "tcp_limit",
	dropInternal:    "internal",
	dropSendError:   "send_error",
}

type metrics struct {
	queries   *prometheus.CounterVec
	dropped   [nDrops]prometheus.Counter
	truncated prometheus.Counter
	readErrs  prometheus.Counter
}

// newMetrics builds the metrics and registers them with reg, if not nil.
// No label holds a name or an address: query types and rcodes are
// reduced to a few values.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_dns_queries_total",
			Help: "DNS queries answered, by response code and query type (\"none\" when the query could not be read, \"other\" for uncommon types).",
		}, []string{"rcode", "type"}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crrelay_dns_truncated_total",
			Help: "UDP responses sent truncated (TC) because the answer exceeded the client's size; the client retries over TCP.",
		}),
		readErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crrelay_dns_read_errors_total",
			Help: "Failed reads on DNS sockets (transient errors are survived).",
		}),
	}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_dns_dropped_total",
		Help: "DNS queries (or TCP connections, for tcp_limit) dropped without a response, by reason.",
	}, []string{"reason"})
	for d := dropShort; d < nDrops; d++ {
		m.dropped[d] = dropped.WithLabelValues(dropLabels[d])
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.queries, dropped, m.truncated, m.readErrs}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, c := range cs[:i] {
				reg.Unregister(c)
			}
			return nil, fmt.Errorf("srv: registering metrics: %w", err)
		}
	}
	return m, nil
}

// count records the result of one query.
func (m *metrics) count(r result) {
	if r.drop != dropNone {
		m.dropped[r.drop].Inc()
		return
	}
	m.queries.WithLabelValues(rcodeLabel(r.rcode), r.qtype).Inc()
	if r.truncated {
		m.truncated.Inc()
	}
}

// rcodeLabel returns the mnemonic of an rcode this server sends.
func rcodeLabel(rcode int) string {
	if rcode == dns.RcodeBadVers {
		return "BADVERS" // RcodeToString says BADSIG, which shares the value
	}
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return strconv.Itoa(rcode)
}
