package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReceiptsIndex(t *testing.T) {
	r := newReceipts("chttp-", 3)
	for _, tc := range []struct {
		name string
		i    int
		ok   bool
	}{
		{"chttp-000001", 0, true},
		{"chttp-000003", 2, true},
		{"chttp-000004", 0, false}, // beyond the fleet
		{"chttp-000000", 0, false}, // generated names count from 1
		{"cudp-000001", 0, false},  // another fleet's
		{"chttp-", 0, false},
		{"chttp-00000x", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, ok := r.index(tc.name)
			if i != tc.i || ok != tc.ok {
				t.Errorf("index = %d, %v; want %d, %v", i, ok, tc.i, tc.ok)
			}
		})
	}
}

func TestReceiptsKeepFirst(t *testing.T) {
	r := newReceipts("x-", 4)
	at := r.base.Add(3 * time.Millisecond)
	r.note("x-000002", at)
	r.note("x-000002", at.Add(time.Second)) // a second request: counted, not timed
	r.note("x-000009", at)                  // not of the fleet: ignored
	if got, ok := r.wait(1, time.Second); !ok || got != 3*time.Millisecond {
		t.Errorf("wait = %v, %v; want 3ms, true", got, ok)
	}
	if r.distinct() != 1 || r.total() != 2 {
		t.Errorf("distinct %d, total %d; want 1, 2", r.distinct(), r.total())
	}
	if _, ok := r.wait(0, time.Millisecond); ok {
		t.Error("wait for a CPE that received nothing succeeded")
	}
	r.reset()
	if r.distinct() != 0 || r.total() != 0 {
		t.Errorf("after reset: distinct %d, total %d", r.distinct(), r.total())
	}
}

// TestReceiptsWait checks that wait wakes for a receipt noted while it
// waits, including after a receipt of another CPE.
func TestReceiptsWait(t *testing.T) {
	r := newReceipts("x-", 2)
	got := make(chan bool)
	go func() {
		_, ok := r.wait(1, 10*time.Second)
		got <- ok
	}()
	r.note("x-000001", time.Now())
	r.note("x-000002", time.Now())
	select {
	case ok := <-got:
		if !ok {
			t.Error("wait timed out")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return")
	}
}

func TestCountsNote(t *testing.T) {
	got := countsNote(map[string]int{"sent": 5, "timeout": 2, "delivered": 3})
	if want := "{delivered 3, sent 5, 2× timeout}"; got != want {
		t.Errorf("countsNote = %q; want %q", got, want)
	}
	if got := countsNote(nil); got != "{}" {
		t.Errorf("countsNote(nil) = %q", got)
	}
}

// TestCampaignSectionSmall runs the whole section at a tiny scale against
// the appliance built from this tree, and checks that every row has a
// figure and every device was reached.
func TestCampaignSectionSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the appliance")
	}
	bin := filepath.Join(t.TempDir(), "crrelay")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/crrelay").CombinedOutput(); err != nil {
		t.Fatalf("building crrelay: %v\n%s", err, out)
	}
	o := campaignOptions{
		udpDevices: 300, xmppSessions: 30, httpDevices: 200,
		concUDP: 32, concXMPP: 16, concHTTP: 16,
		rounds: 2, e2eSamples: 20, timeout: time.Minute,
	}
	rows := campaignSection(context.Background(), bin, 8, o)
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6: %+v", len(rows), rows)
	}
	for _, r := range rows {
		e2e := strings.HasPrefix(r.name, "E2E")
		if strings.HasPrefix(r.result, "unavailable") || strings.Contains(r.note, "REACHED") || !strings.Contains(r.note, "CPU in cores") ||
			e2e && !strings.Contains(r.note, " 0 answered as reached but not received within 1s, 0 not reached, ") {
			t.Errorf("row %s: %s | %s", r.name, r.result, r.note)
		}
		if testing.Verbose() {
			fmt.Printf("%s\t%s\t%s\t%s\n", r.name, r.result, r.goal, r.note)
		}
	}
}
