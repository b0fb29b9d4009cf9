package sim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Nonces are self-validating, in the spirit of RFC 7616 3.3 ("time-stamp
// H(time-stamp ":" ETag ":" secret)"): a CPE remembers nothing about the
// challenges it sends, so a flood of unanswered GETs costs no memory. Only
// nonces that were answered correctly are remembered, until they expire, to
// check that nc increases.
//
// Wire form, hex: issued (8 bytes, Unix ns) | connection id (8) | random (8)
// | HMAC-SHA-256(key, cpe name 0x00 first 24 bytes) truncated to 16 bytes.
const (
	nonceBodyLen = 24
	nonceMACLen  = 16
	nonceHexLen  = 2 * (nonceBodyLen + nonceMACLen)
)

// nonceID names a nonce in the table of answered nonces.
type nonceID [nonceBodyLen]byte

// nonceMinter issues and checks the nonces of every CPE in a fleet.
type nonceMinter struct {
	key [32]byte
}

func newNonceMinter() *nonceMinter {
	m := new(nonceMinter)
	rand.Read(m.key[:])
	return m
}

// mint returns a fresh nonce for the named CPE. conn is the TCP connection
// the nonce is bound to, or 0.
func (m *nonceMinter) mint(cpe string, issued time.Time, conn uint64) string {
	var raw [nonceBodyLen + nonceMACLen]byte
	binary.BigEndian.PutUint64(raw[0:8], uint64(issued.UnixNano()))
	binary.BigEndian.PutUint64(raw[8:16], conn)
	rand.Read(raw[16:24])
	m.sign(raw[nonceBodyLen:], cpe, raw[:nonceBodyLen])
	return hex.EncodeToString(raw[:])
}

func (m *nonceMinter) sign(dst []byte, cpe string, body []byte) {
	h := hmac.New(sha256.New, m.key[:])
	h.Write([]byte(cpe))
	h.Write([]byte{0})
	h.Write(body)
	var sum [sha256.Size]byte
	copy(dst, h.Sum(sum[:0]))
}

// open checks that nonce was minted by m for the named CPE and returns what
// it carries. ok is false for anything else, which the CPE treats as an
// unknown nonce.
func (m *nonceMinter) open(cpe, nonce string) (id nonceID, issued time.Time, conn uint64, ok bool) {
	var raw [nonceBodyLen + nonceMACLen]byte
	if len(nonce) != nonceHexLen {
		return id, issued, 0, false
	}
	if _, err := hex.Decode(raw[:], []byte(nonce)); err != nil {
		return id, issued, 0, false
	}
	var want [nonceMACLen]byte
	m.sign(want[:], cpe, raw[:nonceBodyLen])
	if !hmac.Equal(want[:], raw[nonceBodyLen:]) {
		return id, issued, 0, false
	}
	copy(id[:], raw[:nonceBodyLen])
	issued = time.Unix(0, int64(binary.BigEndian.Uint64(raw[0:8])))
	conn = binary.BigEndian.Uint64(raw[8:16])
	return id, issued, conn, true
}

// nonceUses remembers the highest nc accepted per nonce (RFC 7616 3.4: the
// server can detect a replay by nc not increasing). The owner locks.
type nonceUses struct {
	m       map[nonceID]nonceUse
	pruneAt int
}

type nonceUse struct {
	nc      uint32
	expires time.Time
}

// record accepts nc for the nonce if it is higher than any nc accepted
// with it before, and remembers it until the nonce expires. A CPE that does
// not use qop passes 1, which makes its nonces single-use.
func (u *nonceUses) record(id nonceID, nc uint32, expires, now time.Time) bool {
	if u.m == nil {
		u.m = make(map[nonceID]nonceUse)
	}
	if prev, ok := u.m[id]; ok && nc <= prev.nc {
		return false
	}
	if len(u.m) >= u.pruneAt {
		for k, v := range u.m {
			if !now.Before(v.expires) {
				delete(u.m, k)
			}
		}
		// Prune again when the table has doubled: amortised O(1) per record.
		u.pruneAt = max(64, 2*len(u.m))
	}
	u.m[id] = nonceUse{nc: nc, expires: expires}
	return true
}

// rateWindow allows at most limit events in any window of length per: a
// sliding log of the last limit event times. The owner locks.
type rateWindow struct {
	limit int
	per   time.Duration
	times []time.Time // ring, oldest at next once full
	next  int
}

// full reports whether an event now would exceed the limit.
func (w *rateWindow) full(now time.Time) bool {
	if w.limit <= 0 {
		return false
	}
	return len(w.times) == w.limit && now.Sub(w.times[w.next]) < w.per
}

// take records an event now unless that would exceed the limit.
func (w *rateWindow) take(now time.Time) bool {
	if w.limit <= 0 {
		return true
	}
	if w.full(now) {
		return false
	}
	if len(w.times) < w.limit {
		w.times = append(w.times, now)
		return true
	}
	w.times[w.next] = now
	w.next = (w.next + 1) % w.limit
	return true
}
