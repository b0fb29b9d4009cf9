package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/campaign"
	"github.com/crrelay/crrelay/config"
	"github.com/crrelay/crrelay/events"
	"github.com/crrelay/crrelay/httpcr"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/stun/stunserver"
	"github.com/crrelay/crrelay/wake"
)

// xmppEnabled reports whether the settings run the XMPP broker.
func xmppEnabled(cfg config.Config) bool { return len(cfg.XMPPListen)+len(cfg.XMPPTLSListen) > 0 }

// serve runs the appliance until ctx ends.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var check bool
	cfg, err := config.Load(args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&check, "check", false, "validate the configuration and exit")
	})
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := newLogger(cfg, stderr)

	apiTLS, err := apiTLSConfig(cfg)
	if err != nil {
		return err
	}
	httpCfg, err := httpcrConfig(cfg)
	if err != nil {
		return err
	}
	if check {
		if _, err := httpcr.New(httpCfg); err != nil {
			return err
		}
		enabled := map[registry.Transport]wake.Transport{registry.TransportHTTP: nil}
		if len(cfg.STUNListen) > 0 {
			enabled[registry.TransportUDP] = nil
		}
		if xmppEnabled(cfg) {
			enabled[registry.TransportXMPP] = nil
			if err := checkXMPP(cfg); err != nil {
				return err
			}
		}
		var order []registry.Transport
		for _, t := range cfg.WakeTransports {
			order = append(order, registry.Transport(t))
		}
		if !anyEnabled(order, enabled) {
			return fmt.Errorf("%w: --wake-transports %s names no transport this appliance runs (udp needs --stun-listen, xmpp --xmpp-listen or --xmpp-tls-listen)",
				errUsage, strings.Join(cfg.WakeTransports, ","))
		}
		if len(cfg.STUNListen) > 0 {
			sc, _, err := stunConfig(cfg)
			if err != nil {
				return err
			}
			sc.Registry = noRegistry{}
			if _, err := stunserver.New(sc); err != nil {
				return err
			}
		}
		if cfg.SecretKey != "" {
			if _, err := registry.ParseKey(cfg.SecretKey); err != nil {
				return fmt.Errorf("secret-key: %w", err)
			}
		}
		fmt.Fprintln(stdout, "configuration OK")
		return nil
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	key, err := secretKey(cfg)
	if err != nil {
		return err
	}
	token, err := apiToken(cfg, stdout, log)
	if err != nil {
		return err
	}

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	store, err := registry.OpenBolt(filepath.Join(cfg.DataDir, "registry.db"))
	if err != nil {
		return err
	}
	reg, err := registry.New(store, registry.Options{Key: key, Logger: log.With("part", "registry")})
	if err != nil {
		_ = store.Close()
		return err
	}
	defer func() {
		if err := reg.Close(); err != nil {
			log.Error("closing registry", "err", err)
		}
	}()
	metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crrelay_devices", Help: "Devices in the registry.",
	}, func() float64 { return float64(reg.Len()) }))

	bus, err := events.NewBus(events.Config{MaxClients: cfg.EventsMaxClients, Metrics: metrics, Logger: log.With("part", "events")})
	if err != nil {
		return err
	}
	defer bus.Close()
	var hook *events.Webhook
	if cfg.WebhookURL != "" {
		filter, err := events.ParseFilter(url.Values{"type": cfg.WebhookTypes})
		if err != nil {
			return fmt.Errorf("%w: --webhook-types: %v", errUsage, err)
		}
		hook, err = events.NewWebhook(events.WebhookConfig{URL: cfg.WebhookURL, Secret: []byte(cfg.WebhookSecret), Filter: filter,
			Metrics: metrics, Logger: log.With("part", "webhook")})
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}

	httpCfg.Metrics = metrics
	hc, err := httpcr.New(httpCfg)
	if err != nil {
		return err
	}
	order := make([]registry.Transport, 0, len(cfg.WakeTransports))
	for _, t := range cfg.WakeTransports {
		order = append(order, registry.Transport(t))
	}
	transports := map[registry.Transport]wake.Transport{registry.TransportHTTP: wake.HTTP{Client: hc}}
	var st *stunSetup
	if len(cfg.STUNListen) > 0 {
		st, err = setupSTUN(cfg, reg, bus, httpCfg.Policy, metrics, log.With("part", "stun"))
		if err != nil {
			return err
		}
		defer st.close()
		transports[registry.TransportUDP] = st.transport
	}
	var xs *xmppSetup
	if xmppEnabled(cfg) {
		xs, err = setupXMPP(cfg, reg, bus, metrics, log.With("part", "xmpp"))
		if err != nil {
			return err
		}
		defer xs.close()
		transports[registry.TransportXMPP] = wake.XMPP{Broker: xs.broker}
	}
	if !anyEnabled(order, transports) {
		return fmt.Errorf("%w: --wake-transports %s names no transport this appliance runs (udp needs --stun-listen, xmpp --xmpp-listen or --xmpp-tls-listen)",
			errUsage, strings.Join(cfg.WakeTransports, ","))
	}
	limits, err := wakeLimits(cfg)
	if err != nil {
		return err
	}
	spacing := cfg.WakeMinSpacing
	if spacing == 0 {
		spacing = -1 // none (the waker's zero is its default)
	}
	waker, err := wake.New(wake.Config{
		Devices:       reg,
		Transports:    transports,
		Default:       order,
		Strategy:      wake.Strategy(cfg.WakeStrategy),
		Timeout:       cfg.WakeTimeout,
		MaxTimeout:    cfg.WakeMaxTimeout,
		MinSpacing:    spacing,
		ConfirmWindow: cfg.WakeConfirmWindow,
		Limits:        limits,
		Observer:      appEvents{bus},
		Logger:        log.With("part", "wake"),
		Metrics:       metrics,
	})
	if err != nil {
		return err
	}

	camps, err := campaign.New(campaign.Config{
		Dir:            cfg.DataDir,
		Waker:          campaignWaker{waker},
		Selector:       deviceSelector{reg, waker},
		Publisher:      appEvents{bus},
		MaxConcurrency: cfg.CampaignMaxConcurrency,
		MaxRunning:     cfg.CampaignMaxRunning,
		Keep:           cfg.CampaignKeep,
		Logger:         log.With("part", "campaign"),
		Metrics:        metrics,
	})
	if err != nil {
		return fmt.Errorf("campaigns: %w", err)
	}
	defer camps.Close()

	var ready atomic.Bool
	srv, err := api.New(api.Config{
		Campaigns:        camps,
		Events:           bus,
		BatchConcurrency: cfg.APIBatchConcurrency,
		Token:            token,
		Registry:         reg,
		Waker:            waker,
		CheckURL:         httpCfg.Policy.CheckURL,
		Ready: func() error {
			if !ready.Load() {
				return errors.New("starting or stopping")
			}
			return nil
		},
		Gatherer:      metrics,
		Metrics:       metrics,
		Logger:        log.With("part", "api"),
		ShutdownGrace: cfg.ShutdownGrace,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.APIListen)
	if err != nil {
		return fmt.Errorf("api listen: %w", err)
	}
	scheme := "http"
	if apiTLS != nil {
		scheme = "https"
	}
	g, gctx := errgroup.WithContext(ctx)
	// The STUN sockets and the XMPP broker close only after the API has
	// drained, so wakes in flight at shutdown can still use them.
	stunCtx, stopSTUN := context.WithCancel(context.WithoutCancel(gctx))
	defer stopSTUN()
	g.Go(func() error {
		err := srv.Serve(gctx, ln, apiTLS)
		stopSTUN()
		return err
	})
	var stunAddrs []string
	if st != nil {
		for _, c := range st.conns {
			g.Go(func() error {
				err := st.srv.Serve(stunCtx, c)
				if err != nil {
					stopSTUN()
				}
				return err
			})
		}
		stunAddrs = st.bound
	}
	var xmppAddrs []string
	if xs != nil {
		for _, ln := range xs.plain {
			g.Go(func() error { return xs.broker.Serve(stunCtx, ln, false) })
		}
		for _, ln := range xs.direct {
			g.Go(func() error { return xs.broker.Serve(stunCtx, ln, true) })
		}
		for _, pc := range xs.dnsUDP {
			g.Go(func() error { return xs.dns.Serve(gctx, pc) })
		}
		for _, ln := range xs.dnsTCP {
			g.Go(func() error { return xs.dns.ServeTCP(gctx, ln) })
		}
		xmppAddrs = xs.bound
	}
	// Campaigns stop dispatching when shutdown starts; their wakes in
	// flight still have the transports, which close after the API.
	g.Go(func() error { return camps.Run(gctx) })
	// Event streams end when shutdown starts, or the API's drain would
	// wait for their clients.
	stopEvents := context.AfterFunc(gctx, bus.Close)
	defer stopEvents()
	if hook != nil {
		g.Go(func() error { return hook.Run(stunCtx, bus) })
	}
	if st != nil {
		g.Go(func() error { return watchExpiry(gctx, reg, bus, cfg.STUNBindingTTL, expiryCheckInterval) })
	}
	log.Info("crrelay started", "version", version, "api", scheme+"://"+ln.Addr().String(),
		"stun", strings.Join(stunAddrs, ","), "xmpp", strings.Join(xmppAddrs, ","), "data_dir", cfg.DataDir, "devices", reg.Len())
	ready.Store(true)
	if err := sdNotify("READY=1\nSTATUS=serving"); err != nil {
		log.Warn("sd_notify", "err", err)
	}
	g.Go(func() error {
		<-gctx.Done()
		ready.Store(false)
		_ = sdNotify("STOPPING=1")
		log.Info("shutting down")
		return nil
	})
	return g.Wait()
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func secretKey(cfg config.Config) ([]byte, error) {
	if cfg.SecretKey != "" {
		return registry.ParseKey(cfg.SecretKey)
	}
	return registry.LoadOrCreateKey(cfg.DataDir)
}

// apiToken returns the configured token, or the one generated on first
// start into the data dir. A generated token is printed once, on stdout.
func apiToken(cfg config.Config, stdout io.Writer, log *slog.Logger) (string, error) {
	if cfg.APIToken != "" {
		return cfg.APIToken, nil
	}
	path := config.TokenPath(cfg.DataDir)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("api token file %s is empty; delete it to generate a new token", path)
		}
		log.Info("API token read", "file", path)
		return tok, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("api token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("api token: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("api token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	if os.Getenv("INVOCATION_ID") != "" {
		// Under systemd stdout is the journal, readable by more people
		// than the token file: point at the file instead.
		log.Warn("generated an API token; read it from the file", "file", path)
		return tok, nil
	}
	fmt.Fprintf(stdout, "Generated API token (shown once; also in %s):\n%s\n", path, tok)
	return tok, nil
}

func apiTLSConfig(cfg config.Config) (*tls.Config, error) {
	if cfg.APITLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.APITLSCert, cfg.APITLSKey)
	if err != nil {
		return nil, fmt.Errorf("api tls: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if cfg.APIClientCA != "" {
		pool, err := loadPool(cfg.APIClientCA)
		if err != nil {
			return nil, fmt.Errorf("api client ca: %w", err)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

func httpcrConfig(cfg config.Config) (httpcr.Config, error) {
	allow, err := config.ParseCIDRs(cfg.HTTPAllowCIDRs)
	if err != nil {
		return httpcr.Config{}, err
	}
	deny, err := config.ParseCIDRs(cfg.HTTPDenyCIDRs)
	if err != nil {
		return httpcr.Config{}, err
	}
	policy, err := httpcr.NewPolicy(allow, deny)
	if err != nil {
		return httpcr.Config{}, err
	}
	hc := httpcr.Config{
		ConnectTimeout:     cfg.HTTPConnectTimeout,
		Timeout:            cfg.HTTPTimeout,
		AllowBasic:         cfg.HTTPAllowBasic,
		InsecureSkipVerify: cfg.HTTPInsecureSkipVerify,
		MaxConcurrent:      cfg.HTTPMaxConcurrent,
		MaxPerHost:         cfg.HTTPMaxPerHost,
		Policy:             policy,
	}
	if cfg.HTTPCAFile != "" {
		pool, err := loadPool(cfg.HTTPCAFile)
		if err != nil {
			return hc, fmt.Errorf("http-cr-ca-file: %w", err)
		}
		hc.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return hc, nil
}

// wakeLimits builds the wake path's limits from the settings.
func wakeLimits(cfg config.Config) (wake.Limits, error) {
	l := wake.Limits{
		Global:       wake.Limit{Rate: float64(cfg.WakeRate), Concurrency: cfg.WakeConcurrency},
		PerTransport: map[registry.Transport]wake.Limit{},
	}
	rates, err := config.TransportInts(cfg.WakeTransportRates)
	if err != nil {
		return l, fmt.Errorf("%w: --wake-transport-rates: %v", errUsage, err)
	}
	conc, err := config.TransportInts(cfg.WakeTransportConcurrency)
	if err != nil {
		return l, fmt.Errorf("%w: --wake-transport-concurrency: %v", errUsage, err)
	}
	for t, n := range rates {
		x := l.PerTransport[registry.Transport(t)]
		x.Rate = float64(n)
		l.PerTransport[registry.Transport(t)] = x
	}
	for t, n := range conc {
		x := l.PerTransport[registry.Transport(t)]
		x.Concurrency = n
		l.PerTransport[registry.Transport(t)] = x
	}
	return l, nil
}

func anyEnabled(order []registry.Transport, enabled map[registry.Transport]wake.Transport) bool {
	for _, t := range order {
		if _, ok := enabled[t]; ok {
			return true
		}
	}
	return false
}

// noRegistry lets --check build a STUN server to validate its settings.
type noRegistry struct{}

func (noRegistry) STUNPassword(string) (string, bool) { return "", false }
func (noRegistry) ObserveBinding(registry.BindingObservation) (registry.BindingResult, error) {
	return registry.BindingResult{}, nil
}
