//go:build linux

package stunserver

import (
	"context"
	"net/netip"
	"testing"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/registry/registrytest"
)

// openRegistry opens the real registry on a bbolt file.
func openRegistry(t *testing.T) *registry.Registry { return registrytest.New(t) }

// TestRealRegistry runs the TR-111 exchange against the real registry:
// 401, the signed retry recording the binding, and a connection request
// through that binding. Unknown usernames are kept pending only when the
// policy lets unauthenticated requests in.
func TestRealRegistry(t *testing.T) {
	ctx := context.Background()
	reg := openRegistry(t)
	if _, _, err := reg.Put(ctx, registry.Device{ID: "dev-1", STUNUsername: testUser, STUNPassword: testPassword,
		Username: "cr-user", Password: "cr-pass"}); err != nil {
		t.Fatal(err)
	}
	conn := listen(t, "udp4", "0.0.0.0:0")
	s := startServer(t, Config{Registry: reg, Integrity: IntegrityRequired}, conn)
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.4"), addrOf(conn).Port())
	cpe := newClient(t, "127.0.0.1")

	resp, _ := cpe.exchange(dst, withID(packet(rowClassicHdr, rowTestUser, rowCRB)))
	checkAnswer(t, decode(t, resp), resp, 401, false)
	if _, ok := reg.Binding("dev-1"); ok {
		t.Fatal("binding recorded by an unauthenticated request")
	}
	resp, _ = cpe.exchange(dst, signed(tr111MI, testPassword))
	checkAnswer(t, decode(t, resp), resp, 0, true)
	b, ok := reg.Binding("dev-1")
	if !ok || b.Mapped != cpe.addr() || b.Local != dst {
		t.Fatalf("binding %+v, %v; want mapped %v local %v", b, ok, cpe.addr(), dst)
	}

	// The wake path's part, in short: the binding and the device's
	// connection-request credentials.
	d, _ := reg.Get("dev-1")
	if _, err := s.SendConnectionRequest(ctx, CRRequest{DeviceID: d.ID, Local: b.Local, Mapped: b.Mapped,
		Username: d.Username, Password: d.Password}); err != nil {
		t.Fatal(err)
	}
	recvCR(t, cpe, dst)

	// An unknown username cannot be authenticated: no state under
	// required, a pending binding under optional (without integrity).
	stranger := withID(packet(rowClassicHdr, `0006 0008 "stranger"`, rowCRB))
	resp, _ = cpe.exchange(dst, stranger)
	checkAnswer(t, decode(t, resp), resp, 401, false)
	resp, _ = cpe.exchange(dst, signed(packet(rowClassicHdr, `0006 0008 "stranger"`, rowCRB, rowMIZero), "guess"))
	checkAnswer(t, decode(t, resp), resp, 431, false)
	if n := reg.PendingBindings(); n != 0 {
		t.Errorf("%d pending bindings under required", n)
	}

	conn2 := listen(t, "udp4", "127.0.0.1:0")
	startServer(t, Config{Registry: reg, Integrity: IntegrityOptional}, conn2)
	resp, _ = cpe.exchange(addrOf(conn2), withID(stranger))
	checkAnswer(t, decode(t, resp), resp, 0, false)
	if n := reg.PendingBindings(); n != 1 {
		t.Errorf("%d pending bindings under optional, want 1", n)
	}
}
