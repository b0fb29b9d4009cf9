package campaign

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeWaker counts calls per device across managers; fn decides the
// outcome of call n (from 1) of device id. A nil fn delivers.
type fakeWaker struct {
	mu    sync.Mutex
	calls map[string]int
	total atomic.Int64
	fn    func(ctx context.Context, id string, n int) Outcome
}

func newFakeWaker(fn func(ctx context.Context, id string, n int) Outcome) *fakeWaker {
	return &fakeWaker{calls: map[string]int{}, fn: fn}
}

func (w *fakeWaker) Wake(ctx context.Context, id string, _ WakeOptions) Outcome {
	w.mu.Lock()
	w.calls[id]++
	n := w.calls[id]
	w.mu.Unlock()
	w.total.Add(1)
	if w.fn == nil {
		return Outcome{Status: "delivered"}
	}
	return w.fn(ctx, id, n)
}

func (w *fakeWaker) callsOf(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls[id]
}

// blockAfter returns a Wake function that delivers the first k wakes and
// blocks every later one until its context ends, announcing it on blocked.
func blockAfter(k int64, blocked chan<- string) func(ctx context.Context, id string, n int) Outcome {
	var count atomic.Int64
	return func(ctx context.Context, id string, _ int) Outcome {
		if count.Add(1) <= k {
			return Outcome{Status: "delivered"}
		}
		select {
		case blocked <- id:
		default: // more than the test waits for: it will say so
		}
		<-ctx.Done()
		return Outcome{Err: ctx.Err()}
	}
}

type fakePublisher struct {
	done     chan Campaign
	progress chan Campaign // lossy
}

func (p *fakePublisher) Done(c Campaign) { p.done <- c }
func (p *fakePublisher) Progress(c Campaign) {
	select {
	case p.progress <- c:
	default:
	}
}

type fakeSelector map[string][]string

func (s fakeSelector) Select(_ context.Context, filter string) ([]string, error) {
	ids, ok := s[filter]
	if !ok {
		return nil, fmt.Errorf("unknown filter %q", filter)
	}
	return ids, nil
}

// newTestManager opens a Manager in cfg.Dir (a new temporary directory if
// empty) with a fakePublisher, closed at the end of the test.
func newTestManager(t testing.TB, cfg Config) (*Manager, *fakePublisher) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	pub := &fakePublisher{done: make(chan Campaign, 1000), progress: make(chan Campaign, 1000)}
	cfg.Publisher = pub
	if cfg.Grace == 0 {
		cfg.Grace = 10 * time.Millisecond
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m, pub
}

// run runs m.Run until the end of the test.
func run(t testing.TB, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitDone waits for the Publisher's Done event of campaign id.
func waitDone(t testing.TB, pub *fakePublisher, id string) Campaign {
	t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case c := <-pub.done:
			if c.ID == id {
				return c
			}
		case <-timeout.C:
			t.Fatalf("campaign %s not done after 20s", id)
		}
	}
}

// waitN receives n values from ch.
func waitN[T any](t testing.TB, ch <-chan T, n int) []T {
	t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	var got []T
	for len(got) < n {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-timeout.C:
			t.Fatalf("got %d of %d after 20s", len(got), n)
		}
	}
	return got
}

func makeIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%07d", i)
	}
	return ids
}

func mustStart(t testing.TB, m *Manager, s Spec) Campaign {
	t.Helper()
	c, err := m.Start(context.Background(), s)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

// checkConsistent checks the invariants of a view.
func checkConsistent(t testing.TB, c Campaign) {
	t.Helper()
	sum := 0
	for _, n := range c.Counts {
		sum += n
	}
	if sum != c.Done || c.Done+c.Pending != c.Total {
		t.Errorf("campaign %s: counts sum %d, done %d, pending %d, total %d", c.ID, sum, c.Done, c.Pending, c.Total)
	}
	if (c.State == StateRunning) != (c.FinishedAt == nil) {
		t.Errorf("campaign %s: state %s, finished_at %v", c.ID, c.State, c.FinishedAt)
	}
}

var errBoom = errors.New("boom")
