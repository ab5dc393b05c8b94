package store

import (
	"context"
	"fmt"

	"github.com/partnerhub/partnerhub/hub"
)

var _ hub.ReportStore = (*DB)(nil)

// PartnerActivity totals, per partner and currency, the live attributed
// conversions that occurred in [f.Since, f.Until) and the net of their
// non-test commissions per status. Filter.PartnerID applies.
func (db *DB) PartnerActivity(ctx context.Context, programID string, f hub.Filter) ([]hub.ActivityTotals, error) {
	type key struct{ partner, currency string }
	byKey := map[key]*hub.ActivityTotals{}
	var order []key
	get := func(k key) *hub.ActivityTotals {
		a := byKey[k]
		if a == nil {
			a = &hub.ActivityTotals{PartnerID: k.partner, Currency: k.currency, ByStatus: map[string]int64{}}
			byKey[k] = a
			order = append(order, k)
		}
		return a
	}

	var w cond
	w.and("program_id = ?", programID)
	w.and("partner_id IS NOT NULL")
	w.and("livemode = ?", true)
	w.filter(db.c, hub.Filter{PartnerID: f.PartnerID, Since: f.Since, Until: f.Until}, "", "partner_id = ?", "occurred_at")
	rows, err := db.c.query(ctx, `SELECT partner_id, currency, COUNT(*), CAST(COALESCE(SUM(gross_minor), 0) AS BIGINT),
		CAST(COALESCE(SUM(refunded_minor), 0) AS BIGINT) FROM conversions`+w.where()+` GROUP BY partner_id, currency`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("totaling conversions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k key
		var n, gross, refunded int64
		if err := rows.Scan(&k.partner, &k.currency, &n, &gross, &refunded); err != nil {
			return nil, fmt.Errorf("totaling conversions: %w", err)
		}
		a := get(k)
		a.Conversions, a.RevenueMinor, a.RefundedMinor = n, gross, refunded
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("totaling conversions: %w", db.c.classify(err))
	}
	rows.Close()

	var cw cond
	cw.and("cm.program_id = ?", programID)
	cw.and("cm.test = ?", false)
	cw.filter(db.c, hub.Filter{PartnerID: f.PartnerID, Since: f.Since, Until: f.Until}, "", "cm.partner_id = ?", "cv.occurred_at")
	crows, err := db.c.query(ctx, `SELECT cm.partner_id, cm.currency, cm.status, CAST(COALESCE(SUM(e.amount_minor), 0) AS BIGINT)
		FROM commissions cm JOIN conversions cv ON cv.id = cm.conversion_id
		LEFT JOIN ledger_entries e ON e.commission_id = cm.id`+cw.where()+`
		GROUP BY cm.partner_id, cm.currency, cm.status`, cw.args...)
	if err != nil {
		return nil, fmt.Errorf("totaling commissions: %w", err)
	}
	defer crows.Close()
	for crows.Next() {
		var k key
		var status string
		var net int64
		if err := crows.Scan(&k.partner, &k.currency, &status, &net); err != nil {
			return nil, fmt.Errorf("totaling commissions: %w", err)
		}
		get(k).ByStatus[status] += net
	}
	if err := crows.Err(); err != nil {
		return nil, fmt.Errorf("totaling commissions: %w", db.c.classify(err))
	}
	out := make([]hub.ActivityTotals, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out, nil
}
