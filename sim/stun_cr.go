package sim

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/crrelay/crrelay/stun"
)

// How a STUN CPE checks UDP connection requests (TR-069 Annex G), as
// deployed agents do (PROTOCOL-NOTES §1). The datagram's syntax is read
// with the shared codec; what the CPE then checks is written here.

// seenCRIDs is how many connection-request ids a CPE remembers to spot
// retransmitted copies.
const seenCRIDs = 64

// Why a UDP connection request was dropped; logged, never sent (there is
// no reply to a UDP connection request).
var (
	errCRTimestamp = errors.New("sim: ts does not fit 32 bits")
	errCRUsername  = errors.New("sim: un is not the ConnectionRequestUsername")
	errCRSignature = errors.New("sim: sig does not match")
	errCRDuplicate = errors.New("sim: id already seen")
	errCRStale     = errors.New("sim: ts not greater than the last accepted one")
)

// crState is what a CPE remembers of the connection requests it saw.
type crState struct {
	lastTS uint64 // ts of the last accepted request
	haveTS bool
	ids    [seenCRIDs]uint32 // ids of authentic requests, a ring
	nids   int               // how many of ids are filled
	next   int               // where the next id goes
}

func (s *crState) seen(id uint32) bool {
	for _, v := range s.ids[:s.nids] {
		if v == id {
			return true
		}
	}
	return false
}

func (s *crState) remember(id uint32) {
	s.ids[s.next] = id
	s.next = (s.next + 1) % len(s.ids)
	s.nids = min(s.nids+1, len(s.ids))
}

// connectionRequest handles a datagram that is not STUN. There is no
// reply whatever the outcome.
func (c *STUNCPE) connectionRequest(p []byte, from netip.AddrPort) {
	r, err := stun.ParseUDPConnectionRequest(p)
	switch {
	case err != nil:
		c.reject(crMalformed, from, err)
		return
	case r.Timestamp > math.MaxUint32:
		// Agents read ts into 32 bits: an ACS sending milliseconds
		// breaks them.
		c.reject(crMalformed, from, errCRTimestamp)
		return
	case r.Username != c.cfg.CRUsername:
		c.reject(crWrongUsername, from, errCRUsername)
		return
	case !validCRSignature(&r, []byte(c.cfg.CRPassword)):
		c.reject(crBadSignature, from, errCRSignature)
		return
	}

	now := time.Now()
	c.mu.Lock()
	st := &c.crState
	var why crReason = -1
	switch {
	case st.seen(r.ID):
		// A retransmitted copy (ACSes send several) or a replay.
		why = crDuplicate
	case st.haveTS && r.Timestamp <= st.lastTS:
		// One common agent requires ts to grow: of two requests in the
		// same second, the second is dropped. Its id is remembered, so
		// its own copies count as duplicates.
		why = crStale
		st.remember(r.ID)
	default:
		st.remember(r.ID)
		st.lastTS, st.haveTS = r.Timestamp, true
		c.lastCR, c.lastCRFrom = now, from
	}
	c.mu.Unlock()

	switch why {
	case crDuplicate:
		c.reject(why, from, errCRDuplicate)
		return
	case crStale:
		c.reject(why, from, errCRStale)
		return
	}
	c.crAccepted.Add(1)
	c.log.Debug("UDP connection request accepted", slog.String("cpe", c.cfg.Name),
		slog.String("from", from.String()), slog.Uint64("id", uint64(r.ID)))
	if h := c.cfg.OnWake; h != nil {
		h(c.cfg.Name, now)
	}
}

func (c *STUNCPE) reject(why crReason, from netip.AddrPort, err error) {
	c.crRejected[why].Add(1)
	level := slog.LevelInfo
	if why == crDuplicate {
		level = slog.LevelDebug // retransmissions are normal
	}
	c.log.Log(context.Background(), level, "UDP connection request dropped", slog.String("cpe", c.cfg.Name),
		slog.String("from", from.String()), slog.String("reason", err.Error()))
}

// validCRSignature checks sig = HMAC-SHA1(ConnectionRequestPassword,
// ts id un cn), hex, compared case-insensitively (TR-069 Annex G), ts
// and id as the decimal numbers the agent parsed.
func validCRSignature(r *stun.UDPConnectionRequest, password []byte) bool {
	got, err := hex.DecodeString(r.Signature) // either case
	if err != nil {
		return false
	}
	h := hmac.New(sha1.New, password)
	h.Write(strconv.AppendUint(nil, r.Timestamp, 10))
	h.Write(strconv.AppendUint(nil, uint64(r.ID), 10))
	h.Write([]byte(r.Username))
	h.Write([]byte(r.CNonce))
	return hmac.Equal(got, h.Sum(nil))
}
