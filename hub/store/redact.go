package store

import (
	"context"
	"fmt"
)

// redactedBody replaces the raw body of an erased inbound event.
var redactedBody = []byte(`{"redacted":true}`)

// TagInbound records the payment and customer an inbound event is about.
func (tx *Tx) TagInbound(ctx context.Context, id, subject, customerRef string) error {
	if c := tx.claimOf(id); c != nil {
		c.tagged, c.subject, c.customer = true, subject, customerRef
		return nil
	}
	if _, err := tx.c.exec(ctx, "UPDATE inbound_events SET subject = ?, customer_ref = ? WHERE id = ?", subject, customerRef, id); err != nil {
		return fmt.Errorf("tagging inbound event %s: %w", id, err)
	}
	return nil
}

// RedactCustomer erases a customer's personal data: the customer fields of
// their conversions (found by customer id or by any of subjects naming
// them) and the raw bodies and headers of the inbound events about them.
// Amounts, keys, attribution and the ledger are kept. It returns the number
// of rows changed.
func (tx *Tx) RedactCustomer(ctx context.Context, programID, provider, customerRef string, subjects []string) (int64, error) {
	if err := tx.writeTags(ctx); err != nil {
		return 0, err
	}
	var total int64
	cond, args := "customer_id = ?", []any{customerRef}
	if customerRef == "" {
		cond, args = "1 = 0", nil
	}
	if len(subjects) > 0 {
		cond = "(" + cond + " OR id IN (SELECT conversion_id FROM conversion_keys WHERE program_id = ? AND provider = ? AND key IN (" + placeholders(len(subjects)) + ")))"
		args = append(args, programID, provider)
		for _, s := range subjects {
			args = append(args, s)
		}
	}
	q := "UPDATE conversions SET customer_id = '', customer_email_hash = '' WHERE program_id = ? AND provider = ? AND " + cond
	n, err := tx.c.execN(ctx, q, append([]any{programID, provider}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("redacting conversions: %w", err)
	}
	total += n
	icond, iargs := "customer_ref = ?", []any{customerRef}
	if customerRef == "" {
		icond, iargs = "1 = 0", nil
	}
	if len(subjects) > 0 {
		icond = "(" + icond + " OR subject IN (" + placeholders(len(subjects)) + "))"
		for _, s := range subjects {
			iargs = append(iargs, s)
		}
	}
	q = "UPDATE inbound_events SET body = ?, headers = '{}' WHERE program_id = ? AND provider = ? AND " + icond
	n, err = tx.c.execN(ctx, q, append([]any{redactedBody, programID, provider}, iargs...)...)
	if err != nil {
		return 0, fmt.Errorf("redacting inbound events: %w", err)
	}
	return total + n, nil
}

// RedactInbound erases the raw body and headers of one inbound event.
func (tx *Tx) RedactInbound(ctx context.Context, id string) error {
	if _, err := tx.c.exec(ctx, "UPDATE inbound_events SET body = ?, headers = '{}' WHERE id = ?", redactedBody, id); err != nil {
		return fmt.Errorf("redacting inbound event %s: %w", id, err)
	}
	return nil
}

// RedactSource erases the raw bodies and headers of every inbound event of
// a source.
func (tx *Tx) RedactSource(ctx context.Context, sourceID string) (int64, error) {
	n, err := tx.c.execN(ctx, "UPDATE inbound_events SET body = ?, headers = '{}' WHERE source_id = ?", redactedBody, sourceID)
	if err != nil {
		return 0, fmt.Errorf("redacting source %s: %w", sourceID, err)
	}
	return n, nil
}
