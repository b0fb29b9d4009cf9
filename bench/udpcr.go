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
	devices  int
	duration time.Duration
	conc     int
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

func udpCRName(devices int) string {
	return fmt.Sprintf("UDP CR dispatched/s via API (fresh, not coalesced; %d devices)", devices)
}

func udpCRRow(ctx context.Context, a *appliance, stunAddr netip.AddrPort, devs []stunDevice, o wakeOptions) row {
	name, goal := udpCRName(len(devs)), udpCRGoal
	note, rate, err := udpCRRun(ctx, a, stunAddr, devs, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "UDP CR:", err)
		return row{name, unavailable(err.Error()), goal, ""}
	}
	return row{name, fmt.Sprintf("%.0f/s", rate), goal, verdict(rate >= 20000) + "; " + note}
}

func udpCRRun(ctx context.Context, a *appliance, stunAddr netip.AddrPort, devs []stunDevice, o wakeOptions) (string, float64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && uint64(len(devs))+1000 > lim.Cur {
		return "", 0, fmt.Errorf("%d device sockets need more than the %d open files allowed: lower -udp-cr-devices", len(devs), lim.Cur)
	}
	conns := make([]*net.UDPConn, len(devs))
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
			return "", 0, err
		}
		conns[i] = c
	}

	fmt.Fprintf(os.Stderr, "UDP CR: binding %d devices, each from its own socket...\n", len(devs))
	t0 := time.Now()
	bound, err := bindAll(ctx, conns, devs)
	if err != nil {
		return "", 0, err
	}
	bindTook := time.Since(t0)
	if bound == 0 {
		return "", 0, fmt.Errorf("no device got a success answer to its binding request")
	}

	fmt.Fprintf(os.Stderr, "UDP CR: waking %d devices round robin through the API, %d concurrent, %v...\n", len(devs), o.conc, o.duration)
	m0, _ := scrapeMetrics(a)
	var (
		mu        sync.Mutex
		outcomes  = map[string]int{}
		coalesced atomic.Int64 // "sent" answers whose detail says coalesced
	)
	req := api.WakeRequest{Transports: []registry.Transport{registry.TransportUDP}}
	c0, cerr0 := takeCPUSnap(a.pid())
	t1 := time.Now()
	sent, other, lat := load(ctx, o.duration, o.conc, func(i int) bool {
		r, err := a.api.Wake(ctx, devs[i%len(devs)].id, req)
		if err == nil && r.Status == wake.Sent {
			if n := len(r.Attempts); n > 0 && strings.Contains(r.Attempts[n-1].Detail, "coalesced") {
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
	elapsed := time.Since(t1)
	c1, cerr1 := takeCPUSnap(a.pid())
	m1, merr := scrapeMetrics(a)
	// Dispatched means a fresh datagram went out: a wake coalesced with
	// one sent in the same second answers "sent" but dispatches nothing.
	fresh := sent - coalesced.Load()
	rate := float64(fresh) / elapsed.Seconds()

	// Give retransmissions time to land, then see what the devices got.
	time.Sleep(time.Second)
	got, datagrams, bad := drainCRs(conns, devs)

	note := fmt.Sprintf("%d fresh requests dispatched; %d wakes answered sent (%.0f/s, %d of them coalesced by the answer's detail), %d not, in %.2fs at %d concurrent, p50 %s p99 %s",
		fresh, sent, float64(sent)/elapsed.Seconds(), coalesced.Load(), other, elapsed.Seconds(), o.conc, pct(lat, 50), pct(lat, 99))
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
	note += fmt.Sprintf("; binding %d of %d devices took %.2fs", bound, len(devs), bindTook.Seconds())
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
				if bindOne(conns[i], pkt, &r.ID, buf) {
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
// sockets, and returns how many distinct UDP Connection Requests with a
// valid signature and the device's username arrived, how many datagrams
// in all, and how many were not such requests.
func drainCRs(conns []*net.UDPConn, devs []stunDevice) (distinct, datagrams, bad int) {
	buf := make([]byte, 2048)
	for i, c := range conns {
		rc, err := c.SyscallConn()
		if err != nil {
			continue
		}
		var ids []uint32
		_ = rc.Read(func(fd uintptr) bool {
			for {
				n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
				if err != nil || n < 0 {
					return true
				}
				datagrams++
				r, err := stun.ParseUDPConnectionRequest(buf[:n])
				if err != nil || r.Username != devs[i].crUser || r.Verify([]byte(devs[i].crPass)) != nil {
					bad++
					continue
				}
				if !slices.Contains(ids, r.ID) {
					ids = append(ids, r.ID)
				}
			}
		})
		distinct += len(ids)
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
