package campaign

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
)

// Manager runs campaigns and keeps them in its store. It is safe for
// concurrent use.
type Manager struct {
	cfg     Config
	db      *bolt.DB
	log     *slog.Logger
	wakes   [numCodes]prometheus.Counter
	running prometheus.Gauge
	commits atomic.Int64 // write transactions, for the benchmark

	mu       sync.Mutex
	entries  map[string]*entry
	runners  map[string]*runner
	starting int   // Starts between reserving a slot and registering
	lastMS   int64 // of the newest id, so ids sort by creation
	ran      bool
	closed   bool
	quit     chan struct{}  // closed when the Manager starts stopping
	wg       sync.WaitGroup // runners, and calls that use the store

	closeOnce sync.Once
	closeErr  error
}

// New opens (or creates) the store in cfg.Dir and loads the campaigns in
// it. Campaigns that were running stay so, idle until Run resumes them. An
// unreadable store is an error wrapping ErrCorrupt.
func New(cfg Config) (*Manager, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		entries: map[string]*entry{},
		runners: map[string]*runner{},
		quit:    make(chan struct{}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crrelay_campaigns_running",
			Help: "Campaigns running now.",
		}),
	}
	wakes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crrelay_campaign_wakes_total",
		Help: "Devices given a result by campaigns, by result status.",
	}, []string{"status"})
	for c, w := range statusWords {
		if w != "" {
			m.wakes[c] = wakes.WithLabelValues(w)
		}
	}
	db, err := openStore(cfg.Dir)
	if err != nil {
		return nil, err
	}
	m.db = db
	metas, err := loadMetas(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{wakes, m.running} {
			if err := cfg.Metrics.Register(c); err != nil {
				db.Close()
				return nil, fmt.Errorf("campaign: register metrics: %w", err)
			}
		}
	}
	for _, md := range metas {
		e := &entry{meta: md}
		for w, n := range md.Counts {
			if c, ok := statusCodes[w]; ok {
				e.counts[c] = n
			}
		}
		m.entries[md.ID] = e
		if ms, err := strconv.ParseInt(md.ID[:min(12, len(md.ID))], 16, 64); err == nil {
			m.lastMS = max(m.lastMS, ms)
		}
	}
	m.prune()
	return m, nil
}

// Start validates s, snapshots its devices, stores them and starts waking
// them in the background. It returns at once, with the campaign running
// (or done, if there is no device). Errors: ErrBadSpec (wrapping what is
// wrong; a filter the Selector refuses is one), ErrTooMany, ErrClosed, or
// an internal error (the store failed, or the Selector returned an empty
// or over-long id). ctx bounds only the Selector call, not the campaign.
func (m *Manager) Start(ctx context.Context, s Spec) (Campaign, error) {
	s, err := m.normalize(s)
	if err != nil {
		return Campaign{}, err
	}
	if err := m.reserve(); err != nil {
		return Campaign{}, err
	}
	defer m.release()

	ids := s.Devices
	if s.Filter != "" {
		ids, err = m.cfg.Selector.Select(ctx, s.Filter)
		if err != nil {
			if ctx.Err() != nil {
				return Campaign{}, fmt.Errorf("campaign: selecting %q: %w", s.Filter, err)
			}
			return Campaign{}, fmt.Errorf("%w: filter %q: %w", ErrBadSpec, s.Filter, err)
		}
		if ids, err = uniqueIDs(ids); err != nil {
			return Campaign{}, fmt.Errorf("campaign: filter %q: selector returned %w", s.Filter, err)
		}
	}
	if len(ids) > m.cfg.MaxDevices {
		return Campaign{}, fmt.Errorf("%w: %d devices, at most %d", ErrBadSpec, len(ids), m.cfg.MaxDevices)
	}

	now := time.Now().UTC()
	m.mu.Lock()
	id := m.newID(now)
	m.mu.Unlock()
	md := meta{ID: id, State: StateRunning, CreatedAt: now, Spec: s, Total: len(ids)}
	if s.Filter != "" || len(ids) > MaxListedDevices {
		md.Spec.Devices = nil
	}
	if len(ids) == 0 {
		md.State, md.FinishedAt = StateDone, &now
	}
	mb, err := json.Marshal(md)
	if err != nil {
		return Campaign{}, fmt.Errorf("campaign: %w", err)
	}
	err = m.update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketCampaigns).CreateBucket([]byte(id))
		if err != nil {
			return err
		}
		if err := b.Put(keyMeta, mb); err != nil {
			return err
		}
		if err := b.Put(keyCursor, encodeCursor(0)); err != nil {
			return err
		}
		for c := range numChunks(len(ids)) {
			if err := b.Put(devKey(c), encodeIDs(ids[c*chunkSize:min(len(ids), (c+1)*chunkSize)])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Campaign{}, fmt.Errorf("campaign: storing %s: %w", id, err)
	}

	e := &entry{meta: md}
	m.mu.Lock()
	m.entries[id] = e
	if md.State == StateRunning && !m.closed {
		// A Manager closed meanwhile leaves the campaign stored as
		// running: it resumes at the next Run.
		e.results = make([]byte, len(ids))
		m.startRunner(e, 0, nil)
	}
	m.mu.Unlock()
	m.log.Info("campaign started", "campaign", id, "devices", len(ids), "filter", s.Filter, "name", s.Name)
	v := e.view(time.Now())
	if md.State != StateRunning {
		m.finished(v)
	}
	return v, nil
}

// Get returns campaign id.
func (m *Manager) Get(id string) (Campaign, bool) {
	m.mu.Lock()
	e := m.entries[id]
	m.mu.Unlock()
	if e == nil {
		return Campaign{}, false
	}
	return e.view(time.Now()), true
}

// List returns every campaign kept, newest first.
func (m *Manager) List() []Campaign {
	m.mu.Lock()
	ids := slices.Sorted(maps.Keys(m.entries))
	es := make([]*entry, len(ids))
	for i, id := range ids {
		es[len(ids)-1-i] = m.entries[id]
	}
	m.mu.Unlock()
	now := time.Now()
	out := make([]Campaign, len(es))
	for i, e := range es {
		out[i] = e.view(now)
	}
	return out
}

// Cancel stops campaign id and returns it as it ends: state cancelled, no
// further device woken, wakes in flight abandoned (see the package doc).
// It returns once the campaign has stopped and its state is stored.
// Cancelling a finished campaign returns it unchanged with an error
// wrapping ErrFinished; a campaign that finished while being cancelled is
// returned done, also with ErrFinished. An unknown id gives ErrNotFound.
func (m *Manager) Cancel(id string) (Campaign, error) {
	if err := m.enter(); err != nil {
		return Campaign{}, err
	}
	defer m.wg.Done()
	m.mu.Lock()
	e, r := m.entries[id], m.runners[id]
	if e == nil {
		m.mu.Unlock()
		return Campaign{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if r != nil {
		r.cancelled.Store(true)
		r.stopDispatch()
		r.abortWakes()
		m.mu.Unlock()
		<-r.exited
		v := e.view(time.Now())
		if v.State != StateCancelled {
			return v, fmt.Errorf("%w: %s is %s", ErrFinished, id, v.State)
		}
		return v, nil
	}
	if st := e.state(); st != StateRunning {
		m.mu.Unlock()
		return e.view(time.Now()), fmt.Errorf("%w: %s is %s", ErrFinished, id, st)
	}
	// Stored as running but not resumed (Run not called yet): settle
	// what the last run left, then mark it cancelled. m.mu keeps Run
	// from resuming it meanwhile.
	_, _, err := m.recover(e, false)
	if err == nil {
		now := time.Now().UTC()
		e.mu.Lock()
		e.meta.State, e.meta.FinishedAt = StateCancelled, &now
		e.mu.Unlock()
		err = m.flush(e, -1, true)
	}
	m.mu.Unlock()
	if err != nil {
		return Campaign{}, fmt.Errorf("campaign: cancelling %s: %w", id, err)
	}
	v := e.view(time.Now())
	m.finished(v)
	return v, nil
}

// Run resumes the campaigns stored as running, then waits until ctx ends
// or Close is called, and stops every campaign cleanly (see Close). Call it
// once, at start-up; Start works before Run is called. It returns nil
// after a clean stop, or an error if a campaign could not be resumed.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	if m.ran {
		m.mu.Unlock()
		return errors.New("campaign: Run called twice")
	}
	m.ran = true
	var err error
	for _, id := range slices.Sorted(maps.Keys(m.entries)) {
		e := m.entries[id]
		if m.runners[id] != nil || e.state() != StateRunning {
			continue
		}
		cursor, requeue, rerr := m.recover(e, true)
		if rerr != nil {
			err = fmt.Errorf("campaign: resuming %s: %w", id, rerr)
			break
		}
		m.startRunner(e, cursor, requeue)
		m.log.Info("campaign resumed", "campaign", id, "claimed", cursor, "requeued", len(requeue))
	}
	m.mu.Unlock()
	if err == nil {
		select {
		case <-ctx.Done():
		case <-m.quit:
		}
	}
	m.shutdown()
	return err
}

// Close stops every campaign cleanly and closes the store: no further
// device is handed out, wakes in flight get Config.Grace to finish, every
// result is stored, and campaigns stay running in the store, to resume at
// the next Run. Further calls return ErrClosed.
func (m *Manager) Close() error {
	m.shutdown()
	m.closeOnce.Do(func() { m.closeErr = m.db.Close() })
	return m.closeErr
}

func (m *Manager) shutdown() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.wg.Wait()
		return
	}
	m.closed = true
	close(m.quit)
	rs := slices.Collect(maps.Values(m.runners))
	m.mu.Unlock()
	for _, r := range rs {
		r.stopDispatch()
	}
	grace := time.NewTimer(m.cfg.Grace)
	defer grace.Stop()
	abandoned := false
	for _, r := range rs {
		if !abandoned {
			select {
			case <-r.exited:
				continue
			case <-grace.C:
				abandoned = true
				for _, r := range rs {
					r.abortWakes()
				}
			}
		}
		<-r.exited
	}
	m.wg.Wait()
}

// enter registers a call that uses the store, so that Close waits for it.
func (m *Manager) enter() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.wg.Add(1)
	return nil
}

// reserve is enter for Start: it also takes a running slot.
func (m *Manager) reserve() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	n := m.starting
	for _, e := range m.entries {
		if e.state() == StateRunning {
			n++
		}
	}
	if n >= m.cfg.MaxRunning {
		return fmt.Errorf("%w: %d of %d", ErrTooMany, n, m.cfg.MaxRunning)
	}
	m.starting++
	m.wg.Add(1)
	return nil
}

func (m *Manager) release() {
	m.mu.Lock()
	m.starting--
	m.mu.Unlock()
	m.wg.Done()
}

// newID returns a new campaign id: 48 bits of milliseconds, kept
// increasing, then 32 random bits, in hex. Ids sort by creation. m.mu held.
func (m *Manager) newID(now time.Time) string {
	ms := max(now.UnixMilli(), m.lastMS+1)
	m.lastMS = ms
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(ms)<<16)
	rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}

// normalize validates s and fills in defaults.
func (m *Manager) normalize(s Spec) (Spec, error) {
	bad := func(format string, a ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("%w: %s", ErrBadSpec, fmt.Sprintf(format, a...))
	}
	switch {
	case len(s.Devices) > 0 && s.Filter != "":
		return bad("give devices or a filter, not both")
	case len(s.Devices) == 0 && s.Filter == "":
		return bad("give devices or a filter")
	case s.Filter != "" && m.cfg.Selector == nil:
		return bad("filters are not supported here")
	case len(s.Filter) > MaxFilterLen:
		return bad("filter longer than %d bytes", MaxFilterLen)
	case math.IsNaN(s.RatePerS) || s.RatePerS < 0 || s.RatePerS > MaxRatePerS:
		return bad("rate_per_s must be 0 (unlimited) to %g", MaxRatePerS)
	case s.Concurrency < 0 || s.Concurrency > m.cfg.MaxConcurrency:
		return bad("concurrency must be 0 (default) to %d", m.cfg.MaxConcurrency)
	case s.TimeoutMS < 0 || s.TimeoutMS > MaxTimeoutMS:
		return bad("timeout_ms must be 0 (default) to %d", MaxTimeoutMS)
	case len(s.Transports) > MaxTransports:
		return bad("at most %d transports", MaxTransports)
	case len(s.Strategy) > MaxWordLen:
		return bad("strategy longer than %d bytes", MaxWordLen)
	case len(s.Name) > MaxNameLen || !utf8.ValidString(s.Name):
		return bad("name must be UTF-8 of at most %d bytes", MaxNameLen)
	}
	for _, t := range s.Transports {
		if t == "" || len(t) > MaxWordLen {
			return bad("transport %q: empty or longer than %d bytes", t, MaxWordLen)
		}
	}
	if len(s.Devices) > 0 {
		ids, err := uniqueIDs(s.Devices)
		if err != nil {
			return bad("%v", err)
		}
		if len(ids) > m.cfg.MaxDevices {
			return bad("%d devices, at most %d", len(ids), m.cfg.MaxDevices)
		}
		s.Devices = ids
	}
	if s.Concurrency == 0 {
		s.Concurrency = min(64, m.cfg.MaxConcurrency)
	}
	s.Transports = slices.Clone(s.Transports)
	if c, ok := m.cfg.Waker.(OptionsChecker); ok {
		if err := c.CheckOptions(s.wakeOptions()); err != nil {
			return Spec{}, fmt.Errorf("%w: %w", ErrBadSpec, err)
		}
	}
	return s, nil
}

func (s *Spec) wakeOptions() WakeOptions {
	return WakeOptions{
		Transports: s.Transports,
		Strategy:   s.Strategy,
		Timeout:    time.Duration(s.TimeoutMS) * time.Millisecond,
	}
}

// uniqueIDs drops duplicate ids, keeping the first of each, and refuses
// empty or over-long ones.
func uniqueIDs(ids []string) ([]string, error) {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for i, id := range ids {
		if id == "" {
			return nil, fmt.Errorf("device %d: empty id", i)
		}
		if len(id) > MaxIDLen {
			return nil, fmt.Errorf("device %d: id longer than %d bytes", i, MaxIDLen)
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out, nil
}

// update runs one write transaction.
func (m *Manager) update(fn func(*bolt.Tx) error) error {
	m.commits.Add(1)
	return m.db.Update(fn)
}

func campaignBucket(tx *bolt.Tx, id string) (*bolt.Bucket, error) {
	b := tx.Bucket(bucketCampaigns).Bucket([]byte(id))
	if b == nil {
		return nil, fmt.Errorf("%w: campaign %s vanished from the store", ErrCorrupt, id)
	}
	return b, nil
}

// claim durably moves e's cursor from from to to, and with load returns
// the device chunk holding from.
func (m *Manager) claim(e *entry, from, to int, load bool) (ids []string, err error) {
	total := e.meta.Total // immutable
	err = m.update(func(tx *bolt.Tx) error {
		b, err := campaignBucket(tx, e.meta.ID)
		if err != nil {
			return err
		}
		cur, err := decodeCursor(b.Get(keyCursor), total)
		if err != nil {
			return err
		}
		if cur != from {
			return fmt.Errorf("%w: cursor at %d, expected %d", ErrCorrupt, cur, from)
		}
		if load {
			if ids, err = loadIDs(b, from/chunkSize, total); err != nil {
				return err
			}
		}
		return b.Put(keyCursor, encodeCursor(to))
	})
	return ids, err
}

// flush commits e's changed results and its meta; cursor >= 0 also moves
// the cursor. Without force it does nothing when no result changed.
func (m *Manager) flush(e *entry, cursor int, force bool) error {
	type kv struct{ k, v []byte }
	e.mu.Lock()
	if len(e.dirty) == 0 && cursor < 0 && !force {
		e.mu.Unlock()
		return nil
	}
	puts := make([]kv, 0, len(e.dirty))
	for c := range e.dirty {
		lo, hi := c*chunkSize, min(e.meta.Total, (c+1)*chunkSize)
		puts = append(puts, kv{resultKey(c), slices.Clone(e.results[lo:hi])})
	}
	chunks := e.dirty
	e.dirty = nil
	mb, err := json.Marshal(e.persisted())
	e.mu.Unlock()
	if err == nil {
		err = m.update(func(tx *bolt.Tx) error {
			b, err := campaignBucket(tx, e.meta.ID)
			if err != nil {
				return err
			}
			for _, p := range puts {
				if err := b.Put(p.k, p.v); err != nil {
					return err
				}
			}
			if cursor >= 0 {
				if err := b.Put(keyCursor, encodeCursor(cursor)); err != nil {
					return err
				}
			}
			return b.Put(keyMeta, mb)
		})
	}
	if err != nil {
		e.mu.Lock()
		for c := range chunks {
			e.markDirty(c)
		}
		e.mu.Unlock()
	}
	return err
}

// recover settles what an earlier run of a stored running campaign left:
// devices claimed without a result become "unknown" (they may have been
// woken); released ones (certainly not woken) are claimed again and
// returned for waking when requeue is set, and otherwise stay pending. It
// loads e's results and counts. m.mu held.
func (m *Manager) recover(e *entry, requeue bool) (cursor int, jobs []job, err error) {
	total := e.meta.Total
	var (
		results []byte
		counts  [numCodes]int
		unknown int
	)
	err = m.update(func(tx *bolt.Tx) error {
		b, err := campaignBucket(tx, e.meta.ID)
		if err != nil {
			return err
		}
		if cursor, results, err = loadResults(b, total); err != nil {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		changed := map[int]bool{}
		var ids []string
		idsChunk := -1
		for i := range cursor {
			switch results[i] {
			case codeNone:
				results[i] = codeUnknown
				changed[i/chunkSize] = true
				unknown++
			case codeReleased:
				if !requeue {
					continue
				}
				if c := i / chunkSize; c != idsChunk {
					if ids, err = loadIDs(b, c, total); err != nil {
						return fmt.Errorf("%w: %v", ErrCorrupt, err)
					}
					idsChunk = c
				}
				results[i] = codeNone
				changed[i/chunkSize] = true
				jobs = append(jobs, job{i: i, id: ids[i%chunkSize]})
			}
		}
		for c := range changed {
			if err := b.Put(resultKey(c), results[c*chunkSize:min(total, (c+1)*chunkSize)]); err != nil {
				return err
			}
		}
		for i, r := range results {
			switch {
			case r == codeNone || r == codeReleased:
			case int(r) >= numCodes || statusWords[r] == "":
				return fmt.Errorf("%w: device %d: result code %d", ErrCorrupt, i, r)
			default:
				counts[r]++
			}
		}
		e.mu.Lock()
		md := e.persisted()
		e.mu.Unlock()
		md.Counts = countMap(&counts)
		mb, err := json.Marshal(md)
		if err != nil {
			return err
		}
		return b.Put(keyMeta, mb)
	})
	if err != nil {
		return 0, nil, err
	}
	m.wakes[codeUnknown].Add(float64(unknown))
	e.mu.Lock()
	e.results, e.counts = results, counts
	e.mu.Unlock()
	return cursor, jobs, nil
}

// finished prunes old campaigns and reports one that has ended.
func (m *Manager) finished(c Campaign) {
	m.log.Info("campaign finished", "campaign", c.ID, "state", c.State, "done", c.Done, "pending", c.Pending, "counts", c.Counts)
	m.prune()
	if p := m.cfg.Publisher; p != nil {
		p.Done(c)
	}
}

// prune deletes the oldest finished campaigns beyond Config.Keep.
func (m *Manager) prune() {
	m.mu.Lock()
	defer m.mu.Unlock()
	var fin []string
	for id, e := range m.entries {
		if e.state() != StateRunning {
			fin = append(fin, id)
		}
	}
	if len(fin) <= m.cfg.Keep {
		return
	}
	sort.Strings(fin)
	old := fin[:len(fin)-m.cfg.Keep]
	err := m.update(func(tx *bolt.Tx) error {
		for _, id := range old {
			if err := tx.Bucket(bucketCampaigns).DeleteBucket([]byte(id)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		m.log.Error("campaign: pruning finished campaigns", "err", err)
		return
	}
	for _, id := range old {
		delete(m.entries, id)
	}
}
