package store

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrations holds one directory of goose SQL migrations per dialect.
//
//go:embed migrations
var migrations embed.FS

// Migrate applies the pending migrations. It is idempotent. On PostgreSQL a
// session advisory lock, one per schema, keeps replicas that start together
// from migrating twice.
func (db *DB) Migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations/"+db.dialect)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	dialect := goose.DialectSQLite3
	var opts []goose.ProviderOption
	if db.dialect == DialectPostgres {
		dialect = goose.DialectPostgres
		var schema string
		if err := db.c.get(ctx, "SELECT COALESCE(current_schema(), '')", nil, &schema); err != nil {
			return fmt.Errorf("migrating: reading schema: %w", err)
		}
		locker, err := lock.NewPostgresSessionLocker(
			lock.WithLockID(migrationLockID(schema)),
			lock.WithLockTimeout(1, 300),
		)
		if err != nil {
			return fmt.Errorf("migrating: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db.db, fsys, opts...)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	// p.Close would close db.db: the provider is simply dropped.
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrating: %w", db.c.classify(err))
	}
	if len(res) > 0 {
		slog.InfoContext(ctx, "migrated database", "dialect", db.dialect,
			"migrations", len(res), "version", res[len(res)-1].Source.Version)
	}
	return nil
}

// migrationLockID is the advisory lock id of migrations in one schema.
func migrationLockID(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("partnerhub migrate|" + schema))
	return int64(h.Sum64())
}
