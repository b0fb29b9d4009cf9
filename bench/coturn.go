package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// coturn, Debian's STUN/TURN server, is the reference the STUN figures are
// compared with: run STUN-only, it is a plain, mature STUN server.

// ensureCoturn returns the path of turnserver, installing Debian's coturn
// package first when it is missing and the bench runs as root.
func ensureCoturn() (string, error) {
	if p, err := exec.LookPath("turnserver"); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("turnserver not installed and not root to apt-get install coturn")
	}
	fmt.Fprintln(os.Stderr, "installing coturn (apt-get install coturn)...")
	install := func() ([]byte, error) {
		cmd := exec.Command("apt-get", "install", "-y", "-q", "coturn")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if out, err := install(); err != nil {
		// Stale package lists are the usual cause: refresh them once.
		if out2, err2 := exec.Command("apt-get", "update", "-q").CombinedOutput(); err2 != nil {
			return "", fmt.Errorf("apt-get install coturn: %v (%s); apt-get update: %v (%s)", err, lastLine(out), err2, lastLine(out2))
		}
		if out, err = install(); err != nil {
			return "", fmt.Errorf("apt-get install coturn: %v (%s)", err, lastLine(out))
		}
	}
	return exec.LookPath("turnserver")
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// coturn is a running turnserver.
type coturn struct {
	cmd  *exec.Cmd
	addr netip.AddrPort
	dir  string
	log  *logTail
	done chan struct{} // closed when the process has exited
}

// startCoturn runs turnserver in STUN-only mode on a loopback UDP port,
// with no configuration file, no TCP, TLS or DTLS listener, no CLI, and
// its state in a temporary directory, and returns once it answers.
// coturn's default network engine runs one UDP thread per CPU on sockets
// sharing the port with SO_REUSEPORT.
func startCoturn(ctx context.Context, path string) (*coturn, error) {
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "coturn-bench-")
	if err != nil {
		return nil, err
	}
	c := &coturn{addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port)), dir: dir, log: &logTail{max: 20}}
	c.cmd = exec.CommandContext(ctx, path,
		"-n", // no turnserver.conf
		"--stun-only", "--no-cli", "--no-tcp", "--no-tls", "--no-dtls",
		"--listening-ip", "127.0.0.1", "--listening-port", fmt.Sprint(port),
		"--no-software-attribute",
		"--log-file", "stdout", "--simple-log",
		"--pidfile", filepath.Join(dir, "turnserver.pid"),
		"--db", filepath.Join(dir, "turndb"))
	c.cmd.Stdout = lineWriter{c.log}
	c.cmd.Stderr = lineWriter{c.log}
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.done = make(chan struct{})
	var waitErr error
	go func() { waitErr = c.cmd.Wait(); close(c.done) }()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- waitSTUN(wctx, c.addr, 15*time.Second) }()
	select {
	case err := <-ready:
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("turnserver: %w:\n%s", err, c.log.String())
		}
	case <-c.done:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("turnserver exited (%v):\n%s", waitErr, c.log.String())
	}
	return c, nil
}

func (c *coturn) pid() int { return c.cmd.Process.Pid }

func (c *coturn) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	os.RemoveAll(c.dir)
}

// lineWriter feeds a process's output to a logTail, line by line.
type lineWriter struct{ t *logTail }

func (w lineWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.add(l)
	}
	return len(b), nil
}
