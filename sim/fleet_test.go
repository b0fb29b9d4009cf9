package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

func TestNewFleetGeneratesCPEs(t *testing.T) {
	cfg := FleetConfig{
		Prefix:                  "sim-",
		Count:                   12,
		Modes:                   []Mode{ModeDigestMD5, ModeBasic, ModeDigestSHA256},
		CloseAfter401Every:      4,
		NoncePerConnectionEvery: 3,
		Seed:                    42,
	}
	f, err := NewFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ds := f.Devices("http://192.0.2.1:7547/")
	if len(ds) != 12 {
		t.Fatalf("%d devices", len(ds))
	}
	for i, d := range ds {
		n := i + 1
		c := f.CPE(d.ID).Config()
		wantMode := cfg.Modes[i%3]
		switch {
		case d.ID != fmt.Sprintf("sim-%06d", n):
			t.Errorf("device %d: id %q", n, d.ID)
		case d.ConnectionRequestURL != "http://192.0.2.1:7547/cr/"+d.ID:
			t.Errorf("%s: url %q", d.ID, d.ConnectionRequestURL)
		case d.Mode != wantMode || c.Mode != wantMode:
			t.Errorf("%s: mode %s, want %s", d.ID, d.Mode, wantMode)
		case d.AllowBasic != (wantMode == ModeBasic):
			t.Errorf("%s: AllowBasic %v", d.ID, d.AllowBasic)
		case d.Username == d.ID || d.Username == "" || len(d.Password) < 16:
			t.Errorf("%s: weak credentials %q/%q", d.ID, d.Username, d.Password)
		case c.CloseAfter401 != (n%4 == 0):
			t.Errorf("%s: CloseAfter401 %v", d.ID, c.CloseAfter401)
		case c.NoncePerConnection != (n%3 == 0 && n%4 != 0 && wantMode != ModeBasic):
			t.Errorf("%s: NoncePerConnection %v", d.ID, c.NoncePerConnection)
		}
	}

	// The same seed gives the same credentials; another seed, others.
	again, _ := NewFleet(cfg)
	cfg.Seed = 43
	other, _ := NewFleet(cfg)
	if a, b := again.Devices("")[5], ds[5]; a.Password != b.Password || a.Username != b.Username {
		t.Error("same seed, different credentials")
	}
	if other.Devices("")[5].Password == ds[5].Password {
		t.Error("different seeds, same password")
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  HTTPCPEConfig
		want error
	}{
		{"empty name", HTTPCPEConfig{}, ErrBadName},
		{"slash in name", HTTPCPEConfig{Name: "a/b"}, ErrBadName},
		{"space in name", HTTPCPEConfig{Name: "a b"}, ErrBadName},
		{"long name", HTTPCPEConfig{Name: strings.Repeat("a", 129)}, ErrBadName},
		{"unknown mode", HTTPCPEConfig{Name: "a", Mode: "digest-sha512"}, ErrUnknownMode},
		{"colon in Basic user", HTTPCPEConfig{Name: "a", Mode: ModeBasic, Username: "a:b"}, ErrBadCredentials},
		{"status 201", HTTPCPEConfig{Name: "a", SuccessStatus: 201}, ErrBadSuccessStatus},
		{"negative rate", HTTPCPEConfig{Name: "a", RateLimit: -1}, ErrBadRateLimit},
		{"negative window", HTTPCPEConfig{Name: "a", RateWindow: -time.Second}, ErrBadRateLimit},
		{"negative nonce TTL", HTTPCPEConfig{Name: "a", NonceTTL: -time.Second}, ErrBadNonceTTL},
		{"close and per-connection nonce", HTTPCPEConfig{Name: "a", CloseAfter401: true, NoncePerConnection: true}, ErrConflictingOptions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFleet(FleetConfig{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Add(tc.cfg); !errors.Is(err, tc.want) {
				t.Errorf("Add: %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("duplicate name", func(t *testing.T) {
		f, _ := NewFleet(FleetConfig{Count: 1})
		if _, err := f.Add(HTTPCPEConfig{Name: "cpe-000001"}); !errors.Is(err, ErrDuplicateName) {
			t.Errorf("Add: %v", err)
		}
	})
	t.Run("fleet", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			cfg  FleetConfig
			want error
		}{
			{"negative count", FleetConfig{Count: -1}, ErrBadCount},
			{"bad mode", FleetConfig{Count: 1, Modes: []Mode{"kerberos"}}, ErrUnknownMode},
			{"bad prefix", FleetConfig{Count: 1, Prefix: "a/"}, ErrBadName},
		} {
			if _, err := NewFleet(tc.cfg); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}
	})
}

func TestParseModes(t *testing.T) {
	ms, err := ParseModes("digest-md5, basic,none")
	if err != nil || len(ms) != 3 || ms[1] != ModeBasic {
		t.Errorf("ParseModes = %v, %v", ms, err)
	}
	if _, err := ParseModes("digest-md5,md4"); !errors.Is(err, ErrUnknownMode) {
		t.Errorf("ParseModes(md4): %v", err)
	}
	var m Mode
	if err := m.UnmarshalText([]byte("digest-sha256-sess")); err != nil || m != ModeDigestSHA256Sess {
		t.Errorf("UnmarshalText: %v %v", m, err)
	}
	for _, m := range Modes() {
		if p, err := ParseMode(m.String()); err != nil || p != m {
			t.Errorf("ParseMode(%s) = %v, %v", m, p, err)
		}
	}
}

// fakeRegistrar stands in for the appliance's API client.
type fakeRegistrar struct {
	mu   sync.Mutex
	got  map[string]Device
	fail string // device id to refuse
}

var errRefused = errors.New("refused")

func (r *fakeRegistrar) PutDevice(ctx context.Context, d Device) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d.ID == r.fail {
		return errRefused
	}
	r.got[d.ID] = d
	return nil
}

func TestRegister(t *testing.T) {
	f, err := NewFleet(FleetConfig{Count: 50, Modes: Modes(), Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRegistrar{got: map[string]Device{}}
	if err := f.Register(context.Background(), r, "http://127.0.0.1:7547", 4); err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Devices("http://127.0.0.1:7547") {
		if r.got[d.ID] != d {
			t.Errorf("%s registered as %+v, want %+v", d.ID, r.got[d.ID], d)
		}
	}
	if len(r.got) != 50 {
		t.Errorf("%d registered", len(r.got))
	}

	r = &fakeRegistrar{got: map[string]Device{}, fail: "cpe-000007"}
	err = f.Register(context.Background(), r, "http://127.0.0.1:7547", 0)
	if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "cpe-000007") {
		t.Errorf("Register = %v, want the refusal of cpe-000007", err)
	}
	if len(r.got) != 6 { // concurrency 0 means one at a time, in order
		t.Errorf("%d registered before the failure, want 6", len(r.got))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Register(ctx, &fakeRegistrar{got: map[string]Device{}}, "", 2); !errors.Is(err, context.Canceled) {
		t.Errorf("Register with a cancelled context = %v", err)
	}
}

func TestFleetWakesAndStats(t *testing.T) {
	type wakeEvent struct {
		name string
		at   time.Time
	}
	woke := make(chan wakeEvent, 100)
	f, err := NewFleet(FleetConfig{
		Count:     4,
		Modes:     []Mode{ModeDigestMD5, ModeBasic},
		RateLimit: 1,
		// Long enough that the window cannot pass during the test.
		RateWindow: time.Hour,
		OnWake:     func(name string, at time.Time) { woke <- wakeEvent{name, at} },
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, f)
	ds := f.Devices("http://" + addr)

	// cpe-000001 (digest-md5): challenge, wake.
	w := dial(t, addr)
	ch := challengeParams(t, w.get("/cr/cpe-000001"))
	start := time.Now()
	wantStatus(t, w.get("/cr/cpe-000001", answer{user: ds[0].Username, pass: ds[0].Password, uri: "/cr/cpe-000001", ch: ch}.header()), http.StatusNoContent)
	select {
	case ev := <-woke:
		if ev.name != "cpe-000001" || ev.at.Before(start) {
			t.Errorf("OnWake(%q, %v)", ev.name, ev.at)
		}
	default:
		t.Error("OnWake not called before the CPE answered")
	}
	// Again: over the rate limit.
	wantStatus(t, w.get("/cr/cpe-000001"), http.StatusServiceUnavailable)

	// cpe-000002 (basic): wrong password, then a wake.
	wantStatus(t, w.get("/cr/cpe-000002", basicHeader(ds[1].Username, "nope")), http.StatusUnauthorized)
	wantStatus(t, w.get("/cr/cpe-000002", basicHeader(ds[1].Username, ds[1].Password)), http.StatusNoContent)
	<-woke

	// Somewhere nobody lives.
	wantStatus(t, w.get("/cr/cpe-000009"), http.StatusNotFound)

	s := f.Stats()
	wantTotal := Counters{Requests: 5, Challenges: 2, Accepted: 2, Rejected: 1, Throttled: 1, LastWake: s.Total.LastWake}
	if s.Total != wantTotal {
		t.Errorf("total %+v, want %+v", s.Total, wantTotal)
	}
	if md5 := s.ByMode[ModeDigestMD5]; md5.Requests != 3 || md5.Accepted != 1 || md5.Throttled != 1 || md5.Challenges != 1 {
		t.Errorf("digest-md5 %+v", md5)
	}
	if basic := s.ByMode[ModeBasic]; basic.Requests != 2 || basic.Accepted != 1 || basic.Rejected != 1 {
		t.Errorf("basic %+v", basic)
	}
	if s.Connections != 1 || s.NotFound != 1 {
		t.Errorf("connections %d, not found %d", s.Connections, s.NotFound)
	}
	if got := f.CPE("cpe-000002").Counters(); got.Accepted != 1 || got.LastWake.IsZero() {
		t.Errorf("cpe-000002 %+v", got)
	}
	if f.CPE("cpe-000009") != nil {
		t.Error("CPE of an unknown name")
	}
}

// Many CPEs woken at once through one listener, each on its own
// connections, as the appliance does under load.
func TestFleetConcurrentWakes(t *testing.T) {
	const n = 200
	f, err := NewFleet(FleetConfig{Count: n, Modes: Modes(), CloseAfter401Every: 7, NoncePerConnectionEvery: 5})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, f)
	var g errgroup.Group
	g.SetLimit(32)
	for _, d := range f.Devices("http://" + addr) {
		g.Go(func() error {
			target := strings.TrimPrefix(d.ConnectionRequestURL, "http://"+addr)
			w := dial(t, addr)
			resp := w.get(target)
			if d.Mode == ModeNone {
				return statusErr(resp, http.StatusNoContent)
			}
			if err := statusErr(resp, http.StatusUnauthorized); err != nil {
				return err
			}
			if f.CPE(d.ID).Config().CloseAfter401 {
				w = dial(t, addr)
			}
			auth := basicHeader(d.Username, d.Password)
			if d.Mode != ModeBasic {
				auth = answer{user: d.Username, pass: d.Password, uri: target, ch: challengeParams(t, resp)}.header()
			}
			return statusErr(w.get(target, auth), http.StatusNoContent)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if s := f.Stats(); s.Total.Accepted != n || s.Total.Rejected != 0 {
		t.Errorf("total %+v", s.Total)
	}
}

func statusErr(resp *http.Response, want int) error {
	if resp.StatusCode != want {
		return errors.New(resp.Status + ", want " + http.StatusText(want))
	}
	return nil
}

func TestSuccessStatus200(t *testing.T) {
	_, addr := oneCPE(t, HTTPCPEConfig{Mode: ModeNone, SuccessStatus: http.StatusOK}, nil)
	resp := getOnce(t, addr, path1)
	wantStatus(t, resp, http.StatusOK)
	if resp.ContentLength != 0 {
		t.Errorf("Content-Length %d", resp.ContentLength)
	}
	wantEmpty(t, resp)
}

func TestServeReturnsNil(t *testing.T) {
	f, _ := NewFleet(FleetConfig{Count: 1})
	tests := []struct {
		name string
		stop func(cancel context.CancelFunc, ln net.Listener)
	}{
		{"context cancelled", func(cancel context.CancelFunc, _ net.Listener) { cancel() }},
		{"listener closed", func(_ context.CancelFunc, ln net.Listener) { ln.Close() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- f.Serve(ctx, ln) }()
			// Serving: a request is answered.
			wantStatus(t, getOnce(t, ln.Addr().String(), "/cr/cpe-000001"), http.StatusUnauthorized)
			tc.stop(cancel, ln)
			if err := <-done; err != nil {
				t.Errorf("Serve = %v, want nil", err)
			}
		})
	}
}
