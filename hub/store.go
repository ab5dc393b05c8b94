package hub

import (
	"context"
	"time"
)

// Page selects one page of a list ordered newest first. Cursor is the ID of
// the last item of the previous page ("" for the first page); IDs are ULIDs
// with a type prefix, so ID order is creation order.
type Page struct {
	Cursor string
	Limit  int // 1..200; the store treats 0 as 50
}

// Filter narrows list calls. Zero values do not filter.
type Filter struct {
	Status    string
	PartnerID string
	Since     time.Time
	Until     time.Time
}

// Store persists everything in the hub. Methods return errors wrapping
// ErrNotFound for missing rows and ErrUnavailable when the database cannot
// be reached. Secrets (Source.Secret, Source.PreviousSecret,
// Endpoint.Secret) are encrypted at rest by the store and returned in clear.
type Store interface {
	Ping(ctx context.Context) error
	Close() error

	// InTx runs fn in one transaction, committing when fn returns nil.
	InTx(ctx context.Context, fn func(tx Tx) error) error
	// InProcessTx is InTx for applying inbound events (the store may run
	// these on connections tuned for them).
	InProcessTx(ctx context.Context, fn func(tx Tx) error) error

	GetProgram(ctx context.Context, id string) (*Program, error)
	UpdateProgram(ctx context.Context, p *Program) error

	CreateProgram(ctx context.Context, p *Program) error
	ListPrograms(ctx context.Context, p Page) ([]*Program, error)

	CreateAPIKey(ctx context.Context, k *APIKey) error
	// FindAPIKey finds a key, revoked or not, by the hex SHA-256 of the
	// presented secret.
	FindAPIKey(ctx context.Context, hash string) (*APIKey, error)
	GetAPIKey(ctx context.Context, programID, id string) (*APIKey, error)
	ListAPIKeys(ctx context.Context, programID string, p Page) ([]*APIKey, error)
	RevokeAPIKey(ctx context.Context, programID, id string, at time.Time) error

	// BeginIdempotent claims an Idempotency-Key; see store.DB.
	BeginIdempotent(ctx context.Context, r *IdempotentResponse, ttl time.Duration) (*IdempotentResponse, error)
	FinishIdempotent(ctx context.Context, r *IdempotentResponse) error
	ReleaseIdempotent(ctx context.Context, programID, key string) error

	CreateSource(ctx context.Context, s *Source) error
	GetSource(ctx context.Context, id string) (*Source, error)
	ListSources(ctx context.Context, programID string, p Page) ([]*Source, error)
	// UpdateSource saves a source's name, secrets, options and credentials.
	UpdateSource(ctx context.Context, s *Source) error
	// NoteSourceVerified and NoteSourceFailure record the last verified
	// and the last refused webhook of a source.
	NoteSourceVerified(ctx context.Context, id string, at time.Time) error
	NoteSourceFailure(ctx context.Context, id, reason string, at time.Time) error
	// ReconcilableSources lists every program's sources with REST
	// credentials.
	ReconcilableSources(ctx context.Context) ([]*Source, error)
	// SetSourceState saves a source's reconciliation cursor and health.
	SetSourceState(ctx context.Context, id, cursor, health string) error

	CreatePartner(ctx context.Context, p *Partner) error
	GetPartner(ctx context.Context, programID, id string) (*Partner, error)
	ListPartners(ctx context.Context, programID string, p Page) ([]*Partner, error)

	CreateEndpoint(ctx context.Context, e *Endpoint) error
	GetEndpoint(ctx context.Context, programID, id string) (*Endpoint, error)
	ListEndpoints(ctx context.Context, programID string, p Page) ([]*Endpoint, error)
	// UpdateEndpoint saves every mutable field of an endpoint.
	UpdateEndpoint(ctx context.Context, e *Endpoint) error

	// InsertInboundEvent stores ev unless (source_id, dedupe_key) exists.
	// It returns the stored row and whether this call inserted it.
	InsertInboundEvent(ctx context.Context, ev *InboundEvent) (*InboundEvent, bool, error)
	GetInboundEvent(ctx context.Context, id string) (*InboundEvent, error)
	ListInboundEvents(ctx context.Context, programID string, f Filter, p Page) ([]*InboundEvent, error)
	// MarkInboundAttempt increments attempts and records lastErr while the
	// event stays received (a transient failure).
	MarkInboundAttempt(ctx context.Context, id, lastErr string) error
	// InboundDue lists IDs of received events that arrived before before,
	// oldest first: the sweeper enqueues them again.
	InboundDue(ctx context.Context, before time.Time, limit int) ([]string, error)
	// InboundResults lists the conversions and refunds processing an
	// inbound event created or changed.
	InboundResults(ctx context.Context, id string) (*InboundResults, error)
	// ReprocessInbound makes a processed, ignored or failed event received
	// again (no attempts, error or processed time) and returns it without
	// its body; a received event is returned as it is. It fails with
	// ECONFLICT when retention purged the body.
	ReprocessInbound(ctx context.Context, id string) (*InboundEvent, error)
	// ReprocessInboundBatch does what ReprocessInbound does to up to limit
	// events of the program matching sel whose id is greater than after,
	// in id order, skipping purged ones, and returns their ids. Received
	// events (sel.Status received) are only listed.
	ReprocessInboundBatch(ctx context.Context, programID string, sel InboundSelector, after string, limit int) ([]string, error)
	// PurgeInboundBodies erases the raw body and headers of up to limit
	// events received before before that are no longer waiting to be
	// processed, oldest first, sets their BodyPurgedAt to at, and returns
	// how many it purged.
	PurgeInboundBodies(ctx context.Context, before, at time.Time, limit int) (int64, error)

	ListConversions(ctx context.Context, programID string, f Filter, p Page) ([]*Conversion, error)
	GetConversion(ctx context.Context, programID, id string) (*Conversion, error)
	ListRefunds(ctx context.Context, programID string, f Filter, p Page) ([]*Refund, error)
	// ListCommissions returns commissions with their entries and NetMinor.
	ListCommissions(ctx context.Context, programID string, f Filter, p Page) ([]*Commission, error)

	ListEvents(ctx context.Context, programID string, p Page) ([]*Event, error)
	GetDelivery(ctx context.Context, id string) (*Delivery, error)
	// ListDeliveries returns deliveries with their AttemptLog.
	ListDeliveries(ctx context.Context, programID string, f Filter, p Page) ([]*Delivery, error)
	// DeliveryTarget loads what one attempt needs: the delivery, its event
	// and its endpoint (with the secret in clear).
	DeliveryTarget(ctx context.Context, deliveryID string) (*Delivery, *Event, *Endpoint, error)
	// RecordAttempt inserts a and saves d's status, attempts, next attempt
	// time and last error, in one transaction. It fails with ECONFLICT when
	// the stored delivery's attempts differ from a.Number-1 (another worker
	// recorded this attempt already) or it is no longer pending.
	RecordAttempt(ctx context.Context, d *Delivery, a *Attempt) error
	// DeliveriesDue lists pending deliveries whose next attempt is before
	// before, oldest first: the sweeper enqueues them again.
	DeliveriesDue(ctx context.Context, before time.Time, limit int) ([]*Delivery, error)

	// Audit records a change made through the API.
	Audit(ctx context.Context, a *AuditEntry) error
	ListAudit(ctx context.Context, programID string, p Page) ([]*AuditEntry, error)
}

// KeySet names the payment keys of one provider in one program.
type KeySet struct {
	ProgramID, Provider string
	Keys                []string
}

// Tx is the transaction in which inbound events are applied. Outbound
// events, their deliveries, inbound results and the tags and final state
// of claimed inbound events are written when it commits (a redaction,
// which finds inbound events by their tags, writes the tags first).
type Tx interface {
	GetProgram(ctx context.Context, id string) (*Program, error)
	GetSource(ctx context.Context, id string) (*Source, error)
	// ClaimInbound returns those of ids that are still received, with
	// their bodies, in id order, locked until the transaction ends. Every
	// claimed event must be finished (FinishInbound) in the transaction.
	ClaimInbound(ctx context.Context, ids []string) ([]*InboundEvent, error)
	// LockKeySets does what LockKeys does for several payments at once,
	// in one sorted order, skipping locks already held.
	LockKeySets(ctx context.Context, sets []KeySet) error
	// LockKeys serializes transactions on the payment named by keys: it
	// takes transaction-scoped locks on (program, provider, key) for every
	// key, in sorted order (pg_advisory_xact_lock on PostgreSQL; SQLite's
	// single writer serializes already).
	LockKeys(ctx context.Context, programID, provider string, keys []string) error
	// FindConversion returns the conversion that any of keys names (an
	// alias), locked FOR UPDATE, or ErrNotFound. Keys, Lines and Hints are
	// filled.
	FindConversion(ctx context.Context, programID, provider string, keys []string) (*Conversion, error)
	// InsertConversion inserts c with its aliases (c.Keys) and lines.
	InsertConversion(ctx context.Context, c *Conversion) error
	// UpdateConversion saves c's mutable fields: customer, subscription,
	// hints, partner, attribution reason, refunded totals, state time.
	UpdateConversion(ctx context.Context, c *Conversion) error
	// AddAliases makes keys name conversion c and appends those it added
	// to c.Keys; keys already naming it are skipped, keys naming another
	// conversion are left alone.
	AddAliases(ctx context.Context, c *Conversion, keys []string) error
	// HasEarlierPayment reports whether the subscription has a conversion
	// with gross > 0 that occurred before t, other than excludeID.
	HasEarlierPayment(ctx context.Context, programID, provider, subscriptionID, excludeID string, t time.Time) (bool, error)
	// CustomerPartner returns the partner of the latest attributed
	// conversion of the customer, or "".
	CustomerPartner(ctx context.Context, programID, provider, customerID string) (string, error)
	// GetPartner returns a partner of the program.
	GetPartner(ctx context.Context, programID, id string) (*Partner, error)
	// FindPromoCode returns the program's promo code matching code in any
	// case, or ErrNotFound.
	FindPromoCode(ctx context.Context, programID, code string) (*PromoCode, error)
	// ListRules lists the program's commission rules.
	ListRules(ctx context.Context, programID string) ([]*Rule, error)
	// CustomerBinding returns the partner of the customer's first
	// attributed conversion and when it occurred ("" when none).
	CustomerBinding(ctx context.Context, programID, provider, customerID string) (string, time.Time, error)
	// SubscriptionStart returns when the subscription's first paid
	// payment occurred, or the zero time.
	SubscriptionStart(ctx context.Context, programID, provider, subscriptionID string) (time.Time, error)
	// VisitorClicks returns the click clickID and every other click of
	// its visitor, oldest first (none when the click is unknown).
	VisitorClicks(ctx context.Context, programID, clickID string) ([]*Click, error)
	// FindPartnerByCode matches codes case-insensitively.
	FindPartnerByCode(ctx context.Context, programID, code string) (*Partner, error)

	// UpsertRefund inserts r, or, when (source, external_id, kind) exists,
	// updates amount, base, status, conversion and occurred_at if r is not
	// older than the stored row. It returns the stored row and whether it
	// changed.
	UpsertRefund(ctx context.Context, r *Refund) (*Refund, bool, error)
	// ConversionRefunds lists the refunds and chargebacks joined to a
	// conversion.
	ConversionRefunds(ctx context.Context, conversionID string) ([]*Refund, error)
	// JoinRefund attaches a parked refund to its conversion and returns
	// the refund as stored now, or an error wrapping ErrNotFound when it
	// is no longer parked. Nothing else of the refund changes.
	JoinRefund(ctx context.Context, id, conversionID string) (*Refund, error)
	// ParkedRefunds lists refunds of the program and provider that wait for
	// their sale.
	ParkedRefunds(ctx context.Context, programID, provider string) ([]*Refund, error)

	// GetCommission returns the conversion's commission with its entries
	// and NetMinor, or ErrNotFound.
	GetCommission(ctx context.Context, conversionID string) (*Commission, error)
	InsertCommission(ctx context.Context, c *Commission) error
	// UpdateCommissionTerms saves a commission's rate, terms and status.
	UpdateCommissionTerms(ctx context.Context, c *Commission) error
	// InsertEntry inserts e unless (commission_id, key) exists; it reports
	// whether it inserted.
	InsertEntry(ctx context.Context, e *LedgerEntry) (bool, error)

	// InsertEvent stores an outbound event and one pending delivery, due
	// now, for every enabled endpoint of the program that accepts it
	// (Endpoint.Accepts). It returns the deliveries.
	InsertEvent(ctx context.Context, e *Event) ([]*Delivery, error)

	// TagInbound records the subject (payment or order id) and customer
	// an inbound event is about.
	TagInbound(ctx context.Context, id, subject, customerRef string) error
	// RedactCustomer erases the customer fields of the conversions of
	// customerRef or named by subjects, and the raw bodies and headers of
	// the inbound events tagged with them; amounts, keys, attribution and
	// the ledger are kept. It returns the number of rows changed.
	RedactCustomer(ctx context.Context, programID, provider, customerRef string, subjects []string) (int64, error)
	// RedactInbound erases one inbound event's raw body and headers.
	RedactInbound(ctx context.Context, id string) error
	// RedactSource erases the raw bodies and headers of a source's inbound
	// events.
	RedactSource(ctx context.Context, sourceID string) (int64, error)

	// FinishInbound sets the inbound event's final status, error and
	// processed time. It fails with ErrAlreadyFinished when the event is no
	// longer received (another run finished it), which rolls the
	// transaction back.
	FinishInbound(ctx context.Context, id, status, lastErr string, at time.Time) error
	// RecordInboundResults records the conversions and refunds an inbound
	// event created or changed; results recorded by an earlier run stay.
	RecordInboundResults(ctx context.Context, id string, conversionIDs, refundIDs []string) error
}
