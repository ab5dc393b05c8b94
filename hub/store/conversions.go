package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

const conversionCols = `id, program_id, source_id, provider, kind, livemode, customer_id, customer_email_hash,
	base_minor, gross_minor, tax_minor, currency, hints, partner_id, attribution_reason, subscription_id,
	refunded_minor, refunded_base_minor, occurred_at, received_at, state_at`

func scanConversion(r scanner) (*hub.Conversion, error) {
	var c hub.Conversion
	err := r.Scan(&c.ID, &c.ProgramID, &c.SourceID, &c.Provider, &c.Kind, &c.Livemode,
		&c.Customer.ProviderCustomerID, &c.Customer.EmailHash,
		&c.BaseMinor, &c.GrossMinor, &c.TaxMinor, &c.Currency, jsonCol{&c.Hints},
		strCol{&c.PartnerID}, &c.AttributedBy, &c.SubscriptionID,
		&c.RefundedMinor, &c.RefundedBaseMinor, timeCol{&c.OccurredAt}, timeCol{&c.ReceivedAt}, nullTimeCol{&c.StateAt})
	return &c, err
}

// FindConversion returns the conversion that any of keys names, locked FOR
// UPDATE on PostgreSQL, with Keys, Lines and Hints filled, or an error
// wrapping hub.ErrNotFound. When the keys name several conversions, the
// oldest one is returned.
func (tx *Tx) FindConversion(ctx context.Context, programID, provider string, keys []string) (*hub.Conversion, error) {
	keys = uniq(keys)
	if len(keys) == 0 {
		return nil, fmt.Errorf("finding conversion: no keys: %w", hub.ErrNotFound)
	}
	if tx.allAbsent(programID, provider, keys) {
		return nil, fmt.Errorf("finding conversion by keys %v: %w", keys, hub.ErrNotFound)
	}
	// One probe of the primary key per alias: a plan that always uses the
	// whole key, even before the table has statistics (an IN list let
	// PostgreSQL scan every alias of the program while the table grew
	// faster than ANALYZE ran).
	var probes []string
	var args []any
	for _, k := range keys {
		probes = append(probes, `SELECT conversion_id FROM conversion_keys WHERE program_id = ? AND provider = ? AND key = ?`)
		args = append(args, programID, provider, k)
	}
	c, err := scanOne(ctx, tx.c, `SELECT `+conversionCols+` FROM conversions WHERE id = (
			SELECT conversion_id FROM (`+strings.Join(probes, " UNION ALL ")+`) AS aliases
			ORDER BY conversion_id LIMIT 1)`+tx.c.forUpdate(), args, scanConversion)
	if errors.Is(err, hub.ErrNotFound) {
		tx.markAbsent(programID, provider, keys)
	}
	if err != nil {
		return nil, fmt.Errorf("finding conversion by keys %v: %w", keys, err)
	}
	if err := tx.c.fillConversions(ctx, []*hub.Conversion{c}); err != nil {
		return nil, fmt.Errorf("finding conversion by keys %v: %w", keys, err)
	}
	return c, nil
}

// InsertConversion inserts c with its aliases (c.Keys) and lines, filling
// ID, ProgramID (the default program) and ReceivedAt when empty. A key
// that already names another conversion fails with ECONFLICT: this call,
// or, for a conversion kept pending (deferConversion: its keys locked and
// known free), the transaction's next statement or its COMMIT.
func (tx *Tx) InsertConversion(ctx context.Context, c *hub.Conversion) error {
	if c.ID == "" {
		c.ID = hub.NewID("cnv")
	}
	c.ProgramID = defaultProgram(c.ProgramID)
	if c.ReceivedAt.IsZero() {
		c.ReceivedAt = tx.c.nowUTC()
	}
	c.ReceivedAt = normTime(c.ReceivedAt)
	c.OccurredAt = normTime(c.OccurredAt)
	c.Keys = uniq(c.Keys)
	hints, err := jsonText(c.Hints)
	if err != nil {
		return fmt.Errorf("inserting conversion %s: %w", c.ID, err)
	}
	deferred := tx.deferConversion(c, hints)
	tx.forgetAbsent(c.ProgramID, c.Provider, c.Keys)
	if deferred {
		tx.created(c.ID)
		return nil
	}
	insert := `INSERT INTO conversions (` + conversionCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	args := []any{c.ID, c.ProgramID, c.SourceID, c.Provider, c.Kind, c.Livemode,
		c.Customer.ProviderCustomerID, c.Customer.EmailHash,
		c.BaseMinor, c.GrossMinor, c.TaxMinor, c.Currency, hints,
		nullStr(c.PartnerID), c.AttributedBy, c.SubscriptionID,
		c.RefundedMinor, c.RefundedBaseMinor, tx.c.ts(c.OccurredAt), tx.c.ts(c.ReceivedAt), tx.c.nullTS(c.StateAt)}
	if len(c.Keys) == 0 {
		if _, err := tx.c.exec(ctx, insert, args...); err != nil {
			return fmt.Errorf("inserting conversion %s: %w", c.ID, err)
		}
		tx.created(c.ID)
		return tx.insertLines(ctx, c)
	}
	// The aliases: a key that names another conversion already is not
	// inserted, and not returned. On PostgreSQL they go in with the
	// conversion, in one statement.
	now := tx.c.ts(tx.c.nowUTC())
	var keysInsert string
	if tx.c.pg {
		keysInsert = `WITH cv AS (` + insert + `)
			INSERT INTO conversion_keys (program_id, provider, key, conversion_id, position, created_at)
			SELECT ?, ?, u.key, ?, u.n - 1, ? FROM unnest(?::text[]) WITH ORDINALITY AS u (key, n)
			ON CONFLICT DO NOTHING RETURNING key`
		args = append(args, c.ProgramID, c.Provider, c.ID, now, c.Keys)
	} else {
		if _, err := tx.c.exec(ctx, insert, args...); err != nil {
			return fmt.Errorf("inserting conversion %s: %w", c.ID, err)
		}
		keysInsert = `INSERT INTO conversion_keys (program_id, provider, key, conversion_id, position, created_at)
			VALUES ` + valueRows(len(c.Keys), 6) + ` ON CONFLICT DO NOTHING RETURNING key`
		args = make([]any, 0, 6*len(c.Keys))
		for i, k := range c.Keys {
			args = append(args, c.ProgramID, c.Provider, k, c.ID, i, now)
		}
	}
	added, err := list(ctx, tx.c, keysInsert, args, func(s scanner) (string, error) {
		var k string
		return k, s.Scan(&k)
	})
	if err != nil {
		return fmt.Errorf("inserting conversion %s: %w", c.ID, err)
	}
	if err := keysAdded(c, added); err != nil {
		return err
	}
	tx.created(c.ID)
	return tx.insertLines(ctx, c)
}

// keysAdded fails with ECONFLICT unless every key of c was added.
func keysAdded(c *hub.Conversion, added []string) error {
	for _, k := range c.Keys {
		if !contains(added, k) {
			return fmt.Errorf("inserting conversion %s: %w", c.ID, hub.Errorf(hub.ECONFLICT, "key %q already names another conversion", k))
		}
	}
	return nil
}

// insertLines inserts c's lines in one statement.
func (tx *Tx) insertLines(ctx context.Context, c *hub.Conversion) error {
	if len(c.Lines) > 0 {
		args := make([]any, 0, 7*len(c.Lines))
		for i, l := range c.Lines {
			args = append(args, c.ID, i, c.ProgramID, l.ProductID, l.PriceID, l.Quantity, l.AmountMinor)
		}
		if _, err := tx.c.exec(ctx, `INSERT INTO conversion_lines
			(conversion_id, position, program_id, product_id, price_id, quantity, amount_minor)
			VALUES `+valueRows(len(c.Lines), 7), args...); err != nil {
			return fmt.Errorf("inserting conversion %s: %w", c.ID, err)
		}
	}
	return nil
}

// valueRows returns n groups of cols placeholders, "(?, ?), (?, ?)", for a
// multi-row VALUES list.
func valueRows(n, cols int) string {
	row := "(" + placeholders(cols) + ")"
	return strings.Repeat(row+", ", n-1) + row
}

// UpdateConversion saves c's mutable fields: customer, subscription, hints,
// partner, attribution reason, refunded totals and state time.
func (tx *Tx) UpdateConversion(ctx context.Context, c *hub.Conversion) error {
	hints, err := jsonText(c.Hints)
	if err != nil {
		return fmt.Errorf("updating conversion %s: %w", c.ID, err)
	}
	n, err := tx.c.execN(ctx, `UPDATE conversions SET customer_id = ?, customer_email_hash = ?, subscription_id = ?,
		hints = ?, partner_id = ?, attribution_reason = ?, refunded_minor = ?, refunded_base_minor = ?, state_at = ? WHERE id = ?`,
		c.Customer.ProviderCustomerID, c.Customer.EmailHash, c.SubscriptionID,
		hints, nullStr(c.PartnerID), c.AttributedBy, c.RefundedMinor, c.RefundedBaseMinor, tx.c.nullTS(c.StateAt), c.ID)
	if err != nil {
		return fmt.Errorf("updating conversion %s: %w", c.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("updating conversion %s: %w", c.ID, hub.ErrNotFound)
	}
	return nil
}

// AddAliases makes keys name conversion c and appends the keys it added to
// c.Keys. Keys already naming c are skipped; keys naming another
// conversion are left alone.
func (tx *Tx) AddAliases(ctx context.Context, c *hub.Conversion, keys []string) error {
	var next int
	err := tx.c.get(ctx, `SELECT COALESCE(MAX(position) + 1, 0) FROM conversion_keys WHERE conversion_id = ?`,
		[]any{c.ID}, &next)
	if err != nil {
		return fmt.Errorf("adding aliases to conversion %s: %w", c.ID, err)
	}
	now := tx.c.ts(tx.c.nowUTC())
	tx.forgetAbsent(c.ProgramID, c.Provider, keys)
	for _, k := range uniq(keys) {
		if contains(c.Keys, k) {
			continue
		}
		n, err := tx.c.execN(ctx, `INSERT INTO conversion_keys (program_id, provider, key, conversion_id, position, created_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (program_id, provider, key) DO NOTHING`,
			c.ProgramID, c.Provider, k, c.ID, next, now)
		if err != nil {
			return fmt.Errorf("adding aliases to conversion %s: %w", c.ID, err)
		}
		if n == 1 {
			c.Keys = append(c.Keys, k)
			next++
		}
	}
	return nil
}

// HasEarlierPayment reports whether the subscription has a conversion with
// gross > 0 that occurred before t, other than excludeID.
func (tx *Tx) HasEarlierPayment(ctx context.Context, programID, provider, subscriptionID, excludeID string, t time.Time) (bool, error) {
	if subscriptionID == "" {
		return false, nil
	}
	var one int
	err := tx.c.get(ctx, `SELECT 1 FROM conversions
		WHERE program_id = ? AND provider = ? AND subscription_id = ? AND gross_minor > 0
		AND occurred_at < ? AND id <> ? LIMIT 1`,
		[]any{programID, provider, subscriptionID, tx.c.ts(t), excludeID}, &one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking earlier payments of subscription %s: %w", subscriptionID, err)
	}
	return true, nil
}

// CustomerPartner returns the partner of the latest attributed conversion
// of the customer, or "".
func (tx *Tx) CustomerPartner(ctx context.Context, programID, provider, customerID string) (string, error) {
	if customerID == "" {
		return "", nil
	}
	var partnerID string
	err := tx.c.get(ctx, `SELECT partner_id FROM conversions
		WHERE program_id = ? AND provider = ? AND customer_id = ? AND partner_id IS NOT NULL
		ORDER BY occurred_at DESC, id DESC LIMIT 1`,
		[]any{programID, provider, customerID}, &partnerID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("finding partner of customer %s: %w", customerID, err)
	}
	return partnerID, nil
}

// GetConversion returns a conversion of the program with its keys and
// lines.
func (db *DB) GetConversion(ctx context.Context, programID, id string) (*hub.Conversion, error) {
	c, err := scanOne(ctx, db.c, `SELECT `+conversionCols+` FROM conversions WHERE program_id = ? AND id = ?`,
		[]any{programID, id}, scanConversion)
	if err == nil {
		err = db.c.fillConversions(ctx, []*hub.Conversion{c})
	}
	if err != nil {
		return nil, fmt.Errorf("getting conversion %s: %w", id, err)
	}
	return c, nil
}

// ListConversions lists a program's conversions, newest first, with their
// keys and lines. Filter.PartnerID and Since/Until (on occurred_at) apply.
func (db *DB) ListConversions(ctx context.Context, programID string, f hub.Filter, p hub.Page) ([]*hub.Conversion, error) {
	var w cond
	w.and("program_id = ?", programID)
	w.filter(db.c, f, "", "partner_id = ?", "occurred_at")
	out, err := list(ctx, db.c, `SELECT `+conversionCols+` FROM conversions`+w.page(p, "id"), w.args, scanConversion)
	if err == nil {
		err = db.c.fillConversions(ctx, out)
	}
	if err != nil {
		return nil, fmt.Errorf("listing conversions: %w", err)
	}
	return out, nil
}

// fillConversions loads the keys and lines of cs.
func (c *conn) fillConversions(ctx context.Context, cs []*hub.Conversion) error {
	if len(cs) == 0 {
		return nil
	}
	byID := make(map[string]*hub.Conversion, len(cs))
	args := make([]any, 0, len(cs))
	for _, cv := range cs {
		byID[cv.ID] = cv
		cv.Keys, cv.Lines = nil, nil
		args = append(args, cv.ID)
	}
	in := placeholders(len(cs))
	rows, err := c.query(ctx, `SELECT conversion_id, key FROM conversion_keys
		WHERE conversion_id IN (`+in+`) ORDER BY conversion_id, position`, args...)
	if err != nil {
		return fmt.Errorf("loading conversion keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, key string
		if err := rows.Scan(&id, &key); err != nil {
			return fmt.Errorf("loading conversion keys: %w", err)
		}
		byID[id].Keys = append(byID[id].Keys, key)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("loading conversion keys: %w", c.classify(err))
	}
	rows.Close()
	lines, err := c.query(ctx, `SELECT conversion_id, product_id, price_id, quantity, amount_minor FROM conversion_lines
		WHERE conversion_id IN (`+in+`) ORDER BY conversion_id, position`, args...)
	if err != nil {
		return fmt.Errorf("loading conversion lines: %w", err)
	}
	defer lines.Close()
	for lines.Next() {
		var id string
		var l hub.LineItem
		if err := lines.Scan(&id, &l.ProductID, &l.PriceID, &l.Quantity, &l.AmountMinor); err != nil {
			return fmt.Errorf("loading conversion lines: %w", err)
		}
		byID[id].Lines = append(byID[id].Lines, l)
	}
	if err := lines.Err(); err != nil {
		return fmt.Errorf("loading conversion lines: %w", c.classify(err))
	}
	return nil
}

// placeholders returns "?, ?, …" with n marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// uniq returns keys without empty strings and duplicates, in order.
func uniq(keys []string) []string {
	var out []string
	for _, k := range keys {
		if k != "" && !contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

func contains(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}
