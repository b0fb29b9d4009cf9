package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/crrelay/crrelay/stun"
)

// The STUN load generator. It shares the machine with the server it
// measures, so it does as little as it can per packet: every request is
// built once before the run, sent with sendmmsg and its answer read with
// recvmmsg in batches (ipv4.PacketConn WriteBatch and ReadBatch), and an
// answer is matched by two 32-bit words of its transaction id, a run tag
// and the device's index, with no decoding. The same code loads coturn
// and crrelay; only the prebuilt requests differ.
//
// Each source socket is connected to the server and owns a fixed share
// of the devices (device i goes out of socket i mod sockets), so that a
// device's mapped address stays the same from one request to the next:
// after the first pass every request refreshes an unchanged binding, as a
// CPE's keepalives do. Several sockets give distinct source ports, which
// the server's SO_REUSEPORT hashing spreads over its sockets.
//
// Flow control is an open loop bounded by a window: a socket sends a
// batch whenever at least a batch fits under its share of the window
// (requests sent and not yet answered), then reads whatever answers are
// there. A socket whose answers stop for loadTimeout writes its
// outstanding requests off as lost, so a dropped datagram costs a pause
// of that socket, never a stall of the run.

// loadTimeout is how long a socket waits for answers before it writes its
// outstanding requests off.
const loadTimeout = 50 * time.Millisecond

// requestSet is the prebuilt requests of one run: one per device, each
// carrying tag at tagOff and the device's index at idxOff (big-endian,
// inside the transaction id, which every answer echoes).
type requestSet struct {
	pkts   [][]byte
	tag    uint32
	tagOff int
	idxOff int
	kind   string // for the table: what the requests are
}

// runTag returns a tag for the requests of one run: never the magic
// cookie, so that it can start a classic transaction id.
func runTag() uint32 {
	id := stun.NewTransactionID(true)
	return binary.BigEndian.Uint32(id[:4])
}

// classicTR111Requests builds, for each device, the Binding Request a
// TR-111 CPE agent sends once it knows it must authenticate: classic RFC
// 3489 (no cookie), USERNAME padded with spaces, CONNECTION-REQUEST-BINDING,
// and MESSAGE-INTEGRITY in the padded RFC 3489 form keyed by the device's
// STUN password.
func classicTR111Requests(devs []stunDevice) requestSet {
	rs := requestSet{tag: runTag(), tagOff: 4, idxOff: 8, kind: "classic TR-111"}
	rs.pkts = make([][]byte, len(devs))
	arena := make([]byte, 0, len(devs)*128)
	for i, d := range devs {
		r := stun.BindingRequest{
			ID:                       stun.NewTransactionID(true),
			Username:                 d.user,
			ConnectionRequestBinding: true,
			Form:                     stun.IntegrityRFC3489,
			Key:                      []byte(d.pass),
		}
		binary.BigEndian.PutUint32(r.ID[0:4], rs.tag)
		binary.BigEndian.PutUint32(r.ID[4:8], uint32(i))
		rs.pkts[i] = appendPacket(&arena, func(b []byte) []byte { return stun.AppendBindingRequest(b, &r) })
	}
	return rs
}

// plainRequests builds n RFC 5389 Binding Requests with no attribute:
// what a STUN-only server with no TR-111 credentials can answer.
func plainRequests(n int) requestSet {
	rs := requestSet{tag: runTag(), tagOff: 8, idxOff: 12, kind: "plain RFC 5389"}
	rs.pkts = make([][]byte, n)
	arena := make([]byte, 0, n*stun.HeaderSize)
	for i := range n {
		id := stun.NewTransactionID(false)
		binary.BigEndian.PutUint32(id[4:8], rs.tag)
		binary.BigEndian.PutUint32(id[8:12], uint32(i))
		rs.pkts[i] = appendPacket(&arena, func(b []byte) []byte { return stun.StartMessage(b, stun.TypeBindingRequest, &id) })
	}
	return rs
}

// appendPacket builds a packet with build at the end of *arena, so that
// all requests of a run lie in one block, and returns it.
func appendPacket(arena *[]byte, build func([]byte) []byte) []byte {
	a := *arena
	p := build(a[len(a):]) // in the arena's spare capacity, or allocated if it does not fit
	if len(p) <= cap(a)-len(a) {
		*arena = a[:len(a)+len(p)]
	}
	return p[:len(p):len(p)]
}

// loadConfig sizes a run.
type loadConfig struct {
	sockets  int           // source sockets
	window   int           // requests outstanding, over all sockets
	batch    int           // datagrams per sendmmsg / recvmmsg
	warmup   time.Duration // before the measured window; at least one pass over all devices
	duration time.Duration // the measured window
}

// loadResult is what a run measured in its window.
type loadResult struct {
	elapsed                            time.Duration
	sent, answers, errs, stray, losses uint64
	firstErr                           uint32        // ERROR-CODE of the first error answer, 0 if none
	server, gen, machine               time.Duration // CPU time in the window
	serverSys                          time.Duration // the system part of server
	softirq                            time.Duration // the softirq part of machine
	firstPass                          time.Duration // until every device had sent once
}

func (r loadResult) rate() float64 { return float64(r.answers) / r.elapsed.Seconds() }

// perCPUSecond is answers per second of the server's CPU time, or 0.
func (r loadResult) perCPUSecond() float64 {
	if r.server <= 0 {
		return 0
	}
	return float64(r.answers) / r.server.Seconds()
}

func cores(cpu, elapsed time.Duration) float64 { return cpu.Seconds() / elapsed.Seconds() }

// counters of one socket, written by its worker only; padded to a cache
// line so that workers do not share one.
type counters struct {
	sent, answers, errs, stray, losses atomic.Uint64
	firstErr                           atomic.Uint32
	passedAt                           atomic.Int64 // UnixNano when the worker finished its first pass
	_                                  [12]byte
}

type loadWorker struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn
	pkts [][]byte // this socket's share, in device order
	self uint32   // this socket's number: its devices are ≡ self mod sockets
	c    counters
}

// runLoad loads the server at target, whose process is pid, with rs.
func runLoad(ctx context.Context, target netip.AddrPort, pid int, rs requestSet, cfg loadConfig) (loadResult, error) {
	if cfg.sockets < 1 || cfg.batch < 1 || len(rs.pkts) < cfg.sockets {
		return loadResult{}, fmt.Errorf("bench: bad load config: %d sockets, batch %d, %d requests", cfg.sockets, cfg.batch, len(rs.pkts))
	}
	window := max(cfg.window/cfg.sockets, cfg.batch)
	workers := make([]*loadWorker, cfg.sockets)
	for s := range workers {
		conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(target))
		if err != nil {
			return loadResult{}, err
		}
		defer conn.Close()
		// Room for a whole window of answers and more: a full receive
		// buffer drops answers, which the run would count as losses.
		_ = conn.SetReadBuffer(4 << 20)
		_ = conn.SetWriteBuffer(1 << 20)
		w := &loadWorker{conn: conn, pc: ipv4.NewPacketConn(conn), self: uint32(s)}
		for i := s; i < len(rs.pkts); i += cfg.sockets {
			w.pkts = append(w.pkts, rs.pkts[i])
		}
		workers[s] = w
	}

	var stop atomic.Bool
	errc := make(chan error, len(workers))
	var wg sync.WaitGroup
	start := time.Now()
	for _, w := range workers {
		wg.Go(func() {
			if err := w.run(&stop, &rs, uint32(len(rs.pkts)), uint32(cfg.sockets), window, cfg.batch); err != nil {
				errc <- err
			}
		})
	}
	halt := func() {
		stop.Store(true)
		for _, w := range workers {
			_ = w.conn.SetReadDeadline(time.Now()) // wake a blocked read
		}
		wg.Wait()
	}
	failed := func() error {
		select {
		case err := <-errc:
			return err
		default:
			return ctx.Err()
		}
	}
	sleep := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	// Warm up: at least cfg.warmup, and until every device has sent once,
	// so that the window measures refreshes of known bindings.
	if err := sleep(cfg.warmup); err != nil {
		halt()
		return loadResult{}, err
	}
	var firstPass time.Duration
	for deadline := start.Add(60 * time.Second); ; {
		last := int64(0)
		for _, w := range workers {
			t := w.c.passedAt.Load()
			if t == 0 {
				last = -1
				break
			}
			last = max(last, t)
		}
		if last > 0 {
			firstPass = time.Unix(0, last).Sub(start)
			break
		}
		if time.Now().After(deadline) {
			halt()
			return loadResult{}, fmt.Errorf("no full pass over %d devices in 60s: the server answers too few requests", len(rs.pkts))
		}
		if err := sleep(50 * time.Millisecond); err != nil {
			halt()
			return loadResult{}, err
		}
	}

	sum := func() (r loadResult) {
		for _, w := range workers {
			r.sent += w.c.sent.Load()
			r.answers += w.c.answers.Load()
			r.errs += w.c.errs.Load()
			r.stray += w.c.stray.Load()
			r.losses += w.c.losses.Load()
			if r.firstErr == 0 {
				r.firstErr = w.c.firstErr.Load()
			}
		}
		return r
	}
	c0, b0 := sum(), mustSnap(pid)
	if err := sleep(cfg.duration); err != nil {
		halt()
		return loadResult{}, err
	}
	c1, b1 := sum(), mustSnap(pid)
	halt()
	if err := failed(); err != nil {
		return loadResult{}, err
	}
	if b0.err != nil || b1.err != nil {
		return loadResult{}, errors.Join(b0.err, b1.err)
	}
	return loadResult{
		elapsed:   b1.at.Sub(b0.at),
		sent:      c1.sent - c0.sent,
		answers:   c1.answers - c0.answers,
		errs:      c1.errs - c0.errs,
		stray:     c1.stray - c0.stray,
		losses:    c1.losses - c0.losses,
		firstErr:  c1.firstErr,
		server:    b1.server - b0.server,
		serverSys: b1.srvSys - b0.srvSys,
		gen:       b1.self - b0.self,
		machine:   b1.machine - b0.machine,
		softirq:   b1.softirq - b0.softirq,
		firstPass: firstPass,
	}, nil
}

type snapOrErr struct {
	cpuSnap
	err error
}

func mustSnap(pid int) snapOrErr {
	s, err := takeCPUSnap(pid)
	return snapOrErr{s, err}
}

// run is one socket's loop until stop. n is the number of devices,
// sockets the number of sockets; window and batch are this socket's.
func (w *loadWorker) run(stop *atomic.Bool, rs *requestSet, n, sockets uint32, window, batch int) error {
	out := make([]ipv4.Message, batch)
	for i := range out {
		out[i].Buffers = make([][]byte, 1)
	}
	in := make([]ipv4.Message, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, stun.MaxMessageSize+1)}
	}
	var (
		sent, done  int64 // done: answered, or written off as lost
		next        int
		passed      bool
		deadlineSet time.Time
	)
	for !stop.Load() {
		outstanding := int(sent - done)
		if outstanding < 0 { // late answers to requests written off
			done = sent
			outstanding = 0
		}
		if free := window - outstanding; free >= batch {
			for i := range batch {
				out[i].Buffers[0] = w.pkts[next]
				if next++; next == len(w.pkts) {
					next = 0
					if !passed {
						passed = true
						w.c.passedAt.Store(time.Now().UnixNano())
					}
				}
			}
			k, err := w.pc.WriteBatch(out[:batch], 0)
			if err != nil && k <= 0 {
				if stop.Load() {
					break
				}
				return fmt.Errorf("send to the server: %w", err)
			}
			// Requests not taken are sent next time.
			next = (next - (batch - k) + len(w.pkts)) % len(w.pkts)
			sent += int64(k)
			w.c.sent.Add(uint64(k))
			outstanding += k
		}
		// Keep the read deadline between 3/4 and 1 loadTimeout ahead
		// without resetting the timer on every batch.
		if now := time.Now(); now.Sub(deadlineSet) > loadTimeout/4 {
			deadlineSet = now
			_ = w.conn.SetReadDeadline(now.Add(loadTimeout))
		}
		k, err := w.pc.ReadBatch(in, 0)
		if err != nil {
			if stop.Load() {
				break
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				w.c.losses.Add(uint64(outstanding))
				done = sent
				deadlineSet = time.Time{}
				continue
			}
			return fmt.Errorf("read answers: %w", err)
		}
		var answers, errs, stray uint64
		for i := range in[:k] {
			b := in[i].Buffers[0][:in[i].N]
			if len(b) < stun.HeaderSize ||
				binary.BigEndian.Uint32(b[rs.tagOff:]) != rs.tag {
				stray++
				continue
			}
			if idx := binary.BigEndian.Uint32(b[rs.idxOff:]); idx >= n || idx%sockets != w.self {
				stray++
				continue
			}
			switch stun.MessageType(binary.BigEndian.Uint16(b)) {
			case stun.TypeBindingSuccess:
				answers++
			case stun.TypeBindingError:
				errs++
				// ERROR-CODE comes first in the answers of both servers.
				if len(b) >= 28 && stun.AttrType(binary.BigEndian.Uint16(b[20:])) == stun.AttrErrorCode {
					w.c.firstErr.CompareAndSwap(0, uint32(b[26]&7)*100+uint32(b[27]))
				}
			default:
				stray++
			}
		}
		done += int64(answers + errs)
		w.c.answers.Add(answers)
		if errs > 0 {
			w.c.errs.Add(errs)
		}
		if stray > 0 {
			w.c.stray.Add(stray)
		}
	}
	return nil
}

// waitSTUN waits until a STUN server answers at target, any answer, for
// up to d: how a bench knows a server it started is ready.
func waitSTUN(ctx context.Context, target netip.AddrPort, d time.Duration) error {
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		return err
	}
	defer conn.Close()
	id := stun.NewTransactionID(false)
	req := stun.StartMessage(nil, stun.TypeBindingRequest, &id)
	buf := make([]byte, stun.MaxMessageSize+1)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := conn.Write(req); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			if n >= stun.HeaderSize && string(buf[4:20]) == string(id[:]) {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("no STUN answer from %v within %v", target, d)
}

// lossNote says what the generator saw go wrong, or "".
func (r loadResult) lossNote() string {
	s := ""
	if r.losses > 0 {
		s += fmt.Sprintf(", %d written off after %v without answer", r.losses, loadTimeout)
	}
	if r.errs > 0 {
		s += fmt.Sprintf(", %d error answers (first: %d)", r.errs, r.firstErr)
	}
	if r.stray > 0 {
		s += fmt.Sprintf(", %d unmatched datagrams", r.stray)
	}
	return s
}
