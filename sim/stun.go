package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/crrelay/crrelay/stun"
)

// Defaults of STUNCPEConfig.
const (
	// DefaultSTUNKeepalive is a common STUNMinimumKeepAlivePeriod.
	DefaultSTUNKeepalive = 30 * time.Second
	// DefaultSTUNRetransmitTimeout is RFC 3489 9.3's first retransmission
	// interval.
	DefaultSTUNRetransmitTimeout = 100 * time.Millisecond
	// DefaultSTUNMaxRetransmits makes nine requests in all (RFC 3489 9.3).
	DefaultSTUNMaxRetransmits = 8
)

const (
	// rtoCapFactor caps the retransmission interval at 16 times the
	// first: 100 ms doubling to 1.6 s in RFC 3489 9.3.
	rtoCapFactor = 16
	// maxBackoffShift caps the wait after repeated error answers at
	// 8 keepalive periods.
	maxBackoffShift = 3
	// readBufferSize holds any STUN message Decode accepts, and any UDP
	// connection request an ACS sends (about 200 bytes).
	readBufferSize = 2048
)

var (
	// Configuration errors of NewSTUNCPE and NewSTUNFleet.
	ErrNoSTUNServer  = errors.New("sim: STUN server address is not set")
	ErrBadSTUNTimers = errors.New("sim: STUN keepalive, retransmission timeout and retransmissions must not be negative")

	// ErrSTUNBusy: Run or BindOnce was called while the CPE already runs
	// one of them. A CPE has one STUN client.
	ErrSTUNBusy = errors.New("sim: STUN CPE is already running")
	// ErrSTUNTimeout: no answer to a Binding Request and its
	// retransmissions.
	ErrSTUNTimeout = errors.New("sim: no answer to the Binding Request")
)

// STUNError is a STUN error response (ERROR-CODE, RFC 3489 11.2.9) that
// ended a binding exchange.
type STUNError struct {
	// Code is the error code, or 0 when ERROR-CODE was not the first
	// attribute: the CPE then cannot read it, as some agents cannot.
	Code   int
	Reason string
}

func (e *STUNError) Error() string {
	if e.Code == 0 {
		return "sim: STUN error response without a leading ERROR-CODE"
	}
	return "sim: STUN error " + strconv.Itoa(e.Code) + " " + e.Reason
}

// STUNCPEConfig describes the TR-111 STUN client (TR-069 Annex G) of one
// simulated CPE and the UDP connection-request listener sharing its
// socket. The names follow Device.ManagementServer.
type STUNCPEConfig struct {
	// Name is the device id: 1-128 characters of A-Z a-z 0-9 . _ ~ -.
	Name string
	// STUNUsername and STUNPassword authenticate Binding Requests. An
	// empty STUNUsername sends no USERNAME; an empty STUNPassword cannot
	// answer a 401.
	STUNUsername, STUNPassword string
	// CRUsername and CRPassword are the ConnectionRequestUsername and
	// ConnectionRequestPassword UDP connection requests are checked with.
	CRUsername, CRPassword string
	// Server is the relay's STUN address. Required.
	Server netip.AddrPort
	// Keepalive is the time between the end of one binding exchange and
	// the next Binding Request, as STUNMinimumKeepAlivePeriod. Defaults to
	// DefaultSTUNKeepalive (30s).
	Keepalive time.Duration
	// RFC5389 sends RFC 5389 requests (magic cookie, USERNAME padded with
	// zeros, unpadded MESSAGE-INTEGRITY, FINGERPRINT) and reads
	// XOR-MAPPED-ADDRESS. The default is classic RFC 3489, as deployed
	// TR-111 agents send.
	RFC5389 bool
	// RetransmitTimeout is the first retransmission interval of an
	// unanswered request; it doubles up to 16 times its first value (RFC
	// 3489 9.3). Defaults to DefaultSTUNRetransmitTimeout (100ms).
	RetransmitTimeout time.Duration
	// MaxRetransmits is how many times an unanswered request is sent
	// again. Defaults to DefaultSTUNMaxRetransmits (8); negative means
	// never.
	MaxRetransmits int
	// OnWake, if set, is called each time the CPE accepts a UDP
	// connection request, on the goroutine reading the socket. It must
	// not block.
	OnWake func(name string, at time.Time)
	// OnBinding, if set, is called after every successful binding
	// exchange with the mapped address learnt. It must not block.
	OnBinding func(name string, mapped netip.AddrPort, at time.Time)
	// Logger defaults to discarding.
	Logger *slog.Logger
}

func (c STUNCPEConfig) withDefaults() STUNCPEConfig {
	if c.Keepalive == 0 {
		c.Keepalive = DefaultSTUNKeepalive
	}
	if c.RetransmitTimeout == 0 {
		c.RetransmitTimeout = DefaultSTUNRetransmitTimeout
	}
	switch {
	case c.MaxRetransmits == 0:
		c.MaxRetransmits = DefaultSTUNMaxRetransmits
	case c.MaxRetransmits < 0:
		c.MaxRetransmits = 0
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c STUNCPEConfig) validate() error {
	switch {
	case !validName(c.Name):
		return ErrBadName
	case !c.Server.IsValid():
		return ErrNoSTUNServer
	case c.Keepalive < 0 || c.RetransmitTimeout < 0:
		return ErrBadSTUNTimers
	}
	return nil
}

// STUNCounters is a snapshot of what a STUN CPE (or a STUN fleet) has
// sent and seen.
type STUNCounters struct {
	Requests        uint64 // Binding Requests sent, retransmissions included
	Retransmits     uint64 // of which retransmissions
	SendErrors      uint64 // sends the socket refused
	Responses       uint64 // success responses accepted
	Unauthorized    uint64 // 401 error responses
	IntegrityErrors uint64 // 431 error responses
	ErrorResponses  uint64 // other error responses, unreadable ones included
	Timeouts        uint64 // exchanges abandoned: no answer to a request and its retransmissions
	Mismatched      uint64 // responses with a transaction id the CPE never used: ignored
	Late            uint64 // responses to an earlier request (answered, abandoned, or before a 401): ignored
	Ignored         uint64 // other STUN messages ignored: not a Binding response, no mapped address, wrong MESSAGE-INTEGRITY
	BindingChanges  uint64 // requests sent with BINDING-CHANGE (each transaction once)
	AddressChanges  uint64 // times a response's mapped address differed from the one before

	CRAccepted uint64       // UDP connection requests accepted: wakes
	CRRejected CRRejections // UDP connection requests dropped, by reason

	Mapped      netip.AddrPort // last mapped address; zero before the first binding
	LastBinding time.Time      // when it was learnt
	LastCR      time.Time      // when the last connection request was accepted
	LastCRFrom  netip.AddrPort // and where it came from
}

// CRRejections counts the datagrams a STUN CPE's connection-request
// listener dropped, by reason. There is no reply to any of them (TR-069
// Annex G), as to an accepted one.
type CRRejections struct {
	// Malformed: neither a STUN message nor a well-formed UDP connection
	// request, or a ts that does not fit the 32 bits agents read it into
	// (an ACS sending milliseconds).
	Malformed uint64
	// WrongUsername: un is not the ConnectionRequestUsername.
	WrongUsername uint64
	// BadSignature: sig is not HMAC-SHA1(ConnectionRequestPassword, ts id un cn).
	BadSignature uint64
	// Duplicate: an id seen before, as the ACS's retransmitted copies.
	Duplicate uint64
	// Stale: ts not greater than the last accepted one, as a second
	// request within the same second.
	Stale uint64
}

// Total returns the number of rejected datagrams.
func (r CRRejections) Total() uint64 {
	return r.Malformed + r.WrongUsername + r.BadSignature + r.Duplicate + r.Stale
}

func (r *CRRejections) add(o CRRejections) {
	r.Malformed += o.Malformed
	r.WrongUsername += o.WrongUsername
	r.BadSignature += o.BadSignature
	r.Duplicate += o.Duplicate
	r.Stale += o.Stale
}

// add sums counters; of the addresses and times it keeps the latest.
func (c *STUNCounters) add(o STUNCounters) {
	c.Requests += o.Requests
	c.Retransmits += o.Retransmits
	c.SendErrors += o.SendErrors
	c.Responses += o.Responses
	c.Unauthorized += o.Unauthorized
	c.IntegrityErrors += o.IntegrityErrors
	c.ErrorResponses += o.ErrorResponses
	c.Timeouts += o.Timeouts
	c.Mismatched += o.Mismatched
	c.Late += o.Late
	c.Ignored += o.Ignored
	c.BindingChanges += o.BindingChanges
	c.AddressChanges += o.AddressChanges
	c.CRAccepted += o.CRAccepted
	c.CRRejected.add(o.CRRejected)
	if o.LastBinding.After(c.LastBinding) {
		c.Mapped, c.LastBinding = o.Mapped, o.LastBinding
	}
	if o.LastCR.After(c.LastCR) {
		c.LastCR, c.LastCRFrom = o.LastCR, o.LastCRFrom
	}
}

// crReason indexes STUNCPE.crRejected.
type crReason int

const (
	crMalformed crReason = iota
	crWrongUsername
	crBadSignature
	crDuplicate
	crStale
	numCRReasons
)

// STUNCPE is one simulated TR-111 CPE: a STUN client keeping a NAT
// binding open towards the relay, and a UDP connection-request listener on
// the same socket, as on a real CPE.
type STUNCPE struct {
	cfg    STUNCPEConfig
	log    *slog.Logger
	server *net.UDPAddr

	busy atomic.Bool // Run or BindOnce owns the fields below
	// Binding state, touched only by the owner of busy.
	integrity     bool // a 401 was seen: every request carries MESSAGE-INTEGRITY
	changePending bool // the mapped address changed: the next request carries BINDING-CHANGE
	failures      int  // error answers in a row, for the back-off

	requests, retransmits, sendErrors, responses  atomic.Uint64
	unauthorized, integrityErrors, errorResponses atomic.Uint64
	timeouts, mismatched, late, ignored           atomic.Uint64
	bindingChanges, addressChanges, crAccepted    atomic.Uint64
	crRejected                                    [numCRReasons]atomic.Uint64

	mu          sync.Mutex
	mapped      netip.AddrPort
	lastBinding time.Time
	lastCR      time.Time
	lastCRFrom  netip.AddrPort
	crState     crState
}

// NewSTUNCPE checks cfg and returns a CPE, which starts when Run is called.
func NewSTUNCPE(cfg STUNCPEConfig) (*STUNCPE, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("STUN CPE %q: %w", cfg.Name, err)
	}
	return &STUNCPE{
		cfg:    cfg,
		log:    cfg.Logger,
		server: net.UDPAddrFromAddrPort(cfg.Server),
	}, nil
}

// Name returns the CPE's name.
func (c *STUNCPE) Name() string { return c.cfg.Name }

// Config returns the CPE's configuration with defaults filled in.
func (c *STUNCPE) Config() STUNCPEConfig { return c.cfg }

// Counters returns a snapshot of the CPE's counters.
func (c *STUNCPE) Counters() STUNCounters {
	s := STUNCounters{
		Requests:        c.requests.Load(),
		Retransmits:     c.retransmits.Load(),
		SendErrors:      c.sendErrors.Load(),
		Responses:       c.responses.Load(),
		Unauthorized:    c.unauthorized.Load(),
		IntegrityErrors: c.integrityErrors.Load(),
		ErrorResponses:  c.errorResponses.Load(),
		Timeouts:        c.timeouts.Load(),
		Mismatched:      c.mismatched.Load(),
		Late:            c.late.Load(),
		Ignored:         c.ignored.Load(),
		BindingChanges:  c.bindingChanges.Load(),
		AddressChanges:  c.addressChanges.Load(),
		CRAccepted:      c.crAccepted.Load(),
		CRRejected: CRRejections{
			Malformed:     c.crRejected[crMalformed].Load(),
			WrongUsername: c.crRejected[crWrongUsername].Load(),
			BadSignature:  c.crRejected[crBadSignature].Load(),
			Duplicate:     c.crRejected[crDuplicate].Load(),
			Stale:         c.crRejected[crStale].Load(),
		},
	}
	c.mu.Lock()
	s.Mapped, s.LastBinding = c.mapped, c.lastBinding
	s.LastCR, s.LastCRFrom = c.lastCR, c.lastCRFrom
	c.mu.Unlock()
	return s
}

// Run keeps the CPE's binding open and answers connection requests on
// conn until ctx is cancelled, then returns nil. conn is the CPE's one
// socket: Binding Requests leave from it and UDP connection requests
// arrive on it, so a connection request passes a NAT only if it comes from
// where the Binding Requests go. Run closes conn.
//
// conn must not be connected (net.ListenUDP or net.ListenPacket, not
// net.DialUDP): the CPE writes to Server with WriteTo and accepts
// connection requests from any address, as agents do.
//
// The loop: a binding exchange (see BindOnce); then, after a success, the
// next one Keepalive later, or at once when the mapped address changed so
// that BINDING-CHANGE goes out without delay, as agents do; after no
// answer, Keepalive later; after an error answer (401 without a password,
// 431, any other), Keepalive doubled for each error in a row, up to 8
// times. Run returns an error only if reading conn fails other than by
// its closing.
func (c *STUNCPE) Run(ctx context.Context, conn net.PacketConn) error {
	if !c.busy.CompareAndSwap(false, true) {
		return ErrSTUNBusy
	}
	defer c.busy.Store(false)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	s := c.startSession(conn)
	err := s.run(ctx)
	conn.Close()
	s.stop()
	if err != nil {
		return fmt.Errorf("sim: STUN CPE %s: read: %w", c.cfg.Name, err)
	}
	return nil
}

// BindOnce runs one binding exchange on conn and returns the mapped
// address, as one turn of Run's loop: a Binding Request, retransmitted
// while unanswered, and after a 401 the same with MESSAGE-INTEGRITY. Its
// state carries over to the next BindOnce or Run (integrity once asked
// for, BINDING-CHANGE once the address changed). Connection requests
// arriving meanwhile are handled. conn is left open; its read deadline is
// used to stop reading and is cleared on return.
//
// Errors: ErrSTUNTimeout, a *STUNError for an error answer, ctx.Err(),
// ErrSTUNBusy, or the error that ended reading conn.
func (c *STUNCPE) BindOnce(ctx context.Context, conn net.PacketConn) (netip.AddrPort, error) {
	if !c.busy.CompareAndSwap(false, true) {
		return netip.AddrPort{}, ErrSTUNBusy
	}
	defer c.busy.Store(false)

	s := c.startSession(conn)
	mapped, err := s.exchange(ctx)
	conn.SetReadDeadline(time.Unix(1, 0)) // unblocks the reader
	rerr := s.stop()
	conn.SetReadDeadline(time.Time{})
	if errors.Is(err, errSessionEnded) {
		err = fmt.Errorf("sim: STUN CPE %s: read: %w", c.cfg.Name, rerr)
	}
	return mapped, err
}

// errSessionEnded: the socket could no longer be read.
var errSessionEnded = errors.New("sim: STUN socket read ended")

// stunSession is one Run or BindOnce: the goroutine reading the socket,
// and the state of the binding exchanges, which the caller's goroutine
// drives.
type stunSession struct {
	c    *STUNCPE
	conn net.PacketConn
	in   chan *stun.Message // STUN messages read; closed when reading ends
	done chan struct{}      // closed to stop the reader
	rerr error              // why reading ended; set before in is closed
	req  []byte             // the request being sent
	// recent are the transaction ids of the last requests, to tell late
	// answers (to retransmissions, say) from foreign ones.
	recent  [4]stun.TransactionID
	nrecent int
}

func (c *STUNCPE) startSession(conn net.PacketConn) *stunSession {
	s := &stunSession{
		c:    c,
		conn: conn,
		in:   make(chan *stun.Message, 8),
		done: make(chan struct{}),
		req:  make([]byte, 0, 256),
	}
	go s.read()
	return s
}

// stop stops the reader, which must have been unblocked (conn closed or
// its deadline passed), and returns why it stopped.
func (s *stunSession) stop() error {
	close(s.done)
	for range s.in {
		// Drain: the reader may be handing over a message.
	}
	return s.rerr
}

// read reads the socket until it fails. STUN messages go to the binding
// exchanges; everything else is a UDP connection request or malformed.
func (s *stunSession) read() {
	defer close(s.in)
	buf := make([]byte, readBufferSize)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if errors.Is(err, syscall.ECONNREFUSED) {
			// An ICMP port unreachable reported on the socket: the
			// server is down, which the retransmissions will find out.
			continue
		}
		if err != nil {
			s.rerr = err
			return
		}
		var src netip.AddrPort
		if ua, ok := from.(*net.UDPAddr); ok {
			ap := ua.AddrPort()
			src = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		m := s.c.datagram(buf[:n], src)
		if m == nil {
			continue
		}
		select {
		case s.in <- m:
		case <-s.done:
			return
		}
	}
}

// datagram sorts one datagram read from the socket: a STUN message is
// decoded (into a copy) and returned for the binding exchanges; anything
// else is handled as a UDP connection request, and nil returned.
func (c *STUNCPE) datagram(p []byte, src netip.AddrPort) *stun.Message {
	// RFC 5389 6: a STUN message starts with two zero bits; the "G" of a
	// connection request does not.
	if len(p) == 0 || p[0]&0xC0 != 0 {
		c.connectionRequest(p, src)
		return nil
	}
	m := new(stun.Message)
	if err := m.Decode(bytes.Clone(p)); err != nil {
		c.reject(crMalformed, src, err)
		return nil
	}
	return m
}

// run is Run's loop. It returns nil when ctx is cancelled or the socket
// closed, and the read error if reading failed otherwise.
func (s *stunSession) run(ctx context.Context) error {
	c := s.c
	for {
		_, err := s.exchange(ctx)
		wait := c.cfg.Keepalive
		switch {
		case ctx.Err() != nil || errors.Is(err, errSessionEnded):
			return s.ended(ctx)
		case err == nil:
			c.failures = 0
			if c.changePending {
				wait = 0 // TR-111: report the change now
			}
		case errors.Is(err, ErrSTUNTimeout):
			c.log.Debug("STUN: no answer", slog.String("cpe", c.cfg.Name))
		default:
			c.failures++
			wait <<= min(c.failures-1, maxBackoffShift)
			c.log.Info("STUN: binding failed", slog.String("cpe", c.cfg.Name), slog.Any("err", err))
		}
		if err := s.idle(ctx, wait); err != nil {
			return s.ended(ctx)
		}
	}
}

// ended returns what Run reports when its session stops: nil when ctx
// was cancelled or the socket closed (the CPE is switched off), else the
// read error.
func (s *stunSession) ended(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	// Reading ended, so s.in is closed and s.rerr set.
	if errors.Is(s.rerr, net.ErrClosed) {
		return nil
	}
	return s.rerr
}

// idle waits d, ignoring STUN messages, which can only be late answers.
func (s *stunSession) idle(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case m, ok := <-s.in:
			if !ok {
				return errSessionEnded
			}
			s.stray(m)
		}
	}
}

// stray counts a STUN message that does not answer the request
// outstanding, if any.
func (s *stunSession) stray(m *stun.Message) {
	switch {
	case !isBindingResponse(m):
		s.c.ignored.Add(1)
	case slices.Contains(s.recent[:s.nrecent], m.TransactionID):
		s.c.late.Add(1)
	default:
		s.c.mismatched.Add(1)
	}
}

func isBindingResponse(m *stun.Message) bool {
	cl := m.Type.Class()
	return m.Type.Method() == stun.MethodBinding && (cl == stun.ClassSuccess || cl == stun.ClassError)
}

// exchange is one binding exchange: a Binding Request (with
// CONNECTION-REQUEST-BINDING, and BINDING-CHANGE when the address changed)
// retransmitted until answered; after a 401, once, the same with
// MESSAGE-INTEGRITY, which every later request keeps.
func (s *stunSession) exchange(ctx context.Context) (netip.AddrPort, error) {
	c := s.c
	for {
		id := stun.NewTransactionID(!c.cfg.RFC5389)
		copy(s.recent[1:], s.recent[:])
		s.recent[0] = id
		s.nrecent = min(s.nrecent+1, len(s.recent))
		change, integrity := c.changePending, c.integrity
		s.req = appendBindingRequest(s.req, &id, &c.cfg, integrity, change)
		if change {
			c.bindingChanges.Add(1)
		}
		m, err := s.transact(ctx, &id, integrity)
		if err != nil {
			return netip.AddrPort{}, err
		}
		if m.Type.Class() == stun.ClassError {
			e := leadingErrorCode(m)
			switch e.Code {
			case 401:
				c.unauthorized.Add(1)
				// TR-069 Annex G: the server wants MESSAGE-INTEGRITY;
				// ask again with it, and keep sending it.
				if !integrity && c.cfg.STUNPassword != "" {
					c.integrity = true
					continue
				}
			case 431:
				c.integrityErrors.Add(1)
			default:
				c.errorResponses.Add(1)
			}
			return netip.AddrPort{}, e
		}
		mapped := mappedAddress(m, c.cfg.RFC5389)
		c.responses.Add(1)
		c.bound(mapped, change)
		return mapped, nil
	}
}

// transact sends s.req and retransmits it until a response with id
// arrives, and returns that response (RFC 3489 9.3: the interval doubles
// from RetransmitTimeout up to 16 times it; after the last retransmission
// one more interval is waited).
func (s *stunSession) transact(ctx context.Context, id *stun.TransactionID, integrity bool) (*stun.Message, error) {
	c := s.c
	rto := c.cfg.RetransmitTimeout
	s.send()
	t := time.NewTimer(rto)
	defer t.Stop()
	for sent := 1; ; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			if sent > c.cfg.MaxRetransmits {
				c.timeouts.Add(1)
				return nil, ErrSTUNTimeout
			}
			sent++
			c.retransmits.Add(1)
			s.send()
			rto = min(2*rto, rtoCapFactor*c.cfg.RetransmitTimeout)
			t.Reset(rto)
		case m, ok := <-s.in:
			if !ok {
				return nil, errSessionEnded
			}
			switch {
			case !isBindingResponse(m) || m.TransactionID != *id:
				// All 16 bytes of the id are compared, as agents do.
				s.stray(m)
			case m.Type.Class() == stun.ClassError:
				return m, nil
			case integrity && m.HasIntegrity() && !checkIntegrity(m, []byte(c.cfg.STUNPassword), !c.cfg.RFC5389):
				// RFC 3489 9.3: a response whose HMAC fails is discarded.
				c.ignored.Add(1)
			case !mappedAddress(m, c.cfg.RFC5389).IsValid():
				c.ignored.Add(1)
			default:
				return m, nil
			}
		}
	}
}

func (s *stunSession) send() {
	c := s.c
	c.requests.Add(1)
	if _, err := s.conn.WriteTo(s.req, c.server); err != nil {
		// The retransmission timer tries again; a closed socket ends the
		// reader, and with it the exchange.
		c.sendErrors.Add(1)
		c.log.Debug("STUN: send failed", slog.String("cpe", c.cfg.Name), slog.Any("err", err))
	}
}

// bound records the mapped address of a successful exchange; sentChange
// tells that its request carried BINDING-CHANGE.
func (c *STUNCPE) bound(mapped netip.AddrPort, sentChange bool) {
	now := time.Now()
	c.mu.Lock()
	prev := c.mapped
	c.mapped, c.lastBinding = mapped, now
	c.mu.Unlock()
	if sentChange {
		c.changePending = false
	}
	if prev.IsValid() && prev != mapped {
		c.changePending = true
		c.addressChanges.Add(1)
		c.log.Info("STUN: mapped address changed", slog.String("cpe", c.cfg.Name),
			slog.String("from", prev.String()), slog.String("to", mapped.String()))
	}
	if h := c.cfg.OnBinding; h != nil {
		h(c.cfg.Name, mapped, now)
	}
}

// mappedAddress returns the address a response reports: MAPPED-ADDRESS
// for a classic client, which knows no other (RFC 3489 11.2.1), and
// XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS, for an RFC 5389 one (RFC 5389
// 15.2, 15.1).
func mappedAddress(m *stun.Message, rfc5389 bool) netip.AddrPort {
	if rfc5389 && m.XORMappedAddress.IsValid() {
		return m.XORMappedAddress
	}
	return m.MappedAddress
}

// leadingErrorCode reads ERROR-CODE the way the strictest agents do: only
// as the first attribute of the error response.
func leadingErrorCode(m *stun.Message) *STUNError {
	if as := m.Attributes(); len(as) > 0 && as[0].Type == stun.AttrErrorCode {
		return &STUNError{Code: m.ErrorCode, Reason: string(m.ErrorReason)}
	}
	return &STUNError{}
}
