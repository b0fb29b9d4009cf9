package campaign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	bolt "go.etcd.io/bbolt"
)

// checkingWaker refuses the transport "pigeon".
type checkingWaker struct{ *fakeWaker }

func (checkingWaker) CheckOptions(o WakeOptions) error {
	if slices.Contains(o.Transports, "pigeon") {
		return errors.New("unknown transport pigeon")
	}
	return nil
}

func TestStartValidation(t *testing.T) {
	m, _ := newTestManager(t, Config{
		Waker:          checkingWaker{newFakeWaker(nil)},
		Selector:       fakeSelector{"all": {"a"}},
		MaxDevices:     3,
		MaxConcurrency: 10,
	})
	noSel, _ := newTestManager(t, Config{Waker: newFakeWaker(nil)})
	tests := []struct {
		name string
		m    *Manager
		spec Spec
	}{
		{"devices and filter", m, Spec{Devices: []string{"a"}, Filter: "all"}},
		{"neither", m, Spec{}},
		{"empty id", m, Spec{Devices: []string{"a", ""}}},
		{"long id", m, Spec{Devices: []string{strings.Repeat("x", MaxIDLen+1)}}},
		{"too many devices", m, Spec{Devices: []string{"a", "b", "c", "d"}}},
		{"negative rate", m, Spec{Devices: []string{"a"}, RatePerS: -1}},
		{"NaN rate", m, Spec{Devices: []string{"a"}, RatePerS: math.NaN()}},
		{"huge rate", m, Spec{Devices: []string{"a"}, RatePerS: 2 * MaxRatePerS}},
		{"negative concurrency", m, Spec{Devices: []string{"a"}, Concurrency: -1}},
		{"concurrency over max", m, Spec{Devices: []string{"a"}, Concurrency: 11}},
		{"negative timeout", m, Spec{Devices: []string{"a"}, TimeoutMS: -1}},
		{"huge timeout", m, Spec{Devices: []string{"a"}, TimeoutMS: MaxTimeoutMS + 1}},
		{"long name", m, Spec{Devices: []string{"a"}, Name: strings.Repeat("n", MaxNameLen+1)}},
		{"name not UTF-8", m, Spec{Devices: []string{"a"}, Name: "\xff"}},
		{"empty transport", m, Spec{Devices: []string{"a"}, Transports: []string{""}}},
		{"transport the waker refuses", m, Spec{Devices: []string{"a"}, Transports: []string{"http", "pigeon"}}},
		{"filter the selector refuses", m, Spec{Filter: "nonsense"}},
		{"filter without selector", noSel, Spec{Filter: "all"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.m.Start(context.Background(), tt.spec)
			if !errors.Is(err, ErrBadSpec) {
				t.Fatalf("Start = %+v, %v; want ErrBadSpec", c, err)
			}
		})
	}
	if l := m.List(); len(l) != 0 {
		t.Errorf("List after refused specs = %d campaigns", len(l))
	}
	// Duplicates count once against MaxDevices.
	mustStart(t, m, Spec{Devices: []string{"a", "b", "a", "c", "b"}, Transports: []string{"http"}})
}

func TestTooMany(t *testing.T) {
	blocked := make(chan string, 10)
	m, pub := newTestManager(t, Config{Waker: newFakeWaker(blockAfter(0, blocked)), MaxRunning: 1})
	a := mustStart(t, m, Spec{Devices: []string{"a"}})
	waitN(t, blocked, 1)
	if _, err := m.Start(context.Background(), Spec{Devices: []string{"b"}}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("second Start: %v, want ErrTooMany", err)
	}
	if _, err := m.Cancel(a.ID); err != nil {
		t.Fatal(err)
	}
	waitDone(t, pub, a.ID)
	mustStart(t, m, Spec{Devices: []string{"b"}})
}

func TestExplicitDevices(t *testing.T) {
	w := newFakeWaker(nil)
	var order []string
	var mu sync.Mutex
	w.fn = func(_ context.Context, id string, _ int) Outcome {
		mu.Lock()
		order = append(order, id)
		mu.Unlock()
		return Outcome{Status: "delivered"}
	}
	m, pub := newTestManager(t, Config{Waker: w})
	c := mustStart(t, m, Spec{Devices: []string{"c", "a", "c", "b", "a"}, Concurrency: 1, Name: "three", TimeoutMS: 1500})
	if c.State != StateRunning || c.Total != 3 {
		t.Fatalf("Start = %+v", c)
	}
	c = waitDone(t, pub, c.ID)
	checkConsistent(t, c)
	if c.State != StateDone || c.Done != 3 || !maps.Equal(c.Counts, map[string]int{"delivered": 3}) {
		t.Errorf("done = %+v", c)
	}
	if want := []string{"c", "a", "b"}; !slices.Equal(order, want) {
		t.Errorf("woken in order %v, want %v", order, want)
	}
	if !slices.Equal(c.Spec.Devices, []string{"c", "a", "b"}) || c.Spec.DevicesTotal != 3 || c.Spec.TimeoutMS != 1500 {
		t.Errorf("spec = %+v", c.Spec)
	}

	// The JSON shape the API serves.
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"id", "name", "state", "created_at", "finished_at", "spec", "total", "done", "pending", "counts", "rate_per_s", "eta_s", "elapsed_s"}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, slices.Sorted(slices.Values(wantKeys))) {
		t.Errorf("JSON keys %v, want %v\n%s", keys, wantKeys, b)
	}
	spec := got["spec"].(map[string]any)
	if spec["devices_total"] != 3.0 || spec["concurrency"] != 1.0 || spec["timeout_ms"] != 1500.0 {
		t.Errorf("spec JSON = %v", spec)
	}

	// A large list is not echoed.
	big := mustStart(t, m, Spec{Devices: makeIDs(MaxListedDevices + 1)})
	if big.Spec.Devices != nil || big.Spec.DevicesTotal != MaxListedDevices+1 {
		t.Errorf("large spec = %d devices listed, total %d", len(big.Spec.Devices), big.Spec.DevicesTotal)
	}
	waitDone(t, pub, big.ID)
	if n := w.total.Load(); n != 3+MaxListedDevices+1 {
		t.Errorf("%d wakes, want %d", n, 3+MaxListedDevices+1)
	}
}

func TestFilter(t *testing.T) {
	w := newFakeWaker(nil)
	m, pub := newTestManager(t, Config{Waker: w, Selector: fakeSelector{
		"all":         {"x", "y", "z", "y"},
		"xmpp_online": {},
	}})
	c := mustStart(t, m, Spec{Filter: "all"})
	c = waitDone(t, pub, c.ID)
	if c.Total != 3 || c.Counts["delivered"] != 3 || c.Spec.Filter != "all" || c.Spec.Devices != nil {
		t.Errorf("filter campaign = %+v", c)
	}
	for _, id := range []string{"x", "y", "z"} {
		if n := w.callsOf(id); n != 1 {
			t.Errorf("%s woken %d times", id, n)
		}
	}
	// Nothing selected: done at once.
	c = mustStart(t, m, Spec{Filter: "xmpp_online"})
	if c.State != StateDone || c.Total != 0 {
		t.Errorf("empty campaign = %+v", c)
	}
	waitDone(t, pub, c.ID)
}

func TestRateLimit(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	w := newFakeWaker(func(context.Context, string, int) Outcome {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return Outcome{Status: "sent"}
	})
	m, pub := newTestManager(t, Config{Waker: w})
	c := mustStart(t, m, Spec{Devices: makeIDs(100), RatePerS: 200})
	waitDone(t, pub, c.ID)
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(at, time.Time.Compare)
	// 100 wakes at 200/s with a 10-token burst: 0.45 s.
	if span := at[len(at)-1].Sub(at[0]); span < 300*time.Millisecond || span > 2*time.Second {
		t.Errorf("100 wakes at 200/s took %v, want about 450ms", span)
	}
	// Smooth: no 100 ms holds much more than 20 wakes plus the burst.
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < 100*time.Millisecond; j++ {
			n++
		}
		if n > 40 {
			t.Fatalf("%d wakes within 100ms from wake %d", n, i)
		}
	}
}

func TestConcurrencyBound(t *testing.T) {
	const conc = 7
	var inflight, peak, entered atomic.Int64
	full := make(chan struct{})
	w := newFakeWaker(func(ctx context.Context, _ string, _ int) Outcome {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		// The first conc wakes wait for each other, so the bound is
		// certainly reached; later ones take a moment, so that a
		// broken bound would show.
		switch e := entered.Add(1); {
		case e < conc:
			select {
			case <-full:
			case <-ctx.Done():
			}
		case e == conc:
			close(full)
		default:
			time.Sleep(200 * time.Microsecond)
		}
		return Outcome{Status: "delivered"}
	})
	m, pub := newTestManager(t, Config{Waker: w})
	c := mustStart(t, m, Spec{Devices: makeIDs(300), Concurrency: conc})
	c = waitDone(t, pub, c.ID)
	if p := peak.Load(); p != conc {
		t.Errorf("peak in flight %d, want %d", p, conc)
	}
	if c.Counts["delivered"] != 300 {
		t.Errorf("counts %v", c.Counts)
	}
}

func TestCounts(t *testing.T) {
	outcomes := map[string]Outcome{
		"d-delivered":   {Status: "delivered"},
		"d-sent":        {Status: "sent"},
		"d-auth":        {Status: "auth_failed"},
		"d-throttled":   {Status: "throttled"},
		"d-refused":     {Status: "refused"},
		"d-offline":     {Status: "offline"},
		"d-unreachable": {Status: "unreachable"},
		"d-timeout":     {Status: "timeout"},
		"d-error":       {Status: "error"},
		"d-gone":        {Err: fmt.Errorf("wake: %w", ErrDeviceNotFound)},
		"d-gone-word":   {Status: "not_found"},
		"d-odd":         {Status: "frobnicated"},
		"d-broken":      {Err: errBoom},
		"d-sent2":       {Status: "sent", Transport: "udp"},
	}
	w := newFakeWaker(func(_ context.Context, id string, _ int) Outcome { return outcomes[id] })
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	m, pub := newTestManager(t, Config{Dir: dir, Waker: w, Metrics: reg})
	c := mustStart(t, m, Spec{Devices: slices.Sorted(maps.Keys(outcomes))})
	c = waitDone(t, pub, c.ID)
	want := map[string]int{
		"delivered": 1, "sent": 2, "auth_failed": 1, "throttled": 1, "refused": 1, "offline": 1,
		"unreachable": 1, "timeout": 1, "error": 3, "not_found": 2,
	}
	if !maps.Equal(c.Counts, want) {
		t.Errorf("counts %v, want %v", c.Counts, want)
	}
	checkConsistent(t, c)
	if c.State != StateDone || c.ETASeconds != nil || c.Pending != 0 {
		t.Errorf("campaign = %+v", c)
	}
	for w, n := range want {
		if got := metricValue(t, m.wakes[statusCodes[w]]); got != float64(n) {
			t.Errorf("crrelay_campaign_wakes_total{status=%q} = %v, want %d", w, got, n)
		}
	}
	if got := metricValue(t, m.running); got != 0 {
		t.Errorf("crrelay_campaigns_running = %v after the end", got)
	}
	fams, err := reg.Gather()
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	if err != nil || !slices.Equal(names, []string{"crrelay_campaign_wakes_total", "crrelay_campaigns_running"}) {
		t.Errorf("gathered %v, %v", names, err)
	}

	// The counts survive a restart.
	m.Close()
	m2, _ := newTestManager(t, Config{Dir: dir, Waker: w})
	got, ok := m2.Get(c.ID)
	if !ok || !maps.Equal(got.Counts, want) || got.State != StateDone || !got.FinishedAt.Equal(*c.FinishedAt) {
		t.Errorf("after reopening: %+v, %v", got, ok)
	}
}

func TestBusyRetry(t *testing.T) {
	w := newFakeWaker(func(_ context.Context, _ string, n int) Outcome {
		if n <= 2 {
			return Outcome{Err: fmt.Errorf("appliance: %w", ErrBusy)}
		}
		return Outcome{Status: "delivered"}
	})
	m, pub := newTestManager(t, Config{Waker: w})
	ids := makeIDs(20)
	c := mustStart(t, m, Spec{Devices: ids, Concurrency: 4})
	c = waitDone(t, pub, c.ID)
	if !maps.Equal(c.Counts, map[string]int{"delivered": 20}) {
		t.Errorf("counts %v: ErrBusy must not be a result", c.Counts)
	}
	for _, id := range ids {
		if n := w.callsOf(id); n != 3 {
			t.Errorf("%s called %d times, want 3 (two busy)", id, n)
		}
	}
}

func TestCancel(t *testing.T) {
	const total, conc, k = 1000, 4, 50
	blocked := make(chan string, conc)
	w := newFakeWaker(blockAfter(k, blocked))
	dir := t.TempDir()
	m, pub := newTestManager(t, Config{Dir: dir, Waker: w})
	c := mustStart(t, m, Spec{Devices: makeIDs(total), Concurrency: conc})
	waitN(t, blocked, conc)

	c, err := m.Cancel(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	calls := w.total.Load()
	checkConsistent(t, c)
	want := map[string]int{"delivered": k, "unknown": conc}
	if c.State != StateCancelled || !maps.Equal(c.Counts, want) || c.Pending != total-k-conc || calls != k+conc {
		t.Errorf("cancelled: %+v after %d wakes; want counts %v", c, calls, want)
	}
	if d := waitDone(t, pub, c.ID); d.State != StateCancelled {
		t.Errorf("Done event state %s", d.State)
	}
	again, err := m.Cancel(c.ID)
	if !errors.Is(err, ErrFinished) || again.State != StateCancelled || again.Done != c.Done {
		t.Errorf("second Cancel = %+v, %v; want it unchanged with ErrFinished", again, err)
	}
	if _, err := m.Cancel("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Cancel(nope) = %v, want ErrNotFound", err)
	}

	// Stored cancelled: not resumed.
	m.Close()
	w.fn = nil
	m2, _ := newTestManager(t, Config{Dir: dir, Waker: w})
	run(t, m2)
	d := mustStart(t, m2, Spec{Devices: []string{"other"}})
	waitDone(t, pub2(m2), d.ID)
	if got, _ := m2.Get(c.ID); got.State != StateCancelled || got.Done != c.Done {
		t.Errorf("after reopening: %+v", got)
	}
	if n := w.total.Load(); n != calls+1 {
		t.Errorf("%d wakes after reopening, want only the new campaign's", n-calls)
	}
}

func pub2(m *Manager) *fakePublisher { return m.cfg.Publisher.(*fakePublisher) }

// TestRestart stops the appliance cleanly in the middle of a campaign:
// wakes in flight are abandoned after the grace period and count as
// unknown, the rest is woken after the restart, and no device twice.
func TestRestart(t *testing.T) {
	const total, conc, k = 1000, 8, 100
	blocked := make(chan string, conc)
	w := newFakeWaker(blockAfter(k, blocked))
	dir := t.TempDir()
	m, _ := newTestManager(t, Config{Dir: dir, Waker: w})
	c := mustStart(t, m, Spec{Devices: makeIDs(total), Concurrency: conc})
	abandoned := waitN(t, blocked, conc)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	stopped, _ := m.Get(c.ID)
	checkConsistent(t, stopped)
	if stopped.State != StateRunning || stopped.Counts["delivered"] != k || stopped.Counts["unknown"] != conc {
		t.Errorf("after Close: %+v", stopped)
	}
	if _, err := m.Start(context.Background(), Spec{Devices: []string{"a"}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}

	w.fn = nil // deliver everything from now on
	m2, pub := newTestManager(t, Config{Dir: dir, Waker: w})
	if got, _ := m2.Get(c.ID); got.State != StateRunning {
		t.Errorf("reopened: state %s", got.State)
	}
	run(t, m2)
	done := waitDone(t, pub, c.ID)
	checkConsistent(t, done)
	want := map[string]int{"delivered": total - conc, "unknown": conc}
	if done.State != StateDone || !maps.Equal(done.Counts, want) {
		t.Errorf("after restart: %+v, want counts %v", done, want)
	}
	for _, id := range makeIDs(total) {
		if n := w.callsOf(id); n != 1 {
			t.Errorf("%s woken %d times", id, n)
		}
	}
	for _, id := range abandoned {
		if n := w.callsOf(id); n != 1 {
			t.Errorf("abandoned %s woken again", id)
		}
	}
}

// TestCrash takes a copy of the store in the middle of a campaign, as a
// crash would leave it, and resumes from it: devices claimed without a
// result are unknown and never woken again.
func TestCrash(t *testing.T) {
	const total, conc, k = 3000, 8, 500
	blocked := make(chan string, conc)
	w := newFakeWaker(blockAfter(k, blocked))
	m, _ := newTestManager(t, Config{Dir: t.TempDir(), Waker: w})
	c := mustStart(t, m, Spec{Devices: makeIDs(total), Concurrency: conc})
	waitN(t, blocked, conc)
	// Every wake from now on blocks: nothing happens after the "crash".
	crashDirs := []string{t.TempDir(), t.TempDir()}
	err := m.db.View(func(tx *bolt.Tx) error {
		for _, d := range crashDirs {
			if err := tx.CopyFile(filepath.Join(d, storeFile), 0o600); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	firstLife := w.total.Load()

	w.fn = nil
	m2, pub := newTestManager(t, Config{Dir: crashDirs[0], Waker: w})
	run(t, m2)
	done := waitDone(t, pub, c.ID)
	checkConsistent(t, done)
	if done.State != StateDone || done.Counts["delivered"]+done.Counts["unknown"] != total || done.Counts["unknown"] < conc {
		t.Errorf("after crash: %+v", done)
	}
	woken := 0
	for _, id := range makeIDs(total) {
		switch n := w.callsOf(id); n {
		case 0:
		case 1:
			woken++
		default:
			t.Errorf("%s woken %d times", id, n)
		}
	}
	// Everything woken after the crash is delivered; everything woken
	// before is delivered (result stored) or unknown; the devices never
	// woken are those claimed but not handed out before the crash.
	if second := int(w.total.Load() - firstLife); second+int(firstLife) != woken || done.Counts["delivered"] > woken {
		t.Errorf("%d woken before the crash, %d after, %d devices woken, %d delivered", firstLife, second, woken, done.Counts["delivered"])
	}

	// Cancelled before Run, from the same crash: claimed devices are
	// unknown, the rest pending, nothing woken.
	before := w.total.Load()
	m3, _ := newTestManager(t, Config{Dir: crashDirs[1], Waker: w})
	cc, err := m3.Cancel(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, cc)
	if cc.State != StateCancelled || cc.Counts["unknown"] != done.Counts["unknown"] || w.total.Load() != before {
		t.Errorf("cancelled after crash: %+v (unknown after resume: %d)", cc, done.Counts["unknown"])
	}
}

func TestKeep(t *testing.T) {
	dir := t.TempDir()
	m, pub := newTestManager(t, Config{Dir: dir, Waker: newFakeWaker(nil), Keep: 2})
	var ids []string
	for i := range 4 {
		c := mustStart(t, m, Spec{Devices: []string{"a", "b"}, Name: fmt.Sprint(i)})
		waitDone(t, pub, c.ID)
		ids = append(ids, c.ID)
	}
	check := func(m *Manager) {
		t.Helper()
		var got []string
		for _, c := range m.List() {
			got = append(got, c.ID)
		}
		if want := []string{ids[3], ids[2]}; !slices.Equal(got, want) {
			t.Errorf("List = %v, want %v", got, want)
		}
		if _, ok := m.Get(ids[0]); ok {
			t.Errorf("oldest campaign still there")
		}
	}
	check(m)
	m.Close()
	m2, _ := newTestManager(t, Config{Dir: dir, Waker: newFakeWaker(nil), Keep: 2})
	check(m2)
}

func TestStoreErrors(t *testing.T) {
	w := newFakeWaker(nil)
	t.Run("missing dir", func(t *testing.T) {
		_, err := New(Config{Dir: filepath.Join(t.TempDir(), "nope"), Waker: w})
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("New = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("new file", func(t *testing.T) {
		dir := t.TempDir()
		m, err := New(Config{Dir: dir, Waker: w})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		st, err := os.Stat(filepath.Join(dir, storeFile))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("store file: %v, %v; want mode 0600", st, err)
		}
	})
	t.Run("not bbolt", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, storeFile), []byte(strings.Repeat("garbage!", 2048)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := New(Config{Dir: dir, Waker: w})
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("New = %v, want ErrCorrupt", err)
		}
	})
	damage := func(t *testing.T, fn func(tx *bolt.Tx, id []byte) error) error {
		t.Helper()
		dir := t.TempDir()
		m, pub := newTestManager(t, Config{Dir: dir, Waker: w})
		c := mustStart(t, m, Spec{Devices: []string{"a"}})
		waitDone(t, pub, c.ID)
		m.Close()
		db, err := bolt.Open(filepath.Join(dir, storeFile), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error { return fn(tx, []byte(c.ID)) }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		_, err = New(Config{Dir: dir, Waker: w})
		return err
	}
	t.Run("bad meta", func(t *testing.T) {
		err := damage(t, func(tx *bolt.Tx, id []byte) error {
			return tx.Bucket(bucketCampaigns).Bucket(id).Put(keyMeta, []byte("{"))
		})
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("New = %v, want ErrCorrupt", err)
		}
	})
	t.Run("bad cursor", func(t *testing.T) {
		err := damage(t, func(tx *bolt.Tx, id []byte) error {
			return tx.Bucket(bucketCampaigns).Bucket(id).Put(keyCursor, encodeCursor(2))
		})
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("New = %v, want ErrCorrupt", err)
		}
	})
	t.Run("future format", func(t *testing.T) {
		err := damage(t, func(tx *bolt.Tx, _ []byte) error {
			return tx.Bucket(bucketInfo).Put(keyVersion, []byte("9"))
		})
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("New = %v, want ErrCorrupt", err)
		}
	})
}

func TestConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Waker: newFakeWaker(nil)},
		{Dir: t.TempDir()},
		{Dir: t.TempDir(), Waker: newFakeWaker(nil), Keep: -1},
	} {
		if m, err := New(cfg); err == nil {
			m.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestProgressAndRate(t *testing.T) {
	release := make(chan struct{})
	w := newFakeWaker(func(ctx context.Context, id string, _ int) Outcome {
		if id == "last" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return Outcome{Status: "delivered"}
	})
	m, pub := newTestManager(t, Config{Waker: w, ProgressEvery: 20 * time.Millisecond})
	c := mustStart(t, m, Spec{Devices: append(makeIDs(50), "last"), RatePerS: 100, Concurrency: 1})
	// Progress events arrive while it runs; the observed rate follows
	// the limit.
	var got Campaign
	for got.Done < 30 {
		got = waitN(t, pub.progress, 1)[0]
		if got.ID != c.ID || got.State != StateRunning {
			t.Fatalf("progress event %+v", got)
		}
	}
	if got.RatePerS < 30 || got.RatePerS > 200 {
		t.Errorf("observed rate %v at limit 100/s (%+v)", got.RatePerS, got)
	}
	if got.ETASeconds == nil || *got.ETASeconds <= 0 {
		t.Errorf("eta %v while running", got.ETASeconds)
	}
	close(release)
	d := waitDone(t, pub, c.ID)
	if d.ETASeconds != nil || d.RatePerS <= 0 || d.ElapsedS <= 0 {
		t.Errorf("done: %+v", d)
	}
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
