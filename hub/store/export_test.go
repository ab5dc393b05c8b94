package store

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
)

// CountStatements makes db count the statements it sends (BEGIN and
// COMMIT included) on its own as well, for tests that run in parallel
// with others sharing the process's counter. Call it before db is used
// concurrently.
func CountStatements(db *DB) func() int64 {
	c := &statementCount{next: db.c.stmts}
	db.c.stmts = c
	return c.n.Load
}

type statementCount struct {
	n    atomic.Int64
	next counter
}

func (c *statementCount) Inc() {
	c.n.Add(1)
	if c.next != nil {
		c.next.Inc()
	}
}

// HotPlans returns the plans the dispatcher's connections use for their
// statements, as EXPLAIN EXECUTE prints them on one of those connections
// (PostgreSQL only). Under force_generic_plan they are the generic plans
// every later execution reuses.
func HotPlans(ctx context.Context, db *DB) (map[string]string, error) {
	c, err := db.hotDB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stmts := []struct{ name, sql, args string }{
		{"delivery_targets", deliveryTargetsSQL + "d.id = ANY(?::text[])", `'{dlv_a,dlv_b}'`},
		{"record_attempts", recordAttemptsSQL,
			`'{dlv_a}', '{delivered}', '{1}', '{2026-01-01}', '{""}', '{1}', '{att_a}', '{200}', '{5}', '{""}', '{ok}', '{2026-01-01}', '{"{}"}', now()`},
		{"defer_deliveries", deferDeliveriesSQL, `now(), '{dlv_a}', '{1}', '{2026-01-01}', 'pending'`},
		{"claim_inbound", claimSQL("id = ANY(?::text[])", " FOR UPDATE"), `'{inb_a,inb_b}', 'received'`},
		{"flush", flushSQL, strings.Repeat(`'{}', `, strings.Count(pendingCTEs, "?")) + `'{evt_a}', '{prg_a}', '{conversion.created}', '{NULL}', '{"{}"}', '{2026-01-01}', ` +
			`'{dlv_a}', '{prg_a}', '{evt_a}', '{ep_a}', '{conversion.created}', '{pending}', '{0}', '{2026-01-01}', '{""}', '{2026-01-01}', '{2026-01-01}', ` +
			`'{inb_a}', '{conversion}', '{cv_a}', ` +
			`'{inb_a}', '{processed}', '{""}', '{2026-01-01}', '{NULL}', '{NULL}'`},
	}
	out := map[string]string{}
	for _, s := range stmts {
		if _, err := c.ExecContext(ctx, "PREPARE hot_"+s.name+" AS "+db.hot.rebind(s.sql)); err != nil {
			return nil, fmt.Errorf("preparing %s: %w", s.name, err)
		}
		rows, err := c.QueryContext(ctx, "EXPLAIN EXECUTE hot_"+s.name+"("+s.args+")")
		if err != nil {
			return nil, fmt.Errorf("explaining %s: %w", s.name, err)
		}
		var lines []string
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				rows.Close()
				return nil, err
			}
			lines = append(lines, l)
		}
		rows.Close()
		if _, err := c.ExecContext(ctx, "DEALLOCATE hot_"+s.name); err != nil {
			return nil, err
		}
		out[s.name] = strings.Join(lines, "\n")
	}
	return out, nil
}
