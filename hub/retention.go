package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// TaskRetention is the periodic job that erases the raw bodies and headers
// of inbound events past their retention period.
const TaskRetention = "hub:retention"

// DefaultRawRetention is how long raw inbound bodies are kept by default.
const DefaultRawRetention = 90 * 24 * time.Hour

// RetentionConfig configures Retention.
type RetentionConfig struct {
	// Store is required.
	Store Store
	// Period is how long an inbound event's raw body and headers are kept
	// after it was received. Zero: DefaultRawRetention (90 days).
	Period time.Duration
	// BatchSize is how many events one statement purges. Zero: 500.
	BatchSize int
	// MaxPerRun bounds the events one run purges; the next run continues.
	// Zero: 50,000.
	MaxPerRun int
	// Now returns the current time. Zero: time.Now.
	Now func() time.Time
	// Logger zero value: slog.Default().
	Logger *slog.Logger
}

// Retention purges raw inbound bodies past their retention period. The
// event's metadata (provider, type, status, times) stays and shows
// BodyPurgedAt; conversions, refunds and ledger entries are untouched.
// Events still waiting to be processed keep their bodies, and a purged
// event can no longer be reprocessed.
type Retention struct {
	cfg RetentionConfig
}

// NewRetention applies defaults and validates cfg.
func NewRetention(cfg RetentionConfig) (*Retention, error) {
	if cfg.Store == nil {
		return nil, errors.New("hub: Retention needs a Store")
	}
	if cfg.Period < 0 {
		return nil, errors.New("hub: the retention period must not be negative")
	}
	if cfg.Period == 0 {
		cfg.Period = DefaultRawRetention
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.MaxPerRun <= 0 {
		cfg.MaxPerRun = 50000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Retention{cfg: cfg}, nil
}

// Run purges, in bounded batches, the raw bodies and headers of events
// received more than the retention period ago, and returns how many it
// purged. It is the periodic hub:retention job.
func (r *Retention) Run(ctx context.Context) (int64, error) {
	now := r.cfg.Now().UTC()
	before := now.Add(-r.cfg.Period)
	var total int64
	for total < int64(r.cfg.MaxPerRun) {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := min(r.cfg.BatchSize, r.cfg.MaxPerRun-int(total))
		got, err := r.cfg.Store.PurgeInboundBodies(ctx, before, now, n)
		if err != nil {
			return total, fmt.Errorf("purging raw inbound bodies: %w", err)
		}
		total += got
		if got < int64(n) {
			break
		}
	}
	if total > 0 {
		r.cfg.Logger.InfoContext(ctx, "purged raw inbound bodies past retention", "count", total, "retention", r.cfg.Period.String())
	}
	return total, nil
}

// Job adapts Run to the queue's handler signature.
func (r *Retention) Job(ctx context.Context) error {
	_, err := r.Run(ctx)
	return err
}
