package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

var _ hub.RuleStore = (*DB)(nil)

// CreateRule stores r, filling ID, ProgramID (the default program) and
// CreatedAt when empty.
func (db *DB) CreateRule(ctx context.Context, r *hub.Rule) error {
	if r.ID == "" {
		r.ID = hub.NewID("rul")
	}
	r.ProgramID = defaultProgram(r.ProgramID)
	if r.CreatedAt.IsZero() {
		r.CreatedAt = db.c.nowUTC()
	}
	r.CreatedAt = normTime(r.CreatedAt)
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("creating rule %s: %w", r.ID, err)
	}
	if _, err := db.c.exec(ctx, `INSERT INTO rules (id, program_id, body, created_at) VALUES (?, ?, ?, ?)`,
		r.ID, r.ProgramID, string(body), db.c.ts(r.CreatedAt)); err != nil {
		return fmt.Errorf("creating rule %s: %w", r.ID, err)
	}
	return nil
}

func listRules(ctx context.Context, c *conn, programID string) ([]*hub.Rule, error) {
	out, err := list(ctx, c, `SELECT body FROM rules WHERE program_id = ? ORDER BY id`, []any{programID},
		func(s scanner) (*hub.Rule, error) {
			var body string
			if err := s.Scan(&body); err != nil {
				return nil, err
			}
			var r hub.Rule
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				return nil, fmt.Errorf("reading rule: %w", err)
			}
			return &r, nil
		})
	if err != nil {
		return nil, fmt.Errorf("listing rules: %w", err)
	}
	return out, nil
}

// ListRules lists a program's rules, oldest first.
func (db *DB) ListRules(ctx context.Context, programID string) ([]*hub.Rule, error) {
	return listRules(ctx, db.c, programID)
}

// ListRules lists a program's rules inside the transaction, read once
// per transaction.
func (tx *Tx) ListRules(ctx context.Context, programID string) ([]*hub.Rule, error) {
	rs, err := fromGen(ctx, tx, func(g *configGen) map[string][]*hub.Rule { return g.rules }, programID,
		func() ([]*hub.Rule, error) { return listRules(ctx, tx.c, programID) })
	if err != nil {
		return nil, err
	}
	return slices.Clone(rs), nil
}

// DeleteRule removes a rule; commissions keep the terms they were given.
func (db *DB) DeleteRule(ctx context.Context, programID, id string) error {
	n, err := db.c.execN(ctx, `DELETE FROM rules WHERE program_id = ? AND id = ?`, programID, id)
	if err != nil {
		return fmt.Errorf("deleting rule %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("deleting rule %s: %w", id, hub.ErrNotFound)
	}
	return nil
}

const promoCols = `id, program_id, partner_id, code, starts_at, ends_at, created_at`

func scanPromo(r scanner) (*hub.PromoCode, error) {
	var p hub.PromoCode
	err := r.Scan(&p.ID, &p.ProgramID, &p.PartnerID, &p.Code, nullTimeCol{&p.StartsAt}, nullTimeCol{&p.EndsAt}, timeCol{&p.CreatedAt})
	return &p, err
}

// CreatePromoCode stores p; a code in use in the program (in any case)
// fails with ECONFLICT.
func (db *DB) CreatePromoCode(ctx context.Context, p *hub.PromoCode) error {
	if p.ID == "" {
		p.ID = hub.NewID("prm")
	}
	p.ProgramID = defaultProgram(p.ProgramID)
	if p.CreatedAt.IsZero() {
		p.CreatedAt = db.c.nowUTC()
	}
	p.CreatedAt = normTime(p.CreatedAt)
	p.StartsAt, p.EndsAt = normTimePtr(p.StartsAt), normTimePtr(p.EndsAt)
	_, err := db.c.exec(ctx, `INSERT INTO promo_codes (`+promoCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.ProgramID, p.PartnerID, p.Code, db.c.nullTS(p.StartsAt), db.c.nullTS(p.EndsAt), db.c.ts(p.CreatedAt))
	if isConflict(err) {
		err = fmt.Errorf("%w: %w", hub.Errorf(hub.ECONFLICT, "promo code %q is already in use", p.Code), err)
	}
	if err != nil {
		return fmt.Errorf("creating promo code %s: %w", p.ID, err)
	}
	return nil
}

// ListPromoCodes lists a program's promo codes, newest first.
func (db *DB) ListPromoCodes(ctx context.Context, programID string, p hub.Page) ([]*hub.PromoCode, error) {
	var w cond
	w.and("program_id = ?", programID)
	out, err := list(ctx, db.c, `SELECT `+promoCols+` FROM promo_codes`+w.page(p, "id"), w.args, scanPromo)
	if err != nil {
		return nil, fmt.Errorf("listing promo codes: %w", err)
	}
	return out, nil
}

// DeletePromoCode removes a promo code.
func (db *DB) DeletePromoCode(ctx context.Context, programID, id string) error {
	n, err := db.c.execN(ctx, `DELETE FROM promo_codes WHERE program_id = ? AND id = ?`, programID, id)
	if err != nil {
		return fmt.Errorf("deleting promo code %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("deleting promo code %s: %w", id, hub.ErrNotFound)
	}
	return nil
}

// FindPromoCode returns the program's promo code matching code in any
// case, or ErrNotFound.
func (tx *Tx) FindPromoCode(ctx context.Context, programID, code string) (*hub.PromoCode, error) {
	p, err := scanOne(ctx, tx.c, `SELECT `+promoCols+` FROM promo_codes WHERE program_id = ? AND lower(code) = lower(?)`,
		[]any{programID, code}, scanPromo)
	if err != nil {
		return nil, fmt.Errorf("finding promo code %q: %w", code, err)
	}
	return p, nil
}

// CustomerBinding returns the partner of the customer's first attributed
// conversion and when it occurred, or "" when the customer has none.
func (tx *Tx) CustomerBinding(ctx context.Context, programID, provider, customerID string) (string, time.Time, error) {
	if customerID == "" {
		return "", time.Time{}, nil
	}
	var partnerID string
	var at time.Time
	err := tx.c.get(ctx, `SELECT partner_id, occurred_at FROM conversions
		WHERE program_id = ? AND provider = ? AND customer_id = ? AND partner_id IS NOT NULL
		ORDER BY occurred_at, id LIMIT 1`,
		[]any{programID, provider, customerID}, &partnerID, timeCol{&at})
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("finding the binding of customer %s: %w", customerID, err)
	}
	return partnerID, at, nil
}

// SubscriptionStart returns when the subscription's first paid payment
// occurred, or the zero time.
func (tx *Tx) SubscriptionStart(ctx context.Context, programID, provider, subscriptionID string) (time.Time, error) {
	if subscriptionID == "" {
		return time.Time{}, nil
	}
	var at time.Time
	err := tx.c.get(ctx, `SELECT occurred_at FROM conversions
		WHERE program_id = ? AND provider = ? AND subscription_id = ? AND gross_minor > 0
		ORDER BY occurred_at, id LIMIT 1`, []any{programID, provider, subscriptionID}, timeCol{&at})
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("finding the start of subscription %s: %w", subscriptionID, err)
	}
	return at, nil
}
