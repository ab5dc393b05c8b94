package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// On PostgreSQL, the conversions a transaction creates for payments whose
// keys it holds locked and knows to be free (Tx.absent), and the
// commissions of conversions it created, are kept as pending rows instead
// of being inserted one statement each. They are written in one statement
// just before the transaction's next statement of any kind (conn.before),
// or with its deferred rows before COMMIT (flushSQL): a batch of sales
// applied in one transaction inserts all its conversions, aliases, lines,
// commissions and ledger entries in the statement that writes its outbound
// events. Whatever the transaction reads or writes next sees them, since
// they are written before it.
//
// The rows are copied when they are added (later changes to the caller's
// structs are not written, as with an insert). A row that cannot be
// written fails the transaction at that statement or at COMMIT; the batch
// is then applied again in smaller groups (Service.applyCalls), down to
// single events, each with the error of its own rows.
type pending struct {
	conversions []pendingConversion
	commissions []pendingCommission
	// created is the conversions this transaction inserted, pending or
	// written: no other transaction can see them, so none of them has a
	// commission this transaction did not insert.
	created map[string]bool
}

type pendingConversion struct {
	c     hub.Conversion
	hints string
	at    time.Time // when its aliases were added
}

type pendingCommission struct {
	c     hub.Commission
	terms string
}

func (p *pending) empty() bool { return len(p.conversions) == 0 && len(p.commissions) == 0 }

// addPending records what was added and makes the transaction's next
// statement write it first.
func (tx *Tx) addPending() {
	if tx.c.before == nil {
		tx.c.before = tx.writePending
	}
}

// deferConversion keeps c as a pending row when the transaction holds the
// locks of all its keys and knows that none of them names a conversion.
// It reports whether it did.
func (tx *Tx) deferConversion(c *hub.Conversion, hints string) bool {
	if !tx.c.pg || len(c.Keys) == 0 || !tx.allAbsent(c.ProgramID, c.Provider, c.Keys) {
		return false
	}
	cp := *c
	cp.Keys, cp.Lines = slices.Clone(c.Keys), slices.Clone(c.Lines)
	cp.StateAt = normTimePtr(c.StateAt)
	tx.later.pend.conversions = append(tx.later.pend.conversions, pendingConversion{c: cp, hints: hints, at: tx.c.nowUTC()})
	tx.addPending()
	return true
}

// created records a conversion this transaction inserted.
func (tx *Tx) created(id string) {
	p := &tx.later.pend
	if p.created == nil {
		p.created = map[string]bool{}
	}
	p.created[id] = true
}

// deferCommission keeps c, with its entries, as a pending row when its
// conversion was created by this transaction. It reports whether it did.
func (tx *Tx) deferCommission(c *hub.Commission, terms string) bool {
	if !tx.c.pg || !tx.later.pend.created[c.ConversionID] {
		return false
	}
	cp := *c
	cp.Entries = slices.Clone(c.Entries)
	tx.later.pend.commissions = append(tx.later.pend.commissions, pendingCommission{c: cp, terms: terms})
	tx.addPending()
	return true
}

// writePending writes the pending rows (conn.before).
func (tx *Tx) writePending(ctx context.Context) error {
	p := &tx.later.pend
	if p.empty() {
		return nil
	}
	if _, err := tx.c.exec(ctx, pendingSQL, tx.pendingArrays()...); err != nil {
		return tx.pendingError(err)
	}
	p.conversions, p.commissions = nil, nil
	return nil
}

// pendingError describes a failed write of the pending rows.
func (tx *Tx) pendingError(err error) error {
	p := &tx.later.pend
	if isConflict(err) {
		err = fmt.Errorf("%w: %w", hub.Errorf(hub.ECONFLICT, "a key or commission already exists"), err)
	}
	return fmt.Errorf("writing %d conversions and %d commissions: %w", len(p.conversions), len(p.commissions), err)
}

// pendingCTEs inserts the pending rows, as arrays (empty arrays insert
// nothing); the foreign keys between them are checked at the end of the
// statement.
const pendingCTEs = `cv AS (
		INSERT INTO conversions (` + conversionCols + `)
		SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bool[], ?::text[], ?::text[],
			?::bigint[], ?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[],
			?::bigint[], ?::bigint[], ?::timestamptz[], ?::timestamptz[], ?::timestamptz[])
	), ck AS (
		INSERT INTO conversion_keys (program_id, provider, key, conversion_id, position, created_at)
		SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::int[], ?::timestamptz[])
	), cl AS (
		INSERT INTO conversion_lines (conversion_id, position, program_id, product_id, price_id, quantity, amount_minor)
		SELECT * FROM unnest(?::text[], ?::int[], ?::text[], ?::text[], ?::text[], ?::bigint[], ?::bigint[])
	), cm AS (
		INSERT INTO commissions (` + commissionCols + `)
		SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::bool[],
			?::timestamptz[], ?::timestamptz[], ?::text[])
	), le AS (
		INSERT INTO ledger_entries (id, program_id, commission_id, key, type, amount_minor, currency, created_at)
		SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::timestamptz[])
		ON CONFLICT (commission_id, key) DO NOTHING
	)`

// pendingSQL writes the pending rows alone.
const pendingSQL = `WITH ` + pendingCTEs + ` SELECT 1`

// pendingArrays is pendingCTEs' arguments.
func (tx *Tx) pendingArrays() []any {
	return slices.Concat(conversionArrays(tx.later.pend.conversions), commissionArrays(tx.later.pend.commissions))
}

// conversionArrays is the columns of the conversions, their aliases and
// their lines, as arrays.
func conversionArrays(ps []pendingConversion) []any {
	n := len(ps)
	ids, programs, sources, providers, kinds := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	live := make([]bool, n)
	customers, emails, currencies, hints, reasons, subs :=
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	base, gross, tax, refunded, refundedBase := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	partners := make([]*string, n)
	occurred, received := make([]time.Time, n), make([]time.Time, n)
	states := make([]*time.Time, n)
	var kProgram, kProvider, kKey, kConv []string
	var kPos []int32
	var kAt []time.Time
	var lConv, lProgram, lProduct, lPrice []string
	var lPos []int32
	var lQty, lAmount []int64
	for i := range ps {
		c := &ps[i].c
		ids[i], programs[i], sources[i], providers[i], kinds[i], live[i] = c.ID, c.ProgramID, c.SourceID, c.Provider, c.Kind, c.Livemode
		customers[i], emails[i] = c.Customer.ProviderCustomerID, c.Customer.EmailHash
		base[i], gross[i], tax[i], currencies[i], hints[i] = c.BaseMinor, c.GrossMinor, c.TaxMinor, c.Currency, ps[i].hints
		if c.PartnerID != "" {
			partners[i] = &c.PartnerID
		}
		reasons[i], subs[i], refunded[i], refundedBase[i] = c.AttributedBy, c.SubscriptionID, c.RefundedMinor, c.RefundedBaseMinor
		occurred[i], received[i], states[i] = c.OccurredAt, c.ReceivedAt, c.StateAt
		for j, k := range c.Keys {
			kProgram, kProvider, kKey, kConv = append(kProgram, c.ProgramID), append(kProvider, c.Provider), append(kKey, k), append(kConv, c.ID)
			kPos, kAt = append(kPos, int32(j)), append(kAt, ps[i].at)
		}
		for j, l := range c.Lines {
			lConv, lPos, lProgram = append(lConv, c.ID), append(lPos, int32(j)), append(lProgram, c.ProgramID)
			lProduct, lPrice, lQty, lAmount = append(lProduct, l.ProductID), append(lPrice, l.PriceID), append(lQty, l.Quantity), append(lAmount, l.AmountMinor)
		}
	}
	return []any{ids, programs, sources, providers, kinds, live, customers, emails, base, gross, tax, currencies, hints,
		partners, reasons, subs, refunded, refundedBase, occurred, received, states,
		nonNil(kProgram), nonNil(kProvider), nonNil(kKey), nonNil(kConv), nonNil(kPos), nonNil(kAt),
		nonNil(lConv), nonNil(lPos), nonNil(lProgram), nonNil(lProduct), nonNil(lPrice), nonNil(lQty), nonNil(lAmount)}
}

// commissionArrays is the columns of the commissions and their ledger
// entries, as arrays.
func commissionArrays(ps []pendingCommission) []any {
	n := len(ps)
	ids, programs, convs, partners, statuses, currencies, terms :=
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	rates := make([]int64, n)
	test := make([]bool, n)
	holds, created := make([]time.Time, n), make([]time.Time, n)
	var eID, eProgram, eCom, eKey, eType, eCurrency []string
	var eAmount []int64
	var eAt []time.Time
	for i := range ps {
		c := &ps[i].c
		ids[i], programs[i], convs[i], partners[i], statuses[i] = c.ID, c.ProgramID, c.ConversionID, c.PartnerID, c.Status
		rates[i], currencies[i], test[i], holds[i], created[i], terms[i] = c.RateBPS, c.Currency, c.Test, c.HoldUntil, c.CreatedAt, ps[i].terms
		for _, e := range c.Entries {
			eID, eProgram, eCom, eKey = append(eID, e.ID), append(eProgram, e.ProgramID), append(eCom, e.CommissionID), append(eKey, e.Key)
			eType, eAmount, eCurrency, eAt = append(eType, e.Type), append(eAmount, e.AmountMinor), append(eCurrency, e.Currency), append(eAt, e.CreatedAt)
		}
	}
	return []any{ids, programs, convs, partners, statuses, rates, currencies, test, holds, created, terms,
		nonNil(eID), nonNil(eProgram), nonNil(eCom), nonNil(eKey), nonNil(eType), nonNil(eAmount), nonNil(eCurrency), nonNil(eAt)}
}

// nonNil turns a nil slice into an empty one: an empty array, not NULL.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
