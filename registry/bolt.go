package registry

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltStore is the embedded Store: one bbolt file in the data directory.
// Every Write is one bbolt transaction, committed with fsync before it
// returns, so an acknowledged write survives kill -9 and power loss (as
// far as the disk honours fsync). The registry groups concurrent writes
// into one Write, which is what makes that affordable.
type BoltStore struct {
	db *bolt.DB
}

var _ Store = (*BoltStore)(nil)

// OpenBolt opens or creates the bbolt file at path (mode 0600). It fails
// after a second, rather than hanging, if another process holds the file.
func OpenBolt(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: time.Second,
		// The freelist is rebuilt by scanning at open instead of
		// being written by every commit: cheaper commits for a
		// slightly slower start.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("registry: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range Buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b.String())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("registry: initialising %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

// Write implements Store.
func (s *BoltStore) Write(ops []Op) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, op := range ops {
			b := tx.Bucket([]byte(op.Bucket.String()))
			if b == nil {
				return fmt.Errorf("registry: no bucket %s", op.Bucket)
			}
			var err error
			if op.Value == nil {
				err = b.Delete(op.Key)
			} else {
				err = b.Put(op.Key, op.Value)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Load implements Store, in key order.
func (s *BoltStore) Load(bk Bucket, fn func(key, value []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bk.String()))
		if b == nil {
			return fmt.Errorf("registry: no bucket %s", bk)
		}
		return b.ForEach(fn)
	})
}

// Close implements Store.
func (s *BoltStore) Close() error { return s.db.Close() }
