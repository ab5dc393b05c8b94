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
	// What a transaction reads more than once, read once: programs, and
	// the enabled endpoints events fan out to, by program.
	programs  map[string]*hub.Program
	endpoints map[string][]*hub.Endpoint
}

// GetProgram returns a program (a copy: it is read once per transaction).
func (tx *Tx) GetProgram(ctx context.Context, id string) (*hub.Program, error) {
	if p, ok := tx.programs[id]; ok {
		cp := *p
		return &cp, nil
	}
	p, err := tx.c.getProgram(ctx, id)
	if err != nil {
		return nil, err
	}
	if tx.programs == nil {
		tx.programs = map[string]*hub.Program{}
	}
	cp := *p
	tx.programs[id] = &cp
	return p, nil
}

// LockKeys takes a transaction-scoped advisory lock per key on PostgreSQL,
// in ascending order of the lock ids, so two transactions sharing a key
// run one after the other and never deadlock on each other. On SQLite the
// single writer serializes transactions already, and LockKeys does nothing.
func (tx *Tx) LockKeys(ctx context.Context, programID, provider string, keys []string) error {
	if !tx.c.pg {
		return nil
	}
	ids := make([]int64, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, LockID(programID, provider, k))
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for _, id := range ids {
		if _, err := tx.c.exec(ctx, "SELECT pg_advisory_xact_lock(?)", id); err != nil {
			return fmt.Errorf("locking conversion keys: %w", err)
		}
	}
	return nil
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
// received, so two runs of one event cannot both apply it.
func (tx *Tx) FinishInbound(ctx context.Context, id, status, lastErr string, at time.Time) error {
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
