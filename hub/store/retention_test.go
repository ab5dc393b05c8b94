package store_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

// TestInboundOperations runs the store methods of inbound operations
// (results, reprocessing, retention) on SQLite, and on PostgreSQL when
// DATABASE_URL is set.
func TestInboundOperations(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db *store.DB)
	}{
		{"purge_bodies", testPurgeBodies},
		{"reprocess_one", testReprocessOne},
		{"reprocess_batch", testReprocessBatch},
		{"inbound_results", testInboundResults},
	}
	for _, d := range []struct{ name, url string }{{"sqlite", ""}, {"postgres", os.Getenv("DATABASE_URL")}} {
		t.Run(d.name, func(t *testing.T) {
			if d.name == "postgres" && d.url == "" {
				t.Skip("DATABASE_URL is not set: the PostgreSQL dialect runs when it is")
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
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

var opsNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// storedInbound inserts an event of src received at at in status.
func storedInbound(t *testing.T, db *store.DB, src *hub.Source, key, status string, at time.Time) *hub.InboundEvent {
	t.Helper()
	ev := newInbound(src, key)
	ev.Status, ev.ReceivedAt = status, at
	ev.Headers = map[string]string{"X-Shopify-Topic": "orders/paid"}
	if status != hub.InboundReceived {
		ev.Attempts, ev.LastError = 2, "earlier failure"
		done := at.Add(time.Second)
		ev.ProcessedAt = &done
	}
	if _, inserted, err := db.InsertInboundEvent(t.Context(), ev); err != nil || !inserted {
		t.Fatalf("InsertInboundEvent %s: %v %v", key, inserted, err)
	}
	return ev
}

func testPurgeBodies(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	day := 24 * time.Hour
	oldest := storedInbound(t, db, src, "evt_oldest", hub.InboundProcessed, opsNow.Add(-120*day))
	failed := storedInbound(t, db, src, "evt_failed", hub.InboundFailed, opsNow.Add(-110*day))
	waiting := storedInbound(t, db, src, "evt_waiting", hub.InboundReceived, opsNow.Add(-100*day))
	ignored := storedInbound(t, db, src, "evt_ignored", hub.InboundIgnored, opsNow.Add(-91*day))
	recent := storedInbound(t, db, src, "evt_recent", hub.InboundProcessed, opsNow.Add(-89*day))
	before := opsNow.Add(-90 * day)

	var counts []int64
	for range 4 {
		n, err := db.PurgeInboundBodies(ctx, before, opsNow, 2)
		if err != nil {
			t.Fatalf("PurgeInboundBodies: %v", err)
		}
		counts = append(counts, n)
	}
	if diff := cmp.Diff([]int64{2, 1, 0, 0}, counts); diff != "" {
		t.Errorf("purged per batch (-want +got):\n%s", diff)
	}
	for _, ev := range []*hub.InboundEvent{oldest, failed, ignored} {
		got, err := db.GetInboundEvent(ctx, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Body) != 0 || len(got.Headers) != 0 || got.BodyPurgedAt == nil || !got.BodyPurgedAt.Equal(opsNow) {
			t.Errorf("%s after purge: body %q headers %v purged %v", ev.DedupeKey, got.Body, got.Headers, got.BodyPurgedAt)
		}
		if got.Status != ev.Status || got.DedupeKey != ev.DedupeKey || got.EventType != ev.EventType || !got.ReceivedAt.Equal(ev.ReceivedAt) ||
			got.Attempts != ev.Attempts || got.LastError != ev.LastError || got.ProcessedAt == nil {
			t.Errorf("%s lost metadata: %+v", ev.DedupeKey, got)
		}
	}
	for _, ev := range []*hub.InboundEvent{waiting, recent} {
		got, err := db.GetInboundEvent(ctx, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Body) != string(ev.Body) || got.Headers["X-Shopify-Topic"] != "orders/paid" || got.BodyPurgedAt != nil {
			t.Errorf("%s should keep its body: %+v", ev.DedupeKey, got)
		}
	}
	list, err := db.ListInboundEvents(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	purged := 0
	for _, ev := range list {
		if ev.BodyPurgedAt != nil {
			purged++
		}
	}
	if purged != 3 {
		t.Errorf("the list shows %d purged events, want 3", purged)
	}
}

func testReprocessOne(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	for _, status := range []string{hub.InboundProcessed, hub.InboundIgnored, hub.InboundFailed} {
		ev := storedInbound(t, db, src, "evt_"+status, status, opsNow)
		got, err := db.ReprocessInbound(ctx, ev.ID)
		if err != nil {
			t.Fatalf("ReprocessInbound %s: %v", status, err)
		}
		if got.Status != hub.InboundReceived || got.Attempts != 0 || got.LastError != "" || got.ProcessedAt != nil || got.Body != nil {
			t.Errorf("reprocessed %s event = %+v", status, got)
		}
		if due, err := db.InboundDue(ctx, opsNow.Add(time.Minute), 10); err != nil || !contains(due, ev.ID) {
			t.Errorf("reprocessed %s event is not due for the sweeper: %v %v", status, due, err)
		}
	}
	waiting := storedInbound(t, db, src, "evt_waiting", hub.InboundReceived, opsNow)
	if err := db.MarkInboundAttempt(ctx, waiting.ID, "database busy"); err != nil {
		t.Fatal(err)
	}
	got, err := db.ReprocessInbound(ctx, waiting.ID)
	if err != nil || got.Status != hub.InboundReceived || got.Attempts != 1 {
		t.Errorf("reprocessing a received event = %+v %v, want it as it is", got, err)
	}
	old := storedInbound(t, db, src, "evt_old", hub.InboundProcessed, opsNow.Add(-100*24*time.Hour))
	if _, err := db.PurgeInboundBodies(ctx, opsNow.Add(-90*24*time.Hour), opsNow, 10); err != nil {
		t.Fatal(err)
	}
	_, err = db.ReprocessInbound(ctx, old.ID)
	wantCode(t, err, hub.ECONFLICT)
	if ev, _ := db.GetInboundEvent(ctx, old.ID); ev.Status != hub.InboundProcessed {
		t.Errorf("a purged event was reset to %s", ev.Status)
	}
	if _, err := db.ReprocessInbound(ctx, "inb_missing"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing event: %v, want ErrNotFound", err)
	}
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func testReprocessBatch(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	other := seedSource(t, db)
	other2 := &hub.Source{Provider: "paddle", Name: "Paddle", Secret: "pdl_ntfset_x"}
	if err := db.CreateSource(ctx, other2); err != nil {
		t.Fatal(err)
	}
	var failed []string
	for i, at := range []time.Duration{-5, -4, -3, -2, -1} {
		failed = append(failed, storedInbound(t, db, src, "evt_f"+string(rune('0'+i)), hub.InboundFailed, opsNow.Add(at*time.Hour)).ID)
	}
	processed := storedInbound(t, db, src, "evt_p", hub.InboundProcessed, opsNow).ID
	otherFailed := storedInbound(t, db, other, "evt_o", hub.InboundFailed, opsNow).ID
	paddleFailed := storedInbound(t, db, other2, "evt_pd", hub.InboundFailed, opsNow).ID
	purged := storedInbound(t, db, src, "evt_purged", hub.InboundFailed, opsNow.Add(-100*24*time.Hour)).ID
	if _, err := db.PurgeInboundBodies(ctx, opsNow.Add(-90*24*time.Hour), opsNow, 10); err != nil {
		t.Fatal(err)
	}
	waiting := storedInbound(t, db, src, "evt_w", hub.InboundReceived, opsNow).ID

	batch := func(sel hub.InboundSelector, after string, limit int) []string {
		t.Helper()
		ids, err := db.ReprocessInboundBatch(ctx, hub.DefaultProgramID, sel, after, limit)
		if err != nil {
			t.Fatalf("ReprocessInboundBatch(%+v, %q, %d): %v", sel, after, limit, err)
		}
		return ids
	}
	sel := hub.InboundSelector{Status: hub.InboundFailed, SourceID: src.ID, Since: opsNow.Add(-4 * time.Hour), Until: opsNow.Add(-time.Hour)}
	if diff := cmp.Diff(failed[1:3], batch(sel, "", 2)); diff != "" {
		t.Errorf("first batch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(failed[3:4], batch(sel, failed[2], 2)); diff != "" {
		t.Errorf("second batch (-want +got):\n%s", diff)
	}
	if got := batch(sel, "", 10); len(got) != 0 {
		t.Errorf("again: %v, want nothing (they are received now)", got)
	}
	if diff := cmp.Diff([]string{paddleFailed}, batch(hub.InboundSelector{Status: hub.InboundFailed, Provider: "paddle"}, "", 10)); diff != "" {
		t.Errorf("by provider (-want +got):\n%s", diff)
	}
	all := batch(hub.InboundSelector{Status: hub.InboundFailed}, "", 10)
	if diff := cmp.Diff([]string{failed[0], failed[4], otherFailed}, all); diff != "" {
		t.Errorf("every failed event (-want +got):\n%s", diff)
	}
	if contains(all, purged) {
		t.Error("a purged event was reprocessed")
	}
	if diff := cmp.Diff([]string{processed}, batch(hub.InboundSelector{Status: hub.InboundProcessed}, "", 10)); diff != "" {
		t.Errorf("processed (-want +got):\n%s", diff)
	}
	received := batch(hub.InboundSelector{Status: hub.InboundReceived, SourceID: src.ID}, "", 100)
	if !contains(received, waiting) || !contains(received, processed) || len(received) != 7 {
		t.Errorf("received events listed: %v", received)
	}
	ev, err := db.GetInboundEvent(ctx, failed[1])
	if err != nil || ev.Status != hub.InboundReceived || ev.Attempts != 0 || ev.LastError != "" || ev.ProcessedAt != nil {
		t.Errorf("a reprocessed event = %+v %v", ev, err)
	}
	if _, err := db.ReprocessInboundBatch(ctx, hub.DefaultProgramID, hub.InboundSelector{Status: "bogus"}, "", 10); hub.ErrorCode(err) != hub.EINVALID {
		t.Errorf("unknown status: %v, want EINVALID", err)
	}
	if got := batch(hub.InboundSelector{Status: hub.InboundReceived}, "", 100); len(got) == 0 {
		t.Error("nothing received in the default program")
	}
	if got, err := db.ReprocessInboundBatch(ctx, "prg_other", hub.InboundSelector{Status: hub.InboundReceived}, "", 100); err != nil || len(got) != 0 {
		t.Errorf("another program sees %v %v", got, err)
	}
}

func testInboundResults(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	ev := storedInbound(t, db, src, "evt_r", hub.InboundReceived, opsNow)
	for range 2 {
		mustTx(t, db, func(tx hub.Tx) error {
			return tx.RecordInboundResults(ctx, ev.ID, []string{"cnv_2", "cnv_1"}, []string{"rfd_1"})
		})
	}
	got, err := db.InboundResults(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := &hub.InboundResults{ConversionIDs: []string{"cnv_1", "cnv_2"}, RefundIDs: []string{"rfd_1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	none, err := db.InboundResults(ctx, "inb_none")
	if err != nil || len(none.ConversionIDs)+len(none.RefundIDs) != 0 || none.ConversionIDs == nil {
		t.Errorf("results of an unknown event = %+v %v, want empty lists", none, err)
	}
	// A rolled back transaction records nothing.
	err = db.InTx(ctx, func(tx hub.Tx) error {
		if err := tx.RecordInboundResults(ctx, ev.ID, []string{"cnv_3"}, nil); err != nil {
			return err
		}
		return errors.New("apply failed")
	})
	if err == nil {
		t.Fatal("InTx succeeded")
	}
	if got, _ := db.InboundResults(ctx, ev.ID); len(got.ConversionIDs) != 2 {
		t.Errorf("after a rollback: %+v", got)
	}
}
