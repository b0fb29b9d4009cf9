package srv

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Write prints the report as a table, one line per record, then the
// verdict and the problems. Write errors are w's to report (a
// bufio.Writer keeps them; a terminal has none).
func (r Report) Write(w io.Writer) {
	fmt.Fprintf(w, "XMPP broker discovery for %s, asked %s\n", r.Domain, r.Resolver)
	here := make([]string, len(r.Expect))
	for i, ap := range r.Expect {
		here[i] = ap.String()
	}
	if len(here) == 0 {
		here = []string{"(none given)"}
	}
	fmt.Fprintf(w, "This appliance: %s\n\n", strings.Join(here, ", "))

	if len(r.Records) == 0 {
		fmt.Fprintf(w, "No records.\n")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tPRIORITY\tWEIGHT\tPORT\tTARGET\tADDRESSES\tHERE")
		for _, rec := range r.Records {
			prio, weight := strconv.Itoa(int(rec.Priority)), strconv.Itoa(int(rec.Weight))
			if rec.Service == ServiceFallback {
				prio, weight = "-", "-"
			}
			addrs := make([]string, len(rec.Addrs))
			some := false
			for i, a := range rec.Addrs {
				addrs[i] = a.Addr.String()
				if a.Ours {
					addrs[i] += " (here)"
					some = true
				}
			}
			if len(addrs) == 0 {
				addrs = []string{"-"}
			}
			ours := "no"
			switch {
			case rec.Ours:
				ours = "yes"
			case some:
				ours = "partly"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
				rec.Service, prio, weight, rec.Port, rec.Target, strings.Join(addrs, ", "), ours)
		}
		tw.Flush()
	}

	text := ""
	if int(r.Verdict) < len(verdictText) {
		text = verdictText[r.Verdict]
	}
	fmt.Fprintf(w, "\nVerdict: %s: %s.\n", strings.ToUpper(r.Verdict.String()), text)
	if len(r.Problems) != 0 {
		fmt.Fprintln(w, "Problems:")
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  - %s\n", strings.TrimPrefix(p.Error(), "srv: "))
		}
	}
}
