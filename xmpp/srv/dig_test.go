package srv

import (
	"context"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDig queries the server with dig from Debian's bind9-dnsutils, a
// client not written here; skipped when dig is not installed.
func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (Debian: apt-get install bind9-dnsutils); skipping the interop test")
	}
	r := start(t, bigConfig(40))
	host, port, _ := net.SplitHostPort(r.udp)
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// +tries=1 +time=5: no retries to hide a lost answer; dig never
		// asks anyone but @host.
		a := append([]string{"@" + host, "-p", port, "+tries=1", "+time=5", "+norecurse"}, args...)
		out, err := exec.CommandContext(ctx, dig, a...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", strings.Join(a, " "), err, out)
		}
		return string(out)
	}
	flags := regexp.MustCompile(`;; ->>HEADER<<- opcode: QUERY, status: (\w+), id: \d+\n;; flags: ([a-z ]+);`)
	header := func(t *testing.T, out string) (status string, fl []string) {
		t.Helper()
		m := flags.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no header in dig's output:\n%s", out)
		}
		return m[1], strings.Fields(m[2])
	}
	answers := func(out string) []string {
		var as []string
		for l := range strings.SplitSeq(out, "\n") {
			if l != "" && !strings.HasPrefix(l, ";") {
				as = append(as, strings.Join(strings.Fields(l), " "))
			}
		}
		return as
	}

	t.Run("SRV over UDP, truncated, then TCP", func(t *testing.T) {
		// 40 targets do not fit in dig's 1232 bytes: dig sees TC and
		// asks again over TCP by itself.
		out := run(t, "_xmpp-client._tcp.example.net", "SRV")
		if !strings.Contains(out, ";; Truncated, retrying in TCP mode.") {
			t.Errorf("dig did not retry over TCP:\n%s", out)
		}
		status, fl := header(t, out)
		if status != "NOERROR" || !slices.Contains(fl, "aa") || slices.Contains(fl, "tc") || slices.Contains(fl, "ra") {
			t.Errorf("status %s flags %v", status, fl)
		}
		n := 0
		for _, a := range answers(out) {
			if strings.Contains(a, " IN SRV 0 0 5222 xmpp") {
				n++
			}
		}
		if n != 40 {
			t.Errorf("%d SRV records, want 40:\n%s", n, out)
		}
		if !strings.Contains(out, ";; SERVER: "+host+"#"+port+"("+host+") (TCP)") {
			t.Errorf("final answer not over TCP:\n%s", out)
		}
	})
	t.Run("A over TCP", func(t *testing.T) {
		out := run(t, "+tcp", "XMPP07.Example.NET", "A")
		status, fl := header(t, out)
		if status != "NOERROR" || !slices.Contains(fl, "aa") {
			t.Errorf("status %s flags %v", status, fl)
		}
		if !slices.Contains(answers(out), "XMPP07.Example.NET. 300 IN A 192.0.2.7") {
			t.Errorf("no A record:\n%s", out)
		}
	})
	t.Run("NXDOMAIN", func(t *testing.T) {
		out := run(t, "nosuch.example.net", "A")
		if status, fl := header(t, out); status != "NXDOMAIN" || !slices.Contains(fl, "aa") {
			t.Errorf("status %s flags %v", status, fl)
		}
		if !strings.Contains(out, ";; AUTHORITY SECTION:\nexample.net.") {
			t.Errorf("no SOA in authority:\n%s", out)
		}
	})
	t.Run("REFUSED outside the zone", func(t *testing.T) {
		out := run(t, "example.org", "A")
		if status, fl := header(t, out); status != "REFUSED" || slices.Contains(fl, "aa") {
			t.Errorf("status %s flags %v", status, fl)
		}
	})
	t.Run("BADVERS", func(t *testing.T) {
		out := run(t, "+edns=1", "+noednsneg", "example.net", "SOA")
		if status, _ := header(t, out); status != "BADVERS" {
			t.Errorf("status %s\n%s", status, out)
		}
	})
}
