package registry

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// populate writes n devices (testDevice(0..n-1)) straight into st, in
// batches of 10,000 per transaction: the fast path for building a big
// store, not how the appliance writes.
func populate(tb testing.TB, st Store, n int) {
	tb.Helper()
	s, err := newSealer(testKey)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	ops := make([]Op, 0, 10_000)
	for i := range n {
		d := testDevice(i)
		d.CreatedAt, d.UpdatedAt = now, now
		ops = append(ops, Op{Bucket: BucketDevices, Key: []byte(d.ID), Value: encodeDevice(nil, s, newRecord(&d))})
		if len(ops) == cap(ops) || i == n-1 {
			if err := st.Write(ops); err != nil {
				tb.Fatal(err)
			}
			ops = ops[:0]
		}
	}
}

func benchRegistry(b *testing.B, n int) *Registry {
	st := newMemStore()
	populate(b, st, n)
	return open(b, st)
}

func BenchmarkGet(b *testing.B) {
	const n = 10_000
	r := benchRegistry(b, n)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = testDevice(i).ID
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := r.Get(ids[i%n]); !ok {
			b.Fatal("not found")
		}
		i++
	}
}

func BenchmarkByJID(b *testing.B) {
	const n = 10_000
	r := benchRegistry(b, n)
	jids := make([]string, n)
	for i := range jids {
		jids[i] = testDevice(i).XMPPJID // full JID, as a stanza's from
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := r.ByJID(jids[i%n]); !ok {
				b.Fatal("not found")
			}
			i++
		}
	})
}

// BenchmarkPut writes to a real bbolt file, fsync included. serial is one
// writer's latency; parallel, 64 writers, shows group commit sharing fsyncs.
func BenchmarkPut(b *testing.B) {
	openPut := func(b *testing.B) *Registry {
		st, err := OpenBolt(filepath.Join(b.TempDir(), "registry.db"))
		if err != nil {
			b.Fatal(err)
		}
		return open(b, st)
	}
	b.Run("serial", func(b *testing.B) {
		r := openPut(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, _, err := r.Put(context.Background(), testDevice(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		r := openPut(b)
		var next atomic.Int64
		b.ReportAllocs()
		// RunParallel starts SetParallelism × GOMAXPROCS goroutines.
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := r.Put(context.Background(), testDevice(int(next.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkLoad builds a bbolt store of CRRELAY_BENCH_DEVICES devices
// (default 10,000) and measures opening it: ms/load is the time from
// OpenBolt to a ready Registry, bytes/device the heap it holds.
func BenchmarkLoad(b *testing.B) {
	n := 10_000
	if s := os.Getenv("CRRELAY_BENCH_DEVICES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("CRRELAY_BENCH_DEVICES=%q", s)
		}
		n = v
	}
	path := filepath.Join(b.TempDir(), "registry.db")
	st, err := OpenBolt(path)
	if err != nil {
		b.Fatal(err)
	}
	populate(b, st, n)
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	var ms, perDevice float64
	for b.Loop() {
		var before, after runtime.MemStats
		// Twice: the first GC only moves sync.Pool contents (bbolt's
		// page pool) to the victim cache.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		st, err := OpenBolt(path)
		if err != nil {
			b.Fatal(err)
		}
		r, err := New(st, Options{Key: testKey})
		if err != nil {
			b.Fatal(err)
		}
		ms = float64(time.Since(start).Microseconds()) / 1000
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perDevice = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / float64(n)
		if r.Len() != n {
			b.Fatalf("loaded %d devices, want %d", r.Len(), n)
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(ms, "ms/load")
	b.ReportMetric(perDevice, "bytes/device")
	b.ReportMetric(float64(n), "devices")
}

// BenchmarkObserveBindingRefresh is the STUN server's hot path: keepalives
// from 10,000 known devices, each 20s after the device's last (so keepalive
// smoothing and NAT evidence run, and every other keepalive moves LastSeen
// far enough to be marked for the flush, which runs meanwhile).
func BenchmarkObserveBindingRefresh(b *testing.B) {
	const n = 10_000
	setup := func(b *testing.B) (*Registry, []BindingObservation) {
		r := benchRegistry(b, n)
		obs := make([]BindingObservation, n)
		base := time.Now()
		for i := range obs {
			obs[i] = BindingObservation{
				STUNUsername: testDevice(i).STUNUsername,
				Mapped:       netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), 40000),
				Local:        netip.MustParseAddrPort("198.51.100.1:3478"),
				At:           base,
			}
			if res, err := r.ObserveBinding(obs[i]); err != nil || res.Outcome != BindingNew {
				b.Fatal(res, err)
			}
		}
		return r, obs
	}
	const keepalive = 20 * time.Second
	b.Run("serial", func(b *testing.B) {
		r, obs := setup(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			o := obs[i%n]
			o.At = o.At.Add(time.Duration(i/n+1) * keepalive)
			if res, err := r.ObserveBinding(o); err != nil || res.Outcome != BindingRefreshed {
				b.Fatal(res, err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		r, obs := setup(b)
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			// Each goroutine its own devices, so each device's
			// requests stay in order as a CPE's do.
			w, p := int(next.Add(1)-1), runtime.GOMAXPROCS(0)
			mine := max(1, n/p)
			for k := 0; pb.Next(); k++ {
				o := obs[(w+p*(k%mine))%n]
				o.At = o.At.Add(time.Duration(k/mine+1) * keepalive)
				if _, err := r.ObserveBinding(o); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkObserveBindingPending is a flood of binding requests for
// usernames no device has, beyond the pending table's bound.
func BenchmarkObserveBindingPending(b *testing.B) {
	st := newMemStore()
	r, err := New(st, Options{Key: testKey, MaxPendingBindings: 10_000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	users := make([]string, 100_000)
	for i := range users {
		users[i] = "unknown-" + strconv.Itoa(i)
	}
	o := BindingObservation{Mapped: netip.MustParseAddrPort("203.0.113.7:40000"), Local: netip.MustParseAddrPort("198.51.100.1:3478")}
	base := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		o.STUNUsername = users[i%len(users)]
		o.At = base.Add(time.Duration(i) * time.Millisecond)
		if res, err := r.ObserveBinding(o); err != nil || res.Outcome != BindingPending {
			b.Fatal(res, err)
		}
		i++
	}
}
