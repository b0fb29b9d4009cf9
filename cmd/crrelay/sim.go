package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/sim"
)

func simCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "stun" {
		return simSTUNCmd(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "xmpp" {
		return simXMPPCmd(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "http" {
		return fmt.Errorf("%w: sim needs a kind of CPE: http, stun or xmpp", errUsage)
	}
	fs := flag.NewFlagSet("crrelay sim http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	listen := fs.String("listen", "127.0.0.1:7547", "address the simulated CPEs listen on (one listener, a path per CPE)")
	advertise := fs.String("advertise", "", "base URL the appliance reaches the CPEs at (default http://<listen address>)")
	count := fs.Int("count", 10, "how many CPEs")
	prefix := fs.String("prefix", sim.DefaultPrefix, "device id prefix; ids are <prefix>000001, ...")
	modes := fs.String("modes", joinModes(sim.Modes()), "authentication modes, assigned round-robin")
	closeEvery := fs.Int("close-after-401-every", 0, "every Nth CPE closes the connection after its 401")
	nonceEvery := fs.Int("nonce-per-connection-every", 0, "every Nth Digest CPE only accepts its nonce on the connection that got it")
	rateLimit := fs.Int("rate-limit", 0, "accepted connection requests per window per CPE before 503 (0 = no limit)")
	rateWindow := fs.Duration("rate-window", time.Second, "window of --rate-limit")
	seed := fs.Int64("seed", 1, "seed of the generated credentials (0 = random)")
	register := fs.Bool("register", false, "register every CPE with the appliance through its API")
	concurrency := fs.Int("concurrency", 16, "parallel registrations")
	if err := fs.Parse(args[1:]); err != nil {
		return errors.Join(errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	var ms []sim.Mode
	for m := range strings.SplitSeq(*modes, ",") {
		mode, err := sim.ParseMode(strings.TrimSpace(m))
		if err != nil {
			return fmt.Errorf("%w: --modes: %v", errUsage, err)
		}
		ms = append(ms, mode)
	}
	fleet, err := sim.NewFleet(sim.FleetConfig{
		Prefix: *prefix, Count: *count, Modes: ms, CloseAfter401Every: *closeEvery,
		NoncePerConnectionEvery: *nonceEvery, RateLimit: *rateLimit, RateWindow: *rateWindow, Seed: *seed,
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	base := *advertise
	if base == "" {
		base = "http://" + ln.Addr().String()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- fleet.Serve(ctx, ln) }()

	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMODE\tURL\tUSERNAME")
	for _, d := range fleet.Devices(base) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.ID, d.Mode, d.ConnectionRequestURL, d.Username)
	}
	tw.Flush()
	if *register {
		c, err := cf.client()
		if err != nil {
			cancel()
			<-errc
			return err
		}
		if err := fleet.Register(ctx, sim.APIRegistrar{Client: c}, base, *concurrency); err != nil {
			cancel()
			<-errc
			return err
		}
		fmt.Fprintf(stdout, "registered %d CPEs with %s\n", *count, cf.api)
	}
	fmt.Fprintf(stdout, "%d simulated CPEs listening on %s; Ctrl-C prints what they received\n", *count, ln.Addr())
	err = <-errc
	printSimStats(stdout, fleet.Stats())
	return err
}

func joinModes(ms []sim.Mode) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = string(m)
	}
	return strings.Join(s, ",")
}

func printSimStats(w io.Writer, st sim.Stats) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tREQUESTS\tCHALLENGES\tACCEPTED\tREJECTED\tTHROTTLED\tMALFORMED\t")
	row := func(name string, c sim.Counters) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, c.Requests, c.Challenges, c.Accepted, c.Rejected, c.Throttled, c.Malformed)
	}
	for _, m := range sim.Modes() {
		if c, ok := st.ByMode[m]; ok {
			row(string(m), c)
		}
	}
	row("total", st.Total)
	tw.Flush()
}

// simSTUNCmd runs simulated TR-111 CPEs, each on its own UDP socket,
// keeping a binding with the appliance's STUN server and validating the
// UDP connection requests that reach them.
func simSTUNCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("crrelay sim stun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	server := fs.String("server", "127.0.0.1:3478", "the appliance's STUN address (ip:port)")
	count := fs.Int("count", 10, "how many CPEs (each opens its own socket)")
	prefix := fs.String("prefix", sim.DefaultSTUNPrefix, "device id prefix; ids are <prefix>000001, ...")
	keepalive := fs.Duration("keepalive", 25*time.Second, "interval between binding requests (25s: the relay's recommendation without a NAT-timeout estimate)")
	rfc5389Every := fs.Int("rfc5389-every", 0, "every Nth CPE speaks RFC 5389 instead of classic RFC 3489")
	seed := fs.Int64("seed", 1, "seed of the generated credentials (0 = random)")
	register := fs.Bool("register", false, "register every CPE with the appliance through its API")
	concurrency := fs.Int("concurrency", 16, "parallel registrations")
	if err := fs.Parse(args); err != nil {
		return errors.Join(errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	srv, err := netip.ParseAddrPort(*server)
	if err != nil {
		return fmt.Errorf("%w: --server: %v", errUsage, err)
	}
	fleet, err := sim.NewSTUNFleet(sim.STUNFleetConfig{
		Prefix: *prefix, Count: *count, Server: srv, Keepalive: *keepalive, RFC5389Every: *rfc5389Every, Seed: *seed,
		OnWake: printWake(stdout, "UDP"),
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *register {
		err := registerFleet(&cf, *count, stdout, func(c *apiclient.Client) error { return fleet.Register(ctx, sim.APIRegistrar{Client: c}, *concurrency) })
		if err != nil {
			return err
		}
	}
	rows := [][3]string{{"ID", "STUN USERNAME", "CR USERNAME"}}
	for _, d := range fleet.Devices() {
		rows = append(rows, [3]string{d.ID, d.STUNUsername, d.Username})
	}
	printRows(stdout, rows)
	fmt.Fprintf(stdout, "%d simulated TR-111 CPEs binding with %s every %s; Ctrl-C prints their counters\n", *count, srv, *keepalive)
	err = fleet.Run(ctx)
	st := fleet.Stats()
	t := st.Total
	fmt.Fprintf(stdout, "CPEs %d, bound %d; binding requests %d, responses %d, 401 %d, integrity errors %d, binding changes %d\n",
		st.CPEs, st.Bound, t.Requests, t.Responses, t.Unauthorized, t.IntegrityErrors, t.BindingChanges)
	fmt.Fprintf(stdout, "UDP connection requests accepted %d; rejected: bad signature %d, wrong un %d, duplicate %d, stale ts %d, malformed %d\n",
		t.CRAccepted, t.CRRejected.BadSignature, t.CRRejected.WrongUsername, t.CRRejected.Duplicate, t.CRRejected.Stale, t.CRRejected.Malformed)
	return err
}

// simXMPPCmd runs simulated Annex K CPEs: each keeps an XMPP session with
// the broker, pings it, never answers its pings, and answers connection
// requests according to its allowed-JID list.
func simXMPPCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("crrelay sim xmpp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	server := fs.String("server", "127.0.0.1:5222", "the broker's address (host:port)")
	domain := fs.String("domain", "", "the broker's XMPP domain (--xmpp-domain of the appliance); required")
	directTLS := fs.Bool("direct-tls", false, "TLS from the first byte (the --xmpp-tls-listen port) rather than STARTTLS")
	verify := fs.Bool("verify", false, "verify the broker's certificate against the system's roots (off: accept any, as many CPEs do)")
	count := fs.Int("count", 10, "how many CPEs (each keeps its own session)")
	prefix := fs.String("prefix", sim.DefaultXMPPPrefix, "device id and XMPP username prefix; ids are <prefix>000001, ...")
	var allowed []string
	fs.Func("allow", "JID allowed to send connection requests (repeatable; bare matches any resource); default crrelay@<domain>", func(s string) error {
		allowed = append(allowed, strings.Split(s, ",")...)
		return nil
	})
	keepalive := fs.Duration("keepalive", time.Minute, "interval between the CPEs' keepalives to the server")
	mech := sim.MechSCRAMSHA1
	fs.TextVar(&mech, "mechanism", sim.MechSCRAMSHA1, "SASL mechanism: SCRAM-SHA-1, SCRAM-SHA-256 or PLAIN")
	legacyEvery := fs.Int("legacy-errors-every", 0, "every Nth CPE answers refused requests with the misspelt not-autorized, as a widespread agent does")
	seed := fs.Int64("seed", 1, "seed of the generated credentials (0 = random)")
	register := fs.Bool("register", false, "register every CPE with the appliance through its API")
	concurrency := fs.Int("concurrency", 16, "parallel registrations")
	pollers := fs.Int("pollers", 0, "goroutines that read every bound session by polling the sockets (Linux), instead of one goroutine per session; for fleets of thousands answering many requests")
	if err := fs.Parse(args); err != nil {
		return errors.Join(errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *domain == "" {
		return fmt.Errorf("%w: --domain is required (the appliance's --xmpp-domain)", errUsage)
	}
	if len(allowed) == 0 {
		allowed = []string{"crrelay@" + *domain}
	}
	fleet, err := sim.NewXMPPFleet(sim.XMPPFleetConfig{
		Prefix: *prefix, Count: *count, Server: *server, Domain: *domain, DirectTLS: *directTLS,
		TLSConfig: &tls.Config{ServerName: *domain, InsecureSkipVerify: !*verify},
		Mechanism: mech, AllowedJIDs: allowed, KeepAlive: *keepalive, LegacyErrorsEvery: *legacyEvery, Seed: *seed,
		Pollers: *pollers, OnWake: printWake(stdout, "XMPP"),
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *register {
		err := registerFleet(&cf, *count, stdout, func(c *apiclient.Client) error { return fleet.Register(ctx, sim.APIRegistrar{Client: c}, *concurrency) })
		if err != nil {
			return err
		}
	}
	rows := [][3]string{{"ID", "JID", "CR USERNAME"}}
	for _, d := range fleet.Devices() {
		rows = append(rows, [3]string{d.ID, d.ConnReqJID, d.Username})
	}
	printRows(stdout, rows)
	fmt.Fprintf(stdout, "%d simulated Annex K CPEs logging in to %s (%s), allowing %s; Ctrl-C prints their counters\n",
		*count, *server, *domain, strings.Join(allowed, ","))
	err = fleet.Run(ctx)
	st := fleet.Stats()
	t := st.Total
	fmt.Fprintf(stdout, "CPEs %d, online %d; logins %d, connect errors %d (SASL %d), drops %d; keepalives %d, pongs %d, server pings ignored %d\n",
		st.CPEs, st.Online, t.Logins, t.ConnectErrors, t.AuthFailures, t.Drops, t.Keepalives, t.Pongs, t.PingsIgnored)
	fmt.Fprintf(stdout, "XMPP connection requests accepted %d; refused: not-authorized %d, sender not allowed %d\n",
		t.CRAccepted, t.CRNotAuthorized, t.CRNotAllowed)
	return err
}

// printWake returns a fleet's OnWake: a line per accepted request.
func printWake(w io.Writer, transport string) func(name string, at time.Time) {
	return func(name string, at time.Time) {
		fmt.Fprintf(w, "%s %s: %s connection request accepted\n", at.Format("15:04:05.000"), name, transport)
	}
}

// registerFleet registers a simulated fleet through the API with
// register, and says so.
func registerFleet(cf *clientFlags, count int, stdout io.Writer, register func(*apiclient.Client) error) error {
	c, err := cf.client()
	if err != nil {
		return err
	}
	if err := register(c); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "registered %d CPEs with %s\n", count, cf.api)
	return nil
}

// printRows prints a table of three columns, the first row its header.
func printRows(w io.Writer, rows [][3]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r[0], r[1], r[2])
	}
	tw.Flush()
}
