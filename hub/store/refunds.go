package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/partnerhub/partnerhub/hub"
)

const refundCols = `id, program_id, source_id, conversion_id, provider, external_id, original_keys, kind,
	cumulative, amount_minor, base_minor, currency, status, occurred_at, created_at`

func scanRefund(r scanner) (*hub.Refund, error) {
	var f hub.Refund
	err := r.Scan(&f.ID, &f.ProgramID, &f.SourceID, strCol{&f.ConversionID}, &f.Provider, &f.ExternalID,
		jsonCol{&f.OriginalKeys}, &f.Kind, &f.Cumulative, &f.AmountMinor, &f.BaseMinor,
		&f.Currency, &f.Status, timeCol{&f.OccurredAt}, timeCol{&f.CreatedAt})
	return &f, err
}

// UpsertRefund inserts r, or, when (source, external_id, kind) exists,
// updates amount, base, status, conversion and occurred_at if r is not
// older than the stored row. An r without ConversionID keeps the stored
// conversion: a joined refund is never parked again. It returns the stored
// row and whether it changed: inserted, or its amount, base, status or
// conversion differ (a newer occurred_at alone is saved but is no change).
// ID, ProgramID (the default program) and CreatedAt are filled when empty.
func (tx *Tx) UpsertRefund(ctx context.Context, r *hub.Refund) (*hub.Refund, bool, error) {
	old, err := scanOne(ctx, tx.c, `SELECT `+refundCols+` FROM refunds
		WHERE source_id = ? AND external_id = ? AND kind = ?`+tx.c.forUpdate(),
		[]any{r.SourceID, r.ExternalID, r.Kind}, scanRefund)
	switch {
	case errors.Is(err, hub.ErrNotFound):
		inserted, err := tx.insertRefund(ctx, r)
		if err != nil {
			return nil, false, err
		}
		if inserted {
			tx.keepParked(r)
			return r, true, nil
		}
		// Another transaction inserted it first: update that row instead.
		old, err = scanOne(ctx, tx.c, `SELECT `+refundCols+` FROM refunds
			WHERE source_id = ? AND external_id = ? AND kind = ?`+tx.c.forUpdate(),
			[]any{r.SourceID, r.ExternalID, r.Kind}, scanRefund)
		if err != nil {
			return nil, false, fmt.Errorf("upserting refund %s: %w", r.ExternalID, err)
		}
	case err != nil:
		return nil, false, fmt.Errorf("upserting refund %s: %w", r.ExternalID, err)
	}
	if r.OccurredAt.Before(old.OccurredAt) {
		return old, false, nil
	}
	next := *old
	// Providers time events to the second, so two facts can tie: then a
	// running total never goes down and a settled status is never
	// replaced by an unsettled one.
	tie := normTime(r.OccurredAt).Equal(old.OccurredAt)
	staleTie := tie && ((r.Cumulative && r.AmountMinor < old.AmountMinor) || statusRank(r.Status) < statusRank(old.Status))
	if !staleTie {
		next.AmountMinor = r.AmountMinor
		next.BaseMinor = r.BaseMinor
		next.Status = r.Status
	}
	if r.ConversionID != "" {
		next.ConversionID = r.ConversionID
	}
	next.OccurredAt = normTime(r.OccurredAt)
	changed := next.AmountMinor != old.AmountMinor || !sameInt64(next.BaseMinor, old.BaseMinor) ||
		next.Status != old.Status || next.ConversionID != old.ConversionID
	if !changed && next.OccurredAt.Equal(old.OccurredAt) {
		return old, false, nil
	}
	_, err = tx.c.exec(ctx, `UPDATE refunds SET amount_minor = ?, base_minor = ?, status = ?, conversion_id = ?,
		occurred_at = ? WHERE id = ?`,
		next.AmountMinor, next.BaseMinor, next.Status, nullStr(next.ConversionID), tx.c.ts(next.OccurredAt), old.ID)
	if err != nil {
		return nil, false, fmt.Errorf("upserting refund %s: %w", r.ExternalID, err)
	}
	tx.keepParked(&next)
	return &next, changed, nil
}

// statusRank orders refund statuses for facts that tie in time: settled
// outcomes outrank states still waiting for one.
func statusRank(status string) int {
	switch status {
	case hub.RefundPending, hub.RefundAwaiting, hub.DisputeInquiry:
		return 0
	}
	return 1
}

// insertRefund inserts r unless its (source, external_id, kind) exists.
func (tx *Tx) insertRefund(ctx context.Context, r *hub.Refund) (bool, error) {
	if r.ID == "" {
		r.ID = hub.NewID("rfd")
	}
	r.ProgramID = defaultProgram(r.ProgramID)
	if r.CreatedAt.IsZero() {
		r.CreatedAt = tx.c.nowUTC()
	}
	r.CreatedAt = normTime(r.CreatedAt)
	r.OccurredAt = normTime(r.OccurredAt)
	keys, err := jsonText(r.OriginalKeys)
	if err != nil {
		return false, fmt.Errorf("inserting refund %s: %w", r.ExternalID, err)
	}
	n, err := tx.c.execN(ctx, `INSERT INTO refunds (`+refundCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (source_id, external_id, kind) DO NOTHING`,
		r.ID, r.ProgramID, r.SourceID, nullStr(r.ConversionID), r.Provider, r.ExternalID, keys, r.Kind,
		r.Cumulative, r.AmountMinor, r.BaseMinor, r.Currency, r.Status, tx.c.ts(r.OccurredAt), tx.c.ts(r.CreatedAt))
	if err != nil {
		return false, fmt.Errorf("inserting refund %s: %w", r.ExternalID, err)
	}
	return n == 1, nil
}

func sameInt64(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// ConversionRefunds lists the refunds and chargebacks joined to a
// conversion, oldest first.
func (tx *Tx) ConversionRefunds(ctx context.Context, conversionID string) ([]*hub.Refund, error) {
	out, err := list(ctx, tx.c, `SELECT `+refundCols+` FROM refunds WHERE conversion_id = ?
		ORDER BY occurred_at, id`, []any{conversionID}, scanRefund)
	if err != nil {
		return nil, fmt.Errorf("listing refunds of conversion %s: %w", conversionID, err)
	}
	return out, nil
}

// parkedRefunds is a transaction's copy of the parked refunds of one
// program and provider; locks is how many advisory locks the transaction
// held when it read them.
type parkedRefunds struct {
	locks int
	list  []*hub.Refund
}

// ParkedRefunds lists refunds of the program and provider that wait for
// their sale, oldest first. The list is read once per transaction and kept
// up to date by UpsertRefund; it is read again after the transaction locks
// more payment keys (PostgreSQL), since a refund of a newly locked payment
// may have been parked in between.
func (tx *Tx) ParkedRefunds(ctx context.Context, programID, provider string) ([]*hub.Refund, error) {
	pk := programID + "|" + provider
	if c := tx.parked[pk]; c != nil && c.locks == len(tx.held) {
		return copyRefunds(c.list), nil
	}
	// Pending rows (conversions, commissions) change no refund: they are
	// left pending across this read.
	before := tx.c.before
	tx.c.before = nil
	out, err := list(ctx, tx.c, `SELECT `+refundCols+` FROM refunds
		WHERE program_id = ? AND provider = ? AND conversion_id IS NULL
		ORDER BY occurred_at, id`, []any{programID, provider}, scanRefund)
	tx.c.before = before
	if err != nil {
		return nil, fmt.Errorf("listing parked refunds: %w", err)
	}
	if tx.parked == nil {
		tx.parked = map[string]*parkedRefunds{}
	}
	tx.parked[pk] = &parkedRefunds{locks: len(tx.held), list: copyRefunds(out)}
	return out, nil
}

// JoinRefund attaches a parked refund to a conversion and returns the row
// as it is now (another event may have updated it since it was listed),
// or an error wrapping hub.ErrNotFound when it is not parked any more.
func (tx *Tx) JoinRefund(ctx context.Context, id, conversionID string) (*hub.Refund, error) {
	r, err := scanOne(ctx, tx.c, `UPDATE refunds SET conversion_id = ? WHERE id = ? AND conversion_id IS NULL
		RETURNING `+refundCols, []any{conversionID, id}, scanRefund)
	if err != nil {
		if errors.Is(err, hub.ErrNotFound) {
			tx.dropParked(id)
		}
		return nil, fmt.Errorf("joining refund %s to conversion %s: %w", id, conversionID, err)
	}
	tx.keepParked(r)
	return r, nil
}

// dropParked removes a refund from the transaction's parked lists.
func (tx *Tx) dropParked(id string) {
	for _, c := range tx.parked {
		c.list = slices.DeleteFunc(c.list, func(p *hub.Refund) bool { return p.ID == id })
	}
}

// keepParked updates the transaction's parked list with a refund it stored.
func (tx *Tx) keepParked(r *hub.Refund) {
	c := tx.parked[r.ProgramID+"|"+r.Provider]
	if c == nil {
		return
	}
	c.list = slices.DeleteFunc(c.list, func(p *hub.Refund) bool { return p.ID == r.ID })
	if r.ConversionID != "" {
		return
	}
	cp := *r
	i, _ := slices.BinarySearchFunc(c.list, &cp, func(a, b *hub.Refund) int {
		if n := a.OccurredAt.Compare(b.OccurredAt); n != 0 {
			return n
		}
		return strings.Compare(a.ID, b.ID)
	})
	c.list = slices.Insert(c.list, i, &cp)
}

func copyRefunds(rs []*hub.Refund) []*hub.Refund {
	out := make([]*hub.Refund, len(rs))
	for i, r := range rs {
		cp := *r
		out[i] = &cp
	}
	return out
}

// ListRefunds lists a program's refunds and chargebacks, newest first.
// Filter.Status, PartnerID (the partner of the refunded conversion) and
// Since/Until (on occurred_at) apply.
func (db *DB) ListRefunds(ctx context.Context, programID string, f hub.Filter, p hub.Page) ([]*hub.Refund, error) {
	var w cond
	w.and("program_id = ?", programID)
	w.filter(db.c, f, "status", "conversion_id IN (SELECT id FROM conversions WHERE partner_id = ?)", "occurred_at")
	out, err := list(ctx, db.c, `SELECT `+refundCols+` FROM refunds`+w.page(p, "id"), w.args, scanRefund)
	if err != nil {
		return nil, fmt.Errorf("listing refunds: %w", err)
	}
	return out, nil
}
