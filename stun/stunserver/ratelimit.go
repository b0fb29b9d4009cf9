package stunserver

import (
	"crypto/rand"
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"sync"
)

// limiter is a per-source token bucket with bounded memory.
//
// Each source has one number, its theoretical arrival time (GCRA, the
// generic cell rate algorithm, which is a token bucket written as a
// time): a packet at time t is accepted if tat-t <= tolerance, and then
// moves tat one interval on. A source whose tat is in the past has a full
// bucket, exactly like a source never seen, so forgetting it loses
// nothing.
//
// Sources live in a fixed table of 4-way sets, each with its own lock, so
// that the receiving goroutines of several sockets rarely contend. The
// set is chosen by a keyed hash (a random key per server, so that a
// flood cannot be aimed at one set). A new source takes the way with the
// oldest tat: if that tat is in the past, nothing is lost; if not, more
// sources were active within one burst time than the table holds, and
// the forgotten one gets a fresh bucket, which only matters to a forger
// who already controls that many addresses.
//
// A source is an IPv4 address, or the /64 of an IPv6 address: one IPv6
// subscriber usually has a whole /64.
type limiter struct {
	interval  int64 // nanoseconds per packet
	tolerance int64 // (burst-1) intervals
	mask      uint64
	k0, k1    uint64
	sets      []limitSet
}

const limitWays = 4

type limitSet struct {
	mu   sync.Mutex
	keys [limitWays][2]uint64
	tat  [limitWays]int64
	used [limitWays]bool
}

// newLimiter returns a limiter for rate packets per second with burst,
// remembering at least size sources; nil if rate <= 0.
func newLimiter(rate float64, burst, size int) *limiter {
	if rate <= 0 {
		return nil
	}
	interval := int64(math.Ceil(1e9 / rate))
	nsets := 1 << bits.Len(uint((size+limitWays-1)/limitWays-1))
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	return &limiter{
		interval:  interval,
		tolerance: int64(burst-1) * interval,
		mask:      uint64(nsets - 1),
		k0:        binary.LittleEndian.Uint64(seed[:8]) | 1,
		k1:        binary.LittleEndian.Uint64(seed[8:]) | 1,
		sets:      make([]limitSet, nsets),
	}
}

// sourceKey returns the limiting key of ip: the IPv4 address, or the
// IPv6 /64.
func sourceKey(ip netip.Addr) [2]uint64 {
	ip = ip.Unmap()
	a := ip.As16()
	hi := binary.BigEndian.Uint64(a[:8])
	if ip.Is4() {
		return [2]uint64{hi, binary.BigEndian.Uint64(a[8:])}
	}
	return [2]uint64{hi, 0}
}

func (l *limiter) hash(k [2]uint64) uint64 {
	h := (k[0] ^ l.k0) * 0x9E3779B97F4A7C15
	h ^= bits.RotateLeft64((k[1]^l.k1)*0xC2B2AE3D27D4EB4F, 31)
	h ^= h >> 29
	h *= 0xBF58476D1CE4E5B9
	return h ^ h>>32
}

// allow reports whether a packet from ip at now (nanoseconds, monotonic)
// is within the source's rate, and takes a token if so.
func (l *limiter) allow(ip netip.Addr, now int64) bool {
	k := sourceKey(ip)
	s := &l.sets[l.hash(k)&l.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	way := -1
	oldest := 0
	for i := range s.keys {
		if s.used[i] && s.keys[i] == k {
			way = i
			break
		}
		if !s.used[i] || (s.used[oldest] && s.tat[i] < s.tat[oldest]) {
			oldest = i
		}
	}
	if way < 0 {
		way = oldest
		s.keys[way], s.tat[way], s.used[way] = k, now, true
	}
	tat := max(s.tat[way], now)
	if tat-now > l.tolerance {
		return false
	}
	s.tat[way] = tat + l.interval
	return true
}
