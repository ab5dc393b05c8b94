package store

import (
	"context"
	"fmt"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

const eventCols = `id, program_id, type, partner_id, data, created_at`

func scanEvent(r scanner) (*hub.Event, error) {
	var e hub.Event
	err := r.Scan(&e.ID, &e.ProgramID, &e.Type, strCol{&e.PartnerID}, rawCol{&e.Data}, timeCol{&e.CreatedAt})
	return &e, err
}

// InsertEvent stores an outbound event and one pending delivery, due now,
// for every enabled endpoint of the program that accepts it
// (hub.Endpoint.Accepts), when the transaction commits. It returns the
// deliveries. ID, ProgramID (the default program) and CreatedAt are filled
// when empty; empty Data is stored as {}.
func (tx *Tx) InsertEvent(ctx context.Context, e *hub.Event) ([]*hub.Delivery, error) {
	if e.ID == "" {
		e.ID = hub.NewID("evt")
	}
	e.ProgramID = defaultProgram(e.ProgramID)
	now := tx.c.nowUTC()
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	e.CreatedAt = normTime(e.CreatedAt)
	if len(e.Data) == 0 {
		e.Data = []byte("{}")
	}
	eps, err := tx.enabledEndpoints(ctx, e.ProgramID)
	if err != nil {
		return nil, fmt.Errorf("inserting event %s: listing endpoints: %w", e.ID, err)
	}
	var out []*hub.Delivery
	for _, ep := range eps {
		if !ep.Accepts(e.Type, e.PartnerID) {
			continue
		}
		due := now
		out = append(out, &hub.Delivery{
			ID:            hub.NewID("dlv"),
			ProgramID:     e.ProgramID,
			EventID:       e.ID,
			EndpointID:    ep.ID,
			EventType:     e.Type,
			Status:        hub.DeliveryPending,
			NextAttemptAt: &due,
			CreatedAt:     now,
			UpdatedAt:     now,
		})
	}
	tx.later.events = append(tx.later.events, e)
	tx.later.deliveries = append(tx.later.deliveries, out...)
	return out, nil
}

// enabledEndpoints lists a program's enabled endpoints, once per
// transaction.
func (tx *Tx) enabledEndpoints(ctx context.Context, programID string) ([]*hub.Endpoint, error) {
	return fromGen(ctx, tx, func(g *configGen) map[string][]*hub.Endpoint { return g.endpoints }, programID,
		func() ([]*hub.Endpoint, error) {
			return list(ctx, tx.c, `SELECT id, event_types, partner_id, enabled, settings FROM endpoints
				WHERE program_id = ? AND enabled = ? ORDER BY id`, []any{programID, true},
				func(s scanner) (*hub.Endpoint, error) {
					var ep hub.Endpoint
					err := s.Scan(&ep.ID, jsonCol{&ep.EventTypes}, strCol{&ep.PartnerID}, &ep.Enabled, jsonCol{&ep.EndpointSettings})
					return &ep, err
				})
		})
}

// ListEvents lists a program's outbound events, newest first.
func (db *DB) ListEvents(ctx context.Context, programID string, p hub.Page) ([]*hub.Event, error) {
	var w cond
	w.and("program_id = ?", programID)
	out, err := list(ctx, db.c, `SELECT `+eventCols+` FROM events`+w.page(p, "id"), w.args, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	return out, nil
}

const deliveryCols = `id, program_id, event_id, endpoint_id, event_type, status, attempts, next_attempt_at,
	last_error, created_at, updated_at`

func scanDelivery(r scanner) (*hub.Delivery, error) {
	var d hub.Delivery
	err := r.Scan(&d.ID, &d.ProgramID, &d.EventID, &d.EndpointID, &d.EventType, &d.Status, &d.Attempts,
		nullTimeCol{&d.NextAttemptAt}, &d.LastError, timeCol{&d.CreatedAt}, timeCol{&d.UpdatedAt})
	return &d, err
}

// GetDelivery returns a delivery (without its AttemptLog).
func (db *DB) GetDelivery(ctx context.Context, id string) (*hub.Delivery, error) {
	d, err := scanOne(ctx, db.c, `SELECT `+deliveryCols+` FROM deliveries WHERE id = ?`, []any{id}, scanDelivery)
	if err != nil {
		return nil, fmt.Errorf("getting delivery %s: %w", id, err)
	}
	return d, nil
}

// ListDeliveries lists a program's deliveries, newest first, with their
// AttemptLog. Filter.Status, PartnerID (the event's partner) and
// Since/Until (on created_at) apply.
func (db *DB) ListDeliveries(ctx context.Context, programID string, f hub.Filter, p hub.Page) ([]*hub.Delivery, error) {
	var w cond
	w.and("program_id = ?", programID)
	w.filter(db.c, f, "status", "event_id IN (SELECT id FROM events WHERE partner_id = ?)", "created_at")
	out, err := list(ctx, db.c, `SELECT `+deliveryCols+` FROM deliveries`+w.page(p, "id"), w.args, scanDelivery)
	if err == nil {
		err = db.c.fillAttempts(ctx, out)
	}
	if err != nil {
		return nil, fmt.Errorf("listing deliveries: %w", err)
	}
	return out, nil
}

// fillAttempts loads the attempts of ds, in order.
func (c *conn) fillAttempts(ctx context.Context, ds []*hub.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	byID := make(map[string]*hub.Delivery, len(ds))
	args := make([]any, 0, len(ds))
	for _, d := range ds {
		byID[d.ID] = d
		d.AttemptLog = nil
		args = append(args, d.ID)
	}
	as, err := list(ctx, c, `SELECT `+attemptCols+` FROM attempts
		WHERE delivery_id IN (`+placeholders(len(ds))+`) ORDER BY delivery_id, number`, args, scanAttempt)
	if err != nil {
		return fmt.Errorf("loading attempts: %w", err)
	}
	for _, a := range as {
		d := byID[a.DeliveryID]
		d.AttemptLog = append(d.AttemptLog, a)
	}
	return nil
}

const attemptCols = `id, delivery_id, number, status_code, latency_ms, error, response_body, created_at,
	response_headers`

func scanAttempt(r scanner) (hub.Attempt, error) {
	var a hub.Attempt
	err := r.Scan(&a.ID, &a.DeliveryID, &a.Number, &a.StatusCode, &a.LatencyMS, &a.Error, &a.ResponseBody,
		timeCol{&a.CreatedAt}, jsonCol{&a.ResponseHeaders})
	if len(a.ResponseHeaders) == 0 {
		a.ResponseHeaders = nil // rows older than the column hold {}
	}
	return a, err
}

// DeliveryTarget loads what one attempt needs: the delivery, its event and
// its endpoint (with the secret in clear).
func (db *DB) DeliveryTarget(ctx context.Context, deliveryID string) (*hub.Delivery, *hub.Event, *hub.Endpoint, error) {
	d, err := db.GetDelivery(ctx, deliveryID)
	if err != nil {
		return nil, nil, nil, err
	}
	e, err := scanOne(ctx, db.c, `SELECT `+eventCols+` FROM events WHERE id = ?`, []any{d.EventID}, scanEvent)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("loading event %s of delivery %s: %w", d.EventID, deliveryID, err)
	}
	ep, err := scanOne(ctx, db.c, `SELECT `+endpointCols+` FROM endpoints WHERE id = ?`, []any{d.EndpointID}, db.c.scanEndpoint)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("loading endpoint %s of delivery %s: %w", d.EndpointID, deliveryID, err)
	}
	return d, e, ep, nil
}

// RecordAttempt inserts a and saves d's status, attempts, next attempt
// time and last error, in one transaction. It fails with ECONFLICT when
// the stored delivery's attempts differ from a.Number-1 (another worker
// recorded this attempt already) or it is no longer pending (failed
// meanwhile, as when its endpoint was disabled). a's ID, DeliveryID and CreatedAt are
// filled when empty; d.UpdatedAt is set.
func (db *DB) RecordAttempt(ctx context.Context, d *hub.Delivery, a *hub.Attempt) error {
	if a.ID == "" {
		a.ID = hub.NewID("att")
	}
	if a.DeliveryID == "" {
		a.DeliveryID = d.ID
	}
	now := db.c.nowUTC()
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	a.CreatedAt = normTime(a.CreatedAt)
	d.NextAttemptAt = normTimePtr(d.NextAttemptAt)
	return db.inTx(ctx, func(tx *Tx) error {
		var programID string
		var attempts int
		var status string
		err := tx.c.get(ctx, `SELECT program_id, attempts, status FROM deliveries WHERE id = ?`+tx.c.forUpdate(),
			[]any{d.ID}, &programID, &attempts, &status)
		if err != nil {
			return fmt.Errorf("recording attempt %d of delivery %s: %w", a.Number, d.ID, notFound(err))
		}
		if attempts != a.Number-1 {
			return hub.Errorf(hub.ECONFLICT, "attempt %d of delivery %s is already recorded (%d stored)", a.Number, d.ID, attempts)
		}
		if status != hub.DeliveryPending {
			return hub.Errorf(hub.ECONFLICT, "delivery %s is %s: attempt %d is not recorded", d.ID, status, a.Number)
		}
		headers, err := jsonText(a.ResponseHeaders)
		if err != nil {
			return fmt.Errorf("recording attempt %d of delivery %s: %w", a.Number, d.ID, err)
		}
		_, err = tx.c.exec(ctx, `INSERT INTO attempts
			(id, program_id, delivery_id, number, status_code, latency_ms, error, response_body, created_at, response_headers)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.ID, programID, a.DeliveryID, a.Number, a.StatusCode, a.LatencyMS, a.Error, a.ResponseBody, tx.c.ts(a.CreatedAt), headers)
		if isConflict(err) {
			err = fmt.Errorf("%w: %w", hub.Errorf(hub.ECONFLICT, "attempt %d of delivery %s is already recorded", a.Number, d.ID), err)
		}
		if err != nil {
			return fmt.Errorf("recording attempt %d of delivery %s: %w", a.Number, d.ID, err)
		}
		_, err = tx.c.exec(ctx, `UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?,
			updated_at = ? WHERE id = ?`,
			d.Status, d.Attempts, tx.c.nullTS(d.NextAttemptAt), d.LastError, tx.c.ts(now), d.ID)
		if err != nil {
			return fmt.Errorf("recording attempt %d of delivery %s: %w", a.Number, d.ID, err)
		}
		d.UpdatedAt = now
		return nil
	})
}

// DeliveriesDue lists pending deliveries whose next attempt is before
// before, oldest first. limit 0 means 100.
func (db *DB) DeliveriesDue(ctx context.Context, before time.Time, limit int) ([]*hub.Delivery, error) {
	q := fmt.Sprintf(`SELECT `+deliveryCols+` FROM deliveries
		WHERE status = ? AND next_attempt_at < ? ORDER BY next_attempt_at, id LIMIT %d`, dueLimit(limit))
	out, err := list(ctx, db.c, q, []any{hub.DeliveryPending, db.c.ts(before)}, scanDelivery)
	if err != nil {
		return nil, fmt.Errorf("listing due deliveries: %w", err)
	}
	return out, nil
}
