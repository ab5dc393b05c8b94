// Package store persists everything in package hub in SQL. One
// implementation serves two dialects through database/sql: SQLite (the
// embedded default, one file under the data directory) and PostgreSQL
// (production). Migrations for both are embedded and applied with Migrate.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/metrics"
)

// Dialect names returned by DB.Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Config configures Open.
type Config struct {
	// URL selects the database. "" (the default) is the SQLite file
	// partnerhub.db under DataDir; "sqlite://" followed by a path is that
	// SQLite file; a URL starting with postgres:// or postgresql:// is a
	// PostgreSQL database (pgx syntax, e.g. ?sslmode=disable or
	// ?search_path=tenant).
	URL string
	// DataDir is where the default SQLite file lives. "" means "./data".
	// It is created (mode 0700) when missing. Unused for PostgreSQL.
	DataDir string
	// Cipher encrypts secrets at rest (Source.Secret, Source.PreviousSecret,
	// Endpoint.Secret). Required: Open fails without it.
	Cipher hub.Cipher
}

// DB is a hub.Store on one SQL database.
type DB struct {
	db      *sql.DB
	c       *conn
	dialect string
	// hot (on hotDB) runs the dispatcher's batched statements and the
	// transactions that apply inbound events (see hotParams); on SQLite
	// they are c and db.
	hot   *conn
	hotDB *sql.DB
	// config is what InProcessTx transactions keep of programs, sources,
	// partners, rules and endpoints between them.
	config configCache
}

// hotParams are the session settings of the PostgreSQL connections that
// run the dispatcher's statements (the batched loads and writes of
// deliveries by primary key, tens of thousands a minute under load) and
// the transactions that apply inbound events (lookups by key, batch
// writes). Without them PostgreSQL plans the statements that take arrays
// again at every execution, a third of its CPU, and may switch to a
// generic plan made while the tables were nearly empty, which scans them.
// Here a generic plan is made once per connection, with scans and hash
// or merge joins ruled out, so it is the index lookup that stays right at
// any table size. Operator and API queries keep the default planning on
// the main pool.
var hotParams = map[string]string{
	"plan_cache_mode":  "force_generic_plan",
	"enable_seqscan":   "off",
	"enable_hashjoin":  "off",
	"enable_mergejoin": "off",
}

// hotConns is the size of the hot pool: the dispatcher's loads, records
// and holds run at most outbound.Config.BatchConcurrency (2) at once
// each, and processing at most two transactions at once. With the main
// pool's 16, a hub opens at most 26 connections.
const (
	hotConns  = 10
	mainConns = 16
)

var (
	_ hub.Store = (*DB)(nil)
	_ hub.Tx    = (*Tx)(nil)
)

// sqliteFile is the name of the SQLite database under Config.DataDir.
const sqliteFile = "partnerhub.db"

// Open connects to the database cfg names. It does not migrate (see
// Migrate). A PostgreSQL server that cannot be reached does not make Open
// fail: calls answer errors wrapping hub.ErrUnavailable until it is back.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.Cipher == nil {
		return nil, errors.New("opening store: Config.Cipher is required")
	}
	switch {
	case strings.HasPrefix(cfg.URL, "postgres://"), strings.HasPrefix(cfg.URL, "postgresql://"):
		return openPostgres(cfg)
	case cfg.URL == "":
		dir := cfg.DataDir
		if dir == "" {
			dir = "./data"
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("opening store: creating data directory: %w", err)
		}
		return openSQLite(ctx, cfg, filepath.Join(dir, sqliteFile))
	case strings.HasPrefix(cfg.URL, "sqlite://"):
		return openSQLite(ctx, cfg, strings.TrimPrefix(cfg.URL, "sqlite://"))
	}
	scheme, _, _ := strings.Cut(cfg.URL, ":")
	return nil, fmt.Errorf("opening store: unsupported database URL scheme %q (want postgres:// or sqlite://)", scheme)
}

func openPostgres(cfg Config) (*DB, error) {
	if _, err := url.Parse(cfg.URL); err != nil {
		// url.Error repeats the URL, password included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("opening store: parsing DATABASE_URL: %w", err)
	}
	pcfg, err := pgx.ParseConfig(cfg.URL)
	if err != nil {
		// The error quotes the URL: say which setting is wrong without it.
		msg := "invalid URL"
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) {
			// "cannot parse `<url>`: <what is wrong> (<cause>)"
			if _, after, ok := strings.Cut(pe.Error(), "`: "); ok && !strings.Contains(after, pe.ConnString) {
				msg = after
			}
		}
		return nil, fmt.Errorf("opening store: parsing DATABASE_URL: %s", msg)
	}
	sdb := stdlib.OpenDB(*pcfg)
	// Every open connection may stay idle: closing one that a burst
	// opened costs a PostgreSQL backend's exit, and the next burst a
	// fork and a cold catalog cache. Idle ones close after five minutes.
	sdb.SetMaxOpenConns(mainConns)
	sdb.SetMaxIdleConns(mainConns)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	db := newDB(sdb, DialectPostgres, cfg.Cipher)

	hcfg := pcfg.Copy()
	for k, v := range hotParams {
		hcfg.RuntimeParams[k] = v
	}
	db.hotDB = stdlib.OpenDB(*hcfg)
	db.hotDB.SetMaxOpenConns(hotConns)
	db.hotDB.SetMaxIdleConns(hotConns)
	db.hotDB.SetConnMaxIdleTime(5 * time.Minute)
	hot := *db.c
	hot.q = db.hotDB
	db.hot = &hot
	return db, nil
}

// openSQLite opens path with WAL, a busy timeout and foreign keys, on a
// single connection: that connection is the single writer that serializes
// processing, so code inside InTx must use only its Tx.
func openSQLite(ctx context.Context, cfg Config, path string) (*DB, error) {
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("opening store: invalid SQLite path %q", path)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// BEGIN IMMEDIATE takes the write lock up front, so a transaction
	// never fails half-way when another process (a CLI command) writes.
	q.Set("_txlock", "immediate")
	sdb, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	sdb.SetMaxOpenConns(1)
	sdb.SetMaxIdleConns(1)
	sdb.SetConnMaxLifetime(0)
	sdb.SetConnMaxIdleTime(0)
	db := newDB(sdb, DialectSQLite, cfg.Cipher)
	if err := db.Ping(ctx); err != nil {
		_ = sdb.Close()
		return nil, fmt.Errorf("opening store: %w", err)
	}
	return db, nil
}

func newDB(sdb *sql.DB, dialect string, cipher hub.Cipher) *DB {
	c := &conn{q: sdb, pg: dialect == DialectPostgres, cipher: cipher, now: time.Now, stmts: metrics.SQLStatements(dialect)}
	return &DB{db: sdb, c: c, hot: c, hotDB: sdb, dialect: dialect}
}

// Dialect returns "sqlite" or "postgres".
func (db *DB) Dialect() string { return db.dialect }

// SQL returns the underlying database handle, for tests and operator
// tools. On SQLite it is the single connection: do not hold it inside InTx.
func (db *DB) SQL() *sql.DB { return db.db }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.db.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging database: %w", db.c.classify(err))
	}
	if db.hotDB != db.db {
		// Its connections carry settings of their own (hotParams) that a
		// server or pooler could refuse.
		if err := db.hotDB.PingContext(ctx); err != nil {
			return fmt.Errorf("pinging database (processing connections): %w", db.c.classify(err))
		}
	}
	return nil
}

// Close closes the database.
func (db *DB) Close() error {
	if db.hotDB != db.db {
		_ = db.hotDB.Close()
	}
	return db.db.Close()
}

// InTx runs fn in one transaction, committing when fn returns nil and
// rolling back otherwise (fn's error is returned as is). On SQLite the
// transaction holds the only connection: fn must use tx, never db.
func (db *DB) InTx(ctx context.Context, fn func(tx hub.Tx) error) error {
	return db.inTx(ctx, func(tx *Tx) error { return fn(tx) })
}

// InProcessTx is InTx for applying inbound events: on PostgreSQL it runs
// on the connections whose plans are fixed to index lookups (hotParams).
func (db *DB) InProcessTx(ctx context.Context, fn func(tx hub.Tx) error) error {
	return db.inTxOn(ctx, db.hotDB, &db.config, func(tx *Tx) error { return fn(tx) })
}

func (db *DB) inTx(ctx context.Context, fn func(tx *Tx) error) error {
	return db.inTxOn(ctx, db.db, nil, fn)
}

// inTxOn runs fn in a transaction on sdb, with the shared configuration
// cache when cache is set.
func (db *DB) inTxOn(ctx context.Context, sdb *sql.DB, cache *configCache, fn func(tx *Tx) error) (err error) {
	db.c.count() // BEGIN
	stx, err := sdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", db.c.classify(err))
	}
	tx := &Tx{c: &conn{q: stx, pg: db.c.pg, cipher: db.c.cipher, now: db.c.now, stmts: db.c.stmts}, cache: cache}
	defer func() {
		if p := recover(); p != nil {
			db.c.count() // ROLLBACK
			_ = stx.Rollback()
			panic(p)
		}
	}()
	err = fn(tx)
	if err == nil {
		err = tx.flush(ctx)
	}
	if err != nil {
		db.c.count() // ROLLBACK
		_ = stx.Rollback()
		return err
	}
	db.c.count() // COMMIT
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("committing transaction: %w", db.c.classify(err))
	}
	return nil
}
