package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/config"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/wake"
)

// clientFlags are the flags every API client command shares.
type clientFlags struct {
	api, token, dataDir, caFile string
	insecure                    bool
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.api, "api", envOr("CRRELAY_API", "http://127.0.0.1:8547"), "API base URL (env CRRELAY_API)")
	fs.StringVar(&c.token, "token", os.Getenv("CRRELAY_API_TOKEN"), "API bearer token (env CRRELAY_API_TOKEN; default: read <data-dir>/api-token)")
	fs.StringVar(&c.dataDir, "data-dir", config.Default().DataDir, "where to find api-token when no token is given")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM CA bundle to verify an https API")
	fs.BoolVar(&c.insecure, "insecure", false, "do not verify the https API's certificate")
}

func (c *clientFlags) client() (*apiclient.Client, error) {
	tok := c.token
	if tok == "" {
		b, err := os.ReadFile(config.TokenPath(c.dataDir))
		if err != nil {
			return nil, fmt.Errorf("%w: no API token: give --token or CRRELAY_API_TOKEN (reading %s: %v)", errUsage, config.TokenPath(c.dataDir), err)
		}
		tok = strings.TrimSpace(string(b))
	}
	hc := &http.Client{Timeout: 5 * time.Minute}
	if c.caFile != "" || c.insecure {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.insecure}
		if c.caFile != "" {
			pool, err := loadPool(c.caFile)
			if err != nil {
				return nil, err
			}
			tc.RootCAs = pool
		}
		hc.Transport = &http.Transport{TLSClientConfig: tc}
	}
	return &apiclient.Client{BaseURL: c.api, Token: tok, HTTP: hc}, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// parseInterleaved parses flags that may come before or after the
// positional arguments ("device put ID --url ..." reads naturally).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func deviceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: device needs put, patch, get, list or delete", errUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("crrelay device "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	var in apiclient.DeviceInput
	var transports string
	limit := 0
	all := false
	switch sub {
	case "put", "patch":
		optStr(fs, &in.ConnectionRequestURL, "url", "ConnectionRequestURL")
		optStr(fs, &in.Username, "username", "connection-request username")
		optStr(fs, &in.Password, "password", "connection-request password (or env CRRELAY_DEVICE_PASSWORD)")
		optStr(fs, &in.STUNUsername, "stun-username", "STUN username")
		optStr(fs, &in.STUNPassword, "stun-password", "STUN password")
		optStr(fs, &in.UDPAddress, "udp-address", "UDPConnectionRequestAddress ip:port")
		optStr(fs, &in.XMPPJID, "xmpp-jid", "XMPP JID of the CPE")
		optStr(fs, &in.XMPPPassword, "xmpp-password", "XMPP account password of the CPE")
		fs.Func("allow-basic", "allow Basic auth for this device (true/false)", func(s string) error {
			b := s == "true" || s == "1"
			if !b && s != "false" && s != "0" {
				return fmt.Errorf("%q is not true or false", s)
			}
			in.AllowBasic = &b
			return nil
		})
		fs.StringVar(&transports, "transports", "", "preferred transport order, comma-separated (xmpp,udp,http)")
	case "list":
		fs.IntVar(&limit, "limit", 100, "devices per page (1-1000)")
		fs.BoolVar(&all, "all", false, "follow cursors through every page")
	case "get", "delete":
	default:
		return fmt.Errorf("%w: unknown device command %q", errUsage, sub)
	}
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return errors.Join(errUsage, err)
	}
	want := 1
	if sub == "list" {
		want = 0
	}
	if len(pos) != want {
		return fmt.Errorf("%w: device %s takes %d argument(s), got %d", errUsage, sub, want, len(pos))
	}
	if in.Password == nil {
		if p := os.Getenv("CRRELAY_DEVICE_PASSWORD"); p != "" && (sub == "put" || sub == "patch") {
			in.Password = &p
		}
	}
	if transports != "" {
		in.Transports = strings.Split(transports, ",")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	switch sub {
	case "put":
		d, err := c.PutDevice(ctx, pos[0], in)
		if err != nil {
			return err
		}
		return printJSON(stdout, d)
	case "patch":
		d, err := c.PatchDevice(ctx, pos[0], in)
		if err != nil {
			return err
		}
		return printJSON(stdout, d)
	case "get":
		d, err := c.GetDevice(ctx, pos[0])
		if err != nil {
			return err
		}
		return printJSON(stdout, d)
	case "delete":
		if err := c.DeleteDevice(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s\n", pos[0])
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTRANSPORTS\tHTTP URL\tSTUN USER\tXMPP JID\tUPDATED")
	cursor := ""
	for {
		page, err := c.ListDevices(ctx, cursor, limit)
		if err != nil {
			return err
		}
		for _, d := range page.Devices {
			ts := make([]string, len(d.Transports))
			for i, t := range d.Transports {
				ts[i] = string(t)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, dash(strings.Join(ts, ",")), dash(d.ConnectionRequestURL),
				dash(d.STUNUsername), dash(d.XMPPJID), d.UpdatedAt.Format(time.RFC3339))
		}
		cursor = page.NextCursor
		if !all || cursor == "" {
			break
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if cursor != "" {
		fmt.Fprintf(stdout, "more: --all, or the API with cursor=%s\n", cursor)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func optStr(fs *flag.FlagSet, dst **string, name, usage string) {
	fs.Func(name, usage, func(s string) error { *dst = &s; return nil })
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func wakeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("crrelay wake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	var transports []string
	fs.Func("transport", "transport to use (repeatable or comma-separated: xmpp, udp, http)", func(s string) error {
		transports = append(transports, strings.Split(s, ",")...)
		return nil
	})
	timeout := fs.Duration("timeout", 0, "bound on the wake, waiting for confirmation included (default: the appliance's)")
	strategy := fs.String("strategy", "", "sequential (fall back on failure) or parallel (all usable transports at once); default: the appliance's")
	wait := fs.String("wait", "", "delivered (return at the transports' outcome, the default) or confirmed (also wait for the ACS to report the CPE's Inform)")
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return errors.Join(errUsage, err)
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: wake takes one device id", errUsage)
	}
	if st := wake.Strategy(*strategy); !st.Valid() {
		return fmt.Errorf("%w: --strategy must be sequential or parallel, not %q", errUsage, *strategy)
	}
	if w := wake.Wait(*wait); !w.Valid() {
		return fmt.Errorf("%w: --wait must be delivered or confirmed, not %q", errUsage, *wait)
	}
	if *timeout < 0 || (*timeout > 0 && *timeout < time.Millisecond) {
		return fmt.Errorf("%w: --timeout must be at least 1ms", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	req := api.WakeRequest{TimeoutMS: timeout.Milliseconds(), Strategy: wake.Strategy(*strategy), Wait: wake.Wait(*wait)}
	for _, t := range transports {
		req.Transports = append(req.Transports, registry.Transport(strings.TrimSpace(t)))
	}
	res, err := c.Wake(ctx, pos[0], req)
	if err != nil {
		return err
	}
	if *asJSON {
		if err := printJSON(stdout, res); err != nil {
			return err
		}
	} else {
		line := fmt.Sprintf("%s: %s via %s in %.1f ms", pos[0], res.Status, dash(string(res.Transport)), res.DurationMS)
		switch {
		case res.Coalesced:
			line += " (coalesced with wake " + res.ID + ", sent moments ago)"
		case res.Status == wake.Confirmed:
			line += fmt.Sprintf(", Inform %.1f ms after the wake", res.ConfirmMS)
		case res.ConfirmTimedOut:
			line += ", no Inform reported in time"
		}
		fmt.Fprintln(stdout, line)
		for _, a := range res.Attempts {
			line := fmt.Sprintf("  %-5s %-12s %8.1f ms", a.Transport, a.Status, a.DurationMS)
			if a.HTTPStatus != 0 {
				line += fmt.Sprintf("  HTTP %d", a.HTTPStatus)
			}
			if a.Detail != "" {
				line += "  " + a.Detail
			}
			fmt.Fprintln(stdout, line)
		}
	}
	if !res.Status.OK() || res.ConfirmTimedOut {
		return exitError{code: 1}
	}
	return nil
}

// informCmd reports a CPE's Inform, as an ACS would: it confirms the
// device's pending or latest wake.
func informCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("crrelay inform", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	var events []string
	fs.Func("event", "an event code of the Inform (repeatable); default \"6 CONNECTION REQUEST\"", func(s string) error {
		events = append(events, s)
		return nil
	})
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return errors.Join(errUsage, err)
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: inform takes one device id", errUsage)
	}
	if len(events) == 0 {
		events = []string{wake.EventConnectionRequest}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	res, err := c.Inform(ctx, pos[0], api.InformRequest{Events: events})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	if res.Confirmed && res.Wake != nil {
		fmt.Fprintf(stdout, "%s: confirmed wake %s (%s via %s), %.1f ms after it\n", pos[0], res.Wake.ID, res.Wake.Status, dash(res.Wake.Transport), res.Wake.ConfirmMS)
	} else if res.Confirmed {
		fmt.Fprintf(stdout, "%s: confirmed wake %s, %.1f ms after it (%s)\n", pos[0], res.WakeID, res.ConfirmMS, res.Reason)
	} else {
		fmt.Fprintf(stdout, "%s: nothing confirmed: %s\n", pos[0], res.Reason)
	}
	return nil
}
