package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/config"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/sim"
)

// appliance is one `crrelay serve` running in-process.
type appliance struct {
	url     string
	stun    string      // first STUN address, ip:port; "" without a STUN server
	xmpp    string      // the broker's STARTTLS port, ip:port; "" without it
	xmppTLS string      // the broker's direct-TLS port
	stdout  *syncBuffer // what serve printed
	log     *syncBuffer // what serve logged, shown when a test fails
	done    chan error
	cancel  context.CancelFunc
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var startedRE = regexp.MustCompile(`crrelay started.* api=(https?://[0-9.:]+) stun="?([0-9.:,\[\]a-f]*)"? xmpp="?([0-9.:,\[\]a-f]*)`)

// startAppliance runs serve and returns once its log says where the API,
// the STUN server and the XMPP broker listen: the log line is the
// readiness signal, no polling. Every listener is on a loopback port of
// its own; extra flags come last and win. Wakes of one device are not
// spaced (--wake-min-spacing 0): the tests wake devices back to back on
// purpose, and test the spacing where they ask for it.
func startAppliance(t *testing.T, dataDir string, extra ...string) *appliance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	a := &appliance{stdout: &syncBuffer{}, log: &syncBuffer{}, done: make(chan error, 1), cancel: cancel}
	args := append([]string{"serve", "--data-dir", dataDir, "--api-listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0", "--xmpp-listen", "127.0.0.1:0", "--xmpp-tls-listen", "127.0.0.1:0",
		"--http-cr-allow-cidrs", "127.0.0.0/8", "--log-level", "info", "--wake-min-spacing", "0"}, extra...)
	go func() {
		err := run(ctx, args, a.stdout, pw)
		pw.Close()
		a.done <- err
	}()
	addr := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			a.log.Write(append(sc.Bytes(), '\n'))
			if m := startedRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1:]:
				default:
				}
			}
		}
		// Keep the pipe flowing past a line too long for the scanner, so
		// that serve never blocks on its log.
		io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("appliance log:\n%s", a.log)
		}
	})
	select {
	case m := <-addr:
		a.url, a.stun = m[0], strings.Split(m[1], ",")[0]
		// The STARTTLS addresses come first, then the direct-TLS ones;
		// the tests give one of each.
		if x := strings.Split(m[2], ","); len(x) == 2 {
			a.xmpp, a.xmppTLS = x[0], x[1]
		}
	case err := <-a.done:
		t.Fatalf("serve exited: %v\n%s", err, a.log)
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start:\n%s", a.log)
	}
	t.Cleanup(func() { a.stop(t) })
	return a
}

func (a *appliance) stop(t *testing.T) {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.cancel = nil
	if err := <-a.done; err != nil {
		t.Errorf("serve returned %v", err)
	}
}

func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String() + errb.String(), err
}

func TestEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	app := startAppliance(t, dataDir)
	if !strings.Contains(app.stdout.String(), "Generated API token") {
		t.Fatalf("first start did not print the token: %q", app.stdout.String())
	}
	tokb, err := os.ReadFile(config.TokenPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokb))
	if !strings.Contains(app.stdout.String(), token) {
		t.Fatal("printed token differs from the stored one")
	}

	// A fleet with every auth mode, some closing after 401, some binding
	// the nonce to the connection, all registered through the API.
	fleet, err := sim.NewFleet(sim.FleetConfig{Prefix: "e2e-", Count: 14, Modes: sim.Modes(), CloseAfter401Every: 3, NoncePerConnectionEvery: 4, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	limited, err := fleet.Add(sim.HTTPCPEConfig{Name: "limited", Username: "u", Password: "p", Mode: sim.ModeDigestMD5, RateLimit: 1, RateWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(context.Background())
	fdone := make(chan error, 1)
	go func() { fdone <- fleet.Serve(fctx, ln) }()
	t.Cleanup(func() { fcancel(); <-fdone })
	base := "http://" + ln.Addr().String()
	client := &apiclient.Client{BaseURL: app.url, Token: token}
	if err := fleet.Register(context.Background(), sim.APIRegistrar{Client: client}, base, 4); err != nil {
		t.Fatal(err)
	}

	api := []string{"--api", app.url, "--token", token}
	for _, d := range fleet.Devices(base) {
		if d.ID == "limited" {
			continue
		}
		out, err := cli(t, append([]string{"wake", d.ID}, api...)...)
		if err != nil || !strings.Contains(out, "delivered via http") {
			t.Errorf("wake %s (%s): %v\n%s", d.ID, d.Mode, err, out)
		}
	}
	if got := fleet.Stats().Total.Accepted; got != 14 {
		t.Errorf("CPEs accepted %d wakes, want 14", got)
	}

	// 503 from a rate-limiting CPE is throttled, and wake exits 1.
	cli(t, append([]string{"wake", "limited"}, api...)...)
	out, err := cli(t, append([]string{"wake", "limited"}, api...)...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(out, "throttled") {
		t.Errorf("second wake of a rate-limited CPE: %v\n%s", err, out)
	}
	if limited.Counters().Throttled != 1 {
		t.Errorf("CPE throttled %d times", limited.Counters().Throttled)
	}

	// Wrong credentials: auth_failed.
	if out, err := cli(t, append([]string{"device", "patch", "e2e-000001", "--password", "wrong"}, api...)...); err != nil {
		t.Fatalf("patch: %v %s", err, out)
	}
	out, err = cli(t, append([]string{"wake", "e2e-000001", "--json"}, api...)...)
	if !errors.As(err, &ee) || !strings.Contains(out, `"auth_failed"`) {
		t.Errorf("wake with a wrong password: %v\n%s", err, out)
	}
	out, err = cli(t, append([]string{"device", "list", "--all", "--limit", "4"}, api...)...)
	if err != nil || strings.Count(out, "\ne2e-") != 14 {
		t.Errorf("device list: %v\n%s", err, out)
	}

	// Restart: devices, sealed secrets and wake history are all back.
	app.stop(t)
	app2 := startAppliance(t, dataDir)
	if strings.Contains(app2.stdout.String(), "Generated") {
		t.Error("a second start generated a new token")
	}
	api = []string{"--api", app2.url, "--token", token}
	out, err = cli(t, append([]string{"wake", "e2e-000002"}, api...)...)
	if err != nil || !strings.Contains(out, "delivered") {
		t.Errorf("wake after restart: %v\n%s", err, out)
	}
	out, err = cli(t, append([]string{"device", "get", "e2e-000001"}, api...)...)
	if err != nil || !strings.Contains(out, `"auth_failed"`) || !strings.Contains(out, `"password_set": true`) {
		t.Errorf("live state lost over restart: %v\n%s", err, out)
	}
	if strings.Contains(out, "wrong") {
		t.Error("a password was printed")
	}
	// The data dir holds no secret in clear.
	db, _ := os.ReadFile(filepath.Join(dataDir, "registry.db"))
	if bytes.Contains(db, []byte(fleet.Devices(base)[1].Password)) {
		t.Error("a CPE password is stored in clear")
	}
}

func TestCLIErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"no command", nil, 2},
		{"unknown command", []string{"frobnicate"}, 2},
		{"serve bad flag", []string{"serve", "--no-such"}, 2},
		{"serve bad value", []string{"serve", "--check", "--log-level", "loud"}, 2},
		{"device no sub", []string{"device"}, 2},
		{"device bad sub", []string{"device", "zap", "x"}, 2},
		{"device get no id", []string{"device", "get", "--token", "t"}, 2},
		{"wake two ids", []string{"wake", "a", "b", "--token", "t"}, 2},
		{"wake no token", []string{"wake", "a", "--data-dir", "/nonexistent"}, 2},
		{"sim bad mode", []string{"sim", "http", "--modes", "digest-md4"}, 2},
		{"check bad secret key", []string{"serve", "--check", "--secret-key", "nothex"}, 1},
		{"check only disabled transports", []string{"serve", "--check", "--stun-listen=", "--wake-transports", "udp"}, 2},
		{"check alternate without specific listen", []string{"serve", "--check", "--stun-alternate", "127.0.0.2:3479"}, 2},
		{"wake unreachable api", []string{"wake", "a", "--token", "t", "--api", "http://127.0.0.1:1"}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := cli(t, c.args...)
			if got := exitCode(err, io.Discard); got != c.code {
				t.Fatalf("exit %d (%v), want %d", got, err, c.code)
			}
		})
	}
	out, err := cli(t, "serve", "--check", "--data-dir", t.TempDir())
	if err != nil || !strings.Contains(out, "configuration OK") {
		t.Fatalf("serve --check: %v %s", err, out)
	}
}

func TestAPIErrorsThroughCLI(t *testing.T) {
	app := startAppliance(t, t.TempDir(), "--api-token", "tok-123")
	api := []string{"--api", app.url, "--token", "tok-123"}
	if _, err := cli(t, "device", "list", "--api", app.url, "--token", "nope"); err == nil {
		t.Fatal("a wrong token was accepted")
	} else if ae := (*apiclient.Error)(nil); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("wrong token: %v", err)
	}
	for name, args := range map[string][]string{
		"unknown device":   {"wake", "ghost"},
		"denied url":       {"device", "put", "x", "--url", "http://169.254.169.254/"},
		"bad udp address":  {"device", "put", "x", "--udp-address", "nowhere"},
		"bad transport":    {"wake", "x", "--transport", "fax"},
		"get unknown":      {"device", "get", "ghost"},
		"bad allow-basic":  {"device", "put", "x", "--allow-basic", "perhaps"},
		"delete unknown":   {"device", "delete", "ghost"},
		"negative timeout": {"wake", "x", "--timeout", "-1s"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := cli(t, append(args, api...)...)
			if err == nil {
				t.Fatalf("succeeded: %s", out)
			}
			var ae *apiclient.Error
			if !errors.As(err, &ae) && !errors.Is(err, errUsage) {
				t.Fatalf("not a clear API or usage error: %v", err)
			}
		})
	}
}

// TestSystemdNotify: under Type=notify, serve reports READY=1 once the API
// listens and STOPPING=1 when told to stop.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	app := startAppliance(t, t.TempDir(), "--api-token", "x")
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("first notification %q", got)
	}
	app.stop(t)
	if got := read(); got != "STOPPING=1" {
		t.Fatalf("second notification %q", got)
	}
}

// TestUDPConnectionRequestEndToEnd: simulated TR-111 CPEs bind through the
// appliance's STUN server (integrity required: 401, then the padded
// HMAC), and a wake through the API reaches each of them as a valid
// Annex G datagram.
func TestUDPConnectionRequestEndToEnd(t *testing.T) {
	app := startAppliance(t, t.TempDir(), "--api-token", "tok", "--stun-integrity", "required")
	server := netip.MustParseAddrPort(app.stun)
	bound := make(chan string, 16)
	woken := make(chan string, 64)
	fleet, err := sim.NewSTUNFleet(sim.STUNFleetConfig{
		Prefix: "udp-", Count: 4, Server: server, Keepalive: time.Hour, RFC5389Every: 2, Seed: 3,
		OnBinding: func(name string, _ netip.AddrPort, _ time.Time) { bound <- name },
		OnWake:    func(name string, _ time.Time) { woken <- name },
	})
	if err != nil {
		t.Fatal(err)
	}
	client := &apiclient.Client{BaseURL: app.url, Token: "tok"}
	if err := fleet.Register(context.Background(), sim.APIRegistrar{Client: client}, 4); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for range 4 {
		select {
		case <-bound:
		case <-time.After(20 * time.Second):
			t.Fatalf("CPEs did not bind: %+v", fleet.Stats())
		}
	}
	for _, d := range fleet.Devices() {
		res, err := client.Wake(context.Background(), d.ID, api.WakeRequest{Transports: []registry.Transport{"udp"}})
		if err != nil || res.Status != "sent" {
			t.Fatalf("wake %s: %v %+v", d.ID, err, res)
		}
		select {
		case name := <-woken:
			if name != d.ID {
				t.Fatalf("woke %s, expected %s", name, d.ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not receive its connection request: %+v", d.ID, fleet.CPE(d.ID).Counters())
		}
		got, err := client.GetDevice(context.Background(), d.ID)
		if err != nil || got.State.UDP.Binding == nil || !got.State.UDP.Usable {
			t.Fatalf("device state: %v %+v", err, got.State)
		}
	}
	st := fleet.Stats().Total
	if st.Unauthorized < 4 || st.CRRejected.BadSignature+st.CRRejected.WrongUsername+st.CRRejected.Stale != 0 {
		t.Fatalf("CPE counters: %+v", st)
	}
	// A device without a binding is offline for UDP, with the reason.
	client.PutDevice(context.Background(), "nobind", apiclient.DeviceInput{})
	res, err := client.Wake(context.Background(), "nobind", api.WakeRequest{Transports: []registry.Transport{"udp"}})
	if err != nil || res.Status != "offline" || !strings.Contains(res.Attempts[0].Detail, "no STUN binding") {
		t.Fatalf("wake without binding: %v %+v", err, res)
	}
}

// TestUDPWakeRightAfterRestart: bindings survive a restart of the relay
// (the CPE's NAT mapping is still open), so the first wake after it still
// reaches the CPE without waiting for a keepalive.
func TestUDPWakeRightAfterRestart(t *testing.T) {
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stunAddr := probe.LocalAddr().String()
	probe.Close() // the appliance binds the same port twice in a row
	dataDir := t.TempDir()
	app := startAppliance(t, dataDir, "--api-token", "tok", "--stun-listen", stunAddr)

	bound := make(chan string, 4)
	woken := make(chan string, 4)
	fleet, err := sim.NewSTUNFleet(sim.STUNFleetConfig{
		Prefix: "rs-", Count: 1, Server: netip.MustParseAddrPort(stunAddr), Keepalive: time.Hour, Seed: 5,
		OnBinding: func(name string, _ netip.AddrPort, _ time.Time) { bound <- name },
		OnWake:    func(name string, _ time.Time) { woken <- name },
	})
	if err != nil {
		t.Fatal(err)
	}
	client := &apiclient.Client{BaseURL: app.url, Token: "tok"}
	if err := fleet.Register(context.Background(), sim.APIRegistrar{Client: client}, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-bound:
	case <-time.After(20 * time.Second):
		t.Fatalf("no binding: %+v", fleet.Stats())
	}

	app.stop(t)
	app2 := startAppliance(t, dataDir, "--api-token", "tok", "--stun-listen", stunAddr)
	client.BaseURL = app2.url
	id := fleet.Devices()[0].ID
	res, err := client.Wake(context.Background(), id, api.WakeRequest{Transports: []registry.Transport{"udp"}})
	if err != nil || res.Status != "sent" {
		t.Fatalf("wake after restart: %v %+v", err, res)
	}
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatalf("the CPE did not receive the request after the restart: %+v", fleet.Stats().Total)
	}
	got, _ := client.GetDevice(context.Background(), id)
	if got.State.UDP.Binding == nil || !got.State.UDP.Binding.Restored {
		t.Fatalf("binding not marked restored: %+v", got.State.UDP.Binding)
	}
}

// TestSTUNPortTaken: a second relay on a STUN port already in use fails
// to start instead of sharing it through SO_REUSEPORT and stealing half
// of the binding requests.
func TestSTUNPortTaken(t *testing.T) {
	app := startAppliance(t, t.TempDir(), "--api-token", "x")
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--api-listen", "127.0.0.1:0",
		"--stun-listen", app.stun, "--xmpp-listen=", "--xmpp-tls-listen=", "--api-token", "x"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second relay on %s: %v", app.stun, err)
	}
}
