package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/partnerhub/partnerhub/hub/bounded"
	"github.com/partnerhub/partnerhub/hub/groupcommit"
	"github.com/partnerhub/partnerhub/hub/metrics"
)

// maxProcessAttempts is how many transient failures an inbound event may
// have before it is marked failed for an operator to look at.
const maxProcessAttempts = 25

// ServiceConfig configures a Service.
type ServiceConfig struct {
	// Store is required.
	Store Store
	// Queue is required.
	Queue Queue
	// Normalizer finds the normalizer of a provider. Required.
	Normalizer func(provider string) (Normalizer, bool)
	// Reconciler finds the reconciler of a provider, for sources with REST
	// credentials. Zero value: no reconciliation.
	Reconciler func(provider string) (Reconciler, bool)
	// Now returns the current time. Zero value: time.Now.
	Now func() time.Time
	// EnqueueTimeout bounds the enqueue done while acknowledging a
	// webhook; when the queue does not answer in time the sweeper picks
	// the event up. Zero value: 2 s.
	EnqueueTimeout time.Duration
	// SweepGrace is how long a row may wait for its queued task before the
	// sweeper enqueues it again. Zero value: 30 s.
	SweepGrace time.Duration
	// ProcessInline lets a process that runs the worker apply the
	// webhooks it stores itself, right after their commit, instead of
	// queueing a task for them (in chunks of up to 32 events, up to 32
	// chunks at once; the rest are queued, and so are events tried
	// before). Zero value: every stored webhook is queued.
	ProcessInline bool
	// FirstAttempts, when set, is given the deliveries a processing
	// transaction created, with their events (es[i] is ds[i]'s), once it
	// has committed, to make their first attempts at once in this
	// process; it returns how many it took, from the front, and may keep
	// those (the service does not change them after). The others are
	// queued. Zero value: every first attempt is queued.
	FirstAttempts func(ds []*Delivery, es []*Event) (taken int)
	// Logger zero value: slog.Default().
	Logger *slog.Logger
}

// Service ingests verified provider events and applies them: conversions,
// refunds, attribution, the commission ledger and the outbound outbox.
type Service struct {
	cfg    ServiceConfig
	st     Store
	q      Queue
	log    *slog.Logger
	ingest ingestGroup
	apply  *groupcommit.Batcher[[]string, error]
	// inline applies stored events in this process (processInline).
	inline *bounded.Group
}

// NewService applies defaults and validates cfg.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Store == nil || cfg.Queue == nil || cfg.Normalizer == nil {
		return nil, errors.New("hub: Store, Queue and Normalizer are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.EnqueueTimeout == 0 {
		cfg.EnqueueTimeout = 2 * time.Second
	}
	if cfg.SweepGrace == 0 {
		cfg.SweepGrace = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{cfg: cfg, st: cfg.Store, q: cfg.Queue, log: cfg.Logger, inline: bounded.New(maxInline)}
	s.ingest.s = s
	s.ingest.following = make(chan struct{}, maxFollowing)
	s.ingest.linger, s.ingest.pace, s.ingest.gather = ingestLinger, ingestPace, ingestGather
	s.apply = &groupcommit.Batcher[[]string, error]{
		Run: s.applyCalls, Max: maxCoalesced, Runners: applyRunners, Timeout: 2 * time.Minute, Linger: applyLinger, Pace: applyPace,
	}
	return s, nil
}

// Close waits up to 10 seconds for the events being applied inline (those
// not applied by then stay received: the sweeper queues them); events
// stored after it are queued.
func (s *Service) Close() {
	if !s.inline.Close(closeWait) {
		s.log.Warn("events still being applied at shutdown; the sweeper will queue them")
	}
}

// Ingest stores a verified event and queues its processing. It returns the
// stored row and whether it was a duplicate of an earlier delivery. An
// error means nothing durable was written (the caller answers 503); a
// queue failure is not an error: the sweeper enqueues the row later.
func (s *Service) Ingest(ctx context.Context, src *Source, rc Receipt, body []byte) (*InboundEvent, bool, error) {
	ev := &InboundEvent{
		ID:         NewID("inb"),
		ProgramID:  src.ProgramID,
		SourceID:   src.ID,
		Provider:   src.Provider,
		DedupeKey:  rc.DedupeKey,
		EventType:  rc.EventType,
		Headers:    rc.Headers,
		Body:       body,
		Status:     InboundReceived,
		ReceivedAt: s.cfg.Now().UTC(),
	}
	req := &ingestReq{ev: ev, done: make(chan struct{})}
	s.ingest.submit(ctx, req)
	if req.err != nil {
		return nil, false, req.err
	}
	if req.stored == nil {
		return nil, false, fmt.Errorf("storing inbound event: not stored")
	}
	return req.stored, !req.inserted, nil
}

// Process applies one inbound event. It is the hub:process job. Events
// already processed are skipped, so a task that runs twice changes
// nothing. Errors are transient (the job is retried); payloads that cannot
// be normalized end as failed events instead.
func (s *Service) Process(ctx context.Context, inboundID string) (err error) {
	defer metrics.ObserveProcess(time.Now(), &err)
	return s.processOne(ctx, inboundID)
}

// ProcessBatch applies several inbound events, the hub:process-batch job.
// The events of concurrent calls (the worker's tasks) are applied together
// in one transaction, which writes each kind of row in one statement for
// all of them. If that fails, each call's events are tried together on
// their own, and if that fails too (one event waits for its payment,
// cannot be parsed, or the database errs), every event is processed on its
// own as Process does: one bad event never holds back the others.
func (s *Service) ProcessBatch(ctx context.Context, ids []string) error {
	return s.apply.Do(ctx, ids)
}

// Processing coalesces up to maxCoalesced calls of ProcessBatch in one
// transaction, with up to applyRunners transactions at once; while calls
// come at least one per applyPace, a transaction waits up to applyLinger
// for more (groupcommit.Batcher.Linger and Pace). Slower calls rarely
// wait: at 10 and 100 sales/s offered a sale's latency is as without
// lingering, and at 500/s transactions hold about three sales instead of
// under two. (A worker that does not ingest gets its calls from queue
// tasks, in bursts after its idle polls: the first of a burst runs at
// once, the rest go together as they would without Pace.)
const (
	applyLinger  = 10 * time.Millisecond
	applyPace    = 5 * time.Millisecond
	maxCoalesced = 8
	applyRunners = 2
)

// applyCalls is the groupcommit Run of ProcessBatch.
func (s *Service) applyCalls(ctx context.Context, calls [][]string) []error {
	out := make([]error, len(calls))
	if len(calls) > 1 {
		var all []string
		for _, ids := range calls {
			all = append(all, ids...)
		}
		if s.applyTogether(ctx, all) == nil {
			return out
		}
	}
	for i, ids := range calls {
		if len(ids) > 1 && s.applyTogether(ctx, ids) == nil {
			continue
		}
		var errs []error
		for _, id := range ids {
			if err := s.Process(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", id, err))
			}
		}
		out[i] = errors.Join(errs...)
	}
	return out
}

// applyTogether applies ids in one transaction and starts the deliveries
// it created; on error nothing of it is kept.
func (s *Service) applyTogether(ctx context.Context, ids []string) error {
	start := time.Now()
	ds, es, err := s.applyInbound(ctx, ids)
	if err != nil {
		s.log.DebugContext(ctx, "events not applied together; applying them one by one", "events", len(ids), "error", err)
		return err
	}
	for range ids {
		metrics.ObserveProcess(start, &err)
	}
	s.startDeliveries(ctx, ds, es)
	return nil
}

// processOne applies one inbound event and sorts out its failure: an
// event that cannot be applied as it is ends failed; a transient error is
// counted on the event and returned, for the job to be retried.
func (s *Service) processOne(ctx context.Context, id string) error {
	ds, es, err := s.applyInbound(ctx, []string{id})
	switch {
	case err == nil:
		s.startDeliveries(ctx, ds, es)
		return nil
	case errors.Is(err, ErrUnparsable):
		ferr := s.st.InTx(ctx, func(tx Tx) error {
			evs, cerr := tx.ClaimInbound(ctx, []string{id})
			if cerr != nil || len(evs) == 0 {
				return cerr
			}
			return tx.FinishInbound(ctx, id, InboundFailed, err.Error(), s.cfg.Now().UTC())
		})
		if ferr != nil {
			return fmt.Errorf("recording the failure of inbound event %s: %w", id, ferr)
		}
		return nil
	}
	if merr := s.st.MarkInboundAttempt(ctx, id, err.Error()); merr != nil && !errors.Is(merr, ErrNotFound) {
		s.log.WarnContext(ctx, "recording processing failure", "event_id", id, "error", merr)
	}
	return fmt.Errorf("applying inbound event %s: %w", id, err)
}

// startDeliveries hands new deliveries (es[i] is ds[i]'s event) to
// FirstAttempts and queues those it does not take.
func (s *Service) startDeliveries(ctx context.Context, ds []*Delivery, es []*Event) {
	if s.cfg.FirstAttempts != nil && len(ds) > 0 {
		ds = ds[s.cfg.FirstAttempts(ds, es):]
	}
	s.enqueueDeliveries(ctx, ds)
}

// inboundItem is one claimed inbound event on its way through applyInbound.
type inboundItem struct {
	ev  *InboundEvent
	src *Source
	n   *Normalized
}

// applyInbound applies the received events among ids in one transaction,
// in id (arrival) order, and returns the deliveries it created with their
// events (the second slice, at the same indexes). Events
// already finished are skipped. Events that cannot be normalized, or that
// gave up after maxProcessAttempts, end failed; ignored ones end ignored.
// The payments of all events are locked before any is applied.
func (s *Service) applyInbound(ctx context.Context, ids []string) ([]*Delivery, []*Event, error) {
	var deliveries []*Delivery
	var events []*Event
	err := s.st.InProcessTx(ctx, func(tx Tx) error {
		deliveries, events = deliveries[:0], events[:0]
		evs, err := tx.ClaimInbound(ctx, ids)
		if err != nil {
			return err
		}
		now := s.cfg.Now().UTC()
		sources := map[string]*Source{}
		var items []inboundItem
		var locks []KeySet
		for _, ev := range evs {
			src, ok := sources[ev.SourceID]
			if !ok {
				if src, err = tx.GetSource(ctx, ev.SourceID); err != nil {
					return fmt.Errorf("loading source %s: %w", ev.SourceID, err)
				}
				sources[ev.SourceID] = src
			}
			n, status, msg := s.normalize(ctx, src, ev)
			if status != "" {
				if n != nil && (n.Subject != "" || n.CustomerRef != "") {
					if err := tx.TagInbound(ctx, ev.ID, n.Subject, n.CustomerRef); err != nil {
						return err
					}
				}
				if err := tx.FinishInbound(ctx, ev.ID, status, msg, now); err != nil {
					return err
				}
				continue
			}
			items = append(items, inboundItem{ev: ev, src: src, n: n})
			if keys := n.paymentKeys(); len(keys) > 0 {
				locks = append(locks, KeySet{ProgramID: src.ProgramID, Provider: src.Provider, Keys: keys})
			}
		}
		if err := tx.LockKeySets(ctx, locks); err != nil {
			return err
		}
		for _, it := range items {
			rt := &resultTx{Tx: tx}
			a := &applier{s: s, tx: rt, src: it.src, ev: it.ev, n: it.n}
			if err := a.apply(ctx); err != nil {
				return err
			}
			if err := rt.record(ctx, it.ev.ID); err != nil {
				return err
			}
			deliveries = append(deliveries, a.deliveries...)
			events = append(events, a.events...)
			status, msg := InboundProcessed, ""
			if a.ignored != "" {
				status, msg = InboundIgnored, a.ignored
			}
			if it.n.Subject != "" || it.n.CustomerRef != "" {
				if err := tx.TagInbound(ctx, it.ev.ID, it.n.Subject, it.n.CustomerRef); err != nil {
					return err
				}
			}
			if err := tx.FinishInbound(ctx, it.ev.ID, status, msg, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return deliveries, events, nil
}

// normalize turns a claimed event into facts. A non-empty status means
// the event is settled without applying anything: failed (attempts
// exhausted, no connector, not normalizable) or ignored, with msg saying
// why; n is returned when normalization succeeded.
func (s *Service) normalize(ctx context.Context, src *Source, ev *InboundEvent) (n *Normalized, status, msg string) {
	if ev.Attempts >= maxProcessAttempts {
		return nil, InboundFailed, "gave up after " + strconv.Itoa(ev.Attempts) + " attempts: " + ev.LastError
	}
	norm, ok := s.cfg.Normalizer(src.Provider)
	if !ok {
		return nil, InboundFailed, "no connector for provider " + src.Provider
	}
	n, err := norm.Normalize(src, ev)
	if err != nil {
		s.log.WarnContext(ctx, "inbound event not normalized", "event_id", ev.ID, "provider", src.Provider, "error", err)
		return nil, InboundFailed, err.Error()
	}
	if n.Ignored != "" {
		return n, InboundIgnored, n.Ignored
	}
	return n, "", ""
}

// Sweep enqueues inbound events and deliveries whose rows say they are due
// but that no queued task may cover (Redis flushed, enqueue failed, worker
// killed). It is the periodic hub:sweep job; duplicate tasks are harmless.
func (s *Service) Sweep(ctx context.Context) error {
	before := s.cfg.Now().Add(-s.cfg.SweepGrace)
	ids, err := s.st.InboundDue(ctx, before, 1000)
	if err != nil {
		return fmt.Errorf("listing due inbound events: %w", err)
	}
	for _, id := range ids {
		if err := s.q.EnqueueProcess(ctx, id); err != nil {
			return fmt.Errorf("enqueueing inbound event %s: %w", id, err)
		}
	}
	ds, err := s.st.DeliveriesDue(ctx, before, 1000)
	if err != nil {
		return fmt.Errorf("listing due deliveries: %w", err)
	}
	now := s.cfg.Now()
	for _, d := range ds {
		if err := s.q.EnqueueDelivery(ctx, d.ID, d.Attempts+1, now); err != nil {
			return fmt.Errorf("enqueueing delivery %s: %w", d.ID, err)
		}
	}
	if len(ids)+len(ds) > 0 {
		s.log.InfoContext(ctx, "sweep re-enqueued work", "inbound_events", len(ids), "deliveries", len(ds))
	}
	return nil
}
