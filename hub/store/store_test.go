package store_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

// The conformance suite: every test runs against SQLite, and against
// PostgreSQL when DATABASE_URL is set. Each test gets its own database.

type suiteTest struct {
	name string
	fn   func(t *testing.T, db *store.DB)
	// pgOnly tests exercise PostgreSQL behaviour (locks, connectivity).
	pgOnly bool
}

var suite = []suiteTest{
	{name: "programs", fn: testPrograms},
	{name: "api_keys", fn: testAPIKeys},
	{name: "sources", fn: testSources},
	{name: "partners", fn: testPartners},
	{name: "endpoints", fn: testEndpoints},
	{name: "secrets_encrypted_at_rest", fn: testSecretsAtRest},
	{name: "inbound_dedupe", fn: testInboundDedupe},
	{name: "inbound_batch", fn: testInboundBatch},
	{name: "inbound_lifecycle", fn: testInboundLifecycle},
	{name: "inbound_due", fn: testInboundDue},
	{name: "inbound_finish_once", fn: testInboundFinishOnce},
	{name: "conversion_aliases", fn: testConversionAliases},
	{name: "conversion_keys_locked_together", fn: testConversionKeysLockedTogether},
	{name: "new_sales_written_together", fn: testNewSalesWrittenTogether},
	{name: "conversion_history", fn: testConversionHistory},
	{name: "conversion_times", fn: testConversionTimes},
	{name: "tx_rollback", fn: testTxRollback},
	{name: "refund_upsert", fn: testRefundUpsert},
	{name: "refund_parking", fn: testRefundParking},
	{name: "refund_join", fn: testRefundJoin},
	{name: "commission_ledger", fn: testCommissionLedger},
	{name: "event_deliveries", fn: testEventDeliveries},
	{name: "record_attempt", fn: testRecordAttempt},
	{name: "deliveries_due", fn: testDeliveriesDue},
	{name: "pagination", fn: testPagination},
	{name: "filters", fn: testFilters},
	{name: "audit", fn: testAudit},
	{name: "migrate_idempotent", fn: testMigrateIdempotent},
	{name: "closed_store_unavailable", fn: testClosedUnavailable},
	{name: "lock_keys_serializes", fn: testLockKeys, pgOnly: true},
	{name: "hot_plans", fn: testHotPlans, pgOnly: true},
	{name: "large_values_compressed", fn: testLargeValuesCompressed, pgOnly: true},
}

func TestStore(t *testing.T) {
	pgURL := os.Getenv("DATABASE_URL")
	for _, d := range []struct {
		name string
		url  string
	}{
		{name: "sqlite"},
		{name: "postgres", url: pgURL},
	} {
		t.Run(d.name, func(t *testing.T) {
			if d.name == "postgres" && d.url == "" {
				// .ci/run runs the suites a second time with DATABASE_URL set.
				t.Skip("DATABASE_URL is not set: the PostgreSQL dialect runs when it is")
			}
			for _, tc := range suite {
				t.Run(tc.name, func(t *testing.T) {
					if tc.pgOnly && d.name != "postgres" {
						t.Skip("PostgreSQL only")
					}
					t.Parallel()
					db := storetest.OpenURL(t, d.url)
					if db.Dialect() != d.name {
						t.Fatalf("Dialect() = %q, want %q", db.Dialect(), d.name)
					}
					tc.fn(t, db)
				})
			}
		})
	}
}

// TestOpenUnreachable checks that a PostgreSQL server that does not answer
// yields errors wrapping hub.ErrUnavailable (answered 503), not a failed
// Open.
func TestOpenUnreachable(t *testing.T) {
	ctx := t.Context()
	db, err := store.Open(ctx, store.Config{
		URL:    "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=5",
		Cipher: storetest.Cipher(t),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"ping", func() error { return db.Ping(ctx) }},
		{"get_program", func() error { _, err := db.GetProgram(ctx, hub.DefaultProgramID); return err }},
		{"in_tx", func() error { return db.InTx(ctx, func(hub.Tx) error { return nil }) }},
		{"migrate", func() error { return db.Migrate(ctx) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, hub.ErrUnavailable) {
				t.Fatalf("err = %v, want one wrapping hub.ErrUnavailable", err)
			}
			if got := hub.StatusOf(hub.ErrorCode(err)); got != 503 {
				t.Errorf("HTTP status = %d, want 503", got)
			}
		})
	}
}

func TestOpenConfig(t *testing.T) {
	ctx := t.Context()
	cipher := storetest.Cipher(t)
	t.Run("cipher_required", func(t *testing.T) {
		if _, err := store.Open(ctx, store.Config{DataDir: t.TempDir()}); err == nil {
			t.Fatal("Open without Cipher succeeded")
		}
	})
	t.Run("unsupported_scheme_hides_url", func(t *testing.T) {
		_, err := store.Open(ctx, store.Config{URL: "mysql://root:hunter2@db/x", Cipher: cipher})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("err = %v, want an error without the password", err)
		}
	})
	t.Run("bad_postgres_url_hides_password", func(t *testing.T) {
		_, err := store.Open(ctx, store.Config{URL: "postgres://root:hunter2@127.0.0.1:1/x?connect_timeout=abc", Cipher: cipher})
		if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "127.0.0.1") ||
			!strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "connect_timeout") {
			t.Fatalf("err = %v, want an error naming DATABASE_URL and the bad setting, without the URL", err)
		}
	})
	t.Run("creates_data_dir", func(t *testing.T) {
		dir := t.TempDir() + "/nested/data"
		db, err := store.Open(ctx, store.Config{DataDir: dir, Cipher: cipher})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := os.Stat(dir + "/partnerhub.db"); err != nil {
			t.Fatalf("database file: %v", err)
		}
		if db.Dialect() != store.DialectSQLite {
			t.Errorf("Dialect() = %q", db.Dialect())
		}
	})
}

// Helpers.

func mustTx(t *testing.T, db *store.DB, fn func(tx hub.Tx) error) {
	t.Helper()
	if err := db.InTx(t.Context(), fn); err != nil {
		t.Fatalf("InTx: %v", err)
	}
}

func seedSource(t *testing.T, db *store.DB) *hub.Source {
	t.Helper()
	s := &hub.Source{Provider: "stripe", Name: "Stripe", Secret: "whsec_seed"}
	if err := db.CreateSource(t.Context(), s); err != nil {
		t.Fatalf("CreateSource: %v", err)
	}
	return s
}

func seedPartner(t *testing.T, db *store.DB, code string) *hub.Partner {
	t.Helper()
	p := &hub.Partner{Name: "Partner " + code, Code: code}
	if err := db.CreatePartner(t.Context(), p); err != nil {
		t.Fatalf("CreatePartner: %v", err)
	}
	return p
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil || hub.ErrorCode(err) != code {
		t.Fatalf("err = %v (code %q), want code %q", err, hub.ErrorCode(err), code)
	}
}

// rawString reads one text column with plain SQL, bypassing the store.
func rawString(t *testing.T, db *store.DB, query string) string {
	t.Helper()
	var s string
	if err := db.SQL().QueryRowContext(t.Context(), query).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

// Tests.

func testPrograms(t *testing.T, db *store.DB) {
	ctx := t.Context()
	p, err := db.GetProgram(ctx, hub.DefaultProgramID)
	if err != nil {
		t.Fatal(err)
	}
	want := hub.Program{ID: "prg_default", Name: "Default program", DefaultCommissionBPS: 1000, HoldDays: 30}
	if diff := cmp.Diff(want, *p, cmp.FilterPath(func(p cmp.Path) bool {
		return strings.HasSuffix(p.String(), "At")
	}, cmp.Ignore())); diff != "" {
		t.Errorf("default program (-want +got):\n%s", diff)
	}
	if p.CreatedAt.IsZero() || p.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want a UTC time", p.CreatedAt)
	}

	p.Name, p.DefaultCommissionBPS, p.HoldDays = "Acme partners", 1500, 14
	if err := db.UpdateProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetProgram(ctx, hub.DefaultProgramID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("updated program (-want +got):\n%s", diff)
	}

	if _, err := db.GetProgram(ctx, "prg_missing"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing program: err = %v, want ErrNotFound", err)
	}
	if err := db.UpdateProgram(ctx, &hub.Program{ID: "prg_missing"}); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("updating missing program: err = %v, want ErrNotFound", err)
	}
}

func testAPIKeys(t *testing.T, db *store.DB) {
	ctx := t.Context()
	k := &hub.APIKey{Name: "ci", Role: hub.RoleAdmin, Hash: hub.HashKey("phk_secret"), Prefix: "phk_sec"}
	if err := db.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.ID, "key_") || k.ProgramID != hub.DefaultProgramID || k.CreatedAt.IsZero() {
		t.Errorf("filled fields: %+v", k)
	}
	got, err := db.FindAPIKey(ctx, hub.HashKey("phk_secret"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k, got); diff != "" {
		t.Errorf("FindAPIKey (-want +got):\n%s", diff)
	}
	if _, err := db.FindAPIKey(ctx, hub.HashKey("other")); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("unknown key: err = %v, want ErrNotFound", err)
	}
	dup := &hub.APIKey{Name: "dup", Role: hub.RoleViewer, Hash: k.Hash, Prefix: "phk_sec"}
	wantCode(t, db.CreateAPIKey(ctx, dup), hub.ECONFLICT)
}

func testSources(t *testing.T, db *store.DB) {
	ctx := t.Context()
	s := &hub.Source{
		Provider:       "stripe",
		Name:           "Live",
		Secret:         "whsec_current",
		PreviousSecret: "whsec_previous",
		Options:        map[string]string{"payment_intent_succeeded": "true"},
	}
	if err := db.CreateSource(ctx, s); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.ID, "src_") {
		t.Errorf("ID = %q", s.ID)
	}
	got, err := db.GetSource(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Errorf("GetSource (-want +got):\n%s", diff)
	}
	if _, err := db.GetSource(ctx, "src_missing"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing source: err = %v, want ErrNotFound", err)
	}
	bare := &hub.Source{Provider: "shopify", Name: "Shop", Secret: "shpss"}
	if err := db.CreateSource(ctx, bare); err != nil {
		t.Fatal(err)
	}
	list, err := db.ListSources(ctx, hub.DefaultProgramID, hub.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*hub.Source{bare, s}, list); diff != "" {
		t.Errorf("ListSources (-want +got):\n%s", diff)
	}
}

func testPartners(t *testing.T, db *store.DB) {
	ctx := t.Context()
	p := &hub.Partner{Name: "Ada", Email: "ada@example.com", Code: "AdaLove"}
	if err := db.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetPartner(ctx, hub.DefaultProgramID, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("GetPartner (-want +got):\n%s", diff)
	}
	if _, err := db.GetPartner(ctx, "prg_other", p.ID); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("partner of another program: err = %v, want ErrNotFound", err)
	}

	for _, code := range []string{"adalove", "ADALOVE", "AdaLove"} {
		t.Run("find_"+code, func(t *testing.T) {
			mustTx(t, db, func(tx hub.Tx) error {
				got, err := tx.FindPartnerByCode(ctx, hub.DefaultProgramID, code)
				if err != nil {
					return err
				}
				if got.ID != p.ID {
					t.Errorf("found %s, want %s", got.ID, p.ID)
				}
				return nil
			})
		})
	}
	mustTx(t, db, func(tx hub.Tx) error {
		_, err := tx.FindPartnerByCode(ctx, hub.DefaultProgramID, "nobody")
		if !errors.Is(err, hub.ErrNotFound) {
			t.Errorf("unknown code: err = %v, want ErrNotFound", err)
		}
		return nil
	})

	dup := &hub.Partner{Name: "Copy", Code: "ADALOVE"}
	wantCode(t, db.CreatePartner(ctx, dup), hub.ECONFLICT)
}

func testEndpoints(t *testing.T, db *store.DB) {
	ctx := t.Context()
	ptn := seedPartner(t, db, "ep")
	e := &hub.Endpoint{
		URL:         "https://hooks.example.com/partnerhub",
		Description: "Zapier",
		EventTypes:  []string{"commission.*", "ping"},
		PartnerID:   ptn.ID,
		Secret:      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		Enabled:     true,
	}
	if err := db.CreateEndpoint(ctx, e); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.ID, "ep_") {
		t.Errorf("ID = %q", e.ID)
	}
	got, err := db.GetEndpoint(ctx, hub.DefaultProgramID, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("GetEndpoint (-want +got):\n%s", diff)
	}
	all := &hub.Endpoint{URL: "https://ops.example.com", Secret: "whsec_b3Bz"}
	if err := db.CreateEndpoint(ctx, all); err != nil {
		t.Fatal(err)
	}
	list, err := db.ListEndpoints(ctx, hub.DefaultProgramID, hub.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*hub.Endpoint{all, e}, list); diff != "" {
		t.Errorf("ListEndpoints (-want +got):\n%s", diff)
	}
	if _, err := db.GetEndpoint(ctx, hub.DefaultProgramID, "ep_missing"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing endpoint: err = %v, want ErrNotFound", err)
	}
	bad := &hub.Endpoint{URL: "https://x.example.com", PartnerID: "ptn_missing", Secret: "whsec_x"}
	wantCode(t, db.CreateEndpoint(ctx, bad), hub.EINVALID)
}

func testSecretsAtRest(t *testing.T, db *store.DB) {
	ctx := t.Context()
	s := &hub.Source{Provider: "stripe", Name: "Live", Secret: "whsec_SOURCE_SECRET", PreviousSecret: "whsec_OLD_SECRET"}
	if err := db.CreateSource(ctx, s); err != nil {
		t.Fatal(err)
	}
	e := &hub.Endpoint{URL: "https://example.com/hook", Secret: "whsec_ENDPOINT_SECRET", Enabled: true}
	if err := db.CreateEndpoint(ctx, e); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, query, secret string
	}{
		{"source_secret", "SELECT secret FROM sources WHERE id = '" + s.ID + "'", s.Secret},
		{"source_previous_secret", "SELECT previous_secret FROM sources WHERE id = '" + s.ID + "'", s.PreviousSecret},
		{"endpoint_secret", "SELECT secret FROM endpoints WHERE id = '" + e.ID + "'", e.Secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := rawString(t, db, tc.query)
			if raw == "" || strings.Contains(raw, tc.secret) || strings.Contains(raw, strings.TrimPrefix(tc.secret, "whsec_")) {
				t.Errorf("stored %q: want a sealed value without the secret", raw)
			}
			if plain, err := storetest.Cipher(t).Open(raw); err != nil || plain != tc.secret {
				t.Errorf("opening the stored value = %q, %v; want the secret", plain, err)
			}
		})
	}
}

func testAudit(t *testing.T, db *store.DB) {
	ctx := t.Context()
	a := &hub.AuditEntry{KeyID: "key_1", Action: "update", Resource: "program", ResourceID: "prg_default",
		Before: []byte(`{"hold_days":30}`), After: []byte(`{"hold_days":14}`)}
	b := &hub.AuditEntry{KeyID: "key_1", Action: "create", Resource: "partner", ResourceID: "ptn_1"}
	for _, e := range []*hub.AuditEntry{a, b} {
		if err := db.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.ListAudit(ctx, hub.DefaultProgramID, hub.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*hub.AuditEntry{b, a}, got); diff != "" {
		t.Errorf("ListAudit (-want +got):\n%s", diff)
	}
}

func testMigrateIdempotent(t *testing.T, db *store.DB) {
	ctx := t.Context()
	for i := range 2 {
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("Migrate #%d: %v", i+2, err)
		}
	}
	n := rawString(t, db, "SELECT CAST(COUNT(*) AS TEXT) FROM programs")
	if n != "1" {
		t.Errorf("programs after repeated migrations = %s, want 1", n)
	}
}

func testClosedUnavailable(t *testing.T, db *store.DB) {
	ctx := t.Context()
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping on an open store: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"ping":        db.Ping(ctx),
		"get_program": func() error { _, err := db.GetProgram(ctx, hub.DefaultProgramID); return err }(),
		"insert_inbound": func() error {
			_, _, err := db.InsertInboundEvent(ctx, &hub.InboundEvent{SourceID: "src_x", DedupeKey: "evt_1"})
			return err
		}(),
		"in_tx": db.InTx(ctx, func(hub.Tx) error { return nil }),
	} {
		if !errors.Is(err, hub.ErrUnavailable) {
			t.Errorf("%s on a closed store: err = %v, want ErrUnavailable", name, err)
		}
	}
}
