package registry

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestOrdered drives the chunked index through splits and emptied chunks
// against a sorted slice.
func TestOrdered(t *testing.T) {
	var o ordered
	var want []string
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(step int) {
		var got []string
		o.after("", func(r *record) bool { got = append(got, r.id()); return true })
		if !slices.Equal(got, want) || o.n != len(want) {
			t.Fatalf("step %d: index has %d ids (n=%d), want %d", step, len(got), o.n, len(want))
		}
		for _, c := range o.chunks {
			if len(c) == 0 || len(c) > chunkMax {
				t.Fatalf("step %d: chunk of %d", step, len(c))
			}
		}
	}
	for step := range 20000 {
		id := fmt.Sprintf("%05d", rng.IntN(5000))
		i, found := slices.BinarySearch(want, id)
		if rng.IntN(3) == 0 {
			o.delete(id)
			if found {
				want = slices.Delete(want, i, i+1)
			}
		} else {
			o.set(newRecord(&Device{ID: id}))
			if !found {
				want = slices.Insert(want, i, id)
			}
		}
		if step%1000 == 0 {
			check(step)
		}
	}
	check(-1)
	if len(o.chunks) < 2 {
		t.Fatalf("only %d chunks: splits not exercised", len(o.chunks))
	}
	// Cursors between, at and beyond ids.
	for _, cursor := range []string{"", "0", want[0], want[len(want)/2], want[len(want)/2] + "0", want[len(want)-1], "~"} {
		var got []string
		o.after(cursor, func(r *record) bool { got = append(got, r.id()); return len(got) < 3 })
		i, found := slices.BinarySearch(want, cursor)
		if found {
			i++
		}
		if w := want[i:min(i+3, len(want))]; !slices.Equal(got, w) {
			t.Errorf("after(%q) = %v, want %v", cursor, got, w)
		}
	}

	var b ordered
	recs := make([]*record, 2000)
	for i := range recs {
		recs[i] = newRecord(&Device{ID: fmt.Sprintf("%05d", i)})
	}
	b.build(recs)
	b.set(newRecord(&Device{ID: "00000a"}))
	b.delete("01999")
	var n int
	b.after("", func(*record) bool { n++; return true })
	if n != 2000 || b.n != 2000 {
		t.Errorf("built index walks %d records (n=%d), want 2000", n, b.n)
	}
}
