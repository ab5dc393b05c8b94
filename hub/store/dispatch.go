package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// This file holds the writes of the outbound dispatcher beyond
// RecordAttempt: attempts recorded in batches, deliveries deferred without
// using an attempt, and endpoint health (failing since, disabling).

// maxAttemptBatch bounds one RecordAttempts statement (10 parameters per
// attempt).
const maxAttemptBatch = 500

// RecordAttempts records several attempts in one transaction: for each i,
// what RecordAttempt(ctx, ds[i], as[i]) does. It returns one error per
// attempt: nil when recorded; ECONFLICT when the stored delivery's attempts
// differ from as[i].Number-1 (another worker recorded it), it is no longer
// pending, or the same delivery appears earlier in the batch; ErrNotFound when the delivery is
// gone; or the error that failed the whole batch, for every attempt. a's
// ID, DeliveryID and CreatedAt are filled when empty; d.UpdatedAt is set
// for the recorded ones.
func (db *DB) RecordAttempts(ctx context.Context, ds []*hub.Delivery, as []*hub.Attempt) []error {
	errs := make([]error, len(ds))
	if len(ds) != len(as) {
		for i := range errs {
			errs[i] = fmt.Errorf("recording attempts: %d deliveries for %d attempts", len(ds), len(as))
		}
		return errs
	}
	now := db.c.nowUTC()
	headers := make([]string, len(as))
	seen := make(map[string]bool, len(ds))
	var todo []int
	for i, a := range as {
		d := ds[i]
		if a.ID == "" {
			a.ID = hub.NewID("att")
		}
		if a.DeliveryID == "" {
			a.DeliveryID = d.ID
		}
		if a.CreatedAt.IsZero() {
			a.CreatedAt = now
		}
		a.CreatedAt = normTime(a.CreatedAt)
		d.NextAttemptAt = normTimePtr(d.NextAttemptAt)
		h, err := jsonText(a.ResponseHeaders)
		switch {
		case err != nil:
			errs[i] = fmt.Errorf("recording attempt %d of delivery %s: %w", a.Number, d.ID, err)
		case seen[d.ID]:
			errs[i] = hub.Errorf(hub.ECONFLICT, "attempt %d of delivery %s is recorded twice in one batch", a.Number, d.ID)
		default:
			seen[d.ID] = true
			headers[i] = h
			todo = append(todo, i)
		}
	}
	for len(todo) > 0 {
		n := min(len(todo), maxAttemptBatch)
		chunk := todo[:n]
		todo = todo[n:]
		var recorded map[string]bool
		var err error
		if db.c.pg {
			recorded, err = db.recordPG(ctx, ds, as, headers, chunk, now)
		} else {
			err = db.inTx(ctx, func(tx *Tx) error {
				var err error
				recorded, err = tx.recordEach(ctx, ds, as, headers, chunk, now)
				return err
			})
		}
		var missing []int
		for _, i := range chunk {
			switch ok := recorded[ds[i].ID]; {
			case err != nil:
				errs[i] = fmt.Errorf("recording attempt %d of delivery %s: %w", as[i].Number, ds[i].ID, err)
			case ok:
				ds[i].UpdatedAt = now
			default:
				missing = append(missing, i)
			}
		}
		db.explainMissing(ctx, ds, as, missing, errs)
	}
	return errs
}

// recordAttemptsSQL updates the pending deliveries whose stored attempts
// are one less than their attempt's number and inserts those attempts (a
// delivery failed meanwhile, as when its endpoint was disabled, keeps its
// state). The status is compared through coalesce, as in
// deferDeliveriesSQL, so that rows are found by primary key. The
// update returns each attempt's columns with its delivery's program, so
// the insert needs no join.
const recordAttemptsSQL = `WITH v AS (
		SELECT * FROM unnest(?::text[], ?::text[], ?::int[], ?::timestamptz[], ?::text[], ?::int[], ?::text[],
			?::int[], ?::bigint[], ?::text[], ?::text[], ?::timestamptz[], ?::text[])
		AS v (id, status, attempts, next_at, last_error, number, att_id, status_code, latency_ms, error,
			response_body, created_at, response_headers)
	),
	upd AS (
		UPDATE deliveries AS d SET status = v.status, attempts = v.attempts, next_attempt_at = v.next_at,
			last_error = v.last_error, updated_at = ?
		FROM v WHERE d.id = v.id AND d.attempts = v.number - 1 AND coalesce(d.status, '') = 'pending'
		RETURNING d.id, d.program_id, v.att_id, v.number, v.status_code, v.latency_ms, v.error,
			v.response_body, v.created_at, v.response_headers
	),
	ins AS (
		INSERT INTO attempts
			(id, program_id, delivery_id, number, status_code, latency_ms, error, response_body, created_at, response_headers)
		SELECT att_id, program_id, id, number, status_code, latency_ms, error, response_body, created_at, response_headers
		FROM upd
	)
	SELECT id FROM upd`

// recordPG records the attempts of chunk whose delivery's stored attempts
// are one less than their number, in one statement (one round trip, no
// explicit transaction): it updates those deliveries and inserts their
// attempts, and returns the ids of the deliveries it recorded. The rows
// travel as arrays, so the statement's text is the same for every batch
// size (one prepared statement per connection).
func (db *DB) recordPG(ctx context.Context, ds []*hub.Delivery, as []*hub.Attempt, headers []string, chunk []int, now time.Time) (map[string]bool, error) {
	n := len(chunk)
	var (
		ids, statuses, lastErrors, attIDs, errs, bodies, hdrs = make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		attempts, numbers, codes = make([]int32, n), make([]int32, n), make([]int32, n)
		latencies                = make([]int64, n)
		nexts                    = make([]*time.Time, n)
		created                  = make([]time.Time, n)
	)
	for k, i := range chunk {
		d, a := ds[i], as[i]
		ids[k], statuses[k], attempts[k], nexts[k], lastErrors[k] = d.ID, d.Status, int32(d.Attempts), d.NextAttemptAt, d.LastError
		numbers[k], attIDs[k], codes[k], latencies[k] = int32(a.Number), a.ID, int32(a.StatusCode), a.LatencyMS
		errs[k], bodies[k], created[k], hdrs[k] = a.Error, a.ResponseBody, a.CreatedAt, headers[i]
	}
	rows, err := list(ctx, db.hot, recordAttemptsSQL,
		[]any{ids, statuses, attempts, nexts, lastErrors, numbers, attIDs, codes, latencies, errs, bodies, created, hdrs,
			db.c.ts(now)},
		func(s scanner) (string, error) {
			var id string
			err := s.Scan(&id)
			return id, err
		})
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(rows))
	for _, id := range rows {
		out[id] = true
	}
	return out, nil
}

// recordEach is recordPG one row at a time inside a transaction, for
// SQLite (in process, a statement costs no round trip).
func (tx *Tx) recordEach(ctx context.Context, ds []*hub.Delivery, as []*hub.Attempt, headers []string, chunk []int, now time.Time) (map[string]bool, error) {
	out := make(map[string]bool, len(chunk))
	for _, i := range chunk {
		d, a := ds[i], as[i]
		var programID string
		err := tx.c.get(ctx, `UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?,
			updated_at = ? WHERE id = ? AND attempts = ? AND status = ? RETURNING program_id`,
			[]any{d.Status, d.Attempts, tx.c.nullTS(d.NextAttemptAt), d.LastError, tx.c.ts(now), d.ID, a.Number - 1,
				hub.DeliveryPending},
			&programID)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if _, err := tx.c.exec(ctx, `INSERT INTO attempts
			(id, program_id, delivery_id, number, status_code, latency_ms, error, response_body, created_at, response_headers)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.ID, programID, a.DeliveryID, a.Number, a.StatusCode, a.LatencyMS, a.Error, a.ResponseBody,
			tx.c.ts(a.CreatedAt), headers[i]); err != nil {
			return nil, err
		}
		out[d.ID] = true
	}
	return out, nil
}

// explainMissing sets the errors of the attempts in missing that the batch
// did not record: ErrNotFound for deliveries that are gone, ECONFLICT for
// the others.
func (db *DB) explainMissing(ctx context.Context, ds []*hub.Delivery, as []*hub.Attempt, missing []int, errs []error) {
	if len(missing) == 0 {
		return
	}
	args := make([]any, len(missing))
	for k, i := range missing {
		args[k] = ds[i].ID
	}
	ids, err := list(ctx, db.c, `SELECT id FROM deliveries WHERE id IN (`+placeholders(len(missing))+`)`, args,
		func(s scanner) (string, error) {
			var id string
			err := s.Scan(&id)
			return id, err
		})
	exists := make(map[string]bool, len(ids))
	for _, id := range ids {
		exists[id] = true
	}
	for _, i := range missing {
		switch {
		case errs[i] != nil:
		case err == nil && !exists[ds[i].ID]:
			errs[i] = fmt.Errorf("recording attempt %d of delivery %s: %w", as[i].Number, ds[i].ID, hub.ErrNotFound)
		default:
			errs[i] = hub.Errorf(hub.ECONFLICT, "attempt %d of delivery %s is already recorded", as[i].Number, ds[i].ID)
		}
	}
}

// DeferDeliveries moves the next attempt of pending deliveries without
// recording an attempt (a circuit breaker, a rate limit or a concurrency
// limit held them back), so that the sweeper does not queue them again
// before then: ids[i] to at[i], unless it is no longer pending with
// attempts[i] attempts made. It reports, per delivery, whether it moved
// it. One statement on PostgreSQL, one transaction on SQLite.
func (db *DB) DeferDeliveries(ctx context.Context, ids []string, attempts []int, at []time.Time) ([]bool, error) {
	if len(attempts) != len(ids) || len(at) != len(ids) {
		return nil, fmt.Errorf("deferring deliveries: %d ids, %d attempts, %d times", len(ids), len(attempts), len(at))
	}
	moved := make([]bool, len(ids))
	now := db.c.ts(db.c.nowUTC())
	for lo := 0; lo < len(ids); lo += maxAttemptBatch {
		hi := min(lo+maxAttemptBatch, len(ids))
		var err error
		if db.c.pg {
			err = db.deferPG(ctx, ids[lo:hi], attempts[lo:hi], at[lo:hi], now, moved[lo:hi])
		} else {
			err = db.inTx(ctx, func(tx *Tx) error {
				for i := lo; i < hi; i++ {
					n, err := tx.c.execN(ctx, `UPDATE deliveries SET next_attempt_at = ?, updated_at = ?
						WHERE id = ? AND status = ? AND attempts = ?`,
						tx.c.ts(at[i]), now, ids[i], hub.DeliveryPending, attempts[i])
					if err != nil {
						return err
					}
					moved[i] = n > 0
				}
				return nil
			})
		}
		if err != nil {
			return nil, fmt.Errorf("deferring deliveries: %w", err)
		}
	}
	return moved, nil
}

// deferDeliveriesSQL moves pending deliveries' next attempts. The status
// is compared through coalesce so that it is checked on each row found by
// primary key: as a plain equality, a generic plan made on an empty table
// scanned every pending delivery through deliveries_due instead.
const deferDeliveriesSQL = `UPDATE deliveries AS d SET next_attempt_at = v.at, updated_at = ?
		FROM unnest(?::text[], ?::int[], ?::timestamptz[]) AS v (id, attempts, at)
		WHERE d.id = v.id AND coalesce(d.status, '') = ? AND d.attempts = v.attempts
		RETURNING d.id, d.attempts`

func (db *DB) deferPG(ctx context.Context, ids []string, attempts []int, at []time.Time, now any, moved []bool) error {
	n32 := make([]int32, len(attempts))
	ats := make([]time.Time, len(at))
	for i, n := range attempts {
		n32[i], ats[i] = int32(n), normTime(at[i])
	}
	type row struct {
		id       string
		attempts int
	}
	rows, err := list(ctx, db.hot, deferDeliveriesSQL, []any{now, ids, n32, ats, hub.DeliveryPending},
		func(s scanner) (row, error) {
			var r row
			err := s.Scan(&r.id, &r.attempts)
			return r, err
		})
	if err != nil {
		return err
	}
	done := make(map[row]bool, len(rows))
	for _, r := range rows {
		done[r] = true
	}
	for i := range ids {
		moved[i] = done[row{ids[i], attempts[i]}]
	}
	return nil
}

// SetEndpointFailing records that an endpoint's current run of failures
// began at *since, unless a run is recorded already (the earliest start
// stays); a nil since ends the run (a delivery succeeded). It reports
// whether it changed the row.
func (db *DB) SetEndpointFailing(ctx context.Context, id string, since *time.Time) (bool, error) {
	var n int64
	var err error
	if since == nil {
		n, err = db.c.execN(ctx, `UPDATE endpoints SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL`, id)
	} else {
		n, err = db.c.execN(ctx, `UPDATE endpoints SET failing_since = ? WHERE id = ? AND failing_since IS NULL`,
			db.c.ts(*since), id)
	}
	if err != nil {
		return false, fmt.Errorf("setting endpoint %s failing: %w", id, err)
	}
	return n > 0, nil
}

// AutoDisableEndpoint disables an enabled endpoint with reason, in one
// transaction with everything that follows from it: its pending
// deliveries become failed (last error "endpoint_disabled: <reason>", so
// operators can retry them once the endpoint is enabled again), and, when
// notify is not nil, the event notify builds from the disabled endpoint
// (secrets in clear: notify must leave them out) is stored with its
// deliveries (InsertEvent: the outbox). It returns the disabled endpoint
// and the event's deliveries, or a nil endpoint when the endpoint was not
// enabled (already disabled by another worker or an operator).
func (db *DB) AutoDisableEndpoint(ctx context.Context, id, reason string, at time.Time, notify func(e *hub.Endpoint) (*hub.Event, error)) (*hub.Endpoint, []*hub.Delivery, error) {
	var ep *hub.Endpoint
	var out []*hub.Delivery
	err := db.inTx(ctx, func(tx *Tx) error {
		e, err := scanOne(ctx, tx.c, `SELECT `+endpointCols+` FROM endpoints WHERE id = ?`+tx.c.forUpdate(),
			[]any{id}, tx.c.scanEndpoint)
		if err != nil {
			return err
		}
		if !e.Enabled {
			return nil
		}
		e.Enabled, e.DisabledReason = false, reason
		if _, err := tx.c.exec(ctx, `UPDATE endpoints SET enabled = ?, disabled_reason = ? WHERE id = ?`,
			false, reason, id); err != nil {
			return err
		}
		if _, err := tx.c.exec(ctx, `UPDATE deliveries SET status = ?, next_attempt_at = NULL, last_error = ?,
			updated_at = ? WHERE endpoint_id = ? AND status = ?`,
			hub.DeliveryFailed, "endpoint_disabled: "+reason, tx.c.ts(at), id, hub.DeliveryPending); err != nil {
			return err
		}
		ep = e
		if notify == nil {
			return nil
		}
		evt, err := notify(e)
		if err != nil {
			return err
		}
		out, err = tx.InsertEvent(ctx, evt)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("disabling endpoint %s: %w", id, err)
	}
	return ep, out, nil
}

// deliveryTargetsSQL loads deliveries with their events and endpoints;
// the condition on d.id follows.
const deliveryTargetsSQL = `SELECT d.id, d.program_id, d.event_id, d.endpoint_id, d.event_type, d.status,
		d.attempts, d.next_attempt_at, d.last_error, d.created_at, d.updated_at,
		e.id, e.program_id, e.type, e.partner_id, e.data, e.created_at,
		p.id, p.program_id, p.url, p.description, p.event_types, p.partner_id, p.secret, p.enabled, p.created_at,
		p.settings, p.previous_secret, p.previous_secret_until, p.disabled_reason, p.failing_since
		FROM deliveries d JOIN events e ON e.id = d.event_id JOIN endpoints p ON p.id = d.endpoint_id
		WHERE `

// DeliveryTargets is DeliveryTarget for several deliveries in one query:
// for each id, the delivery, its event and its endpoint (secrets in
// clear), at the same index; nils where the delivery is gone.
func (db *DB) DeliveryTargets(ctx context.Context, ids []string) ([]*hub.Delivery, []*hub.Event, []*hub.Endpoint, error) {
	ds := make([]*hub.Delivery, len(ids))
	es := make([]*hub.Event, len(ids))
	eps := make([]*hub.Endpoint, len(ids))
	if len(ids) == 0 {
		return ds, es, eps, nil
	}
	uniq, at := indexIDs(ids)
	// Secrets are decrypted once per endpoint, however many of its
	// deliveries the batch holds.
	opened := map[string]string{}
	open := func(sealed string) (string, error) {
		if p, ok := opened[sealed]; ok {
			return p, nil
		}
		p, err := db.c.open(sealed)
		if err == nil {
			opened[sealed] = p
		}
		return p, err
	}
	where, args := db.c.idIn("d.id", uniq)
	rows, err := db.hot.query(ctx, deliveryTargetsSQL+where, args...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("loading deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d hub.Delivery
		var e hub.Event
		var p hub.Endpoint
		var secret, prev string
		if err := rows.Scan(&d.ID, &d.ProgramID, &d.EventID, &d.EndpointID, &d.EventType, &d.Status,
			&d.Attempts, nullTimeCol{&d.NextAttemptAt}, &d.LastError, timeCol{&d.CreatedAt}, timeCol{&d.UpdatedAt},
			&e.ID, &e.ProgramID, &e.Type, strCol{&e.PartnerID}, rawCol{&e.Data}, timeCol{&e.CreatedAt},
			&p.ID, &p.ProgramID, &p.URL, &p.Description, jsonCol{&p.EventTypes}, strCol{&p.PartnerID}, &secret,
			&p.Enabled, timeCol{&p.CreatedAt}, jsonCol{&p.EndpointSettings}, &prev, nullTimeCol{&p.PreviousSecretUntil},
			&p.DisabledReason, nullTimeCol{&p.FailingSince}); err != nil {
			return nil, nil, nil, fmt.Errorf("loading deliveries: %w", err)
		}
		if p.Secret, err = open(secret); err != nil {
			return nil, nil, nil, fmt.Errorf("loading endpoint %s: %w", p.ID, err)
		}
		if p.PreviousSecret, err = open(prev); err != nil {
			return nil, nil, nil, fmt.Errorf("loading endpoint %s: %w", p.ID, err)
		}
		for k, i := range at[d.ID] {
			if k == 0 {
				ds[i], es[i], eps[i] = &d, &e, &p
				continue
			}
			// The same id twice: each caller gets its own copies.
			dc, ec, pc := d, e, p
			ds[i], es[i], eps[i] = &dc, &ec, &pc
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("loading deliveries: %w", db.c.classify(err))
	}
	return ds, es, eps, nil
}

// DeliveryEndpoints loads endpoints by id in one query, with their secrets
// in clear, at the indexes of ids (an id given twice gets two copies);
// nil where an endpoint is gone. It is what a delivery's first attempt
// reads when the process that wrote the delivery still holds it and its
// event.
func (db *DB) DeliveryEndpoints(ctx context.Context, ids []string) ([]*hub.Endpoint, error) {
	out := make([]*hub.Endpoint, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	uniq, at := indexIDs(ids)
	where, args := db.c.idIn("id", uniq)
	eps, err := list(ctx, db.hot, `SELECT `+endpointCols+` FROM endpoints WHERE `+where, args, db.c.scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("loading endpoints: %w", err)
	}
	for _, ep := range eps {
		for k, i := range at[ep.ID] {
			if k == 0 {
				out[i] = ep
				continue
			}
			c := *ep
			out[i] = &c
		}
	}
	return out, nil
}

// indexIDs returns ids without repeats, in first-seen order, and the
// indexes at which each id appears in ids.
func indexIDs(ids []string) ([]string, map[string][]int) {
	at := make(map[string][]int, len(ids))
	uniq := make([]string, 0, len(ids))
	for i, id := range ids {
		if _, ok := at[id]; !ok {
			uniq = append(uniq, id)
		}
		at[id] = append(at[id], i)
	}
	return uniq, at
}
