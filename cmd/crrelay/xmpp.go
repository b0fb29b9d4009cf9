package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crrelay/crrelay/config"
	"github.com/crrelay/crrelay/events"
	"github.com/crrelay/crrelay/internal/scramcred"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/xmpp"
	"github.com/crrelay/crrelay/xmpp/srv"
)

// xmppSetup is the XMPP broker, its listeners, and the DNS responder.
type xmppSetup struct {
	broker        *xmpp.Broker
	plain, direct []net.Listener
	bound         []string
	dns           *srv.Server
	dnsUDP        []net.PacketConn
	dnsTCP        []net.Listener
}

func (x *xmppSetup) close() {
	for _, l := range append(append(append([]net.Listener(nil), x.plain...), x.direct...), x.dnsTCP...) {
		l.Close()
	}
	for _, c := range x.dnsUDP {
		c.Close()
	}
}

// checkXMPP validates the XMPP settings without touching the data dir
// (serve --check): the domain, the certificate pair if given, and the ACS
// accounts' credentials.
func checkXMPP(cfg config.Config) error {
	if _, err := xmppDomain(cfg); err != nil {
		return err
	}
	if cfg.XMPPCert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.XMPPCert, cfg.XMPPKey); err != nil {
			return fmt.Errorf("xmpp certificate: %w", err)
		}
	}
	_, err := acsAccounts(cfg)
	return err
}

func acsAccounts(cfg config.Config) ([]xmpp.ACSAccount, error) {
	var out []xmpp.ACSAccount
	for _, a := range cfg.XMPPACSAccounts {
		jid, enc, _ := strings.Cut(a, "=")
		c, err := scramcred.Parse(enc)
		if err != nil {
			return nil, fmt.Errorf("%w: --xmpp-acs-accounts %s: credentials do not decode (make them with crrelay xmpp-credentials)", errUsage, jid)
		}
		out = append(out, xmpp.ACSAccount{JID: jid, Credentials: c})
	}
	return out, nil
}

// xmppConfig builds the broker's config from the settings.
func xmppConfig(cfg config.Config, reg *registry.Registry, bus *events.Bus, metrics prometheus.Registerer, log *slog.Logger) (xmpp.Config, string, error) {
	domain, err := xmppDomain(cfg)
	if err != nil {
		return xmpp.Config{}, "", err
	}
	cert, generated, err := xmpp.LoadOrCreateCertificate(cfg.XMPPCert, cfg.XMPPKey, cfg.DataDir, domain)
	if err != nil {
		return xmpp.Config{}, "", fmt.Errorf("xmpp certificate: %w", err)
	}
	if generated {
		log.Warn("no --xmpp-cert: using a self-signed certificate for the broker; CPEs that verify certificates will refuse it", "domain", domain, "dir", cfg.DataDir)
	}
	xc := xmpp.Config{
		Domain:             domain,
		RelayJID:           cfg.XMPPRelayJID,
		TLS:                &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		MaxStanzaBytes:     cfg.XMPPMaxStanza,
		MaxSessions:        cfg.XMPPMaxSessions,
		ConnRatePerIP:      float64(cfg.XMPPConnRatePerIP),
		NegotiationTimeout: cfg.XMPPNegotiationTimeout,
		ReadTimeout:        cfg.XMPPReadTimeout,
		AuthFailureDelay:   cfg.XMPPAuthFailureDelay,
		Logger:             log,
		Registerer:         metrics,
	}
	if cfg.XMPPConnRatePerIP == 0 {
		xc.ConnRatePerIP = -1 // unlimited
	}
	if cfg.XMPPAuthFailureDelay == 0 {
		xc.AuthFailureDelay = -1 // no delay (the broker's zero is its default)
	}
	if xc.ACSAccounts, err = acsAccounts(cfg); err != nil {
		return xmpp.Config{}, "", err
	}
	xc.Accounts = reg
	xc.Sessions = sessionSink{reg, bus}
	return xc, domain, nil
}

// setupXMPP builds the broker and binds its listeners and the DNS
// responder's sockets.
func setupXMPP(cfg config.Config, reg *registry.Registry, bus *events.Bus, metrics prometheus.Registerer, log *slog.Logger) (*xmppSetup, error) {
	xc, domain, err := xmppConfig(cfg, reg, bus, metrics, log)
	if err != nil {
		return nil, err
	}
	b, err := xmpp.New(xc)
	if err != nil {
		return nil, err
	}
	x := &xmppSetup{broker: b}
	listen := func(addrs []string, into *[]net.Listener, what string) error {
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				return fmt.Errorf("%s %s: %w", what, a, err)
			}
			*into = append(*into, ln)
			x.bound = append(x.bound, ln.Addr().String())
		}
		return nil
	}
	if err := listen(cfg.XMPPListen, &x.plain, "xmpp-listen"); err != nil {
		x.close()
		return nil, err
	}
	if err := listen(cfg.XMPPTLSListen, &x.direct, "xmpp-tls-listen"); err != nil {
		x.close()
		return nil, err
	}
	if len(cfg.DNSListen) > 0 {
		if err := x.setupDNS(cfg, domain, metrics, log); err != nil {
			x.close()
			return nil, err
		}
	}
	return x, nil
}

// setupDNS answers for the broker domain: SRV to the domain itself, whose
// A/AAAA are --dns-addresses, else the specific IPs the broker listens on.
func (x *xmppSetup) setupDNS(cfg config.Config, domain string, metrics prometheus.Registerer, log *slog.Logger) error {
	t := srv.Target{Host: domain}
	for _, a := range cfg.DNSAddresses {
		ip, _ := netip.ParseAddr(a) // validated
		t.Addrs = append(t.Addrs, ip)
	}
	portOf := func(ls []net.Listener) uint16 {
		if len(ls) == 0 {
			return 0
		}
		return ls[0].Addr().(*net.TCPAddr).AddrPort().Port()
	}
	t.Port, t.TLSPort = portOf(x.plain), portOf(x.direct)
	if t.Port == 0 {
		return fmt.Errorf("%w: --dns-listen needs --xmpp-listen (the SRV records point at it)", errUsage)
	}
	if len(t.Addrs) == 0 {
		for _, l := range append(append([]net.Listener(nil), x.plain...), x.direct...) {
			ip := l.Addr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			if !ip.IsUnspecified() && !containsAddr(t.Addrs, ip) {
				t.Addrs = append(t.Addrs, ip)
			}
		}
	}
	if len(t.Addrs) == 0 {
		return fmt.Errorf("%w: --dns-listen needs --dns-addresses when the broker listens on wildcard addresses", errUsage)
	}
	s, err := srv.New(srv.Config{Domain: domain, Targets: []srv.Target{t}, Logger: log, Registerer: metrics})
	if err != nil {
		return err
	}
	x.dns = s
	for _, a := range cfg.DNSListen {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			return fmt.Errorf("dns-listen %s: %w", a, err)
		}
		x.dnsUDP = append(x.dnsUDP, pc)
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			return fmt.Errorf("dns-listen %s (tcp): %w", a, err)
		}
		x.dnsTCP = append(x.dnsTCP, ln)
	}
	return nil
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if a == b {
			return true
		}
	}
	return false
}
