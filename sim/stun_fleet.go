package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sync/errgroup"
)

// DefaultSTUNPrefix names generated STUN CPEs: stun-000001, ... It
// differs from DefaultPrefix so that both fleets fit in one appliance.
const DefaultSTUNPrefix = "stun-"

// ErrSTUNFleetRunning: Add was called after Run.
var ErrSTUNFleetRunning = errors.New("sim: STUN fleet already running")

// STUNFleetConfig describes a fleet of generated STUN CPEs. With Count
// zero the fleet is empty and CPEs are added with STUNFleet.Add.
type STUNFleetConfig struct {
	// Prefix starts every generated name, followed by a six-digit index
	// from 000001. Defaults to DefaultSTUNPrefix ("stun-").
	Prefix string
	// Count is how many CPEs to generate.
	Count int
	// Server is the relay's STUN address. Required when Count > 0.
	Server netip.AddrPort
	// Keepalive, RetransmitTimeout and MaxRetransmits apply to every
	// generated CPE, as in STUNCPEConfig.
	Keepalive         time.Duration
	RetransmitTimeout time.Duration
	MaxRetransmits    int
	// RFC5389Every makes every Nth CPE (N, 2N, ...) send RFC 5389
	// requests rather than classic ones. Zero means none.
	RFC5389Every int
	// Seed derives the generated credentials, so two processes given the
	// same seed (a simulator and a registration tool) agree on them. Zero
	// picks random credentials.
	Seed int64
	// ListenPacket opens each CPE's socket when the fleet runs, one per
	// CPE since every real CPE has its own NAT mapping. It defaults to UDP
	// on port 0 of the loopback address of Server's family when Server is
	// a loopback address, else of the wildcard address.
	ListenPacket func(ctx context.Context, cpe *STUNCPE) (net.PacketConn, error)
	// OnWake and OnBinding, if set, are called for every CPE as in
	// STUNCPEConfig, on the CPE's goroutines. They must not block.
	OnWake    func(name string, at time.Time)
	OnBinding func(name string, mapped netip.AddrPort, at time.Time)
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// STUNFleet is a set of simulated STUN CPEs, each on its own socket.
type STUNFleet struct {
	cfg     STUNFleetConfig
	credKey credKey
	cpes    *cpeSet[*STUNCPE]
}

// NewSTUNFleet builds a fleet and generates cfg.Count CPEs. Their STUN
// and connection-request usernames differ from the device id and from
// each other, so a client that mixes them up fails.
func NewSTUNFleet(cfg STUNFleetConfig) (*STUNFleet, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultSTUNPrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Count < 0 || cfg.RFC5389Every < 0 {
		return nil, ErrBadCount
	}
	if err := checkPrefix(cfg.Prefix); err != nil {
		return nil, err
	}
	f := &STUNFleet{
		cfg:     cfg,
		credKey: newCredKey("crrelay sim STUN credentials", cfg.Seed),
		cpes:    newCPESet[*STUNCPE]("STUN CPE", ErrSTUNFleetRunning, cfg.Count),
	}
	for i := range cfg.Count {
		n := i + 1
		name := cpeName(cfg.Prefix, n)
		_, err := f.Add(STUNCPEConfig{
			Name:              name,
			STUNUsername:      "s-" + name,
			STUNPassword:      f.credKey.secret("stun", name),
			CRUsername:        "cr-" + name,
			CRPassword:        f.credKey.secret("cr", name),
			Server:            cfg.Server,
			Keepalive:         cfg.Keepalive,
			RFC5389:           cfg.RFC5389Every > 0 && n%cfg.RFC5389Every == 0,
			RetransmitTimeout: cfg.RetransmitTimeout,
			MaxRetransmits:    cfg.MaxRetransmits,
		})
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Add adds one CPE with an explicit configuration, before Run. The fleet's
// OnWake, OnBinding and Logger replace the configuration's.
func (f *STUNFleet) Add(cfg STUNCPEConfig) (*STUNCPE, error) {
	cfg.OnWake, cfg.OnBinding, cfg.Logger = f.cfg.OnWake, f.cfg.OnBinding, f.cfg.Logger
	c, err := NewSTUNCPE(cfg)
	if err != nil {
		return nil, err
	}
	return f.cpes.add(cfg.Name, c)
}

// CPE returns the named CPE, or nil.
func (f *STUNFleet) CPE(name string) *STUNCPE { return f.cpes.get(name) }

// CPEs returns the fleet's CPEs in the order they were added.
func (f *STUNFleet) CPEs() []*STUNCPE { return f.cpes.all() }

// STUNDevice is what to register with the appliance for one simulated
// STUN CPE.
type STUNDevice struct {
	ID           string
	STUNUsername string
	STUNPassword string
	// Username and Password are the ConnectionRequestUsername and
	// ConnectionRequestPassword that sign UDP connection requests.
	Username   string
	Password   string
	Transports []string // always ["udp"]
}

// Devices lists the fleet's CPEs in the order they were added.
func (f *STUNFleet) Devices() []STUNDevice {
	cs := f.CPEs()
	ds := make([]STUNDevice, len(cs))
	for i, c := range cs {
		ds[i] = STUNDevice{
			ID:           c.cfg.Name,
			STUNUsername: c.cfg.STUNUsername,
			STUNPassword: c.cfg.STUNPassword,
			Username:     c.cfg.CRUsername,
			Password:     c.cfg.CRPassword,
			Transports:   []string{"udp"},
		}
	}
	return ds
}

// STUNRegistrar is what Register needs of the appliance's API.
type STUNRegistrar interface {
	PutSTUNDevice(ctx context.Context, d STUNDevice) error
}

// Register registers every CPE of the fleet through r, at most concurrency
// at a time (at least one). It stops at the first error and returns it.
func (f *STUNFleet) Register(ctx context.Context, r STUNRegistrar, concurrency int) error {
	return register(ctx, f.Devices(), concurrency, func(d STUNDevice) string { return d.ID }, r.PutSTUNDevice)
}

// Run opens a socket for every CPE, then runs them all (STUNCPE.Run) until
// ctx is cancelled, and returns nil. If a socket cannot be opened, or a
// CPE fails, the others are stopped and the error returned. Run may be
// called once.
func (f *STUNFleet) Run(ctx context.Context) error {
	cs, err := f.cpes.start()
	if err != nil {
		return err
	}

	listen := f.cfg.ListenPacket
	if listen == nil {
		listen = listenNear
	}
	conns := make([]net.PacketConn, 0, len(cs))
	for _, c := range cs {
		conn, err := listen(ctx, c)
		if err != nil {
			for _, o := range conns {
				o.Close()
			}
			return fmt.Errorf("sim: STUN CPE %s: listen: %w", c.cfg.Name, err)
		}
		conns = append(conns, conn)
	}

	g, gctx := errgroup.WithContext(ctx)
	for i, c := range cs {
		g.Go(func() error { return c.Run(gctx, conns[i]) })
	}
	return g.Wait()
}

// listenNear opens a UDP socket on an ephemeral port, on loopback when
// the CPE's STUN server is on loopback.
func listenNear(ctx context.Context, c *STUNCPE) (net.PacketConn, error) {
	a := c.cfg.Server.Addr()
	network, laddr := "udp4", "0.0.0.0:0"
	if a.Is6() && !a.Is4In6() {
		network, laddr = "udp6", "[::]:0"
	}
	if a.IsLoopback() {
		if network == "udp4" {
			laddr = "127.0.0.1:0"
		} else {
			laddr = "[::1]:0"
		}
	}
	var lc net.ListenConfig
	return lc.ListenPacket(ctx, network, laddr)
}

// STUNStats is a snapshot of a STUN fleet's counters.
type STUNStats struct {
	// Total sums the counters of every CPE; its Mapped and LastCRFrom are
	// those of the latest binding and connection request.
	Total STUNCounters
	// CPEs is how many CPEs the fleet has, Bound how many have a mapped
	// address.
	CPEs, Bound int
}

// Stats sums the counters of every CPE.
func (f *STUNFleet) Stats() STUNStats {
	cs := f.CPEs()
	s := STUNStats{CPEs: len(cs)}
	for _, c := range cs {
		cc := c.Counters()
		if cc.Mapped.IsValid() {
			s.Bound++
		}
		s.Total.add(cc)
	}
	return s
}
