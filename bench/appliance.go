package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/crrelay/crrelay/apiclient"
)

// appliance is bin/crrelay serve running as its own process, on a fresh
// data directory, with its API on a loopback port.
type appliance struct {
	cmd *exec.Cmd
	api *apiclient.Client
	dir string
	log *logTail
}

const benchToken = "bench-token"

var startedRE = regexp.MustCompile(`crrelay started.*api=(http://[0-9.:]+)`)

// startAppliance starts binary serve with args after the bench's own, and
// returns once the API is up. conns is how many API connections the bench
// keeps open. A process that exits before it is up is reported with the
// last lines it logged.
func startAppliance(ctx context.Context, binary string, conns int, args ...string) (*appliance, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("%s: %w (run make build)", binary, err)
	}
	dir, err := os.MkdirTemp("", "crrelay-bench-")
	if err != nil {
		return nil, err
	}
	a := &appliance{dir: dir, log: &logTail{max: 20}}
	all := append([]string{"serve", "--data-dir", filepath.Join(dir, "data"), "--api-listen", "127.0.0.1:0",
		"--api-token", benchToken,
		// No XMPP broker unless a run asks for one (a later flag wins).
		"--xmpp-listen=", "--xmpp-tls-listen="}, args...)
	a.cmd = exec.CommandContext(ctx, binary, all...)
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := a.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := make(chan string, 1)
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		// Keep reading to the end: a process whose log pipe fills up
		// stops.
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			a.log.add(line)
			if m := startedRE.FindStringSubmatch(line); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
	}()
	var url string
	select {
	case url = <-addr:
	case <-eof:
		err := a.cmd.Wait()
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "crrelay serve %s exited (%v); its last lines:\n%s\n", strings.Join(args, " "), err, a.log.String())
		return nil, fmt.Errorf("crrelay serve exited (%v): %s", err, a.log.last())
	case <-time.After(30 * time.Second):
		a.stop()
		return nil, fmt.Errorf("crrelay serve did not start in 30s:\n%s", a.log.String())
	}
	// An ACS keeps connections to the API open; so does the bench.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns}}
	a.api = &apiclient.Client{BaseURL: url, Token: benchToken, HTTP: hc}
	return a, nil
}

func (a *appliance) pid() int { return a.cmd.Process.Pid }

// stop interrupts the appliance, waits for it and removes its data.
func (a *appliance) stop() {
	_ = a.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(a.dir)
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
