// Command demo shows crrelay working end to end on one machine, with
// nothing but the repository and Go: `make demo` builds bin/crrelay and
// runs it.
//
// The demo starts bin/crrelay serve as its own process, on a fresh data
// directory in a temporary directory and with every listener on loopback,
// and plays both parties the appliance sits between:
//
//   - The CPEs: simulated fleets (package sim) run in this process, 1,000
//     CPEs by default. 400 answer HTTP connection requests with Digest
//     (MD5 without and with qop=auth, MD5-sess, SHA-256, SHA-256-sess; some
//     close the connection after their 401, others accept a nonce only on
//     the connection it was issued on). 300 keep a TR-111 binding with the
//     appliance's STUN server (classic RFC 3489, MESSAGE-INTEGRITY
//     required) and take UDP connection requests (TR-069 Annex G). 300 keep
//     a TLS session with its XMPP broker and take connectionRequest IQs
//     (Annex K).
//   - The ACS: it registers every CPE through the API, starts one campaign
//     that wakes them all, and, as each CPE accepts its connection request
//     and opens its CWMP session, reports the Inform ("6 CONNECTION
//     REQUEST") so that the appliance confirms the wake.
//
// It then prints per transport how many devices were reached, failed and
// confirmed, with latencies: the wake as the appliance measured it, wake
// to Inform, and campaign start to the CPE receiving the request. It exits
// 0 only if every device was reached (delivered or, over UDP, sent).
//
// Usage:
//
//	make demo [DEMO_ARGS="-http 400 -udp 300 -xmpp 300 -concurrency 32 -rate 0"]
//	go run ./demo [flags]    # after make build
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/campaign"
)

var (
	errUsage     = errors.New("demo: usage")
	errNotReady  = errors.New("demo: simulated CPEs not ready")
	errCampaign  = errors.New("demo: campaign did not finish")
	errUnreached = errors.New("demo: not every device was reached")
)

const (
	demoDomain = "demo.test" // the broker's XMPP domain
	// API calls in flight: registrations per fleet, device reads.
	registerConcurrency = 32
	fetchConcurrency    = 32
	// informWorkers post Informs.
	informWorkers = 64
	// httpPerHost is the appliance's --http-cr-max-per-host: the whole
	// HTTP fleet shares 127.0.0.1.
	httpPerHost     = 256
	readyTimeout    = 20 * time.Second
	campaignTimeout = 60 * time.Second
	// After the campaign, wait for the Informs until all have been
	// posted, none came for informQuiet, or informMax has passed.
	informQuiet = 500 * time.Millisecond
	informMax   = 3 * time.Second
)

type options struct {
	binary          string
	http, udp, xmpp int
	concurrency     int
	rate            float64
	keep            bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	case interrupted:
		fmt.Fprintln(os.Stderr, "demo: interrupted; the appliance is stopped")
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: make demo DEMO_ARGS='[flags]', or go run ./demo [flags] after make build")
		fmt.Fprintln(stderr, "Runs bin/crrelay serve on loopback, simulated HTTP, STUN and XMPP CPEs, and one campaign waking them all.")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.binary, "bin", "bin/crrelay", "the appliance binary (make build writes it)")
	fs.IntVar(&o.http, "http", 400, "simulated HTTP CPEs (Digest)")
	fs.IntVar(&o.udp, "udp", 300, "simulated TR-111 CPEs (STUN binding, UDP connection requests)")
	fs.IntVar(&o.xmpp, "xmpp", 300, "simulated Annex K CPEs (XMPP session)")
	fs.IntVar(&o.concurrency, "concurrency", 32, "the campaign's wakes in flight (on 2 cores more only adds queueing to each wake's time)")
	fs.Float64Var(&o.rate, "rate", 0, "the campaign's wakes started per second (0 = unlimited)")
	fs.BoolVar(&o.keep, "keep", false, "keep the appliance's temporary directory (data and log) at the end")
	if err := fs.Parse(args); err != nil {
		return o, errors.Join(errUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case o.http < 0 || o.udp < 0 || o.xmpp < 0 || o.http+o.udp+o.xmpp == 0:
		return o, fmt.Errorf("%w: -http, -udp and -xmpp must not be negative, nor all zero", errUsage)
	case o.concurrency < 1:
		return o, fmt.Errorf("%w: -concurrency must be at least 1", errUsage)
	case o.rate < 0:
		return o, fmt.Errorf("%w: -rate must not be negative", errUsage)
	}
	return o, nil
}

// steps prints the demo's progress, each line stamped with the time
// since the demo started.
type steps struct {
	w     io.Writer
	start time.Time
}

func (s *steps) printf(format string, args ...any) {
	fmt.Fprintf(s.w, "%6.2fs  %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

// more prints a continuation of the line before.
func (s *steps) more(format string, args ...any) {
	fmt.Fprintf(s.w, "         %s\n", fmt.Sprintf(format, args...))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	total := o.http + o.udp + o.xmpp
	p := &steps{w: stdout, start: time.Now()}
	p.printf("crrelay demo: %d simulated CPEs (%d HTTP, %d UDP via STUN, %d XMPP), woken by one campaign", total, o.http, o.udp, o.xmpp)

	a, err := startAppliance(ctx, applianceConfig{
		binary: o.binary, domain: demoDomain, httpPerHost: httpPerHost,
		apiConns: max(informWorkers, fetchConcurrency, 3*registerConcurrency),
	})
	if err != nil {
		return err
	}
	if !o.keep {
		defer a.remove()
	}
	defer a.stop()
	p.printf("appliance  %s serve started in %.2f s (pid %d)", o.binary, a.startDur.Seconds(), a.pid)
	p.more("api   %s", a.api.BaseURL)
	p.more("stun  %s (MESSAGE-INTEGRITY required)", a.stun)
	p.more("xmpp  %s STARTTLS, %s direct TLS, domain %s", a.xmpp, a.xmppTLS, demoDomain)
	p.more("log   %s", a.logPath)

	// The ACS's side: Informs posted as CPEs accept their requests.
	inf := newInformer(a.api, 4*total)
	woke := &wakeLog{at: make(map[string]time.Time, total), then: inf.woke}
	fl, err := newFleets(fleetConfig{http: o.http, udp: o.udp, xmpp: o.xmpp, domain: demoDomain, onWake: woke.note}, a)
	if err != nil {
		return err
	}

	// Everything running in the background stops, and is waited for,
	// before the appliance does.
	bg, cancelBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stopBG := sync.OnceFunc(func() { cancelBG(); wg.Wait() })
	defer stopBG()
	fleetErr := make(chan error, 2)
	wg.Go(func() { inf.run(bg, informWorkers) })
	wg.Go(func() {
		if err := fl.serveHTTP(bg); err != nil {
			fleetErr <- fmt.Errorf("demo: HTTP fleet: %w", err)
		}
	})

	t := time.Now()
	if err := fl.register(ctx, a.api, registerConcurrency); err != nil {
		return apiFailure(a, "register devices", err)
	}
	p.printf("registered %d devices through PUT /v1/devices/{id} in %.2f s", total, time.Since(t).Seconds())
	p.more("http  %d CPEs at %s/cr/<id>: %s", o.http, fl.httpBase, modeList())

	// STUN CPEs bind and XMPP CPEs log in once registered: before, the
	// appliance could not authenticate them.
	t = time.Now()
	wg.Go(func() {
		if err := fl.stun.Run(bg); err != nil {
			fleetErr <- fmt.Errorf("demo: STUN fleet: %w", err)
		}
	})
	wg.Go(func() { _ = fl.xmpp.Run(bg) }) // returns nil; CPEs retry as real ones do
	if err := waitReady(ctx, fl, fleetErr); err != nil {
		return fmt.Errorf("%w%s", err, a.problemReport())
	}
	p.printf("ready in %.2f s: %d STUN CPEs bound (RFC 3489 with MESSAGE-INTEGRITY), %d XMPP CPEs online (STARTTLS, SCRAM-SHA-1)",
		time.Since(t).Seconds(), o.udp, o.xmpp)

	spec := api.CampaignSpec{Name: "make demo", Filter: "all", Concurrency: o.concurrency, RatePerS: o.rate}
	rate := "unlimited"
	if o.rate > 0 {
		rate = fmt.Sprintf("%g/s", o.rate)
	}
	p.printf("campaign   POST /v1/campaigns {filter: all, concurrency: %d, rate: %s}", o.concurrency, rate)
	campaignStart := time.Now()
	camp, err := a.api.StartCampaign(ctx, spec)
	if err != nil {
		return apiFailure(a, "start the campaign", err)
	}
	camp, err = watchCampaign(ctx, a.api, camp.ID, stdout)
	if err != nil {
		return apiFailure(a, "watch the campaign", err)
	}
	p.printf("campaign   %s %s in %.2f s: %s", camp.ID, camp.State, camp.ElapsedS, formatCounts(camp.Counts))

	waited := inf.settle(ctx, int64(reachedCount(camp.Counts)), informQuiet, informMax)
	p.printf("informs    %d CPEs woke and opened a session; %d Informs reported through POST /v1/devices/{id}/inform (waited %.2f s after the campaign)",
		woke.len(), inf.posted(), waited.Seconds())
	p.more("%d confirmed a wake, %d did not, %d failed, %d dropped", inf.confirmed.Load(), inf.refused.Load(), inf.failed.Load(), inf.dropped.Load())
	if err := inf.err(); err != nil {
		p.more("first failed Inform: %v", err)
	}

	results, err := fetchResults(ctx, a.api, fl, woke.snapshot(), fetchConcurrency)
	if err != nil {
		return apiFailure(a, "read the devices", err)
	}
	printReport(stdout, fl, results, campaignStart)
	select {
	case err := <-fleetErr:
		fmt.Fprintf(stdout, "warning: %v\n", err)
	default:
	}

	// Stop everything before the summary, which is the last line.
	stopBG()
	t = time.Now()
	switch err := a.stop(); {
	case err != nil:
		p.printf("appliance  stopped with %v after SIGINT (%.2f s)", err, time.Since(t).Seconds())
	default:
		p.printf("appliance  stopped cleanly on SIGINT in %.2f s", time.Since(t).Seconds())
	}
	if lines, n := a.problems(3); n > 0 {
		p.more("its log has %d warnings or errors: %s", n, strings.Join(lines, "; "))
	}
	if o.keep {
		p.more("kept %s", a.dir)
	}
	return summary(stdout, results, camp, time.Since(p.start))
}

// summary prints the one-line verdict, and returns errUnreached, naming
// the devices, if any device was not reached.
func summary(w io.Writer, rs []deviceResult, camp api.Campaign, took time.Duration) error {
	var bad []string
	confirmed := 0
	for _, r := range rs {
		if r.last != nil && r.last.ConfirmedAt != nil {
			confirmed++
		}
		if !reached(r.status()) {
			s := fmt.Sprintf("%s (%s: %s", r.id, r.transport, r.status())
			if r.last != nil && r.last.Detail != "" {
				s += ", " + r.last.Detail
			}
			bad = append(bad, s+")")
		}
	}
	if n := reachedCount(camp.Counts); n != len(rs)-len(bad) {
		fmt.Fprintf(w, "warning: the campaign counts %d devices reached, their wake records %d\n", n, len(rs)-len(bad))
	}
	if len(bad) == 0 {
		fmt.Fprintf(w, "PASS: all %d devices reached (%s), %d confirmed by their Inform, in %.1f s\n",
			len(rs), formatCounts(camp.Counts), confirmed, took.Seconds())
		return nil
	}
	const show = 5
	list := strings.Join(bad[:min(show, len(bad))], "; ")
	if len(bad) > show {
		list += fmt.Sprintf("; and %d more", len(bad)-show)
	}
	fmt.Fprintf(w, "FAIL: %d of %d devices not reached: %s\n", len(bad), len(rs), list)
	return fmt.Errorf("%w: %d of %d", errUnreached, len(bad), len(rs))
}

// waitReady waits for the STUN and XMPP fleets, or for one to fail.
func waitReady(ctx context.Context, fl *fleets, fleetErr <-chan error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fl.waitReady(ctx, readyTimeout) }()
	select {
	case err := <-done:
		return err
	case err := <-fleetErr:
		cancel()
		<-done
		return err
	}
}

// watchCampaign polls the campaign until it ends, printing its progress
// while it runs: on a terminal one line rewritten in place, elsewhere a
// line every progressEvery. A campaign still running after
// campaignTimeout is cancelled.
func watchCampaign(ctx context.Context, c *apiclient.Client, id string, w io.Writer) (api.Campaign, error) {
	const pollEvery, progressEvery = 100 * time.Millisecond, 250 * time.Millisecond
	tty := isTerminal(w)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	deadline := time.After(campaignTimeout)
	var printed time.Time
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return api.Campaign{}, ctx.Err()
		case <-deadline:
			camp, err := c.CancelCampaign(context.WithoutCancel(ctx), id)
			if err != nil {
				return camp, fmt.Errorf("%w in %s, and cancelling it failed: %v", errCampaign, campaignTimeout, err)
			}
			return camp, fmt.Errorf("%w in %s: cancelled (%s)", errCampaign, campaignTimeout, progressLine(camp))
		}
		camp, err := c.GetCampaign(ctx, id)
		if err != nil {
			return camp, err
		}
		running := camp.State == campaign.StateRunning
		line := "         " + progressLine(camp)
		switch {
		case tty && running:
			fmt.Fprintf(w, "\r\033[K%s", line)
		case tty:
			fmt.Fprint(w, "\r\033[K") // the caller prints the outcome
		case running && time.Since(printed) >= progressEvery:
			fmt.Fprintln(w, line)
			printed = time.Now()
		}
		if !running {
			return camp, nil
		}
	}
}

// apiFailure adds to an API call's error that the appliance died and
// the end of its log, if it did, else the warnings and errors it logged
// (the log itself goes with the temporary directory).
func apiFailure(a *appliance, what string, err error) error {
	if dead := a.alive(); dead != nil {
		return fmt.Errorf("demo: %s: %w\n%v", what, err, dead)
	}
	return fmt.Errorf("demo: %s: %w%s", what, err, a.problemReport())
}

// modeList names the HTTP fleet's Digest variants and quirks.
func modeList() string {
	var ms []string
	for _, m := range httpModes {
		ms = append(ms, string(m))
	}
	return fmt.Sprintf("%s round-robin; every %dth closes after its 401, every %drd other ties nonces to the connection",
		strings.Join(ms, ", "), closeAfter401Every, noncePerConnEvery)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
