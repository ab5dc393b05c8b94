package hub

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// Inbound operations: what one inbound event produced, reprocessing events
// (one, or every event matching a filter) and backfilling a source from its
// provider's API after an outage.

// Kinds of inbound results.
const (
	ResultConversion = "conversion"
	ResultRefund     = "refund"
)

// InboundResults are the conversions and refunds processing an inbound
// event created or changed.
type InboundResults struct {
	ConversionIDs []string `json:"conversion_ids"`
	RefundIDs     []string `json:"refund_ids"`
}

// InboundSelector picks the inbound events of a bulk reprocess. Status is
// required; the other zero values do not filter. Since (inclusive) and
// Until (exclusive) apply to the time the event was received.
type InboundSelector struct {
	Status   string    `json:"status"`
	Provider string    `json:"provider,omitempty"`
	SourceID string    `json:"source_id,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Until    time.Time `json:"until,omitzero"`
}

// resultTx records, while one inbound event is applied, the conversions
// and refunds the transaction creates or changes.
type resultTx struct {
	Tx
	conversions, refunds []string
}

func addID(ids []string, id string) []string {
	if id == "" || slices.Contains(ids, id) {
		return ids
	}
	return append(ids, id)
}

func (r *resultTx) InsertConversion(ctx context.Context, c *Conversion) error {
	if err := r.Tx.InsertConversion(ctx, c); err != nil {
		return err
	}
	r.conversions = addID(r.conversions, c.ID)
	return nil
}

func (r *resultTx) UpdateConversion(ctx context.Context, c *Conversion) error {
	if err := r.Tx.UpdateConversion(ctx, c); err != nil {
		return err
	}
	r.conversions = addID(r.conversions, c.ID)
	return nil
}

func (r *resultTx) UpsertRefund(ctx context.Context, rf *Refund) (*Refund, bool, error) {
	stored, changed, err := r.Tx.UpsertRefund(ctx, rf)
	if err != nil {
		return nil, false, err
	}
	if stored != nil {
		r.refunds = addID(r.refunds, stored.ID)
	}
	return stored, changed, nil
}

// record saves what was recorded as the results of inbound event id.
func (r *resultTx) record(ctx context.Context, id string) error {
	if len(r.conversions)+len(r.refunds) == 0 {
		return nil
	}
	return r.Tx.RecordInboundResults(ctx, id, r.conversions, r.refunds)
}

// inboundEvent loads an inbound event of the program, with its body.
func (s *Service) inboundEvent(ctx context.Context, programID, id string) (*InboundEvent, error) {
	ev, err := s.st.GetInboundEvent(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && ev.ProgramID != programID) {
		return nil, Errorf(ENOTFOUND, "inbound event %s not found", id)
	}
	return ev, err
}

// Reprocess makes an inbound event of the program received again and
// queues hub:process for it. Processing is idempotent (ledger entries are
// cumulative targets under unique keys), so reprocessing an event already
// processed moves no money. It returns the event before and after; an
// event whose raw body retention purged cannot be reprocessed (ECONFLICT).
func (s *Service) Reprocess(ctx context.Context, programID, id string) (before, after *InboundEvent, err error) {
	before, err = s.inboundEvent(ctx, programID, id)
	if err != nil {
		return nil, nil, err
	}
	before.Body = nil
	if before.BodyPurgedAt != nil {
		return nil, nil, Errorf(ECONFLICT, "inbound event %s cannot be reprocessed: its raw body was purged by retention", id)
	}
	after, err = s.st.ReprocessInbound(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	s.enqueueProcess(ctx, id)
	return before, after, nil
}

// enqueueProcess queues hub:process; when the queue does not answer the
// sweeper enqueues the received row later.
func (s *Service) enqueueProcess(ctx context.Context, id string) bool {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.EnqueueTimeout)
	defer cancel()
	enqueue := s.q.EnqueueProcess
	if r, ok := s.q.(Requeuer); ok {
		enqueue = r.EnqueueProcessAgain
	}
	if err := enqueue(qctx, id); err != nil {
		s.log.WarnContext(ctx, "queue unavailable; the sweeper will enqueue the event", "event_id", id, "error", err)
		return false
	}
	return true
}

// Bounds of a bulk reprocess.
const (
	// MaxReprocess is the most events one bulk reprocess call requeues.
	MaxReprocess   = 10000
	reprocessBatch = 500
)

// ReprocessResult is what a bulk reprocess did.
type ReprocessResult struct {
	Requeued int `json:"requeued"`
	// More says the call stopped at its limit: call again with NextCursor
	// to continue.
	More       bool   `json:"more"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// ReprocessMatching makes received again, oldest first, up to limit
// (at most MaxReprocess) events of the program that sel picks and whose id
// is greater than after, and queues them. Running it again is harmless:
// events it already requeued no longer match a failed, ignored or
// processed selector, and processing is idempotent.
func (s *Service) ReprocessMatching(ctx context.Context, programID string, sel InboundSelector, after string, limit int) (*ReprocessResult, error) {
	if limit <= 0 || limit > MaxReprocess {
		limit = MaxReprocess
	}
	res := &ReprocessResult{}
	cursor, queueUp := after, true
	for res.Requeued < limit {
		n := min(reprocessBatch, limit-res.Requeued)
		ids, err := s.st.ReprocessInboundBatch(ctx, programID, sel, cursor, n)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			// After one enqueue failure the sweeper takes the rest.
			if queueUp {
				queueUp = s.enqueueProcess(ctx, id)
			}
		}
		res.Requeued += len(ids)
		if len(ids) > 0 {
			cursor = ids[len(ids)-1]
		}
		if len(ids) < n {
			return res, nil
		}
	}
	res.More, res.NextCursor = true, cursor
	return res, nil
}

// BackfillResult is what a backfill fetched from the provider and
// ingested.
type BackfillResult struct {
	SourceID string `json:"source_id"`
	// Fetched counts the objects the provider listed; Ingested those that
	// were new, Duplicates those already received (by webhook or an
	// earlier poll).
	Fetched    int    `json:"fetched"`
	Ingested   int    `json:"ingested"`
	Duplicates int    `json:"duplicates"`
	Cursor     string `json:"cursor"`
	Health     string `json:"health,omitempty"`
	// More says the poll stopped at a bound: run the backfill again
	// (without since) to continue from Cursor.
	More bool `json:"more"`
}

// ErrBackfillFailed wraps a provider API failure during a backfill.
var ErrBackfillFailed = errors.New("backfill failed")

// BackfillPollTimeout bounds the provider listing of one backfill, so that
// it answers within an HTTP request's time: reconcilers stop at their time
// bound with More set, and the next backfill continues.
const BackfillPollTimeout = 15 * time.Second

// Backfill runs a source's reconciliation now, from its saved cursor or,
// when since is set, from since (reconcilers read an RFC 3339 time as a
// cursor), ingests what the provider lists through the same path as
// webhooks (so events already received are duplicates), and saves the
// cursor. It is how missed events are recovered after an outage longer
// than the provider's own retries.
func (s *Service) Backfill(ctx context.Context, programID, sourceID string, since time.Time) (*BackfillResult, error) {
	src, err := s.st.GetSource(ctx, sourceID)
	if errors.Is(err, ErrNotFound) || (err == nil && src.ProgramID != programID) {
		return nil, Errorf(ENOTFOUND, "source %s not found", sourceID)
	}
	if err != nil {
		return nil, err
	}
	var (
		r  Reconciler
		ok bool
	)
	if s.cfg.Reconciler != nil {
		r, ok = s.cfg.Reconciler(src.Provider)
	}
	if !ok || r == nil {
		return nil, Errorf(EINVALID, "%s sources cannot be backfilled: partnerhub cannot list their events", src.Provider)
	}
	if len(src.Credentials) == 0 {
		return nil, Errorf(EINVALID, "source %s has no API credentials: set them on the source to backfill it", src.ID)
	}
	cursor := src.Cursor
	if !since.IsZero() {
		cursor = since.UTC().Format(time.RFC3339)
	}
	pctx, cancel := context.WithTimeout(ctx, BackfillPollTimeout)
	rec, err := r.Reconcile(pctx, src, cursor, s.cfg.Now())
	cancel()
	if err != nil {
		s.log.WarnContext(ctx, "backfilling source", "source_id", src.ID, "provider", src.Provider, "error", err)
		if serr := s.st.SetSourceState(ctx, src.ID, src.Cursor, "backfill failed: "+err.Error()); serr != nil {
			return nil, serr
		}
		return nil, fmt.Errorf("%w: %w", ErrBackfillFailed, err)
	}
	res := &BackfillResult{SourceID: src.ID, Fetched: len(rec.Events), Cursor: rec.Cursor, Health: rec.Health, More: rec.More}
	for _, ev := range rec.Events {
		_, dup, err := s.Ingest(ctx, src, ev.Receipt, ev.Body)
		if err != nil {
			return nil, fmt.Errorf("ingesting backfilled object of source %s: %w", src.ID, err)
		}
		if dup {
			res.Duplicates++
		} else {
			res.Ingested++
		}
	}
	if err := s.st.SetSourceState(ctx, src.ID, rec.Cursor, rec.Health); err != nil {
		return nil, err
	}
	if res.Ingested > 0 {
		s.log.InfoContext(ctx, "backfill recovered missed events", "source_id", src.ID, "provider", src.Provider, "count", res.Ingested)
	}
	return res, nil
}

// MountInbound adds the inbound operations routes to g (/api/v1, already
// authenticated): GET /inbound-events/{id} (staff; the raw body for admin
// only), POST /inbound-events/{id}/reprocess, POST
// /inbound-events/reprocess and POST /sources/{id}/backfill (admin, ops).
func MountInbound(g *echo.Group, svc *Service) {
	h := &inboundAPI{svc: svc}
	g.GET("/inbound-events/:id", h.get, Staff)
	g.POST("/inbound-events/reprocess", h.reprocessMatching, OpsOrAdmin)
	g.POST("/inbound-events/:id/reprocess", h.reprocess, OpsOrAdmin)
	g.POST("/sources/:id/backfill", h.backfill, OpsOrAdmin)
}

type inboundAPI struct{ svc *Service }

// inboundView is an inbound event as operators see it.
type inboundView struct {
	ID         string            `json:"id"`
	ProgramID  string            `json:"program_id"`
	SourceID   string            `json:"source_id"`
	Provider   string            `json:"provider"`
	DedupeKey  string            `json:"dedupe_key"`
	EventType  string            `json:"event_type"`
	Status     string            `json:"status"`
	Reason     string            `json:"reason,omitempty"`
	Attempts   int               `json:"attempts"`
	Headers    map[string]string `json:"headers"`
	ReceivedAt time.Time         `json:"received_at"`
	// ProcessedAt is set once the event reaches a final status.
	ProcessedAt  *time.Time      `json:"processed_at,omitempty"`
	BodyPurgedAt *time.Time      `json:"body_purged_at,omitempty"`
	Results      *InboundResults `json:"results,omitempty"`
	// Body is the raw request body as received, shown to admins while it
	// is retained; BodyEncoding is "base64" when it is not UTF-8 text.
	Body         *string `json:"body,omitempty"`
	BodyEncoding string  `json:"body_encoding,omitempty"`
}

// secretHeader matches header names that may carry a signature or a
// credential; they are never shown.
func secretHeader(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"signature", "secret", "authorization", "token", "hmac", "cookie", "api-key", "apikey"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

func viewInbound(ev *InboundEvent) *inboundView {
	v := &inboundView{
		ID: ev.ID, ProgramID: ev.ProgramID, SourceID: ev.SourceID, Provider: ev.Provider, DedupeKey: ev.DedupeKey,
		EventType: ev.EventType, Status: ev.Status, Reason: ev.LastError, Attempts: ev.Attempts,
		Headers: map[string]string{}, ReceivedAt: ev.ReceivedAt, ProcessedAt: ev.ProcessedAt, BodyPurgedAt: ev.BodyPurgedAt,
	}
	for k, val := range ev.Headers {
		if !secretHeader(k) {
			v.Headers[k] = val
		}
	}
	return v
}

func (h *inboundAPI) get(c echo.Context) error {
	ctx := c.Request().Context()
	k := Caller(c)
	ev, err := h.svc.inboundEvent(ctx, k.ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	v := viewInbound(ev)
	if v.Results, err = h.svc.st.InboundResults(ctx, ev.ID); err != nil {
		return err
	}
	if k.Role == RoleAdmin && ev.BodyPurgedAt == nil && len(ev.Body) > 0 {
		body := string(ev.Body)
		if !utf8.Valid(ev.Body) {
			body, v.BodyEncoding = base64.StdEncoding.EncodeToString(ev.Body), "base64"
		}
		v.Body = &body
	}
	return c.JSON(http.StatusOK, v)
}

func (h *inboundAPI) reprocess(c echo.Context) error {
	k := Caller(c)
	before, after, err := h.svc.Reprocess(c.Request().Context(), k.ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	v := viewInbound(after)
	if err := auditChange(c, h.svc.st, "inbound_event.reprocess", "inbound_event", after.ID, viewInbound(before), v); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, v)
}

// reprocessInput is the body of POST /inbound-events/reprocess.
type reprocessInput struct {
	Status   string `json:"status"`
	Provider string `json:"provider"`
	SourceID string `json:"source_id"`
	Since    string `json:"since"`
	Until    string `json:"until"`
	// Cursor continues an earlier call that answered more: true.
	Cursor string `json:"cursor"`
	// Limit caps the events requeued by this call; zero means
	// MaxReprocess.
	Limit int `json:"limit"`
}

func (h *inboundAPI) reprocessMatching(c echo.Context) error {
	var in reprocessInput
	if err := Bind(c, &in); err != nil {
		return err
	}
	sel := InboundSelector{Status: in.Status, Provider: in.Provider, SourceID: in.SourceID}
	if sel.Status == "" {
		sel.Status = InboundFailed
	}
	bad := map[string]string{}
	switch sel.Status {
	case InboundFailed, InboundIgnored, InboundProcessed, InboundReceived:
	default:
		bad["status"] = "must be failed (the default), ignored, processed or received"
	}
	for _, t := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", in.Since, &sel.Since}, {"until", in.Until, &sel.Until}} {
		if t.v == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339, t.v)
		if err != nil {
			bad[t.name] = "must be an RFC 3339 time"
		}
		*t.dst = at
	}
	if in.Limit < 0 || in.Limit > MaxReprocess {
		bad["limit"] = fmt.Sprintf("must be from 1 to %d (0: %d)", MaxReprocess, MaxReprocess)
	}
	if len(bad) > 0 {
		return Invalid(bad)
	}
	k := Caller(c)
	res, err := h.svc.ReprocessMatching(c.Request().Context(), k.ProgramID, sel, in.Cursor, in.Limit)
	if err != nil {
		return err
	}
	if err := auditChange(c, h.svc.st, "inbound_event.reprocess_bulk", "inbound_event", "",
		map[string]any{"selector": sel, "cursor": in.Cursor}, res); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// backfillInput is the optional body of POST /sources/{id}/backfill.
type backfillInput struct {
	Since string `json:"since"`
}

func (h *inboundAPI) backfill(c echo.Context) error {
	var in backfillInput
	if c.Request().ContentLength != 0 {
		if err := Bind(c, &in); err != nil {
			return err
		}
	}
	var since time.Time
	if in.Since != "" {
		t, err := time.Parse(time.RFC3339, in.Since)
		if err != nil {
			return Invalid(map[string]string{"since": "must be an RFC 3339 time"})
		}
		since = t
	}
	k := Caller(c)
	res, err := h.svc.Backfill(c.Request().Context(), k.ProgramID, c.Param("id"), since)
	if errors.Is(err, ErrBackfillFailed) {
		return echo.NewHTTPError(http.StatusBadGateway, err.Error())
	}
	if err != nil {
		return err
	}
	if err := auditChange(c, h.svc.st, "source.backfill", "source", res.SourceID, map[string]any{"since": in.Since}, res); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}
