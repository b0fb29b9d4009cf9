package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"

	"github.com/crrelay/crrelay/internal/prosody"
)

// Prosody, Debian's XMPP server, is the reference the XMPP broker's
// figures are compared with. The bench runs it through internal/prosody:
// from a temporary directory with a generated configuration, never as the
// system service, logging warnings only.

// ensureProsody returns the path of prosody, installing Debian's package
// first when it is missing and the bench runs as root.
func ensureProsody() (string, error) { return prosody.Ensure(context.Background(), os.Stderr) }

// prosodyVersion returns the installed version, as the package states it.
func prosodyVersion() string { return prosody.Version() }

// prosodyServer is a running Prosody, as the XMPP section uses it.
type prosodyServer struct {
	srv     *prosody.Server
	addr    string // c2s: STARTTLS, required
	tlsAddr string // c2s direct TLS (XEP-0368)
	tls     *tls.Config
}

// startProsody runs the Prosody at path for domain (see internal/prosody)
// and returns once it listens.
func startProsody(ctx context.Context, path, domain string) (*prosodyServer, error) {
	s, err := prosody.Start(ctx, prosody.Config{Domain: domain, Binary: path})
	if err != nil {
		return nil, err
	}
	return &prosodyServer{srv: s, addr: s.Addr(), tlsAddr: s.TLSAddr(), tls: s.TLSConfig()}, nil
}

func (p *prosodyServer) pid() int { return p.srv.PID() }

// stop stops Prosody cleanly and removes its directory.
func (p *prosodyServer) stop() { p.srv.Stop() }

// addAccounts writes accounts straight into Prosody's storage; it may run
// while Prosody runs.
func (p *prosodyServer) addAccounts(ctx context.Context, accounts []xmppAccount) error {
	as := make([]prosody.Account, len(accounts))
	for i, a := range accounts {
		as[i] = prosody.Account{User: a.user, Password: a.pass}
	}
	return p.srv.AddAccounts(ctx, as)
}

// prosodyEncode is how Prosody names its files (prosody.Encode).
func prosodyEncode(s string) string { return prosody.Encode(s) }

// writeSelfSigned writes the kind of certificate Prosody gets, for
// crrelay: both servers then do the same TLS work.
func writeSelfSigned(certFile, keyFile, domain string) (*x509.CertPool, error) {
	return prosody.WriteSelfSigned(certFile, keyFile, domain)
}

// freeTCPPorts returns n loopback TCP ports that were free a moment ago.
func freeTCPPorts(n int) ([]int, error) { return prosody.FreeTCPPorts(n) }
