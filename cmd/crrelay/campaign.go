package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/campaign"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/wake"
)

// campaignWaker runs a campaign's wakes through the one wake path, so
// they share its coalescing, limits, history and audit.
type campaignWaker struct{ w *wake.Waker }

func (c campaignWaker) request(o campaign.WakeOptions) wake.Request {
	r := wake.Request{Strategy: wake.Strategy(o.Strategy), Timeout: o.Timeout, Origin: "campaign " + o.Campaign}
	for _, t := range o.Transports {
		r.Transports = append(r.Transports, registry.Transport(t))
	}
	return r
}

func (c campaignWaker) Wake(ctx context.Context, id string, o campaign.WakeOptions) campaign.Outcome {
	res, err := c.w.Wake(ctx, id, c.request(o))
	switch {
	case errors.Is(err, wake.ErrNotFound):
		return campaign.Outcome{Err: campaign.ErrDeviceNotFound}
	case errors.Is(err, wake.ErrBusy):
		return campaign.Outcome{Err: campaign.ErrBusy}
	case err != nil:
		return campaign.Outcome{Err: err}
	case ctx.Err() != nil && !res.Status.OK():
		// The campaign stopped or was cancelled under this wake: its
		// outcome says nothing of the device.
		return campaign.Outcome{Err: ctx.Err()}
	}
	return campaign.Outcome{Status: string(res.Status), Transport: string(res.Transport), DurationMS: res.DurationMS}
}

func (c campaignWaker) CheckOptions(o campaign.WakeOptions) error { return c.w.Check(c.request(o)) }

// The filters a campaign may select devices with.
const (
	FilterAll        = "all"         // every registered device
	FilterXMPPOnline = "xmpp_online" // with an XMPP session now
	FilterUDP        = "udp_binding" // with a fresh UDP binding (or an allowed registered udp_address)
	FilterHTTP       = "http_url"    // with a connection_request_url the destination policy allows
	FilterReachable  = "reachable"   // any of the three
)

var campaignFilters = []string{FilterAll, FilterXMPPOnline, FilterUDP, FilterHTTP, FilterReachable}

// deviceSelector turns a campaign filter into the devices it selects now,
// judged by the same transports the wakes will use.
type deviceSelector struct {
	reg *registry.Registry
	w   *wake.Waker
}

func (s deviceSelector) Select(ctx context.Context, filter string) ([]string, error) {
	usable := func(d registry.Device, ts ...registry.Transport) bool {
		for _, t := range ts {
			if _, ok, _ := s.w.Usable(d, t); ok {
				return true
			}
		}
		return false
	}
	var keep func(registry.Device) bool
	switch filter {
	case FilterAll:
		keep = func(registry.Device) bool { return true }
	case FilterXMPPOnline:
		keep = func(d registry.Device) bool { return usable(d, registry.TransportXMPP) }
	case FilterUDP:
		keep = func(d registry.Device) bool { return usable(d, registry.TransportUDP) }
	case FilterHTTP:
		keep = func(d registry.Device) bool { return usable(d, registry.TransportHTTP) }
	case FilterReachable:
		keep = func(d registry.Device) bool {
			return usable(d, registry.TransportXMPP, registry.TransportUDP, registry.TransportHTTP)
		}
	default:
		return nil, fmt.Errorf("unknown filter %q; known: %s", filter, strings.Join(campaignFilters, ", "))
	}
	var ids []string
	cursor := ""
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		devs, next := s.reg.List(cursor, registry.MaxListLimit)
		for _, d := range devs {
			if keep(d) {
				ids = append(ids, d.ID)
			}
		}
		if next == "" {
			return ids, nil
		}
		cursor = next
	}
}

// campaignCmd is `crrelay campaign start|status|watch|cancel|list`.
func campaignCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: campaign needs a subcommand: start, status, watch, cancel or list", errUsage)
	}
	fs := flag.NewFlagSet("crrelay campaign "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	switch args[0] {
	case "start":
		return campaignStart(ctx, fs, &cf, asJSON, args[1:], stdout, stderr)
	case "status", "watch", "cancel":
		interval := fs.Duration("interval", time.Second, "watch: time between progress updates")
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return errors.Join(errUsage, err)
		}
		if len(pos) != 1 {
			return fmt.Errorf("%w: campaign %s takes one campaign id", errUsage, args[0])
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		var camp api.Campaign
		switch args[0] {
		case "status":
			camp, err = c.GetCampaign(ctx, pos[0])
		case "cancel":
			camp, err = c.CancelCampaign(ctx, pos[0])
		case "watch":
			if *interval < 50*time.Millisecond {
				return fmt.Errorf("%w: --interval must be at least 50ms", errUsage)
			}
			return watchCampaign(ctx, func(ctx context.Context) (api.Campaign, error) { return c.GetCampaign(ctx, pos[0]) }, *interval, stdout)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, camp)
		}
		printCampaign(stdout, camp)
		return nil
	case "list":
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return errors.Join(errUsage, err)
		}
		if len(pos) != 0 {
			return fmt.Errorf("%w: campaign list takes no arguments", errUsage)
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		list, err := c.ListCampaigns(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSTATE\tDONE\tTOTAL\tCREATED")
		for _, c := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", c.ID, dash(c.Name), c.State, c.Done, c.Total, c.CreatedAt.Format(time.DateTime))
		}
		return tw.Flush()
	}
	return fmt.Errorf("%w: unknown campaign subcommand %q: start, status, watch, cancel or list", errUsage, args[0])
}

func campaignStart(ctx context.Context, fs *flag.FlagSet, cf *clientFlags, asJSON *bool, args []string, stdout, stderr io.Writer) error {
	var spec api.CampaignSpec
	fs.Func("devices", "device ids, comma-separated (repeatable)", func(s string) error {
		for _, id := range strings.Split(s, ",") {
			if id = strings.TrimSpace(id); id != "" {
				spec.Devices = append(spec.Devices, id)
			}
		}
		return nil
	})
	devicesFile := fs.String("devices-file", "", "file of device ids, one per line (- for standard input)")
	fs.StringVar(&spec.Filter, "filter", "", "select devices instead: "+strings.Join(campaignFilters, ", "))
	fs.Float64Var(&spec.RatePerS, "rate", 0, "wakes started per second (0 = unlimited)")
	fs.IntVar(&spec.Concurrency, "concurrency", 0, "wakes in flight (default: the appliance's, 64)")
	fs.Func("transport", "transport to use (repeatable or comma-separated: xmpp, udp, http)", func(s string) error {
		spec.Transports = append(spec.Transports, strings.Split(s, ",")...)
		return nil
	})
	fs.StringVar(&spec.Strategy, "strategy", "", "sequential or parallel (default: the appliance's)")
	timeout := fs.Duration("timeout", 0, "bound on each wake (default: the appliance's)")
	fs.StringVar(&spec.Name, "name", "", "a label for the campaign")
	watch := fs.Bool("watch", false, "then watch its progress until it ends")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return errors.Join(errUsage, err)
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: unexpected argument %q (device ids go in --devices)", errUsage, pos[0])
	}
	if *devicesFile != "" {
		ids, err := readIDs(*devicesFile)
		if err != nil {
			return err
		}
		spec.Devices = append(spec.Devices, ids...)
	}
	if (len(spec.Devices) == 0) == (spec.Filter == "") {
		return fmt.Errorf("%w: give devices (--devices, --devices-file) or --filter, not both", errUsage)
	}
	if *timeout < 0 || (*timeout > 0 && *timeout < time.Millisecond) {
		return fmt.Errorf("%w: --timeout must be at least 1ms", errUsage)
	}
	spec.TimeoutMS = timeout.Milliseconds()
	c, err := cf.client()
	if err != nil {
		return err
	}
	camp, err := c.StartCampaign(ctx, spec)
	if err != nil {
		return err
	}
	if *asJSON && !*watch {
		return printJSON(stdout, camp)
	}
	fmt.Fprintf(stdout, "campaign %s started: %d devices\n", camp.ID, camp.Total)
	if !*watch {
		return nil
	}
	return watchCampaign(ctx, func(ctx context.Context) (api.Campaign, error) { return c.GetCampaign(ctx, camp.ID) }, time.Second, stdout)
}

// readIDs reads device ids, one per line; blank lines and lines starting
// with # are skipped.
func readIDs(path string) ([]string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--devices-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	var ids []string
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<16)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			ids = append(ids, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--devices-file: %w", err)
	}
	return ids, nil
}

// watchCampaign prints a progress line every interval until the campaign
// ends, then its per-status table. On a terminal the line is redrawn in
// place. It exits non-zero if the campaign was cancelled.
func watchCampaign(ctx context.Context, get func(context.Context) (api.Campaign, error), interval time.Duration, stdout io.Writer) error {
	tty := isTerminal(stdout)
	for {
		c, err := get(ctx)
		if err != nil {
			return err
		}
		line := progressLine(c)
		if tty {
			fmt.Fprintf(stdout, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(stdout, line)
		}
		if c.State != campaign.StateRunning {
			if tty {
				fmt.Fprintln(stdout)
			}
			printCampaign(stdout, c)
			if c.State == campaign.StateCancelled {
				return exitError{code: 1}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(stdout)
			}
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// progressLine is a campaign's progress as one line: a bar, counts, rate
// and ETA.
func progressLine(c api.Campaign) string {
	const width = 30
	frac := 1.0
	if c.Total > 0 {
		frac = float64(c.Done) / float64(c.Total)
	}
	n := int(frac * width)
	bar := strings.Repeat("#", n) + strings.Repeat(".", width-n)
	eta := "-"
	if c.ETASeconds != nil {
		eta = (time.Duration(*c.ETASeconds * float64(time.Second))).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %5.1f%%  %d/%d  %.0f/s  ETA %s  %s", bar, frac*100, c.Done, c.Total, c.RatePerS, eta, c.State)
}

// printCampaign prints a campaign and its counts per status.
func printCampaign(w io.Writer, c api.Campaign) {
	fmt.Fprintf(w, "campaign %s", c.ID)
	if c.Name != "" {
		fmt.Fprintf(w, " (%s)", c.Name)
	}
	fmt.Fprintf(w, ": %s, %d of %d devices done, %d pending, %.1fs, %.0f wakes/s\n", c.State, c.Done, c.Total, c.Pending, c.ElapsedS, c.RatePerS)
	statuses := make([]string, 0, len(c.Counts))
	for s := range c.Counts {
		statuses = append(statuses, s)
	}
	slices.SortFunc(statuses, func(a, b string) int { return c.Counts[b] - c.Counts[a] })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STATUS\tDEVICES\tSHARE\t")
	for _, s := range statuses {
		share := 0.0
		if c.Total > 0 {
			share = 100 * float64(c.Counts[s]) / float64(c.Total)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t\n", s, c.Counts[s], share)
	}
	if c.Pending > 0 {
		fmt.Fprintf(tw, "pending\t%d\t%.1f%%\t\n", c.Pending, 100*float64(c.Pending)/float64(max(1, c.Total)))
	}
	tw.Flush()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
