package store

import (
	"context"
	"fmt"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// InsertInboundEvent stores ev unless (source_id, dedupe_key) exists. It
// returns the stored row (ev itself when inserted, the first row
// otherwise) and whether this call inserted it. ID, ProgramID (the default
// program), Status (received) and ReceivedAt are filled when empty.
func (db *DB) InsertInboundEvent(ctx context.Context, ev *hub.InboundEvent) (*hub.InboundEvent, bool, error) {
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
	headers, err := jsonText(ev.Headers)
	if err != nil {
		return nil, false, fmt.Errorf("storing inbound event %s: %w", ev.DedupeKey, err)
	}
	body := ev.Body
	if body == nil {
		body = []byte{}
	}
	n, err := db.c.execN(ctx, `INSERT INTO inbound_events
		(id, program_id, source_id, provider, dedupe_key, event_type, headers, body, status, attempts, last_error, received_at, processed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (source_id, dedupe_key) DO NOTHING`,
		ev.ID, ev.ProgramID, ev.SourceID, ev.Provider, ev.DedupeKey, ev.EventType, headers, body,
		ev.Status, ev.Attempts, ev.LastError, db.c.ts(ev.ReceivedAt), db.c.nullTS(ev.ProcessedAt))
	if err != nil {
		return nil, false, fmt.Errorf("storing inbound event %s: %w", ev.DedupeKey, err)
	}
	if n == 1 {
		return ev, true, nil
	}
	old, err := scanOne(ctx, db.c, `SELECT `+inboundCols+` FROM inbound_events WHERE source_id = ? AND dedupe_key = ?`,
		[]any{ev.SourceID, ev.DedupeKey}, scanInbound)
	if err != nil {
		return nil, false, fmt.Errorf("reading duplicate inbound event %s: %w", ev.DedupeKey, err)
	}
	return old, false, nil
}

const inboundSummaryCols = `id, program_id, source_id, provider, dedupe_key, event_type, headers,
	status, attempts, last_error, received_at, processed_at`

const inboundCols = inboundSummaryCols + `, body`

func scanInboundSummary(r scanner) (*hub.InboundEvent, error) {
	var ev hub.InboundEvent
	err := r.Scan(&ev.ID, &ev.ProgramID, &ev.SourceID, &ev.Provider, &ev.DedupeKey, &ev.EventType,
		jsonCol{&ev.Headers}, &ev.Status, &ev.Attempts, &ev.LastError,
		timeCol{&ev.ReceivedAt}, nullTimeCol{&ev.ProcessedAt})
	return &ev, err
}

func scanInbound(r scanner) (*hub.InboundEvent, error) {
	var ev hub.InboundEvent
	err := r.Scan(&ev.ID, &ev.ProgramID, &ev.SourceID, &ev.Provider, &ev.DedupeKey, &ev.EventType,
		jsonCol{&ev.Headers}, &ev.Status, &ev.Attempts, &ev.LastError,
		timeCol{&ev.ReceivedAt}, nullTimeCol{&ev.ProcessedAt}, &ev.Body)
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
