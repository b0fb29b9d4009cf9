//go:build linux

package stunserver

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/stun"
)

// bindCPE makes c send a TR-111 binding request to dst and returns the
// binding the server recorded.
func bindCPE(t *testing.T, c *client, reg *fakeRegistry, dst netip.AddrPort) registry.BindingObservation {
	t.Helper()
	n := len(reg.observations())
	c.exchange(dst, withID(tr111))
	obs := reg.observations()
	if len(obs) != n+1 {
		t.Fatalf("no binding recorded")
	}
	return obs[n]
}

// recvCR reads one UDP connection request, which must come from from,
// and checks it as a CPE agent does.
func recvCR(t *testing.T, c *client, from netip.AddrPort) ([]byte, stun.UDPConnectionRequest) {
	t.Helper()
	b, src := c.recv()
	if src != from {
		t.Fatalf("connection request from %v, want exactly %v", src, from)
	}
	r, err := stun.ParseUDPConnectionRequest(b)
	if err != nil {
		t.Fatalf("parsing %q: %v", b, err)
	}
	if err := r.Verify([]byte("cr-pass")); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	if r.Username != "cr-user" || r.Authority != c.addr().String() || r.Host != r.Authority || len(r.CNonce) < 8 {
		t.Errorf("un %q, authority %q, host %q, cn %q", r.Username, r.Authority, r.Host, r.CNonce)
	}
	return b, r
}

func TestUDPConnectionRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		bind    string
		cpeDst  string // the server address the CPE sends to
	}{
		{"exact bind", "udp4", "127.0.0.1:0", "127.0.0.1"},
		{"wildcard bind, second address", "udp4", "0.0.0.0:0", "127.0.0.2"},
		{"dual-stack wildcard bind", "udp", "0.0.0.0:0", "127.0.0.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := listen(t, tc.network, tc.bind)
			reg := newFakeRegistry()
			s := startServer(t, Config{Registry: reg, RetransmitDelay: time.Millisecond}, conn)
			clock := time.Unix(1120673700, 0)
			s.now = func() time.Time { return clock }

			cpe := newClient(t, "127.0.0.1")
			dst := netip.AddrPortFrom(netip.MustParseAddr(tc.cpeDst), addrOf(conn).Port())
			b := bindCPE(t, cpe, reg, dst)
			if b.Local != dst || b.Mapped != cpe.addr() {
				t.Fatalf("binding local %v mapped %v", b.Local, b.Mapped)
			}
			req := CRRequest{DeviceID: "dev-1", Local: b.Local, Mapped: b.Mapped, Username: "cr-user", Password: "cr-pass"}

			res, err := s.SendConnectionRequest(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Coalesced || res.Copies != 3 || res.From != dst || res.To != cpe.addr() || res.Timestamp != 1120673700 {
				t.Errorf("result %+v", res)
			}
			// The datagram and two identical copies, all from the address
			// the CPE sends its binding requests to.
			first, r := recvCR(t, cpe, dst)
			if r.Timestamp != 1120673700 || r.ID != res.ID || r.CNonce != res.CNonce {
				t.Errorf("ts %d id %d cn %q, result %+v", r.Timestamp, r.ID, r.CNonce, res)
			}
			for range 2 {
				if again, _ := recvCR(t, cpe, dst); string(again) != string(first) {
					t.Errorf("retransmission %q differs from %q", again, first)
				}
			}

			// Same second: coalesced, nothing sent.
			res2, err := s.SendConnectionRequest(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if !res2.Coalesced || res2.ID != res.ID || res2.Timestamp != res.Timestamp {
				t.Errorf("second request in the same second: %+v, want coalesced with %+v", res2, res)
			}

			// Next second: a new request, with a greater ts.
			clock = clock.Add(time.Second)
			res3, err := s.SendConnectionRequest(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			next, r3 := recvCR(t, cpe, dst)
			if res3.Coalesced || r3.Timestamp != 1120673701 || r3.ID != res3.ID || string(next) == string(first) {
				t.Errorf("third request %+v, datagram %q", res3, next)
			}
			for range 2 {
				if again, _ := recvCR(t, cpe, dst); string(again) != string(next) {
					t.Errorf("retransmission %q differs from %q", again, next)
				}
			}
			if extra, _, err := cpe.tryRecv(50 * time.Millisecond); !isTimeout(err) {
				t.Errorf("unexpected datagram %q (%v)", extra, err)
			}
			if sent, co := metricValue(s.m.crSent), metricValue(s.m.crCoalesced); sent != 2 || co != 1 {
				t.Errorf("sent %v coalesced %v, want 2 and 1", sent, co)
			}
		})
	}
}

func TestUDPConnectionRequestErrors(t *testing.T) {
	conn := listen(t, "udp4", "0.0.0.0:0")
	port := addrOf(conn).Port()
	s := startServer(t, Config{Registry: newFakeRegistry()}, conn)
	cpe := netip.MustParseAddrPort("127.0.0.1:7547")
	local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		req  CRRequest
		want error
	}{
		{"no device id", CRRequest{Local: local, Mapped: cpe}, ErrBadRequest},
		{"no mapped address", CRRequest{DeviceID: "d", Local: local}, ErrBadRequest},
		{"multicast mapped address", CRRequest{DeviceID: "d", Local: local, Mapped: netip.MustParseAddrPort("224.0.0.1:7547")}, ErrBadRequest},
		{"broadcast mapped address", CRRequest{DeviceID: "d", Local: local, Mapped: netip.MustParseAddrPort("255.255.255.255:7547")}, ErrBadRequest},
		{"wildcard local address", CRRequest{DeviceID: "d", Local: netip.AddrPortFrom(netip.IPv4Unspecified(), port), Mapped: cpe}, ErrBadRequest},
		{"no socket on that port", CRRequest{DeviceID: "d", Local: netip.MustParseAddrPort("127.0.0.1:1"), Mapped: cpe}, ErrNoSocket},
		{"no IPv6 socket", CRRequest{DeviceID: "d", Local: netip.AddrPortFrom(netip.IPv6Loopback(), port), Mapped: cpe}, ErrNoSocket},
		// The wildcard socket cannot send from an address the host does
		// not have.
		{"source address not local", CRRequest{DeviceID: "d", Local: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port), Mapped: cpe}, ErrSend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // a failed request is not coalesced with: the second call fails the same way
				res, err := s.SendConnectionRequest(ctx, tc.req)
				if !errors.Is(err, tc.want) {
					t.Fatalf("err %v, want %v", err, tc.want)
				}
				if res.Coalesced {
					t.Errorf("coalesced with a failed request")
				}
			}
		})
	}
	if got := metricValue(s.m.crNoSocket); got != 4 {
		t.Errorf("no_socket errors %v, want 4", got)
	}
}

// TestShutdown stops a server with retransmissions pending: Serve returns
// nil within the grace period, the retransmissions are cancelled, no
// goroutine is left.
func TestShutdown(t *testing.T) {
	conn := listen(t, "udp4", "127.0.0.1:0")
	reg := newFakeRegistry()
	serving := make(chan netip.AddrPort, 1)
	s, err := New(Config{Registry: reg, RetransmitDelay: time.Hour, ShutdownGrace: 10 * time.Millisecond,
		NotifyServing: func(a netip.AddrPort) { serving <- a }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	<-serving

	cpe := newClient(t, "127.0.0.1")
	b := bindCPE(t, cpe, reg, addrOf(conn))
	if _, err := s.SendConnectionRequest(ctx, CRRequest{DeviceID: "dev-1", Local: b.Local, Mapped: b.Mapped,
		Username: "cr-user", Password: "cr-pass"}); err != nil {
		t.Fatal(err)
	}
	recvCR(t, cpe, addrOf(conn))

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
	checkNoGoroutines(t)
	if _, err := s.SendConnectionRequest(context.Background(), CRRequest{DeviceID: "dev-2", Local: b.Local,
		Mapped: b.Mapped}); !errors.Is(err, ErrNoSocket) {
		t.Errorf("after shutdown: %v, want ErrNoSocket", err)
	}
	if _, err := conn.WriteToUDPAddrPort([]byte("x"), cpe.addr()); err == nil {
		t.Error("Serve left its socket open")
	}
}

// startRetransmits runs sk's retransmission loop on a fresh queue, with
// record called for every copy sent; the returned func waits for the loop.
func startRetransmits(s *Server, sk *sock, record func(rtItem)) (wait func()) {
	sk.rtq = newRTQueue(s.cfg.Retransmits)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.retransmitLoop(sk, func(items []rtItem) int {
			for _, it := range items {
				record(it)
			}
			return 0
		})
	}()
	return func() { <-done }
}

// TestRetransmitTiming checks the retransmission schedule and the
// shutdown grace period on a fake clock.
func TestRetransmitTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Config{Registry: newFakeRegistry(), Retransmits: 3, ShutdownGrace: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		sk := &sock{cancel: make(chan struct{})}
		var mu sync.Mutex
		var at []time.Duration
		start := time.Now()
		wait := startRetransmits(s, sk, func(rtItem) {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Since(start))
		})

		// Three copies after 50, 150 and 350 ms; shutdown begins at
		// 10 ms with a 200 ms grace: the third copy is cancelled.
		if !sk.acquire() {
			t.Fatal("acquire failed")
		}
		sk.rtq.add(start, s.cfg.RetransmitDelay, []byte("cr"), netip.MustParseAddrPort("192.0.2.1:7547"), netip.Addr{})
		time.Sleep(10 * time.Millisecond)
		s.drain(sk)
		wait()
		if d := time.Since(start); d != 210*time.Millisecond {
			t.Errorf("drain returned after %v, want the grace period", d)
		}
		mu.Lock()
		defer mu.Unlock()
		want := []time.Duration{50 * time.Millisecond, 150 * time.Millisecond}
		if len(at) != len(want) || at[0] != want[0] || at[1] != want[1] {
			t.Errorf("copies at %v, want %v", at, want)
		}
		if sk.acquire() {
			t.Error("acquire on a drained socket")
		}
		if sk.rtq.add(time.Now(), time.Millisecond, []byte("cr"), netip.MustParseAddrPort("192.0.2.1:7547"), netip.Addr{}) {
			t.Error("add on a drained queue")
		}
	})
}

func TestRetransmitDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Config{Registry: newFakeRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		sk := &sock{cancel: make(chan struct{})}
		n := 0
		wait := startRetransmits(s, sk, func(rtItem) { n++ })
		sk.acquire()
		start := time.Now()
		sk.rtq.add(start, s.cfg.RetransmitDelay, []byte("cr"), netip.MustParseAddrPort("192.0.2.1:7547"), netip.Addr{})
		s.drain(sk) // nothing to cancel: waits for both copies only
		wait()
		if d := time.Since(start); d != 150*time.Millisecond || n != 2 {
			t.Errorf("drain after %v with %d copies, want 150ms and 2", d, n)
		}
	})
}

// TestRetransmitOrder interleaves many requests: every one gets its
// copies at its own 50 and 150 ms, in batches, whatever the others do.
func TestRetransmitOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Config{Registry: newFakeRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		sk := &sock{cancel: make(chan struct{})}
		start := time.Now()
		var mu sync.Mutex
		got := map[uint16][]time.Duration{}
		wait := startRetransmits(s, sk, func(it rtItem) {
			mu.Lock()
			defer mu.Unlock()
			got[it.to.Port()] = append(got[it.to.Port()], time.Since(start))
		})
		const n = 3 * rtBatch
		sent := make([]time.Duration, n)
		for i := range n {
			// Requests every 1 ms, a burst of rtBatch+1 at 7 ms.
			if i < 7 || i > 7+rtBatch {
				time.Sleep(time.Millisecond)
			}
			sk.acquire()
			sent[i] = time.Since(start)
			sk.rtq.add(time.Now(), s.cfg.RetransmitDelay, []byte("cr"), netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(i+1)), netip.Addr{})
		}
		s.drain(sk)
		wait()
		mu.Lock()
		defer mu.Unlock()
		for i := range n {
			c := got[uint16(i+1)]
			if len(c) != 2 || c[0] != sent[i]+50*time.Millisecond || c[1] != sent[i]+150*time.Millisecond {
				t.Fatalf("request %d sent at %v: copies at %v", i, sent[i], c)
			}
		}
	})
}
