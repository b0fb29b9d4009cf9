package campaign

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	// ErrBadSpec means Start was given a spec it cannot run; the error
	// wraps a message saying what is wrong (an API answers 400).
	ErrBadSpec = errors.New("campaign: bad spec")
	// ErrTooMany means Config.MaxRunning campaigns are already running
	// (an API answers 429 or 503).
	ErrTooMany = errors.New("campaign: too many campaigns running")
	// ErrNotFound means no campaign has the given id.
	ErrNotFound = errors.New("campaign: no such campaign")
	// ErrFinished is returned by Cancel, with the campaign unchanged, when
	// the campaign had already finished (done or cancelled).
	ErrFinished = errors.New("campaign: already finished")
	// ErrClosed means the Manager is stopping or stopped.
	ErrClosed = errors.New("campaign: manager closed")
	// ErrCorrupt means the store cannot be read: not a bbolt file, a
	// damaged one, or records this version cannot decode.
	ErrCorrupt = errors.New("campaign: store corrupt")

	// ErrBusy is returned (wrapped or not) in Outcome.Err by a Waker that
	// is rate limited and did not wake the device: the campaign retries
	// that device after a short back-off.
	ErrBusy = errors.New("campaign: waker busy")
	// ErrDeviceNotFound is returned in Outcome.Err by a Waker when the
	// device no longer exists; the device counts as "not_found".
	ErrDeviceNotFound = errors.New("campaign: device not found")
)

// Waker wakes one device. The appliance passes an adapter around its wake
// path. Wake must honour ctx: it is cancelled when a campaign is cancelled
// or the appliance stops. It is called from many goroutines at once.
type Waker interface {
	Wake(ctx context.Context, id string, opts WakeOptions) Outcome
}

// OptionsChecker may be implemented by a Waker to validate the wake options
// of a spec before the campaign starts, so that a bad transport name is a
// bad request rather than a hundred thousand failed wakes.
type OptionsChecker interface {
	CheckOptions(WakeOptions) error
}

// WakeOptions are the Spec's wake options, passed to the Waker untouched.
type WakeOptions struct {
	Transports []string
	Strategy   string
	Timeout    time.Duration // zero means the Waker's default
	Campaign   string        // the campaign's id, for the Waker's audit records
}

// Outcome is the result of one wake. Status is a wake status word. Err is
// set only when the wake could not run at all: ErrBusy (retried),
// ErrDeviceNotFound ("not_found"), the context's error when the campaign
// stopped ("unknown"); any other error counts as "error". Only the status is
// kept per device; Transport and DurationMS are for the Waker's own records.
type Outcome struct {
	Status     string
	Transport  string
	DurationMS float64
	Err        error
}

// Selector turns a filter into device ids. It is called once, at Start:
// the campaign works on that snapshot. An error means the filter is invalid
// and is reported as ErrBadSpec.
type Selector interface {
	Select(ctx context.Context, filter string) ([]string, error)
}

// Publisher receives progress events. Its methods are called from the
// campaign's own goroutine and must not block: copy and hand off.
type Publisher interface {
	// Progress is called every Config.ProgressEvery while c runs.
	Progress(c Campaign)
	// Done is called once when c ends, done or cancelled.
	Done(c Campaign)
}

// Spec is what a caller asks of a campaign (the body of POST /v1/campaigns).
type Spec struct {
	// Devices lists the devices by id, woken in this order. Duplicates are
	// dropped (the first is kept); an empty id or one over 256 bytes is
	// refused. Exactly one of Devices and Filter must be given.
	Devices []string `json:"devices,omitempty"`
	// Filter selects devices through the Selector when the campaign
	// starts ("all", "xmpp_online", ...).
	Filter string `json:"filter,omitempty"`
	// RatePerS bounds wakes started per second. Zero means unlimited.
	RatePerS float64 `json:"rate_per_s,omitempty"`
	// Concurrency bounds wakes in flight. Zero means 64 (or
	// Config.MaxConcurrency if lower); at most Config.MaxConcurrency.
	Concurrency int `json:"concurrency,omitempty"`
	// Transports, Strategy and TimeoutMS are passed to the Waker untouched
	// (TimeoutMS as WakeOptions.Timeout; zero means the Waker's default).
	Transports []string `json:"transports,omitempty"`
	Strategy   string   `json:"strategy,omitempty"`
	TimeoutMS  int64    `json:"timeout_ms,omitempty"`
	// Name is a free label of at most 128 bytes of UTF-8.
	Name string `json:"name,omitempty"`
}

// Limits on a Spec beyond those of Config.
const (
	MaxIDLen         = 256
	MaxNameLen       = 128
	MaxFilterLen     = 256
	MaxRatePerS      = 1e6
	MaxTimeoutMS     = 3_600_000
	MaxTransports    = 8
	MaxWordLen       = 64 // of a transport name or the strategy
	MaxListedDevices = 100
)

// SpecView is a campaign's spec as reported: Concurrency is the one in
// effect, and Devices is left out when there are more than
// MaxListedDevices of them or the campaign used a filter.
type SpecView struct {
	Spec
	DevicesTotal int `json:"devices_total"`
}

// The states of a campaign.
const (
	StateRunning   = "running"
	StateDone      = "done"      // every device has a result
	StateCancelled = "cancelled" // Cancel stopped it; Pending were never woken
)

// Campaign is a campaign as reported by the API.
type Campaign struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	State string `json:"state"`
	// CreatedAt is when Start accepted it; FinishedAt when it became done
	// or cancelled (null while running).
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Spec       SpecView   `json:"spec"`
	// Total is the number of devices; Done those with a result; Pending
	// the others (not yet woken, or in flight). Done+Pending == Total.
	Total   int `json:"total"`
	Done    int `json:"done"`
	Pending int `json:"pending"`
	// Counts gives the devices per result status; statuses with no device
	// are left out. The counts sum to Done.
	Counts map[string]int `json:"counts"`
	// RatePerS is the results per second over the last 5 s while running;
	// for a finished campaign, the average over its life.
	RatePerS float64 `json:"rate_per_s"`
	// ETASeconds estimates the time left from RatePerS; null when unknown
	// or finished.
	ETASeconds *float64 `json:"eta_s"`
	// ElapsedS is the time since CreatedAt (until FinishedAt).
	ElapsedS float64 `json:"elapsed_s"`
}

// Config configures a Manager.
type Config struct {
	// Dir is the data directory, which must exist. The store is
	// Dir/campaigns.db (mode 0600), created if missing.
	Dir string
	// Waker wakes devices. Required.
	Waker Waker
	// Selector resolves filters. Nil refuses specs with a filter.
	Selector Selector
	// Publisher receives progress events. Nil sends none.
	Publisher Publisher
	// MaxConcurrency bounds Spec.Concurrency. Defaults to 1024.
	MaxConcurrency int
	// MaxDevices bounds the devices of one campaign. Defaults to 1,000,000.
	MaxDevices int
	// MaxRunning bounds the campaigns running at once. Defaults to 16.
	MaxRunning int
	// Keep is how many finished campaigns are kept; older ones are
	// deleted. Defaults to 100.
	Keep int
	// ProgressEvery is the interval of Publisher.Progress. Defaults to 1s.
	ProgressEvery time.Duration
	// Grace is how long a clean stop waits for wakes in flight before
	// abandoning them (they then count as "unknown"). Defaults to 5s.
	Grace time.Duration
	// Logger receives errors the Manager cannot return. Nil discards.
	Logger *slog.Logger
	// Metrics registers crrelay_campaign_wakes_total{status} and
	// crrelay_campaigns_running. Nil registers nothing.
	Metrics prometheus.Registerer
}

func (c *Config) validate() error {
	if c.Dir == "" {
		return errors.New("campaign: config: Dir is required")
	}
	if c.Waker == nil {
		return errors.New("campaign: config: Waker is required")
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxConcurrency", &c.MaxConcurrency, 1024},
		{"MaxDevices", &c.MaxDevices, 1_000_000},
		{"MaxRunning", &c.MaxRunning, 16},
		{"Keep", &c.Keep, 100},
	} {
		if *f.v < 0 {
			return fmt.Errorf("campaign: config: %s is negative", f.name)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"ProgressEvery", &c.ProgressEvery, time.Second},
		{"Grace", &c.Grace, 5 * time.Second},
	} {
		if *f.v < 0 {
			return fmt.Errorf("campaign: config: %s is negative", f.name)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
