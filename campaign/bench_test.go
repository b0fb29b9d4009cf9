package campaign

import (
	"context"
	"fmt"
	"testing"
	"time"
)

type nopWaker struct{}

func (nopWaker) Wake(context.Context, string, WakeOptions) Outcome {
	return Outcome{Status: "delivered"}
}

// BenchmarkCampaign runs campaigns of 100,000 devices with a Waker that
// does nothing, so what is measured is the campaign machinery: claims,
// hand-off, result recording and the bbolt commits (fsynced, in a
// temporary directory). wakes/s counts from Start's return to the Done
// event; ns/op includes Start (deduplicating and storing the ids).
func BenchmarkCampaign(b *testing.B) {
	const n = 100_000
	ids := makeIDs(n)
	for _, conc := range []int{64, 1024} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			m, pub := newTestManager(b, Config{Waker: nopWaker{}})
			commits := m.commits.Load()
			var running time.Duration
			b.ReportAllocs()
			for b.Loop() {
				c := mustStart(b, m, Spec{Devices: ids, Concurrency: conc})
				start := time.Now()
				c = waitDone(b, pub, c.ID)
				running += time.Since(start)
				if c.Counts["delivered"] != n {
					b.Fatalf("counts %v", c.Counts)
				}
			}
			b.ReportMetric(float64(n*b.N)/running.Seconds(), "wakes/s")
			b.ReportMetric(float64(m.commits.Load()-commits)/float64(b.N), "commits/op")
		})
	}
}
