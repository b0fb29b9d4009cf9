package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crrelay/crrelay/config"
	"github.com/crrelay/crrelay/events"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/stun/stunserver"
	"github.com/crrelay/crrelay/wake"
)

// stunSocketBuffer is the socket buffer size asked for each STUN socket.
const stunSocketBuffer = 4 << 20

// stunSetup is the STUN server with its bound sockets and the UDP wake
// transport that sends from them.
type stunSetup struct {
	srv       *stunserver.Server
	conns     []net.PacketConn
	transport wake.UDP
	addrs     []string // as configured
	bound     []string // as bound (port 0 resolved)
}

// stunConfig builds the STUN server's configuration, and checks what
// config.Validate cannot without knowing the server.
func stunConfig(cfg config.Config) (stunserver.Config, netip.AddrPort, error) {
	var sc stunserver.Config
	if err := sc.Integrity.UnmarshalText([]byte(cfg.STUNIntegrity)); err != nil {
		return sc, netip.AddrPort{}, err
	}
	sc.RatePerSource = float64(cfg.STUNRatePerSource)
	if cfg.STUNRatePerSource == 0 {
		sc.RatePerSource = -1 // the flag's 0 means unlimited
	}
	sc.Retransmits = cfg.UDPCRRetransmits
	if cfg.UDPCRRetransmits == 0 {
		sc.Retransmits = -1 // the flag's 0 means no extra copy
	}
	// The first listen address with a specific IP: CHANGE-REQUEST's
	// primary, and the source of requests to registered udp_addresses.
	var specific netip.AddrPort
	for _, a := range cfg.STUNListen {
		if ap, err := netip.ParseAddrPort(a); err == nil && !ap.Addr().IsUnspecified() {
			specific = ap
			break
		}
	}
	if cfg.STUNAlternate != "" {
		if !specific.IsValid() {
			return sc, specific, fmt.Errorf("%w: --stun-alternate needs a --stun-listen address with a specific IP", errUsage)
		}
		sc.Primary, sc.Alternate = specific, netip.MustParseAddrPort(cfg.STUNAlternate)
	}
	if cfg.UDPAllowRegistered && !specific.IsValid() {
		return sc, specific, fmt.Errorf("%w: --udp-allow-registered-address needs a --stun-listen address with a specific IP to send from", errUsage)
	}
	return sc, specific, nil
}

// setupSTUN builds the server and binds its sockets: SO_REUSEPORT sockets
// per listen address, and for CHANGE-REQUEST every combination of the
// primary and alternate IPs and ports.
func setupSTUN(cfg config.Config, reg *registry.Registry, bus *events.Bus, policy wake.AddrPolicy, metrics prometheus.Registerer, log *slog.Logger) (*stunSetup, error) {
	sc, specific, err := stunConfig(cfg)
	if err != nil {
		return nil, err
	}
	sc.Registry = bindingEvents{reg, bus}
	sc.Logger = log
	sc.Registerer = metrics
	srv, err := stunserver.New(sc)
	if err != nil {
		return nil, err
	}
	addrs := append([]string(nil), cfg.STUNListen...)
	if sc.Alternate.IsValid() {
		p, a := sc.Primary, sc.Alternate
		for _, ap := range []netip.AddrPort{
			netip.AddrPortFrom(a.Addr(), a.Port()), netip.AddrPortFrom(a.Addr(), p.Port()), netip.AddrPortFrom(p.Addr(), a.Port()),
		} {
			if s := ap.String(); ap != p && !contains(addrs, s) {
				addrs = append(addrs, s)
			}
		}
	}
	n := cfg.STUNSockets
	if n == 0 {
		n = runtime.NumCPU()
	}
	st := &stunSetup{srv: srv, addrs: addrs}
	for _, a := range addrs {
		network := "udp4"
		if ap, err := netip.ParseAddrPort(a); err == nil && ap.Addr().Is6() {
			network = "udp6"
		} else if err != nil {
			if host, _, herr := net.SplitHostPort(a); herr == nil && host == "" {
				network = "udp" // ":3478": every address, both families
			}
		}
		// SO_REUSEPORT would let a second relay (or a STUN daemon that
		// also sets it) share the port and steal half the packets
		// (PROTOCOL-NOTES §1): prove the port free with a plain bind.
		if err := checkPortFree(network, a); err != nil {
			st.close()
			return nil, fmt.Errorf("stun listen %s: %w", a, err)
		}
		// The first socket resolves port 0 (tests); the others join it.
		first, err := stunserver.ListenReusePort(network, a, 1)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("stun listen %s: %w", a, err)
		}
		st.conns = append(st.conns, first...)
		bound := first[0].LocalAddr().String()
		st.bound = append(st.bound, bound)
		if n > 1 {
			more, err := stunserver.ListenReusePort(network, bound, n-1)
			if err != nil {
				st.close()
				return nil, fmt.Errorf("stun listen %s: %w", bound, err)
			}
			st.conns = append(st.conns, more...)
		}
	}
	// Bursts of binding requests overflow the default receive buffer
	// (about 208 KiB); ask for more. The kernel caps it at
	// net.core.rmem_max / wmem_max, which the README says to raise.
	for _, c := range st.conns {
		if uc, ok := c.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(stunSocketBuffer)
			_ = uc.SetWriteBuffer(stunSocketBuffer)
		}
	}
	st.transport = wake.UDP{
		Sender: srv, Bindings: reg, TTL: cfg.STUNBindingTTL,
		AllowRegistered: cfg.UDPAllowRegistered, RegisteredFrom: specific, Policy: policy,
	}
	return st, nil
}

// checkPortFree binds addr without SO_REUSEPORT and lets it go.
func checkPortFree(network, addr string) error {
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		return nil
	}
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		return fmt.Errorf("port in use (another crrelay or STUN server?): %w", err)
	}
	return c.Close()
}

func (st *stunSetup) close() {
	for _, c := range st.conns {
		c.Close()
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
