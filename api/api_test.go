package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crrelay/crrelay/campaign"
	"github.com/crrelay/crrelay/httpcr"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/registry/registrytest"
	"github.com/crrelay/crrelay/wake"
)

const testToken = "test-token-0123456789"

// fakeHTTP is a wake transport whose answer the test chooses.
type fakeHTTP struct {
	mu  sync.Mutex
	out wake.Attempt
	got []string
}

func (f *fakeHTTP) Usable(d registry.Device) (bool, string) {
	if d.ConnectionRequestURL == "" {
		return false, "no connection_request_url registered"
	}
	return true, ""
}

func (f *fakeHTTP) Wake(_ context.Context, d registry.Device) wake.Attempt {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, d.ID+" "+d.Password)
	return f.out
}

type env struct {
	t    *testing.T
	url  string
	reg  *registry.Registry
	http *fakeHTTP
}

// answers collects every answer any test received, with its route, method
// and status; TestMain checks them all against the OpenAPI document.
var answers struct {
	sync.Mutex
	list []exchange
}

type exchange struct {
	method, pattern string
	status          int
	body            []byte
}

func newEnv(t *testing.T) *env {
	t.Helper()
	reg := registrytest.New(t)
	fh := &fakeHTTP{out: wake.Attempt{Status: wake.Delivered, HTTPStatus: 204, DurationMS: 1.5}}
	metrics := prometheus.NewRegistry()
	w, err := wake.New(wake.Config{
		Devices:    reg,
		Transports: map[registry.Transport]wake.Transport{registry.TransportHTTP: fh},
		Metrics:    metrics,
		// Tests wake the same device in turn; coalescing has its own test.
		MinSpacing: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	policy, err := httpcr.NewPolicy(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	camps, err := campaign.New(campaign.Config{Dir: t.TempDir(), Waker: testCampaignWaker{w}, Selector: testSelector{reg}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { camps.Close() })
	s, err := New(Config{Token: testToken, Registry: reg, Waker: w, Campaigns: camps, CheckURL: policy.CheckURL,
		Gatherer: metrics, Metrics: metrics, MaxBodyBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &env{t: t, url: ts.URL, reg: reg, http: fh}
}

// do sends a request with the token and returns status and body.
func (e *env) do(method, path string, body string, hdr ...string) (int, []byte, http.Header) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	answers.Lock()
	answers.list = append(answers.list, exchange{method: method, pattern: patternOf(req.URL.EscapedPath()), status: resp.StatusCode, body: b})
	answers.Unlock()
	return resp.StatusCode, b, resp.Header
}

func patternOf(p string) string {
	switch {
	case p == "/v1/devices":
		return p
	case strings.HasPrefix(p, "/v1/devices/") && strings.HasSuffix(p, "/connection-request"):
		return "/v1/devices/{id}/connection-request"
	case strings.HasPrefix(p, "/v1/devices/") && strings.HasSuffix(p, "/inform"):
		return "/v1/devices/{id}/inform"
	case strings.HasPrefix(p, "/v1/campaigns/"):
		return "/v1/campaigns/{id}"
	case strings.HasPrefix(p, "/v1/devices/"):
		return "/v1/devices/{id}"
	}
	return p
}

func decodeErr(t *testing.T, b []byte) ErrorDetail {
	t.Helper()
	var eb ErrorBody
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
		t.Fatalf("not a JSON error body: %q (%v)", b, err)
	}
	return eb.Error
}

const goodDevice = `{"connection_request_url":"http://198.51.100.7:7547/cr","username":"cr-user","password":"s3cret-pass",
 "stun_username":"stun-0001","stun_password":"stun-s3cret","udp_address":"203.0.113.7:51234",
 "xmpp_jid":"cpe-0001@xmpp.example.net/cwmp","xmpp_password":"xmpp-s3cret","transports":["http","udp"]}`

func TestAuth(t *testing.T) {
	e := newEnv(t)
	paths := []struct{ method, path string }{
		{"GET", "/v1/devices"}, {"GET", "/v1/devices/x"}, {"PUT", "/v1/devices/x"},
		{"PATCH", "/v1/devices/x"}, {"DELETE", "/v1/devices/x"}, {"POST", "/v1/devices/x/connection-request"},
	}
	for _, p := range paths {
		for name, auth := range map[string]string{
			"missing": "", "wrong": "Bearer nope", "basic": "Basic " + testToken,
			"prefix": "Bearer " + testToken[:5], "longer": "Bearer " + testToken + "x",
		} {
			t.Run(p.method+p.path+"/"+name, func(t *testing.T) {
				code, b, h := e.do(p.method, p.path, "", "Authorization", auth)
				if code != 401 {
					t.Fatalf("status %d, want 401", code)
				}
				if decodeErr(t, b).Code != CodeUnauthorized {
					t.Fatalf("code %s", b)
				}
				if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("no Bearer challenge")
				}
			})
		}
	}
	if code, _, _ := e.do("GET", "/v1/devices", "", "Authorization", "bearer "+testToken); code != 200 {
		t.Fatalf("scheme is case-insensitive; got %d", code)
	}
}

func TestPutGetNeverReturnsSecrets(t *testing.T) {
	e := newEnv(t)
	code, b, _ := e.do("PUT", "/v1/devices/dev-1", goodDevice)
	if code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	code, b2, _ := e.do("PUT", "/v1/devices/dev-1", goodDevice)
	if code != 200 {
		t.Fatalf("replace: %d %s", code, b2)
	}
	code, b3, _ := e.do("GET", "/v1/devices/dev-1", "")
	if code != 200 {
		t.Fatalf("get: %d %s", code, b3)
	}
	code, b4, _ := e.do("GET", "/v1/devices", "")
	if code != 200 {
		t.Fatalf("list: %d", code)
	}
	for _, body := range [][]byte{b, b2, b3, b4} {
		for _, secret := range []string{"s3cret-pass", "stun-s3cret", "xmpp-s3cret"} {
			if bytes.Contains(body, []byte(secret)) {
				t.Fatalf("secret %q in answer %s", secret, body)
			}
		}
	}
	var d Device
	if err := json.Unmarshal(b3, &d); err != nil {
		t.Fatal(err)
	}
	if !d.PasswordSet || !d.STUNPasswordSet || !d.XMPPPasswordSet || d.Username != "cr-user" ||
		d.UDPAddress != "203.0.113.7:51234" || len(d.Transports) != 2 || d.State == nil {
		t.Fatalf("device view wrong: %+v", d)
	}
	if !d.State.HTTP.Enabled || !d.State.HTTP.Usable || d.State.UDP.Enabled {
		t.Fatalf("state wrong: %+v", d.State)
	}
	if d.CreatedAt.IsZero() || d.UpdatedAt.Before(d.CreatedAt) {
		t.Fatalf("times wrong: %v %v", d.CreatedAt, d.UpdatedAt)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("a", 300)
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code, field              string
	}{
		{"malformed json", "PUT", "/v1/devices/d", `{"username":`, nil, 400, CodeBadRequest, ""},
		{"not an object", "PUT", "/v1/devices/d", `["x"]`, nil, 400, CodeBadRequest, ""},
		{"null body", "PUT", "/v1/devices/d", `null`, nil, 400, CodeBadRequest, ""},
		{"empty body", "PUT", "/v1/devices/d", ``, nil, 400, CodeBadRequest, ""},
		{"trailing data", "PUT", "/v1/devices/d", `{} {}`, nil, 400, CodeBadRequest, ""},
		{"unknown field", "PUT", "/v1/devices/d", `{"usrname":"x"}`, nil, 400, CodeBadRequest, "usrname"},
		{"wrong type", "PUT", "/v1/devices/d", `{"username":5}`, nil, 400, CodeInvalidArgument, "username"},
		{"bool wrong type", "PUT", "/v1/devices/d", `{"allow_basic":"yes"}`, nil, 400, CodeInvalidArgument, "allow_basic"},
		{"bad transport", "PUT", "/v1/devices/d", `{"transports":["tr069"]}`, nil, 400, CodeInvalidArgument, "transports"},
		{"duplicate transport", "PUT", "/v1/devices/d", `{"transports":["http","http"]}`, nil, 400, CodeInvalidArgument, "transports"},
		{"ftp url", "PUT", "/v1/devices/d", `{"connection_request_url":"ftp://198.51.100.1/"}`, nil, 400, CodeInvalidArgument, "connection_request_url"},
		{"relative url", "PUT", "/v1/devices/d", `{"connection_request_url":"/cr"}`, nil, 400, CodeInvalidArgument, "connection_request_url"},
		{"loopback url", "PUT", "/v1/devices/d", `{"connection_request_url":"http://127.0.0.1:7547/"}`, nil, 400, CodeDestinationDenied, "connection_request_url"},
		{"link-local url", "PUT", "/v1/devices/d", `{"connection_request_url":"http://169.254.169.254/latest"}`, nil, 400, CodeDestinationDenied, "connection_request_url"},
		{"bad udp address", "PUT", "/v1/devices/d", `{"udp_address":"not-an-address"}`, nil, 400, CodeInvalidArgument, "udp_address"},
		{"bad jid", "PUT", "/v1/devices/d", `{"xmpp_jid":"@@"}`, nil, 400, CodeInvalidArgument, "xmpp_jid"},
		{"long username", "PUT", "/v1/devices/d", `{"username":"` + long + `"}`, nil, 400, CodeInvalidArgument, "username"},
		{"control char id", "PUT", "/v1/devices/a%01b", `{}`, nil, 400, CodeInvalidArgument, "id"},
		{"id too long", "PUT", "/v1/devices/" + long, `{}`, nil, 400, CodeInvalidArgument, "id"},
		{"id mismatch", "PUT", "/v1/devices/d", `{"id":"other"}`, nil, 400, CodeInvalidArgument, "id"},
		{"too large", "PUT", "/v1/devices/d", `{"username":"` + strings.Repeat("x", 5000) + `"}`, nil, 413, CodeTooLarge, ""},
		{"wrong content type", "PUT", "/v1/devices/d", `{}`, []string{"Content-Type", "text/plain"}, 415, CodeBadRequest, ""},
		{"patch unknown device", "PATCH", "/v1/devices/nobody", `{"username":"x"}`, nil, 404, CodeNotFound, ""},
		{"get unknown", "GET", "/v1/devices/nobody", ``, nil, 404, CodeNotFound, ""},
		{"delete unknown", "DELETE", "/v1/devices/nobody", ``, nil, 404, CodeNotFound, ""},
		{"wake unknown", "POST", "/v1/devices/nobody/connection-request", ``, nil, 404, CodeNotFound, ""},
		{"wake bad transport", "POST", "/v1/devices/nobody/connection-request", `{"transports":["smoke"]}`, nil, 400, CodeInvalidArgument, "transports"},
		{"wake negative timeout", "POST", "/v1/devices/nobody/connection-request", `{"timeout_ms":-5}`, nil, 400, CodeInvalidArgument, "timeout_ms"},
		{"wake huge timeout", "POST", "/v1/devices/nobody/connection-request", `{"timeout_ms":999999999}`, nil, 400, CodeInvalidArgument, "timeout_ms"},
		{"wake unknown field", "POST", "/v1/devices/nobody/connection-request", `{"wake_up":"now"}`, nil, 400, CodeBadRequest, ""},
		{"wake bad wait", "POST", "/v1/devices/nobody/connection-request", `{"wait":"forever"}`, nil, 400, CodeInvalidArgument, "wait"},
		{"wake bad strategy", "POST", "/v1/devices/nobody/connection-request", `{"strategy":"random"}`, nil, 400, CodeInvalidArgument, "strategy"},
		{"inform no body", "POST", "/v1/devices/nobody/inform", ``, nil, 400, CodeBadRequest, ""},
		{"inform no events", "POST", "/v1/devices/nobody/inform", `{"events":[]}`, nil, 400, CodeInvalidArgument, "events"},
		{"inform events not strings", "POST", "/v1/devices/nobody/inform", `{"events":[6]}`, nil, 400, CodeInvalidArgument, "events"},
		{"inform in the future", "POST", "/v1/devices/nobody/inform", `{"events":["6 CONNECTION REQUEST"],"at":"2999-01-01T00:00:00Z"}`, nil, 400, CodeInvalidArgument, "at"},
		{"inform unknown device", "POST", "/v1/devices/nobody/inform", `{"events":["6 CONNECTION REQUEST"]}`, nil, 404, CodeNotFound, ""},
		{"wake timeout as string", "POST", "/v1/devices/nobody/connection-request", `{"timeout_ms":"5"}`, nil, 400, CodeInvalidArgument, "timeout_ms"},
		{"wake timeout overflow", "POST", "/v1/devices/nobody/connection-request", `{"timeout_ms":18446744073710}`, nil, 400, CodeInvalidArgument, "timeout_ms"},
		{"wake timeout fraction", "POST", "/v1/devices/nobody/connection-request", `{"timeout_ms":1.5}`, nil, 400, CodeInvalidArgument, "timeout_ms"},
		{"wake body not an object", "POST", "/v1/devices/nobody/connection-request", `[1]`, nil, 400, CodeBadRequest, ""},
		{"invalid utf-8", "PUT", "/v1/devices/d", "{\"password\":\"\xff\xfe\"}", nil, 400, CodeBadRequest, ""},
		{"content type with suffix", "PUT", "/v1/devices/d", `{}`, []string{"Content-Type", "application/jsonx"}, 415, CodeBadRequest, ""},
		{"dot id", "PUT", "/v1/devices/%2E", `{}`, nil, 400, CodeInvalidArgument, "id"},
		{"dotdot id", "PUT", "/v1/devices/%2E%2E", `{}`, nil, 400, CodeInvalidArgument, "id"},
		{"empty segment", "GET", "/v1/devices//d", ``, nil, 404, CodeNotFound, ""},
		{"dot segment", "GET", "/v1/devices/./d", ``, nil, 404, CodeNotFound, ""},
		{"dotdot segment", "GET", "/v1/devices/../devices", ``, nil, 404, CodeNotFound, ""},
		{"get long id", "GET", "/v1/devices/" + long, ``, nil, 400, CodeInvalidArgument, "id"},
		{"list bad limit", "GET", "/v1/devices?limit=0", ``, nil, 400, CodeInvalidArgument, "limit"},
		{"list limit not a number", "GET", "/v1/devices?limit=ten", ``, nil, 400, CodeInvalidArgument, "limit"},
		{"list unknown param", "GET", "/v1/devices?page=2", ``, nil, 400, CodeBadRequest, ""},
		{"method not allowed", "POST", "/v1/devices/d", `{}`, nil, 405, CodeMethodNotAllowed, ""},
		{"unknown path", "GET", "/v2/things", ``, nil, 404, CodeNotFound, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, b, h := e.do(c.method, c.path, c.body, c.hdr...)
			if code != c.status {
				t.Fatalf("status %d, want %d: %s", code, c.status, b)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			ed := decodeErr(t, b)
			if ed.Code != c.code || ed.Field != c.field {
				t.Fatalf("got code %q field %q, want %q %q: %s", ed.Code, ed.Field, c.code, c.field, b)
			}
			if c.status == 405 && h.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
	// Nothing above may have created or changed a device.
	if n := len(listAll(t, e)); n != 0 {
		t.Fatalf("%d devices after bad input", n)
	}
}

func listAll(t *testing.T, e *env) []Device {
	t.Helper()
	var all []Device
	cursor := ""
	for {
		code, b, _ := e.do("GET", "/v1/devices?limit=7&cursor="+url.QueryEscape(cursor), "")
		if code != 200 {
			t.Fatalf("list %d %s", code, b)
		}
		var page DeviceList
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Devices...)
		if page.NextCursor == "" {
			return all
		}
		cursor = page.NextCursor
	}
}

func TestConflict(t *testing.T) {
	e := newEnv(t)
	if code, b, _ := e.do("PUT", "/v1/devices/a", `{"stun_username":"same"}`); code != 201 {
		t.Fatalf("%d %s", code, b)
	}
	code, b, _ := e.do("PUT", "/v1/devices/b", `{"stun_username":"same"}`)
	if code != 409 {
		t.Fatalf("status %d: %s", code, b)
	}
	if ed := decodeErr(t, b); ed.Code != CodeConflict || ed.Field != "stun_username" {
		t.Fatalf("%+v", ed)
	}
	if _, ok := e.reg.Get("b"); ok {
		t.Fatal("conflicting device was stored")
	}
}

func TestPatch(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v1/devices/p1", goodDevice)
	code, b, _ := e.do("PATCH", "/v1/devices/p1", `{"username":"new-user","udp_address":null,"transports":["udp"]}`)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	d, _ := e.reg.Get("p1")
	if d.Username != "new-user" || d.UDPAddress != "" || d.Password != "s3cret-pass" || len(d.Transports) != 1 {
		t.Fatalf("patch result %+v", d)
	}
	// A failing patch changes nothing.
	code, _, _ = e.do("PATCH", "/v1/devices/p1", `{"username":"x","transports":["bogus"]}`)
	if code != 400 {
		t.Fatalf("status %d", code)
	}
	if d2, _ := e.reg.Get("p1"); d2.Username != "new-user" {
		t.Fatalf("failed patch changed the device: %+v", d2)
	}
}

func TestDeleteAndPagination(t *testing.T) {
	e := newEnv(t)
	for i := range 25 {
		if code, b, _ := e.do("PUT", fmt.Sprintf("/v1/devices/dev-%02d", i), `{}`); code != 201 {
			t.Fatalf("%d %s", code, b)
		}
	}
	if code, _, _ := e.do("DELETE", "/v1/devices/dev-03", ""); code != 204 {
		t.Fatalf("delete %d", code)
	}
	if code, _, _ := e.do("GET", "/v1/devices/dev-03", ""); code != 404 {
		t.Fatalf("deleted device answers %d", code)
	}
	all := listAll(t, e)
	if len(all) != 24 {
		t.Fatalf("listed %d devices, want 24", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].ID >= all[i].ID {
			t.Fatalf("not ascending: %s then %s", all[i-1].ID, all[i].ID)
		}
	}
}

func TestIDWithSlashAndSpaces(t *testing.T) {
	e := newEnv(t)
	id := "00259E/HG8245 48575443A1B2C3D4"
	p := "/v1/devices/" + url.PathEscape(id)
	if code, b, _ := e.do("PUT", p, `{}`); code != 201 {
		t.Fatalf("%d %s", code, b)
	}
	if _, ok := e.reg.Get(id); !ok {
		t.Fatal("device not stored under its id")
	}
	if code, _, _ := e.do("GET", p, ""); code != 200 {
		t.Fatalf("get %d", code)
	}
}

func TestWake(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v1/devices/w1", goodDevice)
	code, b, _ := e.do("POST", "/v1/devices/w1/connection-request", `{"transports":["http"],"timeout_ms":5000}`)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var res wake.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Status != wake.Delivered || res.Transport != registry.TransportHTTP || len(res.Attempts) != 1 || res.Attempts[0].HTTPStatus != 204 {
		t.Fatalf("result %+v", res)
	}
	if e.http.got[0] != "w1 s3cret-pass" {
		t.Fatalf("transport got %q", e.http.got)
	}
	// No body: the device's own order (http, udp); udp does not run here.
	e.http.out = wake.Attempt{Status: wake.AuthFailed, HTTPStatus: 401, Detail: "401 after digest"}
	code, b, _ = e.do("POST", "/v1/devices/w1/connection-request", "")
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	res = wake.Result{}
	json.Unmarshal(b, &res)
	if res.Status != wake.AuthFailed || len(res.Attempts) != 2 || res.Attempts[1].Status != wake.Offline {
		t.Fatalf("result %+v", res)
	}
	_, b, _ = e.do("GET", "/v1/devices/w1", "")
	var d Device
	json.Unmarshal(b, &d)
	if len(d.State.Wakes) != 2 || d.State.HTTP.Last == nil || d.State.HTTP.Last.Status != "auth_failed" {
		t.Fatalf("wakes not recorded: %s", b)
	}
	// A device with no usable transport is offline, not an error.
	e.do("PUT", "/v1/devices/w2", `{}`)
	_, b, _ = e.do("POST", "/v1/devices/w2/connection-request", "")
	res = wake.Result{}
	json.Unmarshal(b, &res)
	if res.Status != wake.Offline {
		t.Fatalf("result %+v", res)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v1/devices/secret-device-id", goodDevice)
	e.do("POST", "/v1/devices/secret-device-id/connection-request", "")
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(e.url + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, err, resp)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"crrelay_api_requests_total", "crrelay_wakes_total", `route="device"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	if bytes.Contains(b, []byte("secret-device-id")) {
		t.Fatal("a device id appears in metrics")
	}
}

func TestNotReady(t *testing.T) {
	s, err := New(Config{Token: "x", Registry: &registry.Registry{}, Waker: &wake.Waker{}, Ready: func() error { return errors.New("loading") }})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || decodeErr(t, rec.Body.Bytes()).Code != CodeUnavailable {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, c := range map[string]struct {
		cfg  Config
		want error
	}{
		"no token":    {Config{}, ErrNoToken},
		"no registry": {Config{Token: "x"}, ErrNoRegistry},
		"no waker":    {Config{Token: "x", Registry: &registry.Registry{}}, ErrNoWaker},
	} {
		if _, err := New(c.cfg); !errors.Is(err, c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestBindingInState(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v1/devices/b1", goodDevice)
	mapped := netip.MustParseAddrPort("203.0.113.9:40001")
	local := netip.MustParseAddrPort("192.0.2.1:3478")
	at := time.Now().Add(-time.Minute)
	for i, m := range []netip.AddrPort{mapped, mapped, netip.MustParseAddrPort("203.0.113.9:40777")} {
		if _, err := e.reg.ObserveBinding(registry.BindingObservation{STUNUsername: "stun-0001", Mapped: m, Local: local,
			At: at.Add(time.Duration(i) * 25 * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	code, b, _ := e.do("GET", "/v1/devices/b1", "")
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var d Device
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	bv := d.State.UDP.Binding
	if bv == nil || bv.Mapped != "203.0.113.9:40777" || bv.PreviousMapped != mapped.String() || bv.Local != local.String() ||
		bv.Changes != 1 || bv.RecommendedKeepaliveS <= 0 || bv.LastChange == nil {
		t.Fatalf("binding view %s", b)
	}
}

func TestBatchWake(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v1/devices/b1", goodDevice)
	e.do("PUT", "/v1/devices/b2", `{}`)
	code, b, _ := e.do("POST", "/v1/connection-requests", `{"devices":["b1","nope","b2"],"transports":["http"]}`)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var res BatchWakeResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 3 || res.Results[0].Device != "b1" || res.Results[1].Device != "nope" || res.Results[2].Device != "b2" {
		t.Fatalf("results out of order: %s", b)
	}
	if r := res.Results[0]; r.Result == nil || r.Status != wake.Delivered || r.Transport != registry.TransportHTTP || r.Error != nil {
		t.Fatalf("b1: %s", b)
	}
	if r := res.Results[1]; r.Result != nil || r.Error == nil || r.Error.Code != CodeNotFound {
		t.Fatalf("nope: %s", b)
	}
	if r := res.Results[2]; r.Result == nil || r.Status != wake.Offline {
		t.Fatalf("b2: %s", b)
	}
	if res.Counts["delivered"] != 1 || res.Counts["offline"] != 1 || res.Counts["not_found"] != 1 || len(res.Counts) != 3 {
		t.Fatalf("counts %v", res.Counts)
	}
	// The batch's wakes are recorded like single ones.
	_, b, _ = e.do("GET", "/v1/devices/b1", "")
	var d Device
	json.Unmarshal(b, &d)
	if len(d.State.Wakes) != 1 || d.State.Wakes[0].Status != "delivered" {
		t.Fatalf("wake not recorded: %s", b)
	}

	many := make([]string, wake.MaxBatch+1)
	for i := range many {
		many[i] = fmt.Sprintf("%q", fmt.Sprint("d", i))
	}
	for name, c := range map[string]struct {
		body  string
		code  int
		field string
	}{
		"no body":       {"", 400, ""},
		"no devices":    {`{"devices":[]}`, 400, "devices"},
		"devices null":  {`{"transports":["http"]}`, 400, "devices"},
		"duplicate":     {`{"devices":["b1","b1"]}`, 400, "devices"},
		"empty id":      {`{"devices":[""]}`, 400, "devices"},
		"long id":       {`{"devices":["` + strings.Repeat("x", registry.MaxIDLen+1) + `"]}`, 400, "devices"},
		"too many":      {`{"devices":[` + strings.Join(many, ",") + `]}`, 400, "devices"},
		"bad transport": {`{"devices":["b1"],"transports":["smoke"]}`, 400, "transports"},
		"bad timeout":   {`{"devices":["b1"],"timeout_ms":-1}`, 400, "timeout_ms"},
		"not a list":    {`{"devices":"b1"}`, 400, "devices"},
		"unknown field": {`{"devices":["b1"],"hurry":true}`, 400, ""},
	} {
		code, b, _ := e.do("POST", "/v1/connection-requests", c.body)
		if code != c.code {
			t.Errorf("%s: %d %s", name, code, b)
			continue
		}
		if d := decodeErr(t, b); d.Field != c.field {
			t.Errorf("%s: field %q, want %q (%s)", name, d.Field, c.field, b)
		}
	}
	big := `{"devices":["` + strings.Repeat("x", batchBodyBytes) + `"]}`
	if code, b, _ := e.do("POST", "/v1/connection-requests", big); code != 413 {
		t.Errorf("oversized body: %d %s", code, b)
	}
}

func TestXMPPSessionInState(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v1/devices/x1", `{"xmpp_jid":"cpe-x1@xmpp.example.net/cwmp","xmpp_password":"pw"}`)
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.reg.XMPPSessionUp(registry.XMPPSession{FullJID: "cpe-x1@xmpp.example.net/cwmp", Remote: "192.0.2.7:40000", TLS: true, Since: since})
	_, b, _ := e.do("GET", "/v1/devices/x1", "")
	var d Device
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	s := d.State.XMPP.Session
	if s == nil || !s.Online || s.FullJID != "cpe-x1@xmpp.example.net/cwmp" || s.Remote != "192.0.2.7:40000" || !s.TLS || !s.Since.Equal(since) || s.EndedAt != nil {
		t.Fatalf("session %s", b)
	}
	if !d.XMPPPasswordSet || strings.Contains(string(b), "scram") {
		t.Fatalf("XMPP credentials leak or are not set: %s", b)
	}
	e.reg.XMPPSessionDown("cpe-x1@xmpp.example.net/cwmp", since.Add(time.Minute), "read timeout")
	_, b, _ = e.do("GET", "/v1/devices/x1", "")
	d = Device{}
	json.Unmarshal(b, &d)
	if s := d.State.XMPP.Session; s == nil || s.Online || s.EndReason != "read timeout" || s.EndedAt == nil {
		t.Fatalf("ended session %s", b)
	}
}
