package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/registry"
	"golang.org/x/sync/errgroup"
)

// statusOrder lists wake statuses in the order counts are printed:
// successes first, then failures roughly from the CPE's fault to ours.
var statusOrder = []string{
	"delivered", "sent", "confirmed",
	"auth_failed", "throttled", "refused", "offline", "unreachable", "timeout", "error",
	"not_found", "unknown",
}

// reached reports whether a wake status means the connection request got
// out: acknowledged (delivered, confirmed) or sent over UDP.
func reached(status string) bool {
	return status == "delivered" || status == "sent" || status == "confirmed"
}

// reachedCount sums the counts of the statuses that reached the device.
func reachedCount(counts map[string]int) int {
	n := 0
	for st, c := range counts {
		if reached(st) {
			n += c
		}
	}
	return n
}

// formatCounts formats counts as "delivered 700, sent 300", in
// statusOrder, other statuses last in alphabetical order; "-" if none.
func formatCounts(counts map[string]int) string {
	rank := func(s string) int {
		if i := slices.Index(statusOrder, s); i >= 0 {
			return i
		}
		return len(statusOrder)
	}
	keys := slices.SortedFunc(maps.Keys(counts), func(a, b string) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b))
	})
	var parts []string
	for _, k := range keys {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// deviceResult is what the demo learnt of one device's campaign wake.
type deviceResult struct {
	id        string
	transport string               // the transport its simulated CPE speaks
	last      *registry.WakeRecord // the device's last wake record; nil if it has none
	wokeAt    time.Time            // when its CPE accepted the request; zero if never
}

func (r deviceResult) status() string {
	if r.last == nil {
		return "no wake record"
	}
	return r.last.Status
}

// fetchResults reads every device through GET /v1/devices/{id}, at most
// concurrency at a time, and pairs its last wake record with the time its
// CPE was woken.
func fetchResults(ctx context.Context, c *apiclient.Client, f *fleets, woke map[string]time.Time, concurrency int) ([]deviceResult, error) {
	var ids []string
	for _, t := range transports {
		ids = append(ids, f.ids[t]...)
	}
	out := make([]deviceResult, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for i, id := range ids {
		g.Go(func() error {
			d, err := c.GetDevice(gctx, id)
			if err != nil {
				return fmt.Errorf("get device %s: %w", id, err)
			}
			r := deviceResult{id: id, transport: f.transport[id], wokeAt: woke[id]}
			if d.State != nil && len(d.State.Wakes) > 0 {
				r.last = &d.State.Wakes[len(d.State.Wakes)-1]
			}
			out[i] = r
			return nil
		})
	}
	return out, g.Wait()
}

// transportRow sums up the devices of one transport.
type transportRow struct {
	name                 string
	devices              int
	reached              map[string]int // delivered, sent
	failed               map[string]int // every other status
	confirmed            int
	wake, confirm, toCPE []float64 // milliseconds
}

// summarize sums up the results of the devices for which keep is true.
func summarize(name string, rs []deviceResult, keep func(deviceResult) bool, campaignStart time.Time) transportRow {
	row := transportRow{name: name, reached: map[string]int{}, failed: map[string]int{}}
	for _, r := range rs {
		if !keep(r) {
			continue
		}
		row.devices++
		if st := r.status(); reached(st) {
			row.reached[st]++
		} else {
			row.failed[st]++
		}
		if r.last != nil {
			row.wake = append(row.wake, r.last.DurationMS)
			if r.last.ConfirmedAt != nil {
				row.confirmed++
				row.confirm = append(row.confirm, r.last.ConfirmMS)
			}
		}
		if !r.wokeAt.IsZero() {
			row.toCPE = append(row.toCPE, float64(r.wokeAt.Sub(campaignStart))/float64(time.Millisecond))
		}
	}
	return row
}

// printReport writes the per-transport table, what it means, and how the
// HTTP variants fared and what the CPEs counted.
func printReport(w io.Writer, f *fleets, rs []deviceResult, campaignStart time.Time) {
	fmt.Fprintln(w)
	printTable(w, rs, campaignStart)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "WAKE: the wake's duration_ms as the appliance recorded it; WAKE→INFORM: its confirm_ms;")
	fmt.Fprintln(w, "START→CPE: from POST /v1/campaigns to the simulated CPE accepting the request.")
	printHTTPModes(w, f, rs)
	printCPECounters(w, f)
}

// printTable writes one row per transport and a total.
func printTable(w io.Writer, rs []deviceResult, campaignStart time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRANSPORT\tDEVICES\tREACHED\tFAILED\tCONFIRMED\tWAKE p50 / p99\tWAKE→INFORM p50 / p99\tSTART→CPE p50 / p99")
	var rows []transportRow
	for _, t := range transports {
		if row := summarize(t, rs, func(r deviceResult) bool { return r.transport == t }, campaignStart); row.devices > 0 {
			rows = append(rows, row)
		}
	}
	rows = append(rows, summarize("total", rs, func(deviceResult) bool { return true }, campaignStart))
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", row.name, row.devices,
			formatCounts(row.reached), formatCounts(row.failed), row.confirmed,
			quantiles(row.wake), quantiles(row.confirm), quantiles(row.toCPE))
	}
	tw.Flush()
}

// quantiles formats the median and 99th percentile of ms.
func quantiles(ms []float64) string {
	if len(ms) == 0 {
		return "-"
	}
	slices.Sort(ms)
	return fmt.Sprintf("%s / %s ms", formatMS(percentile(ms, 0.50)), formatMS(percentile(ms, 0.99)))
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// formatMS gives about two significant digits.
func formatMS(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.2f", ms)
	case ms < 10:
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}

// printHTTPModes writes how the HTTP CPEs fared per Digest variant and
// quirk, from the appliance's records.
func printHTTPModes(w io.Writer, f *fleets, rs []deviceResult) {
	const closeAfter, perConn = "close-after-401", "nonce-per-connection"
	var groups []string
	for _, m := range httpModes {
		groups = append(groups, string(m))
	}
	groups = append(groups, closeAfter, perConn)
	total, ok := map[string]int{}, map[string]int{}
	for _, r := range rs {
		if r.transport != transportHTTP {
			continue
		}
		cfg := f.http.CPE(r.id).Config()
		in := []string{string(cfg.Mode)}
		if cfg.CloseAfter401 {
			in = append(in, closeAfter)
		}
		if cfg.NoncePerConnection {
			in = append(in, perConn)
		}
		for _, g := range in {
			total[g]++
			if reached(r.status()) {
				ok[g]++
			}
		}
	}
	var parts []string
	for _, g := range groups {
		if total[g] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d/%d", g, ok[g], total[g]))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "HTTP CPEs reached, by Digest variant and quirk: %s\n", strings.Join(parts, ", "))
	}
}

// printCPECounters writes what the simulated CPEs themselves counted.
func printCPECounters(w io.Writer, f *fleets) {
	h, s, x := f.http.Stats().Total, f.stun.Stats().Total, f.xmpp.Stats().Total
	fmt.Fprintf(w, "The CPEs' own counts: HTTP %d accepted after %d challenges (%d rejected); "+
		"UDP %d accepted, %d retransmitted copies dropped as duplicates, %d rejected otherwise; "+
		"XMPP %d accepted, %d refused\n",
		h.Accepted, h.Challenges, h.Rejected,
		s.CRAccepted, s.CRRejected.Duplicate,
		s.CRRejected.Malformed+s.CRRejected.WrongUsername+s.CRRejected.BadSignature+s.CRRejected.Stale,
		x.CRAccepted, x.CRRefused())
}

// progressLine describes a campaign in one line.
func progressLine(c api.Campaign) string {
	var b strings.Builder
	fmt.Fprintf(&b, "campaign %s %s: %d/%d done", c.ID, c.State, c.Done, c.Total)
	if c.Pending > 0 {
		fmt.Fprintf(&b, ", %d pending", c.Pending)
	}
	fmt.Fprintf(&b, ", %.0f/s, %.2f s", c.RatePerS, c.ElapsedS)
	if c.ETASeconds != nil {
		fmt.Fprintf(&b, ", ETA %.1f s", *c.ETASeconds)
	}
	fmt.Fprintf(&b, " [%s]", formatCounts(c.Counts))
	return b.String()
}
