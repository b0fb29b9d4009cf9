package registry

import (
	"github.com/crrelay/crrelay/internal/scramcred"

	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"
)

var testKey = bytes.Repeat([]byte{0x42}, KeyLen)

// memStore is an in-memory Store. Load visits keys in map order, which
// exercises the registry's sort for engines without key order.
type memStore struct {
	mu      sync.Mutex
	buckets map[Bucket]map[string][]byte
	fail    error // when set, Write fails with it
}

func newMemStore() *memStore {
	return &memStore{buckets: map[Bucket]map[string][]byte{
		BucketMeta: {}, BucketDevices: {}, BucketLive: {},
	}}
}

func (m *memStore) Write(ops []Op) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	for _, op := range ops {
		if op.Value == nil {
			delete(m.buckets[op.Bucket], string(op.Key))
		} else {
			m.buckets[op.Bucket][string(op.Key)] = bytes.Clone(op.Value)
		}
	}
	return nil
}

func (m *memStore) Load(b Bucket, fn func(k, v []byte) error) error {
	m.mu.Lock()
	snap := maps.Clone(m.buckets[b])
	m.mu.Unlock()
	for k, v := range snap {
		if err := fn([]byte(k), v); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Close() error { return nil } // reopenable: restarts reuse it

func (m *memStore) setFail(err error) {
	m.mu.Lock()
	m.fail = err
	m.mu.Unlock()
}

// countingStore is the wrapping fake the STYLE asks for: it records every
// Write so tests can count batches.
type countingStore struct {
	Store
	mu     sync.Mutex
	writes [][]Op
}

func (c *countingStore) Write(ops []Op) error {
	c.mu.Lock()
	c.writes = append(c.writes, slices.Clone(ops))
	c.mu.Unlock()
	return c.Store.Write(ops)
}

func (c *countingStore) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes)
}

func (c *countingStore) since(n int) [][]Op {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes[n:])
}

func open(t testing.TB, st Store) *Registry {
	t.Helper()
	r, err := New(st, Options{Key: testKey})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// testXMPPCredentials are the stored form of the password "xmpp-pass",
// derived once with one iteration: a plain password would be salted at
// every Put (milliseconds each) and come back changed.
var testXMPPCredentials = func() string {
	c, err := scramcred.DeriveWith("xmpp-pass", []byte("test-salt"), 1)
	if err != nil {
		panic(err)
	}
	return c.String()
}()

// testDevice returns a device with every field set, unique per i.
func testDevice(i int) Device {
	return Device{
		ID:                   fmt.Sprintf("dev-%06d", i),
		ConnectionRequestURL: fmt.Sprintf("http://10.%d.%d.%d:7547/cr", i>>16&255, i>>8&255, i&255),
		Username:             fmt.Sprintf("cr-user-%d", i),
		Password:             fmt.Sprintf("cr-pass-%d", i),
		AllowBasic:           i%2 == 0,
		STUNUsername:         fmt.Sprintf("stun-%d", i),
		STUNPassword:         fmt.Sprintf("stun-pass-%d", i),
		UDPAddress:           fmt.Sprintf("192.0.%d.%d:%d", i>>8&255, i&255, 7547+i>>16),
		XMPPJID:              fmt.Sprintf("cpe%d@xmpp.example.net/cr", i),
		XMPPPassword:         testXMPPCredentials,
		Transports:           []Transport{TransportXMPP, TransportUDP, TransportHTTP},
	}
}

func mustPut(t testing.TB, r *Registry, d Device) Device {
	t.Helper()
	saved, _, err := r.Put(context.Background(), d)
	if err != nil {
		t.Fatalf("Put %s: %v", d.ID, err)
	}
	return saved
}

// sameDevice compares everything but the timestamps.
func sameDevice(t testing.TB, got, want Device) {
	t.Helper()
	got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if len(got.Transports) == 0 && len(want.Transports) == 0 {
		got.Transports, want.Transports = nil, nil
	}
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Errorf("device\n got %#v\nwant %#v", got, want)
	}
}

// fakeClock hands out strictly increasing times.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}
