package registry

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
	"unicode/utf8"
)

// recordVersion is the first byte of every encoded device. A format change
// bumps it and teaches decodeDevice the old one.
const recordVersion = 1

// Encoded device, version 1 (the id is the store key, not repeated):
//
//	version   byte (1)
//	created   varint, Unix ns
//	updated   varint, Unix ns
//	flags     byte, bit 0 = allow_basic
//	transports byte, up to three 2-bit codes, first lowest
//	fields    uvarint length + bytes, for each field after the id in
//	          record order; a non-empty secret is nonce || AES-GCM
//	          ciphertext || tag, sealed with ad(field name, id)
func encodeDevice(dst []byte, s *sealer, r *record) []byte {
	id := r.id()
	dst = append(dst, recordVersion)
	dst = binary.AppendVarint(dst, r.created)
	dst = binary.AppendVarint(dst, r.updated)
	var flags byte
	if r.allowBasic {
		flags |= 1
	}
	dst = append(dst, flags, r.transports)
	for f := fID + 1; f < nFields; f++ {
		v := r.field(f)
		if !isSecret(f) || v == "" {
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
			continue
		}
		n := len(v) + s.aead.NonceSize() + s.aead.Overhead()
		dst = binary.AppendUvarint(dst, uint64(n))
		dst = s.seal(dst, v, fieldNames[f], id)
	}
	return dst
}

// decoder turns stored device bytes back into records, reusing one
// scratch buffer so each record costs its own two allocations only.
type decoder struct {
	s   *sealer
	buf []byte
	ad  []byte
}

var errTruncated = errors.New("truncated")

// device decodes one stored device. Any malformation, and any secret that
// fails to open, is an ErrCorrupt naming the id; it never panics.
func (dc *decoder) device(key, val []byte) (*record, error) {
	r, err := dc.decode(key, val)
	if err != nil {
		return nil, fmt.Errorf("%w: device %q: %v", ErrCorrupt, truncate(string(key), 64), err)
	}
	return r, nil
}

func (dc *decoder) decode(key, val []byte) (*record, error) {
	if len(key) == 0 || len(key) > MaxIDLen || !utf8.Valid(key) {
		return nil, errors.New("bad id")
	}
	if len(val) == 0 || val[0] != recordVersion {
		return nil, errors.New("unknown record version")
	}
	p := val[1:]
	r := &record{}
	var n int
	if r.created, n = binary.Varint(p); n <= 0 {
		return nil, errTruncated
	}
	p = p[n:]
	if r.updated, n = binary.Varint(p); n <= 0 {
		return nil, errTruncated
	}
	p = p[n:]
	if len(p) < 2 {
		return nil, errTruncated
	}
	r.allowBasic = p[0]&1 != 0
	r.transports = p[1]
	if !validPacked(r.transports) {
		return nil, errors.New("bad transports")
	}
	p = p[2:]
	id := string(key)
	b := append(dc.buf[:0], key...)
	r.end[fID] = uint16(len(b))
	for f := fID + 1; f < nFields; f++ {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return nil, errTruncated
		}
		v := p[n : n+int(l)]
		p = p[n+int(l):]
		if isSecret(f) && len(v) > 0 {
			var err error
			dc.ad = appendAD(dc.ad[:0], fieldNames[f], id)
			if b, err = dc.s.openAD(b, v, dc.ad); err != nil {
				return nil, fmt.Errorf("%s does not open: %v", fieldNames[f], err)
			}
		} else {
			b = append(b, v...)
		}
		if len(b) > math.MaxUint16 {
			return nil, errors.New("too long")
		}
		r.end[f] = uint16(len(b))
	}
	if len(p) != 0 {
		return nil, errors.New("trailing bytes")
	}
	dc.buf = b
	r.data = string(b)
	return r, nil
}

// validPacked reports whether p holds known transport codes, without gaps
// or repeats.
func validPacked(p uint8) bool {
	var seen [4]bool
	for ; p != 0; p >>= 2 {
		c := p & 3
		if c == 0 || seen[c] {
			return false
		}
		seen[c] = true
	}
	return true
}

// Live is stored as JSON: it is rewritten often but is small, and fields
// the transports add later decode from older records as zero values (and
// older code ignores newer fields). A device's UDP binding rides in the
// same record, so one flush op and one delete cover all its live state.
type liveRecord struct {
	Live
	Binding *storedBinding `json:"udp_binding,omitempty"`
}

// storedBinding is binding as stored; only what outlives a restart.
type storedBinding struct {
	Mapped      netip.AddrPort `json:"mapped"`
	Local       netip.AddrPort `json:"local"`
	PrevMapped  netip.AddrPort `json:"prev_mapped,omitzero"`
	FirstSeen   time.Time      `json:"first_seen"`
	LastSeen    time.Time      `json:"last_seen"`
	Keepalive   time.Duration  `json:"keepalive_ns,omitempty"`
	Changes     int            `json:"changes,omitempty"`
	LastChange  time.Time      `json:"last_change,omitzero"`
	NATTimeout  time.Duration  `json:"nat_timeout_ns,omitempty"`
	SurvivedGap time.Duration  `json:"survived_gap_ns,omitempty"`
	// Restored is not stored (every loaded binding is restored); it is
	// here so that storedBinding(UDPBinding) converts, which keeps the two
	// in step: a field added to one must be added to the other.
	Restored bool `json:"-"`
}

// encodeLiveRecord encodes a device's live state and binding (either may
// be nil). Nothing at all encodes as nil: the record is to be deleted.
func encodeLiveRecord(l *Live, b *binding) ([]byte, error) {
	var lr liveRecord
	if l != nil {
		lr.Live = *l
	}
	if b != nil {
		sb := storedBinding(b.export())
		lr.Binding = &sb
	} else if l == nil {
		return nil, nil
	}
	return json.Marshal(&lr)
}

// decodeLiveRecord decodes a stored live record; the binding is nil if it
// has none. A binding that could not have been stored is an error.
func decodeLiveRecord(v []byte) (*Live, *binding, error) {
	var lr liveRecord
	if err := json.Unmarshal(v, &lr); err != nil {
		return nil, nil, err
	}
	l := &lr.Live
	if len(l.Wakes) > MaxWakeRecords {
		l.Wakes = l.Wakes[len(l.Wakes)-MaxWakeRecords:]
	}
	sb := lr.Binding
	if sb == nil {
		return l, nil, nil
	}
	if !sb.Mapped.IsValid() || sb.Mapped.Port() == 0 || !sb.Local.IsValid() || sb.LastSeen.IsZero() ||
		sb.Keepalive < 0 || sb.NATTimeout < 0 || sb.SurvivedGap < 0 || sb.Changes < 0 {
		return nil, nil, errors.New("bad udp_binding")
	}
	return l, &binding{
		mapped:     netip.AddrPortFrom(sb.Mapped.Addr().Unmap(), sb.Mapped.Port()),
		local:      sb.Local,
		prev:       sb.PrevMapped,
		first:      timeNS(sb.FirstSeen),
		seen:       timeNS(sb.LastSeen),
		keepalive:  sb.Keepalive,
		changes:    sb.Changes,
		changed:    timeNS(sb.LastChange),
		natTimeout: sb.NATTimeout,
		survived:   sb.SurvivedGap,
	}, nil
}

// decodeLive decodes a stored live record without its binding.
func decodeLive(b []byte) (*Live, error) {
	l, _, err := decodeLiveRecord(b)
	return l, err
}
