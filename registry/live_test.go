package registry

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

func TestLiveFlushBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := &countingStore{Store: newMemStore()}
		r := open(t, cs)
		ids := []string{mustPut(t, r, testDevice(1)).ID, mustPut(t, r, testDevice(2)).ID, mustPut(t, r, testDevice(3)).ID}
		base := cs.count()

		for i := range 1000 {
			r.RecordWake(ids[i%len(ids)], WakeRecord{Status: fmt.Sprint(i)})
			if !r.UpdateLive(ids[i%len(ids)], func(*Live) {}) {
				t.Fatal("UpdateLive on a known device returned false")
			}
		}
		if r.UpdateLive("unknown", func(*Live) { t.Error("fn called for an unknown id") }) {
			t.Error("UpdateLive on an unknown device returned true")
		}
		r.RecordWake("unknown", WakeRecord{}) // no-op

		time.Sleep(DefaultLiveFlushInterval - time.Millisecond)
		synctest.Wait()
		if n := cs.count() - base; n != 0 {
			t.Fatalf("%d writes before the flush interval", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		writes := cs.since(base)
		if len(writes) != 1 {
			t.Fatalf("%d writes for 2000 live updates, want 1 batch", len(writes))
		}
		if len(writes[0]) != len(ids) {
			t.Errorf("batch has %d ops, want one per device (%d)", len(writes[0]), len(ids))
		}
		for _, op := range writes[0] {
			l, err := decodeLive(op.Value)
			if op.Bucket != BucketLive || err != nil || len(l.Wakes) != MaxWakeRecords {
				t.Errorf("op %s %s: %v %v", op.Bucket, op.Key, l, err)
			}
		}
		if l, _ := r.Live(ids[0]); l.Wakes[MaxWakeRecords-1].Status != "999" {
			t.Errorf("newest wake = %q, want 999", l.Wakes[MaxWakeRecords-1].Status)
		}

		// Nothing dirty: the next tick writes nothing.
		time.Sleep(DefaultLiveFlushInterval)
		synctest.Wait()
		if n := cs.count() - base; n != 1 {
			t.Errorf("%d writes after an idle interval, want still 1", n)
		}

		// Close flushes what is dirty, without waiting for the tick.
		r.RecordWake(ids[1], WakeRecord{Status: "last"})
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		writes = cs.since(base)
		if len(writes) != 2 || len(writes[1]) != 1 || string(writes[1][0].Key) != ids[1] {
			t.Errorf("Close did not flush the dirty device: %d writes", len(writes))
		}
	})
}

func TestLiveFlushInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := &countingStore{Store: newMemStore()}
		r, err := New(cs, Options{Key: testKey, LiveFlushInterval: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		id := mustPut(t, r, testDevice(1)).ID
		base := cs.count()
		r.RecordWake(id, WakeRecord{Status: "sent"})
		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		if cs.count() != base {
			t.Fatal("flushed before the configured interval")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if cs.count() != base+1 {
			t.Fatalf("%d writes after the interval, want 1", cs.count()-base)
		}
	})
}

func TestFlushAndDelete(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r := open(t, st)
	a, b := mustPut(t, r, testDevice(1)).ID, mustPut(t, r, testDevice(2)).ID
	r.RecordWake(a, WakeRecord{Status: "sent"})
	r.RecordWake(b, WakeRecord{Status: "sent"})
	if err := r.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.buckets[BucketLive][a]; ok {
		t.Error("a deleted device's live state was written")
	}
	if _, ok := st.buckets[BucketLive][b]; !ok {
		t.Error("live state not written by Flush")
	}
	if err := r.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.buckets[BucketLive][b]; ok {
		t.Error("Delete left the live state in the store")
	}

	// A re-created device starts without the old live state.
	mustPut(t, r, testDevice(2))
	if l, ok := r.Live(b); !ok || len(l.Wakes) != 0 {
		t.Errorf("re-created device has live state %v", l)
	}
}

func TestFailedFlushRetries(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r := open(t, st)
	id := mustPut(t, r, testDevice(1)).ID
	r.RecordWake(id, WakeRecord{Status: "sent"})
	st.setFail(fmt.Errorf("disk full"))
	if err := r.Flush(ctx); err == nil {
		t.Fatal("Flush hid the store's error")
	}
	st.setFail(nil)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.buckets[BucketLive][id]; !ok {
		t.Error("live state of a failed flush was not written by the next one")
	}
}

func TestOrphanLiveDropped(t *testing.T) {
	st := newMemStore()
	st.buckets[BucketLive]["ghost"] = []byte(`{"wakes":[{"status":"sent"}]}`)
	r := open(t, st)
	if _, ok := r.Live("ghost"); ok {
		t.Error("live state without a device loaded")
	}
	if _, ok := st.buckets[BucketLive]["ghost"]; ok {
		t.Error("orphan live record left in the store")
	}
}
