package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/sim"
	"github.com/crrelay/crrelay/wake"
	"github.com/crrelay/crrelay/xmpp"
)

// Interop of the appliance's XMPP broker (TR-069 Annex K) with clients
// not written here: Debian's python3-slixmpp running interop/slixmpp's
// cpe.py and acs.py against `crrelay serve`, with the devices registered
// and woken through the API as an ACS would. Skipped when /usr/bin/python3
// cannot import slixmpp (`make test-deps` installs python3-slixmpp).

const (
	xmppE2EDomain = "xmpp.test"
	// The relay's JID when --xmpp-relay-jid is not given.
	xmppE2ERelay = "crrelay@" + xmppE2EDomain + "/relay"
	// Bounds every wait on the appliance or a client: none is expected
	// to take more than a second or two.
	xmppE2ETimeout = 20 * time.Second
	python3        = "/usr/bin/python3"
)

// xmppAppliance is a `crrelay serve` with its XMPP broker.
type xmppAppliance = appliance

// startXMPPAppliance runs serve for domain xmpp.test with the API and the
// broker's two ports on loopback (no STUN server), logging at debug level.
func startXMPPAppliance(t *testing.T, dataDir string, extra ...string) *xmppAppliance {
	t.Helper()
	a := startAppliance(t, dataDir, append([]string{"--stun-listen=", "--xmpp-domain", xmppE2EDomain, "--log-level", "debug"}, extra...)...)
	if a.xmppTLS == "" {
		t.Fatal("the start line does not name the two XMPP addresses")
	}
	return a
}

// slixmppScript returns the path of one of interop/slixmpp's scripts, or
// skips the test when python3 cannot import slixmpp.
func slixmppScript(t *testing.T, name string) string {
	t.Helper()
	if out, err := exec.Command(python3, "-c", "import slixmpp").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import slixmpp (apt-get install python3-slixmpp, or make test-deps as root): %v\n%s", python3, err, out)
	}
	p, err := filepath.Abs(filepath.Join("..", "..", "interop", "slixmpp", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// pyCPE is a running cpe.py: its stdout lines arrive on lines, in order.
type pyCPE struct {
	cmd    *exec.Cmd
	lines  chan string
	exited chan struct{} // closed once it exited and lines is drained
	err    error         // its exit, once exited is closed
	stderr *syncBuffer
}

// startCPE runs cpe.py as jid (username@xmpp.test/resource) against the
// broker at server, with connection-request credentials u/cp.
func startCPE(t *testing.T, script, server, jid, password string, allow ...string) *pyCPE {
	t.Helper()
	args := []string{script, "--jid", jid, "--password", password, "--server", server, "--cr-username", "u", "--cr-password", "cp"}
	for _, a := range allow {
		args = append(args, "--allow", a)
	}
	p := &pyCPE{cmd: exec.Command(python3, args...), lines: make(chan string, 64), exited: make(chan struct{}), stderr: &syncBuffer{}}
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		p.err = p.cmd.Wait()
		close(p.lines)
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			// It stops on SIGTERM, as a service would.
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
				if p.err != nil {
					t.Errorf("cpe.py %s on SIGTERM: %v", jid, p.err)
				}
			case <-time.After(xmppE2ETimeout):
				p.cmd.Process.Kill()
				<-p.exited
				t.Errorf("cpe.py %s ignored SIGTERM", jid)
			}
		}
		if t.Failed() && p.stderr.String() != "" {
			t.Logf("cpe.py %s stderr:\n%s", jid, p.stderr)
		}
	})
	return p
}

// expect reads cpe.py's next line and fails unless it is want.
func (p *pyCPE) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("cpe.py exited (%v) instead of saying %q\n%s", p.err, want, p.stderr)
		}
		if l != want {
			t.Fatalf("cpe.py said %q, want %q", l, want)
		}
	case <-time.After(xmppE2ETimeout):
		t.Fatalf("cpe.py did not say %q in %v", want, xmppE2ETimeout)
	}
}

// kill ends cpe.py with SIGKILL: no closing tag, only the kernel's FIN.
func (p *pyCPE) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Kill()
	p.wait(t)
}

// wait returns cpe.py's exit, once it exited by itself.
func (p *pyCPE) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.exited:
		for l := range p.lines {
			t.Errorf("cpe.py said %q before exiting", l)
		}
		return p.err
	case <-time.After(xmppE2ETimeout):
		t.Fatalf("cpe.py did not exit")
	}
	return nil
}

// runACS runs acs.py once and returns its stdout, trimmed.
func runACS(t *testing.T, script, server, jid, password, to, crPassword string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmppE2ETimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python3, script, "--jid", jid, "--password", password, "--server", server,
		"--to", to, "--cr-username", "u", "--cr-password", crPassword)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil || stderr.String() != "" {
		t.Logf("acs.py to %s: exit %v after %v; stderr:\n%s", to, err, time.Since(start).Round(time.Millisecond), stderr.String())
	}
	return strings.TrimSpace(string(out)), err
}

// putXMPPDevice registers a device reachable only over XMPP, as the ACS
// would: its JID, its XMPP account password, and the connection-request
// credentials u/cp its CPE checks.
func putXMPPDevice(t *testing.T, c *apiclient.Client, id, jid, xmppPassword string) {
	t.Helper()
	u, cp := "u", "cp"
	if _, err := c.PutDevice(context.Background(), id, apiclient.DeviceInput{
		XMPPJID: &jid, XMPPPassword: &xmppPassword, Username: &u, Password: &cp, Transports: []string{"xmpp"},
	}); err != nil {
		t.Fatalf("put %s: %v", id, err)
	}
}

// wakeXMPP wakes id over XMPP through the API and checks the outcome and
// that the single attempt's detail contains detail.
func wakeXMPP(t *testing.T, c *apiclient.Client, id string, want wake.Status, detail string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmppE2ETimeout)
	defer cancel()
	res, err := c.Wake(ctx, id, api.WakeRequest{Transports: []registry.Transport{registry.TransportXMPP}})
	if err != nil {
		t.Fatalf("wake %s: %v", id, err)
	}
	// With nothing tried (offline), no transport stands for the wake.
	transportOK := res.Transport == registry.TransportXMPP || want == wake.Offline && res.Transport == ""
	if res.Status != want || !transportOK || len(res.Attempts) != 1 ||
		res.Attempts[0].Transport != registry.TransportXMPP || !strings.Contains(res.Attempts[0].Detail, detail) {
		t.Fatalf("wake %s: %+v, want %s with detail %q", id, res, want, detail)
	}
}

func getDevice(t *testing.T, c *apiclient.Client, id string) api.Device {
	t.Helper()
	d, err := c.GetDevice(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	if d.State == nil {
		t.Fatalf("get %s: no live state", id)
	}
	return d
}

// TestXMPPSlixmppCPEWokenThroughAPI: slixmpp CPEs log in to the broker
// with the accounts registered through the API, show up in the device's
// live state, and API wakes reach them as connectionRequest IQs from the
// relay's JID: delivered, auth_failed on a wrong connection-request
// password, refused by a CPE that does not allow the relay, offline once
// the CPE is killed. Each case has a device of its own: the wake path
// shares a wake with the ones that follow it closely (coalescing), so a
// device woken twice in a row would not be asked twice.
func TestXMPPSlixmppCPEWokenThroughAPI(t *testing.T) {
	cpePy := slixmppScript(t, "cpe.py")
	app := startXMPPAppliance(t, t.TempDir(), "--api-token", "tok")
	client := &apiclient.Client{BaseURL: app.url, Token: "tok"}
	jid := func(user string) string { return user + "@" + xmppE2EDomain + "/cwmp" }
	for _, id := range []string{"never", "cpe1", "badcr", "strict", "killed"} {
		putXMPPDevice(t, client, id, jid(id), "xmpp-pass-"+id)
	}
	// badcr's CPE checks other connection-request credentials than the
	// ones registered.
	wrong := "wrong"
	if _, err := client.PatchDevice(context.Background(), "badcr", apiclient.DeviceInput{Password: &wrong}); err != nil {
		t.Fatal(err)
	}

	// Registered but never logged in: offline, with the reason.
	if d := getDevice(t, client, "never"); d.State.XMPP.Session != nil || d.State.XMPP.Usable || !d.State.XMPP.Enabled || !d.XMPPPasswordSet {
		t.Fatalf("before login: %+v %+v", d, d.State.XMPP)
	}
	wakeXMPP(t, client, "never", wake.Offline, "no XMPP session for "+jid("never"))

	cpe1 := startCPE(t, cpePy, app.xmpp, jid("cpe1"), "xmpp-pass-cpe1", xmppE2ERelay)
	badcr := startCPE(t, cpePy, app.xmpp, jid("badcr"), "xmpp-pass-badcr", "crrelay@"+xmppE2EDomain) // bare: any resource
	// A CPE whose ConnReqAllowedJabberIDs leaves the relay out.
	strict := startCPE(t, cpePy, app.xmpp, jid("strict"), "xmpp-pass-strict", "someone@else")
	killed := startCPE(t, cpePy, app.xmpp, jid("killed"), "xmpp-pass-killed", xmppE2ERelay)
	cpe1.expect(t, "READY "+jid("cpe1"))
	badcr.expect(t, "READY "+jid("badcr"))
	strict.expect(t, "READY "+jid("strict"))
	killed.expect(t, "READY "+jid("killed"))

	// Every session is in its device's live state. (The broker registers
	// a session right after sending the bind result; cpe.py says READY
	// only after reading that result and sending its presence.)
	broker := netip.MustParseAddrPort(app.xmpp)
	for _, id := range []string{"cpe1", "badcr", "strict", "killed"} {
		d := getDevice(t, client, id)
		s := d.State.XMPP.Session
		if s == nil || !s.Online || s.FullJID != jid(id) || !s.TLS || s.EndedAt != nil || time.Since(s.Since) > xmppE2ETimeout || !d.State.XMPP.Usable {
			t.Fatalf("%s: live state after login: %+v %+v", id, d.State.XMPP, s)
		}
		remote, err := netip.ParseAddrPort(s.Remote)
		if err != nil || !remote.Addr().IsLoopback() || remote.Port() == broker.Port() {
			t.Fatalf("%s: session remote %q: %v", id, s.Remote, err)
		}
	}

	// The operator's CLI: delivered, acknowledged by the CPE itself.
	out, err := cli(t, "wake", "cpe1", "--api", app.url, "--token", "tok")
	if err != nil || !strings.Contains(out, "cpe1: delivered via xmpp") || !strings.Contains(out, "IQ result from "+jid("cpe1")) {
		t.Fatalf("crrelay wake cpe1: %v\n%s", err, out)
	}
	cpe1.expect(t, "WAKE from="+xmppE2ERelay)

	// A wrong connection-request password: the CPE's not-authorized is
	// auth_failed, with the condition in the detail and in the history.
	wakeXMPP(t, client, "badcr", wake.AuthFailed, "not-authorized")
	badcr.expect(t, "REFUSED from="+xmppE2ERelay+" not-authorized")
	if last := getDevice(t, client, "badcr").State.XMPP.Last; last == nil || last.Status != string(wake.AuthFailed) || !strings.Contains(last.Detail, "not-authorized") {
		t.Fatalf("last XMPP wake of badcr: %+v", last)
	}

	// The relay is not in the CPE's allow-list: refused.
	wakeXMPP(t, client, "strict", wake.Refused, "service-unavailable")
	strict.expect(t, "REFUSED from="+xmppE2ERelay+" service-unavailable")

	// Killed (no closing tag): the next wake finds it offline, at once
	// rather than after the IQ timeout, and the live state says so.
	killed.kill(t)
	start := time.Now()
	wakeXMPP(t, client, "killed", wake.Offline, "no XMPP session for "+jid("killed"))
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a wake of a killed CPE took %v", took)
	}
	d := getDevice(t, client, "killed")
	s := d.State.XMPP.Session
	if s == nil || s.Online || s.FullJID != jid("killed") || s.EndedAt == nil || s.EndReason == "" || d.State.XMPP.Usable ||
		!strings.Contains(d.State.XMPP.Reason, "no XMPP session") {
		t.Fatalf("live state after the CPE died: %+v %+v", d.State.XMPP, s)
	}
	// The other sessions are untouched.
	for _, id := range []string{"cpe1", "badcr", "strict"} {
		if s := getDevice(t, client, id).State.XMPP.Session; s == nil || !s.Online {
			t.Fatalf("%s after another CPE died: %+v", id, s)
		}
	}
}

// xmppCredentials salts password as `crrelay xmpp-credentials` does when
// it is piped in.
func xmppCredentials(t *testing.T, password string) string {
	t.Helper()
	var out, errb strings.Builder
	if err := xmppCredentialsCmd(nil, strings.NewReader(password+"\n"), &out, &errb); err != nil {
		t.Fatalf("xmpp-credentials: %v %s", err, errb.String())
	}
	creds := strings.TrimSpace(out.String())
	if creds == "" || strings.Contains(creds, password) || strings.ContainsAny(creds, ", \n") {
		t.Fatalf("xmpp-credentials printed %q", out.String())
	}
	return creds
}

// TestXMPPSlixmppACSWakesCPEThroughBroker: a slixmpp ACS, logged in with
// an account of --xmpp-acs-accounts (credentials from crrelay
// xmpp-credentials), sends connectionRequest IQs through the broker to
// the simulator's CPE and to a slixmpp CPE, both logged in with accounts
// registered through the API; the answers come back to it.
func TestXMPPSlixmppACSWakesCPEThroughBroker(t *testing.T) {
	acsPy := slixmppScript(t, "acs.py")
	cpePy := slixmppScript(t, "cpe.py")
	const acsJID, acsPass = "acs@" + xmppE2EDomain + "/py", "acs-secret"
	dataDir := t.TempDir()
	app := startXMPPAppliance(t, dataDir, "--api-token", "tok", "--xmpp-auth-failure-delay", "200ms",
		"--xmpp-acs-accounts", "acs@"+xmppE2EDomain+"="+xmppCredentials(t, acsPass))
	client := &apiclient.Client{BaseURL: app.url, Token: "tok"}
	const goJID, pyJID = "gocpe@" + xmppE2EDomain + "/cwmp", "pycpe@" + xmppE2EDomain + "/cwmp"
	putXMPPDevice(t, client, "gocpe", goJID, "go-xmpp-pass")
	putXMPPDevice(t, client, "pycpe", pyJID, "py-xmpp-pass")
	putXMPPDevice(t, client, "rogue", "rogue@"+xmppE2EDomain+"/cwmp", "rogue-pass")

	// The simulator's CPE comes in on the direct-TLS port and verifies the
	// broker's certificate: the one the appliance generated into its data
	// dir, for its domain.
	pem, err := os.ReadFile(filepath.Join(dataDir, xmpp.GeneratedCertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("the generated certificate does not parse")
	}
	online := make(chan string, 4)
	woken := make(chan struct{}, 4)
	gocpe, err := sim.NewXMPPCPE(sim.XMPPCPEConfig{
		Name: "gocpe", Server: app.xmppTLS, DirectTLS: true, Domain: xmppE2EDomain, Password: "go-xmpp-pass",
		TLSConfig:  &tls.Config{RootCAs: roots, ServerName: xmppE2EDomain, MinVersion: tls.VersionTLS12},
		CRUsername: "u", CRPassword: "cp", AllowedJIDs: []string{"acs@" + xmppE2EDomain},
		OnOnline: func(_, jid string, _ time.Time) { online <- jid },
		OnWake:   func(string, time.Time) { woken <- struct{}{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gocpe.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case jid := <-online:
		if jid != goJID {
			t.Fatalf("the simulator's CPE bound %s, want %s", jid, goJID)
		}
	case <-time.After(xmppE2ETimeout):
		t.Fatalf("the simulator's CPE did not log in: %+v", gocpe.Counters())
	}
	pycpe := startCPE(t, cpePy, app.xmpp, pyJID, "py-xmpp-pass", "acs@"+xmppE2EDomain)
	pycpe.expect(t, "READY "+pyJID)

	cases := []struct {
		name, to, crPass, want string
		line                   string // what cpe.py says, if it is the target
	}{
		{"simulator accepts", goJID, "cp", "RESULT result", ""},
		{"simulator, wrong password", goJID, "bad", "RESULT error not-authorized", ""},
		{"slixmpp accepts", pyJID, "cp", "RESULT result", "WAKE from=" + acsJID},
		{"slixmpp, wrong password", pyJID, "bad", "RESULT error not-authorized", "REFUSED from=" + acsJID + " not-authorized"},
		// The broker answers for a JID with no session.
		{"no session", "ghost@" + xmppE2EDomain + "/cwmp", "cp", "RESULT error service-unavailable", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := runACS(t, acsPy, app.xmpp, acsJID, acsPass, c.to, c.crPass)
			if err != nil || out != c.want {
				t.Fatalf("acs.py to %s: %v %q, want %q", c.to, err, out, c.want)
			}
			if c.line != "" {
				pycpe.expect(t, c.line)
			}
		})
	}
	select {
	case <-woken:
	default:
		t.Error("the simulator's CPE was not woken")
	}
	if cc := gocpe.Counters(); cc.CRAccepted != 1 || cc.CRNotAuthorized != 1 || cc.CRNotAllowed != 0 || cc.CRNoFrom != 0 ||
		cc.LastWakeFrom != acsJID || cc.Logins != 1 || cc.Drops != 0 {
		t.Errorf("simulator's counters: %+v", cc)
	}

	// A wrong ACS password gets no session, and nothing is sent.
	out, err := runACS(t, acsPy, app.xmpp, acsJID, "not-the-secret", goJID, "cp")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || out != "FAILED authentication failed" {
		t.Errorf("acs.py with a wrong account password: %v %q", err, out)
	}
	// A CPE's account logs in but may not ask other CPEs anything: the
	// broker refuses it for them.
	out, err = runACS(t, acsPy, app.xmpp, "rogue@"+xmppE2EDomain+"/py", "rogue-pass", goJID, "cp")
	if err != nil || out != "RESULT error service-unavailable" {
		t.Errorf("acs.py logged in as a CPE: %v %q", err, out)
	}
	if cc := gocpe.Counters(); cc.CRAccepted+cc.CRRefused() != 2 || cc.OtherIQs != 0 {
		t.Errorf("a request reached the CPE from no ACS: %+v", cc)
	}
}

// TestXMPPSlixmppWrongPassword: a slixmpp CPE logging in with a wrong
// XMPP password, or as an account nobody registered, is refused; the
// broker goes on serving the CPEs already logged in and lets the right
// password in afterwards.
func TestXMPPSlixmppWrongPassword(t *testing.T) {
	cpePy := slixmppScript(t, "cpe.py")
	app := startXMPPAppliance(t, t.TempDir(), "--api-token", "tok", "--xmpp-auth-failure-delay", "200ms")
	client := &apiclient.Client{BaseURL: app.url, Token: "tok"}
	const goodJID, jid = "good@" + xmppE2EDomain + "/cwmp", "cpe1@" + xmppE2EDomain + "/cwmp"
	putXMPPDevice(t, client, "good", goodJID, "good-pass")
	putXMPPDevice(t, client, "cpe1", jid, "right-pass")
	good := startCPE(t, cpePy, app.xmpp, goodJID, "good-pass", xmppE2ERelay)
	good.expect(t, "READY "+goodJID)

	for _, c := range []struct{ name, jid, password string }{
		{"wrong password", jid, "wrong-pass"},
		{"unknown account", "ghost@" + xmppE2EDomain + "/cwmp", "right-pass"},
		{"another device's password", jid, "good-pass"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := startCPE(t, cpePy, app.xmpp, c.jid, c.password, xmppE2ERelay)
			bad.expect(t, "FAILED authentication failed")
			// It gives up, with exit status 1.
			var ee *exec.ExitError
			if err := bad.wait(t); !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("cpe.py after a failed login: %v, want exit status 1", err)
			}
		})
	}
	if d := getDevice(t, client, "cpe1"); d.State.XMPP.Session != nil || d.State.XMPP.Usable {
		t.Fatalf("a failed login left a session: %+v %+v", d.State.XMPP, d.State.XMPP.Session)
	}

	// The CPE already logged in was served all along.
	wakeXMPP(t, client, "good", wake.Delivered, "IQ result from "+goodJID)
	good.expect(t, "WAKE from="+xmppE2ERelay)

	// No lockout: the right password gets in.
	cpe1 := startCPE(t, cpePy, app.xmpp, jid, "right-pass", xmppE2ERelay)
	cpe1.expect(t, "READY "+jid)
	wakeXMPP(t, client, "cpe1", wake.Delivered, "IQ result from "+jid)
	cpe1.expect(t, "WAKE from="+xmppE2ERelay)
}
