package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Outbound event types.
const (
	EventConversionCreated  = "conversion.created"
	EventConversionRefunded = "conversion.refunded"
	EventConversionDisputed = "conversion.disputed"
	EventCommissionCreated  = "commission.created"
	EventCommissionApproved = "commission.approved"
	EventCommissionReversed = "commission.reversed"
	EventCommissionPaid     = "commission.paid"
	EventEndpointDisabled   = "endpoint.disabled"
	EventPing               = "ping"
)

// Attribution reasons: an attribution source (SourceClick …) or a manual
// override.
const (
	ReasonPartnerCode = SourcePartnerCode
	ReasonCustomer    = SourceCustomer
	ReasonManual      = "manual"
)

// applier applies one normalized event inside one transaction.
type applier struct {
	s   *Service
	tx  Tx
	src *Source
	ev  *InboundEvent
	n   *Normalized

	deliveries []*Delivery
	// events holds the event of each of deliveries, at the same index.
	events []*Event
	// ignored, when set, says why the event changed nothing after all.
	ignored string
	// recheck is set when an event added what decides a commission's
	// terms (line items, the customer's email) to a known conversion.
	recheck bool
	// bookings numbers the adjustments one event books, so an event that
	// settles several facts keys each entry apart (a replay books none:
	// its targets are met).
	bookings int
}

func (a *applier) apply(ctx context.Context) error {
	switch {
	case a.n.Snapshot != nil:
		return a.snapshot(ctx, a.n.Snapshot)
	case a.n.Payment != nil:
		return a.payment(ctx, a.n.Payment)
	case a.n.Refund != nil:
		f := a.n.Refund
		r := &Refund{
			Kind: RefundKindRefund, ExternalID: f.ExternalID, OriginalKeys: f.Keys,
			Cumulative: f.Cumulative, AmountMinor: f.AmountMinor, BaseMinor: f.BaseMinor,
			Currency: f.Currency, Status: f.Status, OccurredAt: f.OccurredAt,
		}
		return a.refund(ctx, r, EventConversionRefunded)
	case a.n.Link != nil:
		return a.link(ctx, a.n.Link)
	case a.n.Redact != nil:
		return a.redact(ctx, a.n.Redact)
	case a.n.Dispute != nil:
		f := a.n.Dispute
		r := &Refund{
			Kind: RefundKindChargeback, ExternalID: f.ExternalID, OriginalKeys: f.Keys,
			AmountMinor: f.AmountMinor, Currency: f.Currency, Status: f.Status, OccurredAt: f.OccurredAt,
		}
		return a.refund(ctx, r, EventConversionDisputed)
	}
	return fmt.Errorf("normalized event has no fact: %w", ErrUnparsable)
}

// snapshot applies an order's whole state: its payment, its refunds, and
// the deletion of refunds it no longer lists.
func (a *applier) snapshot(ctx context.Context, snap *Snapshot) error {
	keys := uniqueKeys(snap.Keys)
	if len(keys) == 0 || snap.At.IsZero() {
		return fmt.Errorf("snapshot without keys or time: %w", ErrUnparsable)
	}
	if err := a.tx.LockKeys(ctx, a.src.ProgramID, a.src.Provider, keys); err != nil {
		return fmt.Errorf("locking conversion keys: %w", err)
	}
	conv, err := a.tx.FindConversion(ctx, a.src.ProgramID, a.src.Provider, keys)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("finding conversion: %w", err)
	}
	if err == nil && conv.StateAt != nil && snap.At.Before(*conv.StateAt) {
		a.ignored = "older than the state already applied (" + conv.StateAt.UTC().Format(time.RFC3339) + ")"
		return nil
	}
	if a.n.Payment != nil {
		if err := a.payment(ctx, a.n.Payment); err != nil {
			return err
		}
	}
	listed := map[string]bool{}
	for i := range snap.Refunds {
		f := snap.Refunds[i]
		listed[f.ExternalID] = true
		r := &Refund{
			Kind: RefundKindRefund, ExternalID: f.ExternalID, OriginalKeys: f.Keys,
			Cumulative: f.Cumulative, AmountMinor: f.AmountMinor, BaseMinor: f.BaseMinor,
			Currency: f.Currency, Status: f.Status, OccurredAt: f.OccurredAt,
		}
		if err := a.refund(ctx, r, EventConversionRefunded); err != nil {
			return err
		}
	}
	conv, err = a.tx.FindConversion(ctx, a.src.ProgramID, a.src.Provider, keys)
	if errors.Is(err, ErrNotFound) {
		return nil // not paid: nothing to keep
	}
	if err != nil {
		return fmt.Errorf("finding conversion: %w", err)
	}
	rs, err := a.tx.ConversionRefunds(ctx, conv.ID)
	if err != nil {
		return fmt.Errorf("listing conversion refunds: %w", err)
	}
	for _, old := range rs {
		if old.Kind != RefundKindRefund || old.SourceID != a.src.ID || listed[old.ExternalID] || !old.Counts() {
			continue
		}
		gone := *old
		gone.Status, gone.OccurredAt = RefundCanceled, snap.At
		if err := a.refund(ctx, &gone, EventConversionRefunded); err != nil {
			return err
		}
	}
	conv, err = a.tx.FindConversion(ctx, a.src.ProgramID, a.src.Provider, keys)
	if err != nil {
		return fmt.Errorf("finding conversion: %w", err)
	}
	at := snap.At.UTC()
	conv.StateAt = &at
	if err := a.tx.UpdateConversion(ctx, conv); err != nil {
		return fmt.Errorf("updating conversion: %w", err)
	}
	return nil
}

// link adds aliases to a known payment and joins the refunds that were
// waiting for them.
func (a *applier) link(ctx context.Context, l *LinkFact) error {
	keys := uniqueKeys(l.Keys)
	if len(keys) < 2 {
		return fmt.Errorf("link needs two keys: %w", ErrUnparsable)
	}
	if err := a.tx.LockKeys(ctx, a.src.ProgramID, a.src.Provider, keys); err != nil {
		return fmt.Errorf("locking conversion keys: %w", err)
	}
	conv, err := a.tx.FindConversion(ctx, a.src.ProgramID, a.src.Provider, keys)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("linking %v: %w", keys, ErrWaitingForPayment)
	}
	if err != nil {
		return fmt.Errorf("finding conversion: %w", err)
	}
	if err := a.addAliases(ctx, conv, keys); err != nil {
		return err
	}
	joined, err := a.joinParked(ctx, conv)
	if err != nil || len(joined) == 0 {
		return err
	}
	if _, err := a.settle(ctx, conv, false, nil); err != nil {
		return err
	}
	return a.emitJoined(ctx, conv, joined)
}

// redact erases a customer's personal data, and the request's own body.
func (a *applier) redact(ctx context.Context, r *RedactFact) error {
	if r.Source {
		if _, err := a.tx.RedactSource(ctx, a.src.ID); err != nil {
			return err
		}
	} else if r.CustomerRef != "" || len(r.Subjects) > 0 {
		if _, err := a.tx.RedactCustomer(ctx, a.src.ProgramID, a.src.Provider, r.CustomerRef, uniqueKeys(r.Subjects)); err != nil {
			return err
		}
	}
	return a.tx.RedactInbound(ctx, a.ev.ID)
}

// paymentKeys returns the keys of the payment the event's fact is about,
// the ones its application locks (none for a redaction).
func (n *Normalized) paymentKeys() []string {
	switch {
	case n.Snapshot != nil:
		return uniqueKeys(n.Snapshot.Keys)
	case n.Payment != nil:
		return uniqueKeys(n.Payment.Keys)
	case n.Refund != nil:
		return uniqueKeys(n.Refund.Keys)
	case n.Link != nil:
		return uniqueKeys(n.Link.Keys)
	case n.Dispute != nil:
		return uniqueKeys(n.Dispute.Keys)
	}
	return nil
}

func uniqueKeys(keys []string) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if k != "" && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// payment creates the conversion the payment's keys name, or merges the
// payment's aliases and hints into it. Money is fixed by the first paid
// event and never recomputed.
func (a *applier) payment(ctx context.Context, p *Payment) error {
	keys := uniqueKeys(p.Keys)
	if len(keys) == 0 {
		return fmt.Errorf("payment without keys: %w", ErrUnparsable)
	}
	if err := a.tx.LockKeys(ctx, a.src.ProgramID, a.src.Provider, keys); err != nil {
		return fmt.Errorf("locking conversion keys: %w", err)
	}
	conv, err := a.tx.FindConversion(ctx, a.src.ProgramID, a.src.Provider, keys)
	created := false
	switch {
	case errors.Is(err, ErrNotFound):
		conv = &Conversion{
			ID: NewID("cnv"), ProgramID: a.src.ProgramID, SourceID: a.src.ID, Provider: a.src.Provider,
			Keys: keys, Kind: p.Kind, Livemode: a.n.Livemode, Customer: p.Customer,
			BaseMinor: p.BaseMinor, GrossMinor: p.GrossMinor, TaxMinor: p.TaxMinor, Currency: p.Currency,
			Lines: p.Lines, Hints: p.Hints, SubscriptionID: p.SubscriptionID,
			OccurredAt: p.OccurredAt.UTC(), ReceivedAt: a.ev.ReceivedAt,
		}
		if conv.Kind == "" {
			conv.Kind = KindNew
			if conv.SubscriptionID != "" {
				earlier, err := a.tx.HasEarlierPayment(ctx, conv.ProgramID, conv.Provider, conv.SubscriptionID, conv.ID, conv.OccurredAt)
				if err != nil {
					return fmt.Errorf("reading subscription history: %w", err)
				}
				if earlier {
					conv.Kind = KindRenewal
				}
			}
		}
		if err := a.attribute(ctx, conv); err != nil {
			return err
		}
		if err := a.tx.InsertConversion(ctx, conv); err != nil {
			return fmt.Errorf("inserting conversion: %w", err)
		}
		created = true
	case err != nil:
		return fmt.Errorf("finding conversion: %w", err)
	default:
		if err := a.addAliases(ctx, conv, keys); err != nil {
			return err
		}
		conv.Hints = conv.Hints.Merge(p.Hints)
		if conv.Customer.ProviderCustomerID == "" {
			conv.Customer.ProviderCustomerID = p.Customer.ProviderCustomerID
		}
		if conv.Customer.EmailHash == "" && p.Customer.EmailHash != "" {
			conv.Customer.EmailHash = p.Customer.EmailHash
			a.recheck = true
		}
		if conv.SubscriptionID == "" {
			conv.SubscriptionID = p.SubscriptionID
		}
		if len(conv.Lines) == 0 && len(p.Lines) > 0 {
			conv.Lines = p.Lines
			a.recheck = true
		}
		if err := a.attribute(ctx, conv); err != nil {
			return err
		}
	}
	joined, err := a.joinParked(ctx, conv)
	if err != nil {
		return err
	}
	if created {
		if err := a.emit(ctx, EventConversionCreated, conv.PartnerID, conv); err != nil {
			return err
		}
	}
	if _, err := a.settle(ctx, conv, created, joined); err != nil {
		return err
	}
	return a.emitJoined(ctx, conv, joined)
}

// emitJoined tells receivers about refunds and disputes that waited for
// their sale and now count against it.
func (a *applier) emitJoined(ctx context.Context, conv *Conversion, joined []*Refund) error {
	for _, r := range joined {
		typ := EventConversionRefunded
		if r.Kind == RefundKindChargeback {
			typ = EventConversionDisputed
		}
		if err := a.emit(ctx, typ, conv.PartnerID, map[string]any{"conversion": conv, "refund": r}); err != nil {
			return err
		}
	}
	return nil
}

// addAliases makes the keys the conversion does not have yet name it
// (the store appends those it added to conv.Keys).
func (a *applier) addAliases(ctx context.Context, conv *Conversion, keys []string) error {
	var fresh []string
	for _, k := range keys {
		if !slices.Contains(conv.Keys, k) {
			fresh = append(fresh, k)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := a.tx.AddAliases(ctx, conv, fresh); err != nil {
		return fmt.Errorf("adding conversion aliases: %w", err)
	}
	return nil
}

// attribute credits an unattributed conversion to a partner, trying the
// program's attribution sources in its order (by default: the click id,
// the partner code, a promo code, then the customer's lifetime binding),
// and records which one credited it.
func (a *applier) attribute(ctx context.Context, c *Conversion) error {
	if c.PartnerID != "" || c.AttributedBy == ReasonManual {
		return nil // credited, or an operator decided (possibly: no one)
	}
	prog, err := a.tx.GetProgram(ctx, c.ProgramID)
	if err != nil {
		return fmt.Errorf("loading program: %w", err)
	}
	for _, source := range prog.Order() {
		pid, err := a.partnerBy(ctx, source, prog, c)
		if err != nil {
			return err
		}
		if pid != "" {
			c.PartnerID, c.AttributedBy = pid, source
			return nil
		}
	}
	return nil
}

// clickSkew is how far after a sale a click may be recorded and still
// count: the provider's clock and ours differ.
const clickSkew = 5 * time.Minute

// partnerBy returns the partner one attribution source credits, or "".
func (a *applier) partnerBy(ctx context.Context, source string, prog *Program, c *Conversion) (string, error) {
	switch source {
	case SourceClick:
		if c.Hints.ClickID == "" {
			return "", nil
		}
		clicks, err := a.tx.VisitorClicks(ctx, c.ProgramID, c.Hints.ClickID)
		if err != nil {
			return "", err
		}
		var pick *Click
		for _, k := range clicks { // oldest first
			if k.CreatedAt.After(c.OccurredAt.Add(clickSkew)) || c.OccurredAt.Sub(k.CreatedAt) > prog.Cookie() {
				continue // after the sale, or outside the referral window
			}
			if pick == nil || !prog.FirstTouch() {
				pick = k
			}
		}
		if pick != nil {
			return pick.PartnerID, nil
		}
	case SourcePartnerCode:
		if c.Hints.PartnerCode == "" {
			return "", nil
		}
		p, err := a.tx.FindPartnerByCode(ctx, c.ProgramID, c.Hints.PartnerCode)
		if err == nil {
			return p.ID, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("finding partner by code: %w", err)
		}
	case SourcePromoCode:
		for _, code := range c.Hints.PromoCodes {
			p, err := a.tx.FindPromoCode(ctx, c.ProgramID, code)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return "", fmt.Errorf("finding promo code: %w", err)
			}
			if p.ActiveAt(c.OccurredAt) {
				return p.PartnerID, nil
			}
		}
	case SourceCustomer:
		pid, at, err := a.tx.CustomerBinding(ctx, c.ProgramID, c.Provider, c.Customer.ProviderCustomerID)
		if err != nil {
			return "", err
		}
		if pid != "" && (prog.LifetimeMonths == 0 || c.OccurredAt.Before(at.AddDate(0, prog.LifetimeMonths, 0))) {
			return pid, nil
		}
	}
	return "", nil
}

// joinParked attaches refunds that arrived before their sale and returns
// them.
func (a *applier) joinParked(ctx context.Context, c *Conversion) ([]*Refund, error) {
	parked, err := a.tx.ParkedRefunds(ctx, c.ProgramID, c.Provider)
	if err != nil {
		return nil, fmt.Errorf("listing parked refunds: %w", err)
	}
	var joined []*Refund
	for _, r := range parked {
		if !slices.ContainsFunc(r.OriginalKeys, func(k string) bool { return slices.Contains(c.Keys, k) }) {
			continue
		}
		if r.Currency != "" && c.Currency != "" && r.Currency != c.Currency {
			continue // stays parked, visible to operators: it cannot count in another currency
		}
		// The join sets only the conversion: the refund's facts are read
		// back as they are now, not as they were listed.
		stored, err := a.tx.JoinRefund(ctx, r.ID, c.ID)
		if errors.Is(err, ErrNotFound) {
			continue // joined meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("joining parked refund %s: %w", r.ID, err)
		}
		joined = append(joined, stored)
	}
	return joined, nil
}

// refund records a refund or dispute fact, parks it when its sale is not
// known yet, and settles the conversion otherwise.
func (a *applier) refund(ctx context.Context, r *Refund, eventType string) error {
	keys := uniqueKeys(r.OriginalKeys)
	if len(keys) == 0 || r.ExternalID == "" {
		return fmt.Errorf("refund without payment keys or id: %w", ErrUnparsable)
	}
	r.OriginalKeys = keys
	r.ID = NewID("rfd")
	r.ProgramID, r.SourceID, r.Provider = a.src.ProgramID, a.src.ID, a.src.Provider
	r.OccurredAt = r.OccurredAt.UTC()
	if err := a.tx.LockKeys(ctx, a.src.ProgramID, a.src.Provider, keys); err != nil {
		return fmt.Errorf("locking conversion keys: %w", err)
	}
	conv, err := a.tx.FindConversion(ctx, a.src.ProgramID, a.src.Provider, keys)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("finding conversion: %w", err)
	}
	if conv != nil && err == nil {
		if r.Currency != "" && conv.Currency != "" && r.Currency != conv.Currency {
			return fmt.Errorf("%s %s is in %s but its conversion %s is in %s: %w",
				r.Kind, r.ExternalID, r.Currency, conv.ID, conv.Currency, ErrUnparsable)
		}
		r.ConversionID = conv.ID
	} else {
		conv = nil
	}
	stored, changed, err := a.tx.UpsertRefund(ctx, r)
	if err != nil {
		return fmt.Errorf("storing refund: %w", err)
	}
	if conv == nil {
		return nil // parked until the sale arrives
	}
	if err := a.addAliases(ctx, conv, keys); err != nil {
		return err
	}
	joined, err := a.joinParked(ctx, conv)
	if err != nil {
		return err
	}
	if !changed && len(joined) == 0 {
		return nil
	}
	moved, err := a.settle(ctx, conv, false, nil)
	if err != nil {
		return err
	}
	if changed && (moved || eventType == EventConversionDisputed) {
		if err := a.emit(ctx, eventType, conv.PartnerID, map[string]any{"conversion": conv, "refund": stored}); err != nil {
			return err
		}
	}
	return a.emitJoined(ctx, conv, joined)
}

// refundTotals computes what is currently refunded of c, in money and in
// commission-base terms, from its refunds and chargebacks. Cumulative
// figures (one per charge) and individual refunds describe the same money,
// so the larger of the two sums counts; any chargeback whose funds are
// withdrawn counts as a full refund.
func refundTotals(c *Conversion, rs []*Refund) (amount, base int64) {
	var cum, ind, indKnownBase, indUnknown, lapsed int64
	var cumAt time.Time
	for _, r := range rs {
		if r.Cumulative && r.Counts() && r.OccurredAt.After(cumAt) {
			cumAt = r.OccurredAt
		}
	}
	for _, r := range rs {
		if !r.Counts() {
			// A refund that failed after the latest running total was
			// reported is still inside that total: take it out.
			if !r.Cumulative && (r.Status == RefundFailed || r.Status == RefundCanceled) && r.OccurredAt.After(cumAt) {
				lapsed += r.AmountMinor
			}
			continue
		}
		switch {
		case r.Kind == RefundKindChargeback:
			return c.GrossMinor, c.BaseMinor
		case r.Cumulative:
			cum += r.AmountMinor
		default:
			ind += r.AmountMinor
			if r.BaseMinor != nil {
				indKnownBase += *r.BaseMinor
			} else {
				indUnknown += r.AmountMinor
			}
		}
	}
	prorate := func(x int64) int64 {
		if c.GrossMinor <= 0 {
			return 0
		}
		return MulDivRound(x, c.BaseMinor, c.GrossMinor)
	}
	amount = min(max(max(cum-lapsed, 0), ind), c.GrossMinor)
	if ind > 0 && ind >= cum-lapsed {
		// Refunds with a merchandise split count with it; the others are
		// prorated.
		base = indKnownBase + prorate(indUnknown)
	} else {
		base = prorate(amount)
	}
	if amount >= c.GrossMinor && c.GrossMinor > 0 {
		base = c.BaseMinor
	}
	return amount, min(max(base, 0), c.BaseMinor)
}

// settle brings the conversion's refunded totals and its commission's
// ledger to their cumulative targets. Each entry books the difference
// between a target and what is booked, under a key unique per commission,
// so replays book nothing. It reports whether refunded totals moved.
//
// created says this event inserted c, with everything but its refunded
// totals: it has no commission yet, and when no parked refund joined it
// (joined is empty), no refunds either: nothing to read or update.
func (a *applier) settle(ctx context.Context, c *Conversion, created bool, joined []*Refund) (bool, error) {
	bare := created && len(joined) == 0
	var rs []*Refund
	if !bare {
		var err error
		if rs, err = a.tx.ConversionRefunds(ctx, c.ID); err != nil {
			return false, fmt.Errorf("listing conversion refunds: %w", err)
		}
	}
	amount, base := refundTotals(c, rs)
	moved := amount != c.RefundedMinor || base != c.RefundedBaseMinor
	c.RefundedMinor, c.RefundedBaseMinor = amount, base
	if !bare || moved {
		if err := a.tx.UpdateConversion(ctx, c); err != nil {
			return false, fmt.Errorf("updating conversion: %w", err)
		}
	}
	if c.PartnerID == "" {
		return moved, nil
	}
	var com *Commission
	var err error = ErrNotFound
	if !created {
		com, err = a.tx.GetCommission(ctx, c.ID)
	}
	newCommission := false
	switch {
	case errors.Is(err, ErrNotFound):
		com, err = a.newCommission(ctx, c)
		if err != nil {
			return false, err
		}
		// The earned entry is stored with the commission.
		if earned := com.Terms.earned(c.BaseMinor, com.RateBPS); earned != 0 {
			com.Entries = append(com.Entries, a.entry(com, EntryEarned, "earned", earned))
			com.NetMinor += earned
		}
		if err := a.tx.InsertCommission(ctx, com); err != nil {
			return false, fmt.Errorf("inserting commission: %w", err)
		}
		newCommission = true
	case err != nil:
		return false, fmt.Errorf("loading commission: %w", err)
	default:
		if err := a.redecide(ctx, c, com); err != nil {
			return false, err
		}
	}
	var earnedBooked, reversedBooked int64
	for _, e := range com.Entries {
		switch e.Type {
		case EntryEarned:
			earnedBooked += e.AmountMinor
		case EntryReversal, EntryRestore, EntryAdjusted:
			reversedBooked -= e.AmountMinor
		}
	}
	earned := com.Terms.earned(c.BaseMinor, com.RateBPS)
	var reversed int64
	if c.BaseMinor > 0 {
		reversed = MulDivRound(earned, min(base, c.BaseMinor), c.BaseMinor)
	}
	book := func(typ, key string, amount int64) error {
		e := a.entry(com, typ, key, amount)
		ok, err := a.tx.InsertEntry(ctx, &e)
		if err != nil {
			return fmt.Errorf("booking %s entry: %w", typ, err)
		}
		if ok {
			com.Entries = append(com.Entries, e)
			com.NetMinor += amount
		}
		return nil
	}
	if d := earned - earnedBooked; d != 0 {
		key := "earned"
		if earnedBooked != 0 {
			a.bookings++ // the terms changed: book the difference
			key = fmt.Sprintf("earned:%s:%d", a.ev.ID, a.bookings)
		}
		if err := book(EntryEarned, key, d); err != nil {
			return false, err
		}
	}
	var reversal int64
	if d := reversed - reversedBooked; d > 0 {
		reversal = d
		a.bookings++
		typ := EntryReversal
		if com.Status == CommissionPaid {
			typ = EntryAdjusted // after payment: carried to the next payout
		}
		if err := book(typ, fmt.Sprintf("reversal:%s:%d", a.ev.ID, a.bookings), -d); err != nil {
			return false, err
		}
	} else if d < 0 {
		a.bookings++
		typ := EntryRestore
		if com.Status == CommissionPaid {
			typ = EntryAdjusted
		}
		if err := book(typ, fmt.Sprintf("restore:%s:%d", a.ev.ID, a.bookings), -d); err != nil {
			return false, err
		}
	}
	if newCommission {
		if err := a.emit(ctx, EventCommissionCreated, com.PartnerID, com); err != nil {
			return false, err
		}
	}
	if reversal > 0 {
		data := map[string]any{"commission": com, "reversed_minor": reversal, "conversion_id": c.ID}
		if err := a.emit(ctx, EventCommissionReversed, com.PartnerID, data); err != nil {
			return false, err
		}
	}
	return moved, nil
}

// decideTerms picks a conversion's commission terms: the most specific
// matching rule (or the program's default rate), its scope, recurring limit
// and cap, and a hold for review when the customer is the partner.
func (a *applier) decideTerms(ctx context.Context, c *Conversion) (*Program, int64, CommissionTerms, error) {
	prog, err := a.tx.GetProgram(ctx, c.ProgramID)
	if err != nil {
		return nil, 0, CommissionTerms{}, fmt.Errorf("loading program: %w", err)
	}
	partner, err := a.tx.GetPartner(ctx, c.ProgramID, c.PartnerID)
	if err != nil {
		return nil, 0, CommissionTerms{}, fmt.Errorf("loading partner: %w", err)
	}
	rules, err := a.tx.ListRules(ctx, c.ProgramID)
	if err != nil {
		return nil, 0, CommissionTerms{}, err
	}
	var subStart time.Time
	if c.SubscriptionID != "" {
		if subStart, err = a.tx.SubscriptionStart(ctx, c.ProgramID, c.Provider, c.SubscriptionID); err != nil {
			return nil, 0, CommissionTerms{}, err
		}
	}
	rate, terms := chooseTerms(rules, prog, c, partner, subStart)
	terms.AttributionReason = c.AttributedBy
	if partner.Email != "" && c.Customer.EmailHash != "" && EmailHash(partner.Email) == c.Customer.EmailHash {
		terms.Held = true
		terms.HeldReason = "self-referral: the customer's email is the partner's"
	}
	return prog, rate, terms, nil
}

// newCommission builds a conversion's commission on its terms.
func (a *applier) newCommission(ctx context.Context, c *Conversion) (*Commission, error) {
	prog, rate, terms, err := a.decideTerms(ctx, c)
	if err != nil {
		return nil, err
	}
	status := CommissionPending
	if terms.Held {
		status = CommissionHeld
	}
	return &Commission{
		ID: NewID("com"), ProgramID: c.ProgramID, ConversionID: c.ID, PartnerID: c.PartnerID,
		Status: status, RateBPS: rate, Currency: c.Currency, Terms: terms,
		Test: !c.Livemode, HoldUntil: c.OccurredAt.Add(time.Duration(prog.HoldDays) * 24 * time.Hour),
		CreatedAt: a.s.cfg.Now().UTC(),
	}, nil
}

// entry is a new ledger entry of com.
func (a *applier) entry(com *Commission, typ, key string, amount int64) LedgerEntry {
	return LedgerEntry{
		ID: NewID("ent"), ProgramID: com.ProgramID, CommissionID: com.ID, Key: key,
		Type: typ, AmountMinor: amount, Currency: com.Currency, CreatedAt: a.s.cfg.Now().UTC(),
	}
}

// redecide brings an unapproved commission's terms up to date when a later
// event of its conversion added what decides them; settle then books the
// difference.
func (a *applier) redecide(ctx context.Context, c *Conversion, com *Commission) error {
	if !a.recheck || (com.Status != CommissionPending && com.Status != CommissionHeld) {
		return nil
	}
	_, rate, terms, err := a.decideTerms(ctx, c)
	if err != nil {
		return err
	}
	if terms.Held {
		com.Status = CommissionHeld
	}
	terms.AttributionReason = com.Terms.AttributionReason
	if rate == com.RateBPS && reflect.DeepEqual(terms, com.Terms) && !(terms.Held && com.Status != CommissionHeld) {
		return nil
	}
	com.RateBPS, com.Terms = rate, terms
	return a.tx.UpdateCommissionTerms(ctx, com)
}

// emit writes an outbound event and its deliveries to the outbox.
func (a *applier) emit(ctx context.Context, typ, partnerID string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", typ, err)
	}
	e := &Event{ID: NewID("evt"), ProgramID: a.src.ProgramID, Type: typ, PartnerID: partnerID, Data: b, CreatedAt: a.s.cfg.Now().UTC()}
	ds, err := a.tx.InsertEvent(ctx, e)
	if err != nil {
		return fmt.Errorf("writing %s event: %w", typ, err)
	}
	a.deliveries = append(a.deliveries, ds...)
	for range ds {
		a.events = append(a.events, e)
	}
	return nil
}
