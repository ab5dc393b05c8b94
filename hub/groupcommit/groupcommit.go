// Package groupcommit batches the calls of concurrent goroutines: calls
// that arrive while a batch is under way go together in the next one, so
// one query or transaction serves many callers under load while a lone
// call runs at once.
package groupcommit

import (
	"context"
	"sync"
	"time"
)

// Batcher runs the calls of concurrent goroutines in batches: calls that
// arrive while Runners batches are under way wait and go together in the
// next one. Under light load every batch holds one call and nothing waits;
// under heavy load one query (or transaction) serves up to Max calls,
// which is what lets the dispatcher and the event processing go faster
// than a few database round trips per item, with few connections.
//
// It has no goroutine of its own: a caller that arrives when fewer than
// Runners batches are under way runs the next batch itself, and when it is
// done hands the turn to the oldest caller still waiting.
type Batcher[T, R any] struct {
	// Run runs one batch and returns one result per item, in order.
	Run func(ctx context.Context, items []T) []R
	// Split, when set, is given the results of a batch of several items;
	// when it says so, the items are run again one by one, so that one bad
	// item fails only its own call.
	Split func(res []R) bool
	// Max bounds the items of a batch; Runners the batches run at once.
	Max, Runners int
	// Timeout bounds one batch. Zero: 30 s.
	Timeout time.Duration
	// Linger, when set, is how long a batch waits for more calls before
	// it starts, when the previous batch ended less than ten times Linger
	// ago (calls keep coming; see Pace for another test) and fewer than
	// Max are waiting: under a steady moderate load, batches of several
	// calls instead of one each, for at most Linger of latency. One batch
	// lingers at a time, calls that arrive meanwhile join it, and it
	// starts at once when Max calls wait. A lone call after a quiet spell
	// never waits.
	Linger time.Duration
	// Pace, when set, replaces Linger's test of a steady load by the pace
	// of the calls: a batch lingers only while calls come at least one
	// per Pace, on average, the last one since the one before, and none
	// is overdue (the last came less than Pace ago). Calls that come
	// slower than that never wait, so a Linger of several calls' gaps can
	// gather a batch at a moderate load without delaying calls at a light
	// one. For calls that come in bursts (the first of a burst comes long
	// after the call before it), leave Pace unset.
	Pace time.Duration

	mu      sync.Mutex
	running int
	pending []*batchCall[T, R]
	last    time.Time // when the last batch that ran items ended
	pacer   Pacer     // with Pace
	// company, while a batch lingers, is filled when Max calls wait.
	company Company
}

type batchCall[T, R any] struct {
	item     T
	promoted bool
	// done receives the result, or a turn to run a batch (lead). At most
	// one of each is ever sent.
	done chan batchResult[R]
}

type batchResult[R any] struct {
	res  R
	lead bool
	// panicked holds what Run panicked with: every caller of the batch
	// panics with it in its own goroutine.
	panicked any
}

// Do runs item in a batch and returns its result.
func (b *Batcher[T, R]) Do(ctx context.Context, item T) R {
	c := &batchCall[T, R]{item: item, done: make(chan batchResult[R], 2)}
	b.mu.Lock()
	if b.Pace > 0 {
		b.pacer.Arrived(time.Now(), b.Pace)
	}
	b.pending = append(b.pending, c)
	// While a batch lingers, calls join it instead of starting another.
	lead := b.running < max(b.Runners, 1) && !b.company.Waiting()
	if lead {
		b.running++
	}
	if len(b.pending) >= max(b.Max, 1) {
		b.company.Fill()
	}
	b.mu.Unlock()
	for {
		if lead {
			// Other callers' items ride along: this caller's cancellation
			// must not fail them.
			b.runBatch(context.WithoutCancel(ctx))
		}
		r := <-c.done
		if r.panicked != nil {
			panic(r.panicked)
		}
		if !r.lead {
			return r.res
		}
		lead = true
	}
}

// gapCap bounds a gap between calls in their moving average, in Paces: a
// steady load after a quiet spell brings the average down within a few
// dozen calls.
const gapCap = 10

// Company is the wait of a batch's first call for company: it waits
// until enough calls are pending (Fill) or a linger passes. The caller
// serializes Waiting, Start, Fill and End with its own lock, and calls
// WaitForCompany without it.
type Company struct{ full chan struct{} }

// Waiting reports whether a wait is under way.
func (c *Company) Waiting() bool { return c.full != nil }

// Start begins a wait; what it returns goes to WaitForCompany and End.
func (c *Company) Start() chan struct{} {
	c.full = make(chan struct{})
	return c.full
}

// Fill ends the wait under way, if any: enough calls are pending.
func (c *Company) Fill() {
	if c.full != nil {
		close(c.full)
		c.full = nil
	}
}

// End forgets the wait full once it is over (Fill may have ended it).
func (c *Company) End(full chan struct{}) {
	if c.full == full {
		c.full = nil
	}
}

// WaitForCompany waits until the wait full is filled or linger has
// passed.
func WaitForCompany(full chan struct{}, linger time.Duration) {
	t := time.NewTimer(linger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-full:
	}
}

// Pacer follows the pace of calls, for a batch to wait for company only
// while calls keep coming (see Batcher.Pace). The zero value is ready;
// the caller serializes its use.
type Pacer struct {
	// lastCall is when the last call came, lastGap the time since the
	// one before it, gap the moving average of the time between calls
	// (each gap counted as at most gapCap paces).
	lastCall     time.Time
	lastGap, gap time.Duration
}

// Arrived counts a call that came at now.
func (p *Pacer) Arrived(now time.Time, pace time.Duration) {
	g := gapCap * pace
	if p.lastCall.IsZero() {
		p.gap = g
	} else {
		g = min(now.Sub(p.lastCall), g)
	}
	p.lastCall, p.lastGap = now, g
	p.gap += (g - p.gap) / 8
}

// Steady reports whether calls come at least one per pace: on average,
// the last one since the one before it, and none overdue at now (the
// last came less than pace ago).
func (p *Pacer) Steady(now time.Time, pace time.Duration) bool {
	return !p.lastCall.IsZero() && p.gap <= pace && p.lastGap <= pace && now.Sub(p.lastCall) <= pace
}

// steady reports whether calls keep coming, for a batch to linger: with
// Pace, at least one per Pace; without, a batch ended less than ten
// Lingers ago. mu is held.
func (b *Batcher[T, R]) steady() bool {
	if b.Pace > 0 {
		return b.pacer.Steady(time.Now(), b.Pace)
	}
	return time.Since(b.last) < 10*b.Linger
}

// run runs items as a batch (and one by one when Split says so). A panic
// of Run is returned, not raised: the batch's callers are answered and
// the turn is passed on whatever happens.
func (b *Batcher[T, R]) run(ctx context.Context, items []T) (res []R, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			res, panicked = nil, p
		}
	}()
	timeout := b.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res = b.Run(ctx, items)
	if len(items) > 1 && b.Split != nil && b.Split(res) {
		for i := range items {
			res[i] = b.Run(ctx, items[i:i+1])[0]
		}
	}
	return res, nil
}

// runBatch runs one batch of pending calls, then passes the turn on.
func (b *Batcher[T, R]) runBatch(ctx context.Context) {
	if b.Linger > 0 {
		b.mu.Lock()
		var full chan struct{}
		if !b.company.Waiting() && len(b.pending) > 0 && len(b.pending) < max(b.Max, 1) && b.steady() {
			full = b.company.Start()
		}
		b.mu.Unlock()
		if full != nil {
			WaitForCompany(full, b.Linger)
			b.mu.Lock()
			b.company.End(full)
			b.mu.Unlock()
		}
	}
	b.mu.Lock()
	n := min(len(b.pending), max(b.Max, 1))
	batch := make([]*batchCall[T, R], n)
	copy(batch, b.pending)
	b.pending = append(b.pending[:0:0], b.pending[n:]...)
	b.mu.Unlock()

	if n > 0 {
		items := make([]T, n)
		for i, c := range batch {
			items[i] = c.item
		}
		res, panicked := b.run(ctx, items)
		for i, c := range batch {
			if panicked != nil {
				c.done <- batchResult[R]{panicked: panicked}
			} else {
				c.done <- batchResult[R]{res: res[i]}
			}
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if n > 0 {
		b.last = time.Now()
	}
	for _, c := range b.pending {
		if !c.promoted {
			c.promoted = true
			c.done <- batchResult[R]{lead: true}
			return
		}
	}
	b.running--
}
