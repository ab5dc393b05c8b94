package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/partnerhub/partnerhub/hub"
)

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// conn runs SQL written with ? placeholders on a database or a transaction
// of either dialect, and classifies driver errors.
type conn struct {
	q      querier
	pg     bool
	cipher hub.Cipher
	now    func() time.Time
	// stmts counts the statements sent through this conn (and, for a
	// database's conn, the BEGIN, COMMIT and ROLLBACK of its transactions).
	stmts counter
	// before, when set, runs once before the next statement (a
	// transaction's pending rows: Tx.writePending).
	before func(context.Context) error
}

// counter is what conn needs of a Prometheus counter.
type counter interface{ Inc() }

// count adds one statement to the conn's counter.
func (c *conn) count() {
	if c.stmts != nil {
		c.stmts.Inc()
	}
}

// scanner is a *sql.Rows or anything else that scans one row.
type scanner interface {
	Scan(dest ...any) error
}

// beforeStatement runs and clears c.before.
func (c *conn) beforeStatement(ctx context.Context) error {
	if c.before == nil {
		return nil
	}
	f := c.before
	c.before = nil
	return f(ctx)
}

func (c *conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := c.beforeStatement(ctx); err != nil {
		return nil, err
	}
	c.count()
	r, err := c.q.ExecContext(ctx, c.rebind(query), args...)
	return r, c.classify(err)
}

// execN runs query and returns the number of rows it affected.
func (c *conn) execN(ctx context.Context, query string, args ...any) (int64, error) {
	r, err := c.exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	n, err := r.RowsAffected()
	return n, c.classify(err)
}

func (c *conn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := c.beforeStatement(ctx); err != nil {
		return nil, err
	}
	c.count()
	rows, err := c.q.QueryContext(ctx, c.rebind(query), args...)
	return rows, c.classify(err)
}

// get scans the first row of query into dest, or returns sql.ErrNoRows.
func (c *conn) get(ctx context.Context, query string, args []any, dest ...any) error {
	rows, err := c.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return c.classify(err)
		}
		return sql.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return c.classify(rows.Close())
}

// list runs query and scans every row with scan.
func list[T any](ctx context.Context, c *conn, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := c.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, c.classify(err)
	}
	return out, nil
}

// scanOne returns the first row of query scanned with scan, or an error
// wrapping hub.ErrNotFound.
func scanOne[T any](ctx context.Context, c *conn, query string, args []any, scan func(scanner) (T, error)) (T, error) {
	var zero T
	rows, err := c.query(ctx, query, args...)
	if err != nil {
		return zero, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return zero, c.classify(err)
		}
		return zero, hub.ErrNotFound
	}
	v, err := scan(rows)
	if err != nil {
		return zero, err
	}
	return v, c.classify(rows.Close())
}

// rebind turns ? placeholders into $1, $2… on PostgreSQL. Question marks
// inside quoted literals are left alone.
func (c *conn) rebind(query string) string {
	if !c.pg || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		ch := query[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			}
		case ch == '\'' || ch == '"':
			quote = ch
		case ch == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// forUpdate is the row-locking suffix of a SELECT: FOR UPDATE on
// PostgreSQL, nothing on SQLite (its single writer serializes already).
func (c *conn) forUpdate() string {
	if c.pg {
		return " FOR UPDATE"
	}
	return ""
}

// errConflict and errInvalid mark constraint violations; callers usually
// replace them by a more precise hub.Error.
var (
	errConflict = hub.Errorf(hub.ECONFLICT, "already exists")
	errInvalid  = hub.Errorf(hub.EINVALID, "refers to a row that does not exist")
)

// classify wraps errors that mean the database cannot be reached with
// hub.ErrUnavailable, and constraint violations with an ECONFLICT or
// EINVALID hub.Error. Other errors are returned as they are.
func (c *conn) classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) || errors.Is(err, sql.ErrTxDone) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var he *hub.Error
	if errors.As(err, &he) {
		return err
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		err.Error() == "sql: database is closed" {
		return unavailable(err)
	}
	if c.pg {
		return classifyPostgres(err)
	}
	return classifySQLite(err)
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %w", hub.ErrUnavailable, err)
}

// classifyPostgres treats every error that PostgreSQL itself did not
// answer as a connectivity failure, except database/sql's own usage errors.
func classifyPostgres(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		if strings.HasPrefix(err.Error(), "sql: ") {
			return err
		}
		return unavailable(err)
	}
	switch {
	case pe.Code == "23505": // unique_violation
		return fmt.Errorf("%w: %w", errConflict, err)
	case pe.Code == "23503": // foreign_key_violation
		return fmt.Errorf("%w: %w", errInvalid, err)
	case strings.HasPrefix(pe.Code, "08"), // connection exception
		pe.Code == "57P01", // admin_shutdown
		pe.Code == "57P02", // crash_shutdown
		pe.Code == "57P03", // cannot_connect_now
		pe.Code == "53300", // too_many_connections
		pe.Code == "25006": // read_only_sql_transaction (a standby)
		return unavailable(err)
	}
	return err
}

func classifySQLite(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("%w: %w", errConflict, err)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_BUSY,
		sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY:
		return unavailable(err)
	}
	return err
}

// notFound turns sql.ErrNoRows into hub.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return hub.ErrNotFound
	}
	return err
}

// isConflict reports whether err is a unique violation (see classify).
func isConflict(err error) bool {
	return errors.Is(err, errConflict)
}
