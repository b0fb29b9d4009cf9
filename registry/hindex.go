package registry

// hindex is an open-addressing hash index (linear probing) from a key to a
// record handle, an index into Registry.recs. A slot is 8 bytes: the key's
// 32-bit hash above the handle+1, 0 when empty. Go's maps spend 50-80
// bytes an entry at a million devices; this spends about 16, holds no
// pointers for the GC to scan, and rarely touches a record it does not
// want, since the hash in the slot is compared first.
//
// The index does not know keys: callers hash the key and confirm a
// candidate handle with match. It holds at most one entry per key; callers
// check before they insert.
type hindex struct {
	slots []uint64 // len is a power of two, or 0
	n     int
}

const hindexMinSlots = 64

func slotOf(hash, handle uint32) uint64 { return uint64(hash)<<32 | uint64(handle) + 1 }

// reserve sizes the index for n entries, so that loading n does not
// rehash along the way.
func (x *hindex) reserve(n int) {
	size := hindexMinSlots
	for size*3/4 < n {
		size *= 2
	}
	if size > len(x.slots) {
		x.resize(size)
	}
}

// find returns the handle whose hash is hash and for which match is true.
func (x *hindex) find(hash uint32, match func(handle uint32) bool) (uint32, bool) {
	if x.n == 0 {
		return 0, false
	}
	mask := uint32(len(x.slots) - 1)
	for i := hash & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return 0, false
		}
		if uint32(s>>32) == hash {
			if h := uint32(s) - 1; match(h) {
				return h, true
			}
		}
	}
}

// insert adds handle under hash. The key must not be in the index.
func (x *hindex) insert(hash, handle uint32) {
	if (x.n+1)*4 > len(x.slots)*3 { // keep the load at most 3/4
		x.resize(max(hindexMinSlots, 2*len(x.slots)))
	}
	x.put(slotOf(hash, handle))
	x.n++
}

func (x *hindex) put(s uint64) {
	mask := uint32(len(x.slots) - 1)
	i := uint32(s>>32) & mask
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = s
}

func (x *hindex) resize(size int) {
	old := x.slots
	x.slots = make([]uint64, size)
	for _, s := range old {
		if s != 0 {
			x.put(s)
		}
	}
}

// remove deletes the entry of handle under hash, if present, and shifts
// back the entries after it that would otherwise become unreachable
// (Knuth, TAOCP vol. 3, 6.4 Algorithm R), so no tombstones pile up.
func (x *hindex) remove(hash, handle uint32) {
	if x.n == 0 {
		return
	}
	want := slotOf(hash, handle)
	mask := uint32(len(x.slots) - 1)
	i := hash & mask
	for x.slots[i] != want {
		if x.slots[i] == 0 {
			return
		}
		i = (i + 1) & mask
	}
	x.n--
	for j := i; ; {
		x.slots[i] = 0
		for {
			j = (j + 1) & mask
			s := x.slots[j]
			if s == 0 {
				return
			}
			// The entry at j may move to the hole at i unless its
			// home slot lies cyclically in (i, j].
			home := uint32(s>>32) & mask
			if (i <= j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
				x.slots[i] = s
				i = j
				break
			}
		}
	}
}
