package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

var (
	_ hub.LedgerStore = (*DB)(nil)
	_ hub.LedgerTx    = (*Tx)(nil)
)

// InLedgerTx runs fn in one transaction (see InTx).
func (db *DB) InLedgerTx(ctx context.Context, fn func(tx hub.LedgerTx) error) error {
	return db.inTx(ctx, func(tx *Tx) error { return fn(tx) })
}

// DueCommissions lists the ids of pending, non-test commissions whose hold
// ended at or before t, in id order after afterID. limit 0 means 100.
func (db *DB) DueCommissions(ctx context.Context, t time.Time, afterID string, limit int) ([]string, error) {
	q := fmt.Sprintf(`SELECT id FROM commissions WHERE status = ? AND test = ? AND hold_until <= ? AND id > ?
		ORDER BY id LIMIT %d`, dueLimit(limit))
	out, err := list(ctx, db.c, q, []any{hub.CommissionPending, false, db.c.ts(t), afterID},
		func(s scanner) (string, error) {
			var id string
			return id, s.Scan(&id)
		})
	if err != nil {
		return nil, fmt.Errorf("listing commissions due for approval: %w", err)
	}
	return out, nil
}

// LockCommission returns a commission with its entries and NetMinor,
// locked FOR UPDATE on PostgreSQL.
func (tx *Tx) LockCommission(ctx context.Context, id string) (*hub.Commission, error) {
	c, err := scanOne(ctx, tx.c, `SELECT `+commissionCols+` FROM commissions WHERE id = ?`+tx.c.forUpdate(),
		[]any{id}, scanCommission)
	if err == nil {
		err = tx.c.fillCommissions(ctx, []*hub.Commission{c})
	}
	if err != nil {
		return nil, fmt.Errorf("locking commission %s: %w", id, err)
	}
	return c, nil
}

// SetCommissionStatus saves a commission's status.
func (tx *Tx) SetCommissionStatus(ctx context.Context, id, status string) error {
	n, err := tx.c.execN(ctx, `UPDATE commissions SET status = ? WHERE id = ?`, status, id)
	if err == nil && n == 0 {
		err = hub.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("setting commission %s %s: %w", id, status, err)
	}
	return nil
}

// BookEntry inserts e, marked paid by payoutID ("" for unpaid), unless
// (commission_id, key) exists, and reports whether it inserted. ID,
// ProgramID (the commission's) and CreatedAt are filled when empty.
func (tx *Tx) BookEntry(ctx context.Context, e *hub.LedgerEntry, payoutID string) (bool, error) {
	if e.ID == "" {
		e.ID = hub.NewID("ent")
	}
	if e.ProgramID == "" {
		err := tx.c.get(ctx, `SELECT program_id FROM commissions WHERE id = ?`, []any{e.CommissionID}, &e.ProgramID)
		if err != nil {
			return false, fmt.Errorf("booking ledger entry %s: reading commission %s: %w", e.Key, e.CommissionID, notFound(err))
		}
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = tx.c.nowUTC()
	}
	e.CreatedAt = normTime(e.CreatedAt)
	n, err := tx.c.execN(ctx, `INSERT INTO ledger_entries
		(id, program_id, commission_id, key, type, amount_minor, currency, created_at, payout_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (commission_id, key) DO NOTHING`,
		e.ID, e.ProgramID, e.CommissionID, e.Key, e.Type, e.AmountMinor, e.Currency, tx.c.ts(e.CreatedAt), nullStr(payoutID))
	if err != nil {
		return false, fmt.Errorf("booking ledger entry %s: %w", e.Key, err)
	}
	return n == 1, nil
}

// PayableEntries lists the program's unpaid entries of approved, paid and
// void, non-test commissions, in entry order. A void commission's entries
// net to what is left to settle: zero when it was never paid, a negative
// amount to carry when it was.
func (tx *Tx) PayableEntries(ctx context.Context, programID string) ([]hub.PayableEntry, error) {
	out, err := list(ctx, tx.c, `SELECT e.id, e.commission_id, c.partner_id, e.currency, e.amount_minor
		FROM ledger_entries e JOIN commissions c ON c.id = e.commission_id
		WHERE e.program_id = ? AND e.payout_id IS NULL AND c.status IN (?, ?, ?) AND c.test = ?
		ORDER BY e.id`, []any{programID, hub.CommissionApproved, hub.CommissionPaid, hub.CommissionVoid, false},
		func(s scanner) (hub.PayableEntry, error) {
			var e hub.PayableEntry
			err := s.Scan(&e.EntryID, &e.CommissionID, &e.PartnerID, &e.Currency, &e.AmountMinor)
			return e, err
		})
	if err != nil {
		return nil, fmt.Errorf("listing payable entries: %w", err)
	}
	return out, nil
}

// InsertPayout stores a run, its lines and the entries it pins.
func (tx *Tx) InsertPayout(ctx context.Context, p *hub.Payout, entryIDs []string) error {
	p.ProgramID = defaultProgram(p.ProgramID)
	if p.CreatedAt.IsZero() {
		p.CreatedAt = tx.c.nowUTC()
	}
	p.CreatedAt = normTime(p.CreatedAt)
	_, err := tx.c.exec(ctx, `INSERT INTO payouts (id, program_id, status, created_by, confirmed_by, created_at, confirmed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.ProgramID, p.Status, p.CreatedBy, p.ConfirmedBy, tx.c.ts(p.CreatedAt), tx.c.nullTS(p.ConfirmedAt))
	if err != nil {
		return fmt.Errorf("inserting payout %s: %w", p.ID, err)
	}
	for _, l := range p.Lines {
		_, err := tx.c.exec(ctx, `INSERT INTO payout_lines
			(payout_id, partner_id, currency, program_id, amount_minor, entry_count, commission_count)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			p.ID, l.PartnerID, l.Currency, p.ProgramID, l.AmountMinor, l.EntryCount, l.CommissionCount)
		if err != nil {
			return fmt.Errorf("inserting payout %s line %s %s: %w", p.ID, l.PartnerID, l.Currency, err)
		}
	}
	const batch = 200
	for i := 0; i < len(entryIDs); i += batch {
		ids := entryIDs[i:min(i+batch, len(entryIDs))]
		args := make([]any, 0, 2*len(ids))
		q := `INSERT INTO payout_entries (payout_id, entry_id) VALUES `
		for j, id := range ids {
			if j > 0 {
				q += ", "
			}
			q += "(?, ?)"
			args = append(args, p.ID, id)
		}
		if _, err := tx.c.exec(ctx, q, args...); err != nil {
			return fmt.Errorf("pinning entries of payout %s: %w", p.ID, err)
		}
	}
	return nil
}

const payoutCols = `id, program_id, status, created_by, confirmed_by, created_at, confirmed_at`

func scanPayout(r scanner) (*hub.Payout, error) {
	var p hub.Payout
	err := r.Scan(&p.ID, &p.ProgramID, &p.Status, &p.CreatedBy, &p.ConfirmedBy, timeCol{&p.CreatedAt}, nullTimeCol{&p.ConfirmedAt})
	return &p, err
}

// LockPayout returns a run without its lines, locked FOR UPDATE on
// PostgreSQL.
func (tx *Tx) LockPayout(ctx context.Context, programID, id string) (*hub.Payout, error) {
	p, err := scanOne(ctx, tx.c, `SELECT `+payoutCols+` FROM payouts WHERE program_id = ? AND id = ?`+tx.c.forUpdate(),
		[]any{programID, id}, scanPayout)
	if err != nil {
		return nil, fmt.Errorf("locking payout %s: %w", id, err)
	}
	return p, nil
}

// PayEntries marks the entries the run pinned with its id. It fails with
// ECONFLICT when another run paid one of them already (two drafts pinned
// the same entries and the other was confirmed first).
func (tx *Tx) PayEntries(ctx context.Context, payoutID string) error {
	var other string
	err := tx.c.get(ctx, `SELECT e.payout_id FROM payout_entries pe JOIN ledger_entries e ON e.id = pe.entry_id
		WHERE pe.payout_id = ? AND e.payout_id IS NOT NULL AND e.payout_id <> ? LIMIT 1`,
		[]any{payoutID, payoutID}, &other)
	if err == nil {
		return hub.Errorf(hub.ECONFLICT, "payout %s pays entries that payout %s paid already: draft a new payout run", payoutID, other)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("paying entries of payout %s: %w", payoutID, err)
	}
	_, err = tx.c.exec(ctx, `UPDATE ledger_entries SET payout_id = ?
		WHERE payout_id IS NULL AND id IN (SELECT entry_id FROM payout_entries WHERE payout_id = ?)`, payoutID, payoutID)
	if err != nil {
		return fmt.Errorf("paying entries of payout %s: %w", payoutID, err)
	}
	// A run confirmed concurrently may have taken some of the pinned
	// entries between the check above and the update (the update skips
	// rows it no longer finds unpaid): every pinned entry must now be this
	// run's, or the transaction is rolled back.
	var pinned, mine int64
	if err := tx.c.get(ctx, `SELECT count(*) FROM payout_entries WHERE payout_id = ?`, []any{payoutID}, &pinned); err != nil {
		return fmt.Errorf("paying entries of payout %s: %w", payoutID, err)
	}
	if err := tx.c.get(ctx, `SELECT count(*) FROM ledger_entries WHERE payout_id = ?`, []any{payoutID}, &mine); err != nil {
		return fmt.Errorf("paying entries of payout %s: %w", payoutID, err)
	}
	if mine != pinned {
		return hub.Errorf(hub.ECONFLICT, "payout %s pays entries that another payout paid at the same time: draft a new payout run", payoutID)
	}
	return nil
}

// SettledCommissions returns, locked FOR UPDATE on PostgreSQL and with
// their entries, the commissions with an entry paid by the run and no
// unpaid entry.
func (tx *Tx) SettledCommissions(ctx context.Context, payoutID string) ([]*hub.Commission, error) {
	out, err := list(ctx, tx.c, `SELECT `+commissionCols+` FROM commissions
		WHERE id IN (SELECT commission_id FROM ledger_entries WHERE payout_id = ?)
		AND NOT EXISTS (SELECT 1 FROM ledger_entries u WHERE u.commission_id = commissions.id AND u.payout_id IS NULL)
		ORDER BY id`+tx.c.forUpdate(), []any{payoutID}, scanCommission)
	if err == nil {
		err = tx.c.fillCommissions(ctx, out)
	}
	if err != nil {
		return nil, fmt.Errorf("listing commissions settled by payout %s: %w", payoutID, err)
	}
	return out, nil
}

// ConfirmPayout saves a run's status, confirmer and confirmation time.
func (tx *Tx) ConfirmPayout(ctx context.Context, p *hub.Payout) error {
	p.ConfirmedAt = normTimePtr(p.ConfirmedAt)
	_, err := tx.c.exec(ctx, `UPDATE payouts SET status = ?, confirmed_by = ?, confirmed_at = ? WHERE id = ?`,
		p.Status, p.ConfirmedBy, tx.c.nullTS(p.ConfirmedAt), p.ID)
	if err != nil {
		return fmt.Errorf("confirming payout %s: %w", p.ID, err)
	}
	return nil
}

// GetPayout returns a run with its lines.
func (db *DB) GetPayout(ctx context.Context, programID, id string) (*hub.Payout, error) {
	p, err := scanOne(ctx, db.c, `SELECT `+payoutCols+` FROM payouts WHERE program_id = ? AND id = ?`,
		[]any{programID, id}, scanPayout)
	if err == nil {
		err = db.c.fillPayoutLines(ctx, []*hub.Payout{p})
	}
	if err != nil {
		return nil, fmt.Errorf("getting payout %s: %w", id, err)
	}
	return p, nil
}

// ListPayouts lists a program's runs, newest first, with their lines.
func (db *DB) ListPayouts(ctx context.Context, programID string, p hub.Page) ([]*hub.Payout, error) {
	var w cond
	w.and("program_id = ?", programID)
	out, err := list(ctx, db.c, `SELECT `+payoutCols+` FROM payouts`+w.page(p, "id"), w.args, scanPayout)
	if err == nil {
		err = db.c.fillPayoutLines(ctx, out)
	}
	if err != nil {
		return nil, fmt.Errorf("listing payouts: %w", err)
	}
	return out, nil
}

// fillPayoutLines loads the lines of ps with their partners' names and
// emails.
func (c *conn) fillPayoutLines(ctx context.Context, ps []*hub.Payout) error {
	if len(ps) == 0 {
		return nil
	}
	byID := make(map[string]*hub.Payout, len(ps))
	args := make([]any, 0, len(ps))
	for _, p := range ps {
		byID[p.ID] = p
		p.Lines = nil
		args = append(args, p.ID)
	}
	type row struct {
		payoutID string
		line     hub.PayoutLine
	}
	rows, err := list(ctx, c, `SELECT l.payout_id, l.partner_id, p.name, p.email, l.currency, l.amount_minor,
		l.entry_count, l.commission_count
		FROM payout_lines l JOIN partners p ON p.id = l.partner_id
		WHERE l.payout_id IN (`+placeholders(len(ps))+`) ORDER BY l.payout_id, l.currency, l.partner_id`, args,
		func(s scanner) (row, error) {
			var r row
			err := s.Scan(&r.payoutID, &r.line.PartnerID, &r.line.PartnerName, &r.line.PartnerEmail, &r.line.Currency,
				&r.line.AmountMinor, &r.line.EntryCount, &r.line.CommissionCount)
			return r, err
		})
	if err != nil {
		return fmt.Errorf("loading payout lines: %w", err)
	}
	for _, r := range rows {
		p := byID[r.payoutID]
		p.Lines = append(p.Lines, r.line)
	}
	return nil
}
