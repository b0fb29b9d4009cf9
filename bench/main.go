// Command bench is `make bench`: load tools that measure crrelay on this
// machine and print one table. The Go micro-benchmarks (go test -bench)
// cover the hot paths; this covers whole paths:
//
//   - HTTP Digest connection requests per second from the httpcr client to a
//     simulated fleet on loopback, a fresh TCP connection per request;
//   - the same through the appliance (bin/crrelay serve as its own process,
//     woken through the API);
//   - API wake latency, p50 and p99, one wake at a time;
//   - registry load time and memory per device at 1,000,000 devices (the
//     registry's BenchmarkLoad, run with that many devices).
//
// The load generator shares the machine with what it measures; figures are
// for comparing runs on the same box, not absolute.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/httpcr"
	"github.com/crrelay/crrelay/sim"
)

type row struct{ name, result, goal, note string }

func main() {
	duration := flag.Duration("duration", 3*time.Second, "length of each throughput run")
	conc := flag.Int("concurrency", 64, "concurrent connection requests in throughput runs")
	cpes := flag.Int("cpes", 1000, "simulated CPEs")
	latencyN := flag.Int("latency-wakes", 2000, "sequential API wakes for the latency figures")
	devices := flag.Int("registry-devices", 1000000, "devices for the registry load figure (0 skips it)")
	binary := flag.String("crrelay", "bin/crrelay", "the crrelay binary to run for the API figures")
	flag.Parse()
	if err := run(*duration, *conc, *cpes, *latencyN, *devices, *binary); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(duration time.Duration, conc, cpes, latencyN, devices int, binary string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rows []row

	fleet, err := sim.NewFleet(sim.FleetConfig{Prefix: "bench-", Count: cpes, Modes: []sim.Mode{sim.ModeDigestMD5}, Seed: 42})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fdone := make(chan error, 1)
	go func() { fdone <- fleet.Serve(ctx, ln) }()
	defer func() { cancel(); <-fdone }()
	base := "http://" + ln.Addr().String()
	devs := fleet.Devices(base)

	// 1. httpcr straight to the fleet.
	policy, err := httpcr.NewPolicy(mustPrefixes("127.0.0.0/8"), nil)
	if err != nil {
		return err
	}
	client, err := httpcr.New(httpcr.Config{Policy: policy, MaxConcurrent: conc, MaxPerHost: conc})
	if err != nil {
		return err
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
	apiRows, err := throughAppliance(ctx, binary, fleet, base, duration, conc, latencyN)
	if err != nil {
		return err
	}
	rows = append(rows, apiRows...)

	// 4. Registry at scale.
	if devices > 0 {
		fmt.Fprintf(os.Stderr, "registry: loading %d devices...\n", devices)
		r, err := registryLoad(devices)
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

type registrar struct{ c *apiclient.Client }

func (r registrar) PutDevice(ctx context.Context, d sim.Device) error {
	_, err := r.c.PutDevice(ctx, d.ID, apiclient.DeviceInput{
		ConnectionRequestURL: &d.ConnectionRequestURL, Username: &d.Username, Password: &d.Password,
		Transports: []string{"http"},
	})
	return err
}

var startedRE = regexp.MustCompile(`crrelay started.*api=(http://[0-9.:]+)`)

func throughAppliance(ctx context.Context, binary string, fleet *sim.Fleet, base string, d time.Duration, conc, latencyN int) ([]row, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("%s: %w (run make build)", binary, err)
	}
	dir, err := os.MkdirTemp("", "crrelay-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	const token = "bench-token"
	cmd := exec.CommandContext(ctx, binary, "serve", "--data-dir", filepath.Join(dir, "data"), "--api-listen", "127.0.0.1:0",
		"--api-token", token, "--http-cr-allow-cidrs", "127.0.0.0/8",
		"--http-cr-max-per-host", fmt.Sprint(conc))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := startedRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
	}()
	var url string
	select {
	case url = <-addr:
	case <-time.After(30 * time.Second):
		return nil, errors.New("appliance did not start")
	}
	// An ACS keeps connections to the API open; so does the bench.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc}}
	c := &apiclient.Client{BaseURL: url, Token: token, HTTP: hc}
	if err := fleet.Register(ctx, registrar{c}, base, 16); err != nil {
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
