package store

import (
	"context"
	"fmt"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

const commissionCols = `id, program_id, conversion_id, partner_id, status, rate_bps, currency, test, hold_until, created_at, terms`

func scanCommission(r scanner) (*hub.Commission, error) {
	var c hub.Commission
	err := r.Scan(&c.ID, &c.ProgramID, &c.ConversionID, &c.PartnerID, &c.Status, &c.RateBPS,
		&c.Currency, &c.Test, timeCol{&c.HoldUntil}, timeCol{&c.CreatedAt}, jsonCol{&c.Terms})
	return &c, err
}

// GetCommission returns the conversion's commission with its entries and
// NetMinor, or an error wrapping hub.ErrNotFound.
func (tx *Tx) GetCommission(ctx context.Context, conversionID string) (*hub.Commission, error) {
	c, err := scanOne(ctx, tx.c, `SELECT `+commissionCols+` FROM commissions WHERE conversion_id = ? AND status <> ?`,
		[]any{conversionID, hub.CommissionVoid}, scanCommission)
	if err == nil {
		err = tx.c.fillCommissions(ctx, []*hub.Commission{c})
	}
	if err != nil {
		return nil, fmt.Errorf("getting commission of conversion %s: %w", conversionID, err)
	}
	return c, nil
}

// InsertCommission inserts c, filling ID, ProgramID (the conversion's),
// Status (pending) and CreatedAt when empty, then c.Entries as InsertEntry
// does. A second commission for one conversion fails with ECONFLICT. The
// commission of a conversion this transaction created is kept pending
// (deferCommission): an error writing it comes from the transaction's
// next statement or its COMMIT.
func (tx *Tx) InsertCommission(ctx context.Context, c *hub.Commission) error {
	if c.ID == "" {
		c.ID = hub.NewID("com")
	}
	if c.ProgramID == "" {
		err := tx.c.get(ctx, `SELECT program_id FROM conversions WHERE id = ?`, []any{c.ConversionID}, &c.ProgramID)
		if err != nil {
			return fmt.Errorf("inserting commission %s: reading conversion %s: %w", c.ID, c.ConversionID, notFound(err))
		}
	}
	if c.Status == "" {
		c.Status = hub.CommissionPending
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = tx.c.nowUTC()
	}
	c.CreatedAt = normTime(c.CreatedAt)
	c.HoldUntil = normTime(c.HoldUntil)
	terms, err := jsonText(c.Terms)
	if err != nil {
		return fmt.Errorf("inserting commission %s: %w", c.ID, err)
	}
	for i := range c.Entries {
		e := &c.Entries[i]
		e.CommissionID = c.ID
		switch {
		case tx.c.pg: // the entries go in with the commission
			e.ProgramID = c.ProgramID
			tx.fillEntry(e)
		case e.ProgramID == "":
			e.ProgramID = c.ProgramID
		}
	}
	if tx.deferCommission(c, terms) {
		return nil
	}
	args := []any{c.ID, c.ProgramID, c.ConversionID, c.PartnerID, c.Status, c.RateBPS, c.Currency, c.Test,
		tx.c.ts(c.HoldUntil), tx.c.ts(c.CreatedAt), terms}
	insert := `INSERT INTO commissions (` + commissionCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	if tx.c.pg && len(c.Entries) > 0 {
		// On PostgreSQL the entries go in with the commission, in one
		// statement.
		n := len(c.Entries)
		ids, keys, types, currencies := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		amounts, created := make([]int64, n), make([]time.Time, n)
		for i := range c.Entries {
			e := &c.Entries[i]
			ids[i], keys[i], types[i], amounts[i], currencies[i], created[i] = e.ID, e.Key, e.Type, e.AmountMinor, e.Currency, e.CreatedAt
		}
		insert = `WITH com AS (` + insert + `)
			INSERT INTO ledger_entries (id, program_id, commission_id, key, type, amount_minor, currency, created_at)
			SELECT u.id, ?, ?, u.key, u.type, u.amount, u.currency, u.created
			FROM unnest(?::text[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::timestamptz[])
				AS u (id, key, type, amount, currency, created)
			ON CONFLICT (commission_id, key) DO NOTHING`
		args = append(args, c.ProgramID, c.ID, ids, keys, types, amounts, currencies, created)
	}
	_, err = tx.c.exec(ctx, insert, args...)
	if isConflict(err) {
		err = fmt.Errorf("%w: %w", hub.Errorf(hub.ECONFLICT, "conversion %s already has a commission", c.ConversionID), err)
	}
	if err != nil {
		return fmt.Errorf("inserting commission %s: %w", c.ID, err)
	}
	if tx.c.pg {
		return nil // the entries went in with it
	}
	for i := range c.Entries {
		if _, err := tx.InsertEntry(ctx, &c.Entries[i]); err != nil {
			return err
		}
	}
	return nil
}

// fillEntry fills an entry's ID and CreatedAt when empty.
func (tx *Tx) fillEntry(e *hub.LedgerEntry) {
	if e.ID == "" {
		e.ID = hub.NewID("ent")
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = tx.c.nowUTC()
	}
	e.CreatedAt = normTime(e.CreatedAt)
}

// InsertEntry inserts e unless (commission_id, key) exists, and reports
// whether it inserted. ID, ProgramID (the commission's) and CreatedAt are
// filled when empty.
func (tx *Tx) InsertEntry(ctx context.Context, e *hub.LedgerEntry) (bool, error) {
	if e.ProgramID == "" {
		err := tx.c.get(ctx, `SELECT program_id FROM commissions WHERE id = ?`, []any{e.CommissionID}, &e.ProgramID)
		if err != nil {
			return false, fmt.Errorf("inserting ledger entry %s: reading commission %s: %w", e.Key, e.CommissionID, notFound(err))
		}
	}
	tx.fillEntry(e)
	n, err := tx.c.execN(ctx, `INSERT INTO ledger_entries
		(id, program_id, commission_id, key, type, amount_minor, currency, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (commission_id, key) DO NOTHING`,
		e.ID, e.ProgramID, e.CommissionID, e.Key, e.Type, e.AmountMinor, e.Currency, tx.c.ts(e.CreatedAt))
	if err != nil {
		return false, fmt.Errorf("inserting ledger entry %s: %w", e.Key, err)
	}
	return n == 1, nil
}

// ListCommissions lists a program's commissions, newest first, with their
// entries and NetMinor. Filter.Status, PartnerID and Since/Until (on
// created_at) apply.
func (db *DB) ListCommissions(ctx context.Context, programID string, f hub.Filter, p hub.Page) ([]*hub.Commission, error) {
	var w cond
	w.and("program_id = ?", programID)
	w.filter(db.c, f, "status", "partner_id = ?", "created_at")
	out, err := list(ctx, db.c, `SELECT `+commissionCols+` FROM commissions`+w.page(p, "id"), w.args, scanCommission)
	if err == nil {
		err = db.c.fillCommissions(ctx, out)
	}
	if err != nil {
		return nil, fmt.Errorf("listing commissions: %w", err)
	}
	return out, nil
}

// fillCommissions loads the entries of cs, oldest first, and sums them.
func (c *conn) fillCommissions(ctx context.Context, cs []*hub.Commission) error {
	if len(cs) == 0 {
		return nil
	}
	byID := make(map[string]*hub.Commission, len(cs))
	args := make([]any, 0, len(cs))
	for _, cm := range cs {
		byID[cm.ID] = cm
		cm.Entries, cm.NetMinor = nil, 0
		args = append(args, cm.ID)
	}
	entries, err := list(ctx, c, `SELECT id, program_id, commission_id, key, type, amount_minor, currency, created_at
		FROM ledger_entries WHERE commission_id IN (`+placeholders(len(cs))+`)
		ORDER BY commission_id, created_at, id`, args, func(s scanner) (hub.LedgerEntry, error) {
		var e hub.LedgerEntry
		err := s.Scan(&e.ID, &e.ProgramID, &e.CommissionID, &e.Key, &e.Type, &e.AmountMinor, &e.Currency, timeCol{&e.CreatedAt})
		return e, err
	})
	if err != nil {
		return fmt.Errorf("loading ledger entries: %w", err)
	}
	for _, e := range entries {
		cm := byID[e.CommissionID]
		cm.Entries = append(cm.Entries, e)
		cm.NetMinor += e.AmountMinor
	}
	return nil
}

// UpdateCommissionTerms saves a commission's rate, terms and status, when
// a later event of its conversion changed what decides them.
func (tx *Tx) UpdateCommissionTerms(ctx context.Context, c *hub.Commission) error {
	terms, err := jsonText(c.Terms)
	if err != nil {
		return fmt.Errorf("updating commission %s: %w", c.ID, err)
	}
	n, err := tx.c.execN(ctx, `UPDATE commissions SET rate_bps = ?, terms = ?, status = ? WHERE id = ?`,
		c.RateBPS, terms, c.Status, c.ID)
	if err != nil {
		return fmt.Errorf("updating commission %s: %w", c.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("updating commission %s: %w", c.ID, hub.ErrNotFound)
	}
	return nil
}
