package nbio

import (
	"encoding/binary"
	"testing"
)

// records builds TLS-like records of the given body lengths.
func records(lens ...int) []byte {
	var b []byte
	for _, n := range lens {
		b = append(b, 23, 3, 3, 0, 0)
		binary.BigEndian.PutUint16(b[len(b)-2:], uint16(n))
		b = append(b, make([]byte, n)...)
	}
	return b
}

// TestRecords feeds record streams to Track cut at every point and
// checks the records counted and where the framing stands.
func TestRecords(t *testing.T) {
	stream := records(1, 0, 300, 5, 17000)
	for cut := range len(stream) + 1 {
		var r Records
		r.Track(stream[:cut])
		first := r.Completed()
		r.Reset()
		r.Track(stream[cut:])
		if got := first + r.Completed(); got != 5 {
			t.Fatalf("cut at %d: %d records, want 5", cut, got)
		}
		if !r.AtBoundary() {
			t.Fatalf("cut at %d: framing left mid-record", cut)
		}
	}
	var r Records
	r.Track(records(10)[:9])
	if r.Completed() != 0 || r.AtBoundary() || r.OneWholeRecord(true) {
		t.Fatalf("partial record: %d records, at boundary %v", r.Completed(), r.AtBoundary())
	}
	r.Track(make([]byte, 6))
	if !r.OneWholeRecord(true) || r.OneWholeRecord(false) {
		t.Fatal("one whole record, short read: not reported")
	}
	r.Reset()
	r.Track(records(3, 4))
	if r.OneWholeRecord(true) {
		t.Fatal("two records reported as one")
	}
}
