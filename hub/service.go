package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

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
	s := &Service{cfg: cfg, st: cfg.Store, q: cfg.Queue, log: cfg.Logger}
	s.ingest.s = s
	return s, nil
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
	return req.stored, !req.inserted, nil
}

// Process applies one inbound event. It is the hub:process job. Events
// already processed are skipped, so a task that runs twice changes
// nothing. Errors are transient (the job is retried); payloads that cannot
// be normalized end as failed events instead.
func (s *Service) Process(ctx context.Context, inboundID string) (err error) {
	defer metrics.ObserveProcess(time.Now(), &err)
	ev, err := s.st.GetInboundEvent(ctx, inboundID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading inbound event %s: %w", inboundID, err)
	}
	if ev.Status != InboundReceived {
		return nil
	}
	src, err := s.st.GetSource(ctx, ev.SourceID)
	if err != nil {
		return fmt.Errorf("loading source %s: %w", ev.SourceID, err)
	}
	var subject, customerRef string
	finish := func(status, msg string) error {
		err := s.st.InTx(ctx, func(tx Tx) error {
			if subject != "" || customerRef != "" {
				if err := tx.TagInbound(ctx, ev.ID, subject, customerRef); err != nil {
					return err
				}
			}
			return tx.FinishInbound(ctx, ev.ID, status, msg, s.cfg.Now().UTC())
		})
		if errors.Is(err, ErrAlreadyFinished) {
			return nil
		}
		return err
	}
	if ev.Attempts >= maxProcessAttempts {
		return finish(InboundFailed, "gave up after "+strconv.Itoa(ev.Attempts)+" attempts: "+ev.LastError)
	}
	norm, ok := s.cfg.Normalizer(src.Provider)
	if !ok {
		return finish(InboundFailed, "no connector for provider "+src.Provider)
	}
	n, err := norm.Normalize(src, ev)
	if err != nil {
		s.log.WarnContext(ctx, "inbound event not normalized", "event_id", ev.ID, "provider", src.Provider, "error", err)
		return finish(InboundFailed, err.Error())
	}
	subject, customerRef = n.Subject, n.CustomerRef
	if n.Ignored != "" {
		return finish(InboundIgnored, n.Ignored)
	}
	var deliveries []*Delivery
	err = s.st.InTx(ctx, func(tx Tx) error {
		rt := &resultTx{Tx: tx}
		a := &applier{s: s, tx: rt, src: src, ev: ev, n: n}
		if err := a.apply(ctx); err != nil {
			return err
		}
		if err := rt.record(ctx, ev.ID); err != nil {
			return err
		}
		deliveries = a.deliveries
		status, msg := InboundProcessed, ""
		if a.ignored != "" {
			status, msg = InboundIgnored, a.ignored
		}
		if subject != "" || customerRef != "" {
			if err := tx.TagInbound(ctx, ev.ID, subject, customerRef); err != nil {
				return err
			}
		}
		return tx.FinishInbound(ctx, ev.ID, status, msg, s.cfg.Now().UTC())
	})
	if errors.Is(err, ErrAlreadyFinished) {
		return nil
	}
	if errors.Is(err, ErrUnparsable) {
		subject, customerRef = "", ""
		return finish(InboundFailed, err.Error())
	}
	if err != nil {
		if merr := s.st.MarkInboundAttempt(ctx, ev.ID, err.Error()); merr != nil {
			s.log.WarnContext(ctx, "recording processing failure", "event_id", ev.ID, "error", merr)
		}
		return fmt.Errorf("applying inbound event %s: %w", ev.ID, err)
	}
	now := s.cfg.Now()
	for _, d := range deliveries {
		if err := s.q.EnqueueDelivery(ctx, d.ID, 1, now); err != nil {
			s.log.WarnContext(ctx, "queue unavailable; the sweeper will enqueue the delivery", "delivery_id", d.ID, "error", err)
		}
	}
	return nil
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
