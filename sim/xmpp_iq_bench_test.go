package sim

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crrelay/crrelay/internal/scramcred"
	"github.com/crrelay/crrelay/xmpp"
)

// BenchmarkIQRoundTrip runs connection-request IQ round trips through
// crrelay's broker in this process: an ACS keeps 32 requests in flight
// (XMPPACS.Pipeline) to 500 polled CPEs addressed in turn. One op is one
// answered request. The figure mixes both sides' costs (`make bench`
// measures them apart, with the broker in its own process); it is here
// for allocations per round trip and profiles of both (-memprofile,
// -cpuprofile).
func BenchmarkIQRoundTrip(b *testing.B) {
	const cpes, inFlight = 500, 32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cert, _, err := xmpp.LoadOrCreateCertificate("", "", b.TempDir(), "bench.example")
	if err != nil {
		b.Fatal(err)
	}
	accounts := &benchAccounts{m: map[string]scramcred.Credentials{}}
	acsCreds := benchCreds(b, "acs-pass")
	br, err := xmpp.New(xmpp.Config{
		Domain:           "bench.example",
		TLS:              &tls.Config{Certificates: []tls.Certificate{cert}},
		Accounts:         accounts,
		ACSAccounts:      []xmpp.ACSAccount{{JID: "acs@bench.example", Credentials: acsCreds}},
		AuthFailureDelay: -1,
		ConnRatePerIP:    -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// Deferred calls run last first: cancel, then wait for the fleet and
	// the server.
	var running sync.WaitGroup
	defer running.Wait()
	defer cancel()
	running.Go(func() { br.Serve(ctx, ln, false) })

	clientTLS := &tls.Config{ServerName: "bench.example", InsecureSkipVerify: true}
	var online atomic.Int64
	fleet, err := NewXMPPFleet(XMPPFleetConfig{
		Prefix: "iq-", Count: cpes, Server: ln.Addr().String(), Domain: "bench.example",
		TLSConfig: clientTLS, AllowedJIDs: []string{"acs@bench.example"},
		KeepAlive: time.Hour, LoginConcurrency: 32, Pollers: 2,
		OnOnline: func(string, string, time.Time) { online.Add(1) },
	})
	if err != nil {
		b.Fatal(err)
	}
	devs := fleet.Devices()
	for _, d := range devs {
		accounts.set(d.JID, benchCreds(b, d.XMPPPassword))
	}
	running.Go(func() { fleet.Run(ctx) })
	for deadline := time.Now().Add(time.Minute); online.Load() < cpes; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d CPEs online after a minute", online.Load(), cpes)
		}
	}
	acs, err := DialXMPPACS(ctx, XMPPACSConfig{
		Server: ln.Addr().String(), Domain: "bench.example", Username: "acs", Password: "acs-pass",
		Resource: "bench", TLSConfig: clientTLS,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer acs.Close()

	var sent, answered, failed int
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	b.ResetTimer()
	err = acs.Pipeline(pctx, PipelineConfig{
		InFlight: inFlight,
		Timeout:  5 * time.Second,
		Next: func() PipelineTarget {
			d := devs[sent%len(devs)]
			sent++
			return PipelineTarget{JID: d.ConnReqJID, Username: d.Username, Password: d.Password}
		},
		Done: func(a PipelineAnswer) {
			if a.TimedOut || !a.Result.OK() {
				failed++
			}
			if answered++; answered == b.N {
				stop()
			}
		},
	})
	b.StopTimer()
	if err != nil && pctx.Err() == nil {
		b.Fatal(err)
	}
	if failed > 0 {
		b.Fatalf("%d of %d requests failed", failed, answered)
	}
}

type benchAccounts struct {
	mu sync.Mutex
	m  map[string]scramcred.Credentials
}

func (a *benchAccounts) set(bare string, c scramcred.Credentials) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[strings.ToLower(bare)] = c
}

func (a *benchAccounts) XMPPCredentials(bare string) (scramcred.Credentials, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.m[strings.ToLower(bare)]
	return c, ok
}

// benchCreds derives credentials with few iterations: 500 CPEs log in.
func benchCreds(b *testing.B, password string) scramcred.Credentials {
	c, err := scramcred.DeriveWith(password, []byte("salt-"+password), 64)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
