package outbound

import (
	"context"
	"errors"
	"time"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/groupcommit"
)

// batchLinger is how long a batch of loads, records or holds waits for
// more under a steady load (groupcommit.Batcher.Linger): about two
// attempts per statement instead of one at a few hundred deliveries a
// second, for at most a millisecond per step.
const batchLinger = time.Millisecond

// record is one attempt to record.
type record struct {
	d *hub.Delivery
	a *hub.Attempt
}

// newRecorder batches Store.RecordAttempts.
func newRecorder(st Store, max, runners int) *groupcommit.Batcher[record, error] {
	return &groupcommit.Batcher[record, error]{
		Split:   splitFailed(func(err error) error { return err }),
		Max:     max,
		Runners: runners,
		Linger:  batchLinger,
		Run: func(ctx context.Context, rs []record) []error {
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
func newLoader(st Store, max, runners int) *groupcommit.Batcher[string, target] {
	return &groupcommit.Batcher[string, target]{
		Split:   splitFailed(func(t target) error { return t.err }),
		Max:     max,
		Runners: runners,
		Linger:  batchLinger,
		Run: func(ctx context.Context, ids []string) []target {
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

// endpointRow is an endpoint DeliverNew's attempts read, or why it
// cannot be loaded.
type endpointRow struct {
	ep  *hub.Endpoint
	err error
}

// newEndpointLoader batches Store.DeliveryEndpoints. An endpoint that is
// gone gets an error wrapping hub.ErrNotFound.
func newEndpointLoader(st Store, max, runners int) *groupcommit.Batcher[string, endpointRow] {
	return &groupcommit.Batcher[string, endpointRow]{
		Split:   splitFailed(func(r endpointRow) error { return r.err }),
		Max:     max,
		Runners: runners,
		Linger:  batchLinger,
		Run: func(ctx context.Context, ids []string) []endpointRow {
			out := make([]endpointRow, len(ids))
			eps, err := st.DeliveryEndpoints(ctx, ids)
			for i := range ids {
				switch {
				case err != nil:
					out[i].err = err
				case eps[i] == nil:
					out[i].err = hub.ErrNotFound
				default:
					out[i].ep = eps[i]
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
func newDeferrer(st Store, max, runners int) *groupcommit.Batcher[deferral, deferred] {
	return &groupcommit.Batcher[deferral, deferred]{
		Split:   splitFailed(func(d deferred) error { return d.err }),
		Max:     max,
		Runners: runners,
		Linger:  batchLinger,
		Run: func(ctx context.Context, ds []deferral) []deferred {
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

// splitFailed returns a groupcommit Split that runs a batch's calls again
// one by one when every call failed with an error that running them apart
// might avoid (not the database being unavailable, a conflict or a
// missing row): one bad row, such as a secret that no longer decrypts,
// then fails only its own call.
func splitFailed[R any](errOf func(R) error) func([]R) bool {
	return func(res []R) bool {
		for _, r := range res {
			err := errOf(r)
			if err == nil || errors.Is(err, hub.ErrUnavailable) || hub.ErrorCode(err) == hub.ECONFLICT || errors.Is(err, hub.ErrNotFound) {
				return false
			}
		}
		return true
	}
}
