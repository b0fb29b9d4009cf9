package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/crrelay/crrelay/internal/prosody"
)

// The XMPP server of these tests is Debian's Prosody, a peer not written
// here: each test that needs one starts its own (internal/prosody), with
// accounts written straight into its storage. Tests skip when Prosody is
// not installed (apt-get install prosody; `make bench` installs it).

const testDomain = "sim.example"

type prosodyServer struct {
	srv     *prosody.Server
	addr    string      // c2s, STARTTLS required
	tlsAddr string      // c2s direct TLS
	tls     *tls.Config // trusts the server's certificate
}

// startProsody starts Prosody and returns once it listens. Its log is
// shown if the test fails.
func startProsody(t *testing.T) *prosodyServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var log strings.Builder // written by one goroutine, read once Prosody is gone
	srv, err := prosody.Start(ctx, prosody.Config{Domain: testDomain, LogLevel: "info", Output: &log})
	switch {
	case errors.Is(err, prosody.ErrNotInstalled):
		t.Skip("prosody is not installed (apt-get install prosody): skipping the XMPP CPE tests that need an XMPP server")
	case errors.Is(err, prosody.ErrNoUser):
		t.Skip("running as root without a prosody user to run Prosody as")
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Killed rather than stopped: Prosody takes over a second to shut
		// down cleanly, and its state is thrown away.
		srv.Kill()
		if t.Failed() {
			t.Logf("prosody log:\n%s", log.String())
		}
	})
	return &prosodyServer{srv: srv, addr: srv.Addr(), tlsAddr: srv.TLSAddr(), tls: srv.TLSConfig()}
}

// addAccount creates an account, or replaces its password.
func (p *prosodyServer) addAccount(t *testing.T, user, pass string) {
	t.Helper()
	if err := p.srv.AddAccounts(context.Background(), []prosody.Account{{User: user, Password: pass}}); err != nil {
		t.Fatal(err)
	}
}
