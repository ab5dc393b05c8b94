package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// This file holds what operators need beyond hub.Store: deliveries listed
// by endpoint and event type, retries (requeueing finished deliveries),
// replays and pings (deliveries to one endpoint), and endpoint changes
// made under a row lock.

// deliveryFilter adds the conditions of a delivery query: f's status,
// partner (the event's) and since/until (on created_at), the endpoint, and
// the event type ("commission.created", a category "commission.*", or
// "*"; "" does not filter).
func (w *cond) deliveryFilter(c *conn, f hub.Filter, endpointID, eventType string) {
	w.filter(c, f, "status", "event_id IN (SELECT id FROM events WHERE partner_id = ?)", "created_at")
	if endpointID != "" {
		w.and("endpoint_id = ?", endpointID)
	}
	switch cat, wild := strings.CutSuffix(eventType, ".*"); {
	case eventType == "" || eventType == "*":
	case wild:
		w.and("event_type LIKE ?", strings.NewReplacer(`%`, ``, `_`, ``).Replace(cat)+".%")
	default:
		w.and("event_type = ?", eventType)
	}
}

// FindDeliveries lists a program's deliveries, newest first, with their
// AttemptLog. Like ListDeliveries it applies f's Status, PartnerID and
// Since/Until (on created_at); endpointID and eventType (a type, a
// category such as "commission.*", or "*") narrow it further when set.
func (db *DB) FindDeliveries(ctx context.Context, programID string, f hub.Filter, endpointID, eventType string, p hub.Page) ([]*hub.Delivery, error) {
	var w cond
	w.and("program_id = ?", programID)
	w.deliveryFilter(db.c, f, endpointID, eventType)
	out, err := list(ctx, db.c, `SELECT `+deliveryCols+` FROM deliveries`+w.page(p, "id"), w.args, scanDelivery)
	if err == nil {
		err = db.c.fillAttempts(ctx, out)
	}
	if err != nil {
		return nil, fmt.Errorf("finding deliveries: %w", err)
	}
	return out, nil
}

// GetDeliveryLog returns a delivery of the program with its AttemptLog.
func (db *DB) GetDeliveryLog(ctx context.Context, programID, id string) (*hub.Delivery, error) {
	d, err := scanOne(ctx, db.c, `SELECT `+deliveryCols+` FROM deliveries WHERE program_id = ? AND id = ?`,
		[]any{programID, id}, scanDelivery)
	if err == nil {
		err = db.c.fillAttempts(ctx, []*hub.Delivery{d})
	}
	if err != nil {
		return nil, fmt.Errorf("getting delivery %s: %w", id, err)
	}
	return d, nil
}

// RequeueDeliveries sets up to limit of the program's deliveries that
// match the filter (as in FindDeliveries; f.Status is required and must
// not be pending) back to pending, due at now, oldest first, and returns
// them as stored. Deliveries to disabled endpoints, and deliveries changed
// at or after now (requeued by this bulk retry and finished again since),
// are left alone. A delivery another call requeued first is not returned
// again, so running it twice requeues nothing the second time. limit 0
// means 100; it is capped at 1000.
func (db *DB) RequeueDeliveries(ctx context.Context, programID string, f hub.Filter, endpointID, eventType string, now time.Time, limit int) ([]*hub.Delivery, error) {
	if f.Status == "" || f.Status == hub.DeliveryPending {
		return nil, fmt.Errorf("requeueing deliveries: status %q: %w", f.Status,
			hub.Errorf(hub.EINVALID, "only failed or succeeded deliveries can be requeued"))
	}
	var w cond
	w.and("program_id = ?", programID)
	w.deliveryFilter(db.c, f, endpointID, eventType)
	w.and("endpoint_id IN (SELECT id FROM endpoints WHERE program_id = ? AND enabled = ?)", programID, true)
	now = normTime(now)
	w.and("updated_at < ?", db.c.ts(now))
	args := append([]any{hub.DeliveryPending, db.c.ts(now), db.c.ts(now)}, w.args...)
	// The outer status condition is checked again on the locked row, so
	// two concurrent calls never both requeue one delivery.
	args = append(args, f.Status)
	q := fmt.Sprintf(`UPDATE deliveries SET status = ?, next_attempt_at = ?, updated_at = ?
		WHERE id IN (SELECT id FROM deliveries%s ORDER BY id LIMIT %d) AND status = ?
		RETURNING `+deliveryCols, w.where(), dueLimit(limit))
	out, err := list(ctx, db.c, q, args, scanDelivery)
	if err != nil {
		return nil, fmt.Errorf("requeueing deliveries: %w", err)
	}
	return out, nil
}

// RequeueDelivery sets one finished (failed or succeeded) delivery of the
// program back to pending, due at now. It returns the delivery as stored
// and whether it changed it: a pending delivery is left as it is.
func (db *DB) RequeueDelivery(ctx context.Context, programID, id string, now time.Time) (*hub.Delivery, bool, error) {
	now = normTime(now)
	d, err := scanOne(ctx, db.c, `UPDATE deliveries SET status = ?, next_attempt_at = ?, updated_at = ?
		WHERE program_id = ? AND id = ? AND status <> ? RETURNING `+deliveryCols,
		[]any{hub.DeliveryPending, db.c.ts(now), db.c.ts(now), programID, id, hub.DeliveryPending}, scanDelivery)
	if err == nil {
		return d, true, nil
	}
	if !errors.Is(err, hub.ErrNotFound) {
		return nil, false, fmt.Errorf("requeueing delivery %s: %w", id, err)
	}
	d, err = db.GetDeliveryLog(ctx, programID, id) // pending already, or missing
	if err != nil {
		return nil, false, err
	}
	return d, false, nil
}

// GetEvent returns an outbound event of the program.
func (db *DB) GetEvent(ctx context.Context, programID, id string) (*hub.Event, error) {
	e, err := scanOne(ctx, db.c, `SELECT `+eventCols+` FROM events WHERE program_id = ? AND id = ?`,
		[]any{programID, id}, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("getting event %s: %w", id, err)
	}
	return e, nil
}

// InsertDelivery adds a pending delivery, due at now, of an existing event
// of the program to one of its endpoints (a replay: receivers see the same
// webhook-id again). It fails with ErrNotFound when the event or the
// endpoint is not the program's.
func (db *DB) InsertDelivery(ctx context.Context, programID, eventID, endpointID string, now time.Time) (*hub.Delivery, error) {
	var d *hub.Delivery
	err := db.inTx(ctx, func(tx *Tx) error {
		var typ, ep string
		if err := tx.c.get(ctx, `SELECT type FROM events WHERE program_id = ? AND id = ?`,
			[]any{programID, eventID}, &typ); err != nil {
			return fmt.Errorf("event %s: %w", eventID, notFound(err))
		}
		if err := tx.c.get(ctx, `SELECT id FROM endpoints WHERE program_id = ? AND id = ?`,
			[]any{programID, endpointID}, &ep); err != nil {
			return fmt.Errorf("endpoint %s: %w", endpointID, notFound(err))
		}
		d = pendingDelivery(programID, eventID, endpointID, typ, now)
		return tx.c.insertDelivery(ctx, d)
	})
	if err != nil {
		return nil, fmt.Errorf("inserting delivery of event %s: %w", eventID, err)
	}
	return d, nil
}

// InsertEventTo stores an outbound event and one pending delivery of it,
// due now, to endpointID only, whatever the program's other endpoints
// accept (a ping). ID, ProgramID and CreatedAt are filled as InsertEvent
// fills them.
func (db *DB) InsertEventTo(ctx context.Context, e *hub.Event, endpointID string) (*hub.Delivery, error) {
	if e.ID == "" {
		e.ID = hub.NewID("evt")
	}
	e.ProgramID = defaultProgram(e.ProgramID)
	now := db.c.nowUTC()
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	e.CreatedAt = normTime(e.CreatedAt)
	if len(e.Data) == 0 {
		e.Data = []byte("{}")
	}
	var d *hub.Delivery
	err := db.inTx(ctx, func(tx *Tx) error {
		var ep string
		if err := tx.c.get(ctx, `SELECT id FROM endpoints WHERE program_id = ? AND id = ?`,
			[]any{e.ProgramID, endpointID}, &ep); err != nil {
			return fmt.Errorf("endpoint %s: %w", endpointID, notFound(err))
		}
		if _, err := tx.c.exec(ctx, `INSERT INTO events (`+eventCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
			e.ID, e.ProgramID, e.Type, nullStr(e.PartnerID), string(e.Data), tx.c.ts(e.CreatedAt)); err != nil {
			return err
		}
		d = pendingDelivery(e.ProgramID, e.ID, endpointID, e.Type, now)
		return tx.c.insertDelivery(ctx, d)
	})
	if err != nil {
		return nil, fmt.Errorf("inserting event %s: %w", e.ID, err)
	}
	return d, nil
}

// pendingDelivery returns a pending delivery due at now.
func pendingDelivery(programID, eventID, endpointID, eventType string, now time.Time) *hub.Delivery {
	now = normTime(now)
	due := now
	return &hub.Delivery{
		ID:            hub.NewID("dlv"),
		ProgramID:     programID,
		EventID:       eventID,
		EndpointID:    endpointID,
		EventType:     eventType,
		Status:        hub.DeliveryPending,
		NextAttemptAt: &due,
		CreatedAt:     now,
		UpdatedAt:     now,
	}
}

func (c *conn) insertDelivery(ctx context.Context, d *hub.Delivery) error {
	_, err := c.exec(ctx, `INSERT INTO deliveries (`+deliveryCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.ProgramID, d.EventID, d.EndpointID, d.EventType, d.Status, d.Attempts,
		c.nullTS(d.NextAttemptAt), d.LastError, c.ts(d.CreatedAt), c.ts(d.UpdatedAt))
	if err != nil {
		return fmt.Errorf("inserting delivery %s: %w", d.ID, err)
	}
	return nil
}

// ModifyEndpoint changes an endpoint of the program under a row lock: it
// loads the endpoint (secrets in clear), calls fn, and saves every mutable
// field of what fn left, in one transaction, so concurrent changes (a
// secret rotation and a PATCH) never undo each other. fn's error aborts
// the change and is returned as is. It returns the saved endpoint.
func (db *DB) ModifyEndpoint(ctx context.Context, programID, id string, fn func(e *hub.Endpoint) error) (*hub.Endpoint, error) {
	var out *hub.Endpoint
	err := db.inTx(ctx, func(tx *Tx) error {
		e, err := scanOne(ctx, tx.c, `SELECT `+endpointCols+` FROM endpoints WHERE program_id = ? AND id = ?`+tx.c.forUpdate(),
			[]any{programID, id}, tx.c.scanEndpoint)
		if err != nil {
			return fmt.Errorf("changing endpoint %s: %w", id, err)
		}
		if err := fn(e); err != nil {
			return err
		}
		e.ID, e.ProgramID = id, programID
		if err := tx.c.saveEndpoint(ctx, e); err != nil {
			return fmt.Errorf("changing endpoint %s: %w", id, err)
		}
		out = e
		return nil
	})
	return out, err
}

// saveEndpoint writes every mutable field of e.
func (c *conn) saveEndpoint(ctx context.Context, e *hub.Endpoint) error {
	secret, err := c.seal(e.Secret)
	if err != nil {
		return err
	}
	prev, err := c.seal(e.PreviousSecret)
	if err != nil {
		return err
	}
	types, err := jsonText(e.EventTypes)
	if err != nil {
		return err
	}
	settings, err := jsonText(e.EndpointSettings)
	if err != nil {
		return err
	}
	e.PreviousSecretUntil = normTimePtr(e.PreviousSecretUntil)
	e.FailingSince = normTimePtr(e.FailingSince)
	_, err = c.exec(ctx, `UPDATE endpoints SET url = ?, description = ?, event_types = ?, partner_id = ?,
		secret = ?, enabled = ?, settings = ?, previous_secret = ?, previous_secret_until = ?, disabled_reason = ?,
		failing_since = ? WHERE program_id = ? AND id = ?`,
		e.URL, e.Description, types, nullStr(e.PartnerID), secret, e.Enabled, settings, prev,
		c.nullTS(e.PreviousSecretUntil), e.DisabledReason, c.nullTS(e.FailingSince), e.ProgramID, e.ID)
	return err
}

// DeleteEndpoint deletes an endpoint of the program with its deliveries
// and their attempts; the events stay (they can be replayed to another
// endpoint).
func (db *DB) DeleteEndpoint(ctx context.Context, programID, id string) error {
	n, err := db.c.execN(ctx, `DELETE FROM endpoints WHERE program_id = ? AND id = ?`, programID, id)
	if err != nil {
		return fmt.Errorf("deleting endpoint %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("deleting endpoint %s: %w", id, hub.ErrNotFound)
	}
	return nil
}
