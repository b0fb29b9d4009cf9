//go:build linux

package stunserver

import (
	"context"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/crrelay/crrelay/registry"
)

// benchRegistry is a registry that keeps nothing, so that benchmarks
// measure the server.
type benchRegistry struct{ dev registry.Device }

func (r *benchRegistry) STUNPassword(u string) (string, bool) {
	return r.dev.STUNPassword, u == r.dev.STUNUsername
}

func (r *benchRegistry) ObserveBinding(registry.BindingObservation) (registry.BindingResult, error) {
	return registry.BindingResult{Outcome: registry.BindingRefreshed}, nil
}

// BenchmarkHandle is the per-packet work of the receiving goroutine:
// rate limit, decode, registry lookup, integrity check, binding record,
// response with integrity. It must not allocate.
func BenchmarkHandle(b *testing.B) {
	reg := &benchRegistry{dev: registry.Device{ID: "dev-1", STUNUsername: testUser, STUNPassword: testPassword}}
	src := netip.MustParseAddrPort("203.0.113.7:51234")
	local := netip.MustParseAddrPort("192.0.2.1:3478")
	for _, bc := range []struct {
		name   string
		policy IntegrityPolicy
		rate   float64
		pkt    []byte
	}{
		{"classic", IntegrityOff, -1, packet(rowClassicHdr)},
		{"TR-111 plain", IntegrityOptional, -1, tr111},
		{"TR-111 integrity", IntegrityRequired, -1, signed(tr111MI, testPassword)},
		{"TR-111 integrity with rate limiter", IntegrityRequired, 1e7, signed(tr111MI, testPassword)},
		{"TR-111 401", IntegrityRequired, -1, tr111},
		{"RFC 5389", IntegrityOff, -1, packet(rowCookieHdr)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(Config{Registry: reg, Integrity: bc.policy, RatePerSource: bc.rate, RateBurst: 1 << 20})
			if err != nil {
				b.Fatal(err)
			}
			w := newWorker(s, nil)
			out := make([]byte, 0, writeBufLenForTests)
			now := time.Now()
			if r := w.handle(bc.pkt, src, local, now, out); r.msg == nil {
				b.Fatalf("no answer; counters %v", w.cnt)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.pkt)))
			for b.Loop() {
				now = now.Add(time.Microsecond) // refills the bucket
				w.handle(bc.pkt, src, local, now, out)
			}
			if w.cnt[cDropRateLimited] != 0 {
				b.Fatalf("%d packets rate-limited", w.cnt[cDropRateLimited])
			}
		})
	}
}

const writeBufLenForTests = 1024

// BenchmarkServe measures answers over loopback: a client sends batches
// of TR-111 requests with integrity (sendmmsg) and reads the answers
// (recvmmsg) from one server socket. Client and server share the
// machine, so ns/op is an upper bound on the server's cost per answer.
func BenchmarkServe(b *testing.B) {
	reg := &benchRegistry{dev: registry.Device{ID: "dev-1", STUNUsername: testUser, STUNPassword: testPassword}}
	conn := listen(b, "udp4", "127.0.0.1:0")
	srv := addrOf(conn)
	startServer(b, Config{Registry: reg, Integrity: IntegrityRequired, RatePerSource: -1, BatchSize: 64}, conn)

	cc := listen(b, "udp4", "127.0.0.1:0")
	defer cc.Close()
	cc.SetReadBuffer(4 << 20)
	csk, err := newSock(cc)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 64
	cio, err := newBatchIO(csk, batch)
	if err != nil {
		b.Fatal(err)
	}
	req := signed(tr111MI, testPassword)
	lost := 0
	b.ReportAllocs()
	start, cpu0 := time.Now(), cpuTime()
	for n := 0; n < b.N; n += batch {
		k := min(batch, b.N-n)
		for i := range k {
			cio.queue(i, req, srv, netip.Addr{})
		}
		if failed, err := cio.send(k); failed > 0 || err != nil {
			b.Fatalf("client send: %d failed, %v", failed, err)
		}
		for got := 0; got < k; {
			cc.SetReadDeadline(time.Now().Add(time.Second))
			m, err := cio.recv()
			if err != nil {
				lost += k - got
				break
			}
			got += m
		}
	}
	b.ReportMetric(float64(b.N-lost)/time.Since(start).Seconds(), "answers/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N-lost), "cpu-ns/answer")
	if lost > 0 {
		b.ReportMetric(float64(lost), "lost")
	}
}

// cpuTime is the process's user and system CPU time, client included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandleRealRegistry is BenchmarkHandle's authenticated TR-111
// request with the real registry: password lookup and binding refresh.
func BenchmarkHandleRealRegistry(b *testing.B) {
	st, err := registry.OpenBolt(filepath.Join(b.TempDir(), "registry.db"))
	if err != nil {
		b.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Key: make([]byte, 32)})
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	if _, _, err := reg.Put(context.Background(), registry.Device{ID: "dev-1", STUNUsername: testUser,
		STUNPassword: testPassword}); err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{Registry: reg, Integrity: IntegrityRequired, RatePerSource: -1})
	if err != nil {
		b.Fatal(err)
	}
	w := newWorker(s, nil)
	src := netip.MustParseAddrPort("203.0.113.7:51234")
	local := netip.MustParseAddrPort("192.0.2.1:3478")
	pkt := signed(tr111MI, testPassword)
	out := make([]byte, 0, writeBufLenForTests)
	now := time.Now()
	if r := w.handle(pkt, src, local, now, out); r.msg == nil || w.cnt[cBindNew] != 1 {
		b.Fatalf("no answer or binding; counters %v", w.cnt)
	}
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		w.handle(pkt, src, local, now, out)
	}
}
