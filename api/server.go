package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/wake"
)

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document of this API.
func OpenAPI() []byte { return openAPI }

// Registry is what the API needs of the device registry.
type Registry interface {
	Get(id string) (registry.Device, bool)
	Live(id string) (registry.Live, bool)
	Binding(id string) (registry.UDPBinding, bool)
	XMPPSession(id string) (registry.XMPPSession, bool)
	Put(ctx context.Context, d registry.Device) (registry.Device, bool, error)
	Update(ctx context.Context, id string, fn func(*registry.Device) error) (registry.Device, error)
	Delete(ctx context.Context, id string) error
	List(cursor string, limit int) ([]registry.Device, string)
}

// Waker is what the API needs of the wake path.
type Waker interface {
	Check(r wake.Request) error
	Wake(ctx context.Context, id string, r wake.Request) (wake.Result, error)
	WakeEach(ctx context.Context, ids []string, r wake.Request, conc int, done func(i int, res wake.Result, err error)) error
	Usable(d registry.Device, t registry.Transport) (enabled, usable bool, why string)
	MaxTimeout() time.Duration
	Inform(id string, events []string, at time.Time) (wake.Confirmation, error)
}

// EventStream serves the Server-Sent Events stream (events.Bus).
type EventStream interface {
	ServeSSE(w http.ResponseWriter, r *http.Request)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Events == nil {
		writeError(w, errf(http.StatusServiceUnavailable, CodeUnavailable, "the event stream is not enabled on this appliance"))
		return
	}
	s.cfg.Events.ServeSSE(w, r)
}

// Config configures the API server.
type Config struct {
	Token    string   // required: the bearer token the ACS presents
	Registry Registry // required
	Waker    Waker    // required
	// Campaigns runs bulk wakes; nil answers 503 on /v1/campaigns.
	Campaigns Campaigns
	// Events serves GET /v1/events; nil answers 503.
	Events EventStream
	// CheckURL vets a connection_request_url against the destination
	// policy at registration time. Nil accepts what the registry accepts.
	CheckURL func(raw string) error
	// Ready reports whether the appliance can serve; nil means always.
	Ready    func() error
	Gatherer prometheus.Gatherer   // serves /metrics; nil = no /metrics
	Metrics  prometheus.Registerer // nil registers nothing
	Logger   *slog.Logger          // nil discards
	// MaxBodyBytes caps request bodies. Defaults to 64 KiB. A batch wake
	// has its own cap, sized for wake.MaxBatch device ids.
	MaxBodyBytes int64
	// BatchConcurrency bounds the wakes of one batch request running at
	// once. Defaults to 256.
	BatchConcurrency int
	// ShutdownGrace is how long Serve waits for in-flight requests after
	// its context ends. Defaults to 10s.
	ShutdownGrace time.Duration
}

var (
	ErrNoToken    = errors.New("api: config: Token is required")
	ErrNoRegistry = errors.New("api: config: Registry is required")
	ErrNoWaker    = errors.New("api: config: Waker is required")
)

func (c *Config) validate() error {
	switch {
	case c.Token == "":
		return ErrNoToken
	case c.Registry == nil:
		return ErrNoRegistry
	case c.Waker == nil:
		return ErrNoWaker
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.BatchConcurrency <= 0 {
		c.BatchConcurrency = 256
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Server serves the API.
type Server struct {
	cfg       Config
	tokenHash [32]byte
	mux       *http.ServeMux
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

// route is one path of the API and the methods it serves. The OpenAPI test
// walks this table, so the document and the code cannot drift apart.
type route struct {
	pattern string // http.ServeMux pattern, without method
	name    string // metric label
	auth    bool
	methods map[string]http.HandlerFunc
}

func (s *Server) routes() []route {
	r := []route{
		{pattern: "/healthz", name: "healthz", methods: map[string]http.HandlerFunc{"GET": s.healthz}},
		{pattern: "/readyz", name: "readyz", methods: map[string]http.HandlerFunc{"GET": s.readyz}},
		{pattern: "/v1/openapi.yaml", name: "openapi", methods: map[string]http.HandlerFunc{"GET": s.openapi}},
		{pattern: "/v1/devices", name: "devices", auth: true, methods: map[string]http.HandlerFunc{"GET": s.listDevices}},
		{pattern: "/v1/devices/{id}", name: "device", auth: true, methods: map[string]http.HandlerFunc{
			"GET": s.getDevice, "PUT": s.putDevice, "PATCH": s.patchDevice, "DELETE": s.deleteDevice,
		}},
		{pattern: "/v1/devices/{id}/connection-request", name: "connection_request", auth: true, methods: map[string]http.HandlerFunc{"POST": s.wake}},
		{pattern: "/v1/devices/{id}/inform", name: "inform", auth: true, methods: map[string]http.HandlerFunc{"POST": s.inform}},
		{pattern: "/v1/connection-requests", name: "connection_requests", auth: true, methods: map[string]http.HandlerFunc{"POST": s.batchWake}},
		{pattern: "/v1/events", name: "events", auth: true, methods: map[string]http.HandlerFunc{"GET": s.events}},
		{pattern: "/v1/campaigns", name: "campaigns", auth: true, methods: map[string]http.HandlerFunc{"GET": s.listCampaigns, "POST": s.startCampaign}},
		{pattern: "/v1/campaigns/{id}", name: "campaign", auth: true, methods: map[string]http.HandlerFunc{"GET": s.getCampaign, "DELETE": s.cancelCampaign}},
	}
	if s.cfg.Gatherer != nil {
		h := promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{})
		r = append(r, route{pattern: "/metrics", name: "metrics", methods: map[string]http.HandlerFunc{"GET": h.ServeHTTP}})
	}
	return r
}

// New builds the API server.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		tokenHash: sha256.Sum256([]byte(cfg.Token)),
		mux:       http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crrelay_api_requests_total",
			Help: "API requests by route, method and HTTP status.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crrelay_api_request_duration_seconds",
			Help:    "API request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"route"}),
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{s.requests, s.latency} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("api: register metrics: %w", err)
			}
		}
	}
	for _, rt := range s.routes() {
		s.mux.Handle(rt.pattern, s.wrap(rt))
	}
	s.mux.Handle("/", s.wrap(route{name: "unknown"}))
	return s, nil
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// serveHTTP answers paths with empty, "." or ".." segments itself: the
// mux would redirect them with an HTML body, and an ACS deserves JSON.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	if strings.Contains(p, "//") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") ||
		strings.Contains(p, "/./") || strings.Contains(p, "/../") {
		writeError(w, errf(http.StatusNotFound, CodeNotFound, "no such endpoint: %s (empty, \".\" or \"..\" path segment)", p))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Serve serves the API on ln (already bound) until ctx ends, then waits up
// to ShutdownGrace for in-flight requests. tlsCfg, when not nil, makes it
// HTTPS (and mTLS if tlsCfg demands client certificates). It returns nil
// after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if tlsCfg != nil {
		hs.TLSConfig = tlsCfg
		ln = tls.NewListener(ln, tlsCfg)
	}
	ln = &onceCloser{Listener: ln}
	// Shutdown waits for connections that have not sent a request yet
	// (an HTTP client's spare connection) for 5 s before it counts them
	// idle; nothing is lost closing them at once.
	fresh := newConnSet()
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			fresh.add(c)
		} else {
			fresh.remove(c)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
			return nil
		}
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownGrace)
	defer cancel()
	hs.SetKeepAlivesEnabled(false)
	// Stop accepting first, so that no new connection slips in behind.
	ln.Close()
	fresh.closeAll()
	// Shutdown closes the listener again: that second close is not an
	// error (onceCloser).
	err := hs.Shutdown(sctx)
	<-errc
	if err != nil {
		_ = hs.Close()
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return nil
}

// onceCloser is a listener that closes once; later calls return nil.
type onceCloser struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloser) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// connSet is the connections in some state, for Serve's shutdown.
type connSet struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func newConnSet() *connSet { return &connSet{m: map[net.Conn]struct{}{}} }

func (c *connSet) add(n net.Conn) {
	c.mu.Lock()
	c.m[n] = struct{}{}
	c.mu.Unlock()
}

func (c *connSet) remove(n net.Conn) {
	c.mu.Lock()
	delete(c.m, n)
	c.mu.Unlock()
}

func (c *connSet) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n := range c.m {
		n.Close()
	}
	clear(c.m)
}

// statusWriter records the status for metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap adds what every route shares: panic recovery, metrics, auth,
// method dispatch with a JSON 405, and a JSON 404 for unknown paths.
func (s *Server) wrap(rt route) http.Handler {
	allow := make([]string, 0, len(rt.methods))
	for m := range rt.methods {
		allow = append(allow, m)
	}
	allowHdr := strings.Join(sortStrings(allow), ", ")
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := &statusWriter{ResponseWriter: rw}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.cfg.Logger.Error("api: handler panic", "route", rt.name, "panic", p)
				if w.status == 0 {
					writeError(w, errf(http.StatusInternalServerError, CodeInternal, "internal error"))
				}
			}
			s.requests.WithLabelValues(rt.name, metricMethod(r.Method), strconv.Itoa(w.status)).Inc()
			s.latency.WithLabelValues(rt.name).Observe(time.Since(start).Seconds())
		}()
		if rt.methods == nil {
			writeError(w, errf(http.StatusNotFound, CodeNotFound, "no such endpoint: %s", r.URL.Path))
			return
		}
		if rt.auth && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="crrelay"`)
			writeError(w, errf(http.StatusUnauthorized, CodeUnauthorized, "missing or invalid bearer token"))
			return
		}
		h, ok := rt.methods[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = rt.methods[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", allowHdr)
			writeError(w, errf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method %s not allowed here; allowed: %s", r.Method, allowHdr))
			return
		}
		h(w, r)
	})
}

func metricMethod(m string) string {
	switch m {
	case "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS":
		return m
	}
	return "other" // bounded label values whatever a client sends
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

// authorized compares the bearer token in constant time. Hashing both
// sides first makes the comparison independent of the token's length too.
func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(prefix):])))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			writeError(w, errf(http.StatusServiceUnavailable, CodeUnavailable, "not ready: %v", err))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPI)
}

// deviceID reads and checks the {id} path segment.
func deviceID(r *http.Request) (string, *apiError) {
	id := r.PathValue("id")
	return id, checkDeviceID(id)
}

// checkDeviceID vets a device id from a path or a body.
func checkDeviceID(id string) *apiError {
	if id == "" {
		return fieldErr("id", "device id is empty")
	}
	if id == "." || id == ".." {
		// URL path cleaning would make such a device unreachable.
		return fieldErr("id", "device id may not be %q", id)
	}
	if len(id) > registry.MaxIDLen {
		return fieldErr("id", "device id longer than %d bytes", registry.MaxIDLen)
	}
	return nil
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "limit" && k != "cursor" {
			writeError(w, errf(http.StatusBadRequest, CodeBadRequest, "unknown query parameter %q", k))
			return
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, fieldErr("limit", "limit must be an integer from 1 to 1000"))
			return
		}
		limit = n
	}
	devs, next := s.cfg.Registry.List(q.Get("cursor"), limit)
	out := DeviceList{Devices: make([]Device, 0, len(devs)), NextCursor: next}
	for _, d := range devs {
		out.Devices = append(out.Devices, deviceView(d))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) {
	id, aerr := deviceID(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	d, ok := s.cfg.Registry.Get(id)
	if !ok {
		writeError(w, errf(http.StatusNotFound, CodeNotFound, "device %q not found", id))
		return
	}
	live, _ := s.cfg.Registry.Live(id)
	v := deviceView(d)
	v.State = s.state(d, live)
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) state(d registry.Device, live registry.Live) *State {
	st := &State{Wakes: live.Wakes}
	if st.Wakes == nil {
		st.Wakes = []registry.WakeRecord{}
	}
	last := func(t registry.Transport) *registry.WakeRecord {
		for i := len(live.Wakes) - 1; i >= 0; i-- {
			if live.Wakes[i].Transport == string(t) {
				rec := live.Wakes[i]
				return &rec
			}
		}
		return nil
	}
	st.HTTP.Enabled, st.HTTP.Usable, st.HTTP.Reason = s.cfg.Waker.Usable(d, registry.TransportHTTP)
	st.HTTP.Last = last(registry.TransportHTTP)
	st.XMPP.Enabled, st.XMPP.Usable, st.XMPP.Reason = s.cfg.Waker.Usable(d, registry.TransportXMPP)
	st.XMPP.Last = last(registry.TransportXMPP)
	if ses, ok := s.cfg.Registry.XMPPSession(d.ID); ok {
		st.XMPP.Session = sessionView(ses)
	}
	st.UDP.Enabled, st.UDP.Usable, st.UDP.Reason = s.cfg.Waker.Usable(d, registry.TransportUDP)
	st.UDP.Last = last(registry.TransportUDP)
	if b, ok := s.cfg.Registry.Binding(d.ID); ok {
		st.UDP.Binding = bindingView(b)
	}
	return st
}

// readDevice reads the id and the JSON fields of a PUT or PATCH, answering
// the error itself when either is bad.
func (s *Server) readDevice(w http.ResponseWriter, r *http.Request) (string, map[string]json.RawMessage, bool) {
	id, aerr := deviceID(r)
	var fields map[string]json.RawMessage
	if aerr == nil {
		fields, aerr = s.readFields(w, r)
	}
	if aerr != nil {
		writeError(w, aerr)
		return "", nil, false
	}
	return id, fields, true
}

func (s *Server) putDevice(w http.ResponseWriter, r *http.Request) {
	id, fields, ok := s.readDevice(w, r)
	if !ok {
		return
	}
	d := registry.Device{ID: id}
	if aerr := s.apply(&d, fields); aerr != nil {
		writeError(w, aerr)
		return
	}
	saved, created, err := s.cfg.Registry.Put(r.Context(), d)
	if err != nil {
		s.fail(w, "put device", err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.cfg.Logger.Info("device saved", "device", id, "created", created)
	writeJSON(w, status, deviceView(saved))
}

func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request) {
	id, fields, ok := s.readDevice(w, r)
	if !ok {
		return
	}
	saved, err := s.cfg.Registry.Update(r.Context(), id, func(d *registry.Device) error {
		if aerr := s.apply(d, fields); aerr != nil {
			return aerr
		}
		return nil
	})
	if err != nil {
		s.fail(w, "patch device", err)
		return
	}
	s.cfg.Logger.Info("device updated", "device", id)
	writeJSON(w, http.StatusOK, deviceView(saved))
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request) {
	id, aerr := deviceID(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if err := s.cfg.Registry.Delete(r.Context(), id); err != nil {
		s.fail(w, "delete device", err)
		return
	}
	s.cfg.Logger.Info("device deleted", "device", id)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) wake(w http.ResponseWriter, r *http.Request) {
	id, aerr := deviceID(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var body WakeRequest
	if aerr := s.readJSON(w, r, &body, true); aerr != nil {
		writeError(w, aerr)
		return
	}
	req, aerr := s.wakeRequest(r, body.options())
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	res, err := s.cfg.Waker.Wake(r.Context(), id, req)
	if err != nil {
		s.fail(w, "wake", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// wakeRequest checks and converts the wake options of a request body, and
// names who asked, for the audit log.
func (s *Server) wakeRequest(r *http.Request, o wakeOptions) (wake.Request, *apiError) {
	// Range-check before converting: a huge value would overflow the
	// Duration and slip past the waker's own check.
	if maxMS := s.cfg.Waker.MaxTimeout().Milliseconds(); o.TimeoutMS < 0 || o.TimeoutMS > maxMS {
		return wake.Request{}, fieldErr("timeout_ms", "timeout_ms must be from 1 to %d (0 or absent: the default)", maxMS)
	}
	req := wake.Request{
		Transports: o.Transports, Strategy: o.Strategy, Wait: o.Wait,
		Timeout: time.Duration(o.TimeoutMS) * time.Millisecond,
		Origin:  s.origin(r),
	}
	if !req.Strategy.Valid() {
		return wake.Request{}, fieldErr("strategy", "strategy must be sequential or parallel, not %q", o.Strategy)
	}
	if !req.Wait.Valid() {
		return wake.Request{}, fieldErr("wait", "wait must be delivered or confirmed, not %q", o.Wait)
	}
	if err := s.cfg.Waker.Check(req); err != nil {
		return wake.Request{}, toAPIError(err)
	}
	return req, nil
}

// origin names the caller of a request in audit lines: which API token
// (by fingerprint, never the token) from which address.
func (s *Server) origin(r *http.Request) string {
	return "api token=sha256:" + hex.EncodeToString(s.tokenHash[:4]) + " remote=" + r.RemoteAddr
}

// inform records that a CPE's Inform reached the ACS: with "6 CONNECTION
// REQUEST" among its events, it confirms the device's pending or latest
// wake.
func (s *Server) inform(w http.ResponseWriter, r *http.Request) {
	id, aerr := deviceID(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var body InformRequest
	if aerr := s.readJSON(w, r, &body, false); aerr != nil {
		writeError(w, aerr)
		return
	}
	at := time.Now()
	if body.At != nil {
		if d := body.At.Sub(at); d > time.Minute || d < -time.Hour {
			writeError(w, fieldErr("at", "at must be within the last hour (and not in the future); absent means now"))
			return
		}
		at = *body.At
	}
	c, err := s.cfg.Waker.Inform(id, body.Events, at)
	switch {
	case errors.Is(err, wake.ErrBadRequest):
		writeError(w, fieldErr("events", "%v", strings.TrimPrefix(err.Error(), wake.ErrBadRequest.Error()+": ")))
		return
	case err != nil:
		s.fail(w, "inform", err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) fail(w http.ResponseWriter, op string, err error) {
	e := toAPIError(err)
	if e.status >= 500 {
		s.cfg.Logger.Error("api: "+op, "err", err)
	}
	writeError(w, e)
}

// readJSON decodes one JSON value from the body, strictly: unknown fields,
// trailing data and oversized bodies are errors. With optional, an empty
// body leaves v untouched.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any, optional bool) *apiError {
	return s.readJSONMax(w, r, v, optional, s.cfg.MaxBodyBytes)
}

// readJSONMax is readJSON with a body cap of its own.
func (s *Server) readJSONMax(w http.ResponseWriter, r *http.Request, v any, optional bool, limit int64) *apiError {
	body, aerr := s.readBody(w, r, limit)
	if aerr != nil {
		return aerr
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return nil
		}
		return errf(http.StatusBadRequest, CodeBadRequest, "request body is empty; a JSON object is required")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errf(http.StatusBadRequest, CodeBadRequest, "trailing data after the JSON object")
	}
	return nil
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apiError) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, errf(http.StatusUnsupportedMediaType, CodeBadRequest, "Content-Type must be application/json, not %q", ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body larger than %d bytes", limit)
		}
		return nil, errf(http.StatusBadRequest, CodeBadRequest, "reading request body: %v", err)
	}
	// encoding/json would silently turn invalid UTF-8 into U+FFFD, storing
	// a password other than the one sent.
	if !utf8.Valid(body) {
		return nil, errf(http.StatusBadRequest, CodeBadRequest, "request body is not valid UTF-8")
	}
	return body, nil
}

func jsonType(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	}
	return "a " + k.String()
}

func jsonError(err error) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return errf(http.StatusBadRequest, CodeBadRequest, "malformed JSON at offset %d: %v", se.Offset, err)
	case errors.As(err, &te) && te.Field == "":
		return errf(http.StatusBadRequest, CodeBadRequest, "request body must be a JSON object, not JSON %s", te.Value)
	case errors.As(err, &te):
		e := errf(http.StatusBadRequest, CodeInvalidArgument, "%s must be %s, not JSON %s", te.Field, jsonType(te.Type.Kind()), te.Value)
		e.Field = te.Field
		return e
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errf(http.StatusBadRequest, CodeBadRequest, "truncated JSON")
	}
	// json: unknown field "x" and the like.
	return errf(http.StatusBadRequest, CodeBadRequest, "%v", err)
}
