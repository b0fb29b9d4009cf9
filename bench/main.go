// Command bench is `make bench`: load tools that measure crrelay on this
// machine and print one table. The Go micro-benchmarks (go test -bench)
// cover the hot paths; this covers whole paths:
//
//   - HTTP Digest connection requests per second from the httpcr client to a
//     simulated fleet on loopback, a fresh TCP connection per request;
//   - the same through the appliance (bin/crrelay serve as its own process,
//     woken through the API);
//   - API wake latency, p50 and p99, one wake at a time;
//   - STUN answers per second and per CPU-second of crrelay, against
//     coturn in STUN-only mode (installed from Debian when missing), both
//     loaded by the same batched generator (stunload.go): crrelay with
//     TR-111 Binding Requests of 100,000 registered devices, coturn with
//     plain RFC 5389 ones; server CPU time from /proc;
//   - the time to register those devices through the API;
//   - UDP connection requests dispatched per second through the API, to
//     devices that each bound from a socket of their own;
//   - the XMPP broker against Prosody (installed from Debian when
//     missing), both loaded by the same tool (xmpp.go): memory per idle
//     TLS session from RSS at 20,000 sessions (or as many as the
//     open-file limit allows), logins per second (TLS, SASL, bind), and
//     connectionRequest IQ round trips per second through the server
//     with their p99;
//   - campaigns (POST /v1/campaigns) per transport over a fleet that can
//     all be reached: devices done per second from the POST to the
//     campaign done, the median of three rounds, for UDP (30,000 devices
//     bound from sockets of their own, shared beyond the open-file
//     limit), XMPP (as many sessions as the open-file limit allows) and
//     HTTP Digest (20,000 simulated CPEs on one listener), with the
//     counts per status;
//   - end-to-end latency per transport, p50 and p99: from the API call
//     waking one device to the simulated CPE accepting the request, one
//     wake at a time over distinct devices (campaign.go);
//   - registry load time and memory per device at 1,000,000 devices (the
//     registry's BenchmarkLoad, run with that many devices).
//
// Flags skip sections (-http=false, -stun=false, -coturn=false,
// -udp-cr=false, -xmpp=false, -prosody=false, -campaign=false,
// -registry-devices 0) and size them; see -help.
//
// The load generators share the machine with what they measure, and the
// notes of each row say how much CPU each side used and what limited the
// figure; figures are for comparing runs on the same box, not absolute.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/httpcr"
	"github.com/crrelay/crrelay/sim"
)

type row struct{ name, result, goal, note string }

// options are the bench's flags.
type options struct {
	http     bool // the HTTP connection request rows
	duration time.Duration
	conc     int
	cpes     int
	latencyN int
	devices  int // registry load figure
	binary   string
	stun     stunOptions
	xmpp     bool // the XMPP broker rows
	prosody  bool // Prosody beside crrelay in them
	xo       xmppOptions
	campaign bool // the campaign and end-to-end latency rows
	co       campaignOptions
}

func main() {
	var o options
	flag.BoolVar(&o.http, "http", true, "measure HTTP connection requests (httpcr and through the API) and API wake latency")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of each HTTP throughput run")
	flag.IntVar(&o.conc, "concurrency", 64, "concurrent connection requests in HTTP throughput runs")
	flag.IntVar(&o.cpes, "cpes", 1000, "simulated CPEs")
	flag.IntVar(&o.latencyN, "latency-wakes", 2000, "sequential API wakes for the latency figures")
	flag.IntVar(&o.devices, "registry-devices", 1000000, "devices for the registry load figure (0 skips it)")
	flag.StringVar(&o.binary, "crrelay", "bin/crrelay", "the crrelay binary to run for the API and STUN figures")

	s := &o.stun
	flag.BoolVar(&s.stun, "stun", true, "measure STUN answers of coturn and crrelay")
	flag.BoolVar(&s.coturn, "coturn", true, "include coturn (installed from Debian when missing) in the STUN figures")
	flag.BoolVar(&s.udpCR, "udp-cr", true, "measure UDP connection requests dispatched through the API")
	flag.IntVar(&s.devices, "stun-devices", 100000, "devices (distinct STUN usernames) crrelay's STUN requests come from")
	flag.DurationVar(&s.load.duration, "stun-duration", 5*time.Second, "measured window of each STUN run")
	flag.DurationVar(&s.load.warmup, "stun-warmup", 2*time.Second, "warm-up before each STUN window (at least one pass over all devices)")
	flag.IntVar(&s.load.sockets, "stun-gen-sockets", 16, "source sockets of the STUN load generator")
	flag.IntVar(&s.load.window, "stun-window", 512, "STUN requests outstanding, over all source sockets")
	flag.IntVar(&s.load.batch, "stun-batch", 32, "datagrams per sendmmsg/recvmmsg")
	flag.IntVar(&s.srvSocks, "stun-sockets", runtime.NumCPU(), "crrelay --stun-sockets (coturn runs one UDP thread per CPU)")
	flag.StringVar(&s.integrity, "stun-integrity", "required", "crrelay --stun-integrity: off, optional or required")
	flag.IntVar(&s.rounds, "stun-rounds", 3, "alternating rounds of coturn and crrelay; figures are medians")
	flag.IntVar(&s.regConc, "register-concurrency", 64, "concurrent API PUTs when registering STUN devices")
	flag.IntVar(&s.wake.devices, "udp-cr-devices", 30000, "devices woken by UDP connection requests, each binding from its own socket; enough that at the goal rate no device is woken twice in a second (wakes in the same second are coalesced, not dispatched)")
	flag.DurationVar(&s.wake.duration, "udp-cr-duration", 5*time.Second, "length of the UDP connection request run")
	flag.IntVar(&s.wake.conc, "udp-cr-concurrency", 128, "concurrent API wakes in the UDP connection request run")
	flag.IntVar(&s.wake.batch, "udp-cr-batch", 1000, "devices per POST /v1/connection-requests in the batched UDP connection request run")
	flag.IntVar(&s.wake.batchConc, "udp-cr-batch-concurrency", 4, "batch calls in flight in the batched UDP connection request run")
	flag.BoolVar(&o.xmpp, "xmpp", true, "measure the XMPP broker: memory per idle TLS session, logins/s, connection-request IQs/s")
	flag.BoolVar(&o.prosody, "prosody", true, "include Prosody (installed from Debian when missing) in the XMPP figures")
	o.xo = defaultXMPPOptions()
	o.xo.flags(flag.CommandLine)
	flag.BoolVar(&o.campaign, "campaign", true, "measure campaigns per transport and end-to-end wake latency")
	o.co = defaultCampaignOptions()
	o.co.flags(flag.CommandLine)
	cpuprofile := flag.String("cpuprofile", "", "write the bench's own CPU profile (the load generators) to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(o); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rows []row

	// 1 to 3. HTTP connection requests.
	if o.http {
		r, err := httpSection(ctx, o)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}

	// 4. STUN answers against coturn, and UDP connection requests.
	rows = append(rows, stunSection(ctx, o.binary, o.stun)...)

	// 5. The XMPP broker against Prosody, one after the other with the
	// same load tool.
	if o.xmpp {
		const domain = "bench.example"
		var starters []xmppStarter
		if o.prosody {
			starters = append(starters, prosodyStarter(domain))
		}
		starters = append(starters, crrelayStarter(o.binary, domain))
		rows = append(rows, xmppSection(ctx, o.xo, starters...)...)
	}

	// 6. Campaigns and end-to-end latency, per transport.
	if o.campaign {
		rows = append(rows, campaignSection(ctx, o.binary, o.stun.regConc, o.co)...)
	}

	// 7. Registry at scale.
	if o.devices > 0 {
		fmt.Fprintf(os.Stderr, "registry: loading %d devices...\n", o.devices)
		r, err := registryLoad(o.devices)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\ncrrelay bench (%s, %d CPUs)\n", time.Now().UTC().Format(time.DateTime), numCPU())
	fmt.Fprintln(tw, "BENCHMARK\tRESULT\tGOAL\tNOTES")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.name, r.result, r.goal, r.note)
	}
	return tw.Flush()
}

// httpSection measures HTTP connection requests: httpcr straight to a
// simulated fleet, then through the appliance.
func httpSection(ctx context.Context, o options) ([]row, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	duration, conc, cpes := o.duration, o.conc, o.cpes
	var rows []row
	fleet, err := sim.NewFleet(sim.FleetConfig{Prefix: "bench-", Count: cpes, Modes: []sim.Mode{sim.ModeDigestMD5}, Seed: 42})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fdone := make(chan error, 1)
	go func() { fdone <- fleet.Serve(ctx, ln) }()
	defer func() { cancel(); <-fdone }()
	base := "http://" + ln.Addr().String()
	devs := fleet.Devices(base)

	// 1. httpcr straight to the fleet.
	policy, err := httpcr.NewPolicy(mustPrefixes("127.0.0.0/8"), nil)
	if err != nil {
		return nil, err
	}
	client, err := httpcr.New(httpcr.Config{Policy: policy, MaxConcurrent: conc, MaxPerHost: conc})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "httpcr → %d simulated CPEs, %d concurrent, %v...\n", cpes, conc, duration)
	before := fleet.Stats()
	n, fails, lat := load(ctx, duration, conc, func(i int) bool {
		d := devs[i%len(devs)]
		r := client.Do(ctx, httpcr.Request{URL: d.ConnectionRequestURL, Username: d.Username, Password: d.Password})
		return r.Outcome == httpcr.Delivered
	})
	after := fleet.Stats()
	rate := float64(n) / duration.Seconds()
	rows = append(rows, row{"HTTP Digest CR/s, httpcr → sim (fresh TCP each)", fmt.Sprintf("%.0f/s", rate), "≥ 5,000/s",
		fmt.Sprintf("%d ok, %d failed, p50 %s p99 %s, %d TCP conns", n, fails, pct(lat, 50), pct(lat, 99), after.Connections-before.Connections)})

	// 2 and 3. Through the appliance, as its own process.
	apiRows, err := throughAppliance(ctx, o.binary, fleet, base, duration, conc, o.latencyN)
	if err != nil {
		return nil, err
	}
	rows = append(rows, apiRows...)
	return rows, nil
}

// load runs f from conc workers for d and returns successes, failures and
// per-call latencies.
func load(ctx context.Context, d time.Duration, conc int, f func(i int) bool) (ok, failed int64, lat []time.Duration) {
	var okN, failN, next atomic.Int64
	deadline := time.Now().Add(d)
	lats := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				i := int(next.Add(1))
				t0 := time.Now()
				if f(i) {
					okN.Add(1)
				} else {
					failN.Add(1)
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	for _, l := range lats {
		lat = append(lat, l...)
	}
	return okN.Load(), failN.Load(), lat
}

func pct(lat []time.Duration, p float64) string {
	if len(lat) == 0 {
		return "-"
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return fmt.Sprintf("%.2fms", float64(s[i].Microseconds())/1000)
}

func throughAppliance(ctx context.Context, binary string, fleet *sim.Fleet, base string, d time.Duration, conc, latencyN int) ([]row, error) {
	// The rows wake the same devices in turn, each several times a
	// second: without --wake-min-spacing 0 most wakes would be coalesced
	// and send nothing.
	args := []string{"--http-cr-allow-cidrs", "127.0.0.0/8", "--http-cr-max-per-host", fmt.Sprint(conc), "--wake-min-spacing", "0"}
	if serveHasFlag(binary, "stun-listen") {
		// Not the default 0.0.0.0:3478, which may be taken.
		port, err := freeUDPPort()
		if err != nil {
			return nil, err
		}
		args = append(args, "--stun-listen", fmt.Sprintf("127.0.0.1:%d", port))
	}
	a, err := startAppliance(ctx, binary, conc, args...)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	c := a.api
	if err := fleet.Register(ctx, sim.APIRegistrar{Client: c}, base, 16); err != nil {
		return nil, err
	}
	devs := fleet.Devices(base)

	fmt.Fprintf(os.Stderr, "API → appliance → %d CPEs, %d concurrent, %v...\n", len(devs), conc, d)
	n, fails, lat := load(ctx, d, conc, func(i int) bool {
		r, err := c.Wake(ctx, devs[i%len(devs)].ID, api.WakeRequest{})
		return err == nil && r.Status.OK()
	})
	rows := []row{{"HTTP Digest CR/s, API → crrelay → sim", fmt.Sprintf("%.0f/s", float64(n)/d.Seconds()), "",
		fmt.Sprintf("%d ok, %d failed, p50 %s p99 %s at %d concurrent", n, fails, pct(lat, 50), pct(lat, 99), conc)}}

	fmt.Fprintf(os.Stderr, "API wake latency, %d sequential wakes...\n", latencyN)
	lat = lat[:0]
	failed := 0
	for i := range latencyN {
		t0 := time.Now()
		r, err := c.Wake(ctx, devs[i%len(devs)].ID, api.WakeRequest{})
		lat = append(lat, time.Since(t0))
		if err != nil || !r.Status.OK() {
			failed++
		}
	}
	rows = append(rows, row{"API wake latency (HTTP transport), p50 / p99", pct(lat, 50) + " / " + pct(lat, 99), "",
		fmt.Sprintf("%d sequential wakes, %d failed", latencyN, failed)})
	return rows, nil
}

var metricRE = regexp.MustCompile(`([0-9.e+]+) (ms/load|bytes/device)`)

func registryLoad(devices int) ([]row, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkLoad$", "-benchtime", "1x", "-count", "1", "./registry/")
	cmd.Env = append(os.Environ(), fmt.Sprintf("CRRELAY_BENCH_DEVICES=%d", devices))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("registry BenchmarkLoad: %v\n%s", err, out)
	}
	vals := map[string]string{}
	for _, m := range metricRE.FindAllStringSubmatch(string(out), -1) {
		vals[m[2]] = m[1]
	}
	if vals["ms/load"] == "" || vals["bytes/device"] == "" {
		return nil, fmt.Errorf("registry BenchmarkLoad printed no figures:\n%s", out)
	}
	return []row{
		{fmt.Sprintf("Registry load time, %d devices", devices), vals["ms/load"] + " ms", "", "bbolt file → in-memory index"},
		{fmt.Sprintf("Registry memory per device, %d devices", devices), vals["bytes/device"] + " B", "", "heap in use after GC / devices"},
	}, nil
}

func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func numCPU() int { return runtime.NumCPU() }
