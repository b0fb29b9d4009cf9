package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/internal/apprun"
)

// startTimeout bounds the appliance's start-up: it opens a bbolt file,
// generates a self-signed certificate and binds a few loopback sockets.
const startTimeout = 20 * time.Second

// appliance is bin/crrelay serve running as its own process (apprun) on
// a fresh data directory, every listener on loopback.
type appliance struct {
	*apprun.Process
	api      *apiclient.Client
	pid      int
	dir      string
	logPath  string
	startDur time.Duration
	stun     netip.AddrPort // the STUN server, as bound
	xmpp     string         // the broker's STARTTLS listener
	xmppTLS  string         // its direct-TLS listener
}

// applianceConfig is what the demo asks of the appliance beyond the
// settings it always uses.
type applianceConfig struct {
	binary      string
	domain      string // --xmpp-domain
	apiConns    int    // API connections the demo keeps open
	httpPerHost int    // --http-cr-max-per-host
}

// startAppliance starts the appliance and returns once its "crrelay
// started" line is logged. The caller must call stop, then remove.
func startAppliance(ctx context.Context, cfg applianceConfig) (*appliance, error) {
	// The XMPP broker's two listeners are told apart only by the flag
	// that opened them, so they get ports picked here; the STUN server
	// binds port 0 and the started line says which port it got.
	xmppPort, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	xmppTLSPort, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	a := &appliance{
		xmpp:    net.JoinHostPort("127.0.0.1", strconv.Itoa(xmppPort)),
		xmppTLS: net.JoinHostPort("127.0.0.1", strconv.Itoa(xmppTLSPort)),
	}
	p, err := apprun.Start(ctx, apprun.Config{
		Binary: cfg.binary, APIConns: cfg.apiConns, TempPrefix: "crrelay-demo-", StartTimeout: startTimeout,
		Args: []string{
			"--log-level", "info",
			"--stun-listen", "127.0.0.1:0",
			"--stun-integrity", "required",
			"--xmpp-listen", a.xmpp,
			"--xmpp-tls-listen", a.xmppTLS,
			"--xmpp-domain", cfg.domain,
			"--http-cr-allow-cidrs", "127.0.0.0/8",
			// Every simulated CPE shares the source address 127.0.0.1,
			// where a real fleet has one address per CPE: the per-IP
			// limits meant against a single misbehaving host would
			// throttle the whole demo fleet.
			"--stun-rate-per-source", "0",
			"--xmpp-conn-rate-per-ip", "0",
			"--http-cr-max-per-host", strconv.Itoa(cfg.httpPerHost),
		},
	})
	if err != nil {
		return nil, err
	}
	a.Process = p
	if err := a.checkListeners(p.STUN, p.XMPP); err != nil {
		p.Stop()
		p.Remove()
		return nil, err
	}
	a.api, a.pid, a.dir, a.logPath, a.startDur = p.API, p.PID(), p.Dir, p.LogPath, p.StartDuration
	return a, nil
}

// checkListeners checks the addresses of the started line against what
// the demo asked for, and keeps the STUN server's.
func (a *appliance) checkListeners(stun, xmpp []string) error {
	if len(stun) != 1 {
		return fmt.Errorf("%w: stun=%q", apprun.ErrStartedLine, stun)
	}
	ap, err := netip.ParseAddrPort(stun[0])
	if err != nil {
		return fmt.Errorf("%w: stun=%q: %v", apprun.ErrStartedLine, stun[0], err)
	}
	a.stun = ap
	if len(xmpp) != 2 || !slices.Contains(xmpp, a.xmpp) || !slices.Contains(xmpp, a.xmppTLS) {
		return fmt.Errorf("%w: xmpp=%q, want %s and %s", apprun.ErrStartedLine, xmpp, a.xmpp, a.xmppTLS)
	}
	return nil
}

func (a *appliance) alive() error { return a.Alive() }
func (a *appliance) stop() error  { return a.Stop() }
func (a *appliance) remove()      { a.Remove() }

// problems returns the appliance's log lines at WARN or ERROR level,
// shortened to their level and message, at most n of them, and how many
// there were.
func (a *appliance) problems(n int) ([]string, int) {
	var out []string
	total := 0
	for line := range strings.SplitSeq(string(a.Log()), "\n") {
		f := apprun.LogFields(line)
		if f["level"] != "WARN" && f["level"] != "ERROR" {
			continue
		}
		total++
		if len(out) < n {
			s := f["level"] + " " + f["msg"]
			if e := f["err"]; e != "" {
				s += ": " + e
			}
			out = append(out, s)
		}
	}
	return out, total
}

// problemReport describes the warnings and errors the appliance logged,
// for the message of a failure; "" if there are none.
func (a *appliance) problemReport() string {
	lines, n := a.problems(5)
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("\nthe appliance logged %d warnings or errors, first:\n  %s", n, strings.Join(lines, "\n  "))
}

// freeTCPPort returns a loopback TCP port that was free a moment ago.
func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
