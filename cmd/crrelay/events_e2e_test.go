package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crrelay/crrelay/api"
	"github.com/crrelay/crrelay/apiclient"
	"github.com/crrelay/crrelay/events"
	"github.com/crrelay/crrelay/sim"
)

// sseStream reads GET /v1/events as a client would: each message's event
// type and data.
type sseStream struct {
	msgs chan sseMsg
	stop func()
}

type sseMsg struct {
	typ string
	ev  events.Event
}

func openEvents(t *testing.T, url, token, query string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/events?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("GET /v1/events: %d %s", resp.StatusCode, b)
	}
	s := &sseStream{msgs: make(chan sseMsg, 256)}
	done := make(chan struct{})
	s.stop = func() { cancel(); <-done }
	go func() {
		defer close(done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var m sseMsg
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "event: "):
				m.typ = strings.TrimPrefix(l, "event: ")
			case strings.HasPrefix(l, "data: "):
				json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &m.ev)
			case l == "" && m.typ != "":
				s.msgs <- m
				m = sseMsg{}
			}
		}
	}()
	t.Cleanup(s.stop)
	return s
}

// next returns the next message of type typ (others are skipped), or
// fails after 10 s.
func (s *sseStream) next(t *testing.T, typ string) events.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-s.msgs:
			if m.typ == typ {
				return m.ev
			}
		case <-deadline:
			t.Fatalf("no %s event in 10s", typ)
		}
	}
}

// TestEventsEndToEnd: the stream and the webhook tell an ACS of bindings,
// XMPP sessions, wakes, confirmations and campaigns, through the binary.
func TestEventsEndToEnd(t *testing.T) {
	const secret = "webhook-secret-0123456789"
	var mu sync.Mutex
	var hooked []events.Event
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := events.Verify([]byte(secret), r.Header.Get(events.HeaderTimestamp), r.Header.Get(events.HeaderSignature), body, time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			http.Error(w, "bad signature", 401)
			return
		}
		var b struct{ Events []events.Event }
		json.Unmarshal(body, &b)
		mu.Lock()
		hooked = append(hooked, b.Events...)
		mu.Unlock()
	}))
	defer hook.Close()

	app := startAppliance(t, t.TempDir(), "--api-token", "tok", "--xmpp-domain", "ev.test",
		"--webhook-url", hook.URL, "--webhook-secret", secret, "--webhook-types", "wake,campaign.done")
	client := &apiclient.Client{BaseURL: app.url, Token: "tok"}
	stream := openEvents(t, app.url, "tok", "")
	only := openEvents(t, app.url, "tok", "type=xmpp&device=ev-xmpp-000001")

	// A STUN CPE binds: binding.new.
	stunFleet, err := sim.NewSTUNFleet(sim.STUNFleetConfig{Prefix: "ev-udp-", Count: 1, Server: netip.MustParseAddrPort(app.stun), Keepalive: time.Hour, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := stunFleet.Register(context.Background(), sim.APIRegistrar{Client: client}, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { stunFleet.Run(ctx) })
	if ev := stream.next(t, events.BindingNew); ev.Device != "ev-udp-000001" || !strings.Contains(string(ev.Data), `"mapped"`) {
		t.Errorf("binding.new: %+v %s", ev, ev.Data)
	}

	// An XMPP CPE logs in and out: xmpp.online, xmpp.offline, on the
	// filtered stream too.
	xf, err := sim.NewXMPPFleet(sim.XMPPFleetConfig{Prefix: "ev-xmpp-", Count: 1, Server: app.xmpp, Domain: "ev.test",
		TLSConfig: &tls.Config{InsecureSkipVerify: true}, AllowedJIDs: []string{"crrelay@ev.test"}, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := xf.Register(context.Background(), sim.APIRegistrar{Client: client}, 1); err != nil {
		t.Fatal(err)
	}
	xctx, xcancel := context.WithCancel(ctx)
	wg.Go(func() { xf.Run(xctx) })
	if ev := only.next(t, events.XMPPOnline); ev.Device != "ev-xmpp-000001" || !strings.Contains(string(ev.Data), "ev-xmpp-000001@ev.test/") {
		t.Errorf("xmpp.online: %+v %s", ev, ev.Data)
	}

	// A wake and its confirmation.
	res, err := client.Wake(context.Background(), "ev-xmpp-000001", api.WakeRequest{})
	if err != nil || res.Status != "delivered" {
		t.Fatalf("wake: %v %+v", err, res)
	}
	if ev := stream.next(t, events.WakeResult); ev.Device != "ev-xmpp-000001" || !strings.Contains(string(ev.Data), `"id":"`+res.ID+`"`) {
		t.Errorf("wake.result: %+v %s", ev, ev.Data)
	}
	if _, err := client.Inform(context.Background(), "ev-xmpp-000001", api.InformRequest{Events: []string{"6 CONNECTION REQUEST"}}); err != nil {
		t.Fatal(err)
	}
	if ev := stream.next(t, events.WakeConfirmed); ev.Device != "ev-xmpp-000001" || !strings.Contains(string(ev.Data), `"confirmed"`) {
		t.Errorf("wake.confirmed: %+v %s", ev, ev.Data)
	}
	xcancel()
	if ev := only.next(t, events.XMPPOffline); ev.Device != "ev-xmpp-000001" {
		t.Errorf("xmpp.offline: %+v", ev)
	}

	// A campaign: progress and done.
	camp, err := client.StartCampaign(context.Background(), api.CampaignSpec{Devices: []string{"ev-udp-000001"}, Transports: []string{"udp"}})
	if err != nil {
		t.Fatal(err)
	}
	if ev := stream.next(t, events.CampaignDone); ev.Campaign != camp.ID || !strings.Contains(string(ev.Data), `"state":"done"`) {
		t.Errorf("campaign.done: %+v %s", ev, ev.Data)
	}

	// The webhook got the wake events and the campaign's end, signed, and
	// nothing it did not ask for.
	waitUntil(t, "the webhook has the campaign's end", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range hooked {
			if e.Type == events.CampaignDone {
				return true
			}
		}
		return false
	})
	mu.Lock()
	types := map[string]int{}
	for _, e := range hooked {
		types[e.Type]++
	}
	mu.Unlock()
	if types[events.WakeResult] < 2 || types[events.WakeConfirmed] != 1 || types[events.XMPPOnline] != 0 || types[events.BindingNew] != 0 {
		t.Errorf("webhook got %v", types)
	}

	// Bad filters: a JSON 400.
	req, _ := http.NewRequest("GET", app.url+"/v1/events?type=weather", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"bad_request"`) {
		t.Errorf("unknown type: %d %s", resp.StatusCode, b)
	}
}
