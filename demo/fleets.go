package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/sim"
	"golang.org/x/sync/errgroup"
)

// The transports, in the order the report lists them.
const (
	transportXMPP = "xmpp"
	transportUDP  = "udp"
	transportHTTP = "http"
)

var transports = []string{transportXMPP, transportUDP, transportHTTP}

// httpModes are the Digest variants of the HTTP fleet, assigned
// round-robin: MD5 as RFC 2069 (no qop) and RFC 2617 (qop=auth), MD5-sess,
// SHA-256 and SHA-256-sess (RFC 7616).
var httpModes = []sim.Mode{
	sim.ModeDigestMD5NoQop, sim.ModeDigestMD5, sim.ModeDigestMD5Sess,
	sim.ModeDigestSHA256, sim.ModeDigestSHA256Sess,
}

// Every closeAfter401Every-th HTTP CPE closes the connection after its
// 401, as some agents do; every noncePerConnEvery-th other one accepts a
// nonce only on the connection it was issued on. Both are coprime with
// len(httpModes), so these quirks are spread over every Digest variant.
const (
	closeAfter401Every = 4
	noncePerConnEvery  = 3
)

// fleetConfig sizes the simulated fleets.
type fleetConfig struct {
	http, udp, xmpp int
	domain          string // the broker's XMPP domain
	onWake          func(id string, at time.Time)
}

// fleets are the simulated CPEs, run in this process: HTTP ones behind
// one loopback listener, STUN ones each on its own UDP socket, XMPP ones
// each with its own TLS session to the broker.
type fleets struct {
	http     *sim.Fleet
	httpLn   net.Listener
	httpBase string
	stun     *sim.STUNFleet
	xmpp     *sim.XMPPFleet
	// transport maps every device id to the transport its CPE speaks.
	transport map[string]string
	ids       map[string][]string // device ids per transport
}

// newFleets generates the fleets for appliance a. The HTTP fleet's
// listener is open on return; nothing runs yet.
func newFleets(cfg fleetConfig, a *appliance) (*fleets, error) {
	f := &fleets{transport: map[string]string{}, ids: map[string][]string{}}
	var err error
	// Seed 0: random credentials, as every real CPE has its own.
	f.http, err = sim.NewFleet(sim.FleetConfig{
		Count: cfg.http, Modes: httpModes,
		CloseAfter401Every: closeAfter401Every, NoncePerConnectionEvery: noncePerConnEvery,
		OnWake: cfg.onWake,
	})
	if err != nil {
		return nil, fmt.Errorf("demo: HTTP fleet: %w", err)
	}
	f.stun, err = sim.NewSTUNFleet(sim.STUNFleetConfig{
		Count: cfg.udp, Server: a.stun, OnWake: cfg.onWake,
	})
	if err != nil {
		return nil, fmt.Errorf("demo: STUN fleet: %w", err)
	}
	f.xmpp, err = sim.NewXMPPFleet(sim.XMPPFleetConfig{
		Count: cfg.xmpp, Server: a.xmpp, Domain: cfg.domain,
		// The broker's certificate is self-signed, generated into its
		// data dir; many deployed CPEs do not verify it either.
		TLSConfig:   &tls.Config{ServerName: cfg.domain, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		AllowedJIDs: []string{"crrelay@" + cfg.domain},
		// TR-181's first retry waits up to 60 s; a demo cannot.
		RetryInitial: time.Second, RetryMax: 5 * time.Second,
		OnWake: cfg.onWake,
	})
	if err != nil {
		return nil, fmt.Errorf("demo: XMPP fleet: %w", err)
	}
	f.httpLn, err = net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.httpBase = "http://" + f.httpLn.Addr().String()
	for _, d := range f.http.Devices(f.httpBase) {
		f.add(d.ID, transportHTTP)
	}
	for _, d := range f.stun.Devices() {
		f.add(d.ID, transportUDP)
	}
	for _, d := range f.xmpp.Devices() {
		f.add(d.ID, transportXMPP)
	}
	return f, nil
}

func (f *fleets) add(id, transport string) {
	f.transport[id] = transport
	f.ids[transport] = append(f.ids[transport], id)
}

// serveHTTP answers HTTP connection requests until ctx is cancelled.
func (f *fleets) serveHTTP(ctx context.Context) error { return f.http.Serve(ctx, f.httpLn) }

// register registers every CPE with the appliance through its API, as
// an ACS provisioning them would.
func (f *fleets) register(ctx context.Context, c *apiclient.Client, concurrency int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.http.Register(gctx, sim.APIRegistrar{Client: c}, f.httpBase, concurrency) })
	g.Go(func() error { return f.stun.Register(gctx, sim.APIRegistrar{Client: c}, concurrency) })
	g.Go(func() error { return f.xmpp.Register(gctx, sim.APIRegistrar{Client: c}, concurrency) })
	return g.Wait()
}

// waitReady waits until every STUN CPE holds a binding and every XMPP CPE
// a session, or fails after timeout saying which are missing and why.
func (f *fleets) waitReady(ctx context.Context, timeout time.Duration) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		s, x := f.stun.Stats(), f.xmpp.Stats()
		if s.Bound == s.CPEs && x.Online == x.CPEs {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("%w after %s: %d of %d STUN CPEs bound, %d of %d XMPP CPEs online%s",
				errNotReady, timeout, s.Bound, s.CPEs, x.Online, x.CPEs, f.notReadyDetail())
		}
	}
}

// notReadyDetail describes the first few CPEs that are not ready, from
// their own counters.
func (f *fleets) notReadyDetail() string {
	var b strings.Builder
	n := 0
	for _, c := range f.stun.CPEs() {
		if cc := c.Counters(); !cc.Mapped.IsValid() && n < 3 {
			fmt.Fprintf(&b, "\n  %s: %d binding requests, %d answers, %d 401, %d 431, %d other errors, %d timeouts",
				c.Name(), cc.Requests, cc.Responses, cc.Unauthorized, cc.IntegrityErrors, cc.ErrorResponses, cc.Timeouts)
			n++
		}
	}
	n = 0
	for _, c := range f.xmpp.CPEs() {
		if cc := c.Counters(); !cc.Online && n < 3 {
			fmt.Fprintf(&b, "\n  %s: %d connects, %d failed (%d SASL), last error %q",
				c.Name(), cc.Connects, cc.ConnectErrors, cc.AuthFailures, cc.LastError)
			n++
		}
	}
	return b.String()
}

// wakeLog remembers when each simulated CPE first accepted a connection
// request; its note method is the fleets' OnWake callback.
type wakeLog struct {
	mu   sync.Mutex
	at   map[string]time.Time
	then func(id string, at time.Time) // called after noting, must not block
}

func (w *wakeLog) note(id string, at time.Time) {
	w.mu.Lock()
	if _, ok := w.at[id]; !ok {
		w.at[id] = at
	}
	w.mu.Unlock()
	if w.then != nil {
		w.then(id, at)
	}
}

// snapshot copies the wake times.
func (w *wakeLog) snapshot() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.at)
}

func (w *wakeLog) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.at)
}
