package campaign

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func TestLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l := newLimiter(200) // 5 ms a token, a burst of 10
		start := time.Now()
		for range 100 {
			if err := l.wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// The burst is free, then one token every 5 ms.
		if got, want := time.Since(start), 90*5*time.Millisecond; got < want-time.Millisecond || got > want+time.Millisecond {
			t.Errorf("100 tokens at 200/s took %v, want %v", got, want)
		}

		// Idle time saves up at most the burst.
		time.Sleep(time.Second)
		start = time.Now()
		for range 10 {
			l.wait(ctx)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("burst of 10 took %v", d)
		}
		l.wait(ctx)
		if d := time.Since(start); d < 4*time.Millisecond || d > 6*time.Millisecond {
			t.Errorf("11th token after %v, want 5ms", d)
		}

		// Waiting ends with ctx.
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			time.Sleep(time.Millisecond)
			cancel()
		}()
		slow := newLimiter(0.5)
		slow.wait(cctx)
		if err := slow.wait(cctx); err != context.Canceled {
			t.Errorf("wait on cancelled ctx = %v", err)
		}

		// Zero is unlimited.
		start = time.Now()
		free := newLimiter(0)
		for range 1000 {
			free.wait(ctx)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("unlimited took %v", d)
		}
	})
}

// FuzzDecodeIDs feeds the device chunk decoder arbitrary bytes, as a
// damaged store would: it must fail cleanly, and what it decodes must
// survive a round trip.
func FuzzDecodeIDs(f *testing.F) {
	f.Add(encodeIDs([]string{"dev-1", "", "ABCDEF-0123456789"}))
	f.Add([]byte{0x80})
	f.Add([]byte{0x05, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := decodeIDs(b)
		if err != nil {
			return
		}
		again, err := decodeIDs(encodeIDs(ids))
		if err != nil || !slices.Equal(again, ids) {
			t.Fatalf("round trip of %q: %q, %v", ids, again, err)
		}
		if len(ids) > len(b) {
			t.Fatalf("%d ids from %d bytes", len(ids), len(b))
		}
	})
}
