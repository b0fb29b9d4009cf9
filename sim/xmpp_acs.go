package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// XMPPACS is the ACS's end of Annex K as an XMPP client: it logs in to
// the broker with an ACS account and sends connectionRequest IQs to CPEs'
// full JIDs, as an ACS that speaks XMPP itself does. Tests of the broker
// and the bench's load tool use it to wake simulated CPEs through a
// server. It is safe for concurrent use: requests are pipelined on one
// stream and their answers matched by id.

// ErrXMPPACSClosed: the ACS's session has ended (Close, or the stream
// dropped); Err says why.
var ErrXMPPACSClosed = errors.New("sim: XMPP ACS session closed")

// XMPPACSConfig describes the ACS's XMPP client. The fields mean what
// they mean in XMPPCPEConfig.
type XMPPACSConfig struct {
	Server, Domain     string // required
	Username, Password string // the ACS account; Username is required
	// Resource defaults to "acs".
	Resource  string
	DirectTLS bool
	UseTLS    bool
	TLSConfig *tls.Config
	Mechanism XMPPMechanism
	Dial      func(ctx context.Context, network, address string) (net.Conn, error)
	MaxStanza int
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// XMPPIQResult is the answer to an IQ request.
type XMPPIQResult struct {
	// Type is "result" or "error".
	Type string
	// From is who answered: the CPE, or the server when it answered for
	// an unavailable one.
	From string
	// Condition and ErrorType are an error's defined condition, as
	// spelt (not-autorized included), and its type attribute.
	Condition, ErrorType string
	// Echo reports that the error carried the request back, as a
	// widespread agent answers.
	Echo bool
}

// OK reports whether the request was answered with a result.
func (r XMPPIQResult) OK() bool { return r.Type == "result" }

// XMPPACS is a logged-in ACS session.
type XMPPACS struct {
	st  *xmppStream
	log *slog.Logger
	seq atomic.Uint64

	wmu  sync.Mutex
	wbuf []byte        // stanzas waiting for the writer
	wsig chan struct{} // wakes the writer

	pmu     sync.Mutex
	pending map[string]chan XMPPIQResult
	pipe    *pipeline // the running Pipeline, if any; under pmu

	done      chan struct{} // closed when the session ends
	closeOnce sync.Once
	err       error // why it ended; set before done is closed
	wg        sync.WaitGroup
}

// DialXMPPACS logs in and binds, and returns the session.
func DialXMPPACS(ctx context.Context, cfg XMPPACSConfig) (*XMPPACS, error) {
	if cfg.Server == "" {
		return nil, ErrNoXMPPServer
	}
	if cfg.Domain == "" {
		return nil, ErrBadXMPPDomain
	}
	if cfg.Username == "" {
		return nil, ErrBadXMPPAccount
	}
	if cfg.Resource == "" {
		cfg.Resource = "acs"
	}
	if cfg.Mechanism == "" {
		cfg.Mechanism = MechSCRAMSHA1
	}
	if !cfg.Mechanism.Valid() {
		return nil, fmt.Errorf("%w %q", ErrUnknownMechanism, cfg.Mechanism)
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = &tls.Config{ServerName: cfg.Domain, MinVersion: tls.VersionTLS12}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := openXMPP(ctx, &xmppLogin{
		server: cfg.Server, domain: cfg.Domain,
		user: cfg.Username, pass: cfg.Password, resource: cfg.Resource,
		directTLS: cfg.DirectTLS, useTLS: cfg.UseTLS, tls: cfg.TLSConfig,
		mech: cfg.Mechanism, dial: cfg.Dial, maxStanza: cfg.MaxStanza,
	})
	if err != nil {
		return nil, err
	}
	a := &XMPPACS{
		st:      st,
		log:     cfg.Logger,
		wsig:    make(chan struct{}, 1),
		pending: make(map[string]chan XMPPIQResult),
		done:    make(chan struct{}),
	}
	a.wg.Add(2)
	go a.reader()
	go a.writer()
	return a, nil
}

// JID returns the full JID the server bound.
func (a *XMPPACS) JID() string { return a.st.jid }

// Close ends the stream and waits for the session's goroutines.
func (a *XMPPACS) Close() error {
	a.end(nil)
	a.wg.Wait()
	return nil
}

// Err returns why the session ended, or nil while it runs or after Close.
func (a *XMPPACS) Err() error {
	select {
	case <-a.done:
		return a.err
	default:
		return nil
	}
}

func (a *XMPPACS) end(err error) {
	a.closeOnce.Do(func() {
		a.err = err
		close(a.done)
		a.st.conn.SetWriteDeadline(time.Now().Add(time.Second))
		a.st.write([]byte("</stream:stream>"))
		a.st.conn.Close()
	})
}

// ConnectionRequest sends a connectionRequest IQ (TR-069 Annex K) to the
// CPE's full JID to, and returns the answer. An error is returned only
// when there is no answer: ctx ended, or the session did.
func (a *XMPPACS) ConnectionRequest(ctx context.Context, to, username, password string) (XMPPIQResult, error) {
	bp := bufPool.Get().(*[]byte)
	p := append((*bp)[:0], "<connectionRequest xmlns='"+nsConnReq+"'><username>"...)
	p = appendEscaped(p, username)
	p = append(p, "</username><password>"...)
	p = appendEscaped(p, password)
	p = append(p, "</password></connectionRequest>"...)
	r, err := a.iq(ctx, "get", to, p)
	*bp = p
	bufPool.Put(bp)
	return r, err
}

// iq sends an IQ request with payload and waits for its answer.
func (a *XMPPACS) iq(ctx context.Context, typ, to string, payload []byte) (XMPPIQResult, error) {
	id := "cr" + strconv.FormatUint(a.seq.Add(1), 36)
	ch := make(chan XMPPIQResult, 1)
	a.pmu.Lock()
	a.pending[id] = ch
	a.pmu.Unlock()

	a.wmu.Lock()
	b := append(a.wbuf, "<iq type='"...)
	b = append(b, typ...)
	b = append(b, "' id='"...)
	b = append(b, id...)
	b = append(b, "' to='"...)
	b = appendEscaped(b, to)
	b = append(b, "'>"...)
	b = append(b, payload...)
	a.wbuf = append(b, "</iq>"...)
	a.wmu.Unlock()
	a.signalWriter()

	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		a.pmu.Lock()
		delete(a.pending, id)
		a.pmu.Unlock()
		return XMPPIQResult{}, ctx.Err()
	case <-a.done:
		return XMPPIQResult{}, fmt.Errorf("%w: %v", ErrXMPPACSClosed, a.err)
	}
}

// writer writes what requests queued, all at once: under load, many
// requests share one TLS record and one system call.
func (a *XMPPACS) writer() {
	defer a.wg.Done()
	var out []byte
	for {
		select {
		case <-a.wsig:
		case <-a.done:
			return
		}
		a.wmu.Lock()
		out, a.wbuf = a.wbuf, out[:0]
		a.wmu.Unlock()
		if len(out) == 0 {
			continue
		}
		if err := a.st.write(out); err != nil {
			a.end(err)
			return
		}
		if cap(out) > 64<<10 {
			out = nil // do not keep a burst's buffer
		}
	}
}

// reader delivers answers to the requests waiting for them.
func (a *XMPPACS) reader() {
	defer a.wg.Done()
	for {
		e, err := a.st.readElement()
		if err != nil {
			a.end(err)
			return
		}
		if !e.is(nsClient, "iq") {
			continue
		}
		typ := e.attr("type")
		if typ != "result" && typ != "error" {
			if typ == "get" || typ == "set" {
				a.refuse(e)
			}
			continue
		}
		id := e.attr("id")
		a.pmu.Lock()
		ch, ok := a.pending[id]
		delete(a.pending, id)
		pipe := a.pipe
		a.pmu.Unlock()
		if !ok {
			if pipe != nil {
				pipe.answer(id, e, typ)
			} // else an answer after its request gave up
			a.st.rd.release()
			continue
		}
		ch <- iqResult(e, typ)
		a.st.rd.release()
	}
}

// iqResult reads the answer e, of type typ, to an IQ request.
func iqResult(e *element, typ string) XMPPIQResult {
	r := XMPPIQResult{Type: typ, From: e.attr("from")}
	if typ == "error" {
		r.Condition = stanzaCondition(e)
		if er := e.child(nsClient, "error"); er != nil {
			r.ErrorType = er.attr("type")
		}
		r.Echo = e.child(nsConnReq, "connectionRequest") != nil
	}
	return r
}

// refuse answers an IQ request to the ACS service-unavailable (RFC 6120
// 8.4).
func (a *XMPPACS) refuse(iq *element) {
	a.wmu.Lock()
	b := append(a.wbuf, "<iq type='error' id='"...)
	b = appendEscaped(b, iq.attr("id"))
	if from := iq.attr("from"); from != "" {
		b = append(b, "' to='"...)
		b = appendEscaped(b, from)
	}
	a.wbuf = append(b, "'><error type='cancel'><service-unavailable xmlns='"+nsStanzas+"'/></error></iq>"...)
	a.wmu.Unlock()
	a.signalWriter()
}

// signalWriter wakes the writer to send what is queued.
func (a *XMPPACS) signalWriter() {
	select {
	case a.wsig <- struct{}{}:
	default:
	}
}
