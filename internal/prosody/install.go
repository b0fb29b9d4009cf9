package prosody

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Ensure returns the path of prosody, installing Debian's package first
// when it is missing and this process runs as root, and saying so to
// progress. The package's own service, if the installation started it, is
// stopped and disabled: a Server is an instance of its own.
func Ensure(ctx context.Context, progress io.Writer) (string, error) {
	if p, err := exec.LookPath("prosody"); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w, and not root to apt-get install prosody", ErrNotInstalled)
	}
	fmt.Fprintln(progress, "installing prosody (apt-get update; apt-get install prosody)...")
	if out, err := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get update: %v (%s)", err, lastLine(out))
	}
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "prosody")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get install prosody: %v (%s)", err, lastLine(out))
	}
	stopService(ctx)
	return exec.LookPath("prosody")
}

// stopService stops the instance the package may have started, and keeps
// it from starting at boot. Without systemd (a container) the package's
// start is usually denied by policy-rc.d; if it ran anyway, its pid file
// names it.
func stopService(ctx context.Context) {
	if _, err := exec.LookPath("systemctl"); err == nil {
		_ = exec.CommandContext(ctx, "systemctl", "disable", "--now", "prosody.service").Run()
	}
	b, err := os.ReadFile("/run/prosody/prosody.pid")
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), "prosody") {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// Version returns the installed version as the package states it, or "?".
func Version() string {
	b, err := os.ReadFile("/usr/lib/prosody/prosody.version")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
