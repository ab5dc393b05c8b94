package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TaskApprove is the periodic job that approves commissions past their
// hold.
const TaskApprove = "hub:approve"

// Ledger entry types booked by approval and payouts. Both are zero-amount
// markers: money moves only through earned, reversal and restore entries.
const (
	EntryApproved = "approved"
	EntryPaid     = "paid"
)

// LedgerStore persists approvals and payout runs. *store.DB implements
// it; the Service finds it on its Store.
type LedgerStore interface {
	// InLedgerTx runs fn in one transaction, committing when fn returns
	// nil.
	InLedgerTx(ctx context.Context, fn func(tx LedgerTx) error) error
	// DueCommissions lists the ids of pending, non-test commissions of
	// every program whose hold ended at or before t, in id order, after
	// afterID, at most limit.
	DueCommissions(ctx context.Context, t time.Time, afterID string, limit int) ([]string, error)
	// ListPayouts lists a program's payout runs, newest first, with their
	// lines.
	ListPayouts(ctx context.Context, programID string, p Page) ([]*Payout, error)
	// GetPayout returns a payout run with its lines, or ErrNotFound.
	GetPayout(ctx context.Context, programID, id string) (*Payout, error)
}

// LedgerTx is the transaction of one approval or one payout step.
type LedgerTx interface {
	GetProgram(ctx context.Context, id string) (*Program, error)
	// LockCommission returns a commission with its entries and NetMinor,
	// locked FOR UPDATE, or ErrNotFound.
	LockCommission(ctx context.Context, id string) (*Commission, error)
	SetCommissionStatus(ctx context.Context, id, status string) error
	// BookEntry inserts e unless (commission_id, key) exists, marked paid by
	// payoutID ("" for unpaid); it reports whether it inserted.
	BookEntry(ctx context.Context, e *LedgerEntry, payoutID string) (bool, error)
	// InsertEvent is Tx.InsertEvent: the outbox.
	InsertEvent(ctx context.Context, e *Event) ([]*Delivery, error)

	// PayableEntries lists the program's unpaid entries (no payout id) of
	// approved and paid, non-test commissions.
	PayableEntries(ctx context.Context, programID string) ([]PayableEntry, error)
	// InsertPayout stores a draft run with its lines and pins entryIDs.
	InsertPayout(ctx context.Context, p *Payout, entryIDs []string) error
	// LockPayout returns a payout run (without lines) locked FOR UPDATE,
	// or ErrNotFound.
	LockPayout(ctx context.Context, programID, id string) (*Payout, error)
	// PayEntries marks the entries the run pinned with its id. It fails
	// with ECONFLICT when another run paid one of them already.
	PayEntries(ctx context.Context, payoutID string) error
	// SettledCommissions returns, locked and with their entries, the
	// commissions that have an entry paid by the run and no unpaid entry.
	SettledCommissions(ctx context.Context, payoutID string) ([]*Commission, error)
	// ConfirmPayout saves p's status, confirmer and confirmation time.
	ConfirmPayout(ctx context.Context, p *Payout) error
}

// PayableEntry is one unpaid ledger entry that a payout run may include.
type PayableEntry struct {
	EntryID      string
	CommissionID string
	PartnerID    string
	Currency     string
	AmountMinor  int64
}

// ledger returns the Store as a LedgerStore.
func (s *Service) ledger() (LedgerStore, error) {
	ls, ok := s.st.(LedgerStore)
	if !ok {
		return nil, errors.New("hub: the store does not keep payouts (LedgerStore)")
	}
	return ls, nil
}

// Approve approves every pending, non-test commission whose hold has
// passed: in one transaction per commission it books a zero-amount
// approved entry, sets the status and writes a commission.approved event.
// A fully reversed commission is approved too and pays nothing. Commissions
// held for review (status held) and test-mode ones are never approved. It
// is the periodic hub:approve job; running it twice changes nothing.
func (s *Service) Approve(ctx context.Context) error {
	ls, err := s.ledger()
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	approved, after := 0, ""
	var errs []error
	for {
		ids, err := ls.DueCommissions(ctx, now, after, 200)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing commissions due for approval: %w", err))
			break
		}
		for _, id := range ids {
			ok, err := s.approveOne(ctx, ls, id, now)
			if err != nil {
				// One commission that cannot be approved does not hold
				// back the others; the next run tries it again.
				errs = append(errs, err)
				if len(errs) >= 10 || ctx.Err() != nil {
					return errors.Join(errs...)
				}
			}
			if ok {
				approved++
			}
		}
		if len(ids) < 200 {
			break
		}
		after = ids[len(ids)-1]
	}
	if approved > 0 {
		s.log.DebugContext(ctx, "approved commissions past their hold", "commissions", approved)
	}
	return errors.Join(errs...)
}

// approveOne approves one commission if it is still due, and reports
// whether it did.
func (s *Service) approveOne(ctx context.Context, ls LedgerStore, id string, now time.Time) (bool, error) {
	var ds []*Delivery
	done := false
	err := ls.InLedgerTx(ctx, func(tx LedgerTx) error {
		ds, done = nil, false
		com, err := tx.LockCommission(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if com.Status != CommissionPending || com.Test || com.HoldUntil.After(now) {
			return nil // approved by another run, held, or not due
		}
		e := &LedgerEntry{
			ID: NewID("ent"), ProgramID: com.ProgramID, CommissionID: com.ID, Key: EntryApproved,
			Type: EntryApproved, Currency: com.Currency, CreatedAt: now,
		}
		ok, err := tx.BookEntry(ctx, e, "")
		if err != nil {
			return err
		}
		if ok {
			com.Entries = append(com.Entries, *e)
		}
		if err := tx.SetCommissionStatus(ctx, com.ID, CommissionApproved); err != nil {
			return err
		}
		com.Status = CommissionApproved
		ds, err = emitLedgerEvent(ctx, tx, com.ProgramID, EventCommissionApproved, com.PartnerID, com, now)
		done = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("approving commission %s: %w", id, err)
	}
	s.enqueueDeliveries(ctx, ds)
	return done, nil
}

// emitLedgerEvent writes an outbound event and its deliveries to the
// outbox, like the applier's emit.
func emitLedgerEvent(ctx context.Context, tx LedgerTx, programID, typ, partnerID string, data any, now time.Time) ([]*Delivery, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encoding %s event: %w", typ, err)
	}
	e := &Event{ID: NewID("evt"), ProgramID: programID, Type: typ, PartnerID: partnerID, Data: b, CreatedAt: now}
	ds, err := tx.InsertEvent(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("writing %s event: %w", typ, err)
	}
	return ds, nil
}

// enqueueDeliveries queues the first attempt of deliveries written by a
// committed transaction. A queue failure is logged: the sweeper enqueues
// the rows later.
func (s *Service) enqueueDeliveries(ctx context.Context, ds []*Delivery) {
	now := s.cfg.Now()
	for _, d := range ds {
		if err := s.q.EnqueueDelivery(ctx, d.ID, 1, now); err != nil {
			s.log.WarnContext(ctx, "queue unavailable; the sweeper will enqueue the delivery", "delivery_id", d.ID, "error", err)
		}
	}
}
