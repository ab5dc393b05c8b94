package outbound_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
	"github.com/partnerhub/partnerhub/outbound"
)

// world is a store with endpoints, and a dispatcher over it with the
// fixed clock and jitter, whose held-back deliveries are queued again at
// once.
type world struct {
	st  *store.DB
	q   *fakeQueue
	clk *clock
	d   *outbound.Dispatcher
}

func newWorld(t *testing.T, cfg outbound.Config, eps ...*hub.Endpoint) *world {
	t.Helper()
	w := &world{st: storetest.Open(t), q: &fakeQueue{}, clk: &clock{t: base}}
	for _, ep := range eps {
		if ep.ID == "" {
			ep.ID = hub.NewID("ep")
		}
		ep.ProgramID = hub.DefaultProgramID
		if ep.Secret == "" {
			ep.Secret = outbound.NewSecret()
		}
		ep.CreatedAt = base
		if err := w.st.CreateEndpoint(context.Background(), ep); err != nil {
			t.Fatalf("CreateEndpoint: %v", err)
		}
	}
	if cfg.Schedule == nil {
		cfg.Schedule = testSchedule
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = localClient(t)
	}
	cfg.Now = w.clk.Now
	cfg.Rand = func() float64 { return jitter }
	d, err := outbound.New(cfg, w.st, w.q)
	if err != nil {
		t.Fatal(err)
	}
	outbound.SetRequeueDelay(d, 0)
	t.Cleanup(d.Close)
	w.d = d
	return w
}

// event writes an event of type typ and returns its deliveries by
// endpoint id.
func (w *world) event(t *testing.T, typ string) map[string]*hub.Delivery {
	t.Helper()
	evt := &hub.Event{
		ID:        hub.NewID("evt"),
		ProgramID: hub.DefaultProgramID,
		Type:      typ,
		Data:      json.RawMessage(`{"commission_id":"com_1"}`),
		CreatedAt: base,
	}
	var ds []*hub.Delivery
	if err := w.st.InTx(context.Background(), func(tx hub.Tx) error {
		var err error
		ds, err = tx.InsertEvent(context.Background(), evt)
		return err
	}); err != nil {
		t.Fatalf("InsertEvent: %v", err)
	}
	out := map[string]*hub.Delivery{}
	for _, d := range ds {
		out[d.EndpointID] = d
	}
	return out
}

// deliver runs one Deliver and fails the test on an error.
func (w *world) deliver(t *testing.T, id string, attempt int) {
	t.Helper()
	if err := w.d.Deliver(context.Background(), id, attempt); err != nil {
		t.Fatalf("Deliver(%s, %d): %v", id, attempt, err)
	}
}

// get returns a delivery with its attempts.
func (w *world) get(t *testing.T, id string) *hub.Delivery {
	t.Helper()
	d, err := w.st.GetDeliveryLog(context.Background(), hub.DefaultProgramID, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// requeued returns the enqueues of attempt of delivery id.
func (w *world) requeued(id string, attempt int) []enqueued {
	outbound.WaitRequeues(w.d)
	var out []enqueued
	for _, c := range w.q.Calls() {
		if c.DeliveryID == id && c.Attempt == attempt {
			out = append(out, c)
		}
	}
	return out
}

// wantHeld checks that attempt of delivery id was held back: no attempt
// recorded, the row due again between min and max from the clock, and the
// same attempt queued again for then.
func (w *world) wantHeld(t *testing.T, id string, attempt int, minWait, maxWait time.Duration) {
	t.Helper()
	del := w.get(t, id)
	if del.Status != hub.DeliveryPending || del.Attempts != attempt-1 || len(del.AttemptLog) != attempt-1 {
		t.Errorf("held delivery: status %q, %d attempts (%d recorded); want pending, %d", del.Status, del.Attempts, len(del.AttemptLog), attempt-1)
	}
	now := w.clk.Now()
	if del.NextAttemptAt == nil || del.NextAttemptAt.Before(now.Add(minWait)) || del.NextAttemptAt.After(now.Add(maxWait)) {
		t.Errorf("held delivery due at %v, want between +%v and +%v", del.NextAttemptAt, minWait, maxWait)
		return
	}
	calls := w.requeued(id, attempt)
	if len(calls) == 0 || !calls[len(calls)-1].At.Equal(*del.NextAttemptAt) {
		t.Errorf("queued %+v, want attempt %d queued last at %v", calls, attempt, *del.NextAttemptAt)
	}
}

// gate is a receiver handler that holds each request until released (or
// the client gives up) and tells when one arrives.
type gate struct {
	arrived chan struct{}
	release chan struct{}
	status  atomic.Int32
}

func newGate() *gate {
	g := &gate{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	g.status.Store(http.StatusOK)
	return g
}

func (g *gate) handle(w http.ResponseWriter, r *http.Request) {
	g.arrived <- struct{}{}
	select {
	case <-g.release:
	case <-r.Context().Done():
		return
	}
	w.WriteHeader(int(g.status.Load()))
}

func TestBreakerHoldsDeliveriesWithoutUsingAttempts(t *testing.T) {
	var status atomic.Int32
	status.Store(500)
	g := newGate()
	var gated atomic.Bool
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		if gated.Load() {
			g.handle(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	})
	ep := &hub.Endpoint{URL: rc.URL, Enabled: true}
	const cooldown = 300 * time.Millisecond
	w := newWorld(t, outbound.Config{BreakerFailures: 3, BreakerCooldown: cooldown}, ep)
	var ids []string
	for range 6 {
		ids = append(ids, w.event(t, "commission.created")[ep.ID].ID)
	}

	// Three failures open the breaker.
	for _, id := range ids[:3] {
		w.deliver(t, id, 1)
	}
	opened := time.Now()
	// Held back while open: no request, no attempt used; due again once
	// the breaker may let a probe through, plus a share of the spread
	// (jitter 0.75 of the cooldown).
	w.deliver(t, ids[3], 1)
	w.deliver(t, ids[4], 1)
	if n := len(rc.Requests()); n != 3 {
		t.Fatalf("receiver got %d requests, want 3 (the breaker is open)", n)
	}
	w.wantHeld(t, ids[3], 1, cooldown/2, cooldown+cooldown*3/4+50*time.Millisecond)
	w.wantHeld(t, ids[4], 1, cooldown/2, cooldown+cooldown*3/4+50*time.Millisecond)
	// A delivery on its retry is held the same way, keeping its number.
	w.deliver(t, ids[0], 2)
	w.wantHeld(t, ids[0], 2, cooldown/2, 2*cooldown)

	// After the cooldown one probe goes out (half-open); while it is
	// under way, others wait for it.
	time.Sleep(time.Until(opened.Add(cooldown + 20*time.Millisecond)))
	gated.Store(true)
	probe := make(chan error, 1)
	go func() { probe <- w.d.Deliver(context.Background(), ids[3], 1) }()
	select {
	case <-g.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the probe did not arrive")
	}
	w.deliver(t, ids[5], 1)
	w.wantHeld(t, ids[5], 1, 0, 2*time.Second+cooldown)
	close(g.release)
	if err := <-probe; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if d := w.get(t, ids[3]); d.Status != hub.DeliverySucceeded || d.Attempts != 1 || len(d.AttemptLog) != 1 || d.AttemptLog[0].Number != 1 {
		t.Errorf("probe delivery: status %q, %d attempts; want succeeded with attempt 1", d.Status, d.Attempts)
	}

	// The probe closed the breaker: the held deliveries go out when they
	// come back, as their first attempt.
	for _, id := range []string{ids[4], ids[5]} {
		w.deliver(t, id, 1)
		if d := w.get(t, id); d.Status != hub.DeliverySucceeded || d.Attempts != 1 {
			t.Errorf("delivery %s after recovery: status %q, %d attempts; want succeeded, 1", id, d.Status, d.Attempts)
		}
	}
	w.deliver(t, ids[0], 2)
	if d := w.get(t, ids[0]); d.Status != hub.DeliverySucceeded || d.Attempts != 2 {
		t.Errorf("retried delivery after recovery: status %q, %d attempts; want succeeded, 2", d.Status, d.Attempts)
	}
}

func TestBreakerIgnoresQuickClientErrors(t *testing.T) {
	// 404s come back quickly from a live receiver: the breaker stays
	// closed (the deliveries retry on their schedule all the same).
	rc := newReceiver(t, reply(404, "no such hook"))
	ep := &hub.Endpoint{URL: rc.URL, Enabled: true}
	w := newWorld(t, outbound.Config{BreakerFailures: 2}, ep)
	for range 4 {
		w.deliver(t, w.event(t, "commission.created")[ep.ID].ID, 1)
	}
	if n := len(rc.Requests()); n != 4 {
		t.Errorf("receiver got %d requests, want 4 (breaker closed)", n)
	}
}

func TestBreakerPerEndpoint(t *testing.T) {
	// An open breaker holds back only its endpoint's deliveries.
	down := newReceiver(t, reply(503, ""))
	up := newReceiver(t, reply(204, ""))
	epDown := &hub.Endpoint{URL: down.URL, Enabled: true}
	epUp := &hub.Endpoint{URL: up.URL, Enabled: true}
	w := newWorld(t, outbound.Config{BreakerFailures: 2}, epDown, epUp)
	for range 4 {
		ds := w.event(t, "commission.created")
		w.deliver(t, ds[epDown.ID].ID, 1)
		w.deliver(t, ds[epUp.ID].ID, 1)
		if d := w.get(t, ds[epUp.ID].ID); d.Status != hub.DeliverySucceeded {
			t.Errorf("delivery to the healthy endpoint: %q, want succeeded", d.Status)
		}
	}
	if n := len(down.Requests()); n != 2 {
		t.Errorf("failing endpoint got %d requests, want 2 (then its breaker opened)", n)
	}
}

func TestRateLimitReschedules(t *testing.T) {
	rc := newReceiver(t, reply(204, ""))
	ep := &hub.Endpoint{URL: rc.URL, Enabled: true, EndpointSettings: hub.EndpointSettings{RateLimit: 2}}
	w := newWorld(t, outbound.Config{}, ep)
	var ids []string
	for range 4 {
		ids = append(ids, w.event(t, "commission.created")[ep.ID].ID)
	}
	// A burst of one second's worth (2), then one every 500 ms: the third
	// waits about 500 ms and the fourth about 1 s, each for its own slot.
	w.deliver(t, ids[0], 1)
	w.deliver(t, ids[1], 1)
	w.deliver(t, ids[2], 1)
	w.deliver(t, ids[3], 1)
	if n := len(rc.Requests()); n != 2 {
		t.Fatalf("receiver got %d requests, want 2", n)
	}
	w.wantHeld(t, ids[2], 1, 300*time.Millisecond, 600*time.Millisecond)
	w.wantHeld(t, ids[3], 1, 800*time.Millisecond, 1100*time.Millisecond)
	// A held delivery has its slot: when it comes back it goes out
	// without waiting again.
	w.deliver(t, ids[2], 1)
	if d := w.get(t, ids[2]); d.Status != hub.DeliverySucceeded || d.Attempts != 1 {
		t.Errorf("rate-limited delivery when it comes back: %q, %d attempts; want succeeded, 1", d.Status, d.Attempts)
	}
}

func TestEndpointConcurrencyLimit(t *testing.T) {
	g := newGate()
	rc := newReceiver(t, g.handle)
	ep := &hub.Endpoint{URL: rc.URL, Enabled: true, EndpointSettings: hub.EndpointSettings{MaxInFlight: 1}}
	w := newWorld(t, outbound.Config{}, ep)
	first := w.event(t, "commission.created")[ep.ID].ID
	second := w.event(t, "commission.created")[ep.ID].ID
	done := make(chan error, 1)
	go func() { done <- w.d.Deliver(context.Background(), first, 1) }()
	<-g.arrived
	// One attempt under way: the next is held back about a second
	// (jittered: 1.25 s with the tests' jitter), without waiting.
	start := time.Now()
	w.deliver(t, second, 1)
	if el := time.Since(start); el > time.Second {
		t.Errorf("held-back Deliver took %v; it must not wait", el)
	}
	w.wantHeld(t, second, 1, time.Second, 1500*time.Millisecond)
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w.deliver(t, second, 1)
	if d := w.get(t, second); d.Status != hub.DeliverySucceeded {
		t.Errorf("second delivery: %q, want succeeded once the first is done", d.Status)
	}
}
