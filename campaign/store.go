package campaign

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Store layout (format version 1):
//
//	info/version               "1"
//	campaigns/<id>/meta        JSON meta
//	campaigns/<id>/cursor      8 bytes big-endian: devices [0, cursor) are claimed
//	campaigns/<id>/d<chunk>    ids chunk*chunkSize..: uvarint length + bytes, repeated
//	campaigns/<id>/r<chunk>    one result code per device of the chunk; missing = none
//
// <chunk> is 4 bytes big-endian, so chunks sort in order.
const (
	formatVersion = "1"
	chunkSize     = 4096
	storeFile     = "campaigns.db"
)

var (
	bucketInfo      = []byte("info")
	bucketCampaigns = []byte("campaigns")
	keyVersion      = []byte("version")
	keyMeta         = []byte("meta")
	keyCursor       = []byte("cursor")
)

// Result codes as stored, one byte per device. The values are part of the
// file format: never renumber, only add.
const (
	codeNone     byte = 0 // no result (yet)
	codeNotFound byte = 10
	codeUnknown  byte = 11
	// codeReleased marks a claimed device that was certainly not woken
	// (the campaign stopped while it waited for a busy Waker): it is
	// pending, and woken after a restart.
	codeReleased byte = 0xFF
	codeError    byte = 9
	numCodes          = 12
)

// statusWords maps result codes to status words.
var statusWords = [numCodes]string{
	1:            "delivered",
	2:            "sent",
	3:            "auth_failed",
	4:            "throttled",
	5:            "refused",
	6:            "offline",
	7:            "unreachable",
	8:            "timeout",
	codeError:    "error",
	codeNotFound: "not_found",
	codeUnknown:  "unknown",
}

var statusCodes = func() map[string]byte {
	m := make(map[string]byte, numCodes)
	for c, w := range statusWords {
		if w != "" {
			m[w] = byte(c)
		}
	}
	return m
}()

// meta is the persisted description of a campaign. Counts is as of the
// last commit; for a running campaign the result chunks are authoritative.
type meta struct {
	ID         string         `json:"id"`
	State      string         `json:"state"`
	CreatedAt  time.Time      `json:"created_at"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	Spec       Spec           `json:"spec"` // Devices only when <= MaxListedDevices
	Total      int            `json:"total"`
	Counts     map[string]int `json:"counts,omitempty"`
}

func chunkKey(kind byte, chunk int) []byte {
	k := make([]byte, 5)
	k[0] = kind
	binary.BigEndian.PutUint32(k[1:], uint32(chunk))
	return k
}

func devKey(chunk int) []byte    { return chunkKey('d', chunk) }
func resultKey(chunk int) []byte { return chunkKey('r', chunk) }

func encodeCursor(n int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

func decodeCursor(b []byte, total int) (int, error) {
	if len(b) != 8 {
		return 0, errors.New("bad cursor")
	}
	n := binary.BigEndian.Uint64(b)
	if n > uint64(total) {
		return 0, fmt.Errorf("cursor %d past %d devices", n, total)
	}
	return int(n), nil
}

func encodeIDs(ids []string) []byte {
	n := 0
	for _, id := range ids {
		n += binary.MaxVarintLen16 + len(id)
	}
	b := make([]byte, 0, n)
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
	}
	return b
}

// decodeIDs decodes a device chunk. It never panics on bad input.
func decodeIDs(b []byte) ([]string, error) {
	var ids []string
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("bad device chunk")
		}
		ids = append(ids, string(b[k:k+int(n)]))
		b = b[k+int(n):]
	}
	return ids, nil
}

func numChunks(total int) int { return (total + chunkSize - 1) / chunkSize }

// openStore opens or creates the store in dir.
func openStore(dir string) (*bolt.DB, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("campaign: data dir: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("campaign: data dir %s: %w", dir, fs.ErrInvalid)
	}
	path := filepath.Join(dir, storeFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		// Fail rather than hang if another process holds the file.
		Timeout: time.Second,
		// As the registry: cheaper commits, the freelist is rebuilt at
		// open.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("campaign: %s is locked by another process: %w", path, err)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
		return nil, fmt.Errorf("%w: %s: %w (move it away to start with no campaigns)", ErrCorrupt, path, err)
	case err != nil:
		return nil, fmt.Errorf("campaign: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		info := tx.Bucket(bucketInfo)
		if info == nil {
			if tx.Bucket(bucketCampaigns) != nil {
				return fmt.Errorf("%w: %s: no format version", ErrCorrupt, path)
			}
			if info, err = tx.CreateBucket(bucketInfo); err != nil {
				return err
			}
			if err := info.Put(keyVersion, []byte(formatVersion)); err != nil {
				return err
			}
		}
		if v := info.Get(keyVersion); string(v) != formatVersion {
			return fmt.Errorf("%w: %s: format version %q, want %q", ErrCorrupt, path, v, formatVersion)
		}
		_, err := tx.CreateBucketIfNotExists(bucketCampaigns)
		return err
	})
	if err != nil {
		db.Close()
		if errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, fmt.Errorf("campaign: initialising %s: %w", path, err)
	}
	return db, nil
}

// loadMetas reads every campaign's meta. bbolt panics on some damaged
// pages; that is reported as ErrCorrupt rather than taking the appliance
// down.
func loadMetas(db *bolt.DB) (metas []meta, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, db.Path(), r)
		}
	}()
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCampaigns).ForEachBucket(func(k []byte) error {
			b := tx.Bucket(bucketCampaigns).Bucket(k)
			var m meta
			if err := json.Unmarshal(b.Get(keyMeta), &m); err != nil {
				return fmt.Errorf("%w: %s: campaign %q: meta: %v", ErrCorrupt, db.Path(), k, err)
			}
			if m.ID != string(k) || m.Total < 0 {
				return fmt.Errorf("%w: %s: campaign %q: meta does not match", ErrCorrupt, db.Path(), k)
			}
			switch m.State {
			case StateRunning, StateDone, StateCancelled:
			default:
				return fmt.Errorf("%w: %s: campaign %q: state %q", ErrCorrupt, db.Path(), k, m.State)
			}
			if _, err := decodeCursor(b.Get(keyCursor), m.Total); err != nil {
				return fmt.Errorf("%w: %s: campaign %q: %v", ErrCorrupt, db.Path(), k, err)
			}
			metas = append(metas, m)
			return nil
		})
	})
	return metas, err
}

// loadResults reads a campaign's cursor and results.
func loadResults(b *bolt.Bucket, total int) (cursor int, results []byte, err error) {
	cursor, err = decodeCursor(b.Get(keyCursor), total)
	if err != nil {
		return 0, nil, err
	}
	results = make([]byte, total)
	for c := range numChunks(total) {
		v := b.Get(resultKey(c))
		lo, hi := c*chunkSize, min(total, (c+1)*chunkSize)
		if v != nil && len(v) != hi-lo {
			return 0, nil, fmt.Errorf("result chunk %d: %d bytes, want %d", c, len(v), hi-lo)
		}
		copy(results[lo:hi], v)
	}
	return cursor, results, nil
}

// loadIDs reads device chunk c.
func loadIDs(b *bolt.Bucket, c, total int) ([]string, error) {
	ids, err := decodeIDs(b.Get(devKey(c)))
	if err != nil {
		return nil, fmt.Errorf("device chunk %d: %w", c, err)
	}
	if want := min(total, (c+1)*chunkSize) - c*chunkSize; len(ids) != want {
		return nil, fmt.Errorf("device chunk %d: %d ids, want %d", c, len(ids), want)
	}
	return ids, nil
}

// wakeOptions are the options every wake of the campaign carries.
func (md *meta) wakeOptions() WakeOptions {
	o := md.Spec.wakeOptions()
	o.Campaign = md.ID
	return o
}
