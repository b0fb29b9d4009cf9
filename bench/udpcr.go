package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/stun"
	"github.com/crrelay/crrelay/wake"
)

// UDP connection requests dispatched through the API. Every device binds
// from a socket of its own, so that each has its own mapped address, as
// CPEs behind distinct NAT mappings do; then the API wakes them round
// robin with transports ["udp"]. A device is woken at most once a second
// (the relay coalesces a second request in the same second, and still
// answers "sent"), so the crrelay metrics tell fresh sends from coalesced
// ones, and the devices' sockets, read after the run, tell how many
// distinct, correctly signed requests arrived.

// wakeOptions sizes the UDP connection request run.
type wakeOptions struct {
	devices   int
	duration  time.Duration
	conc      int
	batch     int // devices per POST /v1/connection-requests
	batchConc int // batch calls in flight
}

// The crrelay metrics the UDP connection request row reads, when present.
const (
	metricCRSent        = "crrelay_stun_udp_cr_sent_total"
	metricCRCoalesced   = "crrelay_stun_udp_cr_coalesced_total"
	metricCRRetransmits = "crrelay_stun_udp_cr_retransmits_total"
	metricCRErrors      = "crrelay_stun_udp_cr_errors_total"
	metricSTUNDropped   = "crrelay_stun_dropped_total"
)

const udpCRGoal = "≥ 20,000/s"

// wakeDriver runs one way of waking devices through the API for the
// run's duration, and reports wakes answered "sent" (and how many of those
// were coalesced with a request already out that second), other outcomes
// by kind, and per-call latencies.
type wakeDriver struct {
	name string // row name
	run  func(ctx context.Context) (sent, coalesced, other int64, outcomes map[string]int, lat []time.Duration, calls string)
}

func udpCRName(kind string, devices int) string {
	return fmt.Sprintf("UDP CR dispatched/s via API, %s (fresh, not coalesced; %d devices)", kind, devices)
}

// udpCRRows binds every device, then measures UDP connection requests
// dispatched through the API twice: one POST per wake, and batches of
// o.batch devices per POST /v1/connection-requests.
func udpCRRows(ctx context.Context, a *appliance, stunAddr netip.AddrPort, devs []stunDevice, o wakeOptions) []row {
	single := udpCRName("one wake per request", len(devs))
	batch := udpCRName(fmt.Sprintf("batches of %d", o.batch), len(devs))
	fail := func(err error) []row {
		fmt.Fprintln(os.Stderr, "UDP CR:", err)
		return []row{{single, unavailable(err.Error()), udpCRGoal, ""}, {batch, unavailable(err.Error()), udpCRGoal, ""}}
	}
	// One socket per device where the open-file limit allows, as CPEs
	// behind distinct NAT mappings have; beyond it, devices share sockets
	// round robin (device i uses socket i mod n), told apart by their
	// STUN and connection-request usernames.
	nsock := len(devs)
	if err := raiseNoFile(uint64(len(devs)) + 1000); err != nil {
		var lim syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || lim.Cur < 2000 {
			return fail(fmt.Errorf("%d device sockets: %w: lower -udp-cr-devices", len(devs), err))
		}
		nsock = int(lim.Cur) - 1000
	}
	conns := make([]*net.UDPConn, nsock)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(stunAddr))
		if err != nil {
			return fail(err)
		}
		conns[i] = c
	}
	fmt.Fprintf(os.Stderr, "UDP CR: binding %d devices from %d sockets...\n", len(devs), nsock)
	t0 := time.Now()
	bound, err := bindAll(ctx, conns, devs)
	if err != nil {
		return fail(err)
	}
	if bound == 0 {
		return fail(fmt.Errorf("no device got a success answer to its binding request"))
	}
	bindNote := fmt.Sprintf("binding %d of %d devices from %d sockets took %.2fs", bound, len(devs), nsock, time.Since(t0).Seconds())

	req := api.WakeRequest{Transports: []registry.Transport{registry.TransportUDP}}
	singleRun := func(ctx context.Context) (int64, int64, int64, map[string]int, []time.Duration, string) {
		var mu sync.Mutex
		outcomes := map[string]int{}
		var coalesced atomic.Int64
		sent, other, lat := load(ctx, o.duration, o.conc, func(i int) bool {
			r, err := a.api.Wake(ctx, devs[i%len(devs)].id, req)
			if err == nil && r.Status == wake.Sent {
				if isCoalesced(r) {
					coalesced.Add(1)
				}
				return true
			}
			k := outcomeKey(r, err)
			mu.Lock()
			outcomes[k]++
			mu.Unlock()
			return false
		})
		return sent, coalesced.Load(), other, outcomes, lat, fmt.Sprintf("%d concurrent", o.conc)
	}
	batchRun := func(ctx context.Context) (int64, int64, int64, map[string]int, []time.Duration, string) {
		var mu sync.Mutex
		outcomes := map[string]int{}
		var sent, coalesced, other atomic.Int64
		ids := make([]string, len(devs))
		for i := range devs {
			ids[i] = devs[i].id
		}
		calls, failedCalls, lat := load(ctx, o.duration, o.batchConc, func(i int) bool {
			from := (i * o.batch) % len(ids)
			chunk := ids[from:min(from+o.batch, len(ids))]
			res, err := a.api.WakeBatch(ctx, api.BatchWakeRequest{Devices: chunk, Transports: req.Transports})
			if err != nil {
				mu.Lock()
				outcomes[outcomeKey(wake.Result{}, err)] += len(chunk)
				mu.Unlock()
				other.Add(int64(len(chunk)))
				return false
			}
			for _, it := range res.Results {
				if it.Result != nil && it.Status == wake.Sent {
					sent.Add(1)
					if isCoalesced(*it.Result) {
						coalesced.Add(1)
					}
					continue
				}
				other.Add(1)
				var r wake.Result
				if it.Result != nil {
					r = *it.Result
				}
				var err error
				if it.Error != nil {
					err = fmt.Errorf("%s", it.Error.Message)
				}
				mu.Lock()
				outcomes[outcomeKey(r, err)]++
				mu.Unlock()
			}
			return true
		})
		return sent.Load(), coalesced.Load(), other.Load(), outcomes, lat,
			fmt.Sprintf("%d calls (%d failed) of %d devices, %d concurrent", calls+failedCalls, failedCalls, o.batch, o.batchConc)
	}

	var rows []row
	for _, d := range []wakeDriver{{single, singleRun}, {batch, batchRun}} {
		// Let every device's last-request second pass, so that the
		// second run starts as fresh as the first.
		time.Sleep(1100 * time.Millisecond)
		drainCRs(conns, devs) // what the previous run left
		fmt.Fprintf(os.Stderr, "UDP CR: %s, %v...\n", d.name, o.duration)
		note, rate, err := udpCRRun(ctx, a, conns, devs, d)
		if err != nil {
			rows = append(rows, row{d.name, unavailable(err.Error()), udpCRGoal, ""})
			continue
		}
		rows = append(rows, row{d.name, fmt.Sprintf("%.0f/s", rate), udpCRGoal, verdict(rate >= 20000) + "; " + note + "; " + bindNote})
	}
	return rows
}

func isCoalesced(r wake.Result) bool {
	n := len(r.Attempts)
	return n > 0 && strings.Contains(r.Attempts[n-1].Detail, "coalesced")
}

// raiseNoFile lifts the open-file limit to at least n: the soft limit up
// to the hard one, and the hard one too where the bench may (root).
func raiseNoFile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	hard := lim.Max
	lim.Cur, lim.Max = n, max(n, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("need %d open files, hard limit %d: %w", n, hard, err)
	}
	return nil
}

func udpCRRun(ctx context.Context, a *appliance, conns []*net.UDPConn, devs []stunDevice, d wakeDriver) (string, float64, error) {
	m0, _ := scrapeMetrics(a)
	c0, cerr0 := takeCPUSnap(a.pid())
	t1 := time.Now()
	sent, coalesced, other, outcomes, lat, calls := d.run(ctx)
	elapsed := time.Since(t1)
	c1, cerr1 := takeCPUSnap(a.pid())
	m1, merr := scrapeMetrics(a)
	// Dispatched means a fresh datagram went out: a wake coalesced with
	// one sent in the same second answers "sent" but dispatches nothing.
	fresh := sent - coalesced
	rate := float64(fresh) / elapsed.Seconds()

	// Give retransmissions time to land, then see what the devices got.
	time.Sleep(time.Second)
	got, datagrams, bad := drainCRs(conns, devs)

	note := fmt.Sprintf("%d fresh requests dispatched; %d wakes answered sent (%.0f/s, %d of them coalesced by the answer's detail), %d not, in %.2fs, %s, per call p50 %s p99 %s",
		fresh, sent, float64(sent)/elapsed.Seconds(), coalesced, other, elapsed.Seconds(), calls, pct(lat, 50), pct(lat, 99))
	if len(outcomes) > 0 {
		note += "; not sent: " + topOutcomes(outcomes, 3)
	}
	if merr == nil && m1 != nil {
		if _, ok := m1[metricCRSent]; ok {
			note += fmt.Sprintf("; relay metrics: %.0f sent fresh, %.0f coalesced, %.0f retransmits, %.0f send errors",
				m1[metricCRSent]-m0[metricCRSent], m1[metricCRCoalesced]-m0[metricCRCoalesced],
				m1[metricCRRetransmits]-m0[metricCRRetransmits], m1[metricCRErrors]-m0[metricCRErrors])
		}
	}
	if cerr0 == nil && cerr1 == nil {
		el := c1.at.Sub(c0.at)
		srv, self, mach, soft := c1.server-c0.server, c1.self-c0.self, c1.machine-c0.machine, c1.softirq-c0.softirq
		note += fmt.Sprintf("; CPU in cores: crrelay %.2f, bench (API client) %.2f, machine %.2f of %d (softirq %.2f)",
			cores(srv, el), cores(self, el), cores(mach, el), runtime.NumCPU(), cores(soft, el))
		if srv > 0 {
			note += fmt.Sprintf(", %.0f wakes per crrelay CPU-second", float64(sent)/srv.Seconds())
		}
		switch {
		case cores(self, el) >= 0.9:
			note += "; LIMIT: the bench's API client (≥ 0.9 cores), not crrelay"
		case cores(mach, el) >= 0.9*float64(runtime.NumCPU()):
			note += "; limit: the machine's CPUs, shared by crrelay and the bench's API client"
		default:
			note += "; limit: crrelay (or its API concurrency)"
		}
		note += otherLoad(cores(mach-srv-self, el))
	}
	note += fmt.Sprintf("; devices received %d distinct valid CRs (%d datagrams, %d invalid), at most one per device-second by design",
		got, datagrams, bad)
	return note, rate, nil
}

// bindAll sends each device's TR-111 Binding Request from its socket until
// it is answered with success (three tries), from a few workers, and
// returns how many were.
func bindAll(ctx context.Context, conns []*net.UDPConn, devs []stunDevice) (int, error) {
	var next, ok atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			buf := make([]byte, stun.MaxMessageSize+1)
			var pkt []byte
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(devs) {
					return
				}
				r := stun.BindingRequest{
					ID: stun.NewTransactionID(true), Username: devs[i].user, ConnectionRequestBinding: true,
					Form: stun.IntegrityRFC3489, Key: []byte(devs[i].pass),
				}
				pkt = stun.AppendBindingRequest(pkt, &r)
				if bindOne(conns[i%len(conns)], pkt, &r.ID, buf) {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(ok.Load()), ctx.Err()
}

func bindOne(c *net.UDPConn, pkt []byte, id *stun.TransactionID, buf []byte) bool {
	for range 3 {
		if _, err := c.Write(pkt); err != nil {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if n >= stun.HeaderSize && string(buf[4:20]) == string(id[:]) {
				_ = c.SetReadDeadline(time.Time{})
				return stun.MessageType(binary.BigEndian.Uint16(buf)) == stun.TypeBindingSuccess
			}
		}
	}
	return false
}

// drainCRs reads, without waiting, every datagram queued on the devices'
// sockets (device i's is conns[i mod len(conns)]), and returns how many
// distinct UDP Connection Requests with a valid signature and a device's
// username arrived, how many datagrams in all, and how many were not such
// requests.
func drainCRs(conns []*net.UDPConn, devs []stunDevice) (distinct, datagrams, bad int) {
	buf := make([]byte, 2048)
	for j, c := range conns {
		rc, err := c.SyscallConn()
		if err != nil {
			continue
		}
		seen := map[string][]uint32{} // by username
		_ = rc.Read(func(fd uintptr) bool {
			for {
				n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
				if err != nil || n < 0 {
					return true
				}
				datagrams++
				r, err := stun.ParseUDPConnectionRequest(buf[:n])
				d := -1
				if err == nil {
					for i := j; i < len(devs); i += len(conns) {
						if devs[i].crUser == r.Username {
							d = i
							break
						}
					}
				}
				if d < 0 || r.Verify([]byte(devs[d].crPass)) != nil {
					bad++
					continue
				}
				if ids := seen[r.Username]; !slices.Contains(ids, r.ID) {
					seen[r.Username] = append(ids, r.ID)
					distinct++
				}
			}
		})
	}
	return distinct, datagrams, bad
}

// outcomeKey names what a wake that did not answer "sent" gave, with
// digits folded so that like outcomes count together.
func outcomeKey(r wake.Result, err error) string {
	var s string
	switch {
	case err != nil:
		s = err.Error()
	case len(r.Attempts) > 0:
		at := r.Attempts[len(r.Attempts)-1]
		s = string(r.Status) + " (" + at.Detail + ")"
	default:
		s = string(r.Status)
	}
	var b strings.Builder
	digits := false
	for _, c := range s {
		if c >= '0' && c <= '9' {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(c)
	}
	k := b.String()
	if len(k) > 80 {
		k = k[:80] + "…"
	}
	return k
}

func topOutcomes(m map[string]int, n int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return m[b] - m[a] })
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%d× %s", m[k], k))
	}
	if len(keys) > n {
		parts = append(parts, fmt.Sprintf("%d other kinds", len(keys)-n))
	}
	return strings.Join(parts, ", ")
}

// scrapeMetrics reads the appliance's /metrics and returns each sample
// family's total over its labels.
func scrapeMetrics(a *appliance) (map[string]float64, error) {
	resp, err := a.api.HTTP.Get(strings.TrimRight(a.api.BaseURL, "/") + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: HTTP %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}
