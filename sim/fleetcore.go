package sim

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
)

// What the three fleets (Fleet over HTTP, STUNFleet, XMPPFleet) share:
// the names and secrets of generated CPEs, the set of CPEs, and
// registration with the appliance. Their CPEs, devices and runs differ and
// stay with each fleet.

// cpeName is the name of a fleet's nth generated CPE, n from 1: the prefix
// and a six-digit index.
func cpeName(prefix string, n int) string { return fmt.Sprintf("%s%06d", prefix, n) }

// checkPrefix checks that a fleet's prefix makes valid names.
func checkPrefix(prefix string) error {
	if !validName(cpeName(prefix, 1)) {
		return fmt.Errorf("prefix %q: %w", prefix, ErrBadName)
	}
	return nil
}

// credKey derives a fleet's generated secrets.
type credKey [32]byte

// newCredKey returns a random key when seed is zero, else the key of seed
// in the domain label, so that two processes given the same seed (a
// simulator and a registration tool) agree on the secrets, and fleets
// given the same seed do not share them.
func newCredKey(label string, seed int64) credKey {
	if seed == 0 {
		var k credKey
		rand.Read(k[:])
		return k
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seed))
	return sha256.Sum256(append([]byte(label+"\x00"), b[:]...))
}

// mac is HMAC-SHA-256 of msg under k, cut to 80 bits and in hex: a
// 20-character password.
func (k *credKey) mac(msg string) string {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil)[:10])
}

// secret derives a generated CPE's password of the given use ("cr",
// "stun", "xmpp"), so that a CPE's passwords differ from each other.
func (k *credKey) secret(use, name string) string { return k.mac(use + "\x00" + name) }

// cpeSet is a fleet's CPEs, by name and in the order they were added, and
// whether the fleet runs.
type cpeSet[C any] struct {
	noun       string // what a CPE is called in errors: "STUN CPE"
	errRunning error  // returned by add while running; nil allows it

	mu      sync.RWMutex
	running bool
	byName  map[string]C
	order   []C
}

// newCPESet returns an empty set with room for n CPEs.
func newCPESet[C any](noun string, errRunning error, n int) *cpeSet[C] {
	return &cpeSet[C]{noun: noun, errRunning: errRunning, byName: make(map[string]C, n), order: make([]C, 0, n)}
}

// add adds c under name, unless a CPE has that name already, and returns
// it.
func (s *cpeSet[C]) add(name string, c C) (C, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running && s.errRunning != nil {
		var none C
		return none, s.errRunning
	}
	if _, dup := s.byName[name]; dup {
		var none C
		return none, fmt.Errorf("%s %q: %w", s.noun, name, ErrDuplicateName)
	}
	s.byName[name] = c
	s.order = append(s.order, c)
	return c, nil
}

// get returns the named CPE, or the zero C.
func (s *cpeSet[C]) get(name string) C {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byName[name]
}

// all returns the CPEs in the order they were added. Later adds do not
// write into the slice.
func (s *cpeSet[C]) all() []C {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.order[:len(s.order):len(s.order)]
}

// start marks the set running and returns its CPEs, or errRunning if it
// runs already.
func (s *cpeSet[C]) start() ([]C, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil, s.errRunning
	}
	s.running = true
	return s.order[:len(s.order):len(s.order)], nil
}

// stop marks the set stopped, so that it may start again.
func (s *cpeSet[C]) stop() {
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
}

// register puts every device through put, at most concurrency at a time
// (at least one). It stops at the first error and returns it, wrapped with
// the device's id.
func register[D any](ctx context.Context, devices []D, concurrency int, id func(D) string, put func(context.Context, D) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, concurrency))
	for _, d := range devices {
		if gctx.Err() != nil {
			break // a registration failed, or ctx was cancelled
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err // another registration failed while this one waited
			}
			if err := put(gctx, d); err != nil {
				return fmt.Errorf("register %s: %w", id(d), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}
