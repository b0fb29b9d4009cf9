package nattest

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/crrelay/crrelay/internal/netns"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/registry/registrytest"
	"github.com/crrelay/crrelay/sim"
	"github.com/crrelay/crrelay/stun"
	"github.com/crrelay/crrelay/stun/stunserver"
	"github.com/crrelay/crrelay/wake"
)

func topology(t *testing.T) *netns.NAT {
	t.Helper()
	if err := netns.Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the NAT tests: %v", err)
		}
		t.Skipf("skipping the real-NAT test: %v", err)
	}
	n, err := netns.NewNAT()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// relaySocket binds a UDP socket inside the relay namespace.
func relaySocket(t *testing.T, ns netns.NS, addr string) net.PacketConn {
	t.Helper()
	var conns []net.PacketConn
	if err := ns.Do(func() (err error) {
		conns, err = stunserver.ListenReusePort("udp4", addr, 1)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return conns[0]
}

// TestUDPConnectionRequestThroughNAT is the reason the appliance exists:
// a TR-111 CPE behind a masquerading NAT binds through the relay's STUN
// server, and the UDP connection request sent from that very socket
// crosses the NAT, while the same datagram from another port of the relay
// does not.
func TestUDPConnectionRequestThroughNAT(t *testing.T) {
	n := topology(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	reg := registrytest.New(t)
	dev := registry.Device{ID: "cpe-behind-nat", STUNUsername: "00259E-CPE57689", STUNPassword: "stun-secret",
		Username: "CPE57689", Password: "cr-secret", Transports: []registry.Transport{registry.TransportUDP}}
	if _, _, err := reg.Put(ctx, dev); err != nil {
		t.Fatal(err)
	}

	srv, err := stunserver.New(stunserver.Config{Registry: reg, Integrity: stunserver.IntegrityRequired})
	if err != nil {
		t.Fatal(err)
	}
	stunSock := relaySocket(t, n.Relay, "198.18.1.1:3478")
	served := make(chan error, 1)
	sctx, scancel := context.WithCancel(ctx)
	go func() { served <- srv.Serve(sctx, stunSock) }()
	defer func() { scancel(); <-served }()
	otherPort := relaySocket(t, n.Relay, "198.18.1.1:3479")
	defer otherPort.Close()

	bound := make(chan netip.AddrPort, 4)
	woken := make(chan time.Time, 4)
	cpe, err := sim.NewSTUNCPE(sim.STUNCPEConfig{
		Name: dev.ID, STUNUsername: dev.STUNUsername, STUNPassword: dev.STUNPassword,
		CRUsername: dev.Username, CRPassword: dev.Password,
		Server: netip.MustParseAddrPort("198.18.1.1:3478"), Keepalive: time.Hour,
		OnBinding: func(_ string, m netip.AddrPort, _ time.Time) { bound <- m },
		OnWake:    func(_ string, at time.Time) { woken <- at },
	})
	if err != nil {
		t.Fatal(err)
	}
	cpeSock, err := n.CPE.ListenUDP("0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	cpeDone := make(chan error, 1)
	cctx, ccancel := context.WithCancel(ctx)
	go func() { cpeDone <- cpe.Run(cctx, cpeSock) }()
	defer func() { ccancel(); <-cpeDone }()

	select {
	case m := <-bound:
		t.Logf("CPE %v sees its mapped address as %v", cpeSock.LocalAddr(), m)
	case <-time.After(20 * time.Second):
		t.Fatalf("CPE did not bind: %+v", cpe.Counters())
	}
	b, ok := reg.Binding(dev.ID)
	if !ok {
		t.Fatal("the relay recorded no binding")
	}
	if b.Mapped.Addr() != netip.MustParseAddr("198.18.1.2") || b.Local != netip.MustParseAddrPort("198.18.1.1:3478") {
		t.Fatalf("binding %+v: want mapped on the NAT's public address, local = the STUN socket", b)
	}
	if c := cpe.Counters(); c.Unauthorized == 0 {
		t.Fatalf("integrity is required, yet the CPE never saw a 401: %+v", c)
	}

	// The datagram a UDP connection request would be, sent from the
	// relay's other port: the NAT has no mapping for that source and
	// drops it. Sent first, so had it crossed, the CPE would have
	// accepted it before the real one.
	stray := stun.AppendUDPConnectionRequest(nil, &stun.UDPConnectionRequest{
		Authority: b.Mapped.String(), Timestamp: uint64(time.Now().Unix()), ID: 4242,
		Username: dev.Username, CNonce: "STRAYSTRAYSTRAY1",
	}, []byte(dev.Password))
	if _, err := otherPort.WriteTo(stray, net.UDPAddrFromAddrPort(b.Mapped)); err != nil {
		t.Fatal(err)
	}

	// The real one, through the wake path, from the STUN socket.
	w, err := wake.New(wake.Config{Devices: reg, Transports: map[registry.Transport]wake.Transport{
		registry.TransportUDP: wake.UDP{Sender: srv, Bindings: reg, TTL: time.Minute},
	}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.Wake(ctx, dev.ID, wake.Request{})
	if err != nil || res.Status != wake.Sent {
		t.Fatalf("wake: %v %+v", err, res)
	}
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatalf("the connection request did not reach the CPE: %+v", cpe.Counters())
	}
	c := cpe.Counters()
	if c.CRAccepted != 1 || c.LastCRFrom != netip.MustParseAddrPort("198.18.1.1:3478") {
		t.Fatalf("CPE accepted %d requests, last from %v; want 1 from the STUN socket", c.CRAccepted, c.LastCRFrom)
	}
	if r := c.CRRejected; r.BadSignature+r.WrongUsername+r.Stale+r.Malformed != 0 {
		t.Fatalf("CPE rejected requests: %+v (the stray datagram crossed the NAT?)", r)
	}
}
