package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// Tx is the transaction in which one inbound event is applied (see
// DB.InTx). It is not safe for concurrent use.
type Tx struct {
	c *conn
	// held is the advisory locks taken (PostgreSQL): a lock is taken once.
	held map[int64]bool
	// absent is the payment keys, by lock id, that no conversion had once
	// they were locked (probed by LockKeySets with other events' keys, or
	// not found by FindConversion): under their locks no other transaction
	// can add them, so FindConversion answers for them without a query,
	// and InsertConversion may keep a conversion of them pending, until
	// this transaction adds one.
	absent map[int64]bool
	// byCode caches FindPartnerByCode by program|code (nil: no partner).
	byCode map[string]*hub.Partner
	// parked caches ParkedRefunds by program|provider.
	parked map[string]*parkedRefunds
	// later is what is written just before COMMIT.
	later deferred
	// gen holds what the transaction read of programs, sources, partners,
	// rules and endpoints, from its first use: a generation of cache (kept
	// across transactions, configCache) when cache is set, else its own.
	cache *configCache
	gen   *configGen
}

// GetProgram returns a program (a copy: it is read once per transaction).
func (tx *Tx) GetProgram(ctx context.Context, id string) (*hub.Program, error) {
	p, err := fromGen(ctx, tx, func(g *configGen) map[string]*hub.Program { return g.programs }, id,
		func() (*hub.Program, error) { return tx.c.getProgram(ctx, id) })
	if err != nil {
		return nil, err
	}
	cp := *p
	return &cp, nil
}

// LockKeys takes a transaction-scoped advisory lock per key on PostgreSQL,
// in ascending order of the lock ids, so two transactions sharing a key
// run one after the other and never deadlock on each other. On SQLite the
// single writer serializes transactions already, and LockKeys does nothing.
func (tx *Tx) LockKeys(ctx context.Context, programID, provider string, keys []string) error {
	return tx.LockKeySets(ctx, []hub.KeySet{{ProgramID: programID, Provider: provider, Keys: keys}})
}

// LockKeySets takes the locks of every set at once, in one statement and
// in ascending order of the lock ids (locks the transaction holds already
// are skipped), so a transaction that applies several events locks all
// their payments before touching any.
func (tx *Tx) LockKeySets(ctx context.Context, sets []hub.KeySet) error {
	if !tx.c.pg {
		return nil
	}
	var ids []int64
	for _, s := range sets {
		for _, k := range s.Keys {
			if id := LockID(s.ProgramID, s.Provider, k); !tx.held[id] {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	// The sorted subquery feeds the function row by row, in order.
	if _, err := tx.c.exec(ctx, `SELECT count(pg_advisory_xact_lock(k))
		FROM (SELECT k FROM unnest(?::bigint[]) AS u (k) ORDER BY k) AS s`, ids); err != nil {
		return fmt.Errorf("locking conversion keys: %w", err)
	}
	if tx.held == nil {
		tx.held = make(map[int64]bool, len(ids))
	}
	for _, id := range ids {
		tx.held[id] = true
	}
	if len(sets) > 1 {
		return tx.probeKeys(ctx, sets)
	}
	return nil
}

// probeKeys records which keys of sets no conversion has (see Tx.absent),
// in one statement. It runs after the keys are locked, in a statement of
// its own, so that it sees every alias committed before the locks were
// granted.
func (tx *Tx) probeKeys(ctx context.Context, sets []hub.KeySet) error {
	var programs, providers, keys []string
	var ids []int64
	for _, s := range sets {
		for _, k := range s.Keys {
			programs, providers, keys = append(programs, s.ProgramID), append(providers, s.Provider), append(keys, k)
			ids = append(ids, LockID(s.ProgramID, s.Provider, k))
		}
	}
	// LIMIT 1 keeps each probe a lookup of the primary key, whatever the
	// table's statistics say. The found keys come back by position.
	found, err := list(ctx, tx.c, `SELECT u.n FROM unnest(?::text[], ?::text[], ?::text[]) WITH ORDINALITY AS u (p, v, k, n)
		CROSS JOIN LATERAL (SELECT 1 FROM conversion_keys AS c
			WHERE c.program_id = u.p AND c.provider = u.v AND c.key = u.k LIMIT 1) AS f`,
		[]any{programs, providers, keys}, func(s scanner) (int, error) {
			var n int
			return n, s.Scan(&n)
		})
	if err != nil {
		return fmt.Errorf("probing conversion keys: %w", err)
	}
	if tx.absent == nil {
		tx.absent = make(map[int64]bool, len(ids))
	}
	for _, id := range ids {
		tx.absent[id] = true
	}
	for _, n := range found {
		delete(tx.absent, ids[n-1])
	}
	return nil
}

// allAbsent reports whether every key is known to name no conversion.
func (tx *Tx) allAbsent(programID, provider string, keys []string) bool {
	if len(tx.absent) == 0 || len(keys) == 0 {
		return false
	}
	for _, k := range keys {
		if !tx.absent[LockID(programID, provider, k)] {
			return false
		}
	}
	return true
}

// markAbsent records that no conversion has keys, found by a statement
// that ran after their locks were taken: under the locks no other
// transaction can add them. Keys whose locks this transaction does not
// hold are not recorded.
func (tx *Tx) markAbsent(programID, provider string, keys []string) {
	ids := make([]int64, len(keys))
	for i, k := range keys {
		if ids[i] = LockID(programID, provider, k); !tx.held[ids[i]] {
			return
		}
	}
	if tx.absent == nil {
		tx.absent = make(map[int64]bool, len(ids))
	}
	for _, id := range ids {
		tx.absent[id] = true
	}
}

// forgetAbsent is called before keys are added to a conversion.
func (tx *Tx) forgetAbsent(programID, provider string, keys []string) {
	for _, k := range keys {
		delete(tx.absent, LockID(programID, provider, k))
	}
}

// LockID is the 64-bit PostgreSQL advisory lock id that Tx.LockKeys takes
// for one payment key. In pg_locks it shows as classid = the high 32 bits,
// objid = the low 32 bits, objsubid = 1.
func LockID(programID, provider, key string) int64 {
	h := sha256.Sum256([]byte(programID + "|" + provider + "|" + key))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// FinishInbound sets an inbound event's final status, error and processed
// time. It fails with hub.ErrAlreadyFinished unless the event is still
// received, so two runs of one event cannot both apply it. For an event
// this transaction claimed (ClaimInbound), the row is locked and received:
// the state is written with the transaction's other deferred rows.
func (tx *Tx) FinishInbound(ctx context.Context, id, status, lastErr string, at time.Time) error {
	if c := tx.claimOf(id); c != nil {
		c.finished, c.status, c.lastErr, c.processedAt = true, status, lastErr, at
		return nil
	}
	n, err := tx.c.execN(ctx,
		"UPDATE inbound_events SET status = ?, last_error = ?, processed_at = ? WHERE id = ? AND status = ?",
		status, lastErr, tx.c.ts(at), id, hub.InboundReceived)
	if err != nil {
		return fmt.Errorf("finishing inbound event %s: %w", id, err)
	}
	if n == 0 {
		var st string
		err := tx.c.get(ctx, "SELECT status FROM inbound_events WHERE id = ?", []any{id}, &st)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("finishing inbound event %s: %w", id, hub.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("finishing inbound event %s: %w", id, err)
		}
		return fmt.Errorf("finishing inbound event %s (%s): %w", id, st, hub.ErrAlreadyFinished)
	}
	return nil
}
