package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// InsertInboundEvent stores ev unless (source_id, dedupe_key) exists. It
// returns the stored row (ev itself when inserted, the first row
// otherwise) and whether this call inserted it. ID, ProgramID (the default
// program), Status (received) and ReceivedAt are filled when empty.
func (db *DB) InsertInboundEvent(ctx context.Context, ev *hub.InboundEvent) (*hub.InboundEvent, bool, error) {
	stored, inserted, err := db.InsertInboundEvents(ctx, []*hub.InboundEvent{ev})
	if err != nil {
		return nil, false, err
	}
	return stored[0], inserted[0], nil
}

// maxInboundBatch bounds the rows of one multi-row insert (13 parameters
// each, well under both dialects' limits).
const maxInboundBatch = 256

// InsertInboundEvents stores several events in one statement, so that
// concurrent webhooks share one commit. For each event it returns the
// stored row and whether it was inserted, as InsertInboundEvent does; an
// event repeating an earlier one of the same batch is a duplicate of it.
func (db *DB) InsertInboundEvents(ctx context.Context, evs []*hub.InboundEvent) ([]*hub.InboundEvent, []bool, error) {
	stored := make([]*hub.InboundEvent, len(evs))
	inserted := make([]bool, len(evs))
	for start := 0; start < len(evs); start += maxInboundBatch {
		end := min(start+maxInboundBatch, len(evs))
		if err := db.insertInboundBatch(ctx, evs[start:end], stored[start:end], inserted[start:end]); err != nil {
			return nil, nil, err
		}
	}
	return stored, inserted, nil
}

func (db *DB) insertInboundBatch(ctx context.Context, evs, stored []*hub.InboundEvent, inserted []bool) error {
	type key struct{ source, dedupe string }
	first := make(map[key]int, len(evs)) // the batch's own duplicates
	var rowsOf []*hub.InboundEvent
	headersOf := make([]string, 0, len(evs))
	for i, ev := range evs {
		if ev.ID == "" {
			ev.ID = hub.NewID("inb")
		}
		ev.ProgramID = defaultProgram(ev.ProgramID)
		if ev.Status == "" {
			ev.Status = hub.InboundReceived
		}
		if ev.ReceivedAt.IsZero() {
			ev.ReceivedAt = db.c.nowUTC()
		}
		ev.ReceivedAt = normTime(ev.ReceivedAt)
		ev.ProcessedAt = normTimePtr(ev.ProcessedAt)
		if ev.Body == nil {
			ev.Body = []byte{}
		}
		k := key{ev.SourceID, ev.DedupeKey}
		if _, dup := first[k]; dup {
			continue
		}
		first[k] = i
		headers, err := jsonText(ev.Headers)
		if err != nil {
			return fmt.Errorf("storing inbound event %s: %w", ev.DedupeKey, err)
		}
		rowsOf = append(rowsOf, ev)
		headersOf = append(headersOf, headers)
	}
	rows := len(rowsOf)
	const cols = `(id, program_id, source_id, provider, dedupe_key, event_type, headers, body, status, attempts, last_error, received_at, processed_at)`
	var query string
	var args []any
	if db.c.pg {
		// The rows travel as arrays: one statement text (one prepared
		// statement per connection) for any batch size.
		ids, programs, sources, providers, dedupes, types, statuses, lastErrors :=
			make([]string, rows), make([]string, rows), make([]string, rows), make([]string, rows),
			make([]string, rows), make([]string, rows), make([]string, rows), make([]string, rows)
		bodies := make([][]byte, rows)
		attempts := make([]int32, rows)
		received, processed := make([]time.Time, rows), make([]*time.Time, rows)
		for i, ev := range rowsOf {
			ids[i], programs[i], sources[i], providers[i], dedupes[i], types[i], statuses[i], lastErrors[i] =
				ev.ID, ev.ProgramID, ev.SourceID, ev.Provider, ev.DedupeKey, ev.EventType, ev.Status, ev.LastError
			bodies[i], attempts[i], received[i], processed[i] = ev.Body, int32(ev.Attempts), ev.ReceivedAt, ev.ProcessedAt
		}
		query = `INSERT INTO inbound_events ` + cols + `
			SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bytea[],
				?::text[], ?::int[], ?::text[], ?::timestamptz[], ?::timestamptz[])
			ON CONFLICT (source_id, dedupe_key) DO NOTHING RETURNING id`
		args = []any{ids, programs, sources, providers, dedupes, types, headersOf, bodies, statuses, attempts, lastErrors, received, processed}
	} else {
		args = make([]any, 0, 13*rows)
		for i, ev := range rowsOf {
			args = append(args, ev.ID, ev.ProgramID, ev.SourceID, ev.Provider, ev.DedupeKey, ev.EventType, headersOf[i], ev.Body,
				ev.Status, ev.Attempts, ev.LastError, db.c.ts(ev.ReceivedAt), db.c.nullTS(ev.ProcessedAt))
		}
		query = `INSERT INTO inbound_events ` + cols + ` VALUES ` + valueRows(rows, 13) + ` ON CONFLICT (source_id, dedupe_key) DO NOTHING RETURNING id`
	}
	r, err := db.c.query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("storing %d inbound events: %w", rows, err)
	}
	ids := make(map[string]bool, rows)
	for r.Next() {
		var id string
		if err := r.Scan(&id); err != nil {
			r.Close()
			return fmt.Errorf("storing %d inbound events: %w", rows, db.c.classify(err))
		}
		ids[id] = true
	}
	if err := r.Close(); err != nil {
		return fmt.Errorf("storing %d inbound events: %w", rows, db.c.classify(err))
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("storing %d inbound events: %w", rows, db.c.classify(err))
	}
	for i, ev := range evs {
		k := key{ev.SourceID, ev.DedupeKey}
		j := first[k]
		switch {
		case j != i: // a repeat inside the batch: filled below, from its first
		case ids[ev.ID]:
			stored[i], inserted[i] = ev, true
		default:
			old, err := scanOne(ctx, db.c, `SELECT `+inboundCols+` FROM inbound_events WHERE source_id = ? AND dedupe_key = ?`,
				[]any{ev.SourceID, ev.DedupeKey}, scanInbound)
			if err != nil {
				return fmt.Errorf("reading duplicate inbound event %s: %w", ev.DedupeKey, err)
			}
			stored[i] = old
		}
	}
	for i, ev := range evs {
		if j := first[key{ev.SourceID, ev.DedupeKey}]; j != i {
			stored[i] = stored[j]
		}
	}
	return nil
}

const inboundSummaryCols = `id, program_id, source_id, provider, dedupe_key, event_type, headers,
	status, attempts, last_error, received_at, processed_at, body_purged_at`

const inboundCols = inboundSummaryCols + `, body`

func scanInboundSummary(r scanner) (*hub.InboundEvent, error) {
	var ev hub.InboundEvent
	err := r.Scan(&ev.ID, &ev.ProgramID, &ev.SourceID, &ev.Provider, &ev.DedupeKey, &ev.EventType,
		jsonCol{&ev.Headers}, &ev.Status, &ev.Attempts, &ev.LastError,
		timeCol{&ev.ReceivedAt}, nullTimeCol{&ev.ProcessedAt}, nullTimeCol{&ev.BodyPurgedAt})
	return &ev, err
}

func scanInbound(r scanner) (*hub.InboundEvent, error) {
	var ev hub.InboundEvent
	err := r.Scan(&ev.ID, &ev.ProgramID, &ev.SourceID, &ev.Provider, &ev.DedupeKey, &ev.EventType,
		jsonCol{&ev.Headers}, &ev.Status, &ev.Attempts, &ev.LastError,
		timeCol{&ev.ReceivedAt}, nullTimeCol{&ev.ProcessedAt}, nullTimeCol{&ev.BodyPurgedAt}, &ev.Body)
	return &ev, err
}

// GetInboundEvent returns an inbound event with its body.
func (db *DB) GetInboundEvent(ctx context.Context, id string) (*hub.InboundEvent, error) {
	ev, err := scanOne(ctx, db.c, `SELECT `+inboundCols+` FROM inbound_events WHERE id = ?`, []any{id}, scanInbound)
	if err != nil {
		return nil, fmt.Errorf("getting inbound event %s: %w", id, err)
	}
	return ev, nil
}

// ListInboundEvents lists a program's inbound events, newest first,
// without their bodies (GetInboundEvent has them). Filter.Status and
// Since/Until (on received_at) apply.
func (db *DB) ListInboundEvents(ctx context.Context, programID string, f hub.Filter, p hub.Page) ([]*hub.InboundEvent, error) {
	var w cond
	w.and("program_id = ?", programID)
	w.filter(db.c, f, "status", "", "received_at")
	out, err := list(ctx, db.c, `SELECT `+inboundSummaryCols+` FROM inbound_events`+w.page(p, "id"), w.args, scanInboundSummary)
	if err != nil {
		return nil, fmt.Errorf("listing inbound events: %w", err)
	}
	return out, nil
}

// MarkInboundAttempt increments attempts and records lastErr, leaving the
// status as it is.
func (db *DB) MarkInboundAttempt(ctx context.Context, id, lastErr string) error {
	n, err := db.c.execN(ctx, `UPDATE inbound_events SET attempts = attempts + 1, last_error = ? WHERE id = ?`, lastErr, id)
	if err != nil {
		return fmt.Errorf("marking inbound event %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("marking inbound event %s: %w", id, hub.ErrNotFound)
	}
	return nil
}

// InboundDue lists IDs of received events that arrived before before,
// oldest first. limit 0 means 100.
func (db *DB) InboundDue(ctx context.Context, before time.Time, limit int) ([]string, error) {
	q := fmt.Sprintf(`SELECT id FROM inbound_events WHERE status = ? AND received_at < ?
		ORDER BY received_at, id LIMIT %d`, dueLimit(limit))
	out, err := list(ctx, db.c, q, []any{hub.InboundReceived, db.c.ts(before)}, func(s scanner) (string, error) {
		var id string
		return id, s.Scan(&id)
	})
	if err != nil {
		return nil, fmt.Errorf("listing due inbound events: %w", err)
	}
	return out, nil
}

// RecordInboundResults records the conversions and refunds an inbound
// event created or changed, when the transaction commits. Results already
// recorded (a reprocessed event) are kept.
func (tx *Tx) RecordInboundResults(ctx context.Context, id string, conversionIDs, refundIDs []string) error {
	for _, rid := range conversionIDs {
		tx.later.results = append(tx.later.results, inboundResult{id, hub.ResultConversion, rid})
	}
	for _, rid := range refundIDs {
		tx.later.results = append(tx.later.results, inboundResult{id, hub.ResultRefund, rid})
	}
	return nil
}

// InboundResults lists the conversions and refunds an inbound event
// produced, in id order.
func (db *DB) InboundResults(ctx context.Context, id string) (*hub.InboundResults, error) {
	type row struct{ kind, id string }
	rows, err := list(ctx, db.c, `SELECT kind, result_id FROM inbound_results WHERE inbound_event_id = ? ORDER BY kind, result_id`,
		[]any{id}, func(s scanner) (row, error) {
			var r row
			return r, s.Scan(&r.kind, &r.id)
		})
	if err != nil {
		return nil, fmt.Errorf("listing results of inbound event %s: %w", id, err)
	}
	out := &hub.InboundResults{ConversionIDs: []string{}, RefundIDs: []string{}}
	for _, r := range rows {
		switch r.kind {
		case hub.ResultConversion:
			out.ConversionIDs = append(out.ConversionIDs, r.id)
		case hub.ResultRefund:
			out.RefundIDs = append(out.RefundIDs, r.id)
		}
	}
	return out, nil
}

// reprocessable are the statuses an event may be reprocessed from.
var reprocessable = []any{hub.InboundProcessed, hub.InboundIgnored, hub.InboundFailed}

// ReprocessInbound makes a finished inbound event received again, with no
// attempts, error or processed time, and returns it without its body. A
// received event is returned as it is. It fails with ECONFLICT when
// retention purged the body.
func (db *DB) ReprocessInbound(ctx context.Context, id string) (*hub.InboundEvent, error) {
	_, err := db.c.exec(ctx, `UPDATE inbound_events SET status = ?, attempts = 0, last_error = '', processed_at = NULL
		WHERE id = ? AND body_purged_at IS NULL AND status IN (?, ?, ?)`,
		append([]any{hub.InboundReceived, id}, reprocessable...)...)
	if err != nil {
		return nil, fmt.Errorf("reprocessing inbound event %s: %w", id, err)
	}
	ev, err := scanOne(ctx, db.c, `SELECT `+inboundSummaryCols+` FROM inbound_events WHERE id = ?`, []any{id}, scanInboundSummary)
	if err != nil {
		return nil, fmt.Errorf("reprocessing inbound event %s: %w", id, err)
	}
	if ev.BodyPurgedAt != nil && ev.Status != hub.InboundReceived {
		return nil, hub.Errorf(hub.ECONFLICT, "inbound event %s cannot be reprocessed: its raw body was purged by retention", id)
	}
	return ev, nil
}

// ReprocessInboundBatch makes received again, in id order, up to limit
// events of the program that match sel, whose id is greater than after and
// whose body is kept, and returns their ids. sel.Status must be failed,
// ignored, processed or received; received events are only listed.
func (db *DB) ReprocessInboundBatch(ctx context.Context, programID string, sel hub.InboundSelector, after string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 100
	}
	if !slices.Contains(reprocessable, any(sel.Status)) && sel.Status != hub.InboundReceived {
		return nil, hub.Errorf(hub.EINVALID, "cannot reprocess events in status %q", sel.Status)
	}
	var w cond
	w.and("program_id = ?", programID)
	w.and("status = ?", sel.Status)
	w.and("body_purged_at IS NULL")
	if sel.Provider != "" {
		w.and("provider = ?", sel.Provider)
	}
	if sel.SourceID != "" {
		w.and("source_id = ?", sel.SourceID)
	}
	w.filter(db.c, hub.Filter{Since: sel.Since, Until: sel.Until}, "", "", "received_at")
	if after != "" {
		w.and("id > ?", after)
	}
	pick := fmt.Sprintf(`SELECT id FROM inbound_events%s ORDER BY id LIMIT %d`, w.where(), limit)
	q, args := pick, w.args
	if sel.Status != hub.InboundReceived {
		q = `UPDATE inbound_events SET status = ?, attempts = 0, last_error = '', processed_at = NULL
			WHERE id IN (` + pick + `) AND status = ? RETURNING id`
		args = append(append([]any{hub.InboundReceived}, w.args...), sel.Status)
	}
	ids, err := list(ctx, db.c, q, args, func(s scanner) (string, error) {
		var id string
		return id, s.Scan(&id)
	})
	if err != nil {
		return nil, fmt.Errorf("reprocessing inbound events: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}
