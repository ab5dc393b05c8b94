// Package outbound sends partner events to endpoints: Standard Webhooks
// signing, the dispatcher that performs one delivery attempt per task (a
// new delivery's first attempt directly, when it can) and schedules the
// next (retry policy, per-endpoint circuit breakers and
// limits, endpoint health and auto-disable), and the API routes for
// endpoints, deliveries and events.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/bounded"
	"github.com/partnerhub/partnerhub/hub/groupcommit"
	"github.com/partnerhub/partnerhub/hub/metrics"
	"github.com/partnerhub/partnerhub/hub/netguard"
)

// APIVersion is the api_version of every envelope.
const APIVersion = "2026-11-01"

// DefaultSchedule is the delay before each attempt: attempt 1 goes out at
// once, the last (8th) about 27 hours after the first.
var DefaultSchedule = []time.Duration{
	0,
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	10 * time.Hour,
}

// maxResponseBody is how much of a receiver's response an attempt keeps.
const maxResponseBody = 4 << 10

// maxDrain is how much more of a response is read (and dropped) so that
// the connection can be reused.
const maxDrain = 64 << 10

// maxTimeout caps an endpoint's TimeoutMS.
const maxTimeout = time.Minute

// Store is what the dispatcher reads and writes; *store.DB implements it.
type Store interface {
	// DeliveryTargets loads deliveries, their events and their endpoints
	// (secrets in clear) in one query, at the indexes of ids; nils where a
	// delivery is gone.
	DeliveryTargets(ctx context.Context, ids []string) ([]*hub.Delivery, []*hub.Event, []*hub.Endpoint, error)
	// DeliveryEndpoints loads endpoints (secrets in clear) in one query,
	// at the indexes of ids; nils where an endpoint is gone.
	DeliveryEndpoints(ctx context.Context, ids []string) ([]*hub.Endpoint, error)
	// RecordAttempts records attempts in one transaction, each as
	// hub.Store.RecordAttempt does, and returns one error per attempt
	// (ECONFLICT: another worker recorded it).
	RecordAttempts(ctx context.Context, ds []*hub.Delivery, as []*hub.Attempt) []error
	// DeferDeliveries moves pending deliveries' next attempts without
	// using an attempt (ids[i] to at[i], unless it no longer has
	// attempts[i] attempts) and reports which it moved.
	DeferDeliveries(ctx context.Context, ids []string, attempts []int, at []time.Time) ([]bool, error)
	// SetEndpointFailing starts (since set, unless a run is recorded) or
	// ends (since nil) an endpoint's run of failures.
	SetEndpointFailing(ctx context.Context, id string, since *time.Time) (bool, error)
	// AutoDisableEndpoint disables an enabled endpoint, fails its pending
	// deliveries and stores the event notify builds (with its deliveries),
	// in one transaction. It returns a nil endpoint when the endpoint was
	// not enabled.
	AutoDisableEndpoint(ctx context.Context, id, reason string, at time.Time, notify func(*hub.Endpoint) (*hub.Event, error)) (*hub.Endpoint, []*hub.Delivery, error)
}

// Config configures a Dispatcher.
type Config struct {
	// Schedule holds the delay before each attempt: Schedule[i] before
	// attempt i+1, so len(Schedule) is the number of attempts. Schedule[0]
	// is not used by the dispatcher (the first attempt is queued when the
	// event is written). Non-zero delays get ±20 % jitter. Nil means
	// DefaultSchedule: 0, 5s, 5m, 30m, 2h, 5h, 10h, 10h.
	Schedule []time.Duration
	// Timeout bounds one attempt to an endpoint without TimeoutMS:
	// connecting, sending and reading the response. Zero means 10
	// seconds. Connecting alone is also bounded by the client's dialer
	// (netguard's: 10 s). An endpoint's TimeoutMS is capped at 1 minute.
	Timeout time.Duration
	// Client sends the requests. It is copied, never follows redirects
	// whatever its CheckRedirect, and its *http.Transport (if it has one)
	// is cloned with an idle pool sized for the dispatcher's concurrency.
	// Nil means netguard.NewClient with no allowed networks (public
	// addresses only).
	Client *http.Client
	// Now gives the time of an attempt. Nil means time.Now.
	Now func() time.Time
	// Rand returns a number in [0, 1) for the jitter. Nil means
	// math/rand/v2's Float64.
	Rand func() float64
	// UserAgent is sent with every request. "" means
	// "partnerhub-webhooks/1".
	UserAgent string
	// BreakerFailures is how many consecutive failed attempts open an
	// endpoint's circuit breaker. Zero means 5.
	BreakerFailures int
	// BreakerCooldown is how long an open breaker holds deliveries back
	// before it lets one probe attempt through. Zero means 30 seconds.
	BreakerCooldown time.Duration
	// DisableAfter is how long an endpoint may fail without one successful
	// attempt before it is disabled. Zero means 5 days.
	DisableAfter time.Duration
	// MaxInFlight bounds the requests the dispatcher has under way, over
	// all endpoints; an attempt waits for a free slot. Zero means 128.
	MaxInFlight int
	// EndpointMaxInFlight is the concurrency limit of endpoints without
	// MaxInFlight: an attempt over it is held back until its turn at the
	// endpoint's pace, without using an attempt (it may first wait in the
	// endpoint's line: see joinLine). Zero means 10.
	EndpointMaxInFlight int
	// MaxBatch bounds how many deliveries (or first attempts' endpoints)
	// one query loads or holds back, and how many attempts one statement
	// records: attempts that start or finish together are loaded or
	// recorded together. Zero means 256.
	MaxBatch int
	// BatchConcurrency is how many batches of each kind (loads, records,
	// holds) may run at once. Zero means 2.
	BatchConcurrency int
	// DirectWithin lets DeliverNew make new deliveries' first attempts in
	// this process, without a queue task, when the whole attempt fits in
	// it: the endpoint's timeout must end within DirectWithin of the
	// delivery becoming due, counted when the attempt starts. The hub
	// sets it to half the sweep interval, so that the sweeper never
	// queues a delivery whose first attempt is under way.
	// Zero: every first attempt is a queue task.
	DirectWithin time.Duration
	// Logger zero value: slog.Default().
	Logger *slog.Logger
}

// Dispatcher performs delivery attempts: it handles "outbound:deliver"
// tasks.
type Dispatcher struct {
	schedule            []time.Duration
	maxDelay            time.Duration
	timeout             time.Duration
	client              *http.Client
	now                 func() time.Time
	rand                func() float64
	userAgent           string
	breakerFailures     int
	breakerCooldown     time.Duration
	disableAfter        time.Duration
	endpointMaxInFlight int
	log                 *slog.Logger
	st                  Store
	q                   hub.Queue
	rec                 *groupcommit.Batcher[record, error]
	load                *groupcommit.Batcher[string, target]
	loadEndpoint        *groupcommit.Batcher[string, endpointRow]
	hold                *groupcommit.Batcher[deferral, deferred]

	// Direct first attempts (DeliverNew), canceled by stopDirect once
	// Close has waited closeWait for them.
	directWithin time.Duration
	direct       *bounded.Group
	directCtx    context.Context
	stopDirect   context.CancelFunc
	// waiting is the line of first attempts DeliverNew took while every
	// direct slot was busy (at most waitingMax); a direct goroutine takes
	// the next one when its attempt ends. running counts the direct
	// goroutines that will still look at the line before they return.
	waitMu     sync.Mutex
	waiting    []fresh
	waitingMax int
	running    int
	waitClosed bool

	sem       chan struct{}
	endpoints sync.Map // endpoint id → *endpointState

	// Attempts waiting in their endpoints' lines (see joinLine): how many
	// (at most maxLines), whether Close has emptied the lines, and the
	// goroutines started for those that left a line.
	lineTotal  atomic.Int64
	maxLines   int64
	lineClosed atomic.Bool
	resumed    sync.WaitGroup
	resumedN   atomic.Int64 // resumed goroutines running

	// requeueDelay is how long after a held-back attempt its task is
	// queued again: the running task's id must be free by then.
	requeueDelay time.Duration
	// localHold is the longest hold waited out in this process (see
	// holdBack).
	localHold time.Duration
	// slotWait is maxSlotWait, or what a test sets.
	slotWait time.Duration
	// endpointFresh is endpointFresh, or what a test sets.
	endpointFresh time.Duration
	mu            sync.Mutex
	timers        map[*time.Timer]struct{}
	requeues      sync.WaitGroup
}

// errStopping is returned by Deliver when its context ends before the
// attempt was made: the task runs again.
var errStopping = errors.New("the worker is stopping")

// errHandOver is returned by a direct attempt that cannot be made at once
// (the endpoint's timeout does not fit, every slot is taken): it becomes
// a queue task.
var errHandOver = errors.New("handed over to the queue")

// errInLine is returned by a direct attempt that waits in its endpoint's
// line: it goes on when a slot passes to it (runWaiter), or is held back
// when its wait ends (holdWaiter).
var errInLine = errors.New("waiting in the endpoint's line")

// concludeTimeout bounds recording an attempt made and what follows it
// (endpoint health, the next attempt's task).
const concludeTimeout = 30 * time.Second

// closeWait is how long Close lets direct first attempts under way finish
// before it cancels them (the rows stay pending: the sweeper queues them).
const closeWait = 5 * time.Second

// New returns a Dispatcher that reads and records deliveries in st and
// queues next attempts on q.
func New(cfg Config, st Store, q hub.Queue) (*Dispatcher, error) {
	if st == nil || q == nil {
		return nil, errors.New("creating dispatcher: store and queue are required")
	}
	if cfg.Schedule == nil {
		cfg.Schedule = DefaultSchedule
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = netguard.NewClient(netguard.Config{Timeout: cfg.Timeout})
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "partnerhub-webhooks/1"
	}
	if cfg.BreakerFailures == 0 {
		cfg.BreakerFailures = 5
	}
	if cfg.BreakerCooldown == 0 {
		cfg.BreakerCooldown = 30 * time.Second
	}
	if cfg.DisableAfter == 0 {
		cfg.DisableAfter = 5 * 24 * time.Hour
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 128
	}
	if cfg.EndpointMaxInFlight == 0 {
		cfg.EndpointMaxInFlight = 10
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 256
	}
	if cfg.BatchConcurrency == 0 {
		cfg.BatchConcurrency = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var errs []error
	if len(cfg.Schedule) == 0 {
		errs = append(errs, errors.New("the schedule needs at least one attempt"))
	}
	var maxDelay time.Duration
	for i, d := range cfg.Schedule {
		if d < 0 {
			errs = append(errs, fmt.Errorf("schedule delay %d is negative", i+1))
		}
		maxDelay = max(maxDelay, d)
	}
	for _, c := range []struct {
		name string
		bad  bool
	}{
		{"timeout is negative", cfg.Timeout < 0},
		{"BreakerFailures is negative", cfg.BreakerFailures < 0},
		{"BreakerCooldown is negative", cfg.BreakerCooldown < 0},
		{"DisableAfter is negative", cfg.DisableAfter < 0},
		{"MaxInFlight is negative", cfg.MaxInFlight < 0},
		{"EndpointMaxInFlight is negative", cfg.EndpointMaxInFlight < 0},
		{"MaxBatch is negative", cfg.MaxBatch < 0},
		{"BatchConcurrency is negative", cfg.BatchConcurrency < 0},
		{"DirectWithin is negative", cfg.DirectWithin < 0},
	} {
		if c.bad {
			errs = append(errs, errors.New(c.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating dispatcher: %w", err)
	}
	client := *cfg.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	client.Timeout = 0 // every attempt's context carries its deadline
	if tr, ok := client.Transport.(*http.Transport); ok {
		// Keep enough idle connections for every endpoint's concurrent
		// attempts: the default pools (2 or 4 per host) close and redial
		// connections under load.
		tr = tr.Clone()
		tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, 2*cfg.EndpointMaxInFlight, 64)
		tr.MaxIdleConns = max(tr.MaxIdleConns, 2*cfg.MaxInFlight)
		client.Transport = tr
	}
	directCtx, stopDirect := context.WithCancel(context.Background())
	return &Dispatcher{
		schedule:            append([]time.Duration(nil), cfg.Schedule...),
		maxDelay:            maxDelay,
		timeout:             cfg.Timeout,
		client:              &client,
		now:                 cfg.Now,
		rand:                cfg.Rand,
		userAgent:           cfg.UserAgent,
		breakerFailures:     cfg.BreakerFailures,
		breakerCooldown:     cfg.BreakerCooldown,
		disableAfter:        cfg.DisableAfter,
		endpointMaxInFlight: cfg.EndpointMaxInFlight,
		log:                 cfg.Logger,
		st:                  st,
		q:                   q,
		rec:                 newRecorder(st, cfg.MaxBatch, cfg.BatchConcurrency),
		load:                newLoader(st, cfg.MaxBatch, cfg.BatchConcurrency),
		loadEndpoint:        newEndpointLoader(st, cfg.MaxBatch, cfg.BatchConcurrency),
		hold:                newDeferrer(st, cfg.MaxBatch, cfg.BatchConcurrency),
		directWithin:        cfg.DirectWithin,
		direct:              bounded.New(cfg.MaxInFlight),
		waitingMax:          4 * cfg.MaxInFlight,
		directCtx:           directCtx,
		stopDirect:          stopDirect,
		sem:                 make(chan struct{}, cfg.MaxInFlight),
		requeueDelay:        250 * time.Millisecond,
		localHold:           5 * time.Second,
		slotWait:            maxSlotWait,
		endpointFresh:       endpointFresh,
		maxLines:            64 * int64(cfg.MaxInFlight),
		timers:              make(map[*time.Timer]struct{}),
	}, nil
}

// Close waits for the direct first attempts under way (up to 5 seconds,
// then cancels them), stops the re-enqueues of held-back deliveries not
// sent yet (their rows say when they are due: the sweeper queues them)
// and closes idle connections. Deliver must not be running; DeliverNew
// takes nothing once Close has begun, and the attempts still waiting in
// its line are left to the sweeper (their rows are pending and due).
func (d *Dispatcher) Close() {
	d.waitMu.Lock()
	d.waitClosed = true
	dropped := len(d.waiting)
	d.waiting = nil
	d.waitMu.Unlock()
	// Their rows are pending and due: the sweeper queues them.
	metrics.DirectFirstAttempts(metrics.DirectDeclined, dropped)
	start := time.Now()
	d.direct.Close(closeWait)
	// First attempts in line go on as slots free, within the same wait.
	for d.lineTotal.Load()+d.resumedN.Load() > 0 && time.Since(start) < closeWait {
		time.Sleep(5 * time.Millisecond)
	}
	metrics.DirectFirstAttempts(metrics.DirectDeclined, d.dropLines())
	d.stopDirect()
	d.direct.Wait()
	d.resumed.Wait()
	d.mu.Lock()
	for t := range d.timers {
		if t.Stop() {
			d.requeues.Done()
		}
	}
	clear(d.timers)
	d.mu.Unlock()
	d.requeues.Wait()
	d.client.CloseIdleConnections()
}

// DeliverNew makes the first attempts of deliveries just written, in this
// process and at once, instead of queueing a task for each: it saves the
// queue's round trips and polling delay. ds are the deliveries as a
// transaction that has committed wrote them and es their events (es[i]
// is ds[i]'s; none nil): the attempts use them as they are and read only
// their endpoints again. DeliverNew may keep the values it takes until
// their attempts are made; the caller must not change them. It takes
// deliveries from the front while
// it has a free slot (as many as Config.MaxInFlight at once) or room in
// the line of attempts waiting for one (four times as many; a slot makes
// them in turn when its attempt ends), and returns how many it took; the
// caller queues the rest. The time an attempt waits in line counts
// against Config.DirectWithin: one that would end too late is queued when
// its turn comes. Under a load beyond what the slots make at once,
// waiting for a slot costs less than a queue task each, which would take
// CPU from the attempts and let the backlog grow. A taken attempt that
// cannot go at once (its endpoint's timeout does not fit in
// Config.DirectWithin, every request slot is taken, it cannot be
// recorded) is queued as a task; one held back by the endpoint's breaker,
// concurrency or rate limit is held back as Deliver does, except that at
// a fast endpoint's concurrency limit it first waits in the endpoint's
// line for a slot (see joinLine). If the process dies first, the rows are
// pending and due: the sweeper queues them.
func (d *Dispatcher) DeliverNew(ds []*hub.Delivery, es []*hub.Event) int {
	if d.directWithin <= 0 {
		return 0
	}
	if len(es) != len(ds) {
		d.log.Error("new deliveries handed without their events; queueing them", "deliveries", len(ds), "events", len(es))
		metrics.DirectFirstAttempts(metrics.DirectDeclined, len(ds))
		return 0
	}
	taken := 0
	for i, del := range ds {
		f := fresh{d: del, e: es[i]}
		if !d.startDirect(f) && !d.wait(f) {
			break
		}
		taken++
	}
	metrics.DirectFirstAttempts(metrics.DirectDeclined, len(ds)-taken)
	return taken
}

// fresh is a delivery DeliverNew took, with its event.
type fresh struct {
	d *hub.Delivery
	e *hub.Event
}

// startDirect makes f's first attempt in a direct goroutine if a slot
// is free.
func (d *Dispatcher) startDirect(f fresh) bool {
	// Under waitMu, so that running counts only goroutines started: the
	// new one cannot look at the line (and count itself out) before the
	// count includes it.
	d.waitMu.Lock()
	defer d.waitMu.Unlock()
	if d.waitClosed || !d.direct.TryGo(func() { d.runDirect(f) }) {
		return false
	}
	d.running++
	return true
}

// wait puts f in the line of waiting first attempts, if there is room
// and a direct goroutine that will take it.
func (d *Dispatcher) wait(f fresh) bool {
	d.waitMu.Lock()
	defer d.waitMu.Unlock()
	if d.waitClosed || d.running == 0 || len(d.waiting) >= d.waitingMax {
		return false
	}
	d.waiting = append(d.waiting, f)
	return true
}

// runDirect makes f's first attempt, then those waiting in line, until
// the line is empty.
func (d *Dispatcher) runDirect(f fresh) {
	for {
		d.deliverNew(f)
		d.waitMu.Lock()
		if len(d.waiting) == 0 {
			d.running--
			d.waitMu.Unlock()
			return
		}
		f = d.waiting[0]
		d.waiting[0] = fresh{}
		d.waiting = d.waiting[1:]
		d.waitMu.Unlock()
	}
}

// deliverNew makes the first attempt of a delivery DeliverNew took, puts
// it in its endpoint's line, or queues it.
func (d *Dispatcher) deliverNew(f fresh) {
	if err := d.deliverFresh(d.directCtx, f); !errors.Is(err, errInLine) {
		d.directDone(f.d.ID, err)
	}
}

// runWaiter makes the attempt of w, to which a slot of es passed while
// it waited in line.
func (d *Dispatcher) runWaiter(es *endpointState, w *waiter) {
	defer d.resumedDone()
	d.waiterDone(w, d.waiterAttempt(es, w))
}

// waiterAttempt makes the attempt of w, which holds a slot of es, to its
// endpoint as it is now (see freshEndpoint): its URL, secrets, headers,
// timeout and rate limit. It sends nothing, and frees the slot, when the
// endpoint was deleted or disabled while w waited, or cannot be read, or
// (for a first attempt, which is then queued) now has a timeout that would
// end the attempt after the time it must end by. All of that is settled
// before the attempt is admitted, so that the endpoint's breaker counts
// only requests sent. The concurrency limit w joined under stays.
func (d *Dispatcher) waiterAttempt(es *endpointState, w *waiter) error {
	ctx := d.directCtx
	ep, err := d.freshEndpoint(ctx, es, w)
	now := d.now()
	// As attempt does, a first attempt whose timeout does not fit is
	// handed over.
	late := err == nil && !w.queued && d.timeLeft(w.del, ep) < 0
	if err != nil || !ep.Enabled || ctx.Err() != nil || late {
		d.release(es, w.limit)
		switch {
		case errors.Is(err, hub.ErrNotFound):
			// Deleted while it waited: its deliveries went with it.
			return nil
		case err != nil:
			return loadEndpointErr(w.ep.ID, w.del.ID, err)
		case !ep.Enabled:
			return d.concludeDisabled(ctx, w.del, ep, w.attempt, now)
		case ctx.Err() != nil:
			// The worker is stopping (a read may outlast Close's wait).
			return fmt.Errorf("delivering %s: %w", w.del.ID, errStopping)
		}
		return errHandOver
	}
	// A queued attempt waits for a request slot, as its task would have,
	// but not past its deadline; a first attempt never does.
	actx, cancel := context.WithDeadline(ctx, w.deadline)
	g, h, err := d.admitTaken(actx, es, ep, w.del.ID+":"+strconv.Itoa(w.attempt), w.limit, now, w.queued)
	cancel()
	switch {
	case err != nil:
		return err
	case g == nil:
		return d.holdBack(ctx, w.del, ep, w.attempt, now, h, !w.queued)
	}
	return d.sendAndConclude(ctx, g, w.del, w.evt, ep, w.attempt, now)
}

// timeLeft is what is left of directWithin, from when del's row became
// due, once an attempt to ep started now has counted its timeout: past
// that the sweeper may queue the row again. It is negative without a due
// time or DirectWithin.
func (d *Dispatcher) timeLeft(del *hub.Delivery, ep *hub.Endpoint) time.Duration {
	if del.NextAttemptAt == nil || d.directWithin <= 0 {
		return -1
	}
	return d.directWithin - time.Since(*del.NextAttemptAt) - d.endpointTimeout(ep)
}

// concludeDisabled ends the attempt of del to ep, which is disabled, as
// failed without a request.
func (d *Dispatcher) concludeDisabled(ctx context.Context, del *hub.Delivery, ep *hub.Endpoint, attempt int, now time.Time) error {
	return d.conclude(ctx, del, ep, attempt, now, result{class: "endpoint_disabled", msg: "the endpoint is disabled"})
}

// loadEndpointErr is the error of a failed read of endpoint epID for
// delivery delID.
func loadEndpointErr(epID, delID string, err error) error {
	return fmt.Errorf("loading endpoint %s of delivery %s: %w", epID, delID, err)
}

// freshEndpoint returns the endpoint of w as it is now, within
// d.endpointFresh: the row w was read with, or a newer read another
// attempt made while w waited (a row, or hub.ErrNotFound), or else it
// reads the endpoint again. A read that fails otherwise is the caller's
// alone: the next waiter tries its own.
func (d *Dispatcher) freshEndpoint(ctx context.Context, es *endpointState, w *waiter) (*hub.Endpoint, error) {
	ep, err, at := w.ep, error(nil), w.read
	if s := es.seen.Load(); s != nil && s.at.After(at) {
		ep, err, at = s.ep, s.err, s.at
	}
	if time.Since(at) <= d.endpointFresh {
		return ep, err
	}
	read := time.Now()
	r := d.loadEndpoint.Do(ctx, w.ep.ID)
	if r.err == nil || errors.Is(r.err, hub.ErrNotFound) {
		es.sawInLine(r.ep, r.err, read)
	}
	return r.ep, r.err
}

// holdWaiter holds back the attempt of w, whose wait in the line of es
// ended without a slot.
func (d *Dispatcher) holdWaiter(es *endpointState, w *waiter) {
	defer d.resumedDone()
	now := d.now()
	d.waiterDone(w, d.holdBack(d.directCtx, w.del, w.ep, w.attempt, now, d.busyHold(es, w.limit, now), !w.queued))
}

// waiterDone ends the attempt of a waiter with err, as directDone does; the
// task of an attempt that was queued is done already, so a failed one is
// queued again, once that task's id is free (requeueDelay).
func (d *Dispatcher) waiterDone(w *waiter, err error) {
	if !w.queued {
		d.directDone(w.del.ID, err)
		return
	}
	if err == nil {
		return
	}
	d.log.Debug("attempt that waited in line not made; queueing it again", "delivery_id", w.del.ID, "attempt", w.attempt, "error", err)
	d.requeueLater(w.del.ID, w.attempt, d.now(), d.requeueDelay)
}

// resume runs f for a waiter that left the line of es, whose mu is held
// (so that Close, which empties the lines under it, waits for f).
func (d *Dispatcher) resume(f func()) {
	d.resumed.Add(1)
	d.resumedN.Add(1)
	go f()
}

func (d *Dispatcher) resumedDone() {
	d.resumedN.Add(-1)
	d.resumed.Done()
}

// directDone counts a first attempt made in this process that ended with
// err: made, held back or dropped (nil), or queued as a task.
func (d *Dispatcher) directDone(id string, err error) {
	if err == nil {
		metrics.DirectFirstAttempts(metrics.DirectHandled, 1)
		return
	}
	metrics.DirectFirstAttempts(metrics.DirectQueued, 1)
	if !errors.Is(err, errHandOver) {
		d.log.Debug("direct delivery attempt not made; queueing it", "delivery_id", id, "error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.q.EnqueueDelivery(ctx, id, 1, d.now()); err != nil {
		d.log.Warn("queueing delivery; the sweeper will", "delivery_id", id, "error", err)
	}
}

// Deliver performs attempt number attempt (1-based) of a delivery and
// records it. A task that no longer matches the row (the delivery is no
// longer pending, or another attempt is due) does nothing. An attempt the
// endpoint's breaker, concurrency limit or rate limit holds back is not
// made: the row's next attempt moves to when it may pass and the task is
// queued again for then, without using an attempt. On failure Deliver
// schedules the next attempt itself, after the attempt is recorded, and
// keeps the endpoint's health: its failing-since time, and disabling it
// when it answers 410 Gone or has failed for Config.DisableAfter. It
// returns an error only when the attempt could not be recorded (or held
// back), or the worker stopped before it was made, so that the queue
// retries the task.
func (d *Dispatcher) Deliver(ctx context.Context, deliveryID string, attempt int) error {
	read := time.Now()
	t := d.load.Do(ctx, deliveryID)
	del, evt, ep, err := t.d, t.e, t.ep, t.err
	if errors.Is(err, hub.ErrNotFound) {
		d.log.DebugContext(ctx, "delivery not found; task dropped", "delivery_id", deliveryID, "attempt", attempt)
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading delivery %s: %w", deliveryID, err)
	}
	if del.Status != hub.DeliveryPending || del.Attempts != attempt-1 {
		d.log.DebugContext(ctx, "stale delivery task; nothing to do", "delivery_id", del.ID, "endpoint_id", ep.ID,
			"attempt", attempt, "status", del.Status, "attempts", del.Attempts)
		return nil
	}
	if err := d.attempt(ctx, del, evt, ep, read, attempt, false); !errors.Is(err, errInLine) {
		return err
	}
	return nil // the attempt waits in line: its task is done
}

// deliverFresh makes the first attempt of a delivery DeliverNew took,
// from the delivery and event the writer holds and its endpoint as it is
// now.
func (d *Dispatcher) deliverFresh(ctx context.Context, f fresh) error {
	del := *f.d // the attempt updates its copy
	read := time.Now()
	r := d.loadEndpoint.Do(ctx, del.EndpointID)
	if errors.Is(r.err, hub.ErrNotFound) {
		// Deleted since: its deliveries went with it.
		d.log.DebugContext(ctx, "endpoint not found; first attempt dropped", "delivery_id", del.ID, "endpoint_id", del.EndpointID)
		return nil
	}
	if r.err != nil {
		return loadEndpointErr(del.EndpointID, del.ID, r.err)
	}
	return d.attempt(ctx, &del, f.e, r.ep, read, 1, true)
}

// attempt makes attempt number attempt of del to ep, whose read began at
// read. direct is when DeliverNew
// took the delivery: the attempt must end within directWithin of the row
// becoming due (when the sweeper starts counting) and may not wait for a
// request slot, or errHandOver is returned before it is made; at its busy
// endpoint it may join the endpoint's line, to wait up to slotWait for a
// slot, and return errInLine.
func (d *Dispatcher) attempt(ctx context.Context, del *hub.Delivery, evt *hub.Event, ep *hub.Endpoint, read time.Time, attempt int, direct bool) error {
	now := d.now()
	if !ep.Enabled {
		if v, ok := d.endpoints.Load(ep.ID); ok { // news for the attempts in its line
			v.(*endpointState).sawInLine(ep, nil, read)
		}
		return d.concludeDisabled(ctx, del, ep, attempt, now)
	}
	// A direct attempt must end within what is left (the sweeper leaves
	// the row alone that long), and any attempt may spend it waiting in
	// its busy endpoint's line.
	left := d.timeLeft(del, ep)
	if direct && left < 0 {
		return errHandOver
	}
	w := waiter{del: del, evt: evt, ep: ep, read: read, attempt: attempt, queued: !direct, wait: min(d.slotWait, left)}
	es := d.endpoint(ep.ID)
	g, h, err := d.admit(ctx, es, ep, del.ID+":"+strconv.Itoa(attempt), now, !direct, w)
	if errors.Is(err, errInLine) {
		return err
	}
	if err != nil {
		return fmt.Errorf("delivering %s: %w", del.ID, err)
	}
	if g == nil {
		return d.holdBack(ctx, del, ep, attempt, now, h, direct)
	}
	return d.sendAndConclude(ctx, g, del, evt, ep, attempt, now)
}

// sendAndConclude makes attempt number attempt of del, admitted by g, and
// records it.
func (d *Dispatcher) sendAndConclude(ctx context.Context, g *grant, del *hub.Delivery, evt *hub.Event, ep *hub.Endpoint, attempt int, now time.Time) error {
	res := d.send(ctx, evt, ep, now)
	g.done(res)
	if res.canceled != nil {
		// The worker is stopping: the attempt did not happen.
		return fmt.Errorf("delivering %s: %w", del.ID, res.canceled)
	}
	// The attempt was made: its outcome is kept even if the worker stops
	// meanwhile.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), concludeTimeout)
	defer cancel()
	return d.conclude(cctx, del, ep, attempt, now, res)
}

// conclude records the outcome of an attempt, keeps the endpoint's health
// and schedules what comes next.
func (d *Dispatcher) conclude(ctx context.Context, del *hub.Delivery, ep *hub.Endpoint, attempt int, now time.Time, res result) error {
	if res.latency > 0 { // a request was sent
		metrics.DeliveryAttempt(res.latency, res.ok())
	}
	a := &hub.Attempt{
		ID:              hub.NewID("att"),
		DeliveryID:      del.ID,
		Number:          attempt,
		StatusCode:      res.status,
		LatencyMS:       res.latency.Milliseconds(),
		Error:           res.errorText(),
		ResponseBody:    res.body,
		ResponseHeaders: res.headers,
		CreatedAt:       now,
	}
	disable := d.disableReason(ep, res, now)
	del.Attempts = attempt
	del.UpdatedAt = now
	del.NextAttemptAt = nil
	var next time.Time
	switch {
	case res.ok():
		del.Status = hub.DeliverySucceeded
		del.LastError = ""
	case ep.Enabled && disable == "" && attempt < len(d.schedule):
		next = now.Add(d.delay(attempt, res))
		del.Status = hub.DeliveryPending
		del.NextAttemptAt = &next
		del.LastError = a.Error
	default:
		del.Status = hub.DeliveryFailed
		del.LastError = a.Error
	}

	if err := d.rec.Do(ctx, record{del, a}); err != nil {
		if hub.ErrorCode(err) == hub.ECONFLICT || errors.Is(err, hub.ErrNotFound) {
			d.log.DebugContext(ctx, "attempt already recorded by another worker, or delivery gone",
				"delivery_id", del.ID, "endpoint_id", ep.ID, "attempt", attempt)
			return nil
		}
		return fmt.Errorf("recording attempt %d of delivery %s: %w", attempt, del.ID, err)
	}
	d.track(ctx, ep, res, now, disable)

	switch {
	case res.class == "endpoint_disabled":
		metrics.Delivery(metrics.DeliveryEndpointDisabled)
	case del.Status == hub.DeliverySucceeded:
		metrics.Delivery(metrics.DeliverySucceeded)
	case del.Status == hub.DeliveryFailed:
		metrics.Delivery(metrics.DeliveryFailed)
	default:
		metrics.Delivery(metrics.DeliveryFailedRetrying)
	}
	switch del.Status {
	case hub.DeliverySucceeded:
		d.log.DebugContext(ctx, "delivery succeeded", "delivery_id", del.ID, "endpoint_id", ep.ID,
			"attempt", attempt, "status_code", res.status)
	case hub.DeliveryFailed:
		d.log.InfoContext(ctx, "delivery failed", "delivery_id", del.ID, "endpoint_id", ep.ID,
			"attempt", attempt, "error_class", res.class, "status_code", res.status)
	default:
		d.log.DebugContext(ctx, "delivery attempt failed; retry scheduled", "delivery_id", del.ID, "endpoint_id", ep.ID,
			"attempt", attempt, "error_class", res.class, "status_code", res.status, "next_attempt_at", next)
		if err := d.q.EnqueueDelivery(ctx, del.ID, attempt+1, next); err != nil {
			// The row says the delivery is due at next: the sweeper
			// queues it again.
			d.log.WarnContext(ctx, "queueing next delivery attempt", "delivery_id", del.ID, "attempt", attempt+1, "error", err)
		}
	}
	return nil
}

// holdBack moves the delivery's next attempt by h.wait without using an
// attempt, and queues its task again for then. asynq keeps due times in
// whole seconds, so a hold of up to 5 s is waited out in this
// process and its task queued when it is due; a longer one is queued at
// once for then. direct says no queue task is running the attempt (one
// that is must end before its task id is free again: requeueDelay).
func (d *Dispatcher) holdBack(ctx context.Context, del *hub.Delivery, ep *hub.Endpoint, attempt int, now time.Time, h hold, direct bool) error {
	wait := h.wait.Round(time.Millisecond)
	at := now.Add(wait)
	r := d.hold.Do(ctx, deferral{id: del.ID, attempts: attempt - 1, at: at})
	moved, err := r.moved, r.err
	if err != nil {
		return fmt.Errorf("holding back delivery %s: %w", del.ID, err)
	}
	if !moved {
		d.log.DebugContext(ctx, "stale delivery task; nothing to hold back", "delivery_id", del.ID, "attempt", attempt)
		return nil
	}
	d.log.DebugContext(ctx, "delivery held back", "delivery_id", del.ID, "endpoint_id", ep.ID, "attempt", attempt,
		"reason", h.reason, "next_attempt_at", at)
	metrics.Delivery(heldOutcome[h.reason])
	delay := d.requeueDelay
	if direct {
		delay = 0
	}
	if wait <= d.localHold {
		delay = max(delay, wait)
	}
	d.requeueLater(del.ID, attempt, at, delay)
	return nil
}

// heldOutcome is the metrics outcome of each hold reason.
var heldOutcome = map[string]string{
	"breaker_open":  metrics.DeliveryHeldByBreaker,
	"endpoint_busy": metrics.DeliveryHeldBusy,
	"rate_limited":  metrics.DeliveryHeldRateLimited,
}

// requeueLater queues attempt of a delivery to run at at, after delay.
// If the process stops first, the row's next attempt time lets the
// sweeper queue it.
func (d *Dispatcher) requeueLater(id string, attempt int, at time.Time, delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requeues.Add(1)
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		defer d.requeues.Done()
		d.mu.Lock()
		delete(d.timers, t)
		d.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.q.EnqueueDelivery(ctx, id, attempt, at); err != nil {
			d.log.WarnContext(ctx, "queueing held-back delivery; the sweeper will", "delivery_id", id, "attempt", attempt, "error", err)
		}
	})
	d.timers[t] = struct{}{}
}

// endpointTimeout bounds one attempt to ep.
func (d *Dispatcher) endpointTimeout(ep *hub.Endpoint) time.Duration {
	if ep.TimeoutMS > 0 {
		return min(time.Duration(ep.TimeoutMS)*time.Millisecond, maxTimeout)
	}
	return d.timeout
}

// jitter returns base ± frac·base.
func (d *Dispatcher) jitter(base time.Duration, frac float64) time.Duration {
	return time.Duration(float64(base) * (1 - frac + 2*frac*d.rand())).Round(time.Millisecond)
}

// delay returns how long to wait before attempt+1: the jittered scheduled
// delay, or longer when the receiver asked for it with Retry-After (capped
// at the schedule's largest delay).
func (d *Dispatcher) delay(attempt int, res result) time.Duration {
	delay := d.schedule[attempt]
	if delay > 0 {
		delay = time.Duration(float64(delay) * (0.8 + 0.4*d.rand())).Round(time.Millisecond)
	}
	if res.retryAfter > 0 {
		delay = max(delay, min(res.retryAfter, d.maxDelay))
	}
	return delay
}
