package netns

import (
	"net"
	"os"
	"testing"
	"time"
)

// skipOrFail skips where namespaces cannot be built, except in CI, which
// installs what they need.
func skipOrFail(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the NAT tests: %v", err)
		}
		t.Skipf("skipping NAT test: %v", err)
	}
}

// TestNATFiltersByRelayPort checks the topology itself: a reply from the
// port the CPE sent to crosses the NAT; the same datagram from another
// port of the relay does not. This is the property Annex G relies on.
func TestNATFiltersByRelayPort(t *testing.T) {
	skipOrFail(t)
	n, err := NewNAT()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	relayA, err := n.Relay.ListenUDP("198.18.1.1:3478")
	if err != nil {
		t.Fatal(err)
	}
	defer relayA.Close()
	relayB, err := n.Relay.ListenUDP("198.18.1.1:3479")
	if err != nil {
		t.Fatal(err)
	}
	defer relayB.Close()
	cpe, err := n.CPE.ListenUDP("0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cpe.Close()

	if _, err := cpe.WriteTo([]byte("binding"), &net.UDPAddr{IP: n.RelayIP, Port: 3478}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	relayA.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, from, err := relayA.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !from.IP.Equal(n.PublicIP) {
		t.Fatalf("relay saw %v, not the NAT's public address %v: no NAT in the path", from, n.PublicIP)
	}
	// From the other port first: if the NAT let it through, the CPE would
	// read it before the legitimate one.
	relayB.WriteToUDP([]byte("from-B"), from)
	relayA.WriteToUDP([]byte("from-A"), from)
	cpe.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, src, err := cpe.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:k]) != "from-A" {
		t.Fatalf("CPE received %q from %v first: the NAT let the other port through", buf[:k], src)
	}
	// And nothing else arrives.
	cpe.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if k, src, err := cpe.ReadFrom(buf); err == nil {
		t.Fatalf("CPE also received %q from %v", buf[:k], src)
	}
}
