package sim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewXMPPFleet(t *testing.T) {
	cfg := XMPPFleetConfig{Count: 6, Server: "192.0.2.1:5222", Domain: "example.net", LegacyErrorsEvery: 3, Seed: 42,
		AllowedJIDs: []string{"acs@example.net"}, Resource: "tr069"}
	f, err := NewXMPPFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ds := f.Devices()
	if len(ds) != 6 {
		t.Fatalf("%d devices", len(ds))
	}
	seen := map[string]bool{}
	for i, d := range ds {
		n := i + 1
		c := f.CPE(d.ID).Config()
		switch {
		case d.ID != fmt.Sprintf("xmpp-%06d", n):
			t.Errorf("device %d: id %q", n, d.ID)
		case d.JID != d.ID+"@example.net" || d.ConnReqJID != d.JID+"/tr069":
			t.Errorf("%s: JIDs %q %q", d.ID, d.JID, d.ConnReqJID)
		case len(d.Transports) != 1 || d.Transports[0] != "xmpp":
			t.Errorf("%s: transports %q", d.ID, d.Transports)
		case d.Username == d.ID || len(d.Password) < 16 || len(d.XMPPPassword) < 16 || d.Password == d.XMPPPassword:
			t.Errorf("%s: credentials %+v", d.ID, d)
		case c.LegacyErrors != (n%3 == 0):
			t.Errorf("%s: LegacyErrors %v", d.ID, c.LegacyErrors)
		case c.CRUsername != d.Username || c.CRPassword != d.Password || c.Password != d.XMPPPassword:
			t.Errorf("%s: device %+v does not match the CPE", d.ID, d)
		}
		for _, s := range []string{d.Password, d.XMPPPassword} {
			if seen[s] {
				t.Errorf("%s: %q used twice", d.ID, s)
			}
			seen[s] = true
		}
	}
	again, _ := NewXMPPFleet(cfg)
	if fmt.Sprint(again.Devices()) != fmt.Sprint(ds) {
		t.Error("same seed, different devices")
	}
	if _, err := f.Add(XMPPCPEConfig{Name: "xmpp-000002", Server: cfg.Server, Domain: cfg.Domain}); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("Add of a duplicate: %v", err)
	}
	for _, bad := range []struct {
		cfg  XMPPFleetConfig
		want error
	}{
		{XMPPFleetConfig{Count: 1, Domain: "d"}, ErrNoXMPPServer},
		{XMPPFleetConfig{Count: 1, Server: "h:1"}, ErrBadXMPPDomain},
		{XMPPFleetConfig{Count: -1}, ErrBadCount},
		{XMPPFleetConfig{Prefix: "a b"}, ErrBadName},
		{XMPPFleetConfig{Count: 1, Server: "h:1", Domain: "d", AllowedJIDs: []string{"@"}}, ErrBadAllowedJID},
	} {
		if _, err := NewXMPPFleet(bad.cfg); !errors.Is(err, bad.want) {
			t.Errorf("%+v: %v, want %v", bad.cfg, err, bad.want)
		}
	}
}

// prosodyRegistrar registers devices as Prosody accounts.
type prosodyRegistrar struct {
	t *testing.T
	p *prosodyServer
}

func (r prosodyRegistrar) PutXMPPDevice(_ context.Context, d XMPPDevice) error {
	user, _, _ := strings.Cut(d.JID, "@")
	r.p.addAccount(r.t, user, d.XMPPPassword)
	return nil
}

// A fleet logs in through a small login window, and every CPE answers
// the ACS, legacy ones in their way.
func TestXMPPFleetAgainstProsody(t *testing.T) {
	for _, pollers := range []int{0, 2} {
		t.Run(fmt.Sprintf("pollers=%d", pollers), func(t *testing.T) { testXMPPFleetAgainstProsody(t, pollers) })
	}
}

func testXMPPFleetAgainstProsody(t *testing.T, pollers int) {
	b := newXMPPTestbed(t)
	const n = 40
	var mu sync.Mutex
	woken := map[string]int{}
	online := make(chan string, n)
	f, err := NewXMPPFleet(XMPPFleetConfig{
		Count: n, Server: b.p.addr, Domain: testDomain, TLSConfig: b.p.tls,
		AllowedJIDs: []string{b.acs.JID()}, LegacyErrorsEvery: 4, LoginConcurrency: 4,
		Keepalive: KeepalivePingS2C1, Seed: 7, Pollers: pollers,
		OnOnline: func(name, _ string, _ time.Time) { online <- name },
		OnWake: func(name string, _ time.Time) {
			mu.Lock()
			woken[name]++
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Register(context.Background(), prosodyRegistrar{t, b.p}, 8); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if s := f.Stats(); s.Online != 0 || s.Total.Drops != 0 {
			t.Errorf("after Run: %+v", s)
		}
	}()
	timeout := time.After(testTimeout)
	for range n {
		select {
		case <-online:
		case <-timeout:
			t.Fatalf("online: %+v", f.Stats())
		}
	}
	if err := f.Run(ctx); !errors.Is(err, ErrXMPPFleetRunning) {
		t.Errorf("second Run: %v", err)
	}

	var wg sync.WaitGroup
	for i, d := range f.Devices() {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			r, err := b.acs.ConnectionRequest(ctx, d.ConnReqJID, d.Username, d.Password)
			if err != nil || !r.OK() {
				t.Errorf("%s: %+v %v", d.ID, r, err)
			}
			r, err = b.acs.ConnectionRequest(ctx, d.ConnReqJID, d.Username, "wrong")
			legacy := (i+1)%4 == 0
			if err != nil || r.Echo != legacy || (r.Condition == "not-autorized") != legacy {
				t.Errorf("%s: %+v %v", d.ID, r, err)
			}
		})
	}
	wg.Wait()
	s := f.Stats()
	if s.CPEs != n || s.Online != n || s.Total.Logins != n || s.Total.CRAccepted != n || s.Total.CRNotAuthorized != n || s.Total.ConnectErrors != 0 {
		t.Errorf("stats %+v", s)
	}
	if len(woken) != n {
		t.Errorf("%d CPEs woken", len(woken))
	}
}

// A polled session still ends when nothing arrives within ReadTimeout,
// and its CPE logs in again.
func TestXMPPFleetPollersReadTimeout(t *testing.T) {
	b := newXMPPTestbed(t)
	f, err := NewXMPPFleet(XMPPFleetConfig{
		Count: 1, Server: b.p.addr, Domain: testDomain, TLSConfig: b.p.tls, Seed: 9, Pollers: 1,
		Keepalive: KeepaliveNone, ReadTimeout: 300 * time.Millisecond,
		RetryInitial: time.Millisecond, RetryMax: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Register(context.Background(), prosodyRegistrar{t, b.p}, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	deadline := time.Now().Add(testTimeout)
	for f.Stats().Total.Logins < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no second login after a read timeout: %+v", f.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := f.Stats()
	if s.Total.Drops < 1 || !strings.Contains(f.CPEs()[0].Counters().LastError, "nothing read for") {
		t.Errorf("stats %+v, last error %q", s, f.CPEs()[0].Counters().LastError)
	}
	if _, err := NewXMPPFleet(XMPPFleetConfig{Pollers: -1}); !errors.Is(err, ErrXMPPPollers) {
		t.Errorf("Pollers -1: %v", err)
	}
}
