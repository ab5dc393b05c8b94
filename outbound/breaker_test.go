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
// once (for then), whatever the hold.
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
	outbound.SetLocalHold(d, 0)
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

// underWay starts the attempts of ids, each held at g until finish, and
// waits until they have all reached it; finish releases them and checks
// they were recorded.
func (w *world) underWay(t *testing.T, g *gate, ids ...string) (finish func()) {
	t.Helper()
	done := make(chan error, len(ids))
	for _, id := range ids {
		go func() { done <- w.d.Deliver(context.Background(), id, 1) }()
		<-g.arrived
	}
	return func() {
		t.Helper()
		close(g.release)
		for range ids {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestEndpointConcurrencyLimit(t *testing.T) {
	g := newGate()
	rc := newReceiver(t, g.handle)
	ep := &hub.Endpoint{URL: rc.URL, Enabled: true, EndpointSettings: hub.EndpointSettings{MaxInFlight: 1}}
	w := newWorld(t, outbound.Config{}, ep)
	first := w.event(t, "commission.created")[ep.ID].ID
	second := w.event(t, "commission.created")[ep.ID].ID
	third := w.event(t, "commission.created")[ep.ID].ID
	finish := w.underWay(t, g, first)
	// One attempt under way and none timed yet: the next is held back
	// 100 ms (105 ms with the tests' jitter), without waiting, and the
	// one after it 100 ms later, when the endpoint has had time for one
	// more attempt.
	start := time.Now()
	w.deliver(t, second, 1)
	if el := time.Since(start); el > time.Second {
		t.Errorf("held-back Deliver took %v; it must not wait", el)
	}
	w.wantHeld(t, second, 1, 100*time.Millisecond, 110*time.Millisecond)
	w.deliver(t, third, 1)
	w.wantHeld(t, third, 1, 200*time.Millisecond, 220*time.Millisecond)
	finish()
	w.deliver(t, second, 1)
	if d := w.get(t, second); d.Status != hub.DeliverySucceeded {
		t.Errorf("second delivery: %q, want succeeded once the first is done", d.Status)
	}
}

// A delivery held back by a busy endpoint waits for its turn at the
// endpoint's pace: the moving average of its attempts' durations over its
// concurrency limit.
func TestBusyHoldFollowsPace(t *testing.T) {
	t.Run("learned from the attempts", func(t *testing.T) {
		g := newGate()
		slow := func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(300 * time.Millisecond)
			w.WriteHeader(http.StatusOK)
		}
		rc := newReceiver(t, slow, g.handle)
		ep := &hub.Endpoint{URL: rc.URL, Enabled: true, EndpointSettings: hub.EndpointSettings{MaxInFlight: 1}}
		w := newWorld(t, outbound.Config{}, ep)
		timed := w.event(t, "commission.created")[ep.ID].ID
		first := w.event(t, "commission.created")[ep.ID].ID
		second := w.event(t, "commission.created")[ep.ID].ID
		w.deliver(t, timed, 1) // one attempt of at least 300 ms
		finish := w.underWay(t, g, first)
		w.deliver(t, second, 1)
		// At least 315 ms (300 ms and the tests' jitter), not the 105 ms
		// of an endpoint never timed.
		w.wantHeld(t, second, 1, 315*time.Millisecond, 5*time.Second)
		finish()
	})

	t.Run("a moving average", func(t *testing.T) {
		rc := newReceiver(t, reply(200, ""))
		ep := &hub.Endpoint{URL: rc.URL, Enabled: true}
		w := newWorld(t, outbound.Config{}, ep)
		id := w.event(t, "commission.created")[ep.ID].ID
		outbound.SetPace(w.d, ep.ID, 800*time.Millisecond)
		w.deliver(t, id, 1)
		// An eighth of the way from 800 ms to a quick attempt's duration.
		if p := outbound.Pace(w.d, ep.ID); p < 700*time.Millisecond || p > 725*time.Millisecond {
			t.Errorf("pace after a quick attempt: %v, want 700 ms and an eighth of the attempt", p)
		}
	})

	t.Run("a line spaced by pace over the limit, bounded", func(t *testing.T) {
		g := newGate()
		rc := newReceiver(t, g.handle)
		ep := &hub.Endpoint{URL: rc.URL, Enabled: true, EndpointSettings: hub.EndpointSettings{MaxInFlight: 2}}
		w := newWorld(t, outbound.Config{}, ep)
		var ids []string
		for range 7 {
			ids = append(ids, w.event(t, "commission.created")[ep.ID].ID)
		}
		finish := w.underWay(t, g, ids[:2]...)
		// 40 ms an attempt, two at once: a slot every 20 ms. The waits
		// are 40, 60 and 80 ms, with the tests' jitter 42, 63 and 84 ms.
		outbound.SetPace(w.d, ep.ID, 40*time.Millisecond)
		for i, want := range []time.Duration{42, 63, 84} {
			id := ids[2+i]
			w.deliver(t, id, 1)
			w.wantHeld(t, id, 1, want*time.Millisecond, want*time.Millisecond)
		}
		// The endpoint speeds up to 10 ms an attempt: what is left of the
		// line (80 ms) shrinks to 20 ms, and the next waits 25 ms (26 ms
		// with the jitter), not 85.
		outbound.SetPace(w.d, ep.ID, 10*time.Millisecond)
		w.deliver(t, ids[5], 1)
		w.wantHeld(t, ids[5], 1, 26*time.Millisecond, 26*time.Millisecond)
		// Once the line has gone by, the next waits one attempt again; an
		// endpoint that takes an hour an attempt is asked again within
		// 30 s (31.5 s with the jitter).
		w.clk.Add(time.Second)
		outbound.SetPace(w.d, ep.ID, time.Hour)
		w.deliver(t, ids[6], 1)
		w.wantHeld(t, ids[6], 1, 31500*time.Millisecond, 31500*time.Millisecond)
		finish()
	})
}

// asynq keeps due times in whole seconds: a hold of up to 5 s is waited
// out in process and its task queued when due; a longer one is queued at
// once for then.
func TestShortHoldsWaitedInProcess(t *testing.T) {
	g := newGate()
	rc := newReceiver(t, g.handle)
	ep := &hub.Endpoint{URL: rc.URL, Enabled: true, EndpointSettings: hub.EndpointSettings{MaxInFlight: 1}}
	// The gated attempt lasts the whole test.
	w := newWorld(t, outbound.Config{Timeout: 10 * time.Second}, ep)
	outbound.SetLocalHold(w.d, 5*time.Second)
	first := w.event(t, "commission.created")[ep.ID].ID
	short := w.event(t, "commission.created")[ep.ID].ID
	long := w.event(t, "commission.created")[ep.ID].ID
	defer w.underWay(t, g, first)()

	outbound.SetPace(w.d, ep.ID, 2*time.Second) // a 2.1 s hold
	start := time.Now()
	w.deliver(t, short, 1)
	if calls := w.q.Calls(); len(calls) != 0 {
		t.Fatalf("queued %+v at once, want the 2.1 s hold waited out first", calls)
	}
	w.wantHeld(t, short, 1, 2100*time.Millisecond, 2100*time.Millisecond)
	if el := time.Since(start); el < 2100*time.Millisecond {
		t.Errorf("the held-back delivery was queued again after %v, want after its 2.1 s hold", el)
	}

	outbound.SetPace(w.d, ep.ID, time.Hour) // a 31.5 s hold
	start = time.Now()
	w.deliver(t, long, 1)
	w.wantHeld(t, long, 1, 31500*time.Millisecond, 31500*time.Millisecond)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("a 31.5 s hold was queued after %v, want at once for then", el)
	}
}
