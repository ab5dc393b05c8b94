package outbound_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/outbound"
)

// directDispatcher is f's dispatcher with direct first attempts allowed
// within within, and maxInFlight request slots.
func (f *fixture) directDispatcher(t *testing.T, q hub.Queue, st outbound.Store, within time.Duration, maxInFlight int) *outbound.Dispatcher {
	t.Helper()
	if st == nil {
		st = f.st
	}
	cfg := testConfig(&clock{t: base}, localClient(t))
	cfg.DirectWithin, cfg.MaxInFlight = within, maxInFlight
	d, err := outbound.New(cfg, st, q)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// succeeded counts f's deliveries that succeeded.
func (f *fixture) succeeded(t *testing.T) int {
	t.Helper()
	n := 0
	for _, d := range f.deliveries(t) {
		if d.Status == hub.DeliverySucceeded {
			n++
		}
	}
	return n
}

// another writes one more event to f's endpoint and returns its delivery.
func (f *fixture) another(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var dels []*hub.Delivery
	err := f.st.InTx(ctx, func(tx hub.Tx) error {
		var err error
		dels, err = tx.InsertEvent(ctx, &hub.Event{ProgramID: hub.DefaultProgramID, Type: "commission.created", Data: json.RawMessage(`{}`)})
		return err
	})
	if err != nil || len(dels) != 1 {
		t.Fatalf("InsertEvent: %v, %d deliveries", err, len(dels))
	}
	return dels[0].ID
}

// fresh returns deliveries and their events as the transaction that
// wrote them holds them, for DeliverNew.
func (f *fixture) fresh(t *testing.T, ids ...string) ([]*hub.Delivery, []*hub.Event) {
	t.Helper()
	ds := make([]*hub.Delivery, len(ids))
	es := make([]*hub.Event, len(ids))
	for i, id := range ids {
		var err error
		if ds[i], es[i], _, err = f.st.DeliveryTarget(context.Background(), id); err != nil {
			t.Fatalf("DeliveryTarget %s: %v", id, err)
		}
	}
	return ds, es
}

func TestDeliverNew(t *testing.T) {
	t.Run("the first attempt is made without a queue task", func(t *testing.T) {
		rc := newReceiver(t, reply(204, ""))
		f := newFixture(t, rc.URL)
		q := &fakeQueue{}
		d := f.directDispatcher(t, q, nil, 10*time.Second, 0)
		if n := d.DeliverNew(f.fresh(t, f.delivery)); n != 1 {
			t.Fatalf("DeliverNew took %d, want 1", n)
		}
		d.Close() // waits for the attempt
		del := f.get(t)
		if del.Status != hub.DeliverySucceeded || del.Attempts != 1 || len(del.AttemptLog) != 1 {
			t.Errorf("delivery: status %q, %d attempts, %d recorded; want succeeded, 1, 1", del.Status, del.Attempts, len(del.AttemptLog))
		}
		if n := len(rc.Requests()); n != 1 {
			t.Errorf("receiver got %d requests, want 1", n)
		}
		if calls := q.Calls(); len(calls) != 0 {
			t.Errorf("queued %v, want nothing", calls)
		}
		if n := d.DeliverNew(f.fresh(t, f.another(t))); n != 0 {
			t.Errorf("DeliverNew after Close took %d, want 0", n)
		}
	})

	t.Run("a failed first attempt queues the second", func(t *testing.T) {
		rc := newReceiver(t, reply(503, "busy"))
		f := newFixture(t, rc.URL)
		q := &fakeQueue{}
		d := f.directDispatcher(t, q, nil, 10*time.Second, 0)
		d.DeliverNew(f.fresh(t, f.delivery))
		d.Close()
		next := base.Add(jittered(testSchedule[1]))
		if diff := cmp.Diff([]enqueued{{f.delivery, 2, next}}, q.Calls()); diff != "" {
			t.Errorf("queued (-want +got):\n%s", diff)
		}
		if del := f.get(t); del.Status != hub.DeliveryPending || del.Attempts != 1 || errorClass(del.LastError) != "http_503" {
			t.Errorf("delivery: status %q, %d attempts, last error %q; want pending, 1, http_503", del.Status, del.Attempts, del.LastError)
		}
	})

	t.Run("an endpoint timeout that does not fit goes to the queue", func(t *testing.T) {
		rc := newReceiver(t, reply(204, ""))
		f := newFixture(t, rc.URL)
		q := &fakeQueue{}
		d := f.directDispatcher(t, q, nil, time.Second, 0) // the timeout is 2 s
		d.DeliverNew(f.fresh(t, f.delivery))
		d.Close()
		if diff := cmp.Diff([]enqueued{{f.delivery, 1, base}}, q.Calls()); diff != "" {
			t.Errorf("queued (-want +got):\n%s", diff)
		}
		wantNoRequests(t, rc)
		if del := f.get(t); del.Status != hub.DeliveryPending || del.Attempts != 0 {
			t.Errorf("delivery: status %q, %d attempts; want pending, 0", del.Status, del.Attempts)
		}
	})

	for _, tc := range []struct {
		name     string
		st       func(*fixture) outbound.Store
		requests int
	}{
		{"an attempt that cannot be recorded is queued again", func(f *fixture) outbound.Store { return downStore{f.st} }, 1},
		{"an endpoint that cannot be read is queued", func(f *fixture) outbound.Store { return endpointsDownStore{f.st} }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, reply(204, ""))
			f := newFixture(t, rc.URL)
			q := &fakeQueue{}
			d := f.directDispatcher(t, q, tc.st(f), 10*time.Second, 0)
			d.DeliverNew(f.fresh(t, f.delivery))
			d.Close()
			if diff := cmp.Diff([]enqueued{{f.delivery, 1, base}}, q.Calls()); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
			if n := len(rc.Requests()); n != tc.requests {
				t.Errorf("receiver got %d requests, want %d", n, tc.requests)
			}
			if del := f.get(t); del.Status != hub.DeliveryPending || del.Attempts != 0 {
				t.Errorf("delivery: status %q, %d attempts; want pending, 0 (the task makes it again)", del.Status, del.Attempts)
			}
		})
	}

	t.Run("taken while a slot is free or the line has room", func(t *testing.T) {
		g := newGate()
		rc := newReceiver(t, g.handle)
		f := newFixture(t, rc.URL)
		ids := []string{f.delivery}
		for range 5 {
			ids = append(ids, f.another(t))
		}
		q := &fakeQueue{}
		// One slot, and a line of four.
		d := f.directDispatcher(t, q, nil, 10*time.Second, 1)
		if n := d.DeliverNew(f.fresh(t, ids...)); n != 5 {
			t.Fatalf("DeliverNew with one slot and a line of four took %d of 6, want 5", n)
		}
		<-g.arrived // the first attempt holds the only slot
		close(g.release)
		// The slot makes the waiting attempts one after the other.
		deadline := time.Now().Add(10 * time.Second)
		for f.succeeded(t) < 5 {
			if time.Now().After(deadline) {
				t.Fatalf("%d of the 5 taken deliveries succeeded", f.succeeded(t))
			}
			time.Sleep(5 * time.Millisecond)
		}
		d.Close()
		if n := len(rc.Requests()); n != 5 {
			t.Errorf("receiver got %d requests, want 5", n)
		}
		if calls := q.Calls(); len(calls) != 0 {
			t.Errorf("queued %v, want nothing (the caller queues what was not taken)", calls)
		}

		// A slot taken by a queue task's attempt: the direct one does not
		// wait for it.
		second, third := f.another(t), f.another(t)
		d = f.directDispatcher(t, q, nil, 10*time.Second, 1)
		defer d.Close()
		g2 := newGate()
		rc.mu.Lock()
		rc.responses = []func(http.ResponseWriter, *http.Request){g2.handle}
		rc.mu.Unlock()
		errc := make(chan error, 1)
		go func() { errc <- d.Deliver(context.Background(), second, 1) }()
		<-g2.arrived
		// The queue task holds the request slot; the direct attempt of
		// third finds none.
		if n := d.DeliverNew(f.fresh(t, third)); n != 1 {
			t.Fatalf("DeliverNew took %d, want 1", n)
		}
		waitQueued(t, q, third)
		close(g2.release)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		d.Close()
		if n := len(rc.Requests()); n != 6 {
			t.Errorf("receiver got %d requests, want 6 (the five taken, then second)", n)
		}
	})

	t.Run("concurrent callers leave nothing waiting", func(t *testing.T) {
		rc := newReceiver(t, reply(204, ""))
		f := newFixture(t, rc.URL)
		var ids []string
		for range 40 {
			ids = append(ids, f.another(t))
		}
		q := &fakeQueue{}
		d := f.directDispatcher(t, q, nil, 10*time.Second, 1)
		defer d.Close()
		var wg sync.WaitGroup
		var taken atomic.Int64
		ds, es := f.fresh(t, ids...)
		for i := 0; i < len(ids); i += 4 {
			wg.Add(1)
			go func(ds []*hub.Delivery, es []*hub.Event) {
				defer wg.Done()
				for k := range ds {
					taken.Add(int64(d.DeliverNew(ds[k:k+1], es[k:k+1])))
				}
			}(ds[i:i+4], es[i:i+4])
		}
		wg.Wait()
		// Every delivery taken is attempted or queued; none is left in
		// the line.
		deadline := time.Now().Add(10 * time.Second)
		for f.succeeded(t)+len(q.Calls()) < int(taken.Load()) {
			if time.Now().After(deadline) {
				t.Fatalf("of %d taken, %d succeeded and %d queued", taken.Load(), f.succeeded(t), len(q.Calls()))
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	t.Run("the line is dropped at Close", func(t *testing.T) {
		g := newGate()
		rc := newReceiver(t, g.handle)
		f := newFixture(t, rc.URL)
		second := f.another(t)
		q := &fakeQueue{}
		d := f.directDispatcher(t, q, nil, 10*time.Second, 1)
		if n := d.DeliverNew(f.fresh(t, f.delivery, second)); n != 2 {
			t.Fatalf("DeliverNew took %d, want 2 (one made, one waiting)", n)
		}
		<-g.arrived
		closed := make(chan struct{})
		go func() { d.Close(); close(closed) }()
		for !outbound.Closing(d) { // Close has begun: the line is dropped
			time.Sleep(time.Millisecond)
		}
		close(g.release)
		<-closed
		if n := len(rc.Requests()); n != 1 {
			t.Errorf("receiver got %d requests, want 1 (the waiting attempt is not made after Close)", n)
		}
		// The waiting delivery's row is pending and due: the sweeper
		// queues it.
		if del := f.byID(t, second); del.Status != hub.DeliveryPending || del.Attempts != 0 {
			t.Errorf("the dropped delivery: status %q, %d attempts; want pending, 0", del.Status, del.Attempts)
		}
		if calls := q.Calls(); len(calls) != 0 {
			t.Errorf("queued %v, want nothing", calls)
		}
	})

	t.Run("the endpoint's concurrency limit holds it back", func(t *testing.T) {
		g := newGate()
		rc := newReceiver(t, g.handle)
		f := newFixture(t, rc.URL)
		second := f.another(t)
		q := &fakeQueue{}
		cfg := testConfig(&clock{t: base}, localClient(t))
		cfg.DirectWithin, cfg.EndpointMaxInFlight = 10*time.Second, 1
		d, err := outbound.New(cfg, f.st, q)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		// No queue task runs a direct attempt: a held-back one is queued
		// again at once, not after the delay that lets asynq free a
		// running task's id.
		outbound.SetRequeueDelay(d, time.Hour)
		errc := make(chan error, 1)
		go func() { errc <- d.Deliver(context.Background(), f.delivery, 1) }()
		<-g.arrived // the endpoint's one request under way
		d.DeliverNew(f.fresh(t, second))
		waitQueued(t, q, second)
		close(g.release)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if n := len(rc.Requests()); n != 1 {
			t.Errorf("receiver got %d requests, want 1 (the second held back)", n)
		}
		var queuedFor time.Time
		for _, c := range q.Calls() {
			if c.DeliveryID == second {
				queuedFor = c.At
			}
		}
		del := f.byID(t, second)
		if del.Status != hub.DeliveryPending || del.Attempts != 0 || del.NextAttemptAt == nil || !del.NextAttemptAt.After(base) {
			t.Errorf("held-back delivery: status %q, %d attempts, next %v; want pending, 0, moved later", del.Status, del.Attempts, del.NextAttemptAt)
		}
		if del.NextAttemptAt != nil && !queuedFor.Equal(*del.NextAttemptAt) {
			t.Errorf("held-back delivery queued for %v, want its next attempt time %v", queuedFor, *del.NextAttemptAt)
		}
	})

	t.Run("reads the endpoint, not the delivery or its event", func(t *testing.T) {
		rc := newReceiver(t, reply(204, ""))
		f := newFixture(t, rc.URL)
		st := &readCountingStore{Store: f.st}
		q := &fakeQueue{}
		d := f.directDispatcher(t, q, st, 10*time.Second, 0)
		d.DeliverNew(f.fresh(t, f.delivery))
		d.Close()
		if del := f.get(t); del.Status != hub.DeliverySucceeded || del.Attempts != 1 {
			t.Fatalf("delivery: status %q, %d attempts; want succeeded, 1", del.Status, del.Attempts)
		}
		if n, m := st.targets.Load(), st.endpoints.Load(); n != 0 || m != 1 {
			t.Errorf("read %d deliveries with events and %d endpoints, want 0 and 1", n, m)
		}
		// What was sent is the event the writer held, signed with the
		// endpoint's secret.
		reqs := rc.Requests()
		if len(reqs) != 1 {
			t.Fatalf("receiver got %d requests, want 1", len(reqs))
		}
		var got struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(reqs[0].Body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Type != f.event.Type {
			t.Errorf("sent type %q, want %q", got.Type, f.event.Type)
		}
		wh, _ := standardwebhooks.NewWebhook(f.endpoint.Secret)
		if err := wh.VerifyIgnoringTimestamp(reqs[0].Body, reqs[0].Header); err != nil {
			t.Errorf("reference library: %v", err)
		}
		wantNothingQueued(t, q)
	})

	t.Run("an endpoint disabled since the write is not sent to", func(t *testing.T) {
		rc := newReceiver(t, reply(204, ""))
		f := newFixture(t, rc.URL)
		ds, es := f.fresh(t, f.delivery)
		if _, err := f.st.ModifyEndpoint(context.Background(), hub.DefaultProgramID, f.endpoint.ID, func(ep *hub.Endpoint) error {
			ep.Enabled, ep.DisabledReason = false, "disabled by an operator"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		q := &fakeQueue{}
		d := f.directDispatcher(t, q, nil, 10*time.Second, 0)
		d.DeliverNew(ds, es)
		d.Close()
		wantNoRequests(t, rc)
		if del := f.get(t); del.Status != hub.DeliveryFailed || errorClass(del.LastError) != "endpoint_disabled" {
			t.Errorf("delivery: status %q, last error %q; want failed, endpoint_disabled", del.Status, del.LastError)
		}
	})

	t.Run("a delivery failed since, by disabling its endpoint, keeps its reason", func(t *testing.T) {
		rc := newReceiver(t, reply(204, ""))
		f := newFixture(t, rc.URL)
		ds, es := f.fresh(t, f.delivery)
		if _, _, err := f.st.AutoDisableEndpoint(context.Background(), f.endpoint.ID, "410 Gone", base, nil); err != nil {
			t.Fatal(err)
		}
		q := &fakeQueue{}
		d := f.directDispatcher(t, q, nil, 10*time.Second, 0)
		d.DeliverNew(ds, es)
		d.Close()
		wantNoRequests(t, rc)
		if del := f.get(t); del.Status != hub.DeliveryFailed || del.Attempts != 0 || del.LastError != "endpoint_disabled: 410 Gone" {
			t.Errorf("delivery: status %q, %d attempts, last error %q; want failed, 0, endpoint_disabled: 410 Gone",
				del.Status, del.Attempts, del.LastError)
		}
		wantNothingQueued(t, q)
	})

	t.Run("an endpoint deleted since takes its delivery with it", func(t *testing.T) {
		rc := newReceiver(t, reply(204, ""))
		f := newFixture(t, rc.URL)
		ds, es := f.fresh(t, f.delivery)
		if err := f.st.DeleteEndpoint(context.Background(), hub.DefaultProgramID, f.endpoint.ID); err != nil {
			t.Fatal(err)
		}
		q := &fakeQueue{}
		d := f.directDispatcher(t, q, nil, 10*time.Second, 0)
		if n := d.DeliverNew(ds, es); n != 1 {
			t.Fatalf("DeliverNew took %d, want 1", n)
		}
		d.Close()
		wantNoRequests(t, rc)
		wantNothingQueued(t, q)
	})

	t.Run("off without DirectWithin", func(t *testing.T) {
		f := newFixture(t, "http://127.0.0.1:1")
		d := f.directDispatcher(t, &fakeQueue{}, nil, 0, 0)
		defer d.Close()
		if n := d.DeliverNew(f.fresh(t, f.delivery)); n != 0 {
			t.Errorf("DeliverNew took %d, want 0", n)
		}
	})
}

// waitQueued waits until id's first attempt is queued.
func waitQueued(t *testing.T, q *fakeQueue, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range q.Calls() {
			if c.DeliveryID == id && c.Attempt == 1 {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("delivery %s was not queued: %v", id, q.Calls())
}

// readCountingStore counts what the dispatcher reads.
type readCountingStore struct {
	outbound.Store
	targets, endpoints atomic.Int64
}

func (s *readCountingStore) DeliveryTargets(ctx context.Context, ids []string) ([]*hub.Delivery, []*hub.Event, []*hub.Endpoint, error) {
	s.targets.Add(int64(len(ids)))
	return s.Store.DeliveryTargets(ctx, ids)
}

func (s *readCountingStore) DeliveryEndpoints(ctx context.Context, ids []string) ([]*hub.Endpoint, error) {
	s.endpoints.Add(int64(len(ids)))
	return s.Store.DeliveryEndpoints(ctx, ids)
}

// switchedEndpointsStore cannot read endpoints while down, nor the
// next fails times.
type switchedEndpointsStore struct {
	outbound.Store
	down  atomic.Bool
	fails atomic.Int32
}

func (s *switchedEndpointsStore) DeliveryEndpoints(ctx context.Context, ids []string) ([]*hub.Endpoint, error) {
	if s.down.Load() || s.fails.Add(-1) >= 0 {
		return nil, fmt.Errorf("loading endpoints: %w", hub.ErrUnavailable)
	}
	return s.Store.DeliveryEndpoints(ctx, ids)
}

// endpointsDownStore cannot read endpoints.
type endpointsDownStore struct{ outbound.Store }

func (endpointsDownStore) DeliveryEndpoints(context.Context, []string) ([]*hub.Endpoint, error) {
	return nil, fmt.Errorf("loading endpoints: %w", hub.ErrUnavailable)
}

func wantNoRequests(t *testing.T, rc *receiver) {
	t.Helper()
	if n := len(rc.Requests()); n != 0 {
		t.Errorf("receiver got %d requests, want 0", n)
	}
}

func wantNothingQueued(t *testing.T, q *fakeQueue) {
	t.Helper()
	if calls := q.Calls(); len(calls) != 0 {
		t.Errorf("queued %v, want nothing", calls)
	}
}

// busyEndpoint is a receiver that answers at once, or holds each request
// until released while blocking is set, and keeps the most requests it
// had under way at once.
type busyEndpoint struct {
	blocking                 atomic.Bool
	arrived, release         chan struct{}
	underWay, maxSeen, total atomic.Int32
}

func newBusyEndpoint() *busyEndpoint {
	return &busyEndpoint{arrived: make(chan struct{}, 100), release: make(chan struct{})}
}

func (b *busyEndpoint) handle(w http.ResponseWriter, r *http.Request) {
	b.total.Add(1)
	n := b.underWay.Add(1)
	defer b.underWay.Add(-1)
	for {
		m := b.maxSeen.Load()
		if n <= m || b.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	if b.blocking.Load() {
		b.arrived <- struct{}{}
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// withinLimit fails t if b had more than limit requests under way at once.
func (b *busyEndpoint) withinLimit(t *testing.T, limit int32) {
	t.Helper()
	if m := b.maxSeen.Load(); m > limit {
		t.Errorf("the endpoint had %d requests under way at once, over its limit of %d", m, limit)
	}
}

func TestDeliverNewWaitsForBusyEndpoint(t *testing.T) {
	// setupLimit returns a dispatcher with maxInFlight request slots (0:
	// the default) whose endpoints take limit requests at a time, with
	// limit first attempts under way that hold f's endpoint until
	// b.release is closed; f.delivery is the first of them.
	// setupStore is setupLimit with the dispatcher's store wrapped by
	// wrap.
	setupStore := func(t *testing.T, slotWait time.Duration, limit, maxInFlight int, wrap func(outbound.Store) outbound.Store) (*fixture, *busyEndpoint, *fakeQueue, *outbound.Dispatcher) {
		t.Helper()
		b := newBusyEndpoint()
		rc := newReceiver(t, b.handle)
		f := newFixture(t, rc.URL)
		q := &fakeQueue{}
		cfg := testConfig(&clock{t: base}, localClient(t))
		cfg.DirectWithin, cfg.EndpointMaxInFlight, cfg.MaxInFlight = 10*time.Second, limit, maxInFlight
		var st outbound.Store = f.st
		if wrap != nil {
			st = wrap(st)
		}
		d, err := outbound.New(cfg, st, q)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		outbound.SetRequeueDelay(d, time.Hour)
		outbound.SetSlotWait(d, slotWait)
		outbound.SetPace(d, f.endpoint.ID, 2*time.Millisecond)
		b.blocking.Store(true)
		ids := []string{f.delivery}
		for len(ids) < limit {
			ids = append(ids, f.another(t))
		}
		if n := d.DeliverNew(f.fresh(t, ids...)); n != limit {
			t.Fatalf("DeliverNew took %d, want %d", n, limit)
		}
		for range limit {
			<-b.arrived
		}
		b.blocking.Store(false)
		return f, b, q, d
	}
	setupLimit := func(t *testing.T, slotWait time.Duration, limit, maxInFlight int) (*fixture, *busyEndpoint, *fakeQueue, *outbound.Dispatcher) {
		t.Helper()
		return setupStore(t, slotWait, limit, maxInFlight, nil)
	}
	// setup is setupLimit with a limit of one.
	setup := func(t *testing.T, slotWait time.Duration) (*fixture, *busyEndpoint, *fakeQueue, *outbound.Dispatcher) {
		t.Helper()
		return setupLimit(t, slotWait, 1, 0)
	}
	// joinLineAt hands d a new first attempt to f's endpoint, waits until
	// it waits in the endpoint's line (the n'th there), and returns its
	// delivery.
	joinLineAt := func(t *testing.T, d *outbound.Dispatcher, f *fixture, n int) string {
		t.Helper()
		id := f.another(t)
		if took := d.DeliverNew(f.fresh(t, id)); took != 1 {
			t.Fatalf("DeliverNew took %d, want 1", took)
		}
		deadline := time.Now().Add(5 * time.Second)
		for outbound.InLine(d, f.endpoint.ID) != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d first attempts wait for the endpoint, want %d", outbound.InLine(d, f.endpoint.ID), n)
			}
			time.Sleep(time.Millisecond)
		}
		return id
	}
	// fillLine has n first attempts join f's endpoint's line, one after
	// the other, and returns their deliveries.
	fillLine := func(t *testing.T, d *outbound.Dispatcher, f *fixture, n int) []string {
		t.Helper()
		ids := make([]string, n)
		for i := range ids {
			ids[i] = joinLineAt(t, d, f, i+1)
		}
		return ids
	}
	// deliverDue writes a delivery to f's endpoint, due ago, and makes its
	// attempt as its queue task would.
	deliverDue := func(t *testing.T, d *outbound.Dispatcher, f *fixture, ago time.Duration) string {
		t.Helper()
		id := f.another(t)
		if _, err := f.st.DeferDeliveries(context.Background(), []string{id}, []int{0}, []time.Time{time.Now().Add(-ago)}); err != nil {
			t.Fatal(err)
		}
		if err := d.Deliver(context.Background(), id, 1); err != nil {
			t.Fatal(err)
		}
		return id
	}
	// joinLine is joinLineAt for the only one in line.
	joinLine := func(t *testing.T, d *outbound.Dispatcher, f *fixture) string {
		t.Helper()
		return joinLineAt(t, d, f, 1)
	}
	// waitStatus waits until delivery id has status, and returns it.
	waitStatus := func(t *testing.T, f *fixture, id, status string) *hub.Delivery {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			del := f.byID(t, id)
			if del.Status == status {
				return del
			}
			if time.Now().After(deadline) {
				t.Fatalf("delivery %s: status %q, %d attempts; want %s", id, del.Status, del.Attempts, status)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// waitSucceeded waits until delivery id has succeeded.
	waitSucceeded := func(t *testing.T, f *fixture, id string) {
		t.Helper()
		if del := waitStatus(t, f, id, hub.DeliverySucceeded); del.Attempts != 1 {
			t.Errorf("delivery %s succeeded after %d attempts, want 1", id, del.Attempts)
		}
	}
	notQueued := func(t *testing.T, q *fakeQueue, id string) {
		t.Helper()
		for _, c := range q.Calls() {
			if c.DeliveryID == id {
				t.Errorf("delivery %s was queued (%v); it should have waited for the slot", id, c)
			}
		}
	}
	// servedInLine checks that the deliveries ids succeeded at their first
	// attempt without a queue task.
	servedInLine := func(t *testing.T, f *fixture, q *fakeQueue, ids ...string) {
		t.Helper()
		for _, id := range ids {
			waitSucceeded(t, f, id)
			notQueued(t, q, id)
		}
	}

	// heldAtOnce hands d a new first attempt to f's endpoint, and checks
	// that it is held back without joining the endpoint's line.
	heldAtOnce := func(t *testing.T, f *fixture, q *fakeQueue, d *outbound.Dispatcher) {
		t.Helper()
		id := f.another(t)
		d.DeliverNew(f.fresh(t, id))
		waitQueued(t, q, id)
		if n := outbound.InLine(d, f.endpoint.ID); n != 0 {
			t.Errorf("%d wait for the endpoint, want 0", n)
		}
	}

	t.Run("a fast endpoint's slot is waited for, without the database or the queue", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		// The endpoint frees a slot every 2 ms: the attempt waits.
		second := joinLine(t, d, f)
		close(b.release)
		servedInLine(t, f, q, second)
		b.withinLimit(t, 1)
	})

	t.Run("the line is as long as the endpoint's pace allows within the wait", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		// One slot freed every 3 s: the second in line would get its
		// slot after 6 s, within the 8 s the attempt may wait (it must
		// end within 10 s, and may take 2); a third after 9 s.
		outbound.SetPace(d, f.endpoint.ID, 3*time.Second)
		inLine := fillLine(t, d, f, 2)
		third := f.another(t)
		d.DeliverNew(f.fresh(t, third))
		waitQueued(t, q, third) // held back at once
		if del := f.byID(t, third); del.Status != hub.DeliveryPending || del.Attempts != 0 || !del.NextAttemptAt.After(base) {
			t.Errorf("held-back delivery: status %q, %d attempts, next %v; want pending, 0, moved later", del.Status, del.Attempts, del.NextAttemptAt)
		}
		close(b.release)
		servedInLine(t, f, q, inLine...)
		b.withinLimit(t, 1)
	})

	t.Run("a line holds no request slot", func(t *testing.T) {
		// Four request slots, two of them under way at the endpoint: six
		// more first attempts wait in its line, and go in turn.
		f, b, q, d := setupLimit(t, time.Minute, 2, 4)
		inLine := fillLine(t, d, f, 6)
		close(b.release)
		servedInLine(t, f, q, inLine...)
		b.withinLimit(t, 2)
	})

	t.Run("lines are bounded in all", func(t *testing.T) {
		// Two request slots: 128 first attempts may wait in all.
		f, b, q, d := setupLimit(t, time.Minute, 1, 2)
		fillLine(t, d, f, 128)
		heldAtOnce := f.another(t)
		d.DeliverNew(f.fresh(t, heldAtOnce))
		waitQueued(t, q, heldAtOnce)
		if n := outbound.InLine(d, f.endpoint.ID); n != 128 {
			t.Errorf("%d wait for the endpoint, want 128", n)
		}
		close(b.release)
	})

	t.Run("a queued attempt waits in the same line, in turn", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		// A task's attempt finds the endpoint busy: it waits in line, and
		// its task is done.
		queued := f.another(t)
		if err := d.Deliver(context.Background(), queued, 1); err != nil {
			t.Fatal(err)
		}
		if n := outbound.InLine(d, f.endpoint.ID); n != 1 {
			t.Fatalf("%d wait for the endpoint, want the queued attempt", n)
		}
		// A first attempt after it waits behind it.
		fresh := joinLineAt(t, d, f, 2)
		close(b.release)
		servedInLine(t, f, q, queued, fresh)
		b.withinLimit(t, 1)
	})

	// slotsFree waits until f's endpoint has no attempt under way or in
	// line.
	slotsFree := func(t *testing.T, d *outbound.Dispatcher, f *fixture) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for outbound.InLine(d, f.endpoint.ID) != 0 || outbound.InFlight(d, f.endpoint.ID) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d in line and %d slots taken at the endpoint, want none",
					outbound.InLine(d, f.endpoint.ID), outbound.InFlight(d, f.endpoint.ID))
			}
			time.Sleep(time.Millisecond)
		}
	}
	// onlyFirstSent checks that f's endpoint got, and its breaker counted,
	// only the request under way when the waiter joined its line.
	onlyFirstSent := func(t *testing.T, b *busyEndpoint, d *outbound.Dispatcher, f *fixture) {
		t.Helper()
		if n := b.total.Load(); n != 1 {
			t.Errorf("the endpoint got %d requests, want only the one under way when the waiter joined", n)
		}
		if n := outbound.BreakerRequests(d, f.endpoint.ID); n != 1 {
			t.Errorf("the endpoint's breaker counted %d requests, want the 1 sent", n)
		}
	}
	// wantQueuedUnsent waits until the waiting attempt of delivery id is
	// queued without a request (the endpoint got only the one under way
	// when it joined), and its slot is free; the delivery is pending, with
	// no attempt used.
	wantQueuedUnsent := func(t *testing.T, f *fixture, b *busyEndpoint, q *fakeQueue, d *outbound.Dispatcher, id string) {
		t.Helper()
		due := f.byID(t, id).NextAttemptAt
		waitQueued(t, q, id)
		slotsFree(t, d, f)
		onlyFirstSent(t, b, d, f)
		if del := f.byID(t, id); del.Status != hub.DeliveryPending || del.Attempts != 0 ||
			del.NextAttemptAt == nil || !del.NextAttemptAt.Equal(*due) {
			t.Errorf("delivery: status %q, %d attempts, next at %v; want pending, 0, %v (queued as it was, not held back)",
				del.Status, del.Attempts, del.NextAttemptAt, due)
		}
	}
	// waitDisabledFailure waits until delivery id has failed, and checks
	// that it failed for its disabled endpoint.
	waitDisabledFailure := func(t *testing.T, f *fixture, id string) {
		t.Helper()
		if del := waitStatus(t, f, id, hub.DeliveryFailed); errorClass(del.LastError) != "endpoint_disabled" {
			t.Errorf("delivery failed with %q, want endpoint_disabled", del.LastError)
		}
	}
	// waitersDone waits until no attempt that left a line is running.
	waitersDone := func(t *testing.T, d *outbound.Dispatcher) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for outbound.Resumed(d) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d attempts that left a line still run", outbound.Resumed(d))
			}
			time.Sleep(time.Millisecond)
		}
	}
	// modify changes f's endpoint in the database.
	modify := func(t *testing.T, f *fixture, change func(*hub.Endpoint)) {
		t.Helper()
		if _, err := f.st.ModifyEndpoint(context.Background(), hub.DefaultProgramID, f.endpoint.ID, func(ep *hub.Endpoint) error {
			change(ep)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a waiter sends to the endpoint as it is when its turn comes", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		outbound.SetEndpointFresh(d, 0)
		second := joinLine(t, d, f)
		moved := newReceiver(t, reply(204, ""))
		modify(t, f, func(ep *hub.Endpoint) { ep.URL = moved.URL })
		close(b.release)
		servedInLine(t, f, q, second)
		if n := len(moved.Requests()); n != 1 {
			t.Errorf("the endpoint's new URL got %d requests, want the waiter's", n)
		}
		if n := b.total.Load(); n != 1 {
			t.Errorf("the endpoint's old URL got %d requests, want only the one under way when it moved", n)
		}
	})

	t.Run("a waiter whose endpoint was disabled meanwhile sends nothing", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		outbound.SetEndpointFresh(d, 0)
		second := joinLine(t, d, f)
		modify(t, f, func(ep *hub.Endpoint) { ep.Enabled, ep.DisabledReason = false, "disabled by an operator" })
		close(b.release)
		waitDisabledFailure(t, f, second)
		waitersDone(t, d)
		onlyFirstSent(t, b, d, f)
		notQueued(t, q, second)
		// The waiter's slot is free again: once enabled, the endpoint takes
		// the next attempt at once.
		modify(t, f, func(ep *hub.Endpoint) { ep.Enabled, ep.DisabledReason = true, "" })
		next := f.another(t)
		d.DeliverNew(f.fresh(t, next))
		servedInLine(t, f, q, next)
	})

	t.Run("a waiter whose endpoint was deleted meanwhile is dropped", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		outbound.SetEndpointFresh(d, 0)
		joinLine(t, d, f)
		if err := f.st.DeleteEndpoint(context.Background(), hub.DefaultProgramID, f.endpoint.ID); err != nil {
			t.Fatal(err)
		}
		close(b.release)
		slotsFree(t, d, f)
		waitersDone(t, d)
		onlyFirstSent(t, b, d, f)
		wantNothingQueued(t, q)
	})

	t.Run("a queued waiter whose endpoint was disabled meanwhile sends nothing", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		outbound.SetEndpointFresh(d, 0)
		queued := f.another(t)
		if err := d.Deliver(context.Background(), queued, 1); err != nil {
			t.Fatal(err)
		}
		if n := outbound.InLine(d, f.endpoint.ID); n != 1 {
			t.Fatalf("%d wait for the endpoint, want the queued attempt", n)
		}
		modify(t, f, func(ep *hub.Endpoint) { ep.Enabled, ep.DisabledReason = false, "disabled by an operator" })
		close(b.release)
		waitDisabledFailure(t, f, queued)
		slotsFree(t, d, f)
		waitersDone(t, d)
		onlyFirstSent(t, b, d, f)
		notQueued(t, q, queued)
	})

	t.Run("a waiter whose endpoint cannot be read is queued, not sent", func(t *testing.T) {
		var st *switchedEndpointsStore
		f, b, q, d := setupStore(t, time.Minute, 1, 0, func(s outbound.Store) outbound.Store {
			st = &switchedEndpointsStore{Store: s}
			return st
		})
		outbound.SetEndpointFresh(d, 0)
		waiting := joinLine(t, d, f)
		st.down.Store(true)
		close(b.release)
		wantQueuedUnsent(t, f, b, q, d, waiting)
	})

	t.Run("a failed read is not the next waiter's", func(t *testing.T) {
		var st *switchedEndpointsStore
		f, b, q, d := setupStore(t, time.Minute, 1, 0, func(s outbound.Store) outbound.Store {
			st = &switchedEndpointsStore{Store: s}
			return st
		})
		outbound.SetEndpointFresh(d, 200*time.Millisecond)
		inLine := fillLine(t, d, f, 3)
		time.Sleep(250 * time.Millisecond) // their rows are old: each waiter reads again
		st.fails.Store(1)
		close(b.release)
		waitQueued(t, q, inLine[0])
		servedInLine(t, f, q, inLine[1:]...)
	})

	t.Run("a waiter whose endpoint's timeout no longer fits is queued, not sent", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		outbound.SetEndpointFresh(d, 0)
		waiting := joinLine(t, d, f)
		// The attempt must end within 10 s of the row becoming due: a 60-s
		// timeout, set while it waited, no longer fits.
		modify(t, f, func(ep *hub.Endpoint) { ep.TimeoutMS = 60_000 })
		close(b.release)
		wantQueuedUnsent(t, f, b, q, d, waiting)
	})

	t.Run("a waiter reads its endpoint again only when its row is old", func(t *testing.T) {
		var st *readCountingStore
		f, b, q, d := setupStore(t, time.Minute, 1, 0, func(s outbound.Store) outbound.Store {
			st = &readCountingStore{Store: s}
			return st
		})
		outbound.SetEndpointFresh(d, time.Minute)
		second := joinLine(t, d, f)
		// The endpoint moves; an attempt that comes after reads it as it
		// is now, and the waiter before it sends with that row too.
		moved := newReceiver(t, reply(204, ""))
		modify(t, f, func(ep *hub.Endpoint) { ep.URL = moved.URL })
		third := joinLineAt(t, d, f, 2)
		reads := st.endpoints.Load()
		close(b.release)
		servedInLine(t, f, q, second, third)
		if n := st.endpoints.Load(); n != reads {
			t.Errorf("the waiters read the endpoint %d more times, want none", n-reads)
		}
		if n := len(moved.Requests()); n != 2 {
			t.Errorf("the endpoint's new URL got %d requests, want both waiters'", n)
		}
		// With the line empty, the dispatcher keeps no row of the endpoint
		// (nor its secrets) for it.
		if outbound.KeepsRow(d, f.endpoint.ID) {
			t.Error("the endpoint's row is kept after its line emptied")
		}
	})

	t.Run("a waiter whose time runs out first is held back on time", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		// A first attempt may wait about 8 s; behind it, a queued attempt
		// due 7.5 s ago may wait only half a second (it must end within
		// 10 s of being due, and may take 2).
		first := joinLine(t, d, f)
		late := deliverDue(t, d, f, 7500*time.Millisecond)
		if n := outbound.InLine(d, f.endpoint.ID); n != 2 {
			t.Fatalf("%d wait for the endpoint, want 2", n)
		}
		deadline := time.Now().Add(3 * time.Second)
		for outbound.InLine(d, f.endpoint.ID) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("after 3 s, %d wait for the endpoint; the late attempt's time ran out after 0.5 s", outbound.InLine(d, f.endpoint.ID))
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Held back by the dispatcher's clock (base), without an attempt.
		waitHeld := time.Now().Add(5 * time.Second)
		for {
			del := f.byID(t, late)
			if del.Attempts == 0 && del.NextAttemptAt.Before(base.Add(time.Hour)) {
				break
			}
			if time.Now().After(waitHeld) {
				t.Fatalf("late attempt: %d attempts, next %v; want held back from %v", del.Attempts, del.NextAttemptAt, base)
			}
			time.Sleep(5 * time.Millisecond)
		}
		close(b.release)
		servedInLine(t, f, q, first)
	})

	t.Run("a queued attempt past its time to wait is held back", func(t *testing.T) {
		f, b, _, d := setup(t, time.Minute)
		// Due 9 s ago: with a 2 s timeout it must end within 10 s of
		// that, no time left to wait.
		late := deliverDue(t, d, f, 9*time.Second)
		if n := outbound.InLine(d, f.endpoint.ID); n != 0 {
			t.Errorf("%d wait for the endpoint, want 0", n)
		}
		// Held back by the dispatcher's clock (base); its task is queued
		// again after the requeue delay.
		if del := f.byID(t, late); del.Attempts != 0 || !del.NextAttemptAt.After(base) || del.NextAttemptAt.After(base.Add(time.Hour)) {
			t.Errorf("late attempt: %d attempts, next %v; want held back from %v", del.Attempts, del.NextAttemptAt, base)
		}
		close(b.release)
	})

	t.Run("a slow endpoint gets no line", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		// At 2 minutes per attempt, the slot would come after the wait:
		// the attempt is held back at once (waiting, it would not be
		// queued before the release).
		outbound.SetPace(d, f.endpoint.ID, 2*time.Minute)
		heldAtOnce(t, f, q, d)
		close(b.release)
	})

	t.Run("a first attempt waits at most the slot wait, then is held back", func(t *testing.T) {
		f, b, q, d := setup(t, 30*time.Millisecond)
		second := f.another(t)
		start := time.Now()
		d.DeliverNew(f.fresh(t, second))
		waitQueued(t, q, second)
		if el := time.Since(start); el < 30*time.Millisecond {
			t.Errorf("held back after %v, want after waiting 30 ms for the slot", el)
		}
		if n := outbound.InLine(d, f.endpoint.ID); n != 0 {
			t.Errorf("%d still wait for the endpoint, want 0", n)
		}
		if del := f.byID(t, second); del.Status != hub.DeliveryPending || del.Attempts != 0 || !del.NextAttemptAt.After(base) {
			t.Errorf("held-back delivery: status %q, %d attempts, next %v; want pending, 0, moved later", del.Status, del.Attempts, del.NextAttemptAt)
		}
		close(b.release)
		waitSucceeded(t, f, f.delivery)
		b.withinLimit(t, 1)
	})

	t.Run("Close lets a waiting first attempt finish", func(t *testing.T) {
		f, b, q, d := setup(t, time.Minute)
		second := joinLine(t, d, f)
		done := make(chan struct{})
		go func() { d.Close(); close(done) }()
		for !outbound.Closing(d) {
			time.Sleep(time.Millisecond)
		}
		close(b.release)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return")
		}
		servedInLine(t, f, q, second)
	})
}
