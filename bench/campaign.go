package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/campaign"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/sim"
	"github.com/crrelay/crrelay/wake"
)

// The campaign section of the bench (issue 5): bulk wakes through
// POST /v1/campaigns per transport over a registered fleet that can all
// be reached (a few rounds over the same devices, the median reported, as
// the machine is shared and single runs swing), and the end-to-end
// latency of single wakes, from the API call to the simulated CPE
// accepting the request.
//
// The appliance coalesces wakes of one device within --wake-min-spacing
// (1s by default): a campaign wakes every device of its fleet once, the
// latency runs wake distinct devices, and a device a latency run woke is
// not woken by a campaign until that second has passed.
//
// Two appliances run one after the other. The first runs STUN and HTTP:
// the UDP devices share sockets round robin beyond the open-file limit
// (as in udpcr.go), so the UDP and HTTP fleets fit beside each other and
// are measured in turn. The second runs the XMPP broker, whose sessions
// hold one descriptor in each process and take the whole limit.

// campaignOptions sizes the section. A fleet of zero skips its rows.
type campaignOptions struct {
	udpDevices   int // raw device sockets, as in udpcr.go
	xmppSessions int // capped by RLIMIT_NOFILE (fitSessions)
	httpDevices  int // CPEs of one sim.Fleet listener
	concUDP      int // campaign concurrency per transport
	concXMPP     int
	concHTTP     int
	rounds       int           // campaigns per transport; the figure is their median
	e2eSamples   int           // sequential wakes per transport for the latency rows
	timeout      time.Duration // for one campaign to finish
}

func defaultCampaignOptions() campaignOptions {
	return campaignOptions{
		udpDevices:   30000,
		xmppSessions: 20000,
		httpDevices:  20000,
		concUDP:      256,
		concXMPP:     256,
		concHTTP:     256,
		rounds:       3,
		e2eSamples:   2000,
		timeout:      60 * time.Second,
	}
}

// flags registers the options on fs, defaults from o.
func (o *campaignOptions) flags(fs *flag.FlagSet) {
	fs.IntVar(&o.udpDevices, "campaign-udp-devices", o.udpDevices, "devices of the UDP campaign, bound from sockets shared round robin beyond the open-file limit (0 skips the UDP rows)")
	fs.IntVar(&o.xmppSessions, "campaign-xmpp-sessions", o.xmppSessions, "XMPP sessions of the XMPP campaign, capped by RLIMIT_NOFILE (0 skips the XMPP rows)")
	fs.IntVar(&o.httpDevices, "campaign-http-devices", o.httpDevices, "HTTP Digest CPEs of the HTTP campaign, on one simulated fleet listener (0 skips the HTTP rows)")
	fs.IntVar(&o.concUDP, "campaign-concurrency-udp", o.concUDP, "concurrency of the UDP campaign")
	fs.IntVar(&o.concXMPP, "campaign-concurrency-xmpp", o.concXMPP, "concurrency of the XMPP campaign")
	fs.IntVar(&o.concHTTP, "campaign-concurrency-http", o.concHTTP, "concurrency of the HTTP campaign (also the appliance's --http-cr-max-per-host: every CPE is on 127.0.0.1)")
	fs.IntVar(&o.rounds, "campaign-rounds", o.rounds, "campaigns per transport over the same devices, a second apart; the row gives their median")
	fs.IntVar(&o.e2eSamples, "e2e-samples", o.e2eSamples, "sequential API wakes of distinct devices per transport for the end-to-end latency rows")
	fs.DurationVar(&o.timeout, "campaign-timeout", o.timeout, "time a campaign may take before it is cancelled and reported unfinished")
}

// The transports of the section, in the order of its rows.
var campaignTransports = []struct {
	t       registry.Transport
	label   string
	goal    float64 // devices/s
	goalS   string
	e2eGoal string // p99 goal of the latency row; "" for none
}{
	{registry.TransportUDP, "UDP", 10000, "≥ 10,000/s", "p99 < 5 ms"},
	{registry.TransportXMPP, "XMPP", 10000, "≥ 10,000/s", "p99 < 5 ms"},
	{registry.TransportHTTP, "HTTP Digest", 3000, "≥ 3,000/s", ""},
}

const e2eGoalP99 = 5 * time.Millisecond

// campaignPoll is how often the bench reads a running campaign.
const campaignPoll = 20 * time.Millisecond

// campaignResult is one campaign's run.
type campaignResult struct {
	err      error
	devices  int
	conc     int
	camp     api.Campaign  // as last read
	wall     time.Duration // from the POST to the first read showing it ended
	post     time.Duration // the POST alone
	c0, c1   cpuSnap
	cpuErr   error
	m0, m1   map[string]float64
	received string    // what the CPEs got, for the notes
	rounds   []float64 // every round's devices/s, when there were several
	bench    string    // what the bench's CPU did meanwhile
	setup    string    // how the fleet was made ready
}

// e2eResult is one transport's latency run.
type e2eResult struct {
	err       error
	n         int             // wakes made
	lat       []time.Duration // call → CPE accepted it
	apiLat    []time.Duration // call → API answer
	missing   int             // answered as reached, never seen by the CPE
	coalesced int
	outcomes  map[string]int // wakes not answered as reached
	c0, c1    cpuSnap
	cpuErr    error
	cpes      string // what the CPEs are
	end       time.Time
}

type campaignResults struct {
	camp map[registry.Transport]*campaignResult
	e2e  map[registry.Transport]*e2eResult
}

// campaignSection runs both phases and returns the rows: the campaigns'
// throughput, then the latencies, per transport.
func campaignSection(ctx context.Context, binary string, regConc int, o campaignOptions) []row {
	res := campaignResults{camp: map[registry.Transport]*campaignResult{}, e2e: map[registry.Transport]*e2eResult{}}
	if o.udpDevices > 0 || o.httpDevices > 0 {
		campaignSTUNHTTP(ctx, binary, regConc, o, res)
	}
	if o.xmppSessions > 0 {
		campaignXMPP(ctx, binary, regConc, o, res)
	}
	var rows []row
	for _, t := range campaignTransports {
		if r := res.camp[t.t]; r != nil {
			rows = append(rows, campaignRow(t.t, r))
		}
	}
	for _, t := range campaignTransports {
		if r := res.e2e[t.t]; r != nil {
			rows = append(rows, e2eRow(t.t, r))
		}
	}
	return rows
}

// failAll records err as the outcome of every run of ts not yet made.
func (res campaignResults) failAll(err error, ts ...registry.Transport) {
	fmt.Fprintln(os.Stderr, "campaign:", err)
	for _, t := range ts {
		if res.camp[t] == nil {
			res.camp[t] = &campaignResult{err: err}
		}
		if res.e2e[t] == nil {
			res.e2e[t] = &e2eResult{err: err}
		}
	}
}

// campaignSTUNHTTP is the first phase: one appliance with its STUN server
// and HTTP client, the UDP devices bound from raw sockets, a small sim
// STUN fleet for the UDP latency (the raw sockets cannot say when a
// request arrived), and one sim HTTP fleet for both HTTP rows.
func campaignSTUNHTTP(ctx context.Context, binary string, regConc int, o campaignOptions, res campaignResults) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ts []registry.Transport
	if o.udpDevices > 0 {
		ts = append(ts, registry.TransportUDP)
	}
	if o.httpDevices > 0 {
		ts = append(ts, registry.TransportHTTP)
	}
	fail := func(err error) { res.failAll(err, ts...) }
	e2eUDP := 0
	if o.udpDevices > 0 {
		e2eUDP = o.e2eSamples
	}

	// Descriptors: the sim STUN CPEs' sockets, the HTTP fleet's
	// connections, the API's, and the rest for the UDP devices; beyond
	// that, the devices share sockets.
	reserve := e2eUDP + 2*o.concHTTP + 2000
	nsock := o.udpDevices
	if err := raiseNoFile(uint64(nsock + reserve)); err != nil {
		var lim syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || raiseNoFile(lim.Max) != nil || int(lim.Max) < reserve+1000 {
			fail(fmt.Errorf("%d device sockets: %w", nsock, err))
			return
		}
		nsock = int(lim.Max) - reserve
	}

	a, stunAddr, err := startCampaignAppliance(ctx, binary, regConc, o)
	if err != nil {
		fail(err)
		return
	}
	defer a.stop()

	// The fleets, registered before any of them binds.
	var hfleet *sim.Fleet
	var hrec *receipts
	var hdevs []sim.Device
	var hbase string
	const httpPrefix = "chttp-"
	if o.httpDevices > 0 {
		hrec = newReceipts(httpPrefix, o.httpDevices)
		hfleet, err = sim.NewFleet(sim.FleetConfig{Prefix: httpPrefix, Count: o.httpDevices,
			Modes: []sim.Mode{sim.ModeDigestMD5}, Seed: 42, OnWake: hrec.note})
		if err != nil {
			fail(err)
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail(err)
			return
		}
		fctx, fstop := context.WithCancel(ctx)
		fdone := make(chan error, 1)
		go func() { fdone <- hfleet.Serve(fctx, ln) }()
		defer func() { fstop(); <-fdone }()
		hbase = "http://" + ln.Addr().String()
		hdevs = hfleet.Devices(hbase)
	}
	udevs := makeDevices("cudp-", o.udpDevices, true)
	var sfleet *sim.STUNFleet
	var srec, sbound *receipts
	const stunPrefix = "ce2e-udp-"
	if e2eUDP > 0 {
		srec, sbound = newReceipts(stunPrefix, e2eUDP), newReceipts(stunPrefix, e2eUDP)
		sfleet, err = sim.NewSTUNFleet(sim.STUNFleetConfig{Prefix: stunPrefix, Count: e2eUDP, Server: stunAddr, Seed: 42,
			OnWake:    srec.note,
			OnBinding: func(name string, _ netip.AddrPort, at time.Time) { sbound.note(name, at) }})
		if err != nil {
			fail(err)
			return
		}
	}
	n := len(hdevs) + len(udevs) + e2eUDP
	fmt.Fprintf(os.Stderr, "campaign: registering %d devices (%d HTTP, %d UDP, %d sim STUN CPEs), %d concurrent...\n",
		n, len(hdevs), len(udevs), e2eUDP, regConc)
	t0 := time.Now()
	if hfleet != nil {
		err = hfleet.Register(ctx, sim.APIRegistrar{Client: a.api}, hbase, regConc)
	}
	if err == nil && len(udevs) > 0 {
		_, err = register(ctx, a.api, udevs, regConc)
	}
	if err == nil && sfleet != nil {
		err = sfleet.Register(ctx, sim.APIRegistrar{Client: a.api}, regConc)
	}
	if err != nil {
		fail(fmt.Errorf("registering devices: %w", err))
		return
	}
	regNote := fmt.Sprintf("%d devices registered in %.1fs", n, time.Since(t0).Seconds())

	// The UDP devices bind from their sockets.
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var bindNote string
	if len(udevs) > 0 {
		nsock = min(nsock, len(udevs))
		for range nsock {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(stunAddr))
			if err != nil {
				fail(err)
				return
			}
			conns = append(conns, c)
		}
		fmt.Fprintf(os.Stderr, "campaign: binding %d UDP devices from %d sockets...\n", len(udevs), nsock)
		t0 := time.Now()
		bound, err := bindAll(ctx, conns, udevs)
		if err == nil && bound == 0 {
			err = errors.New("no UDP device got a success answer to its binding request")
		}
		if err != nil {
			fail(err)
			return
		}
		bindNote = fmt.Sprintf("%d of %d devices bound from %d sockets (%.1f devices a socket) in %.1fs",
			bound, len(udevs), nsock, float64(len(udevs))/float64(nsock), time.Since(t0).Seconds())
	}

	// UDP latency: the sim STUN CPEs, each on its own socket, run only
	// for it.
	if sfleet != nil {
		sctx, sstop := context.WithCancel(ctx)
		sdone := make(chan error, 1)
		go func() { sdone <- sfleet.Run(sctx) }()
		stopSTUN := func() error { sstop(); return <-sdone }
		deadline := time.Now().Add(30 * time.Second)
		for sbound.distinct() < e2eUDP && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
		var ids []string
		for _, d := range sfleet.Devices() {
			ids = append(ids, d.ID)
		}
		fmt.Fprintf(os.Stderr, "campaign: UDP latency, %d sequential wakes (%d of %d sim STUN CPEs bound)...\n", len(ids), sbound.distinct(), e2eUDP)
		r := runE2E(ctx, a, registry.TransportUDP, ids, srec)
		r.cpes = fmt.Sprintf("sim STUN CPEs, each on its own socket (%d of %d bound before the run), checking signature, username, id and ts", sbound.distinct(), e2eUDP)
		res.e2e[registry.TransportUDP] = &r
		if err := stopSTUN(); err != nil {
			fmt.Fprintln(os.Stderr, "campaign: sim STUN fleet:", err)
		}
	}
	if hfleet != nil {
		ids := make([]string, min(o.e2eSamples, len(hdevs)))
		for i := range ids {
			ids[i] = hdevs[i].ID
		}
		fmt.Fprintf(os.Stderr, "campaign: HTTP latency, %d sequential wakes...\n", len(ids))
		r := runE2E(ctx, a, registry.TransportHTTP, ids, hrec)
		r.cpes = "sim HTTP CPEs (Digest MD5, qop=auth) on one listener, a fresh TCP connection each"
		res.e2e[registry.TransportHTTP] = &r
	}

	// The UDP campaign.
	if len(udevs) > 0 {
		ids := make([]string, len(udevs))
		for i, d := range udevs {
			ids[i] = d.id
		}
		r := runRounds(ctx, a, registry.TransportUDP, ids, o.concUDP, o, time.Time{},
			func() { drainCRs(conns, udevs) },
			func(r *campaignResult) {
				time.Sleep(time.Second) // the relay's retransmitted copies
				got, datagrams, bad := drainCRs(conns, udevs)
				r.received = fmt.Sprintf("the devices' sockets received %d distinct valid UDP connection requests (%d datagrams with the relay's copies, %d invalid)", got, datagrams, bad)
			})
		r.bench = "idle device sockets and polling"
		r.setup = regNote + "; " + bindNote
		res.camp[registry.TransportUDP] = &r
	}

	// The HTTP campaign, once every device the latency run woke may be
	// woken again.
	if hfleet != nil {
		var last time.Time
		if e := res.e2e[registry.TransportHTTP]; e != nil {
			last = e.end
		}
		ids := make([]string, len(hdevs))
		for i, d := range hdevs {
			ids[i] = d.ID
		}
		r := runRounds(ctx, a, registry.TransportHTTP, ids, o.concHTTP, o, last, hrec.reset, func(r *campaignResult) {
			r.received = fmt.Sprintf("the sim CPEs accepted %d requests from %d distinct devices", hrec.total(), hrec.distinct())
		})
		r.bench = "the sim CPEs answering Digest, a fresh TCP connection each"
		r.setup = regNote
		res.camp[registry.TransportHTTP] = &r
	}
}

// startCampaignAppliance starts the first phase's appliance: STUN on a
// loopback port (integrity required, no per-source rate: every device is
// on 127.0.0.1), HTTP connection requests allowed to loopback with as
// many per host as the HTTP campaign runs at once (every sim CPE is on
// 127.0.0.1), no XMPP broker.
func startCampaignAppliance(ctx context.Context, binary string, conns int, o campaignOptions) (*appliance, netip.AddrPort, error) {
	port, err := freeUDPPort()
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
	args := []string{
		"--stun-listen", addr.String(),
		"--stun-integrity", "required",
		"--stun-sockets", strconv.Itoa(runtime.NumCPU()),
		"--stun-rate-per-source", "0",
		"--http-cr-allow-cidrs", "127.0.0.0/8",
		"--http-cr-max-per-host", strconv.Itoa(o.concHTTP),
		"--http-cr-max-concurrent", strconv.Itoa(max(1024, o.concHTTP)),
	}
	a, err := startAppliance(ctx, binary, conns, append(args, campaignMaxArgs(o)...)...)
	if err != nil {
		return nil, addr, err
	}
	if err := waitSTUN(ctx, addr, 15*time.Second); err != nil {
		a.stop()
		return nil, addr, fmt.Errorf("crrelay STUN: %w", err)
	}
	return a, addr, nil
}

// campaignMaxArgs raises --campaign-max-concurrency (1024 by default)
// when a campaign of the bench asks for more.
func campaignMaxArgs(o campaignOptions) []string {
	if m := max(o.concUDP, o.concXMPP, o.concHTTP); m > 1024 {
		return []string{"--campaign-max-concurrency", strconv.Itoa(m)}
	}
	return nil
}

// campaignXMPP is the second phase: an appliance with its broker on
// loopback, as many sim XMPP CPEs as the open-file limit allows, logged
// in, woken one at a time and then by one campaign.
func campaignXMPP(ctx context.Context, binary string, regConc int, o campaignOptions, res campaignResults) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) { res.failAll(err, registry.TransportXMPP) }
	xo := defaultXMPPOptions()
	xo.sessions = o.xmppSessions
	xo, capped := fitSessions(xo)
	if err := raiseNoFile(uint64(xo.sessions) + fdMargin); err != nil {
		fail(fmt.Errorf("raising RLIMIT_NOFILE: %w", err))
		return
	}
	const domain = "bench.example"
	dir, err := os.MkdirTemp("", "crrelay-bench-campaign-")
	if err != nil {
		fail(err)
		return
	}
	defer os.RemoveAll(dir)
	certFile, keyFile := dir+"/cert.pem", dir+"/key.pem"
	pool, err := writeSelfSigned(certFile, keyFile, domain)
	if err != nil {
		fail(err)
		return
	}
	ports, err := freeTCPPorts(1)
	if err != nil {
		fail(err)
		return
	}
	c2s := fmt.Sprintf("127.0.0.1:%d", ports[0])
	args := []string{
		"--xmpp-listen", c2s, "--xmpp-domain", domain, "--xmpp-cert", certFile, "--xmpp-key", keyFile,
		"--xmpp-max-sessions", strconv.Itoa(xo.sessions + 64), "--xmpp-conn-rate-per-ip", "0",
		"--stun-listen=", // no STUN server: the default port may be taken
	}
	a, err := startAppliance(ctx, binary, regConc, append(args, campaignMaxArgs(o)...)...)
	if err != nil {
		fail(err)
		return
	}
	defer a.stop()

	const prefix = "cxmpp-"
	rec, online := newReceipts(prefix, xo.sessions), newReceipts(prefix, xo.sessions)
	fleet, err := sim.NewXMPPFleet(sim.XMPPFleetConfig{
		Prefix: prefix, Count: xo.sessions, Server: c2s, Domain: domain,
		TLSConfig:        &tls.Config{ServerName: domain, RootCAs: pool},
		Mechanism:        xo.mech,
		AllowedJIDs:      []string{"crrelay@" + domain + "/relay"},
		KeepAlive:        time.Hour, // idle: nothing but the sessions themselves
		LoginConcurrency: xo.loginConc,
		RetryInitial:     time.Second,
		RetryMax:         5 * time.Second,
		Dial:             sourceDialer(c2s, xo.sourceAddrs),
		Pollers:          runtime.GOMAXPROCS(0),
		Seed:             xo.seed,
		OnWake:           rec.note,
		OnOnline:         func(name, _ string, at time.Time) { online.note(name, at) },
	})
	if err != nil {
		fail(err)
		return
	}
	fmt.Fprintf(os.Stderr, "campaign: registering %d XMPP devices, %d concurrent...\n", xo.sessions, regConc)
	t0 := time.Now()
	if err := apiXMPPProvisioner(a.api, regConc)(ctx, fleet.Devices(), xmppAccount{}); err != nil {
		fail(fmt.Errorf("registering XMPP devices: %w", err))
		return
	}
	regTook := time.Since(t0)

	fmt.Fprintf(os.Stderr, "campaign: %d XMPP sessions logging in, %d at a time...\n", xo.sessions, xo.loginConc)
	fctx, fstop := context.WithCancel(ctx)
	fdone := make(chan struct{})
	go func() { fleet.Run(fctx); close(fdone) }()
	defer func() { fstop(); <-fdone }()
	t0 = time.Now()
	deadline := t0.Add(time.Minute + time.Duration(xo.sessions)*5*time.Millisecond)
	for online.distinct() < xo.sessions && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	loginTook := time.Since(t0)
	var ids []string
	for _, c := range fleet.CPEs() {
		if c.Online() {
			ids = append(ids, c.Name())
		}
	}
	if len(ids) == 0 {
		fail(fmt.Errorf("no XMPP session logged in: %s", fleet.Stats().Total.LastError))
		return
	}
	setup := fmt.Sprintf("%d devices registered in %.1fs; %d of %d sessions logged in (STARTTLS, %s) in %.1fs",
		xo.sessions, regTook.Seconds(), len(ids), xo.sessions, xo.mech, loginTook.Seconds())
	if capped != "" {
		setup += "; " + capped
	}

	e2eIDs := ids[:min(o.e2eSamples, len(ids))]
	fmt.Fprintf(os.Stderr, "campaign: XMPP latency, %d sequential wakes...\n", len(e2eIDs))
	e := runE2E(ctx, a, registry.TransportXMPP, e2eIDs, rec)
	e.cpes = "sim XMPP CPEs over TLS, answering the IQ (OnWake once the answer is written)"
	res.e2e[registry.TransportXMPP] = &e

	r := runRounds(ctx, a, registry.TransportXMPP, ids, o.concXMPP, o, e.end, rec.reset, func(r *campaignResult) {
		r.received = fmt.Sprintf("the sim CPEs accepted %d requests from %d distinct devices; %d sessions dropped so far", rec.total(), rec.distinct(), fleet.Stats().Total.Drops)
	})
	r.bench = "the sim CPEs answering IQs over TLS"
	r.setup = setup
	res.camp[registry.TransportXMPP] = &r
}

// wakeSpacing is more than the appliance's --wake-min-spacing (1s): a
// device woken this long ago is woken afresh, not coalesced.
const wakeSpacing = 1100 * time.Millisecond

// runRounds runs o.rounds campaigns over ids in turn, each once every
// device has been woken more than wakeSpacing ago (the last one at
// latest at last, or at the end of the round before), and returns the
// round of median rate with every round's rate. before and after, when
// set, run around each round: after says what the CPEs received.
func runRounds(ctx context.Context, a *appliance, t registry.Transport, ids []string, conc int, o campaignOptions,
	last time.Time, before func(), after func(*campaignResult)) campaignResult {
	var rs []campaignResult
	for i := range max(1, o.rounds) {
		time.Sleep(time.Until(last.Add(wakeSpacing)))
		if before != nil {
			before()
		}
		fmt.Fprintf(os.Stderr, "campaign: %s, %d devices, concurrency %d, round %d/%d...\n", t, len(ids), conc, i+1, max(1, o.rounds))
		r := runCampaign(ctx, a, t, ids, conc, o.timeout)
		last = time.Now()
		if after != nil && r.err == nil {
			after(&r)
		}
		rs = append(rs, r)
		if r.err != nil {
			break // the round says why; later ones would too
		}
	}
	sorted := slices.Clone(rs)
	slices.SortStableFunc(sorted, func(x, y campaignResult) int { return cmp.Compare(x.rate(), y.rate()) })
	med := sorted[(len(sorted)-1)/2]
	if rs[len(rs)-1].err != nil {
		med = rs[len(rs)-1] // a failed round is the figure
	}
	for _, r := range rs {
		med.rounds = append(med.rounds, r.rate())
	}
	return med
}

// rate is the devices done per second of wall time, or 0.
func (r *campaignResult) rate() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(r.camp.Done) / r.wall.Seconds()
}

// runCampaign starts one campaign over ids with transports [t], reads it
// every campaignPoll until it has ended, and returns what it measured. A
// campaign still running after timeout is cancelled.
func runCampaign(ctx context.Context, a *appliance, t registry.Transport, ids []string, conc int, timeout time.Duration) campaignResult {
	r := campaignResult{devices: len(ids), conc: conc}
	r.m0, _ = scrapeMetrics(a)
	c0, err0 := takeCPUSnap(a.pid())
	spec := api.CampaignSpec{Devices: ids, Concurrency: conc, Transports: []string{string(t)}, Name: "bench " + string(t)}
	start := time.Now()
	c, err := a.api.StartCampaign(ctx, spec)
	r.post = time.Since(start)
	if err != nil {
		r.err = fmt.Errorf("POST /v1/campaigns: %w", err)
		return r
	}
	for c.State == campaign.StateRunning {
		if time.Since(start) > timeout {
			c, err = a.api.CancelCampaign(ctx, c.ID)
			r.err = fmt.Errorf("not done after %v: cancelled with %d of %d done", timeout, c.Done, c.Total)
			if err != nil {
				r.err = fmt.Errorf("not done after %v, and cancelling failed: %w", timeout, err)
			}
			break
		}
		time.Sleep(campaignPoll)
		if c, err = a.api.GetCampaign(ctx, c.ID); err != nil {
			r.err = fmt.Errorf("GET /v1/campaigns/{id}: %w", err)
			return r
		}
	}
	r.wall = time.Since(start)
	c1, err1 := takeCPUSnap(a.pid())
	r.m1, _ = scrapeMetrics(a)
	r.camp = c
	r.c0, r.c1, r.cpuErr = c0, c1, errors.Join(err0, err1)
	return r
}

// runE2E wakes ids one at a time through the API with transports [t] and
// measures, for each, the time from the call to its CPE accepting the
// request as rec saw it. After each answer it waits (up to a second) for
// the CPE to have received the request, so that no two wakes overlap.
func runE2E(ctx context.Context, a *appliance, t registry.Transport, ids []string, rec *receipts) e2eResult {
	r := e2eResult{n: len(ids), outcomes: map[string]int{}}
	req := api.WakeRequest{Transports: []registry.Transport{t}}
	c0, err0 := takeCPUSnap(a.pid())
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		i, ok := rec.index(id)
		if !ok {
			r.outcomes["not a CPE of the sim fleet"]++
			continue
		}
		t0 := rec.now()
		res, err := a.api.Wake(ctx, id, req)
		t1 := rec.now()
		if err != nil || !res.Status.OK() {
			r.outcomes[outcomeKey(res, err)]++
			continue
		}
		if res.Coalesced {
			r.coalesced++
		}
		at, ok := rec.wait(i, time.Second)
		if !ok {
			r.missing++
			continue
		}
		r.lat = append(r.lat, at-t0)
		r.apiLat = append(r.apiLat, t1-t0)
	}
	r.end = time.Now()
	c1, err1 := takeCPUSnap(a.pid())
	r.c0, r.c1, r.cpuErr = c0, c1, errors.Join(err0, err1)
	return r
}

func transportInfo(t registry.Transport) (label string, goal float64, goalS, e2eGoal string) {
	for _, c := range campaignTransports {
		if c.t == t {
			return c.label, c.goal, c.goalS, c.e2eGoal
		}
	}
	return string(t), 0, "", ""
}

// campaignRow is the throughput row of one campaign: devices done per
// second of wall time from the POST to the campaign seen done.
func campaignRow(t registry.Transport, r *campaignResult) row {
	label, goal, goalS, _ := transportInfo(t)
	name := fmt.Sprintf("Campaign devices/s, %s (%d devices, concurrency %d)", label, r.devices, r.conc)
	if r.camp.ID == "" {
		return row{name, unavailable(r.err.Error()), goalS, ""}
	}
	c := r.camp
	rate := r.rate()
	reached := c.Counts[string(wake.Delivered)] + c.Counts[string(wake.Sent)]
	ok := rate >= goal && reached == c.Total && c.State == campaign.StateDone
	note := verdict(ok)
	if len(r.rounds) > 1 {
		var rr []string
		for _, x := range r.rounds {
			rr = append(rr, fmt.Sprintf("%.0f/s", x))
		}
		note += fmt.Sprintf("; median of %d rounds over the same devices (%s), the median round's figures follow", len(r.rounds), strings.Join(rr, ", "))
	}
	if r.err != nil {
		note += "; " + r.err.Error()
	}
	if reached < c.Total {
		note += fmt.Sprintf("; ONLY %d OF %d REACHED", reached, c.Total)
	}
	note += fmt.Sprintf("; %d of %d done in %.2fs from the POST to the first read showing %s (the POST, storing the list, took %.0f ms; read every %v); "+
		"the campaign's own elapsed_s %.3f (%.0f/s), rate_per_s %.0f; counts %s, reached (delivered/sent) %d",
		c.Done, c.Total, r.wall.Seconds(), c.State, float64(r.post.Microseconds())/1000, campaignPoll,
		c.ElapsedS, float64(c.Done)/max(c.ElapsedS, 1e-9), c.RatePerS, countsNote(c.Counts), reached)
	if r.m0 != nil && r.m1 != nil {
		d := func(k string) float64 { return r.m1[k] - r.m0[k] }
		note += fmt.Sprintf("; coalesced: %.0f by the wake path (crrelay_wakes_coalesced_total)", d("crrelay_wakes_coalesced_total"))
		if t == registry.TransportUDP {
			note += fmt.Sprintf(", %.0f by the UDP sender (same second; %.0f sent fresh, %.0f retransmitted copies, %.0f send errors)",
				d(metricCRCoalesced), d(metricCRSent), d(metricCRRetransmits), d(metricCRErrors))
		}
		note += fmt.Sprintf("; refused by the wake limits and retried by the campaign: %.0f", d("crrelay_wakes_refused_total"))
	}
	if r.received != "" {
		note += "; " + r.received
	}
	if r.cpuErr == nil {
		el := r.c1.at.Sub(r.c0.at)
		srv, self, mach := r.c1.server-r.c0.server, r.c1.self-r.c0.self, r.c1.machine-r.c0.machine
		note += fmt.Sprintf("; CPU in cores: crrelay %.2f (%.1fs, %.0f devices per crrelay CPU-second), bench %.2f (%s; and reading crrelay's log, an audit line a wake), machine %.2f of %d; %s",
			cores(srv, el), srv.Seconds(), float64(c.Done)/max(srv.Seconds(), 1e-9), cores(self, el), r.bench, cores(mach, el), runtime.NumCPU(),
			limitNote(cores(srv, el), cores(self, el), cores(mach, el), r.conc))
		note += otherLoadNote(cores(mach-srv-self, el), "devices/s understated")
	}
	if r.setup != "" {
		note += "; setup: " + r.setup
	}
	return row{name, fmt.Sprintf("%.0f/s", rate), goalS, note}
}

// limitNote says what limited a campaign, from where the CPU went.
func limitNote(srv, bench, mach float64, conc int) string {
	ncpu := float64(runtime.NumCPU())
	switch {
	case mach >= 0.9*ncpu && srv >= bench:
		return "limit: the machine's CPUs, most of them crrelay's"
	case mach >= 0.9*ncpu:
		return "LIMIT: the machine's CPUs, most of them the bench's simulated CPEs'"
	case srv >= 0.9*ncpu:
		return "limit: crrelay's CPU"
	default:
		return fmt.Sprintf("limit: not CPU (machine below %.1f cores): latency at %d in flight, or a serialisation point in crrelay", 0.9*ncpu, conc)
	}
}

// otherLoadNote warns, as otherLoad does, when other processes used the
// machine's CPUs during a measurement, saying how that skews it.
func otherLoadNote(cores float64, skew string) string {
	if cores < 0.15 {
		return ""
	}
	return fmt.Sprintf("; OTHER LOAD: %.2f cores used by other processes, %s", cores, skew)
}

// countsNote prints a campaign's counts per status.
func countsNote(m map[string]int) string {
	if len(m) == 0 {
		return "{}"
	}
	var parts []string
	for _, k := range []string{"delivered", "sent", "confirmed"} {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	other := map[string]int{}
	for k, n := range m {
		if k != "delivered" && k != "sent" && k != "confirmed" {
			other[k] = n
		}
	}
	if len(other) > 0 {
		parts = append(parts, topOutcomes(other, 5))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// e2eRow is the latency row of one transport.
func e2eRow(t registry.Transport, r *e2eResult) row {
	label, _, _, goalS := transportInfo(t)
	name := fmt.Sprintf("E2E latency API → CPE, %s, p50 / p99", label)
	if r.err != nil {
		return row{name, unavailable(r.err.Error()), goalS, ""}
	}
	if len(r.lat) == 0 {
		return row{name, unavailable("no wake reached its CPE"), goalS, outcomeNote(r.outcomes)}
	}
	note := ""
	if goalS != "" {
		note = verdict(pctDur(r.lat, 99) < e2eGoalP99) + "; "
	}
	notReached := 0
	for _, n := range r.outcomes {
		notReached += n
	}
	note += fmt.Sprintf("%d sequential wakes of distinct devices (POST /v1/devices/{id}/connection-request, transports [%s]), "+
		"from the call to the simulated CPE accepting the request (its OnWake, matched by device name): p50 %s, p90 %s, p99 %s, max %s; "+
		"the API's answer p50 / p99 %s / %s; %d measured, %d answered as reached but not received within 1s, %d not reached%s, %d coalesced; CPEs: %s",
		r.n, t, pct(r.lat, 50), pct(r.lat, 90), pct(r.lat, 99), pct(r.lat, 100), pct(r.apiLat, 50), pct(r.apiLat, 99),
		len(r.lat), r.missing, notReached, outcomeNote(r.outcomes), r.coalesced, r.cpes)
	if r.cpuErr == nil {
		el := r.c1.at.Sub(r.c0.at)
		srv, self, mach := r.c1.server-r.c0.server, r.c1.self-r.c0.self, r.c1.machine-r.c0.machine
		note += fmt.Sprintf("; CPU in cores: crrelay %.2f, bench %.2f (API client and sim CPEs), machine %.2f of %d",
			cores(srv, el), cores(self, el), cores(mach, el), runtime.NumCPU())
		note += otherLoadNote(cores(mach-srv-self, el), "latencies overstated")
	}
	return row{name, pct(r.lat, 50) + " / " + pct(r.lat, 99), goalS, note}
}

// pctDur is pct as a duration.
func pctDur(lat []time.Duration, p float64) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p/100)]
}

// receipts notes when each CPE of a simulated fleet accepted a connection
// request, as the fleets' OnWake callbacks report it, by the index in its
// generated name (the fleet's prefix and a six-digit number from 000001).
// Times are monotonic, since base.
type receipts struct {
	prefix string
	base   time.Time
	first  []atomic.Int64 // time since base of the first, plus one; 0: none yet
	count  []atomic.Int32
	notify chan struct{} // a token after a first receipt, for wait
}

func newReceipts(prefix string, n int) *receipts {
	return &receipts{prefix: prefix, base: time.Now(), first: make([]atomic.Int64, n), count: make([]atomic.Int32, n),
		notify: make(chan struct{}, 1)}
}

// index returns the index of the CPE named name.
func (r *receipts) index(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, r.prefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > len(r.first) {
		return 0, false
	}
	return n - 1, true
}

// note is the fleets' OnWake: it must not block.
func (r *receipts) note(name string, at time.Time) {
	i, ok := r.index(name)
	if !ok {
		return
	}
	r.count[i].Add(1)
	if r.first[i].CompareAndSwap(0, int64(at.Sub(r.base))+1) {
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}
}

// now is the time since base, on the clock of the receipts.
func (r *receipts) now() time.Duration { return time.Since(r.base) }

// wait returns when CPE i first accepted a request, waiting up to d for
// it to do so.
func (r *receipts) wait(i int, d time.Duration) (time.Duration, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		if v := r.first[i].Load(); v != 0 {
			return time.Duration(v - 1), true
		}
		select {
		case <-r.notify:
		case <-timer.C:
			if v := r.first[i].Load(); v != 0 {
				return time.Duration(v - 1), true
			}
			return 0, false
		}
	}
}

// distinct is how many CPEs accepted at least one request.
func (r *receipts) distinct() int {
	n := 0
	for i := range r.first {
		if r.first[i].Load() != 0 {
			n++
		}
	}
	return n
}

// total is how many requests the CPEs accepted.
func (r *receipts) total() int {
	n := 0
	for i := range r.count {
		n += int(r.count[i].Load())
	}
	return n
}

// reset forgets every receipt.
func (r *receipts) reset() {
	for i := range r.first {
		r.first[i].Store(0)
		r.count[i].Store(0)
	}
}
