// Package registrytest opens real registries for other packages' tests:
// a bbolt file in the test's temporary directory and a random key,
// closed when the test ends.
package registrytest

import (
	"crypto/rand"
	"path/filepath"
	"testing"

	"github.com/crrelay/crrelay/registry"
)

// New opens an empty registry for t.
func New(t testing.TB) *registry.Registry {
	t.Helper()
	store, err := registry.OpenBolt(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, registry.KeyLen)
	rand.Read(key)
	r, err := registry.New(store, registry.Options{Key: key})
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("closing the registry: %v", err)
		}
	})
	return r
}
