// Package storetest opens migrated stores for tests of any package: a
// fresh PostgreSQL schema when DATABASE_URL is set, a SQLite file in the
// test's temporary directory otherwise.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
)

// SecretKey is the fixed key of the test Cipher.
const SecretKey = "partnerhub-test-secret-key-0123456789"

// Cipher returns the Cipher stores opened by Open use.
func Cipher(t testing.TB) hub.Cipher {
	t.Helper()
	c, err := hub.NewAESCipher(SecretKey)
	if err != nil {
		t.Fatalf("storetest: creating cipher: %v", err)
	}
	return c
}

// Open returns a migrated, empty store (only the default program exists),
// closed when the test ends. With DATABASE_URL set it lives in a new
// PostgreSQL schema that is dropped when the test ends; otherwise it is a
// SQLite file under t.TempDir().
func Open(t testing.TB) *store.DB {
	t.Helper()
	return OpenURL(t, os.Getenv("DATABASE_URL"))
}

// OpenSQLite returns a migrated SQLite store whatever DATABASE_URL says.
func OpenSQLite(t testing.TB) *store.DB {
	t.Helper()
	return OpenURL(t, "")
}

// OpenURL is Open on an explicit PostgreSQL server URL ("" for SQLite).
func OpenURL(t testing.TB, databaseURL string) *store.DB {
	t.Helper()
	return OpenShared(t, databaseURL, 1)[0]
}

// OpenShared returns n stores on one migrated, empty database, as n hub
// processes sharing it see it; databaseURL as for OpenURL.
func OpenShared(t testing.TB, databaseURL string, n int) []*store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := store.Config{Cipher: Cipher(t)}
	if databaseURL == "" {
		cfg.DataDir = t.TempDir()
	} else {
		cfg.URL = schemaURL(t, ctx, databaseURL)
	}
	dbs := make([]*store.DB, n)
	for i := range dbs {
		db, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatalf("storetest: opening store: %v", err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if i == 0 {
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("storetest: migrating: %v", err)
			}
		}
		dbs[i] = db
	}
	return dbs
}

// schemaURL creates a schema with a random name and returns databaseURL
// with search_path set to it. The schema is dropped in t.Cleanup, after
// the store is closed.
func schemaURL(t testing.TB, ctx context.Context, databaseURL string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatalf("storetest: parsing DATABASE_URL: %v", err)
	}
	admin, err := sql.Open("pgx", databaseURL)
	if err != nil {
		t.Fatalf("storetest: connecting to DATABASE_URL: %v", err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		_ = admin.Close()
		t.Fatalf("storetest: creating schema: %v", err)
	}
	// Registered first, so it runs after the store's Close.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("storetest: dropping schema %s: %v", schema, err)
		}
		_ = admin.Close()
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
