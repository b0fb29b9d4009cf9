package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/crrelay/crrelay/apiclient"
)

// The STUN section of the bench: coturn and crrelay answering Binding
// Requests from the same load generator, the registration of the devices
// that crrelay's requests authenticate as, and UDP connection requests
// dispatched through the API.

// stunOptions sizes the STUN section.
type stunOptions struct {
	stun      bool // STUN answers, coturn and crrelay
	coturn    bool // the coturn half of it
	udpCR     bool // UDP connection requests through the API
	devices   int  // devices crrelay's requests come from
	load      loadConfig
	srvSocks  int    // crrelay --stun-sockets
	integrity string // crrelay --stun-integrity
	rounds    int    // alternating rounds of coturn and crrelay
	regConc   int    // concurrent PUTs while registering
	wake      wakeOptions
}

// stunDevice is a device as the bench registers it and as its requests
// present it.
type stunDevice struct {
	id, user, pass string // id, stun_username, stun_password
	crUser, crPass string // username, password: keys the UDP connection request
	udp            bool   // registered for UDP connection requests
}

func makeDevices(prefix string, n int, udp bool) []stunDevice {
	salt := runTag() // fresh passwords each run
	devs := make([]stunDevice, n)
	for i := range devs {
		devs[i] = stunDevice{
			id:     fmt.Sprintf("%s%06d", prefix, i),
			user:   fmt.Sprintf("%sstun-%06d", prefix, i),
			pass:   fmt.Sprintf("sp-%08x-%06d", salt, i),
			crUser: fmt.Sprintf("%scr-%06d", prefix, i),
			crPass: fmt.Sprintf("cp-%08x-%06d", salt, i),
			udp:    udp,
		}
	}
	return devs
}

// stunSection runs what o asks for and returns its rows. Failures become
// rows saying what is unavailable and why; the section never fails the
// bench.
//
// coturn and crrelay run side by side, one idle while the other is
// loaded, and are measured in alternating rounds, so that whatever else
// the machine does at the time weighs on both alike; each figure is the
// median of the rounds.
func stunSection(ctx context.Context, binary string, o stunOptions) []row {
	o.rounds = max(o.rounds, 1)
	var rows []row
	var ct *coturn
	var ctRuns, crRuns serverRuns
	if o.stun && o.coturn {
		path, err := ensureCoturn()
		if err == nil {
			ct, err = startCoturn(ctx, path)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "coturn:", err)
			ctRuns.err = err
		} else {
			defer ct.stop()
		}
	}

	var a *appliance
	var stunAddr netip.AddrPort
	var devs, wdevs []stunDevice
	if o.stun || o.udpCR {
		if o.stun {
			devs = makeDevices("stun-", o.devices, false)
		}
		if o.udpCR {
			wdevs = makeDevices("udpcr-", o.wake.devices, true)
		}
		var err error
		a, stunAddr, err = startSTUNAppliance(ctx, binary, o)
		if err == nil {
			all := append(devs[:len(devs):len(devs)], wdevs...)
			fmt.Fprintf(os.Stderr, "registering %d devices through the API, %d concurrent...\n", len(all), o.regConc)
			var took time.Duration
			if took, err = register(ctx, a.api, all, o.regConc); err != nil {
				a.stop()
				a, err = nil, fmt.Errorf("registering devices: %w", err)
			} else {
				rows = append(rows, row{fmt.Sprintf("Registration of %d devices via API (PUT, stun_username/password)", len(all)),
					fmt.Sprintf("%.1fs", took.Seconds()), "",
					fmt.Sprintf("%.0f devices/s at %d concurrent", float64(len(all))/took.Seconds(), o.regConc)})
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "crrelay:", err)
			crRuns.err = err
		} else {
			defer a.stop()
		}
	}

	if o.stun {
		var ctReqs, crReqs requestSet
		if ct != nil {
			ctReqs = plainRequests(o.devices)
		}
		if a != nil {
			crReqs = classicTR111Requests(devs)
		}
		for round := 1; round <= o.rounds; round++ {
			if ct != nil && ctRuns.err == nil {
				fmt.Fprintf(os.Stderr, "round %d/%d: coturn STUN, %d requests, %d source sockets, %v...\n", round, o.rounds, len(ctReqs.pkts), o.load.sockets, o.load.duration)
				ctRuns.add(runLoad(ctx, ct.addr, ct.pid(), ctReqs, o.load))
			}
			if a != nil && crRuns.err == nil {
				fmt.Fprintf(os.Stderr, "round %d/%d: crrelay STUN, %d devices, %d source sockets, %v...\n", round, o.rounds, len(devs), o.load.sockets, o.load.duration)
				m0, _ := scrapeMetrics(a)
				crRuns.add(runLoad(ctx, stunAddr, a.pid(), crReqs, o.load))
				if m1, err := scrapeMetrics(a); err == nil {
					if v, ok := m1[metricSTUNDropped]; ok {
						crRuns.drops += v - m0[metricSTUNDropped]
						crRuns.dropsKnown = true
					}
				}
			}
		}
		rows = append(rows, stunRows(o, &ctRuns, &crRuns)...)
	}

	if o.udpCR {
		if a != nil {
			rows = append(rows, udpCRRows(ctx, a, stunAddr, wdevs, o.wake)...)
		} else {
			rows = append(rows, row{udpCRName("one wake per request", len(wdevs)), unavailable(crRuns.err.Error()), udpCRGoal, ""})
		}
	}
	return rows
}

// serverRuns is one server's rounds.
type serverRuns struct {
	results    []loadResult
	err        error // why it could not be measured (further rounds are skipped)
	drops      float64
	dropsKnown bool
}

func (s *serverRuns) add(r loadResult, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "  failed:", err)
		s.err = err
		return
	}
	s.results = append(s.results, r)
}

// median returns the median answers/s and answers per CPU-second over
// the rounds, the round whose answers/s is the median, and every round's
// figures as text.
func (s *serverRuns) median() (rate, perCPU float64, rep loadResult, rates, perCPUs string) {
	rs := slices.Clone(s.results)
	slices.SortFunc(rs, func(a, b loadResult) int { return cmp.Compare(a.rate(), b.rate()) })
	rep = rs[(len(rs)-1)/2]
	pcs := make([]float64, len(rs))
	var rt, pt []string
	for i, r := range s.results {
		pcs[i] = r.perCPUSecond()
		rt = append(rt, fmt.Sprintf("%.0fk", r.rate()/1000))
		pt = append(pt, fmt.Sprintf("%.0fk", r.perCPUSecond()/1000))
	}
	slices.Sort(pcs)
	return rep.rate(), pcs[(len(pcs)-1)/2], rep, strings.Join(rt, ", "), strings.Join(pt, ", ")
}

func stunRows(o stunOptions, ct, cr *serverRuns) []row {
	var rows []row
	roundsNote := func(s *serverRuns, figures string) string {
		n := fmt.Sprintf("median of %d rounds (%s)", len(s.results), figures)
		if len(s.results) == 1 {
			n = "1 round"
		}
		if s.err != nil {
			n += "; a later round failed: " + strings.SplitN(s.err.Error(), "\n", 2)[0]
		}
		return n
	}
	var ctRate, ctPerCPU float64
	if o.coturn {
		const name = "STUN answers/s, coturn --stun-only (plain RFC 5389)"
		const perName = "STUN answers per CPU-second, coturn"
		if len(ct.results) == 0 {
			rows = append(rows, row{name, unavailable(ct.err.Error()), "(reference)", ""},
				row{perName, unavailable("see above"), "(reference)", ""})
		} else {
			var rep loadResult
			var rates, pcs string
			ctRate, ctPerCPU, rep, rates, pcs = ct.median()
			rows = append(rows,
				row{name, fmt.Sprintf("%.0f/s", ctRate), "(reference)",
					roundsNote(ct, rates) + "; " + loadNote(rep, "coturn: 1 UDP thread per CPU, SO_REUSEPORT")},
				row{perName, fmt.Sprintf("%.0f", ctPerCPU), "(reference)", roundsNote(ct, pcs) + "; " + cpuNote(rep, "coturn")})
		}
	}
	name := fmt.Sprintf("STUN answers/s, crrelay (TR-111: USERNAME, C-R-B, MI 3489; %d devices)", o.devices)
	const perName = "STUN answers per CPU-second, crrelay"
	if len(cr.results) == 0 {
		return append(rows, row{name, unavailable(cr.err.Error()), "≥ coturn", ""},
			row{perName, unavailable("see above"), "≥ 1.5× coturn", ""})
	}
	crRate, crPerCPU, rep, rates, pcs := cr.median()
	drops := ""
	if cr.dropsKnown {
		drops = fmt.Sprintf("; crrelay counted %.0f dropped over all rounds", cr.drops)
	}
	rows = append(rows,
		row{name, fmt.Sprintf("%.0f/s", crRate), "≥ coturn",
			roundsNote(cr, rates) + "; " + loadNote(rep, fmt.Sprintf("crrelay: --stun-sockets %d, integrity %s", o.srvSocks, o.integrity)) + drops},
		row{perName, fmt.Sprintf("%.0f", crPerCPU), "≥ 1.5× coturn",
			roundsNote(cr, pcs) + "; " + cpuNote(rep, "crrelay") + "; per request it also looks the device up, checks the HMAC and refreshes its binding"})
	if !o.coturn {
		return rows
	}
	const ratioCPU, ratioRate = "Ratio crrelay/coturn, answers per CPU-second", "Ratio crrelay/coturn, answers/s"
	if ctRate == 0 || ctPerCPU == 0 {
		const why = "no coturn figure (see above)"
		return append(rows, row{ratioCPU, unavailable(why), "≥ 1.5×", ""}, row{ratioRate, unavailable(why), "≥ 1.0×", ""})
	}
	pc, ps := crPerCPU/ctPerCPU, crRate/ctRate
	return append(rows,
		row{ratioCPU, fmt.Sprintf("%.2f×", pc), "≥ 1.5×", verdict(pc >= 1.5) +
			"; crrelay authenticates TR-111 requests (HMAC-SHA1) and records bindings, coturn answers plain requests"},
		row{ratioRate, fmt.Sprintf("%.2f×", ps), "≥ 1.0×", verdict(ps >= 1.0) + "; same generator, sockets and window"})
}

// startSTUNAppliance starts crrelay with its STUN server on a loopback
// port, and returns once that answers.
func startSTUNAppliance(ctx context.Context, binary string, o stunOptions) (*appliance, netip.AddrPort, error) {
	port, err := freeUDPPort()
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
	args := []string{
		"--stun-listen", addr.String(),
		"--stun-integrity", o.integrity,
		"--stun-sockets", fmt.Sprint(o.srvSocks),
		"--stun-rate-per-source", "0", // every request comes from 127.0.0.1
	}
	a, err := startAppliance(ctx, binary, max(o.regConc, o.wake.conc), args...)
	if err != nil {
		if !serveHasFlag(binary, "stun-listen") {
			err = fmt.Errorf("%s serve has no --stun-listen flag yet (STUN server not wired into cmd): %w", binary, err)
		}
		return nil, addr, err
	}
	if err := waitSTUN(ctx, addr, 15*time.Second); err != nil {
		a.stop()
		return nil, addr, fmt.Errorf("crrelay STUN: %w", err)
	}
	return a, addr, nil
}

// register puts devs through the API from conc workers and returns how
// long it took.
func register(ctx context.Context, c *apiclient.Client, devs []stunDevice, conc int) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	errc := make(chan error, conc)
	start := time.Now()
	done := make(chan struct{})
	go func() { // progress, for long registrations
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(os.Stderr, "  %d/%d registered\n", min(int(next.Load()), len(devs)), len(devs))
			}
		}
	}()
	defer close(done)
	for range conc {
		go func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(devs) {
					errc <- nil
					return
				}
				d := &devs[i]
				in := apiclient.DeviceInput{STUNUsername: &d.user, STUNPassword: &d.pass}
				if d.udp {
					in.Username, in.Password = &d.crUser, &d.crPass
					in.Transports = []string{"udp"}
				}
				if _, err := c.PutDevice(ctx, d.id, in); err != nil {
					cancel()
					errc <- fmt.Errorf("PUT %s: %w", d.id, err)
					return
				}
			}
			errc <- ctx.Err()
		}()
	}
	var errs []error
	for range conc {
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return 0, errs[0]
	}
	return time.Since(start), ctx.Err()
}

// loadNote describes a load run: where the CPU went, what was lost, and
// what limited it.
func loadNote(r loadResult, server string) string {
	srv, gen, mach := cores(r.server, r.elapsed), cores(r.gen, r.elapsed), cores(r.machine, r.elapsed)
	soft := cores(r.softirq, r.elapsed)
	other := mach - srv - gen // softirq is inside srv and gen
	ncpu := runtime.NumCPU()
	var limit string
	switch {
	case gen >= 0.9:
		limit = "LIMIT: the load generator (≥ 0.9 cores), not the server"
	case srv < 0.8 && float64(r.answers) < 0.98*float64(r.sent):
		limit = "LIMIT: answers lag sends while the server uses < 0.8 cores: drops or scheduling, not server CPU"
	case mach >= 0.9*float64(ncpu):
		limit = "limit: the machine's CPUs, shared by server and generator"
	default:
		limit = "limit: the server"
	}
	n := fmt.Sprintf("%s; every device had sent once after %.1fs, then a %.2fs window, %d sent, %d answered%s; "+
		"CPU in cores: server %.2f, generator %.2f, machine %.2f of %d (softirq %.2f, in the senders' system time); %s",
		server, r.firstPass.Seconds(), r.elapsed.Seconds(), r.sent, r.answers, r.lossNote(), srv, gen, mach, ncpu, soft, limit)
	return n + otherLoad(other)
}

// otherLoad warns when processes other than the server and the bench
// used the machine's CPUs during a measurement.
func otherLoad(cores float64) string {
	if cores < 0.15 {
		return ""
	}
	return fmt.Sprintf("; OTHER LOAD: %.2f cores used by other processes, answers/s understated", cores)
}

// cpuNote says where an answers-per-CPU-second figure comes from.
func cpuNote(r loadResult, server string) string {
	sys := 0.0
	if r.server > 0 {
		sys = 100 * r.serverSys.Seconds() / r.server.Seconds()
	}
	return fmt.Sprintf("%d answers / %.2fs of %s CPU (utime+stime from /proc, %.0f%% system)", r.answers, r.server.Seconds(), server, sys)
}

func verdict(ok bool) string {
	if ok {
		return "goal met"
	}
	return "GOAL MISSED"
}

func unavailable(why string) string {
	why, _, _ = strings.Cut(strings.TrimSpace(why), "\n")
	if len(why) > 160 {
		why = why[:160] + "…"
	}
	return "unavailable: " + why
}
