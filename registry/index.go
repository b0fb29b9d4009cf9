package registry

import (
	"hash/maphash"
	"strings"
	"unicode"
	"unicode/utf8"
)

// devindex is the in-memory index: records by handle, hash indexes from id
// and from each unique key to a handle, and the id order for List. A
// handle outlives replacements of its device, so a Put that keeps a
// device's keys touches no index but the order. Guarded by Registry.mu.
type devindex struct {
	seed  maphash.Seed
	recs  []*record // handle → record; nil = free
	free  []uint32  // free handles
	id    hindex
	stun  hindex
	jid   hindex // by jidKey
	udp   hindex
	order ordered
}

func newDevindex(n int) *devindex {
	x := &devindex{seed: maphash.MakeSeed(), recs: make([]*record, 0, n)}
	for _, h := range []*hindex{&x.id, &x.stun, &x.jid, &x.udp} {
		h.reserve(n)
	}
	return x
}

func (x *devindex) len() int { return x.id.n }

func (x *devindex) hash(s string) uint32    { return uint32(maphash.String(x.seed, s)) }
func (x *devindex) hashUDP(k udpKey) uint32 { return uint32(maphash.Comparable(x.seed, k)) }
func (x *devindex) at(h uint32, ok bool) *record {
	if !ok {
		return nil
	}
	return x.recs[h]
}

func (x *devindex) handle(id string) (uint32, bool) {
	return x.id.find(x.hash(id), func(h uint32) bool { return x.recs[h].id() == id })
}

func (x *devindex) get(id string) *record { return x.at(x.handle(id)) }

func (x *devindex) bySTUN(u string) *record {
	return x.at(x.stun.find(x.hash(u), func(h uint32) bool { return x.recs[h].field(fSTUNUsername) == u }))
}

// byJID finds by key, a jidKey.
func (x *devindex) byJID(key string) *record {
	return x.at(x.jid.find(x.hash(key), func(h uint32) bool { return jidKeyEqual(x.recs[h].field(fXMPPJID), key) }))
}

func (x *devindex) byUDP(k udpKey) *record {
	return x.at(x.udp.find(x.hashUDP(k), func(h uint32) bool {
		rk, why := parseUDPAddress(x.recs[h].field(fUDPAddress))
		return why == "" && rk == k
	}))
}

// add indexes a record whose id is not indexed, except in the order (see
// ordered.build). It returns the name of a unique field whose key another
// record already holds; that key stays with the first holder. Only a store
// written outside the registry can cause that.
func (x *devindex) add(rec *record) (clash string) {
	var h uint32
	if n := len(x.free); n > 0 {
		h = x.free[n-1]
		x.free = x.free[:n-1]
		x.recs[h] = rec
	} else {
		h = uint32(len(x.recs))
		x.recs = append(x.recs, rec)
	}
	x.id.insert(x.hash(rec.id()), h)
	stun, jid, udp, hasUDP := rec.keys()
	if stun != "" {
		if x.bySTUN(stun) == nil {
			x.stun.insert(x.hash(stun), h)
		} else {
			clash = "stun_username"
		}
	}
	if jid != "" {
		if x.byJID(jid) == nil {
			x.jid.insert(x.hash(jid), h)
		} else {
			clash = "xmpp_jid"
		}
	}
	if hasUDP {
		if x.byUDP(udp) == nil {
			x.udp.insert(x.hashUDP(udp), h)
		} else {
			clash = "udp_address"
		}
	}
	return clash
}

// set publishes rec, adding or replacing the device with its id. The
// caller has checked that its unique keys are free.
func (x *devindex) set(rec *record) {
	h, ok := x.handle(rec.id())
	if !ok {
		x.add(rec)
		x.order.set(rec)
		return
	}
	oldSTUN, oldJID, oldUDP, oldHasUDP := x.recs[h].keys()
	stun, jid, udp, hasUDP := rec.keys()
	x.recs[h] = rec
	if oldSTUN != stun {
		if oldSTUN != "" {
			x.stun.remove(x.hash(oldSTUN), h)
		}
		if stun != "" {
			x.stun.insert(x.hash(stun), h)
		}
	}
	if oldJID != jid {
		if oldJID != "" {
			x.jid.remove(x.hash(oldJID), h)
		}
		if jid != "" {
			x.jid.insert(x.hash(jid), h)
		}
	}
	if oldHasUDP != hasUDP || oldUDP != udp {
		if oldHasUDP {
			x.udp.remove(x.hashUDP(oldUDP), h)
		}
		if hasUDP {
			x.udp.insert(x.hashUDP(udp), h)
		}
	}
	x.order.set(rec)
}

// remove drops the device id.
func (x *devindex) remove(id string) {
	h, ok := x.handle(id)
	if !ok {
		return
	}
	rec := x.recs[h]
	stun, jid, udp, hasUDP := rec.keys()
	x.id.remove(x.hash(id), h)
	if stun != "" {
		x.stun.remove(x.hash(stun), h)
	}
	if jid != "" {
		x.jid.remove(x.hash(jid), h)
	}
	if hasUDP {
		x.udp.remove(x.hashUDP(udp), h)
	}
	x.order.delete(id)
	x.recs[h] = nil
	x.free = append(x.free, h)
}

// jidKeyEqual reports whether jidKey(jid) == key, without allocating.
func jidKeyEqual(jid, key string) bool {
	bare, _, _ := strings.Cut(jid, "/")
	if bare == key {
		return true
	}
	// strings.ToLower maps rune by rune with unicode.ToLower; so does
	// this, against key's runes.
	for _, c := range bare {
		k, size := utf8.DecodeRuneInString(key)
		if size == 0 || k != unicode.ToLower(c) {
			return false
		}
		key = key[size:]
	}
	return key == ""
}
