package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Limits of the fleet's HTTP server. CPE agents read small requests and
// keep idle connections briefly.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 30 * time.Second
	shutdownGrace     = 5 * time.Second
	// maxHeaderBytes caps request headers; larger ones get 431 from
	// net/http before a CPE sees them.
	maxHeaderBytes = 8 << 10
)

// DefaultPrefix names generated CPEs: cpe-000001, cpe-000002, ...
const DefaultPrefix = "cpe-"

// FleetConfig describes a fleet of generated CPEs. The zero value is an
// empty fleet to which CPEs are added with Fleet.Add.
type FleetConfig struct {
	// Prefix starts every generated name, followed by a six-digit index
	// from 000001. Defaults to DefaultPrefix ("cpe-").
	Prefix string
	// Count is how many CPEs to generate.
	Count int
	// Modes are assigned round-robin. Defaults to ModeDigestMD5 only.
	Modes []Mode
	// CloseAfter401Every makes every Nth CPE (N, 2N, ...) close the
	// connection after its 401. Zero means none.
	CloseAfter401Every int
	// NoncePerConnectionEvery binds nonces to the connection on every Nth
	// CPE, unless that CPE closes after 401 or is not a Digest CPE. Zero
	// means none.
	NoncePerConnectionEvery int
	// RateLimit, RateWindow, SuccessStatus, Realm and NonceTTL apply to
	// every generated CPE, as in HTTPCPEConfig.
	RateLimit     int
	RateWindow    time.Duration
	SuccessStatus int
	Realm         string
	NonceTTL      time.Duration
	// Seed derives the generated credentials, so two processes given the
	// same seed (a simulator and a registration tool) agree on them. Zero
	// picks random credentials.
	Seed int64
	// OnWake, if set, is called on the serving goroutine each time any CPE
	// of the fleet accepts a connection request, before it answers. It
	// must not block.
	OnWake func(name string, at time.Time)
	// Logger defaults to discarding.
	Logger *slog.Logger
}

func (c FleetConfig) withDefaults() FleetConfig {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if len(c.Modes) == 0 {
		c.Modes = []Mode{ModeDigestMD5}
	}
	return c
}

// validate checks what the generated CPEs share; Fleet.Add checks the rest
// of each CPE's configuration.
func (c FleetConfig) validate() error {
	if c.Count < 0 || c.CloseAfter401Every < 0 || c.NoncePerConnectionEvery < 0 {
		return ErrBadCount
	}
	if err := checkPrefix(c.Prefix); err != nil {
		return err
	}
	for _, m := range c.Modes {
		if !m.Valid() {
			return fmt.Errorf("%w %q", ErrUnknownMode, m)
		}
	}
	return nil
}

// Fleet is a set of simulated CPEs served on one listener, each at
// /cr/<name>: thousands of CPEs on loopback need no more than one port.
type Fleet struct {
	log     *slog.Logger
	onWake  func(string, time.Time)
	minter  *nonceMinter
	credKey credKey
	now     func() time.Time // time.Now; tests replace it before Serve
	cpes    *cpeSet[*HTTPCPE]

	connIDs  atomic.Uint64 // last TCP connection id handed out
	notFound atomic.Uint64
}

// NewFleet builds a fleet and generates cfg.Count CPEs.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f := &Fleet{
		log:     cfg.Logger,
		onWake:  cfg.OnWake,
		minter:  newNonceMinter(),
		credKey: newCredKey("crrelay sim credentials", cfg.Seed),
		now:     time.Now,
		// Adds are allowed while the fleet serves.
		cpes: newCPESet[*HTTPCPE]("CPE", nil, cfg.Count),
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	for i := range cfg.Count {
		n := i + 1
		name := cpeName(cfg.Prefix, n)
		mode := cfg.Modes[i%len(cfg.Modes)]
		closeAfter := cfg.CloseAfter401Every > 0 && n%cfg.CloseAfter401Every == 0
		perConn := !closeAfter && mode.Digest() &&
			cfg.NoncePerConnectionEvery > 0 && n%cfg.NoncePerConnectionEvery == 0
		user, pass := f.credentials(name)
		_, err := f.Add(HTTPCPEConfig{
			Name:               name,
			Username:           user,
			Password:           pass,
			Mode:               mode,
			CloseAfter401:      closeAfter,
			NoncePerConnection: perConn,
			RateLimit:          cfg.RateLimit,
			RateWindow:         cfg.RateWindow,
			SuccessStatus:      cfg.SuccessStatus,
			Realm:              cfg.Realm,
			NonceTTL:           cfg.NonceTTL,
		})
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// credentials derives a generated CPE's username and password. The
// username differs from the device id, so a client that mixes them up fails.
func (f *Fleet) credentials(name string) (user, pass string) {
	return "cr-" + name, f.credKey.mac(name)
}

// Add adds one CPE with an explicit configuration. It may be called while
// the fleet is serving.
func (f *Fleet) Add(cfg HTTPCPEConfig) (*HTTPCPE, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("CPE %q: %w", cfg.Name, err)
	}
	return f.cpes.add(cfg.Name, newHTTPCPE(f, cfg))
}

// CPE returns the named CPE, or nil.
func (f *Fleet) CPE(name string) *HTTPCPE { return f.cpes.get(name) }

// Device is what to register with the appliance for one simulated CPE.
type Device struct {
	ID                   string
	ConnectionRequestURL string
	Username             string
	Password             string
	Mode                 Mode
	AllowBasic           bool // the CPE does Basic only
}

// Devices lists the fleet's CPEs, in the order they were added, as reached
// at baseURL (scheme and authority of the listener, e.g. "http://192.0.2.1:7547").
func (f *Fleet) Devices(baseURL string) []Device {
	base := strings.TrimRight(baseURL, "/")
	cs := f.cpes.all()
	ds := make([]Device, len(cs))
	for i, c := range cs {
		ds[i] = Device{
			ID:                   c.cfg.Name,
			ConnectionRequestURL: base + "/cr/" + c.cfg.Name,
			Username:             c.cfg.Username,
			Password:             c.cfg.Password,
			Mode:                 c.cfg.Mode,
			AllowBasic:           c.cfg.Mode == ModeBasic,
		}
	}
	return ds
}

// Registrar is what Register needs of the appliance's API.
type Registrar interface {
	PutDevice(ctx context.Context, d Device) error
}

// Register registers every CPE of the fleet through r, at most concurrency
// at a time (at least one). It stops at the first error and returns it.
func (f *Fleet) Register(ctx context.Context, r Registrar, baseURL string, concurrency int) error {
	return register(ctx, f.Devices(baseURL), concurrency, func(d Device) string { return d.ID }, r.PutDevice)
}

// Stats is a snapshot of a fleet's counters.
type Stats struct {
	Total       Counters
	ByMode      map[Mode]Counters
	Connections uint64 // TCP connections accepted
	NotFound    uint64 // requests for a path that is no CPE's
}

// Stats sums the counters of every CPE.
func (f *Fleet) Stats() Stats {
	s := Stats{
		ByMode:      make(map[Mode]Counters),
		Connections: f.connIDs.Load(),
		NotFound:    f.notFound.Load(),
	}
	for _, c := range f.cpes.all() {
		cs := c.Counters()
		s.Total.add(cs)
		m := s.ByMode[c.cfg.Mode]
		m.add(cs)
		s.ByMode[c.cfg.Mode] = m
	}
	return s
}

// connKey is the context key of a request's TCP connection id.
type connKey struct{}

// Serve answers connection requests on ln until ctx is cancelled, then
// shuts down, giving requests in flight a few seconds, and returns nil. It
// closes ln. Serve may run on several listeners at once.
func (f *Fleet) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           http.HandlerFunc(f.serveHTTP),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		// Every TCP connection gets an id, for NoncePerConnection.
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, f.connIDs.Add(1))
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return fmt.Errorf("sim: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		f.log.Warn("sim: shutdown grace expired, closing connections", slog.Any("err", err))
		srv.Close()
	}
	<-errc // http.ErrServerClosed
	return nil
}

func (f *Fleet) serveHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/cr/")
	var c *HTTPCPE
	if ok {
		c = f.CPE(name)
	}
	if c == nil {
		f.notFound.Add(1)
		w.WriteHeader(http.StatusNotFound)
		return
	}
	conn, _ := r.Context().Value(connKey{}).(uint64)
	c.serve(w, r, conn)
}
