// Package config holds every setting of the appliance and loads it from,
// in rising order of precedence: built-in defaults, a YAML file
// (--config), environment variables CRRELAY_*, and command-line flags.
//
// Each setting is one field of Config whose tags give its YAML key, flag
// name, environment variable and help text, so the three sources can never
// disagree on names (and the README's table is checked against them).
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is every setting of `crrelay serve`.
type Config struct {
	DataDir   string `yaml:"data_dir" flag:"data-dir" usage:"directory for the registry, keys and token (default ./crrelay-data, or $STATE_DIRECTORY under systemd)"`
	LogLevel  string `yaml:"log_level" flag:"log-level" usage:"debug, info, warn or error"`
	LogFormat string `yaml:"log_format" flag:"log-format" usage:"text or json"`

	APIListen     string        `yaml:"api_listen" flag:"api-listen" usage:"address of the ACS API (host:port)"`
	APIToken      string        `yaml:"api_token" flag:"api-token" usage:"bearer token of the API; empty = generate one on first start into <data-dir>/api-token"`
	APITLSCert    string        `yaml:"api_tls_cert" flag:"api-tls-cert" usage:"PEM certificate: serve the API over HTTPS"`
	APITLSKey     string        `yaml:"api_tls_key" flag:"api-tls-key" usage:"PEM private key for --api-tls-cert"`
	APIClientCA   string        `yaml:"api_client_ca" flag:"api-client-ca" usage:"PEM CA bundle: require ACS client certificates signed by it (mTLS)"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace" flag:"shutdown-grace" usage:"how long shutdown waits for in-flight requests"`

	APIBatchConcurrency int `yaml:"api_batch_concurrency" flag:"api-batch-concurrency" usage:"wakes of one POST /v1/connection-requests running at once"`

	SecretKey string `yaml:"secret_key" flag:"secret-key" usage:"AES-256 key sealing secrets at rest, 64 hex chars or base64; empty = <data-dir>/secret.key, created on first start"`

	WakeTransports           []string      `yaml:"wake_transports" flag:"wake-transports" usage:"transport order for devices that name none (comma-separated: xmpp,udp,http)"`
	WakeTimeout              time.Duration `yaml:"wake_timeout" flag:"wake-timeout" usage:"default bound on one wake"`
	WakeMaxTimeout           time.Duration `yaml:"wake_max_timeout" flag:"wake-max-timeout" usage:"largest timeout_ms a caller may ask for"`
	WakeStrategy             string        `yaml:"wake_strategy" flag:"wake-strategy" usage:"for wakes that name none: sequential (fall back to the next transport on failure) or parallel (all usable transports at once)"`
	WakeMinSpacing           time.Duration `yaml:"wake_min_spacing" flag:"wake-min-spacing" usage:"least time between two wakes of one device; a wake sooner returns the last result, marked coalesced (0 = only concurrent wakes are shared)"`
	WakeConfirmWindow        time.Duration `yaml:"wake_confirm_window" flag:"wake-confirm-window" usage:"how long after a wake an Inform reported through the API still confirms it"`
	WakeRate                 int           `yaml:"wake_rate" flag:"wake-rate" usage:"wakes started per second, overall; more are refused with 429 (0 = unlimited)"`
	WakeConcurrency          int           `yaml:"wake_concurrency" flag:"wake-concurrency" usage:"wakes running at once, overall; more are refused with 429 (0 = unlimited)"`
	WakeTransportRates       []string      `yaml:"wake_transport_rates" flag:"wake-transport-rates" usage:"attempts per second per transport, as transport=N, comma-separated (e.g. http=3000); a transport over it is skipped (throttled) or, if it was the only one, the wake gets 429"`
	WakeTransportConcurrency []string      `yaml:"wake_transport_concurrency" flag:"wake-transport-concurrency" usage:"attempts running at once per transport, as transport=N, comma-separated (e.g. http=1024)"`

	EventsMaxClients int      `yaml:"events_max_clients" flag:"events-max-clients" usage:"GET /v1/events streams open at once; more get 503"`
	WebhookURL       string   `yaml:"webhook_url" flag:"webhook-url" usage:"POST every event (or those of --webhook-types) to this http(s) URL, signed with --webhook-secret; empty = no webhook"`
	WebhookSecret    string   `yaml:"webhook_secret" flag:"webhook-secret" usage:"HMAC-SHA256 key of the webhook's X-Crrelay-Signature (at least 16 bytes; prefer the environment variable)"`
	WebhookTypes     []string `yaml:"webhook_types" flag:"webhook-types" usage:"event types or families the webhook gets, comma-separated (e.g. wake,xmpp.offline); empty = all"`

	CampaignMaxRunning     int `yaml:"campaign_max_running" flag:"campaign-max-running" usage:"campaigns running at once; more are refused with 429"`
	CampaignMaxConcurrency int `yaml:"campaign_max_concurrency" flag:"campaign-max-concurrency" usage:"largest concurrency a campaign may ask for"`
	CampaignKeep           int `yaml:"campaign_keep" flag:"campaign-keep" usage:"finished campaigns kept (with their per-device results); older ones are deleted"`

	STUNListen         []string      `yaml:"stun_listen" flag:"stun-listen" usage:"UDP addresses of the TR-111 STUN server, comma-separated (IPv4 and IPv6); empty = no STUN server"`
	STUNAlternate      string        `yaml:"stun_alternate" flag:"stun-alternate" usage:"alternate ip:port for CHANGE-REQUEST and CHANGED-ADDRESS (RFC 3489 NAT discovery); empty = none"`
	STUNIntegrity      string        `yaml:"stun_integrity" flag:"stun-integrity" usage:"MESSAGE-INTEGRITY policy: off, optional or required"`
	STUNSockets        int           `yaml:"stun_sockets" flag:"stun-sockets" usage:"SO_REUSEPORT sockets per STUN address (0 = one per CPU)"`
	STUNRatePerSource  int           `yaml:"stun_rate_per_source" flag:"stun-rate-per-source" usage:"STUN requests per second allowed from one source IP (0 = unlimited)"`
	STUNBindingTTL     time.Duration `yaml:"stun_binding_ttl" flag:"stun-binding-ttl" usage:"a UDP binding not refreshed for this long is stale: no UDP connection request is sent to it"`
	UDPCRRetransmits   int           `yaml:"udp_cr_retransmits" flag:"udp-cr-retransmits" usage:"extra identical copies of each UDP connection request"`
	UDPAllowRegistered bool          `yaml:"udp_allow_registered_address" flag:"udp-allow-registered-address" usage:"without a STUN binding, send UDP connection requests to the device's registered udp_address (off: only to bindings learned by STUN)"`

	XMPPListen             []string      `yaml:"xmpp_listen" flag:"xmpp-listen" usage:"TCP addresses of the XMPP broker's client port (STARTTLS, required), comma-separated; empty = none"`
	XMPPTLSListen          []string      `yaml:"xmpp_tls_listen" flag:"xmpp-tls-listen" usage:"TCP addresses of the XMPP broker's direct-TLS port, comma-separated; empty = none"`
	XMPPDomain             string        `yaml:"xmpp_domain" flag:"xmpp-domain" usage:"the broker's XMPP domain, the part after @ in CPE JIDs; empty = this host's name"`
	XMPPCert               string        `yaml:"xmpp_cert" flag:"xmpp-cert" usage:"PEM certificate of the broker; empty = a self-signed one generated into <data-dir>"`
	XMPPKey                string        `yaml:"xmpp_key" flag:"xmpp-key" usage:"PEM private key for --xmpp-cert"`
	XMPPRelayJID           string        `yaml:"xmpp_relay_jid" flag:"xmpp-relay-jid" usage:"the JID connection requests come from (CPEs must allow it in ConnReqAllowedJabberIDs); empty = crrelay@<domain>/relay"`
	XMPPACSAccounts        []string      `yaml:"xmpp_acs_accounts" flag:"xmpp-acs-accounts" usage:"ACS accounts allowed to send connection requests over XMPP, as bare-jid=credentials (from crrelay xmpp-credentials), comma-separated"`
	XMPPMaxStanza          int           `yaml:"xmpp_max_stanza" flag:"xmpp-max-stanza" usage:"largest stanza accepted, in bytes; a larger one closes the stream"`
	XMPPMaxSessions        int           `yaml:"xmpp_max_sessions" flag:"xmpp-max-sessions" usage:"XMPP connections at most, negotiating or online"`
	XMPPConnRatePerIP      int           `yaml:"xmpp_conn_rate_per_ip" flag:"xmpp-conn-rate-per-ip" usage:"new XMPP connections per second allowed from one IP (0 = unlimited)"`
	XMPPNegotiationTimeout time.Duration `yaml:"xmpp_negotiation_timeout" flag:"xmpp-negotiation-timeout" usage:"time a new connection has to finish TLS, SASL and bind"`
	XMPPReadTimeout        time.Duration `yaml:"xmpp_read_timeout" flag:"xmpp-read-timeout" usage:"a session silent this long (no stanza, no whitespace keepalive) is closed as dead"`
	XMPPAuthFailureDelay   time.Duration `yaml:"xmpp_auth_failure_delay" flag:"xmpp-auth-failure-delay" usage:"delay before answering a failed XMPP authentication (0 = none)"`

	DNSListen    []string `yaml:"dns_listen" flag:"dns-listen" usage:"UDP+TCP addresses of the authoritative DNS responder for the XMPP domain (SRV, A, AAAA), comma-separated; empty = none"`
	DNSAddresses []string `yaml:"dns_addresses" flag:"dns-addresses" usage:"IP addresses the DNS responder gives for the broker; empty = the specific IPs of --xmpp-listen"`

	HTTPConnectTimeout     time.Duration `yaml:"http_cr_connect_timeout" flag:"http-cr-connect-timeout" usage:"TCP (and TLS) connect timeout of HTTP connection requests"`
	HTTPTimeout            time.Duration `yaml:"http_cr_timeout" flag:"http-cr-timeout" usage:"bound on one HTTP connection request, both round trips"`
	HTTPAllowBasic         bool          `yaml:"http_cr_allow_basic" flag:"http-cr-allow-basic" usage:"allow Basic auth for every device (clear-text password; off by default)"`
	HTTPInsecureSkipVerify bool          `yaml:"http_cr_insecure_skip_verify" flag:"http-cr-insecure-skip-verify" usage:"do not verify https CPE certificates (many CPEs are self-signed)"`
	HTTPCAFile             string        `yaml:"http_cr_ca_file" flag:"http-cr-ca-file" usage:"PEM CA bundle for https connection-request URLs (default: system roots)"`
	HTTPMaxConcurrent      int           `yaml:"http_cr_max_concurrent" flag:"http-cr-max-concurrent" usage:"HTTP connection requests in flight, overall"`
	HTTPMaxPerHost         int           `yaml:"http_cr_max_per_host" flag:"http-cr-max-per-host" usage:"HTTP connection requests in flight per destination IP"`
	HTTPAllowCIDRs         []string      `yaml:"http_cr_allow_cidrs" flag:"http-cr-allow-cidrs" usage:"if set, connection-request URLs may only reach these CIDRs; also re-allows loopback/link-local/own addresses they cover"`
	HTTPDenyCIDRs          []string      `yaml:"http_cr_deny_cidrs" flag:"http-cr-deny-cidrs" usage:"connection-request URLs may never reach these CIDRs (wins over allow)"`
}

// Default returns the built-in defaults.
func Default() Config {
	dataDir := "./crrelay-data"
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		// systemd StateDirectory=: may list several, colon-separated.
		dataDir = strings.Split(d, ":")[0]
	}
	return Config{
		DataDir:                dataDir,
		LogLevel:               "info",
		LogFormat:              "text",
		APIListen:              "127.0.0.1:8547",
		ShutdownGrace:          10 * time.Second,
		APIBatchConcurrency:    256,
		WakeTransports:         []string{"xmpp", "udp", "http"},
		WakeTimeout:            10 * time.Second,
		WakeMaxTimeout:         60 * time.Second,
		WakeStrategy:           "sequential",
		WakeMinSpacing:         time.Second,
		WakeConfirmWindow:      5 * time.Minute,
		WakeConcurrency:        16384,
		EventsMaxClients:       256,
		CampaignMaxRunning:     16,
		CampaignMaxConcurrency: 1024,
		CampaignKeep:           100,
		STUNListen:             []string{"0.0.0.0:3478"},
		STUNIntegrity:          "optional",
		STUNRatePerSource:      200,
		STUNBindingTTL:         10 * time.Minute,
		UDPCRRetransmits:       2,
		XMPPListen:             []string{"0.0.0.0:5222"},
		XMPPTLSListen:          []string{"0.0.0.0:5223"},
		XMPPMaxStanza:          65536,
		XMPPMaxSessions:        200000,
		XMPPConnRatePerIP:      20,
		XMPPNegotiationTimeout: 10 * time.Second,
		XMPPReadTimeout:        5 * time.Minute,
		XMPPAuthFailureDelay:   time.Second,
		HTTPConnectTimeout:     3 * time.Second,
		HTTPTimeout:            10 * time.Second,
		HTTPMaxConcurrent:      1024,
		HTTPMaxPerHost:         4,
	}
}

var (
	ErrFile    = errors.New("config: file")
	ErrEnv     = errors.New("config: environment")
	ErrInvalid = errors.New("config: invalid")
)

// Setting describes one setting, for help output and documentation.
type Setting struct {
	Key, Flag, Env, Usage, Default string
}

// Settings lists every setting of Config with its names.
func Settings() []Setting {
	def := reflect.ValueOf(Default())
	t := def.Type()
	out := make([]Setting, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		out = append(out, Setting{
			Key: f.Tag.Get("yaml"), Flag: f.Tag.Get("flag"), Env: envName(f.Tag.Get("flag")),
			Usage: f.Tag.Get("usage"), Default: format(def.Field(i)),
		})
	}
	return out
}

func envName(flagName string) string {
	return "CRRELAY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Load builds the configuration from args (flags after "serve"), the
// environment (getenv) and the YAML file named by --config or
// CRRELAY_CONFIG. Unknown flags, unknown YAML keys and malformed values are
// errors. It returns the remaining flag set too, so callers can read
// their own flags (like --check) registered through extra.
func Load(args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (Config, error) {
	cfg := Default()
	fs := flag.NewFlagSet("crrelay serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("CRRELAY_CONFIG"), "YAML config file (env CRRELAY_CONFIG)")
	// Flags parse into a scratch copy; only those actually given are
	// applied, after the file and the environment.
	scratch := Default()
	sv := reflect.ValueOf(&scratch).Elem()
	for i := range sv.NumField() {
		f := sv.Type().Field(i)
		fs.Var(fieldValue{sv.Field(i)}, f.Tag.Get("flag"), f.Tag.Get("usage")+" (env "+envName(f.Tag.Get("flag"))+")")
	}
	if extra != nil {
		extra(fs)
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: crrelay serve [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: unexpected argument %q", ErrInvalid, fs.Arg(0))
	}
	if *configPath != "" {
		if err := loadFile(&cfg, *configPath); err != nil {
			return cfg, err
		}
	}
	cv := reflect.ValueOf(&cfg).Elem()
	for i := range cv.NumField() {
		name := envName(cv.Type().Field(i).Tag.Get("flag"))
		if v := getenv(name); v != "" {
			if err := (fieldValue{cv.Field(i)}).Set(v); err != nil {
				return cfg, fmt.Errorf("%w: %s: %v", ErrEnv, name, err)
			}
		}
	}
	fs.Visit(func(f *flag.Flag) {
		for i := range cv.NumField() {
			if cv.Type().Field(i).Tag.Get("flag") == f.Name {
				cv.Field(i).Set(sv.Field(i))
			}
		}
	})
	return cfg, cfg.Validate()
}

func loadFile(cfg *Config, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFile, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: %v", ErrFile, path, err)
	}
	return nil
}

// Validate checks every setting and names the first bad one.
func (c Config) Validate() error {
	bad := func(name, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, name, fmt.Sprintf(format, args...))
	}
	if c.DataDir == "" {
		return bad("data-dir", "must not be empty")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("log-level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return bad("log-format", "%q is not text or json", c.LogFormat)
	}
	if err := checkListen(c.APIListen); err != nil {
		return bad("api-listen", "%v", err)
	}
	if (c.APITLSCert == "") != (c.APITLSKey == "") {
		return bad("api-tls-cert", "--api-tls-cert and --api-tls-key go together")
	}
	if c.APIClientCA != "" && c.APITLSCert == "" {
		return bad("api-client-ca", "mTLS needs --api-tls-cert and --api-tls-key")
	}
	if c.APIBatchConcurrency < 1 || c.APIBatchConcurrency > 10000 {
		return bad("api-batch-concurrency", "must be 1 to 10000")
	}
	for name, d := range map[string]time.Duration{
		"shutdown-grace": c.ShutdownGrace, "wake-timeout": c.WakeTimeout, "wake-max-timeout": c.WakeMaxTimeout,
		"http-cr-connect-timeout": c.HTTPConnectTimeout, "http-cr-timeout": c.HTTPTimeout,
	} {
		if d <= 0 {
			return bad(name, "must be positive, got %v", d)
		}
	}
	if c.WakeTimeout > c.WakeMaxTimeout {
		return bad("wake-timeout", "%v exceeds --wake-max-timeout %v", c.WakeTimeout, c.WakeMaxTimeout)
	}
	if len(c.WakeTransports) == 0 {
		return bad("wake-transports", "must name at least one transport")
	}
	for _, t := range c.WakeTransports {
		if t != "xmpp" && t != "udp" && t != "http" {
			return bad("wake-transports", "%q is not xmpp, udp or http", t)
		}
	}
	for _, a := range c.STUNListen {
		if err := checkListen(a); err != nil {
			return bad("stun-listen", "%v", err)
		}
	}
	if c.STUNAlternate != "" {
		if _, err := netip.ParseAddrPort(c.STUNAlternate); err != nil {
			return bad("stun-alternate", "%q is not ip:port", c.STUNAlternate)
		}
	}
	switch c.STUNIntegrity {
	case "off", "optional", "required":
	default:
		return bad("stun-integrity", "%q is not off, optional or required", c.STUNIntegrity)
	}
	if c.STUNSockets < 0 || c.STUNSockets > 64 {
		return bad("stun-sockets", "must be 0 to 64")
	}
	if c.STUNRatePerSource < 0 {
		return bad("stun-rate-per-source", "must not be negative")
	}
	if c.STUNBindingTTL <= 0 {
		return bad("stun-binding-ttl", "must be positive")
	}
	if c.UDPCRRetransmits < 0 || c.UDPCRRetransmits > 5 {
		return bad("udp-cr-retransmits", "must be 0 to 5")
	}
	for flag, list := range map[string][]string{"xmpp-listen": c.XMPPListen, "xmpp-tls-listen": c.XMPPTLSListen, "dns-listen": c.DNSListen} {
		for _, a := range list {
			if err := checkListen(a); err != nil {
				return bad(flag, "%v", err)
			}
		}
	}
	if (c.XMPPCert == "") != (c.XMPPKey == "") {
		return bad("xmpp-cert", "--xmpp-cert and --xmpp-key go together")
	}
	if c.XMPPDomain != "" && (strings.ContainsAny(c.XMPPDomain, "@/ ") || len(c.XMPPDomain) > 253) {
		return bad("xmpp-domain", "%q is not a domain name", c.XMPPDomain)
	}
	if c.XMPPRelayJID != "" && (!strings.Contains(c.XMPPRelayJID, "@") || !strings.Contains(c.XMPPRelayJID, "/")) {
		return bad("xmpp-relay-jid", "%q is not a full JID (local@domain/resource)", c.XMPPRelayJID)
	}
	for _, a := range c.XMPPACSAccounts {
		jid, cred, ok := strings.Cut(a, "=")
		if !ok || !strings.Contains(jid, "@") || strings.Contains(jid, "/") || !strings.HasPrefix(cred, "scram1$") {
			return bad("xmpp-acs-accounts", "%q is not bare-jid=credentials (credentials from crrelay xmpp-credentials)", a)
		}
	}
	switch c.WakeStrategy {
	case "sequential", "parallel":
	default:
		return bad("wake-strategy", "%q is not sequential or parallel", c.WakeStrategy)
	}
	if c.WakeMinSpacing < 0 {
		return bad("wake-min-spacing", "must not be negative")
	}
	if c.WakeConfirmWindow <= 0 {
		return bad("wake-confirm-window", "must be positive")
	}
	if c.EventsMaxClients < 1 {
		return bad("events-max-clients", "must be at least 1")
	}
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("webhook-url", "%q is not an absolute http or https URL", c.WebhookURL)
		}
		if len(c.WebhookSecret) < 16 {
			return bad("webhook-secret", "a webhook needs a secret of at least 16 bytes to sign its requests")
		}
	}
	if c.CampaignMaxRunning < 1 {
		return bad("campaign-max-running", "must be at least 1")
	}
	if c.CampaignMaxConcurrency < 1 || c.CampaignMaxConcurrency > 65536 {
		return bad("campaign-max-concurrency", "must be 1 to 65536")
	}
	if c.CampaignKeep < 1 {
		return bad("campaign-keep", "must be at least 1")
	}
	if c.WakeRate < 0 {
		return bad("wake-rate", "must not be negative")
	}
	if c.WakeConcurrency < 0 {
		return bad("wake-concurrency", "must not be negative")
	}
	for flag, list := range map[string][]string{"wake-transport-rates": c.WakeTransportRates, "wake-transport-concurrency": c.WakeTransportConcurrency} {
		if _, err := TransportInts(list); err != nil {
			return bad(flag, "%v", err)
		}
	}
	if c.XMPPMaxStanza < 4096 || c.XMPPMaxStanza > 16<<20 {
		return bad("xmpp-max-stanza", "must be 4096 to 16777216 bytes")
	}
	if c.XMPPMaxSessions < 1 {
		return bad("xmpp-max-sessions", "must be at least 1")
	}
	if c.XMPPConnRatePerIP < 0 {
		return bad("xmpp-conn-rate-per-ip", "must not be negative")
	}
	for name, d := range map[string]time.Duration{
		"xmpp-negotiation-timeout": c.XMPPNegotiationTimeout, "xmpp-read-timeout": c.XMPPReadTimeout,
	} {
		if d <= 0 {
			return bad(name, "must be positive, got %v", d)
		}
	}
	if c.XMPPAuthFailureDelay < 0 {
		return bad("xmpp-auth-failure-delay", "must not be negative")
	}
	for _, a := range c.DNSAddresses {
		if _, err := netip.ParseAddr(a); err != nil {
			return bad("dns-addresses", "%q is not an IP address", a)
		}
	}
	if c.HTTPMaxConcurrent < 1 || c.HTTPMaxPerHost < 1 {
		return bad("http-cr-max-concurrent", "concurrency limits must be at least 1")
	}
	if _, err := ParseCIDRs(c.HTTPAllowCIDRs); err != nil {
		return bad("http-cr-allow-cidrs", "%v", err)
	}
	if _, err := ParseCIDRs(c.HTTPDenyCIDRs); err != nil {
		return bad("http-cr-deny-cidrs", "%v", err)
	}
	return nil
}

// ParseCIDRs parses prefixes; a bare address is taken as a single host.
func ParseCIDRs(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR or address", s)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// checkListen accepts ip:port, [ipv6]:port, :port and localhost:port.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port must be 0-65535", addr)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: host must be an IP address, localhost or empty (all addresses)", addr)
		}
	}
	return nil
}

// TokenPath is where a generated API token lives in the data dir (the
// registry keeps its own secret.key there).
func TokenPath(dataDir string) string { return filepath.Join(dataDir, "api-token") }

// fieldValue adapts a Config field to flag.Value and to env parsing.
type fieldValue struct{ v reflect.Value }

func (f fieldValue) String() string {
	if !f.v.IsValid() {
		return ""
	}
	return format(f.v)
}

func format(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case []string:
		return strings.Join(x, ",")
	case time.Duration:
		return x.String()
	}
	return fmt.Sprint(v.Interface())
}

func (f fieldValue) IsBoolFlag() bool { return f.v.Kind() == reflect.Bool }

func (f fieldValue) Set(s string) error {
	switch f.v.Interface().(type) {
	case string:
		f.v.SetString(s)
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean", s)
		}
		f.v.SetBool(b)
	case int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		f.v.SetInt(int64(n))
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 5s or 250ms", s)
		}
		f.v.SetInt(int64(d))
	case []string:
		var parts []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		f.v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported setting type %s", f.v.Type())
	}
	return nil
}

// TransportInts parses transport=N pairs (--wake-transport-rates,
// --wake-transport-concurrency): each transport once, N not negative.
func TransportInts(list []string) (map[string]int, error) {
	out := map[string]int{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		switch {
		case !ok || err != nil || n < 0:
			return nil, fmt.Errorf("%q is not transport=N with N a whole number ≥ 0", kv)
		case k != "xmpp" && k != "udp" && k != "http":
			return nil, fmt.Errorf("%q: unknown transport %q (xmpp, udp or http)", kv, k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("transport %s listed twice", k)
		}
		out[k] = n
	}
	return out, nil
}
