package registry

import "fmt"

// Bucket names a family of records in a Store. An engine maps it to
// whatever it has: a bbolt bucket, a Redis key prefix.
type Bucket uint8

// The buckets the registry uses.
const (
	BucketMeta    Bucket = iota + 1 // store-wide records: format, key check
	BucketDevices                   // device id → encoded device, secrets sealed
	BucketLive                      // device id → encoded Live
)

// String returns the bucket's name, which engines may use as a storage name.
func (b Bucket) String() string {
	switch b {
	case BucketMeta:
		return "meta"
	case BucketDevices:
		return "devices"
	case BucketLive:
		return "live"
	}
	return fmt.Sprintf("bucket(%d)", uint8(b))
}

// Buckets lists every bucket, for engines that create them up front.
var Buckets = [...]Bucket{BucketMeta, BucketDevices, BucketLive}

// Op is one change in a Store write: it sets Key to Value in Bucket, or
// deletes Key when Value is nil.
type Op struct {
	Bucket Bucket
	Key    []byte
	Value  []byte
}

// Store is the byte-level engine under the registry. The registry encodes
// and seals records above it, so an engine only ever sees sealed secrets and
// needs no knowledge of devices.
//
// The registry serialises its calls to Write (one writer at a time, each
// call already a group of concurrent requests) and calls Load only while
// starting, so an engine needs no locking of its own beyond what Close
// requires.
type Store interface {
	// Write applies ops in order, all or none, and returns nil only once
	// the change is durable: it survives a crash of the process and of
	// the machine.
	Write(ops []Op) error
	// Load calls fn for every record in b, in any order. key and value
	// are only valid during the call. An error from fn stops the
	// iteration and is returned.
	Load(b Bucket, fn func(key, value []byte) error) error
	// Close releases the engine. Calls after Close fail.
	Close() error
}
