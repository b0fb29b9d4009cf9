// Package netns builds throwaway Linux network namespaces for tests that
// must cross a real network device: a CPE behind a NAT doing masquerade
// with conntrack, and the relay on the public side. It drives iproute2 and
// nftables, and opens sockets inside a namespace by switching one locked
// OS thread into it (a socket stays in the namespace it was created in).
//
// Only addresses of the test's own namespaces are used (198.18.0.0/15,
// the RFC 2544 benchmarking range); nothing leaves the machine.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	ErrUnavailable = errors.New("netns: network namespaces unavailable")
)

// NS is one named network namespace.
type NS struct {
	Name string
}

// Available reports why namespaces with NAT cannot be built here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root", ErrUnavailable)
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not installed (Debian: iproute2, nftables)", ErrUnavailable, tool)
		}
	}
	name := "crprobe-" + suffix()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("%w: ip netns add: %v: %s", ErrUnavailable, err, strings.TrimSpace(string(out)))
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "exec", name, "nft", "add", "table", "ip", "probe").CombinedOutput(); err != nil {
		return fmt.Errorf("%w: nftables in a namespace: %v: %s", ErrUnavailable, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// run executes a command and wraps its output into the error.
func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NAT is a three-namespace topology:
//
//	CPE 198.18.2.2 ── 198.18.2.1 [NAT: masquerade] 198.18.1.2 ── 198.18.1.1 Relay
//
// The relay namespace has no route to 198.18.2.0/24: it only ever sees
// the NAT's public address, as on the Internet.
type NAT struct {
	Relay, Router, CPE       NS
	RelayIP, PublicIP, CPEIP net.IP
	links                    []string
}

// NewNAT builds the topology. Close removes it.
func NewNAT() (*NAT, error) {
	s := suffix()
	n := &NAT{
		Relay: NS{"crrelay-" + s}, Router: NS{"crnat-" + s}, CPE: NS{"crcpe-" + s},
		RelayIP: net.IPv4(198, 18, 1, 1), PublicIP: net.IPv4(198, 18, 1, 2), CPEIP: net.IPv4(198, 18, 2, 2),
	}
	r, nr, c, nc := "r"+s, "nr"+s, "c"+s, "nc"+s // interface names: at most 15 bytes
	steps := [][]string{
		{"ip", "netns", "add", n.Relay.Name},
		{"ip", "netns", "add", n.Router.Name},
		{"ip", "netns", "add", n.CPE.Name},
		{"ip", "link", "add", r, "type", "veth", "peer", "name", nr},
		{"ip", "link", "set", r, "netns", n.Relay.Name},
		{"ip", "link", "set", nr, "netns", n.Router.Name},
		{"ip", "link", "add", c, "type", "veth", "peer", "name", nc},
		{"ip", "link", "set", c, "netns", n.CPE.Name},
		{"ip", "link", "set", nc, "netns", n.Router.Name},
		{"ip", "-n", n.Relay.Name, "addr", "add", "198.18.1.1/24", "dev", r},
		{"ip", "-n", n.Relay.Name, "link", "set", r, "up"},
		{"ip", "-n", n.Relay.Name, "link", "set", "lo", "up"},
		{"ip", "-n", n.Router.Name, "addr", "add", "198.18.1.2/24", "dev", nr},
		{"ip", "-n", n.Router.Name, "link", "set", nr, "up"},
		{"ip", "-n", n.Router.Name, "addr", "add", "198.18.2.1/24", "dev", nc},
		{"ip", "-n", n.Router.Name, "link", "set", nc, "up"},
		{"ip", "-n", n.CPE.Name, "addr", "add", "198.18.2.2/24", "dev", c},
		{"ip", "-n", n.CPE.Name, "link", "set", c, "up"},
		{"ip", "-n", n.CPE.Name, "link", "set", "lo", "up"},
		{"ip", "-n", n.CPE.Name, "route", "add", "default", "via", "198.18.2.1"},
		{"ip", "netns", "exec", n.Router.Name, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "netns", "exec", n.Router.Name, "nft", "add", "table", "ip", "nat"},
		{"ip", "netns", "exec", n.Router.Name, "nft", "add chain ip nat post { type nat hook postrouting priority 100 ; }"},
		{"ip", "netns", "exec", n.Router.Name, "nft", "add", "rule", "ip", "nat", "post", "oifname", nr, "masquerade"},
	}
	for _, st := range steps {
		if err := run(st...); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

// Close removes the namespaces (and with them their veth pairs).
func (n *NAT) Close() error {
	var errs []error
	for _, ns := range []NS{n.Relay, n.Router, n.CPE} {
		if _, err := os.Stat("/var/run/netns/" + ns.Name); err == nil {
			errs = append(errs, run("ip", "netns", "del", ns.Name))
		}
	}
	return errors.Join(errs...)
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn
// creates belong to the namespace for their whole life.
func (ns NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// If switching back fails, the thread stays locked and dies with
		// this goroutine instead of serving others in the wrong namespace.
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns.Name)
		if err != nil {
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: setns %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netns: setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenUDP opens a UDP socket bound to addr inside the namespace.
func (ns NS) ListenUDP(addr string) (*net.UDPConn, error) {
	var conn *net.UDPConn
	err := ns.Do(func() error {
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		conn, err = net.ListenUDP("udp4", ua)
		return err
	})
	return conn, err
}
