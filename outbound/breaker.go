package outbound

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker"
	"golang.org/x/time/rate"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/metrics"
)

// Admission: before an attempt goes out, the endpoint's circuit breaker,
// its concurrency limit and its rate limit must let it through. When one of
// them refuses, the delivery is held back: its row's next attempt moves to
// when it may pass, without recording or using an attempt, and its task is
// queued again for then. Holding back never waits inside the worker, so a
// dead or slow endpoint never delays deliveries to other endpoints.
//
// One exception keeps bursts to a fast endpoint off the database and the
// queue: an attempt that finds its endpoint at its concurrency limit waits
// in the endpoint's line for a slot, at most maxSlotWait and never past
// the time it must end by (Config.DirectWithin after its row became due,
// less the endpoint's timeout: the sweeper leaves the row alone that
// long), when the endpoint frees slots fast enough (at its pace, the last
// in line gets one within the wait). A line holds no goroutine and no
// request slot: the attempt that frees a slot starts the oldest waiter in
// a goroutine of its own, and a timer holds back, as above, those whose
// wait ends first. A slow endpoint never gets a line, and lines are
// bounded in length (maxLine each, 64 per request slot in all), so what
// waits in memory stays small. An attempt whose queue task brought it
// ends that task when it joins a line.
//
// All of this state is per process and in memory: breakers and rate
// limits start afresh when a worker restarts, and with several worker
// processes each enforces its own limits.
//
// The breaker of an endpoint (github.com/sony/gobreaker) opens after
// Config.BreakerFailures consecutive failed attempts, or when, in the
// current 60 s window, at least 20 attempts were made and more than half
// failed. Failures here mean the endpoint is unwell: timeouts, connection
// and TLS errors, 5xx, 408 and 429. Other 4xx (the receiver answered
// quickly) count as successes for the breaker, though the delivery still
// retries. An open breaker holds deliveries back for Config.BreakerCooldown,
// then lets one probe attempt through (half-open): success closes the
// breaker, failure opens it for another cooldown. Deliveries held back come
// back spread over a window that starts at the cooldown and grows with the
// outage (a tenth of how long the endpoint has been failing, at most an
// hour), so the backlog of a long-dead endpoint costs little.

const (
	// breakerWindow is the closed-state window of the failure ratio rule.
	breakerWindow = time.Minute
	// breakerMinRequests is how many attempts the ratio rule needs.
	breakerMinRequests = 20
	// maxHoldSpread bounds the spread of deliveries held back by an open
	// breaker.
	maxHoldSpread = time.Hour
	// untimedPace stands for the duration of an endpoint's attempts until
	// one has been timed (see busyHold).
	untimedPace = 100 * time.Millisecond
	// minBusyHold is the shortest hold of a delivery whose endpoint has
	// MaxInFlight attempts under way, maxBusyHold its longest before a
	// ±10 % jitter.
	minBusyHold = 10 * time.Millisecond
	maxBusyHold = 30 * time.Second
	// maxSlotWait bounds how long a first attempt made at once waits for
	// its busy endpoint to free a slot (see joinLine).
	maxSlotWait = time.Second
	// endpointFresh is how old the endpoint row an attempt that waited in
	// line sends with may be: older, it is read again (see
	// freshEndpoint).
	endpointFresh = 100 * time.Millisecond
	// maxLine bounds an endpoint's line of first attempts waiting for a
	// slot.
	maxLine = 10_000
	// minHold is the shortest hold.
	minHold = 100 * time.Millisecond
	// maxPrepaid bounds the rate-limit reservations remembered per
	// endpoint.
	maxPrepaid = 100_000
)

// endpointState is what the dispatcher keeps in memory about one
// endpoint.
type endpointState struct {
	cb       *gobreaker.TwoStepCircuitBreaker
	inFlight atomic.Int64

	mu       sync.Mutex
	openedAt time.Time // when the breaker last opened (wall clock)
	limiter  *rate.Limiter
	limit    int
	// prepaid holds the deliveries (id:attempt) held back by the rate
	// limit, with the slot their reservation took: when they come back
	// they pass without taking another token.
	prepaid map[string]time.Time
	// busyUntil is when the last delivery held back because the endpoint
	// was busy is due again: the end of the line (see busyHold), made at
	// linePace.
	busyUntil time.Time
	linePace  time.Duration

	// line holds the first attempts waiting for a slot (see joinLine),
	// oldest first; a slot that frees passes to the first (release), and
	// lineTimer holds back those whose wait ends first.
	line      []*waiter
	lineTimer *time.Timer
	lineWake  time.Time // when lineTimer fires; zero once it has

	// pace is the moving average of the endpoint's attempt durations
	// (nanoseconds; 0 until one is timed): how long an attempt keeps a
	// slot.
	pace atomic.Int64

	// seen is the newest read of the endpoint, for the attempts waiting
	// in its line (see freshEndpoint). It is set under mu while the line
	// has attempts and cleared when it empties, so that the row's secrets
	// are not kept longer than its attempts need them.
	seen atomic.Pointer[seenEndpoint]
}

// seenEndpoint is a read of an endpoint: its row, or the error that
// came instead (hub.ErrNotFound once deleted), and when the read began.
// The row is at least as new as the database was then. The row is
// shared: nothing may change it.
type seenEndpoint struct {
	ep  *hub.Endpoint
	err error
	at  time.Time
}

// sawInLine keeps a read of the endpoint (see saw) while attempts wait
// in its line.
func (es *endpointState) sawInLine(ep *hub.Endpoint, err error, at time.Time) {
	es.mu.Lock()
	defer es.mu.Unlock()
	es.saw(ep, err, at)
}

// saw keeps the read of the endpoint that began at at, its row ep or the
// error err, as the newest unless a newer one is kept, when attempts wait
// in the line. es.mu is held.
func (es *endpointState) saw(ep *hub.Endpoint, err error, at time.Time) {
	if len(es.line) == 0 {
		return
	}
	if cur := es.seen.Load(); cur == nil || at.After(cur.at) {
		es.seen.Store(&seenEndpoint{ep: ep, err: err, at: at})
	}
}

// timed adds the duration of an attempt to the endpoint's pace, a moving
// average that follows a change within a few dozen attempts.
func (es *endpointState) timed(d time.Duration) {
	for {
		old := es.pace.Load()
		next := int64(d)
		if old > 0 {
			next = old + (int64(d)-old)/8
		}
		if es.pace.CompareAndSwap(old, next) {
			return
		}
	}
}

// endpoint returns the state of endpoint id, creating it.
func (d *Dispatcher) endpoint(id string) *endpointState {
	if v, ok := d.endpoints.Load(id); ok {
		return v.(*endpointState)
	}
	es := &endpointState{}
	es.cb = gobreaker.NewTwoStepCircuitBreaker(gobreaker.Settings{
		Name:        id,
		MaxRequests: 1,
		Interval:    breakerWindow,
		Timeout:     d.breakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(d.breakerFailures) ||
				(c.Requests >= breakerMinRequests && 2*c.TotalFailures > c.Requests)
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			// Called with the breaker's lock held: touch only es.mu.
			if to == gobreaker.StateOpen {
				es.mu.Lock()
				es.openedAt = time.Now()
				es.mu.Unlock()
			}
			level := slog.LevelInfo
			if to == gobreaker.StateHalfOpen {
				level = slog.LevelDebug
			}
			d.log.Log(context.Background(), level, "circuit breaker "+to.String(), "endpoint_id", name, "from", from.String())
		},
	})
	v, _ := d.endpoints.LoadOrStore(id, es)
	return v.(*endpointState)
}

// BreakerStates returns the state of the circuit breaker of every
// endpoint this dispatcher has sent to since it started, by endpoint id:
// metrics.BreakerClosed, metrics.BreakerHalfOpen or metrics.BreakerOpen.
func (d *Dispatcher) BreakerStates() map[string]int {
	out := make(map[string]int)
	d.endpoints.Range(func(k, v any) bool {
		st := metrics.BreakerClosed
		switch v.(*endpointState).cb.State() {
		case gobreaker.StateHalfOpen:
			st = metrics.BreakerHalfOpen
		case gobreaker.StateOpen:
			st = metrics.BreakerOpen
		}
		out[k.(string)] = st
		return true
	})
	return out
}

// grant is an admitted attempt: report its outcome with done.
type grant struct {
	d        *Dispatcher
	es       *endpointState
	limit    int64 // the endpoint's concurrency limit
	breaker  func(success bool)
	released bool
}

// done reports the attempt's outcome to the breaker and frees its
// concurrency slots.
func (g *grant) done(res result) {
	if g.released {
		return
	}
	g.released = true
	// An attempt cut short by the worker stopping tells nothing about the
	// endpoint; gobreaker needs an outcome all the same (a half-open
	// breaker would otherwise wait for it forever): call it a success.
	g.breaker(res.canceled != nil || !res.unhealthy())
	if res.latency > 0 && res.canceled == nil {
		g.es.timed(res.latency)
	}
	// The request slot first: the endpoint's slot may pass to a first
	// attempt that takes a request slot without waiting.
	<-g.d.sem
	g.d.release(g.es, g.limit)
}

// take takes a concurrency slot of the endpoint if fewer than limit are
// taken: the count never goes over the limit, even for a moment.
func (es *endpointState) take(limit int64) bool {
	for {
		n := es.inFlight.Load()
		if n >= limit {
			return false
		}
		if es.inFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// waiter is an attempt waiting in its endpoint's line for a slot. It has
// no goroutine while it waits: the attempt that frees a slot starts one
// for it.
type waiter struct {
	del      *hub.Delivery // the attempt's own copy
	evt      *hub.Event
	ep       *hub.Endpoint
	read     time.Time // when the read of ep began
	attempt  int
	queued   bool          // a queue task brought it (else DeliverNew did)
	wait     time.Duration // how long it may wait: none when not positive
	limit    int64         // the endpoint's concurrency limit when it joined
	deadline time.Time     // when it stops waiting and is held back
}

// release frees a concurrency slot of es: it passes to the oldest first
// attempt waiting in its line, if any and the endpoint is not over limit
// (lowered since the slot was taken), and that attempt goes on in a
// goroutine of its own.
func (d *Dispatcher) release(es *endpointState, limit int64) {
	es.mu.Lock()
	defer es.mu.Unlock()
	d.expireDue(es, time.Now())
	if len(es.line) > 0 && es.inFlight.Load() <= limit {
		w := d.popLine(es)
		d.resume(func() { d.runWaiter(es, w) })
		return
	}
	es.inFlight.Add(-1)
}

// popLine takes the first waiter out of the line of es, whose mu is
// held.
func (d *Dispatcher) popLine(es *endpointState) *waiter {
	w := es.line[0]
	es.line[0] = nil
	es.line = es.line[1:]
	d.lineTotal.Add(-1)
	if len(es.line) == 0 {
		es.seen.Store(nil)
	}
	return w
}

// line outcomes of joinLine.
const (
	lineRefused = iota // hold the attempt back
	lineSlot           // a slot was free after all: go on
	lineJoined         // the attempt waits in line
)

// joinLine puts an attempt at an endpoint at its limit (w.limit) in the
// endpoint's line, to wait at most w.wait for a slot, when the endpoint
// frees slots fast enough: at its pace (untimedPace until an attempt is
// timed), the slot of the last one in line should come within the wait.
// It refuses when the attempt may not wait, or the line, or all lines of
// the dispatcher, are full. A slot that came free meanwhile is taken at
// once. Only a waiter that joins is copied to the heap.
func (d *Dispatcher) joinLine(es *endpointState, w waiter) int {
	wait := w.wait
	if wait <= 0 {
		return lineRefused
	}
	pace := time.Duration(es.pace.Load())
	if pace <= 0 {
		pace = untimedPace
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.take(w.limit) {
		return lineSlot
	}
	n := int64(len(es.line))
	if n >= maxLine || d.lineTotal.Load() >= d.maxLines || d.lineClosed.Load() ||
		pace*time.Duration(n+1)/time.Duration(w.limit) > wait {
		es.saw(w.ep, nil, w.read) // its read is news for those in line
		return lineRefused
	}
	joined := w
	joined.deadline = time.Now().Add(wait)
	es.line = append(es.line, &joined)
	d.lineTotal.Add(1)
	d.armLine(es, joined.deadline)
	es.saw(w.ep, nil, w.read)
	return lineJoined
}

// armLine makes the line timer of es fire by at. es.mu is held.
func (d *Dispatcher) armLine(es *endpointState, at time.Time) {
	switch {
	case es.lineTimer == nil:
		es.lineTimer = time.AfterFunc(time.Until(at), func() { d.lineExpired(es) })
	case es.lineWake.IsZero() || at.Before(es.lineWake):
		es.lineTimer.Reset(time.Until(at))
	default:
		return
	}
	es.lineWake = at
}

// lineExpired is the line timer of es.
func (d *Dispatcher) lineExpired(es *endpointState) {
	es.mu.Lock()
	defer es.mu.Unlock()
	d.expireDue(es, time.Now())
}

// expireDue holds back the waiters of es (whose mu is held) whose wait
// has ended, once the earliest deadline has come, and sets the timer for
// the next. Waiters' deadlines need not follow their order in line: each
// attempt's own time to end by bounds its wait. Until the earliest
// deadline it costs nothing, so every freed slot can call it.
func (d *Dispatcher) expireDue(es *endpointState, now time.Time) {
	if es.lineWake.IsZero() || es.lineWake.After(now) {
		return
	}
	es.lineWake = time.Time{}
	d.expireLine(es, now)
	if len(es.line) > 0 {
		next := es.line[0].deadline
		for _, w := range es.line[1:] {
			if w.deadline.Before(next) {
				next = w.deadline
			}
		}
		d.armLine(es, next)
	}
}

// expireLine takes the waiters whose wait has ended by now out of the
// line of es, whose mu is held, and holds them back.
func (d *Dispatcher) expireLine(es *endpointState, now time.Time) {
	kept := es.line[:0]
	for _, w := range es.line {
		if w.deadline.After(now) {
			kept = append(kept, w)
			continue
		}
		d.lineTotal.Add(-1)
		d.resume(func() { d.holdWaiter(es, w) })
	}
	clear(es.line[len(kept):])
	es.line = kept
	if len(es.line) == 0 {
		es.seen.Store(nil)
	}
}

// dropLines empties every line (Close): their rows are pending and due,
// and the sweeper queues them. It returns how many first attempts of
// DeliverNew it dropped.
func (d *Dispatcher) dropLines() int {
	d.lineClosed.Store(true)
	dropped := 0
	d.endpoints.Range(func(_, v any) bool {
		es := v.(*endpointState)
		es.mu.Lock()
		for len(es.line) > 0 {
			if w := d.popLine(es); !w.queued {
				dropped++
			}
		}
		if es.lineTimer != nil {
			es.lineTimer.Stop()
		}
		es.mu.Unlock()
		return true
	})
	return dropped
}

// hold says why and for how long a delivery is held back.
type hold struct {
	wait   time.Duration
	reason string // breaker_open, endpoint_busy, rate_limited
}

// admit lets an attempt of del to ep through, or says how long to hold it
// back. It waits for the dispatcher-wide concurrency limit (shared fairly
// by all endpoints, each capped by its own limit first) only if wait:
// otherwise a full dispatcher is errHandOver. At a busy endpoint the
// attempt w may instead wait in its line, at most w.wait (see joinLine):
// admit then returns errInLine, and the attempt goes on when a slot
// passes to it.
func (d *Dispatcher) admit(ctx context.Context, es *endpointState, ep *hub.Endpoint, key string, now time.Time, wait bool, w waiter) (*grant, hold, error) {
	if es.cb.State() == gobreaker.StateOpen {
		return nil, d.breakerHold(es, ep, gobreaker.ErrOpenState, now), nil
	}
	limit := int64(ep.MaxInFlight)
	if limit <= 0 {
		limit = int64(d.endpointMaxInFlight)
	}
	if !es.take(limit) {
		w.limit = limit
		switch d.joinLine(es, w) {
		case lineJoined:
			return nil, hold{}, errInLine
		case lineRefused:
			return nil, d.busyHold(es, limit, d.now()), nil
		}
	}
	return d.admitTaken(ctx, es, ep, key, limit, now, wait)
}

// admitTaken is the rest of admit for an attempt that holds a slot of its
// endpoint (limit is the endpoint's limit): the rate limit, a request slot
// and the breaker.
func (d *Dispatcher) admitTaken(ctx context.Context, es *endpointState, ep *hub.Endpoint, key string, limit int64, now time.Time, wait bool) (*grant, hold, error) {
	if wait := es.reserve(ep.RateLimit, key); wait > 0 {
		d.release(es, limit)
		return nil, hold{wait: wait, reason: "rate_limited"}, nil
	}
	if err := d.acquire(ctx, wait); err != nil {
		d.release(es, limit)
		es.prepay(key, time.Now())
		return nil, hold{}, err
	}
	done, err := es.cb.Allow()
	if err != nil {
		<-d.sem
		d.release(es, limit)
		es.prepay(key, time.Now())
		return nil, d.breakerHold(es, ep, err, now), nil
	}
	return &grant{d: d, es: es, limit: limit, breaker: done}, hold{}, nil
}

// acquire takes a request slot, waiting for one if wait.
func (d *Dispatcher) acquire(ctx context.Context, wait bool) error {
	// A free slot is taken even when ctx has just ended (a waiter at its
	// deadline): select would pick between the two at random.
	select {
	case d.sem <- struct{}{}:
		return nil
	default:
	}
	if !wait {
		return errHandOver
	}
	select {
	case d.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return errStopping
	}
}

// busyHold is how long a delivery waits when its endpoint has limit
// attempts under way: until its turn at the endpoint's pace. The endpoint
// frees a slot every pace/limit on average (pace: how long its attempts
// take), so the first delivery held back waits one attempt's duration and
// each one held back after it, while the line lasts, pace/limit more: a
// burst comes back spread at the rate the endpoint takes it, a fast
// endpoint's within milliseconds, and a slow one is not asked again and
// again. When the pace changes, what is left of the line is scaled to it.
// Until an attempt has been timed, untimedPace stands for the pace. The
// wait is at least minBusyHold and at most maxBusyHold, jittered ±10 %.
func (d *Dispatcher) busyHold(es *endpointState, limit int64, now time.Time) hold {
	pace := time.Duration(es.pace.Load())
	if pace <= 0 {
		pace = untimedPace
	}
	es.mu.Lock()
	if left := es.busyUntil.Sub(now); left > 0 && es.linePace > 0 && es.linePace != pace {
		es.busyUntil = now.Add(time.Duration(float64(left) * float64(pace) / float64(es.linePace)))
	}
	at := now.Add(pace)
	if next := es.busyUntil.Add(pace / time.Duration(limit)); next.After(at) {
		at = next
	}
	if last := now.Add(maxBusyHold); at.After(last) {
		at = last
	}
	es.busyUntil, es.linePace = at, pace
	es.mu.Unlock()
	return hold{wait: max(d.jitter(at.Sub(now), 0.1), minBusyHold), reason: "endpoint_busy"}
}

// breakerHold is how long a delivery refused by the breaker waits: until
// the breaker lets a probe through (open), or until the probe under way
// has had time to answer (half-open), plus a random share of the spread.
func (d *Dispatcher) breakerHold(es *endpointState, ep *hub.Endpoint, err error, now time.Time) hold {
	var wait time.Duration
	if errors.Is(err, gobreaker.ErrOpenState) {
		es.mu.Lock()
		wait = time.Until(es.openedAt.Add(d.breakerCooldown))
		es.mu.Unlock()
	} else {
		wait = d.endpointTimeout(ep)
	}
	spread := d.breakerCooldown
	if ep.FailingSince != nil {
		spread = min(max(spread, now.Sub(*ep.FailingSince)/10), max(maxHoldSpread, d.breakerCooldown))
	}
	wait = max(wait, minHold) + time.Duration(d.rand()*float64(spread)).Round(time.Millisecond)
	return hold{wait: wait, reason: "breaker_open"}
}

// reserve takes a rate-limit token for the delivery key and returns how
// long the delivery must wait for it (0: go now). A delivery coming back
// after such a wait has paid already. limit 0 is unlimited.
func (es *endpointState) reserve(limit int, key string) time.Duration {
	if limit <= 0 {
		return 0
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	if _, ok := es.prepaid[key]; ok {
		delete(es.prepaid, key)
		return 0
	}
	if es.limiter == nil || es.limit != limit {
		// Burst of one second's worth: a quiet endpoint gets a burst, a
		// busy one its rate.
		es.limiter = rate.NewLimiter(rate.Limit(limit), limit)
		es.limit = limit
	}
	now := time.Now()
	r := es.limiter.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	if wait <= 0 {
		return 0
	}
	es.prepayLocked(key, now.Add(wait))
	return max(wait, time.Millisecond)
}

// prepay remembers that key holds a token: it was admitted by the rate
// limit but held back by something else.
func (es *endpointState) prepay(key string, slot time.Time) {
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.limiter != nil {
		es.prepayLocked(key, slot)
	}
}

func (es *endpointState) prepayLocked(key string, slot time.Time) {
	if es.prepaid == nil {
		es.prepaid = make(map[string]time.Time)
	}
	if len(es.prepaid) >= maxPrepaid {
		// Forget reservations whose delivery never came back (an operator
		// changed it, the process lost its task).
		cutoff := time.Now().Add(-10 * time.Minute)
		for k, t := range es.prepaid {
			if t.Before(cutoff) {
				delete(es.prepaid, k)
			}
		}
		if len(es.prepaid) >= maxPrepaid {
			return
		}
	}
	es.prepaid[key] = slot
}
