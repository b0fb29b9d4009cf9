package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("api_listen: 127.0.0.1:1111\nlog_level: debug\nhttp_cr_timeout: 7s\nhttp_cr_deny_cidrs: [10.9.0.0/16]\n"), 0o600)
	cfg, err := Load([]string{"--config", file, "--log-level", "warn"},
		env(map[string]string{"CRRELAY_API_LISTEN": "127.0.0.1:2222", "CRRELAY_LOG_LEVEL": "error"}), io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIListen != "127.0.0.1:2222" { // env over file
		t.Errorf("api_listen %q", cfg.APIListen)
	}
	if cfg.LogLevel != "warn" { // flag over env
		t.Errorf("log_level %q", cfg.LogLevel)
	}
	if cfg.HTTPTimeout != 7*time.Second || !slices.Equal(cfg.HTTPDenyCIDRs, []string{"10.9.0.0/16"}) { // file over default
		t.Errorf("file values lost: %v %v", cfg.HTTPTimeout, cfg.HTTPDenyCIDRs)
	}
	if cfg.HTTPConnectTimeout != 3*time.Second { // default kept
		t.Errorf("default lost: %v", cfg.HTTPConnectTimeout)
	}
}

func TestEnvConfigFileAndExtraFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("api_token: from-file\n"), 0o600)
	var check bool
	cfg, err := Load([]string{"--check", "--wake-transports", "http,udp"}, env(map[string]string{"CRRELAY_CONFIG": file}), io.Discard,
		func(fs *flag.FlagSet) { fs.BoolVar(&check, "check", false, "") })
	if err != nil {
		t.Fatal(err)
	}
	if !check || cfg.APIToken != "from-file" || !slices.Equal(cfg.WakeTransports, []string{"http", "udp"}) {
		t.Fatalf("%v %+v", check, cfg)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, strings.ReplaceAll(s[:min(len(s), 10)], "/", "_")+".yaml")
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want error
	}{
		{"unknown yaml key", []string{"--config", write("api_lisen: x\n")}, nil, ErrFile},
		{"bad yaml", []string{"--config", write("api_listen: [\n")}, nil, ErrFile},
		{"missing file", []string{"--config", "/nonexistent/crrelay.yaml"}, nil, ErrFile},
		{"bad env duration", nil, map[string]string{"CRRELAY_WAKE_TIMEOUT": "soon"}, ErrEnv},
		{"bad env bool", nil, map[string]string{"CRRELAY_HTTP_CR_ALLOW_BASIC": "maybe"}, ErrEnv},
		{"bad log level", []string{"--log-level", "loud"}, nil, ErrInvalid},
		{"bad format", []string{"--log-format", "xml"}, nil, ErrInvalid},
		{"bad listen", []string{"--api-listen", "nowhere"}, nil, ErrInvalid},
		{"listen with two ports", []string{"--api-listen", "host:80:90"}, nil, ErrInvalid},
		{"listen bad ip", []string{"--api-listen", "1.2.3.4.5:99"}, nil, ErrInvalid},
		{"listen bad port", []string{"--api-listen", "127.0.0.1:70000"}, nil, ErrInvalid},
		{"cert without key", []string{"--api-tls-cert", "a.pem"}, nil, ErrInvalid},
		{"client ca without cert", []string{"--api-client-ca", "ca.pem"}, nil, ErrInvalid},
		{"zero timeout", []string{"--http-cr-timeout", "0s"}, nil, ErrInvalid},
		{"timeout over max", []string{"--wake-timeout", "2m"}, nil, ErrInvalid},
		{"bad transport", []string{"--wake-transports", "http,pigeon"}, nil, ErrInvalid},
		{"bad cidr", []string{"--http-cr-allow-cidrs", "10.0.0.0/33"}, nil, ErrInvalid},
		{"zero concurrency", []string{"--http-cr-max-per-host", "0"}, nil, ErrInvalid},
		{"stray argument", []string{"extra"}, nil, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.args, env(c.env), io.Discard, nil)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	if _, err := Load([]string{"--no-such-flag"}, env(nil), io.Discard, nil); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

func TestStateDirectory(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/crrelay:/var/lib/other")
	if d := Default().DataDir; d != "/var/lib/crrelay" {
		t.Fatalf("data dir %q", d)
	}
}

// TestREADMEListsEverySetting keeps the README's settings table true: its
// rows are exactly readmeRow of every setting, in order. With
// CRRELAY_UPDATE_README=1 it rewrites the table instead.
func TestREADMEListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	first, last := -1, -1
	for i, l := range lines {
		if strings.HasPrefix(l, "| `--") {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		t.Fatal("README has no settings table (rows starting | `--)")
	}
	var want []string
	for _, s := range Settings() {
		want = append(want, readmeRow(s))
	}
	if os.Getenv("CRRELAY_UPDATE_README") == "1" {
		out := append(append(append([]string{}, lines[:first]...), want...), lines[last+1:]...)
		if err := os.WriteFile("../README.md", []byte(strings.Join(out, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got := lines[first : last+1]
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Errorf("README settings table lacks: %s", want[i])
		case i >= len(want):
			t.Errorf("README settings table has an extra row: %s", got[i])
		case got[i] != want[i]:
			t.Errorf("README settings row %d:\n got %s\nwant %s", i+1, got[i], want[i])
		}
	}
	if t.Failed() {
		t.Log("regenerate with: CRRELAY_UPDATE_README=1 go test -run TestREADMEListsEverySetting ./config/")
	}
}

func readmeRow(s Setting) string {
	def := s.Default
	if def == "" {
		def = "—"
	}
	return "| `--" + s.Flag + "` | `" + s.Env + "` | `" + s.Key + "` | " + def + " | " + strings.ReplaceAll(s.Usage, "|", "\\|") + " |"
}

func TestParseCIDRs(t *testing.T) {
	p, err := ParseCIDRs([]string{"10.0.0.0/8", " 192.0.2.1 ", "::ffff:198.51.100.1", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "198.51.100.1/32", "2001:db8::/32"}
	for i, w := range want {
		if p[i].String() != w {
			t.Errorf("%d: %s, want %s", i, p[i], w)
		}
	}
}
