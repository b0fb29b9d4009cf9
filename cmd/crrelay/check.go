package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/crrelay/crrelay/config"
	"github.com/crrelay/crrelay/xmpp/srv"
)

// checkCmd runs `crrelay check xmpp`: it asks a resolver for the broker
// domain's SRV records and tells whether they lead to this appliance
// (its --xmpp-listen and --xmpp-tls-listen addresses, wildcards expanded
// to the local interfaces, plus --dns-addresses, which is where a relay
// behind NAT lists its public addresses). Exit 0 only if they all do.
func checkCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "xmpp" {
		fmt.Fprintln(stderr, "usage: crrelay check xmpp [--domain D] [--resolver IP[:PORT]] [--expect ADDR,...] [serve settings]")
		return fmt.Errorf("%w: check what? (only: xmpp)", errUsage)
	}
	var domain, resolver, expect string
	cfg, err := config.Load(args[1:], getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&domain, "domain", "", "domain whose _xmpp-client._tcp SRV records to check (default --xmpp-domain, else this host's name)")
		fs.StringVar(&resolver, "resolver", "", "resolver to ask, IP[:port] (default the first nameserver of /etc/resolv.conf)")
		fs.StringVar(&expect, "expect", "", "ip:port addresses that count as this appliance, comma-separated (default from --xmpp-listen, --xmpp-tls-listen and --dns-addresses)")
	})
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if domain == "" {
		if domain, err = xmppDomain(cfg); err != nil {
			return err
		}
	}
	if resolver == "" {
		if resolver, err = srv.SystemResolver(); err != nil {
			return fmt.Errorf("no resolver: %w (give --resolver)", err)
		}
	}
	want, err := expectedBrokerAddrs(cfg, expect)
	if err != nil {
		return err
	}
	rep, err := srv.Check(ctx, resolver, domain, want)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	rep.Write(stdout)
	if !rep.Verdict.OK() {
		return exitError{1}
	}
	return nil
}

// xmppDomain is the broker's domain: --xmpp-domain, else the host name.
func xmppDomain(cfg config.Config) (string, error) {
	if cfg.XMPPDomain != "" {
		return strings.ToLower(cfg.XMPPDomain), nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("%w: no --xmpp-domain and no host name (%v)", errUsage, err)
	}
	return strings.ToLower(h), nil
}

// expectedBrokerAddrs lists the addresses that count as this appliance's
// broker: explicit ones, or the XMPP listen addresses with wildcards
// expanded to the local interfaces, plus each --dns-addresses IP on each
// listen port.
func expectedBrokerAddrs(cfg config.Config, explicit string) ([]netip.AddrPort, error) {
	if explicit != "" {
		var out []netip.AddrPort
		for _, s := range strings.Split(explicit, ",") {
			ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("%w: --expect %q is not ip:port", errUsage, s)
			}
			out = append(out, ap)
		}
		return out, nil
	}
	var listen []netip.AddrPort
	for _, s := range append(append([]string(nil), cfg.XMPPListen...), cfg.XMPPTLSListen...) {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return nil, fmt.Errorf("%w: XMPP listen address %q is not ip:port", errUsage, s)
		}
		listen = append(listen, ap)
	}
	if len(listen) == 0 {
		return nil, fmt.Errorf("%w: no XMPP listen addresses: give --expect", errUsage)
	}
	local, err := srv.LocalAddrs()
	if err != nil {
		return nil, fmt.Errorf("local addresses: %w", err)
	}
	out := srv.ExpandWildcards(listen, local)
	for _, s := range cfg.DNSAddresses {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue // Validate refused it already
		}
		for _, l := range listen {
			out = append(out, netip.AddrPortFrom(ip, l.Port()))
		}
	}
	return out, nil
}
