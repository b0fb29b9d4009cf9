package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/netip"
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

// startTimeout bounds the appliance's start-up: it opens a bbolt file,
// generates a self-signed certificate and binds a few loopback sockets.
const startTimeout = 20 * time.Second

// appliance is bin/crrelay serve running as its own process on a fresh
// data directory in a temporary directory, every listener on loopback.
type appliance struct {
	cmd     *exec.Cmd
	dir     string // temporary directory: data dir and log
	logPath string
	pid     int

	api      *apiclient.Client
	stun     netip.AddrPort // the STUN server, as bound
	xmpp     string         // the broker's STARTTLS listener
	xmppTLS  string         // its direct-TLS listener
	exited   chan struct{}  // closed when the process has exited
	exitErr  error          // cmd.Wait's answer, once exited is closed
	startDur time.Duration  // from exec to the "crrelay started" line
}

// applianceConfig is what the demo asks of the appliance beyond the
// settings it always uses.
type applianceConfig struct {
	binary      string
	domain      string // --xmpp-domain
	apiConns    int    // API connections the demo keeps open
	httpPerHost int    // --http-cr-max-per-host
}

// startAppliance starts the appliance and returns once its "crrelay
// started" line is logged. The caller must call stop, then remove.
func startAppliance(ctx context.Context, cfg applianceConfig) (*appliance, error) {
	if _, err := os.Stat(cfg.binary); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotBuilt, err)
	}
	// The XMPP broker's two listeners are told apart only by the flag
	// that opened them, so they get ports picked here; the STUN server
	// binds port 0 and the started line says which port it got.
	xmppPort, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	xmppTLSPort, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "crrelay-demo-")
	if err != nil {
		return nil, err
	}
	a := &appliance{
		dir:     dir,
		logPath: filepath.Join(dir, "crrelay.log"),
		xmpp:    net.JoinHostPort("127.0.0.1", strconv.Itoa(xmppPort)),
		xmppTLS: net.JoinHostPort("127.0.0.1", strconv.Itoa(xmppTLSPort)),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(a.logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	token := rand.Text()
	args := []string{"serve",
		"--data-dir", filepath.Join(dir, "data"),
		"--api-listen", "127.0.0.1:0",
		"--api-token", token,
		"--log-format", "text", // the started line is read from the log
		"--log-level", "info",
		"--stun-listen", "127.0.0.1:0",
		"--stun-integrity", "required",
		"--xmpp-listen", a.xmpp,
		"--xmpp-tls-listen", a.xmppTLS,
		"--xmpp-domain", cfg.domain,
		"--http-cr-allow-cidrs", "127.0.0.0/8",
		// Every simulated CPE shares the source address 127.0.0.1,
		// where a real fleet has one address per CPE: the per-IP
		// limits meant against a single misbehaving host would
		// throttle the whole demo fleet.
		"--stun-rate-per-source", "0",
		"--xmpp-conn-rate-per-ip", "0",
		"--http-cr-max-per-host", strconv.Itoa(cfg.httpPerHost),
	}
	a.cmd = exec.Command(cfg.binary, args...)
	// A fresh appliance whatever the caller's environment: no
	// CRRELAY_* variable (a config file, a JSON log format) applies.
	a.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CRRELAY_") })
	// The appliance writes its log straight to the file: no pipe that
	// could fill up and stall it.
	a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
	start := time.Now()
	err = a.cmd.Start()
	logFile.Close() // the child has its own descriptor
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("demo: start %s: %w", cfg.binary, err)
	}
	a.pid = a.cmd.Process.Pid
	go func() {
		a.exitErr = a.cmd.Wait()
		close(a.exited)
	}()

	fields, err := a.waitStarted(ctx)
	if err == nil {
		err = a.parseStarted(fields)
	}
	if err != nil {
		a.stop()
		a.remove()
		return nil, err
	}
	a.startDur = time.Since(start)
	hc := &http.Client{
		Transport: &http.Transport{MaxIdleConns: cfg.apiConns, MaxIdleConnsPerHost: cfg.apiConns},
		Timeout:   30 * time.Second,
	}
	a.api = &apiclient.Client{BaseURL: fields["api"], Token: token, HTTP: hc}
	return a, nil
}

// startedRE matches the appliance's start-up line, logged once every
// listener is bound.
var startedRE = regexp.MustCompile(`msg="crrelay started"(.*)`)

// fieldRE matches one slog text field: key=value or key="quoted value"
// (slog quotes empty values: stun="").
var fieldRE = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// waitStarted polls the log until the started line appears and returns
// its fields, or fails when the process exits first or takes too long.
func (a *appliance) waitStarted(ctx context.Context) (map[string]string, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(startTimeout)
	for {
		if b, err := os.ReadFile(a.logPath); err == nil {
			if m := startedRE.FindSubmatch(b); m != nil {
				return logFields(string(m[1])), nil
			}
		}
		select {
		case <-tick.C:
		case <-a.exited:
			return nil, fmt.Errorf("%w (%v) before it was up; its log:\n%s", errExited, a.exitErr, a.tail(15))
		case <-deadline:
			return nil, fmt.Errorf("%w (%s); its log:\n%s", errNoStart, startTimeout, a.tail(15))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// parseStarted checks the started line's addresses against what the demo
// asked for.
func (a *appliance) parseStarted(f map[string]string) error {
	if !strings.HasPrefix(f["api"], "http://") {
		return fmt.Errorf("%w: api=%q", errStartedLog, f["api"])
	}
	stun, err := netip.ParseAddrPort(f["stun"])
	if err != nil {
		return fmt.Errorf("%w: stun=%q: %v", errStartedLog, f["stun"], err)
	}
	a.stun = stun
	xmpp := strings.Split(f["xmpp"], ",")
	if len(xmpp) != 2 || !slices.Contains(xmpp, a.xmpp) || !slices.Contains(xmpp, a.xmppTLS) {
		return fmt.Errorf("%w: xmpp=%q, want %s and %s", errStartedLog, f["xmpp"], a.xmpp, a.xmppTLS)
	}
	return nil
}

// alive reports an error if the appliance has exited, for the messages
// of API calls that failed.
func (a *appliance) alive() error {
	select {
	case <-a.exited:
		return fmt.Errorf("%w (%v); its log ends:\n%s", errExited, a.exitErr, a.tail(10))
	default:
		return nil
	}
}

// stop interrupts the appliance as Ctrl-C would and waits for its clean
// shutdown, killing it if that takes too long.
func (a *appliance) stop() {
	select {
	case <-a.exited:
		return
	default:
	}
	// Close the API connections first, as an ACS going away would. The
	// client may hold one it dialled but never sent a request on, and
	// net/http's Shutdown waits up to 5 s for such a connection.
	if a.api != nil {
		a.api.HTTP.CloseIdleConnections()
	}
	_ = a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
}

// remove removes the temporary directory, data and log.
func (a *appliance) remove() { os.RemoveAll(a.dir) }

// tail returns the last n lines of the log, indented.
func (a *appliance) tail(n int) string {
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + string(bytes.Join(lines, []byte("\n  ")))
}

// problems returns the appliance's log lines at WARN or ERROR level,
// shortened to their level and message, at most n of them, and how many
// there were.
func (a *appliance) problems(n int) ([]string, int) {
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		return nil, 0
	}
	var out []string
	total := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		f := logFields(line)
		if f["level"] != "WARN" && f["level"] != "ERROR" {
			continue
		}
		total++
		if len(out) < n {
			s := f["level"] + " " + f["msg"]
			if e := f["err"]; e != "" {
				s += ": " + e
			}
			out = append(out, s)
		}
	}
	return out, total
}

// problemReport describes the warnings and errors the appliance logged,
// for the message of a failure; "" if there are none.
func (a *appliance) problemReport() string {
	lines, n := a.problems(5)
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("\nthe appliance logged %d warnings or errors, first:\n  %s", n, strings.Join(lines, "\n  "))
}

// logFields parses a slog text line into its fields.
func logFields(line string) map[string]string {
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

// freeTCPPort returns a loopback TCP port that was free a moment ago.
func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
