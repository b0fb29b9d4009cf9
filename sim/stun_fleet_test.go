package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewSTUNFleet(t *testing.T) {
	cfg := STUNFleetConfig{
		Count:        6,
		Server:       netip.MustParseAddrPort("192.0.2.1:3478"),
		Keepalive:    time.Minute,
		RFC5389Every: 3,
		Seed:         42,
	}
	f, err := NewSTUNFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ds := f.Devices()
	if len(ds) != 6 {
		t.Fatalf("%d devices", len(ds))
	}
	seen := map[string]bool{}
	for i, d := range ds {
		n := i + 1
		c := f.CPE(d.ID).Config()
		switch {
		case d.ID != fmt.Sprintf("stun-%06d", n):
			t.Errorf("device %d: id %q", n, d.ID)
		case len(d.Transports) != 1 || d.Transports[0] != "udp":
			t.Errorf("%s: transports %q", d.ID, d.Transports)
		case d.STUNUsername == d.ID || d.Username == d.ID || d.STUNUsername == d.Username:
			t.Errorf("%s: usernames %q, %q", d.ID, d.STUNUsername, d.Username)
		case len(d.STUNPassword) < 16 || len(d.Password) < 16 || d.STUNPassword == d.Password:
			t.Errorf("%s: weak passwords %q, %q", d.ID, d.STUNPassword, d.Password)
		case c.STUNUsername != d.STUNUsername || c.STUNPassword != d.STUNPassword ||
			c.CRUsername != d.Username || c.CRPassword != d.Password:
			t.Errorf("%s: device %+v does not match the CPE", d.ID, d)
		case c.RFC5389 != (n%3 == 0):
			t.Errorf("%s: RFC5389 %v", d.ID, c.RFC5389)
		case c.Keepalive != time.Minute || c.Server != cfg.Server:
			t.Errorf("%s: config %+v", d.ID, c)
		}
		for _, s := range []string{d.STUNUsername, d.STUNPassword, d.Username, d.Password} {
			if seen[s] {
				t.Errorf("%s: %q used twice", d.ID, s)
			}
			seen[s] = true
		}
	}

	again, _ := NewSTUNFleet(cfg)
	cfg.Seed = 43
	other, _ := NewSTUNFleet(cfg)
	if a, b := again.Devices()[4], ds[4]; fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("same seed, different devices")
	}
	if o := other.Devices()[4]; o.Password == ds[4].Password || o.STUNPassword == ds[4].STUNPassword {
		t.Error("different seeds, same passwords")
	}

	if _, err := f.Add(STUNCPEConfig{Name: "stun-000002", Server: cfg.Server}); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("Add of a duplicate: %v", err)
	}
	for _, bad := range []struct {
		cfg  STUNFleetConfig
		want error
	}{
		{STUNFleetConfig{Count: 1}, ErrNoSTUNServer},
		{STUNFleetConfig{Count: -1}, ErrBadCount},
		{STUNFleetConfig{Prefix: "a b"}, ErrBadName},
	} {
		if _, err := NewSTUNFleet(bad.cfg); !errors.Is(err, bad.want) {
			t.Errorf("NewSTUNFleet(%+v) = %v, want %v", bad.cfg, err, bad.want)
		}
	}
}

type fakeSTUNRegistrar struct {
	mu   sync.Mutex
	got  map[string]STUNDevice
	fail string
}

func (r *fakeSTUNRegistrar) PutSTUNDevice(ctx context.Context, d STUNDevice) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d.ID == r.fail {
		return errRefused
	}
	r.got[d.ID] = d
	return nil
}

func TestSTUNFleetRegister(t *testing.T) {
	f, err := NewSTUNFleet(STUNFleetConfig{Count: 20, Server: netip.MustParseAddrPort("192.0.2.1:3478"), Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeSTUNRegistrar{got: map[string]STUNDevice{}}
	if err := f.Register(context.Background(), r, 4); err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Devices() {
		if fmt.Sprint(r.got[d.ID]) != fmt.Sprint(d) {
			t.Errorf("%s registered as %+v", d.ID, r.got[d.ID])
		}
	}
	r = &fakeSTUNRegistrar{got: map[string]STUNDevice{}, fail: "stun-000005"}
	err = f.Register(context.Background(), r, 0)
	if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "stun-000005") {
		t.Errorf("Register = %v", err)
	}
	if len(r.got) != 4 {
		t.Errorf("%d registered before the failure, want 4", len(r.got))
	}
}

// autoResponder answers every Binding Request as a TR-111 server with
// integrity required: 401 without MESSAGE-INTEGRITY, success with the
// source address as mapped address when it matches the password of the
// USERNAME, 431 otherwise.
func autoResponder(t *testing.T, srv *stunResponder, passwords map[string]string) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			var d stunDatagram
			select {
			case d = <-srv.got:
			case <-done:
				return
			}
			req, err := decodeWire(d.b)
			if err != nil {
				t.Errorf("from %v: %v", d.from, err)
				continue
			}
			u, _ := req.attr(tUsername)
			key := passwords[strings.TrimRight(string(u.val), " \x00")]
			var resp []byte
			switch {
			case !req.has(tIntegrity):
				resp = errorResponse(req, 401, "Unauthorized")
			case key == "" || requestIntegrity(req, key) != nil:
				t.Errorf("from %v: bad integrity", d.from)
				resp = errorResponse(req, 431, "Integrity Check Failure")
			default:
				resp = success(req, d.from, key)
			}
			if _, err := srv.conn.WriteToUDPAddrPort(resp, d.from); err != nil {
				t.Error(err)
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		<-stopped
	})
}

// TestSTUNFleetRun runs a fleet of classic and RFC 5389 CPEs, each on its
// own socket, against a server requiring integrity, then wakes every CPE
// with a UDP connection request sent from the server's socket, as the
// relay sends them.
func TestSTUNFleetRun(t *testing.T) {
	srv := newSTUNResponder(t)
	const n = 6
	bound := make(chan netip.AddrPort, 4*n)
	woke := make(chan string, n)
	f, err := NewSTUNFleet(STUNFleetConfig{
		Count: n, Server: srv.addr(), RFC5389Every: 2, Seed: 7,
		OnBinding: func(name string, mapped netip.AddrPort, _ time.Time) { bound <- mapped },
		OnWake:    func(name string, _ time.Time) { woke <- name },
	})
	if err != nil {
		t.Fatal(err)
	}
	passwords := map[string]string{}
	for _, d := range f.Devices() {
		passwords[d.STUNUsername] = d.STUNPassword
	}
	autoResponder(t, srv, passwords)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	mapped := map[netip.AddrPort]bool{}
	for len(mapped) < n {
		select {
		case m := <-bound:
			mapped[m] = true
		case <-time.After(testTimeout):
			t.Fatalf("%d of %d CPEs bound", len(mapped), n)
		}
	}
	s := f.Stats()
	if s.CPEs != n || s.Bound != n || s.Total.Unauthorized != n || s.Total.Responses != n {
		t.Errorf("stats %+v", s)
	}

	byName := map[string]STUNDevice{}
	for _, d := range f.Devices() {
		byName[d.ID] = d
	}
	for _, c := range f.CPEs() {
		d, to := byName[c.Name()], c.Counters().Mapped
		ts, id := strconv.FormatInt(time.Now().Unix(), 10), "77"
		dg := crDatagram(to.String(), ts, id, d.Username, "cn", crSig(d.Password, ts, id, d.Username, "cn"))
		srv.reply(to, dg)
	}
	got := map[string]bool{}
	for len(got) < n {
		select {
		case name := <-woke:
			got[name] = true
		case <-time.After(testTimeout):
			t.Fatalf("%d of %d CPEs woken", len(got), n)
		}
	}
	if s := f.Stats(); s.Total.CRAccepted != n || s.Total.CRRejected.Total() != 0 {
		t.Errorf("stats %+v", s)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if err := f.Run(context.Background()); !errors.Is(err, ErrSTUNFleetRunning) {
		t.Errorf("second Run = %v", err)
	}
}

// TestSTUNFleetListenError: a socket that cannot be opened fails Run and
// closes the ones already open.
func TestSTUNFleetListenError(t *testing.T) {
	errNoSocket := errors.New("no socket")
	var opened []net.PacketConn
	f, err := NewSTUNFleet(STUNFleetConfig{
		Count: 3, Server: netip.MustParseAddrPort("127.0.0.1:3478"),
		ListenPacket: func(ctx context.Context, c *STUNCPE) (net.PacketConn, error) {
			if c.Name() == "stun-000003" {
				return nil, errNoSocket
			}
			conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			opened = append(opened, conn)
			return conn, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Run(context.Background()); !errors.Is(err, errNoSocket) {
		t.Fatalf("Run = %v", err)
	}
	for _, conn := range opened {
		if _, err := conn.WriteTo([]byte("x"), conn.LocalAddr()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("socket %v left open", conn.LocalAddr())
		}
	}
}
