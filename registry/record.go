package registry

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// The string fields of a device, in the order a record holds them.
const (
	fID = iota
	fURL
	fUsername
	fPassword
	fSTUNUsername
	fSTUNPassword
	fUDPAddress
	fXMPPJID
	fXMPPPassword
	nFields
)

// fieldNames are the API names of the string fields. They are also part of
// the additional data a secret is sealed with, so they must never change.
var fieldNames = [nFields]string{
	"id", "connection_request_url", "username", "password", "stun_username",
	"stun_password", "udp_address", "xmpp_jid", "xmpp_password",
}

func isSecret(f int) bool { return f == fPassword || f == fSTUNPassword || f == fXMPPPassword }

func deviceStrings(d *Device) [nFields]string {
	return [nFields]string{
		d.ID, d.ConnectionRequestURL, d.Username, d.Password, d.STUNUsername,
		d.STUNPassword, d.UDPAddress, d.XMPPJID, d.XMPPPassword,
	}
}

// record is a device as the in-memory index holds it: one string with every
// field, end offsets into it and packed flags, 72 bytes plus the text. The
// index maps' string keys are substrings of data, so an id or STUN username
// is stored once however many maps point at it. Device fields never change
// once a record is published; a write publishes a new record.
type record struct {
	data             string // every string field, concatenated
	created, updated int64  // Unix nanoseconds
	// live is replaced, never changed in place, so a pointer taken under
	// Registry.lmu can be read after the lock is dropped. nil = none.
	live *Live
	// bind is the UDP binding, nil = none. ObserveBinding sets it once
	// (under Registry.mu shared); a write sets it on the record it is
	// about to publish. Its contents have their own lock.
	bind       atomic.Pointer[bindSlot]
	end        [nFields]uint16 // where each field ends in data
	transports uint8           // up to three 2-bit transport codes, first lowest
	allowBasic bool
	dirty      bool // live is newer than the store (guarded by Registry.lmu)
}

// newRecord packs d. Validation bounds every field, so offsets fit uint16.
func newRecord(d *Device) *record {
	fs := deviceStrings(d)
	n := 0
	for _, s := range fs {
		n += len(s)
	}
	var b strings.Builder
	b.Grow(n)
	r := &record{
		allowBasic: d.AllowBasic,
		created:    d.CreatedAt.UnixNano(),
		updated:    d.UpdatedAt.UnixNano(),
		transports: packTransports(d.Transports),
	}
	for i, s := range fs {
		b.WriteString(s)
		r.end[i] = uint16(b.Len())
	}
	r.data = b.String()
	return r
}

func (r *record) field(i int) string {
	start := uint16(0)
	if i > 0 {
		start = r.end[i-1]
	}
	return r.data[start:r.end[i]]
}

func (r *record) id() string { return r.data[:r.end[fID]] }

// device unpacks r. Strings share r's memory; only Transports allocates.
func (r *record) device() Device {
	return Device{
		ID:                   r.id(),
		ConnectionRequestURL: r.field(fURL),
		Username:             r.field(fUsername),
		Password:             r.field(fPassword),
		AllowBasic:           r.allowBasic,
		STUNUsername:         r.field(fSTUNUsername),
		STUNPassword:         r.field(fSTUNPassword),
		UDPAddress:           r.field(fUDPAddress),
		XMPPJID:              r.field(fXMPPJID),
		XMPPPassword:         r.field(fXMPPPassword),
		Transports:           unpackTransports(r.transports),
		CreatedAt:            time.Unix(0, r.created).UTC(),
		UpdatedAt:            time.Unix(0, r.updated).UTC(),
	}
}

// keys returns r's unique keys as the lookup indexes hold them.
func (r *record) keys() (stun, jid string, udp udpKey, hasUDP bool) {
	stun = r.field(fSTUNUsername)
	if j := r.field(fXMPPJID); j != "" {
		jid = jidKey(j)
	}
	if a := r.field(fUDPAddress); a != "" {
		var why string
		udp, why = parseUDPAddress(a)
		hasUDP = why == ""
	}
	return stun, jid, udp, hasUDP
}

func packTransports(ts []Transport) uint8 {
	var p uint8
	for i, t := range ts {
		p |= transportCode(t) << (2 * i)
	}
	return p
}

func unpackTransports(p uint8) []Transport {
	if p == 0 {
		return nil
	}
	ts := make([]Transport, 0, 3)
	for ; p != 0; p >>= 2 {
		ts = append(ts, transportByCode[p&3])
	}
	return ts
}

// cloneLive deep-copies l. Every reference-typed field added to Live must
// be copied here: published Live values are shared and never mutated.
func cloneLive(l *Live) Live {
	if l == nil {
		return Live{}
	}
	c := *l
	c.Wakes = slices.Clone(l.Wakes)
	return c
}
