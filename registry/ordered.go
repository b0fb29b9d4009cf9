package registry

import "sort"

// ordered keeps records sorted by id for List, as a list of sorted chunks:
// a B+tree of height two. Finding a cursor is two binary searches; an
// insert or delete moves at most chunkMax pointers plus, on a split, the
// chunk list (a few thousand entries at a million devices). Nothing is ever
// sorted per call, and the overhead is about 10 bytes per device.
type ordered struct {
	chunks [][]*record // each sorted and non-empty; chunk i's ids < chunk i+1's
	n      int
}

const chunkMax = 512

// build fills o from recs, which must be sorted by id and unique.
func (o *ordered) build(recs []*record) {
	const fill = chunkMax * 3 / 4 // room to insert before the first split
	o.chunks = make([][]*record, 0, (len(recs)+fill-1)/fill)
	for len(recs) > 0 {
		n := min(fill, len(recs))
		c := make([]*record, n, chunkMax)
		copy(c, recs[:n])
		o.chunks = append(o.chunks, c)
		recs = recs[n:]
	}
	o.n = 0
	for _, c := range o.chunks {
		o.n += len(c)
	}
}

// search finds where id is or would go: chunk ci, position i. When id is
// beyond every record, ci == len(o.chunks).
func (o *ordered) search(id string) (ci, i int, found bool) {
	ci = sort.Search(len(o.chunks), func(k int) bool {
		c := o.chunks[k]
		return c[len(c)-1].id() >= id
	})
	if ci == len(o.chunks) {
		return ci, 0, false
	}
	c := o.chunks[ci]
	i = sort.Search(len(c), func(k int) bool { return c[k].id() >= id })
	return ci, i, c[i].id() == id
}

// set inserts r, or replaces the record with r's id.
func (o *ordered) set(r *record) {
	ci, i, found := o.search(r.id())
	if found {
		o.chunks[ci][i] = r
		return
	}
	o.n++
	if len(o.chunks) == 0 {
		c := make([]*record, 1, chunkMax)
		c[0] = r
		o.chunks = append(o.chunks, c)
		return
	}
	if ci == len(o.chunks) { // past the end: append to the last chunk
		ci--
		i = len(o.chunks[ci])
	}
	c := o.chunks[ci]
	if len(c) < chunkMax {
		o.chunks[ci] = insertAt(c, i, r)
		return
	}
	// Split the full chunk in halves, then insert into the right one.
	h := len(c) / 2
	right := make([]*record, len(c)-h, chunkMax)
	copy(right, c[h:])
	clear(c[h:])
	left := c[:h]
	if i <= h {
		left = insertAt(left, i, r)
	} else {
		right = insertAt(right, i-h, r)
	}
	o.chunks[ci] = left
	o.chunks = insertAt(o.chunks, ci+1, right)
}

// delete removes the record with id, if any.
func (o *ordered) delete(id string) {
	ci, i, found := o.search(id)
	if !found {
		return
	}
	o.n--
	c := o.chunks[ci]
	copy(c[i:], c[i+1:])
	c[len(c)-1] = nil
	c = c[:len(c)-1]
	if len(c) > 0 {
		o.chunks[ci] = c
		return
	}
	copy(o.chunks[ci:], o.chunks[ci+1:])
	o.chunks[len(o.chunks)-1] = nil
	o.chunks = o.chunks[:len(o.chunks)-1]
}

// after calls fn for records with id > cursor in ascending order until fn
// returns false.
func (o *ordered) after(cursor string, fn func(*record) bool) {
	ci, i, found := o.search(cursor)
	if found {
		i++
	}
	for ; ci < len(o.chunks); ci, i = ci+1, 0 {
		for _, r := range o.chunks[ci][i:] {
			if !fn(r) {
				return
			}
		}
	}
}

func insertAt[T any](s []T, i int, v T) []T {
	var zero T
	s = append(s, zero)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}
