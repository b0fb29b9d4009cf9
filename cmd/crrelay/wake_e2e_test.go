package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/sim"
)

// httpFleet serves n simulated Digest CPEs on loopback, registered with
// the appliance at url through the API.
func httpFleet(t *testing.T, url, token, prefix string, n int) *sim.Fleet {
	t.Helper()
	fleet, err := sim.NewFleet(sim.FleetConfig{Prefix: prefix, Count: n, Modes: []sim.Mode{sim.ModeDigestMD5}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fleet.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + ln.Addr().String()
	if err := fleet.Register(context.Background(), sim.APIRegistrar{Client: &apiclient.Client{BaseURL: url, Token: token}}, base, 4); err != nil {
		t.Fatal(err)
	}
	return fleet
}

// waitUntil polls cond every few milliseconds, failing the test after 10s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestWakeCoalescingAndConfirmation: through the binary, a second wake
// within the spacing sends nothing and says so; a wake waiting for
// confirmation returns when the ACS reports the Inform.
func TestWakeCoalescingAndConfirmation(t *testing.T) {
	app := startAppliance(t, t.TempDir(), "--api-token", "tok", "--wake-min-spacing", "1m")
	fleet := httpFleet(t, app.url, "tok", "co-", 2)
	api := []string{"--api", app.url, "--token", "tok"}

	first, err := cli(t, append([]string{"wake", "co-000001"}, api...)...)
	if err != nil || !strings.Contains(first, "delivered via http") {
		t.Fatalf("first wake: %v\n%s", err, first)
	}
	second, err := cli(t, append([]string{"wake", "co-000001"}, api...)...)
	if err != nil || !strings.Contains(second, "coalesced with wake") {
		t.Fatalf("second wake: %v\n%s", err, second)
	}
	if got := fleet.Stats().Total.Accepted; got != 1 {
		t.Errorf("the CPE got %d connection requests, want 1", got)
	}

	// Wait for confirmation; the ACS reports the Inform meanwhile.
	var wg sync.WaitGroup
	var out string
	wg.Go(func() {
		out, err = cli(t, append([]string{"wake", "co-000002", "--wait", "confirmed", "--timeout", "10s"}, api...)...)
	})
	waitUntil(t, "the CPE gets the wake", func() bool { return fleet.CPE("co-000002").Counters().Accepted > 0 })
	inf, ierr := cli(t, append([]string{"inform", "co-000002"}, api...)...)
	wg.Wait()
	if ierr != nil || !strings.Contains(inf, "confirmed wake") {
		t.Errorf("inform: %v\n%s", ierr, inf)
	}
	if err != nil || !strings.Contains(out, "confirmed via http") || !strings.Contains(out, "Inform") {
		t.Errorf("wake --wait confirmed: %v\n%s", err, out)
	}
	// The device's history carries the confirmation.
	dev, derr := cli(t, append([]string{"device", "get", "co-000002"}, api...)...)
	if derr != nil || !strings.Contains(dev, `"confirm_ms"`) || !strings.Contains(dev, `"confirmed_at"`) {
		t.Errorf("device get: %v\n%s", derr, dev)
	}
	// An Inform without 6 CONNECTION REQUEST confirms nothing.
	inf, ierr = cli(t, append([]string{"inform", "co-000001", "--event", "2 PERIODIC"}, api...)...)
	if ierr != nil || !strings.Contains(inf, "nothing confirmed") {
		t.Errorf("periodic inform: %v\n%s", ierr, inf)
	}
	// Bad input: a CLI error, non-zero.
	if out, err := cli(t, append([]string{"wake", "co-000001", "--wait", "forever"}, api...)...); !errors.Is(err, errUsage) {
		t.Errorf("--wait forever: %v\n%s", err, out)
	}
}

// TestWakeLimits: over the appliance's wake rate the API answers 429 and
// the CLI says so, and nothing reaches the CPE.
func TestWakeLimits(t *testing.T) {
	app := startAppliance(t, t.TempDir(), "--api-token", "tok", "--wake-rate", "1")
	fleet := httpFleet(t, app.url, "tok", "lim-", 3)
	api := []string{"--api", app.url, "--token", "tok"}
	if out, err := cli(t, append([]string{"wake", "lim-000001"}, api...)...); err != nil {
		t.Fatalf("first wake: %v\n%s", err, out)
	}
	out, err := cli(t, append([]string{"wake", "lim-000002"}, api...)...)
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "rate_limited" || !strings.Contains(ae.Message, "rate limit") {
		t.Fatalf("second wake within the second: %v\n%s", err, out)
	}
	if got := fleet.Stats().Total.Accepted; got != 1 {
		t.Errorf("CPEs got %d connection requests, want 1", got)
	}
}

// TestCampaignEndToEnd: a campaign through the CLI runs to its end over a
// simulated fleet, another is cancelled, and both are still there after a
// restart.
func TestCampaignEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	app := startAppliance(t, dataDir, "--api-token", "tok")
	fleet := httpFleet(t, app.url, "tok", "camp-", 30)
	api := []string{"--api", app.url, "--token", "tok"}

	out, err := cli(t, append([]string{"campaign", "start", "--filter", "all", "--rate", "200", "--name", "all of them", "--watch"}, api...)...)
	if err != nil || !strings.Contains(out, "campaign ") || !strings.Contains(out, "done, 30 of 30 devices done") || !strings.Contains(out, "delivered") {
		t.Fatalf("campaign start --watch: %v\n%s", err, out)
	}
	if got := fleet.Stats().Total.Accepted; got != 30 {
		t.Errorf("CPEs got %d connection requests, want 30", got)
	}

	// A slow one, cancelled.
	out, err = cli(t, append([]string{"campaign", "start", "--devices", "camp-000001,camp-000002", "--devices", "camp-000003", "--rate", "0.5", "--json"}, api...)...)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	var started struct{ ID string }
	if err := json.Unmarshal([]byte(out), &started); err != nil || started.ID == "" {
		t.Fatalf("start --json: %v\n%s", err, out)
	}
	out, err = cli(t, append([]string{"campaign", "cancel", started.ID}, api...)...)
	if err != nil || !strings.Contains(out, "cancelled") || !strings.Contains(out, "pending") {
		t.Errorf("cancel: %v\n%s", err, out)
	}
	if out, err := cli(t, append([]string{"campaign", "watch", started.ID}, api...)...); err == nil || !strings.Contains(out, "cancelled") {
		t.Errorf("watching a cancelled campaign: %v\n%s", err, out)
	}

	// Bad input: messages and non-zero exits.
	for _, args := range [][]string{
		{"campaign", "start"},
		{"campaign", "start", "--filter", "all", "--devices", "x"},
		{"campaign", "frobnicate"},
		{"campaign", "status"},
	} {
		if out, err := cli(t, append(args, api...)...); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	out, err = cli(t, append([]string{"campaign", "start", "--filter", "everything"}, api...)...)
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "unknown filter") {
		t.Errorf("unknown filter: %v\n%s", err, out)
	}

	// Both are kept over a restart.
	app.stop(t)
	app = startAppliance(t, dataDir, "--api-token", "tok")
	out, err = cli(t, "campaign", "list", "--api", app.url, "--token", "tok")
	if err != nil || !strings.Contains(out, started.ID) || !strings.Contains(out, "all of them") || strings.Count(out, "\n") != 3 {
		t.Errorf("list after restart: %v\n%s", err, out)
	}
}

// TestCampaignResumesAfterRestart: a campaign interrupted by a restart
// carries on where it was, and no device is woken twice.
func TestCampaignResumesAfterRestart(t *testing.T) {
	dataDir := t.TempDir()
	app := startAppliance(t, dataDir, "--api-token", "tok")
	fleet := httpFleet(t, app.url, "tok", "res-", 40)
	client := &apiclient.Client{BaseURL: app.url, Token: "tok"}
	camp, err := client.StartCampaign(context.Background(), api.CampaignSpec{Filter: "all", RatePerS: 40, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a few devices are woken", func() bool { return fleet.Stats().Total.Accepted >= 8 })
	app.stop(t)
	before := fleet.Stats().Total.Accepted

	app = startAppliance(t, dataDir, "--api-token", "tok")
	client = &apiclient.Client{BaseURL: app.url, Token: "tok"}
	var c api.Campaign
	waitUntil(t, "the campaign ends", func() bool {
		c, err = client.GetCampaign(context.Background(), camp.ID)
		return err == nil && c.State != "running"
	})
	if c.State != "done" || c.Done != 40 || c.Counts["delivered"]+c.Counts["unknown"] != 40 {
		t.Fatalf("after the restart: %+v", c)
	}
	if before == 40 || fleet.Stats().Total.Accepted <= before {
		t.Errorf("nothing left to resume: %d woken before the restart, %d after", before, fleet.Stats().Total.Accepted)
	}
	for i := 1; i <= 40; i++ {
		name := fmt.Sprintf("res-%06d", i)
		if n := fleet.CPE(name).Counters().Accepted; n > 1 {
			t.Errorf("%s woken %d times", name, n)
		}
	}
	if got := fleet.Stats().Total.Accepted; got != uint64(c.Counts["delivered"]) {
		t.Errorf("CPEs accepted %d, the campaign counts %d delivered", got, c.Counts["delivered"])
	}
}
