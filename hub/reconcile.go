package hub

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Reconciler recovers what a provider's webhooks missed by polling the
// provider's API (WooCommerce never retries a failed delivery).
type Reconciler interface {
	// Reconcile returns the provider objects changed since cursor ("" for
	// the first run), each as a body to ingest like a webhook, the cursor to
	// resume from, and what is wrong with the source ("" when nothing is).
	Reconcile(ctx context.Context, src *Source, cursor string, now time.Time) (*Reconciliation, error)
}

// Reconciliation is one poll's result.
type Reconciliation struct {
	Events []ReconciledEvent
	Cursor string
	Health string
	// More says the poll stopped at a bound (pages, time) with objects
	// left to read; the next poll resumes from Cursor.
	More bool
}

// ReconciledEvent is a provider object fetched by a poll, ingested like a
// webhook with this receipt (its dedupe key makes a state already received
// a duplicate).
type ReconciledEvent struct {
	Receipt Receipt
	Body    []byte
}

// Reconcile polls every source that holds REST credentials and whose
// provider has a reconciler, ingests what the poll found, and saves the
// cursor and the source's health. It is the periodic hub:reconcile job.
// The cursor advances only when every object was stored.
func (s *Service) Reconcile(ctx context.Context) error {
	if s.cfg.Reconciler == nil {
		return nil
	}
	srcs, err := s.st.ReconcilableSources(ctx)
	if err != nil {
		return fmt.Errorf("listing sources to reconcile: %w", err)
	}
	var errs []error
	for _, src := range srcs {
		r, ok := s.cfg.Reconciler(src.Provider)
		if !ok {
			continue
		}
		if err := s.reconcileSource(ctx, r, src); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) reconcileSource(ctx context.Context, r Reconciler, src *Source) error {
	res, err := r.Reconcile(ctx, src, src.Cursor, s.cfg.Now())
	if err != nil {
		health := "reconciliation failed: " + err.Error()
		s.log.WarnContext(ctx, "reconciling source", "source_id", src.ID, "provider", src.Provider, "error", err)
		if serr := s.st.SetSourceState(ctx, src.ID, src.Cursor, health); serr != nil {
			return serr
		}
		return nil
	}
	fresh := 0
	for _, ev := range res.Events {
		_, dup, err := s.Ingest(ctx, src, ev.Receipt, ev.Body)
		if err != nil {
			return fmt.Errorf("ingesting reconciled object of source %s: %w", src.ID, err)
		}
		if !dup {
			fresh++
		}
	}
	if fresh > 0 {
		s.log.InfoContext(ctx, "reconciliation recovered missed changes", "source_id", src.ID, "provider", src.Provider, "count", fresh)
	}
	if res.Health != "" && res.Health != src.Health {
		s.log.WarnContext(ctx, "source needs attention", "source_id", src.ID, "provider", src.Provider, "health", res.Health)
	}
	return s.st.SetSourceState(ctx, src.ID, res.Cursor, res.Health)
}
