package xmpp

import (
	"context"
	"time"
)

// Outcome is how a connection request ended.
type Outcome uint8

// Outcomes of ConnectionRequest.
const (
	// Delivered: the CPE answered with an IQ result; it will open a CWMP
	// session.
	Delivered Outcome = iota + 1
	// AuthFailed: the CPE answered not-authorized (or the widespread
	// misspelling not-autorized): wrong connection-request credentials.
	AuthFailed
	// Refused: the CPE answered service-unavailable: the relay's JID is
	// not in its ConnReqAllowedJabberIDs, or it does not do Annex K.
	Refused
	// Offline: no session for that JID, or it ended before answering.
	Offline
	// Timeout: no answer before the context's deadline or IQTimeout.
	Timeout
	// Error: any other answer; Result.Condition has its condition.
	Error

	nOutcomes
)

var outcomeNames = [nOutcomes]string{"unknown", "delivered", "auth_failed", "refused", "offline", "timeout", "error"}

// String returns the outcome's name as the API reports it: delivered,
// auth_failed, refused, offline, timeout or error.
func (o Outcome) String() string {
	if o < nOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Result is the result of a connection request.
type Result struct {
	Outcome Outcome
	// Condition is the error condition the CPE answered with, exactly as
	// its element was named (e.g. "not-autorized"); empty otherwise.
	Condition string
	// RTT is the time from sending to the answer (or to giving up).
	RTT time.Duration
}

// call is a connection request waiting for its answer.
type call struct {
	done chan Result
}

// finish delivers r; the pending entry was removed by the caller, so it
// runs at most once.
func (c *call) finish(r Result) { c.done <- r }

// ConnectionRequest sends a TR-069 Annex K connection request from the
// relay's JID to the session of to (a full JID, or a bare JID meaning its
// most recent session) and waits for the answer, for at most IQTimeout or
// until ctx is done.
func (b *Broker) ConnectionRequest(ctx context.Context, to, username, password string) Result {
	start := time.Now()
	r := b.connectionRequest(ctx, start, to, username, password)
	r.RTT = time.Since(start)
	b.m.crOutcome[r.Outcome].Inc()
	switch r.Outcome {
	case Delivered, AuthFailed, Refused, Error:
		b.m.crSeconds.Observe(r.RTT.Seconds())
	}
	return r
}

func (b *Broker) connectionRequest(ctx context.Context, start time.Time, to, username, password string) Result {
	a, err := parseJID(to)
	if err != nil || !a.hasLocal() {
		return Result{Outcome: Error, Condition: "jid-malformed"}
	}
	s := b.lookup(a, kindCPE)
	if s == nil {
		return Result{Outcome: Offline}
	}
	deadline := start.Add(b.cfg.IQTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	id := b.nextID()
	c := &call{done: make(chan Result, 1)}
	if !s.addPending(pendingIQ{id: id, call: c, req: b.relay, expires: deadline.UnixNano()}, start.UnixNano()) {
		if !s.open() {
			return Result{Outcome: Offline}
		}
		return Result{Outcome: Error, Condition: "resource-constraint"}
	}

	bp := b.getWriteBuf()
	out := append((*bp)[:0], `<iq type="get" from="`...)
	out = appendEscaped(out, b.cfg.RelayJID, true)
	out = append(out, `" to="`...)
	out = appendEscaped(out, s.full, true)
	out = append(out, `" id="`...)
	out = append(out, id...)
	out = append(out, `"><connectionRequest xmlns="`+nsConnReq+`"><username>`...)
	out = appendEscaped(out, username, false)
	out = append(out, `</username><password>`...)
	out = appendEscaped(out, password, false)
	out = append(out, `</password></connectionRequest></iq>`...)
	err = s.write(out)
	b.putWriteBuf(bp, out)
	if err != nil {
		if s.removeCall(c) {
			return Result{Outcome: Offline}
		}
		return <-c.done
	}

	if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
		// The caller's deadline comes first (a wake always has one): no
		// timer of our own.
		select {
		case r := <-c.done:
			return r
		case <-ctx.Done():
		}
	} else {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case r := <-c.done:
			return r
		case <-t.C:
		case <-ctx.Done():
		}
	}
	if s.removeCall(c) {
		return Result{Outcome: Timeout}
	}
	// The answer (or the session's end) got there first.
	return <-c.done
}
