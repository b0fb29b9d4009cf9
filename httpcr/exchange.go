package httpcr

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxHeaderBytes caps a response's status line and header fields. CPE
// answers are a few hundred bytes.
const maxHeaderBytes = 16 << 10

// exchange is one connection request: at most one challenge round trip,
// one authenticated round trip and one retry after stale=true, over at most
// a few connections to one destination IP.
type exchange struct {
	c   *Client
	req Request
	t   *target

	ip          netip.Addr // destination chosen at the first connect
	releaseHost func()

	conn      net.Conn
	stopAfter func() bool // undoes the context.AfterFunc watching conn
	br        *bufio.Reader
	rd        capReader

	status int    // last status seen
	auth   string // scheme of the last Authorization sent
}

func (x *exchange) run(ctx context.Context) Result {
	err := x.do(ctx)
	x.closeConn()
	if x.releaseHost != nil {
		x.releaseHost()
	}
	r := Result{Outcome: Delivered, HTTPStatus: x.status, Auth: x.auth}
	if err != nil {
		var f *failure
		if !errors.As(err, &f) {
			f = fail(Error, ErrProtocol, nil, x.untrusted(err.Error())) // not reached: every step returns a failure
		}
		r.Outcome, r.Detail, r.Err = f.outcome, f.detail, f.err
	}
	return r
}

// do runs the exchange; it returns nil on delivery and a *failure otherwise.
func (x *exchange) do(ctx context.Context) error {
	t, err := parseTarget(x.req.URL)
	if err != nil {
		return failErr(Error, err, "")
	}
	x.t = t
	if hasCTL(x.req.Username) {
		return fail(Error, ErrBadUsername, nil, "username contains control characters")
	}

	ctx, cancel := context.WithTimeout(ctx, x.c.cfg.Timeout)
	defer cancel()
	if err := x.c.lim.acquire(ctx); err != nil {
		return ctxFail(ctx, err, "waiting for a free request slot")
	}
	defer x.c.lim.release()
	x.c.m.start()
	defer x.c.m.end()

	// PROTOCOL-NOTES 3: never send credentials before a challenge, and
	// never reuse one: every request starts unauthenticated.
	code, hdr, err := x.roundTrip(ctx, "")
	if err != nil {
		return err
	}
	if code != http.StatusUnauthorized {
		return x.final(code, hdr)
	}
	plan, err := x.plan(hdr)
	if err != nil {
		return err
	}
	for retried := false; ; retried = true {
		x.auth = plan.name
		authz := plan.authorization(x.req.Username, x.req.Password, http.MethodGet, x.t.uri, newCnonce())
		code, hdr, err = x.roundTrip(ctx, authz)
		if err != nil {
			return err
		}
		if code != http.StatusUnauthorized {
			return x.final(code, hdr)
		}
		// RFC 7616 3.3: stale=true means the nonce expired but the
		// credentials were right: retry once with the new nonce.
		if !retried && plan.alg != nil {
			if next, ok, _ := choosePlan(hdr.Values("WWW-Authenticate"), x.allowBasic()); ok && next.stale && next.alg != nil {
				plan = next
				continue
			}
		}
		return fail(AuthFailed, ErrAuth, nil, fmt.Sprintf("CPE rejected the credentials (%s, HTTP 401)", plan.name))
	}
}

func (x *exchange) allowBasic() bool { return x.c.cfg.AllowBasic || x.req.AllowBasic }

// plan picks how to answer the first 401.
func (x *exchange) plan(hdr http.Header) (authPlan, error) {
	fields := hdr.Values("WWW-Authenticate")
	if len(fields) == 0 {
		return authPlan{}, fail(AuthFailed, ErrNoScheme, nil, "CPE answered 401 without a WWW-Authenticate challenge")
	}
	if x.req.Username == "" && x.req.Password == "" {
		return authPlan{}, fail(AuthFailed, ErrNoCredentials, nil, "CPE requires authentication and the device has no credentials")
	}
	plan, ok, offered := choosePlan(fields, x.allowBasic())
	if ok {
		return plan, nil
	}
	desc := x.untrusted(describeOffers(offered))
	for _, o := range offered {
		if o == basicDisabled {
			return authPlan{}, fail(AuthFailed, ErrBasicDisabled, nil,
				"CPE offers no Digest, only Basic, which sends the password in clear text and is disabled for this device (offered: "+desc+")")
		}
	}
	return authPlan{}, fail(AuthFailed, ErrNoScheme, nil, "CPE offers no supported authentication scheme (offered: "+desc+")")
}

// final maps a status other than 401 to the result.
func (x *exchange) final(code int, hdr http.Header) error {
	switch {
	case code >= 200 && code <= 299:
		return nil
	case code == http.StatusServiceUnavailable:
		// PROTOCOL-NOTES 3: 503 is the CPE rate-limiting connection
		// requests; it is online.
		return fail(Throttled, ErrThrottled, nil, "CPE answered 503: it is rate-limiting connection requests")
	case code >= 300 && code <= 399:
		d := fmt.Sprintf("CPE answered %d %s; redirects are not followed", code, http.StatusText(code))
		if loc := hdr.Get("Location"); loc != "" {
			if u, err := url.Parse(loc); err == nil {
				loc = u.Redacted()
			}
			d += " (Location: " + x.untrusted(loc) + ")"
		}
		return fail(Error, ErrRedirect, nil, d)
	default:
		d := fmt.Sprintf("CPE answered HTTP %d", code)
		if s := http.StatusText(code); s != "" {
			d += " " + s
		}
		return fail(Error, ErrStatus, nil, d)
	}
}

// roundTrip sends one GET and reads the response header. It keeps the
// connection for a following request only after a 401 whose body was read
// to its end within the cap and that did not announce Connection: close.
func (x *exchange) roundTrip(ctx context.Context, authz string) (int, http.Header, error) {
	reused := x.conn != nil
	resp, err := x.send(ctx, authz)
	if err != nil && reused && x.rd.read == 0 && isClosed(err) {
		// The CPE closed the connection after its 401 without saying so.
		// It may expect the authenticated request on a new connection.
		x.closeConn()
		resp, err = x.send(ctx, authz)
	}
	if err != nil {
		return 0, nil, err
	}
	x.status = resp.StatusCode
	if resp.StatusCode != http.StatusUnauthorized || resp.Close || !x.drain(resp.Body) {
		x.closeConn()
	}
	return resp.StatusCode, resp.Header, nil
}

// send writes the request on the current connection, dialing if there is
// none, and reads the response header.
func (x *exchange) send(ctx context.Context, authz string) (*http.Response, error) {
	if x.conn == nil {
		if err := x.connect(ctx); err != nil {
			return nil, err
		}
	}
	phase := "the request"
	if authz != "" {
		phase = "the authenticated request"
	}

	b := make([]byte, 0, 160+len(authz))
	b = append(b, "GET "...)
	b = append(b, x.t.uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, x.t.hostHdr...)
	b = append(b, "\r\nUser-Agent: crrelay\r\n"...)
	if authz != "" {
		b = append(b, "Authorization: "...)
		b = append(b, authz...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)

	x.rd.n, x.rd.read = maxHeaderBytes, 0
	if _, err := x.conn.Write(b); err != nil {
		return nil, x.ioFail(ctx, err, "sending "+phase)
	}
	resp, err := http.ReadResponse(x.br, nil)
	if err != nil {
		return nil, x.ioFail(ctx, err, "reading the response to "+phase)
	}
	return resp, nil
}

// drain reads and discards a body up to the cap and reports whether it
// reached the body's end.
func (x *exchange) drain(body io.Reader) bool {
	max := x.c.cfg.MaxBodyBytes
	x.rd.n = max + 1024 // room for chunk framing
	n, err := io.Copy(io.Discard, io.LimitReader(body, max+1))
	return err == nil && n <= max
}

// connect opens a connection to the destination: on the first call it
// resolves the host, applies the policy and takes a per-host slot; later
// calls reuse that IP and slot.
func (x *exchange) connect(ctx context.Context) error {
	if x.ip.IsValid() {
		return x.dial(ctx, x.ip)
	}
	ips, err := x.resolve(ctx)
	if err != nil {
		return err
	}
	// Try the addresses in turn while they are unreachable.
	for _, ip := range ips {
		release, err := x.c.lim.acquireHost(ctx, ip)
		if err != nil {
			return ctxFail(ctx, err, "waiting for a free slot for "+ip.String())
		}
		if err = x.dial(ctx, ip); err == nil {
			x.ip, x.releaseHost = ip, release
			return nil
		}
		release()
		if f, ok := errors.AsType[*failure](err); !ok || f.outcome != Unreachable || ip == ips[len(ips)-1] {
			return err
		}
	}
	return fail(Unreachable, ErrUnreachable, nil, "no address to connect to") // not reached: resolve returns at least one
}

// resolve returns the destination IPs the policy allows, in resolver order.
func (x *exchange) resolve(ctx context.Context) ([]netip.Addr, error) {
	if ip := x.t.literal; ip.IsValid() {
		if err := x.c.cfg.Policy.Check(ip); err != nil {
			return nil, failErr(Error, err, "")
		}
		return []netip.Addr{ip}, nil
	}
	addrs, err := x.c.cfg.Resolver.LookupNetIP(ctx, "ip", x.t.host)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxFail(ctx, ctx.Err(), "resolving "+x.t.host)
		}
		return nil, fail(Unreachable, ErrUnreachable, err, "resolving "+strconv.Quote(x.t.host))
	}
	var ok []netip.Addr
	var denied error
	for _, a := range addrs {
		a = a.Unmap()
		if err := x.c.cfg.Policy.Check(a); err != nil {
			if denied == nil {
				denied = err
			}
			continue
		}
		ok = append(ok, a)
	}
	if len(ok) == 0 {
		if denied == nil {
			return nil, fail(Unreachable, ErrUnreachable, nil, "resolving "+strconv.Quote(x.t.host)+": no addresses")
		}
		return nil, failErr(Error, denied, x.t.host+": ")
	}
	return ok, nil
}

// control runs on every socket before connect: the policy on the address
// actually dialed, whatever resolution led there.
func (c *Client) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparseable dial address %q", ErrDenied, address)
	}
	return c.cfg.Policy.Check(ap.Addr())
}

func (x *exchange) dial(ctx context.Context, ip netip.Addr) error {
	addr := netip.AddrPortFrom(ip, x.t.port).String()
	conn, err := x.c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		switch {
		case errors.Is(err, ErrDenied):
			var oe *net.OpError
			if errors.As(err, &oe) {
				err = oe.Err // the policy's error, without the dial prefix
			}
			return failErr(Error, err, "connecting to "+addr+": ")
		case ctx.Err() != nil:
			return ctxFail(ctx, ctx.Err(), "connecting to "+addr)
		case isTimeout(err):
			return fail(Unreachable, ErrUnreachable, err,
				fmt.Sprintf("connecting to %s: no answer within %v", addr, x.c.cfg.ConnectTimeout))
		default:
			return fail(Unreachable, ErrUnreachable, err, "connecting to "+addr)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// Cancellation without a deadline change must interrupt I/O too.
	x.stopAfter = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	x.conn = conn

	if x.t.tls {
		cfg := x.c.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = x.t.host
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			x.closeConn()
			if ctx.Err() != nil || isTimeout(err) {
				return ctxFail(ctx, err, "TLS handshake with "+addr)
			}
			return fail(Error, ErrTLS, nil, "TLS handshake with "+addr+": "+x.untrusted(err.Error()))
		}
		x.conn = tc
	}
	x.rd.r = x.conn
	if x.br == nil {
		x.br = bufio.NewReaderSize(&x.rd, 4096)
	} else {
		x.br.Reset(&x.rd)
	}
	return nil
}

func (x *exchange) closeConn() {
	if x.conn == nil {
		return
	}
	x.stopAfter()
	x.conn.Close()
	x.conn = nil
}

// ioFail classifies an error of an established connection.
func (x *exchange) ioFail(ctx context.Context, err error, what string) error {
	switch {
	case ctx.Err() != nil || isTimeout(err):
		return ctxFail(ctx, err, what)
	case errors.Is(err, errTooLarge):
		return fail(Error, ErrProtocol, nil, what+": response header larger than "+strconv.Itoa(maxHeaderBytes)+" bytes")
	case isClosed(err):
		return fail(Error, ErrProtocol, err, what+": the CPE closed the connection")
	default:
		// http.ReadResponse errors quote the CPE's bytes.
		return fail(Error, ErrProtocol, nil, what+": "+x.untrusted(err.Error()))
	}
}

// ctxFail reports a context expiry (or an I/O timeout, which the context's
// deadline on the connection causes) while doing what.
func ctxFail(ctx context.Context, err error, what string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fail(Error, ErrCanceled, context.Canceled, "canceled while "+what)
	}
	return fail(Timeout, ErrTimeout, context.DeadlineExceeded, "deadline passed while "+what)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// isClosed reports whether err says the peer closed or reset the
// connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// untrusted makes text that came from the CPE fit for a detail: printable
// ASCII, at most 200 bytes, and never the password.
func (x *exchange) untrusted(s string) string {
	const max = 200
	if p := x.req.Password; p != "" {
		s = strings.ReplaceAll(s, p, "<password>")
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		if c := s[i]; c >= ' ' && c < 0x7f {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	if len(s) > max {
		b.WriteString("...")
	}
	return b.String()
}

// capReader bounds what is read from the connection per response (n) and
// counts it (read), so that a CPE cannot make the client buffer without
// end and a silent close can be told apart from a partial answer.
type capReader struct {
	r    io.Reader
	n    int64
	read int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	c.read += int64(n)
	return n, err
}
