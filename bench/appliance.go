package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/internal/apprun"
)

// appliance is bin/crrelay serve running as its own process (apprun), on
// a fresh data directory, with its API on a loopback port.
type appliance struct {
	p   *apprun.Process
	api *apiclient.Client
}

// startAppliance starts binary serve with args after the bench's own, and
// returns once it is up. conns is how many API connections the bench
// keeps open. A process that exits before it is up is reported with the
// last lines it logged.
func startAppliance(ctx context.Context, binary string, conns int, args ...string) (*appliance, error) {
	p, err := apprun.Start(ctx, apprun.Config{
		Binary: binary, APIConns: conns, TempPrefix: "crrelay-bench-",
		// No XMPP broker unless a run asks for one (a later flag wins).
		Args: append([]string{"--xmpp-listen=", "--xmpp-tls-listen="}, args...),
	})
	if err != nil {
		return nil, fmt.Errorf("crrelay serve %s: %w", strings.Join(args, " "), err)
	}
	return &appliance{p: p, api: p.API}, nil
}

func (a *appliance) pid() int { return a.p.PID() }

// stop interrupts the appliance, waits for it and removes its data.
func (a *appliance) stop() {
	if err := a.p.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "crrelay serve exited with %v; its log ends:\n%s\n", err, a.p.Tail(10))
	}
	a.p.Remove()
}

// logTail keeps the last lines a process logged.
type logTail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *logTail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.max {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, s)
}

// last returns the last line logged, or "".
func (t *logTail) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	return strings.TrimSpace(t.lines[len(t.lines)-1])
}

func (t *logTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return "  " + strings.Join(t.lines, "\n  ")
}

// serveHasFlag reports whether binary serve lists --name in its help.
func serveHasFlag(binary, name string) bool {
	out, _ := exec.Command(binary, "serve", "--help").CombinedOutput()
	return strings.Contains(string(out), "-"+name+" ")
}

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort() (int, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}
