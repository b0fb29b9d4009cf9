// Package apprun runs the appliance (bin/crrelay serve) as its own
// process on a fresh data directory, for the bench and the demo: it
// starts it, waits for its "crrelay started" line, tells where it
// listens, and stops it as Ctrl-C would.
package apprun

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crrelay/crrelay/apiclient"
)

var (
	ErrNotBuilt    = errors.New("apprun: appliance binary missing (run make build)")
	ErrExited      = errors.New("apprun: appliance exited")
	ErrNoStart     = errors.New("apprun: appliance did not start in time")
	ErrStartedLine = errors.New("apprun: unexpected \"crrelay started\" log line")
)

// Config says which binary to run and how.
type Config struct {
	Binary string
	// Args are serve's settings after the package's own (a data dir in
	// a temporary directory, the API on a loopback port with a random
	// token, text logs); a later flag wins over an earlier one.
	Args []string
	// APIConns is how many API connections the caller keeps open.
	APIConns int
	// TempPrefix names the temporary directory; default "crrelay-".
	TempPrefix string
	// StartTimeout bounds the start-up; default 30s.
	StartTimeout time.Duration
}

// Process is a running appliance.
type Process struct {
	API  *apiclient.Client
	STUN []string // the STUN server's bound addresses, as logged
	XMPP []string // the broker's: STARTTLS listeners first, then direct TLS
	// Dir holds the data dir and LogPath, where the process logs.
	Dir, LogPath  string
	StartDuration time.Duration // from exec to the started line

	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
}

// Start runs the appliance and returns once it logged that it started.
// The caller must call Stop, then Remove.
func Start(ctx context.Context, cfg Config) (*Process, error) {
	if _, err := os.Stat(cfg.Binary); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotBuilt, err)
	}
	if cfg.TempPrefix == "" {
		cfg.TempPrefix = "crrelay-"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	dir, err := os.MkdirTemp("", cfg.TempPrefix)
	if err != nil {
		return nil, err
	}
	p := &Process{Dir: dir, LogPath: filepath.Join(dir, "crrelay.log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.LogPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	token := rand.Text()
	args := append([]string{"serve",
		"--data-dir", filepath.Join(dir, "data"),
		"--api-listen", "127.0.0.1:0",
		"--api-token", token,
		"--log-format", "text", // the started line is read from the log
	}, cfg.Args...)
	p.cmd = exec.Command(cfg.Binary, args...)
	// A fresh appliance whatever the caller's environment: no CRRELAY_*
	// variable (a config file, a JSON log format) applies.
	p.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CRRELAY_") })
	// The log goes straight to the file: no pipe that could fill up and
	// stall the appliance.
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	start := time.Now()
	err = p.cmd.Start()
	logFile.Close() // the child has its own descriptor
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("apprun: start %s: %w", cfg.Binary, err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	fields, err := p.waitStarted(ctx, cfg.StartTimeout)
	if err != nil {
		p.Stop()
		p.Remove()
		return nil, err
	}
	p.StartDuration = time.Since(start)
	if !strings.HasPrefix(fields["api"], "http://") {
		p.Stop()
		p.Remove()
		return nil, fmt.Errorf("%w: api=%q", ErrStartedLine, fields["api"])
	}
	p.STUN, p.XMPP = split(fields["stun"]), split(fields["xmpp"])
	conns := max(cfg.APIConns, 2)
	hc := &http.Client{
		Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns},
		Timeout:   60 * time.Second,
	}
	p.API = &apiclient.Client{BaseURL: fields["api"], Token: token, HTTP: hc}
	return p, nil
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// startedRE matches the appliance's start-up line, logged once every
// listener is bound.
var startedRE = regexp.MustCompile(`msg="crrelay started"(.*)`)

// fieldRE matches one slog text field: key=value or key="quoted value"
// (slog quotes empty values: stun="").
var fieldRE = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// waitStarted polls the log until the started line appears and returns
// its fields, or fails when the process exits first or takes too long.
func (p *Process) waitStarted(ctx context.Context, timeout time.Duration) (map[string]string, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		if b, err := os.ReadFile(p.LogPath); err == nil {
			if m := startedRE.FindSubmatch(b); m != nil {
				return LogFields(string(m[1])), nil
			}
		}
		select {
		case <-tick.C:
		case <-p.exited:
			return nil, fmt.Errorf("%w (%v) before it was up; its log:\n%s", ErrExited, p.exitErr, p.Tail(15))
		case <-deadline:
			return nil, fmt.Errorf("%w (%s); its log:\n%s", ErrNoStart, timeout, p.Tail(15))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// LogFields parses a slog text line into its fields.
func LogFields(line string) map[string]string {
	fields := map[string]string{}
	for _, f := range fieldRE.FindAllStringSubmatch(line, -1) {
		v := f[2]
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		fields[f[1]] = v
	}
	return fields
}

// PID is the appliance's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Alive reports an error if the appliance has exited, for the messages of
// API calls that failed.
func (p *Process) Alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%w (%v); its log ends:\n%s", ErrExited, p.exitErr, p.Tail(10))
	default:
		return nil
	}
}

// Stop interrupts the appliance as Ctrl-C would and waits for its clean
// shutdown, killing it if that takes over 30 s. It returns how the
// process exited (nil: cleanly).
func (p *Process) Stop() error {
	select {
	case <-p.exited:
		return p.exitErr
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	return p.exitErr
}

// Remove removes the temporary directory: data and log.
func (p *Process) Remove() { os.RemoveAll(p.Dir) }

// Log returns what the appliance logged so far.
func (p *Process) Log() []byte {
	b, _ := os.ReadFile(p.LogPath)
	return b
}

// Tail returns the last n lines of the log, indented.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + string(bytes.Join(lines, []byte("\n  ")))
}
