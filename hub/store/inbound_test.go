package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
)

func newInbound(src *hub.Source, key string) *hub.InboundEvent {
	return &hub.InboundEvent{
		SourceID:  src.ID,
		Provider:  src.Provider,
		DedupeKey: key,
		EventType: "checkout.session.completed",
		Headers:   map[string]string{"Content-Type": "application/json"},
		Body:      []byte(`{"id":"` + key + `","object":"event"}`),
	}
}

func testInboundDedupe(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	other := seedSource(t, db)
	first := newInbound(src, "evt_1")
	got, inserted, err := db.InsertInboundEvent(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if !inserted || got.ID == "" || got.Status != hub.InboundReceived || got.ReceivedAt.IsZero() {
		t.Fatalf("first insert: inserted = %v, row %+v", inserted, got)
	}

	for _, tc := range []struct {
		name         string
		ev           *hub.InboundEvent
		wantInserted bool
		wantID       string
	}{
		{"duplicate_returns_first_row", func() *hub.InboundEvent {
			ev := newInbound(src, "evt_1")
			ev.EventType, ev.Body = "changed", []byte(`{"retry":true}`)
			return ev
		}(), false, first.ID},
		{"same_key_other_source", newInbound(other, "evt_1"), true, ""},
		{"other_key", newInbound(src, "evt_2"), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, inserted, err := db.InsertInboundEvent(ctx, tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			if inserted != tc.wantInserted {
				t.Errorf("inserted = %v, want %v", inserted, tc.wantInserted)
			}
			if tc.wantID != "" {
				if diff := cmp.Diff(first, got); diff != "" {
					t.Errorf("duplicate returned (-first +got):\n%s", diff)
				}
			} else if got.ID != tc.ev.ID {
				t.Errorf("returned %s, want the new row %s", got.ID, tc.ev.ID)
			}
		})
	}
}

func testInboundLifecycle(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	ev := newInbound(src, "evt_life")
	if _, _, err := db.InsertInboundEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetInboundEvent(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ev, got); diff != "" {
		t.Errorf("GetInboundEvent (-want +got):\n%s", diff)
	}

	if err := db.MarkInboundAttempt(ctx, ev.ID, "database is busy"); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkInboundAttempt(ctx, ev.ID, "still busy"); err != nil {
		t.Fatal(err)
	}
	got, err = db.GetInboundEvent(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempts != 2 || got.LastError != "still busy" || got.Status != hub.InboundReceived {
		t.Errorf("after two attempts: %+v", got)
	}

	at := time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)
	mustTx(t, db, func(tx hub.Tx) error {
		return tx.FinishInbound(ctx, ev.ID, hub.InboundFailed, "unparsable payload", at)
	})
	got, err = db.GetInboundEvent(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != hub.InboundFailed || got.LastError != "unparsable payload" || got.ProcessedAt == nil || !got.ProcessedAt.Equal(at) {
		t.Errorf("after FinishInbound: %+v", got)
	}

	list, err := db.ListInboundEvents(ctx, hub.DefaultProgramID, hub.Filter{Status: hub.InboundFailed}, hub.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != ev.ID || list[0].Headers["Content-Type"] != "application/json" {
		t.Errorf("ListInboundEvents(failed) = %+v", list)
	}

	for name, err := range map[string]error{
		"get":    func() error { _, err := db.GetInboundEvent(ctx, "inb_missing"); return err }(),
		"mark":   db.MarkInboundAttempt(ctx, "inb_missing", "x"),
		"finish": db.InTx(ctx, func(tx hub.Tx) error { return tx.FinishInbound(ctx, "inb_missing", hub.InboundProcessed, "", at) }),
	} {
		if !errors.Is(err, hub.ErrNotFound) {
			t.Errorf("%s of a missing event: err = %v, want ErrNotFound", name, err)
		}
	}
}

func testInboundDue(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	base := time.Now().UTC().Add(-time.Hour)
	var evs []*hub.InboundEvent
	// Inserted newest first, so the order of the answer comes from
	// received_at, not from insertion.
	for i := range 4 {
		ev := newInbound(src, fmt.Sprintf("evt_due_%d", i))
		ev.ReceivedAt = base.Add(time.Duration(3-i) * time.Minute)
		if _, _, err := db.InsertInboundEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	mustTx(t, db, func(tx hub.Tx) error {
		return tx.FinishInbound(ctx, evs[3].ID, hub.InboundProcessed, "", time.Now())
	})
	for _, tc := range []struct {
		name   string
		before time.Time
		limit  int
		want   []string
	}{
		{"received_only_oldest_first", time.Now(), 0, []string{evs[2].ID, evs[1].ID, evs[0].ID}},
		{"limit", time.Now(), 2, []string{evs[2].ID, evs[1].ID}},
		{"before_cutoff", base.Add(2 * time.Minute), 0, []string{evs[2].ID}},
		{"none_before", base, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.InboundDue(ctx, tc.before, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("InboundDue (-want +got):\n%s", diff)
			}
		})
	}
}

// testPagination walks 7 rows of each list in pages of 3: newest first,
// id < cursor, no row twice, and a short last page.
func testPagination(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	var partners, inbound []string
	for i := range 7 {
		p := seedPartner(t, db, fmt.Sprintf("page%d", i))
		partners = append([]string{p.ID}, partners...)
		ev := newInbound(src, fmt.Sprintf("evt_page_%d", i))
		if _, _, err := db.InsertInboundEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		inbound = append([]string{ev.ID}, inbound...)
	}
	for _, tc := range []struct {
		name  string
		want  []string
		fetch func(p hub.Page) ([]string, error)
	}{
		{"partners", partners, func(p hub.Page) ([]string, error) {
			l, err := db.ListPartners(ctx, hub.DefaultProgramID, p)
			return ids(l, func(x *hub.Partner) string { return x.ID }), err
		}},
		{"inbound_events", inbound, func(p hub.Page) ([]string, error) {
			l, err := db.ListInboundEvents(ctx, hub.DefaultProgramID, hub.Filter{}, p)
			return ids(l, func(x *hub.InboundEvent) string { return x.ID }), err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pages [][]string
			cursor := ""
			for range 5 {
				got, err := tc.fetch(hub.Page{Cursor: cursor, Limit: 3})
				if err != nil {
					t.Fatal(err)
				}
				pages = append(pages, got)
				if len(got) < 3 {
					break
				}
				cursor = got[len(got)-1]
			}
			want := [][]string{tc.want[0:3], tc.want[3:6], tc.want[6:7]}
			if diff := cmp.Diff(want, pages); diff != "" {
				t.Errorf("pages (-want +got):\n%s", diff)
			}
		})
	}
	other, err := db.ListPartners(ctx, "prg_other", hub.Page{})
	if err != nil || len(other) != 0 {
		t.Errorf("partners of another program = %v, %v", other, err)
	}
}

func ids[T any](l []T, id func(T) string) []string {
	var out []string
	for _, x := range l {
		out = append(out, id(x))
	}
	return out
}

func testFilters(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	p1, p2 := seedPartner(t, db, "f1"), seedPartner(t, db, "f2")
	var convs []*hub.Conversion
	for i, p := range []*hub.Partner{p1, p2, p1} {
		c := newConversion(src, fmt.Sprintf("pi_f%d", i))
		c.OccurredAt = t0.Add(time.Duration(i) * time.Hour)
		c.PartnerID = p.ID
		insertConversion(t, db, c)
		convs = append(convs, c)
	}
	mustTx(t, db, func(tx hub.Tx) error {
		for i, c := range convs {
			com := &hub.Commission{ConversionID: c.ID, PartnerID: c.PartnerID, Currency: "EUR", Status: hub.CommissionPending}
			if i == 0 {
				com.Status = hub.CommissionApproved
			}
			if err := tx.InsertCommission(ctx, com); err != nil {
				return err
			}
		}
		_, _, err := tx.UpsertRefund(ctx, &hub.Refund{SourceID: src.ID, ConversionID: convs[1].ID, Provider: "stripe",
			ExternalID: "re_f", Kind: hub.RefundKindRefund, AmountMinor: 1, Currency: "EUR", Status: hub.RefundSucceeded, OccurredAt: t0})
		return err
	})

	convIDs := func(f hub.Filter) []string {
		l, err := db.ListConversions(ctx, hub.DefaultProgramID, f, hub.Page{})
		if err != nil {
			t.Fatal(err)
		}
		return ids(l, func(c *hub.Conversion) string { return c.ID })
	}
	comPartners := func(f hub.Filter) []string {
		l, err := db.ListCommissions(ctx, hub.DefaultProgramID, f, hub.Page{})
		if err != nil {
			t.Fatal(err)
		}
		return ids(l, func(c *hub.Commission) string { return c.ConversionID })
	}
	refunds := func(f hub.Filter) []string {
		l, err := db.ListRefunds(ctx, hub.DefaultProgramID, f, hub.Page{})
		if err != nil {
			t.Fatal(err)
		}
		return ids(l, func(r *hub.Refund) string { return r.ExternalID })
	}
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{"conversions_all", convIDs(hub.Filter{}), []string{convs[2].ID, convs[1].ID, convs[0].ID}},
		{"conversions_partner", convIDs(hub.Filter{PartnerID: p1.ID}), []string{convs[2].ID, convs[0].ID}},
		{"conversions_since", convIDs(hub.Filter{Since: t0.Add(time.Hour)}), []string{convs[2].ID, convs[1].ID}},
		{"conversions_until_exclusive", convIDs(hub.Filter{Until: t0.Add(time.Hour)}), []string{convs[0].ID}},
		{"commissions_status", comPartners(hub.Filter{Status: hub.CommissionPending}), []string{convs[2].ID, convs[1].ID}},
		{"commissions_status_partner", comPartners(hub.Filter{Status: hub.CommissionPending, PartnerID: p1.ID}), []string{convs[2].ID}},
		{"refunds_partner", refunds(hub.Filter{PartnerID: p2.ID}), []string{"re_f"}},
		{"refunds_other_partner", refunds(hub.Filter{PartnerID: p1.ID}), nil},
		{"refunds_status", refunds(hub.Filter{Status: hub.RefundFailed}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func testInboundFinishOnce(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	ev, _, err := db.InsertInboundEvent(ctx, &hub.InboundEvent{SourceID: src.ID, Provider: src.Provider, DedupeKey: "evt_once", EventType: "x", Body: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	finish := func() error {
		return db.InTx(ctx, func(tx hub.Tx) error { return tx.FinishInbound(ctx, ev.ID, hub.InboundProcessed, "", time.Now()) })
	}
	if err := finish(); err != nil {
		t.Fatalf("first finish: %v", err)
	}
	if err := finish(); !errors.Is(err, hub.ErrAlreadyFinished) {
		t.Fatalf("second finish: err = %v, want ErrAlreadyFinished", err)
	}
}

// testInboundBatch: a multi-row insert stores new events, recognises
// events stored before and repeats inside the batch, and leaves the rows
// as single inserts would.
func testInboundBatch(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	earlier := newInbound(src, "evt_earlier")
	if _, _, err := db.InsertInboundEvent(ctx, earlier); err != nil {
		t.Fatal(err)
	}
	var evs []*hub.InboundEvent
	for i := range 300 { // more than one statement's worth
		evs = append(evs, newInbound(src, fmt.Sprintf("evt_b%03d", i)))
	}
	evs = append(evs, newInbound(src, "evt_earlier"), newInbound(src, "evt_b007"))
	stored, inserted, err := db.InsertInboundEvents(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(evs) || len(inserted) != len(evs) {
		t.Fatalf("got %d rows and %d flags for %d events", len(stored), len(inserted), len(evs))
	}
	for i := range 300 {
		if !inserted[i] || stored[i] != evs[i] {
			t.Errorf("event %d: inserted = %v, stored %p, want itself inserted", i, inserted[i], stored[i])
		}
	}
	if inserted[300] || stored[300].ID != earlier.ID {
		t.Errorf("event stored before: inserted = %v, id %s, want a duplicate of %s", inserted[300], stored[300].ID, earlier.ID)
	}
	if inserted[301] || stored[301].ID != evs[7].ID {
		t.Errorf("repeat inside the batch: inserted = %v, id %s, want a duplicate of %s", inserted[301], stored[301].ID, evs[7].ID)
	}
	got, err := db.GetInboundEvent(ctx, evs[299].ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Body) != string(evs[299].Body) || got.Status != hub.InboundReceived || got.Headers["Content-Type"] != "application/json" {
		t.Errorf("stored row %+v differs from the event", got)
	}
}

// testLargeValuesCompressed: on a server with lz4, the large-value columns
// are set to compress with it (migration 15), and a large body is stored
// compressed with it and read back byte for byte.
func testLargeValuesCompressed(t *testing.T, db *store.DB) {
	ctx := t.Context()
	var lz4 bool
	if err := db.SQL().QueryRowContext(ctx, `SELECT 'lz4' = ANY (enumvals) FROM pg_settings
		WHERE name = 'default_toast_compression'`).Scan(&lz4); err != nil {
		t.Fatal(err)
	}
	want := "pglz"
	if lz4 {
		want = "lz4"
	}
	// The columns' own setting, whatever the server's default.
	for _, col := range []struct{ table, column string }{
		{"inbound_events", "body"}, {"inbound_events", "headers"}, {"events", "data"}, {"attempts", "response_body"},
	} {
		var set string
		if err := db.SQL().QueryRowContext(ctx, `SELECT attcompression::text FROM pg_attribute
			WHERE attrelid = to_regclass($1) AND attname = $2`, col.table, col.column).Scan(&set); err != nil {
			t.Fatalf("%s.%s: %v", col.table, col.column, err)
		}
		if lz4 && set != "l" {
			t.Errorf("%s.%s has compression %q, want l (lz4)", col.table, col.column, set)
		}
	}
	src := seedSource(t, db)
	ev := newInbound(src, "evt_large")
	ev.Body = []byte(`{"id":"evt_large","object":"event","data":{"object":{"metadata":{"note":"` +
		strings.Repeat("a partner sent this customer; ", 2000) + `"}}}}`)
	stored, _, err := db.InsertInboundEvent(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	var method string
	if err := db.SQL().QueryRowContext(ctx, `SELECT coalesce(pg_column_compression(body), 'none')
		FROM inbound_events WHERE id = $1`, stored.ID).Scan(&method); err != nil {
		t.Fatal(err)
	}
	if method != want {
		t.Errorf("a %d-byte body is stored with %s compression, want %s", len(ev.Body), method, want)
	}
	got, err := db.GetInboundEvent(ctx, stored.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Body) != string(ev.Body) {
		t.Errorf("body read back differs: %d bytes, want %d", len(got.Body), len(ev.Body))
	}
}
