package sim

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Interop with Debian's python3-slixmpp, through Prosody: the scripts in
// interop/slixmpp wake a simulated CPE, and are woken by the simulated
// ACS. Skipped when /usr/bin/python3 cannot import slixmpp (apt-get
// install python3-slixmpp).

const python = "/usr/bin/python3"

func slixmppScript(t *testing.T, name string) string {
	t.Helper()
	if err := exec.Command(python, "-c", "import slixmpp").Run(); err != nil {
		t.Skipf("%s cannot import slixmpp (apt-get install python3-slixmpp): %v", python, err)
	}
	p, err := filepath.Abs(filepath.Join("..", "interop", "slixmpp", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestXMPPSlixmppACSWakesCPE(t *testing.T) {
	acsPy := slixmppScript(t, "acs.py")
	b := newXMPPTestbed(t)
	std, _ := b.runCPE(XMPPCPEConfig{Name: "std", Password: "p1", CRUsername: "u", CRPassword: "cp", AllowedJIDs: []string{"acs@" + testDomain}})
	leg, _ := b.runCPE(XMPPCPEConfig{Name: "leg", Password: "p2", CRUsername: "u", CRPassword: "cp", AllowedJIDs: []string{"acs@" + testDomain}, LegacyErrors: true})
	cases := []struct {
		name, account, pass, to, crPass, want string
	}{
		{"accepted", "acs", "acs-pass", std.ConnReqJID(), "cp", "RESULT result"},
		{"wrong password", "acs", "acs-pass", std.ConnReqJID(), "bad", "RESULT error not-authorized"},
		{"wrong password, legacy", "acs", "acs-pass", leg.ConnReqJID(), "bad", "RESULT error not-autorized"},
		{"sender not allowed", "other", "other-pass", std.ConnReqJID(), "cp", "RESULT error service-unavailable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			out, err := exec.CommandContext(ctx, python, acsPy, "--jid", c.account+"@"+testDomain+"/py", "--password", c.pass,
				"--server", b.p.addr, "--to", c.to, "--cr-username", "u", "--cr-password", c.crPass).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != c.want {
				t.Errorf("acs.py: %v\n%s", err, out)
			}
		})
	}
	if cc := std.Counters(); cc.CRAccepted != 1 || cc.CRNotAuthorized != 1 || cc.CRNotAllowed != 1 {
		t.Errorf("counters %+v", cc)
	}
}

func TestXMPPSlixmppCPEWokenByACS(t *testing.T) {
	cpePy := slixmppScript(t, "cpe.py")
	b := newXMPPTestbed(t)
	b.p.addAccount(t, "pycpe", "py-pass")
	cmd := exec.Command(python, cpePy, "--jid", "pycpe@"+testDomain+"/cwmp", "--password", "py-pass",
		"--server", b.p.addr, "--cr-username", "u", "--cr-password", "cp", "--allow", "acs@"+testDomain)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		// It stops on SIGTERM, as a service would.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("cpe.py on SIGTERM: %v", err)
			}
		case <-time.After(testTimeout):
			cmd.Process.Kill()
			t.Error("cpe.py ignored SIGTERM")
			<-exited
		}
	})
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("cpe.py exited")
			}
			return l
		case <-time.After(testTimeout):
			t.Fatal("cpe.py said nothing")
		}
		return ""
	}
	const to = "pycpe@" + testDomain + "/cwmp"
	if l := next(); l != "READY "+to {
		t.Fatalf("cpe.py: %q", l)
	}
	for _, c := range []struct {
		acs        *XMPPACS
		pass, want string
		line       string
	}{
		{b.acs, "cp", "", "WAKE from=" + b.acs.JID()},
		{b.acs, "bad", "not-authorized", "REFUSED from=" + b.acs.JID() + " not-authorized"},
		{b.outsider, "cp", "service-unavailable", "REFUSED from=" + b.outsider.JID() + " service-unavailable"},
	} {
		r := b.wake(c.acs, to, "u", c.pass)
		if r.Condition != c.want || (c.want == "") != r.OK() {
			t.Errorf("password %q from %s: %+v", c.pass, c.acs.JID(), r)
		}
		if l := next(); l != c.line {
			t.Errorf("cpe.py: %q, want %q", l, c.line)
		}
	}
}
