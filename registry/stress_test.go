package registry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestConcurrentMixed runs writes, deletes, live updates, flushes and
// reads on a few contested ids and keys at once, then checks that a
// registry reopened from the store sees exactly what the first one saw,
// live state included, with no orphaned live records.
func TestConcurrentMixed(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r, err := New(st, Options{Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for range 300 {
				id := fmt.Sprintf("dev-%02d", rng.IntN(20))
				var err error
				switch op := rng.IntN(10); {
				case op < 3:
					d := Device{ID: id, STUNUsername: fmt.Sprintf("stun-%d", rng.IntN(30)),
						UDPAddress: fmt.Sprintf("192.0.2.%d:7547", rng.IntN(30))}
					_, _, err = r.Put(ctx, d)
				case op < 4:
					_, err = r.Update(ctx, id, func(d *Device) error {
						d.XMPPJID = fmt.Sprintf("cpe%d@example.net/r%d", rng.IntN(30), w)
						return nil
					})
				case op < 5:
					err = r.Delete(ctx, id)
				case op < 8:
					r.RecordWake(id, WakeRecord{Status: fmt.Sprintf("w%d", w)})
				case op < 9:
					err = r.Flush(ctx)
				default:
					r.List("", 5)
					r.BySTUNUsername("stun-1")
					r.Live(id)
				}
				if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	type state struct {
		d Device
		l Live
	}
	before := map[string]state{}
	devs, _ := r.List("", MaxListLimit)
	for _, d := range devs {
		l, _ := r.Live(d.ID)
		before[d.ID] = state{d, l}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for id := range st.buckets[BucketLive] {
		if _, ok := st.buckets[BucketDevices][id]; !ok {
			t.Errorf("live record for deleted device %s left in the store", id)
		}
	}

	r2 := open(t, st)
	if r2.Len() != len(before) {
		t.Errorf("reopened with %d devices, want %d", r2.Len(), len(before))
	}
	seen := map[string]string{}
	for id, want := range before {
		got, ok := r2.Get(id)
		if !ok {
			t.Errorf("%s lost", id)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(want.d) {
			t.Errorf("%s\n got %v\nwant %v", id, got, want.d)
		}
		if l, _ := r2.Live(id); fmt.Sprint(l) != fmt.Sprint(want.l) {
			t.Errorf("%s live\n got %v\nwant %v", id, l, want.l)
		}
		for _, k := range []string{"s" + got.STUNUsername, "u" + got.UDPAddress, "j" + jidKey(got.XMPPJID)} {
			if len(k) > 1 && seen[k] != "" {
				t.Errorf("%s and %s share %s", seen[k], id, k)
			}
			seen[k] = id
		}
		if d, ok := r2.BySTUNUsername(got.STUNUsername); got.STUNUsername != "" && (!ok || d.ID != id) {
			t.Errorf("BySTUNUsername(%s) = %s, %v", got.STUNUsername, d.ID, ok)
		}
	}
}
