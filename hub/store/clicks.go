package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/partnerhub/partnerhub/hub"
)

var _ hub.ClickStore = (*DB)(nil)

const clickCols = `id, program_id, partner_id, visitor_id, landing_url, destination, referrer, ip_hash, ua_hash, created_at`

func scanClick(r scanner) (*hub.Click, error) {
	var c hub.Click
	err := r.Scan(&c.ID, &c.ProgramID, &c.PartnerID, &c.VisitorID, &c.LandingURL, &c.Destination,
		&c.Referrer, &c.IPHash, &c.UAHash, timeCol{&c.CreatedAt})
	return &c, err
}

// InsertClicks stores clicks in one multi-row INSERT; ids that exist are
// skipped.
func (db *DB) InsertClicks(ctx context.Context, cs []*hub.Click) error {
	if len(cs) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO clicks (` + clickCols + `) VALUES `)
	args := make([]any, 0, len(cs)*10)
	for i, c := range cs {
		if c.ID == "" {
			c.ID = hub.NewID("clk")
		}
		c.ProgramID = defaultProgram(c.ProgramID)
		if c.CreatedAt.IsZero() {
			c.CreatedAt = db.c.nowUTC()
		}
		c.CreatedAt = normTime(c.CreatedAt)
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
		args = append(args, c.ID, c.ProgramID, c.PartnerID, c.VisitorID, c.LandingURL, c.Destination,
			c.Referrer, c.IPHash, c.UAHash, db.c.ts(c.CreatedAt))
	}
	b.WriteString(" ON CONFLICT (id) DO NOTHING")
	if _, err := db.c.exec(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("inserting %d clicks: %w", len(cs), err)
	}
	return nil
}

// ListClicks lists a program's clicks, newest first.
func (db *DB) ListClicks(ctx context.Context, programID string, f hub.Filter, p hub.Page) ([]*hub.Click, error) {
	var w cond
	w.and("program_id = ?", programID)
	if f.PartnerID != "" {
		w.and("partner_id = ?", f.PartnerID)
	}
	if !f.Since.IsZero() {
		w.and("created_at >= ?", db.c.ts(f.Since))
	}
	if !f.Until.IsZero() {
		w.and("created_at < ?", db.c.ts(f.Until))
	}
	out, err := list(ctx, db.c, `SELECT `+clickCols+` FROM clicks`+w.page(p, "id"), w.args, scanClick)
	if err != nil {
		return nil, fmt.Errorf("listing clicks: %w", err)
	}
	return out, nil
}

// VisitorClicks returns the click with id clickID and every other click of
// its visitor, oldest first; none when the click is unknown.
func (tx *Tx) VisitorClicks(ctx context.Context, programID, clickID string) ([]*hub.Click, error) {
	out, err := list(ctx, tx.c, `SELECT `+clickCols+` FROM clicks WHERE program_id = ? AND (id = ? OR visitor_id IN (
		SELECT visitor_id FROM clicks WHERE program_id = ? AND id = ? AND visitor_id <> '')) ORDER BY created_at, id`,
		[]any{programID, clickID, programID, clickID}, scanClick)
	if err != nil {
		return nil, fmt.Errorf("finding clicks of %s: %w", clickID, err)
	}
	return out, nil
}
