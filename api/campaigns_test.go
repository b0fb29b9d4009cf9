package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/crrelay/crrelay/campaign"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/registry/registrytest"
	"github.com/crrelay/crrelay/wake"
)

// testCampaignWaker runs campaign wakes through the waker, as the
// appliance's adapter does.
type testCampaignWaker struct{ w *wake.Waker }

func (c testCampaignWaker) Wake(ctx context.Context, id string, o campaign.WakeOptions) campaign.Outcome {
	var ts []registry.Transport
	for _, t := range o.Transports {
		ts = append(ts, registry.Transport(t))
	}
	res, err := c.w.Wake(ctx, id, wake.Request{Transports: ts, Timeout: o.Timeout})
	if errors.Is(err, wake.ErrNotFound) {
		return campaign.Outcome{Err: campaign.ErrDeviceNotFound}
	}
	if err != nil {
		return campaign.Outcome{Err: err}
	}
	return campaign.Outcome{Status: string(res.Status), Transport: string(res.Transport)}
}

func (c testCampaignWaker) CheckOptions(o campaign.WakeOptions) error {
	var ts []registry.Transport
	for _, t := range o.Transports {
		ts = append(ts, registry.Transport(t))
	}
	return c.w.Check(wake.Request{Transports: ts, Timeout: o.Timeout})
}

// testSelector knows the filter "all".
type testSelector struct{ reg Registry }

func (s testSelector) Select(_ context.Context, filter string) ([]string, error) {
	if filter != "all" {
		return nil, errors.New("unknown filter " + filter)
	}
	devs, _ := s.reg.List("", 1000)
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.ID)
	}
	return ids, nil
}

func TestCampaigns(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"c1", "c2", "c3"} {
		if code, b, _ := e.do("PUT", "/v1/devices/"+id, `{"connection_request_url":"http://198.51.100.7:7547/`+id+`","transports":["http"]}`); code != 201 {
			t.Fatalf("put %s: %d %s", id, code, b)
		}
	}
	code, b, hdr := e.do("POST", "/v1/campaigns", `{"devices":["c1","c2","ghost"],"name":"wave 1","rate_per_s":100}`)
	if code != 201 || hdr.Get("Location") == "" {
		t.Fatalf("start: %d %s", code, b)
	}
	var c Campaign
	json.Unmarshal(b, &c)
	if c.ID == "" || c.Total != 3 || c.Name != "wave 1" {
		t.Fatalf("started %+v", c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.State == campaign.StateRunning && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		_, b, _ = e.do("GET", "/v1/campaigns/"+c.ID, "")
		json.Unmarshal(b, &c)
	}
	if c.State != campaign.StateDone || c.Counts["delivered"] != 2 || c.Counts["not_found"] != 1 || c.Pending != 0 {
		t.Fatalf("finished %s", b)
	}
	// The device's history has the campaign's wake.
	_, b, _ = e.do("GET", "/v1/devices/c1", "")
	var d Device
	json.Unmarshal(b, &d)
	if len(d.State.Wakes) != 1 {
		t.Errorf("c1's wakes: %s", b)
	}
	// A filter campaign, listed newest first.
	code, b, _ = e.do("POST", "/v1/campaigns", `{"filter":"all","concurrency":2}`)
	if code != 201 {
		t.Fatalf("filter: %d %s", code, b)
	}
	var c2 Campaign
	json.Unmarshal(b, &c2)
	_, b, _ = e.do("GET", "/v1/campaigns", "")
	var list CampaignList
	json.Unmarshal(b, &list)
	if len(list.Campaigns) != 2 || list.Campaigns[0].ID != c2.ID {
		t.Errorf("list: %s", b)
	}
	// Cancelling an ended campaign is a conflict.
	if code, b, _ := e.do("DELETE", "/v1/campaigns/"+c.ID, ""); code != 409 || decodeErr(t, b).Code != CodeConflict {
		t.Errorf("cancel ended: %d %s", code, b)
	}
}

func TestCampaignBadInput(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"no body", "POST", "/v1/campaigns", ``, 400, CodeBadRequest},
		{"neither devices nor filter", "POST", "/v1/campaigns", `{}`, 400, CodeInvalidArgument},
		{"both", "POST", "/v1/campaigns", `{"devices":["a"],"filter":"all"}`, 400, CodeInvalidArgument},
		{"unknown filter", "POST", "/v1/campaigns", `{"filter":"online-ish"}`, 400, CodeInvalidArgument},
		{"negative rate", "POST", "/v1/campaigns", `{"filter":"all","rate_per_s":-1}`, 400, CodeInvalidArgument},
		{"unknown transport", "POST", "/v1/campaigns", `{"filter":"all","transports":["carrier-pigeon"]}`, 400, CodeInvalidArgument},
		{"unknown field", "POST", "/v1/campaigns", `{"filter":"all","speed":"max"}`, 400, CodeBadRequest},
		{"empty id", "POST", "/v1/campaigns", `{"devices":[""]}`, 400, CodeInvalidArgument},
		{"unknown campaign", "GET", "/v1/campaigns/nope", ``, 404, CodeNotFound},
		{"cancel unknown", "DELETE", "/v1/campaigns/nope", ``, 404, CodeNotFound},
		{"method", "PUT", "/v1/campaigns", `{}`, 405, CodeMethodNotAllowed},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, b, _ := e.do(c.method, c.path, c.body)
			if code != c.status || decodeErr(t, b).Code != c.code {
				t.Errorf("%d %s, want %d %s", code, b, c.status, c.code)
			}
		})
	}
}

// TestServeShutdown: Serve returns at once after its context ends, even
// with a client connection that never sent a request (net/http would wait
// 5 s for it), and lets a request in flight finish.
func TestServeShutdown(t *testing.T) {
	reg := registrytest.New(t)
	w, err := wake.New(wake.Config{Devices: reg})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Token: testToken, Registry: reg, Waker: w})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, nil) }()
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(20 * time.Millisecond) // the server has seen the idle connection
	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("shutdown took %v", d)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Serve still waiting 4s after its context ended")
	}
}
