package outbound

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// batcher runs the calls of concurrent workers in batches (group commit):
// calls that arrive while a batch is under way wait for it and go together
// in the next one. Under light load every batch holds one call and nothing
// waits; under heavy load one query (or transaction) serves up to max
// calls, which is what lets the dispatcher go faster than a few database
// round trips per attempt, with few connections.
//
// It has no goroutine of its own: a caller that arrives when fewer than
// runners batches are under way runs the next batch itself, and when it is
// done hands the turn to the oldest caller still waiting.
type batcher[T, R any] struct {
	run func(ctx context.Context, items []T) []R
	// errOf returns a result's error. When every call of a batch fails
	// with an error other than the database being unavailable, the calls
	// are run again one by one, so that one bad row (a secret that no
	// longer decrypts, say) fails only its own call.
	errOf   func(R) error
	max     int
	runners int

	mu      sync.Mutex
	running int
	pending []*batchCall[T, R]
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
}

// batchTimeout bounds one batch.
const batchTimeout = 30 * time.Second

// do runs item in a batch and returns its result.
func (b *batcher[T, R]) do(ctx context.Context, item T) R {
	c := &batchCall[T, R]{item: item, done: make(chan batchResult[R], 2)}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	lead := b.running < b.runners
	if lead {
		b.running++
	}
	b.mu.Unlock()
	for {
		if lead {
			// Other callers' items ride along: this caller's cancellation
			// must not fail them.
			b.runBatch(context.WithoutCancel(ctx))
		}
		r := <-c.done
		if !r.lead {
			return r.res
		}
		lead = true
	}
}

// runBatch runs one batch of pending calls, then passes the turn on.
func (b *batcher[T, R]) runBatch(ctx context.Context) {
	b.mu.Lock()
	n := min(len(b.pending), b.max)
	batch := make([]*batchCall[T, R], n)
	copy(batch, b.pending)
	b.pending = append(b.pending[:0:0], b.pending[n:]...)
	b.mu.Unlock()

	if n > 0 {
		items := make([]T, n)
		for i, c := range batch {
			items[i] = c.item
		}
		ctx, cancel := context.WithTimeout(ctx, batchTimeout)
		res := b.run(ctx, items)
		if n > 1 && b.batchFailed(res) {
			for i := range items {
				res[i] = b.run(ctx, items[i:i+1])[0]
			}
		}
		cancel()
		for i, c := range batch {
			c.done <- batchResult[R]{res: res[i]}
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.pending {
		if !c.promoted {
			c.promoted = true
			c.done <- batchResult[R]{lead: true}
			return
		}
	}
	b.running--
}

// batchFailed reports whether every result failed, with errors that
// running the calls one by one might avoid.
func (b *batcher[T, R]) batchFailed(res []R) bool {
	if b.errOf == nil {
		return false
	}
	for _, r := range res {
		err := b.errOf(r)
		if err == nil || errors.Is(err, hub.ErrUnavailable) || hub.ErrorCode(err) == hub.ECONFLICT || errors.Is(err, hub.ErrNotFound) {
			return false
		}
	}
	return true
}

// record is one attempt to record.
type record struct {
	d *hub.Delivery
	a *hub.Attempt
}

// newRecorder batches Store.RecordAttempts.
func newRecorder(st Store, max, runners int) *batcher[record, error] {
	return &batcher[record, error]{
		errOf:   func(err error) error { return err },
		max:     max,
		runners: runners,
		run: func(ctx context.Context, rs []record) []error {
			ds := make([]*hub.Delivery, len(rs))
			as := make([]*hub.Attempt, len(rs))
			for i, r := range rs {
				ds[i], as[i] = r.d, r.a
			}
			return st.RecordAttempts(ctx, ds, as)
		},
	}
}

// target is what one attempt needs, or why it cannot be loaded.
type target struct {
	d   *hub.Delivery
	e   *hub.Event
	ep  *hub.Endpoint
	err error
}

// newLoader batches Store.DeliveryTargets. A delivery that is gone gets
// an error wrapping hub.ErrNotFound.
func newLoader(st Store, max, runners int) *batcher[string, target] {
	return &batcher[string, target]{
		errOf:   func(t target) error { return t.err },
		max:     max,
		runners: runners,
		run: func(ctx context.Context, ids []string) []target {
			out := make([]target, len(ids))
			ds, es, eps, err := st.DeliveryTargets(ctx, ids)
			for i := range ids {
				switch {
				case err != nil:
					out[i].err = err
				case ds[i] == nil:
					out[i].err = hub.ErrNotFound
				default:
					out[i] = target{d: ds[i], e: es[i], ep: eps[i]}
				}
			}
			return out
		},
	}
}

// deferral is one delivery to hold back.
type deferral struct {
	id       string
	attempts int
	at       time.Time
}

type deferred struct {
	moved bool
	err   error
}

// newDeferrer batches Store.DeferDeliveries.
func newDeferrer(st Store, max, runners int) *batcher[deferral, deferred] {
	return &batcher[deferral, deferred]{
		errOf:   func(d deferred) error { return d.err },
		max:     max,
		runners: runners,
		run: func(ctx context.Context, ds []deferral) []deferred {
			ids := make([]string, len(ds))
			attempts := make([]int, len(ds))
			at := make([]time.Time, len(ds))
			for i, d := range ds {
				ids[i], attempts[i], at[i] = d.id, d.attempts, d.at
			}
			moved, err := st.DeferDeliveries(ctx, ids, attempts, at)
			out := make([]deferred, len(ds))
			for i := range out {
				if err != nil {
					out[i].err = err
				} else {
					out[i].moved = moved[i]
				}
			}
			return out
		},
	}
}
