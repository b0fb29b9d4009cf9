package nbio

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestReaderSequence(t *testing.T) {
	var r Reader
	r.Take()
	r.Begin()
	if r.Claim() {
		t.Fatal("a second reader while one reads")
	}
	if !r.Release() {
		t.Fatal("an event during the pass did not ask for another")
	}
	r.Begin()
	if r.Release() {
		t.Fatal("another pass asked for with no event")
	}
	if !r.Claim() {
		t.Fatal("no reader for an idle socket's event")
	}
}

// TestReaderMissesNoEvent has many goroutines report events and read
// when they become the reader: never two passes at once, and the last
// pass starts after the last event.
func TestReaderMissesNoEvent(t *testing.T) {
	var r Reader
	var events, seen, active atomic.Int64
	pass := func() {
		if active.Add(1) != 1 {
			t.Error("two readers at once")
		}
		seen.Store(events.Load())
		active.Add(-1)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				events.Add(1)
				if !r.Claim() {
					continue
				}
				for {
					r.Begin()
					pass()
					if !r.Release() {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	if seen.Load() != events.Load() {
		t.Fatalf("the last pass saw %d of %d events", seen.Load(), events.Load())
	}
}
