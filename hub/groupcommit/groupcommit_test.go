package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var errUnavailable = errors.New("database unavailable")

func TestBatcher(t *testing.T) {
	var batches, items, running, maxRunning atomic.Int64
	b := &Batcher[int, string]{
		Max:     8,
		Runners: 2,
		Run: func(_ context.Context, xs []int) []string {
			n := running.Add(1)
			defer running.Add(-1)
			for m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n); m = maxRunning.Load() {
			}
			batches.Add(1)
			items.Add(int64(len(xs)))
			time.Sleep(time.Millisecond)
			out := make([]string, len(xs))
			for i, x := range xs {
				out[i] = fmt.Sprint(x * 2)
			}
			return out
		},
	}
	const calls = 2000
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := b.Do(context.Background(), i); got != fmt.Sprint(i*2) {
				wrong.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d calls got another call's result", n)
	}
	if items.Load() != calls {
		t.Errorf("%d items run, want %d", items.Load(), calls)
	}
	if batches.Load() >= calls/2 {
		t.Errorf("%d batches for %d concurrent calls: no batching", batches.Load(), calls)
	}
	if m := maxRunning.Load(); m > 2 {
		t.Errorf("%d batches ran at once, want at most 2", m)
	}
	if b.running != 0 || len(b.pending) != 0 {
		t.Errorf("after the calls: %d running, %d pending", b.running, len(b.pending))
	}
}

func TestBatcherSplitsFailedBatch(t *testing.T) {
	bad := errors.New("cannot decrypt")
	tests := []struct {
		name  string
		err   error // what a batch holding item 13 fails with
		split bool
	}{
		{name: "one bad item", err: bad, split: true},
		{name: "database down", err: fmt.Errorf("loading: %w", errUnavailable), split: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate, started := make(chan struct{}), make(chan struct{})
			first := true
			b := &Batcher[int, error]{
				Max: 8, Runners: 1,
				// Split when every call failed, unless the database is down.
				Split: func(res []error) bool {
					for _, err := range res {
						if err == nil || errors.Is(err, errUnavailable) {
							return false
						}
					}
					return true
				},
				Run: func(_ context.Context, xs []int) []error {
					if first {
						first = false
						close(started)
						<-gate // let the others queue up behind the first call
					}
					out := make([]error, len(xs))
					for _, x := range xs {
						if x == 13 {
							for i := range out {
								out[i] = tt.err
							}
						}
					}
					return out
				},
			}
			errs := make([]error, 20)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); errs[0] = b.Do(context.Background(), 0) }()
			<-started
			for i := 1; i < 20; i++ {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = b.Do(context.Background(), i) }()
			}
			for len(pending(b)) < 19 {
				time.Sleep(time.Millisecond)
			}
			close(gate)
			wg.Wait()
			var failed int
			for _, err := range errs {
				if err != nil {
					failed++
				}
			}
			if tt.split && (failed != 1 || errs[13] == nil) {
				t.Errorf("%d calls failed, want only item 13", failed)
			}
			if !tt.split && failed < 2 {
				t.Errorf("%d calls failed; an unavailable database must fail the batch without retrying one by one", failed)
			}
		})
	}
}

func pending[T, R any](b *Batcher[T, R]) []*batchCall[T, R] {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*batchCall[T, R](nil), b.pending...)
}

// TestBatcherSurvivesPanic: a Run that panics makes the callers of its
// batch panic in their own goroutines, and the batcher keeps serving:
// later calls run, and no turn is lost.
func TestBatcherSurvivesPanic(t *testing.T) {
	b := &Batcher[int, int]{
		Max: 4, Runners: 1,
		Run: func(_ context.Context, xs []int) []int {
			for _, x := range xs {
				if x < 0 {
					panic(fmt.Sprintf("bad item %d", x))
				}
			}
			return xs
		},
	}
	for i := range 3 {
		func() {
			defer func() {
				if p := recover(); p != fmt.Sprintf("bad item %d", -1-i) {
					t.Errorf("call %d recovered %v, want the Run's panic", i, p)
				}
			}()
			b.Do(context.Background(), -1-i)
			t.Errorf("call %d returned", i)
		}()
	}
	done := make(chan int)
	go func() { done <- b.Do(context.Background(), 7) }()
	select {
	case got := <-done:
		if got != 7 {
			t.Errorf("after the panics Do(7) = %d", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the batcher stopped serving after a panic")
	}
	if b.running != 0 || len(b.pending) != 0 {
		t.Errorf("after the calls: %d running, %d pending", b.running, len(b.pending))
	}
}

// sizeBatcher is a Batcher of calls that records the size of each batch.
type sizeBatcher struct {
	*Batcher[int, int]
	sizesMu sync.Mutex
	sizes   []int
	// slow, when set, is how long the next batch takes.
	slow time.Duration
	// started, when set, is told when a batch starts to run.
	started chan struct{}
}

func newSizeBatcher(linger, pace time.Duration) *sizeBatcher {
	sb := &sizeBatcher{}
	sb.Batcher = &Batcher[int, int]{
		Max: 100, Runners: 2, Linger: linger, Pace: pace,
		Run: func(_ context.Context, xs []int) []int {
			sb.sizesMu.Lock()
			sb.sizes = append(sb.sizes, len(xs))
			slow := sb.slow
			sb.slow = 0
			if sb.started != nil {
				select {
				case sb.started <- struct{}{}:
				default:
				}
			}
			sb.sizesMu.Unlock()
			time.Sleep(slow)
			return xs
		},
	}
	return sb
}

// lastSize returns the size of the last batch.
func (sb *sizeBatcher) lastSize() int {
	sb.sizesMu.Lock()
	defer sb.sizesMu.Unlock()
	return sb.sizes[len(sb.sizes)-1]
}

// alone makes a call and fails t if it waited for company.
func (sb *sizeBatcher) alone(t *testing.T, what string) {
	t.Helper()
	start := time.Now()
	sb.Do(context.Background(), 0)
	if d := time.Since(start); d >= sb.Linger {
		t.Errorf("%s took %v: it waited for company", what, d)
	}
}

// fiveTogether makes a quick run of calls (with Max 1 they run at once),
// then five calls 5 ms apart, and fails t unless the five went together.
func (sb *sizeBatcher) fiveTogether(t *testing.T) {
	t.Helper()
	sb.Max = 1
	for range 40 {
		sb.Do(context.Background(), 0)
	}
	sb.Max = 100
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sb.Do(context.Background(), i)
		}()
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	if got := sb.lastSize(); got != 5 {
		t.Errorf("calls 5 ms apart: last batch of %d calls, want 5", got)
	}
}

// TestBatcherLinger: a call after a quiet spell runs at once; calls that
// keep coming wait up to Linger and go together (one batch lingers, even
// with two runners), and a batch that has Max calls starts at once.
func TestBatcherLinger(t *testing.T) {
	const linger = 100 * time.Millisecond
	b := newSizeBatcher(linger, 0)
	b.alone(t, "the first call")
	b.fiveTogether(t)
	time.Sleep(11 * linger)
	b.alone(t, "a call after a quiet spell")

	// Max calls end the wait: three calls with Max 3 and a long Linger.
	b.Max = 3
	b.Do(context.Background(), 0) // a recent batch: the next one lingers
	b.Linger = time.Minute
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Do(context.Background(), i)
		}()
	}
	wg.Wait()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a full batch waited %v", d)
	}
	if got := b.lastSize(); got != 3 {
		t.Errorf("last batch of %d calls, want 3", got)
	}
}

// TestBatcherPace: with Pace, a batch lingers while calls come at least
// one per Pace, and calls that come slower never wait, however recently a
// batch ended.
func TestBatcherPace(t *testing.T) {
	const linger, pace = 100 * time.Millisecond, 20 * time.Millisecond
	b := newSizeBatcher(linger, pace)
	b.alone(t, "the first call")
	b.fiveTogether(t)

	// Calls 30 ms apart, right after that batch: slower than Pace, none
	// waits (without Pace, each would wait for company).
	for i := range 8 {
		time.Sleep(30 * time.Millisecond)
		b.alone(t, fmt.Sprintf("call %d, 30 ms after the one before,", i))
	}
	// Pairs of calls 2 ms apart, 60 ms between pairs: one per 30 ms on
	// average, so the second of a pair does not wait either.
	for i := range 6 {
		time.Sleep(58 * time.Millisecond)
		b.alone(t, fmt.Sprintf("the first call of pair %d", i))
		time.Sleep(2 * time.Millisecond)
		b.alone(t, fmt.Sprintf("the second call of pair %d", i))
	}

	// A call that waits for the one runner behind a 60 ms batch, with no
	// call after it: when its turn comes, calls are overdue, and it runs
	// at once instead of lingering.
	// The call is made once that batch runs, so that how long it takes
	// does not depend on whether the batch itself waited for company.
	b.fiveTogether(t)
	b.Runners = 1
	started := make(chan struct{}, 1)
	b.sizesMu.Lock()
	b.slow = 60 * time.Millisecond
	b.started = started
	b.sizesMu.Unlock()
	first := make(chan struct{})
	go func() {
		defer close(first)
		b.Do(context.Background(), 0)
	}()
	<-started
	start := time.Now()
	b.Do(context.Background(), 1)
	if d := time.Since(start); d >= linger {
		t.Errorf("a call that had the turn after a batch took %v: it waited for company", d)
	}
	<-first
}
