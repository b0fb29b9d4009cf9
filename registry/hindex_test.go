package registry

import (
	"math/rand/v2"
	"testing"
)

// TestHindex drives the index with colliding hashes, growth and removals
// against a map.
func TestHindex(t *testing.T) {
	var x hindex
	want := map[uint32]uint32{} // handle → hash
	rng := rand.New(rand.NewPCG(3, 4))
	hashOf := func(h uint32) uint32 { return h * 2654435761 % 1021 } // few hashes: collisions and clusters
	for step := range 50000 {
		h := uint32(rng.IntN(3000))
		if _, ok := want[h]; ok && rng.IntN(2) == 0 {
			x.remove(hashOf(h), h)
			delete(want, h)
		} else if !ok {
			x.insert(hashOf(h), h)
			want[h] = hashOf(h)
		}
		if step%4999 == 0 || step > 49990 {
			if x.n != len(want) {
				t.Fatalf("step %d: n = %d, want %d", step, x.n, len(want))
			}
			for h := range uint32(3000) {
				got, ok := x.find(hashOf(h), func(c uint32) bool { return c == h })
				_, in := want[h]
				if ok != in || (ok && got != h) {
					t.Fatalf("step %d: find(%d) = %d, %v; want present %v", step, h, got, ok, in)
				}
			}
		}
	}
	x.remove(12345, 99999) // absent: no-op
	if x.n != len(want) {
		t.Fatal("removing an absent entry changed the count")
	}
}
