package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// DefaultXMPPPrefix names generated XMPP CPEs: xmpp-000001, ... It
// differs from the other fleets' prefixes so that all fit in one
// appliance.
const DefaultXMPPPrefix = "xmpp-"

// DefaultXMPPLoginConcurrency is how many of a fleet's CPEs negotiate at
// once by default.
const DefaultXMPPLoginConcurrency = 64

// ErrXMPPFleetRunning: Add or Run was called while Run runs.
var ErrXMPPFleetRunning = errors.New("sim: XMPP fleet already running")

// XMPPFleetConfig describes a fleet of generated XMPP CPEs. With Count
// zero the fleet is empty and CPEs are added with XMPPFleet.Add.
//
// A fleet is meant to hold tens of thousands of sessions on one machine:
// its CPEs share one tls.Config and a cache of SCRAM salted passwords,
// and an idle CPE costs its tls.Conn, a 512-byte read buffer, a timer and
// one parked goroutine.
type XMPPFleetConfig struct {
	// Prefix starts every generated name, followed by a six-digit index
	// from 000001. Defaults to DefaultXMPPPrefix ("xmpp-"). The name is
	// also the XMPP username.
	Prefix string
	// Count is how many CPEs to generate.
	Count int
	// Server, Domain, DirectTLS, UseTLS, Mechanism, Resource, AllowedJIDs,
	// KeepAlive, Keepalive, ReadTimeout, NegotiationTimeout, the Retry
	// fields, Dial and MaxStanza apply to every generated CPE, as in
	// XMPPCPEConfig. Server and Domain are required when Count > 0.
	Server, Domain     string
	DirectTLS, UseTLS  bool
	Mechanism          XMPPMechanism
	Resource           string
	AllowedJIDs        []string
	KeepAlive          time.Duration
	Keepalive          XMPPKeepalive
	ReadTimeout        time.Duration
	NegotiationTimeout time.Duration
	RetryInitial       time.Duration
	RetryMultiplier    float64
	RetryMax           time.Duration
	Dial               func(ctx context.Context, network, address string) (net.Conn, error)
	MaxStanza          int
	// TLSConfig is shared by every CPE, generated or added. Nil verifies
	// the server's certificate for Domain against the system's roots.
	TLSConfig *tls.Config
	// LegacyErrorsEvery makes every Nth CPE (N, 2N, ...) answer refused
	// connection requests as a widespread agent does (LegacyErrors).
	// Zero means none.
	LegacyErrorsEvery int
	// LoginConcurrency is how many CPEs may be negotiating a session at
	// once, over the whole fleet, at start and on every reconnection.
	// Defaults to DefaultXMPPLoginConcurrency (64); negative means no
	// limit, as after a power cut.
	LoginConcurrency int
	// Seed derives the generated passwords, so two processes given the
	// same seed (a simulator and a registration tool) agree on them. Zero
	// picks random ones.
	Seed int64
	// Pollers, when positive, has that many goroutines read every bound
	// session, polling the sockets (Linux epoll), instead of one
	// goroutine parked in a read on each: what a load tool holding tens
	// of thousands of sessions needs, as waking a goroutine for each
	// stanza costs it more than answering. The CPEs behave the same;
	// their answers are written by the poller's goroutine. Zero, the
	// default, gives each session its goroutine.
	Pollers int
	// OnWake and OnOnline, if set, are called for every CPE as in
	// XMPPCPEConfig, on the CPE's goroutines. They must not block.
	OnWake   func(name string, at time.Time)
	OnOnline func(name, jid string, at time.Time)
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// XMPPFleet is a set of simulated XMPP CPEs.
type XMPPFleet struct {
	cfg     XMPPFleetConfig
	credKey credKey
	salts   saltCache
	slots   chan struct{}
	cpes    *cpeSet[*XMPPCPE]
}

// NewXMPPFleet builds a fleet and generates cfg.Count CPEs. Their XMPP
// and connection-request passwords differ, and the connection-request
// username differs from the XMPP one, so a client that mixes them up
// fails.
func NewXMPPFleet(cfg XMPPFleetConfig) (*XMPPFleet, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultXMPPPrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LoginConcurrency == 0 {
		cfg.LoginConcurrency = DefaultXMPPLoginConcurrency
	}
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = &tls.Config{ServerName: cfg.Domain, MinVersion: tls.VersionTLS12}
	}
	if cfg.Count < 0 || cfg.LegacyErrorsEvery < 0 {
		return nil, ErrBadCount
	}
	if err := checkPrefix(cfg.Prefix); err != nil {
		return nil, err
	}
	f := &XMPPFleet{
		cfg:     cfg,
		credKey: newCredKey("crrelay sim XMPP credentials", cfg.Seed),
		cpes:    newCPESet[*XMPPCPE]("XMPP CPE", ErrXMPPFleetRunning, cfg.Count),
	}
	if cfg.LoginConcurrency > 0 {
		f.slots = make(chan struct{}, cfg.LoginConcurrency)
	}
	if cfg.Pollers < 0 {
		return nil, ErrXMPPPollers
	}
	for i := range cfg.Count {
		n := i + 1
		name := cpeName(cfg.Prefix, n)
		_, err := f.Add(XMPPCPEConfig{
			Name:               name,
			Server:             cfg.Server,
			Domain:             cfg.Domain,
			Password:           f.credKey.secret("xmpp", name),
			Resource:           cfg.Resource,
			DirectTLS:          cfg.DirectTLS,
			UseTLS:             cfg.UseTLS,
			Mechanism:          cfg.Mechanism,
			CRUsername:         "cr-" + name,
			CRPassword:         f.credKey.secret("cr", name),
			AllowedJIDs:        cfg.AllowedJIDs,
			LegacyErrors:       cfg.LegacyErrorsEvery > 0 && n%cfg.LegacyErrorsEvery == 0,
			KeepAlive:          cfg.KeepAlive,
			Keepalive:          cfg.Keepalive,
			ReadTimeout:        cfg.ReadTimeout,
			NegotiationTimeout: cfg.NegotiationTimeout,
			RetryInitial:       cfg.RetryInitial,
			RetryMultiplier:    cfg.RetryMultiplier,
			RetryMax:           cfg.RetryMax,
			Dial:               cfg.Dial,
			MaxStanza:          cfg.MaxStanza,
		})
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Add adds one CPE with an explicit configuration, while Run is not
// running. The fleet's TLSConfig, OnWake, OnOnline and Logger replace the
// configuration's, and its login concurrency limit applies.
func (f *XMPPFleet) Add(cfg XMPPCPEConfig) (*XMPPCPE, error) {
	cfg.TLSConfig = f.cfg.TLSConfig
	cfg.OnWake, cfg.OnOnline, cfg.Logger = f.cfg.OnWake, f.cfg.OnOnline, f.cfg.Logger
	c, err := newXMPPCPE(cfg, &f.salts)
	if err != nil {
		return nil, err
	}
	c.slots = f.slots
	c.login.polled = f.cfg.Pollers > 0
	return f.cpes.add(cfg.Name, c)
}

// CPE returns the named CPE, or nil.
func (f *XMPPFleet) CPE(name string) *XMPPCPE { return f.cpes.get(name) }

// CPEs returns the fleet's CPEs in the order they were added.
func (f *XMPPFleet) CPEs() []*XMPPCPE { return f.cpes.all() }

// XMPPDevice is what to register with the appliance, or with any XMPP
// server, for one simulated XMPP CPE.
type XMPPDevice struct {
	ID string
	// JID is the XMPP account, username@domain, and XMPPPassword its
	// password.
	JID          string
	XMPPPassword string
	// ConnReqJID is the full JID the CPE binds: its ConnReqJabberID,
	// which the ACS addresses.
	ConnReqJID string
	// Username and Password are the ConnectionRequestUsername and
	// ConnectionRequestPassword the connectionRequest must carry.
	Username   string
	Password   string
	Transports []string // always ["xmpp"]
}

// Devices lists the fleet's CPEs in the order they were added.
func (f *XMPPFleet) Devices() []XMPPDevice {
	cs := f.CPEs()
	ds := make([]XMPPDevice, len(cs))
	for i, c := range cs {
		ds[i] = XMPPDevice{
			ID:           c.cfg.Name,
			JID:          c.cfg.Username + "@" + c.cfg.Domain,
			XMPPPassword: c.cfg.Password,
			ConnReqJID:   c.ConnReqJID(),
			Username:     c.cfg.CRUsername,
			Password:     c.cfg.CRPassword,
			Transports:   []string{"xmpp"},
		}
	}
	return ds
}

// XMPPRegistrar is what Register needs of the appliance's API.
type XMPPRegistrar interface {
	PutXMPPDevice(ctx context.Context, d XMPPDevice) error
}

// Register registers every CPE of the fleet through r, at most concurrency
// at a time (at least one). It stops at the first error and returns it.
func (f *XMPPFleet) Register(ctx context.Context, r XMPPRegistrar, concurrency int) error {
	return register(ctx, f.Devices(), concurrency, func(d XMPPDevice) string { return d.ID }, r.PutXMPPDevice)
}

// Run runs every CPE (XMPPCPE.Run) until ctx is cancelled, then returns
// nil once all have closed their sessions. CPEs that cannot connect keep
// retrying, as deployed ones do: watch Stats or OnOnline to know when
// they are up. Once Run has returned it may be called again, and every
// CPE logs in anew (with its SCRAM salted password cached from the last
// time), as after a broker restart; it may not be called while it runs.
func (f *XMPPFleet) Run(ctx context.Context) error {
	cs, err := f.cpes.start()
	if err != nil {
		return err
	}
	defer f.cpes.stop()
	var ps *cpePollers
	if f.cfg.Pollers > 0 {
		if ps, err = newCPEPollers(f.cfg.Pollers); err != nil {
			return err
		}
		defer ps.close()
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		c.pollers = ps
		wg.Go(func() { c.Run(ctx) })
	}
	wg.Wait()
	return nil
}

// XMPPStats is a snapshot of an XMPP fleet's counters.
type XMPPStats struct {
	// Total sums the counters of every CPE; its JID and LastWakeFrom are
	// those of the latest session and wake.
	Total XMPPCounters
	// CPEs is how many CPEs the fleet has, Online how many have a bound
	// session now.
	CPEs, Online int
}

// Stats sums the counters of every CPE.
func (f *XMPPFleet) Stats() XMPPStats {
	cs := f.CPEs()
	s := XMPPStats{CPEs: len(cs)}
	for _, c := range cs {
		cc := c.Counters()
		if cc.Online {
			s.Online++
		}
		s.Total.add(cc)
	}
	return s
}
