package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newConversion(src *hub.Source, keys ...string) *hub.Conversion {
	return &hub.Conversion{
		SourceID:   src.ID,
		Provider:   src.Provider,
		Keys:       keys,
		Kind:       hub.KindNew,
		Livemode:   true,
		Customer:   hub.Customer{ProviderCustomerID: "cus_1", EmailHash: "e3b0c442"},
		BaseMinor:  9000,
		GrossMinor: 10890,
		TaxMinor:   1890,
		Currency:   "EUR",
		OccurredAt: t0,
	}
}

func insertConversion(t *testing.T, db *store.DB, c *hub.Conversion) {
	t.Helper()
	mustTx(t, db, func(tx hub.Tx) error { return tx.InsertConversion(t.Context(), c) })
}

func findConversion(t *testing.T, db *store.DB, keys ...string) (*hub.Conversion, error) {
	t.Helper()
	var got *hub.Conversion
	err := db.InTx(t.Context(), func(tx hub.Tx) error {
		var err error
		got, err = tx.FindConversion(t.Context(), hub.DefaultProgramID, "stripe", keys)
		return err
	})
	return got, err
}

func testConversionAliases(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	a := newConversion(src, "cs_1", "in_1")
	a.Lines = []hub.LineItem{{ProductID: "prod_1", PriceID: "price_1", Quantity: 2, AmountMinor: 4500}}
	a.Hints = hub.Hints{ClickID: "clk_1", PromoCodes: []string{"SPRING"}}
	insertConversion(t, db, a)
	b := newConversion(src, "cs_2")
	insertConversion(t, db, b)

	for _, tc := range []struct {
		name string
		keys []string
		want *hub.Conversion
	}{
		{"first_key", []string{"cs_1"}, a},
		{"second_key", []string{"in_1"}, a},
		{"unknown_and_known", []string{"pi_unknown", "in_1"}, a},
		{"other_conversion", []string{"cs_2"}, b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findConversion(t, db, tc.keys...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FindConversion(%v) (-want +got):\n%s", tc.keys, diff)
			}
		})
	}
	if _, err := findConversion(t, db, "pi_unknown"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("unknown key: err = %v, want ErrNotFound", err)
	}
	if _, err := findConversion(t, db); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("no keys: err = %v, want ErrNotFound", err)
	}

	// AddAliases: in_1 already names a (skipped), cs_2 names b (left
	// alone), pi_1 and ch_1 are new.
	mustTx(t, db, func(tx hub.Tx) error {
		c, err := tx.FindConversion(ctx, hub.DefaultProgramID, "stripe", []string{"cs_1"})
		if err != nil {
			return err
		}
		if err := tx.AddAliases(ctx, c, []string{"in_1", "cs_2", "pi_1", "ch_1", "pi_1"}); err != nil {
			return err
		}
		if diff := cmp.Diff([]string{"cs_1", "in_1", "pi_1", "ch_1"}, c.Keys); diff != "" {
			t.Errorf("Keys after AddAliases (-want +got):\n%s", diff)
		}
		return nil
	})
	for _, tc := range []struct {
		key  string
		want string
	}{{"pi_1", a.ID}, {"ch_1", a.ID}, {"cs_2", b.ID}} {
		got, err := findConversion(t, db, tc.key)
		if err != nil {
			t.Fatalf("FindConversion(%s): %v", tc.key, err)
		}
		if got.ID != tc.want {
			t.Errorf("FindConversion(%s) = %s, want %s", tc.key, got.ID, tc.want)
		}
	}
	got, err := db.GetConversion(ctx, hub.DefaultProgramID, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"cs_1", "in_1", "pi_1", "ch_1"}, got.Keys); diff != "" {
		t.Errorf("stored keys (-want +got):\n%s", diff)
	}

	// A key that names another conversion cannot be inserted again.
	err = db.InTx(ctx, func(tx hub.Tx) error {
		return tx.InsertConversion(ctx, newConversion(src, "cs_3", "cs_2"))
	})
	wantCode(t, err, hub.ECONFLICT)
	if _, err := findConversion(t, db, "cs_3"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("failed insert left cs_3 behind: err = %v", err)
	}
}

// testConversionKeysLockedTogether: in a transaction that locks several
// events' keys at once (a processing batch), keys found free at the lock
// are found again as soon as the transaction gives them to a conversion,
// and keys named before the lock are found as ever.
func testConversionKeysLockedTogether(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	a := newConversion(src, "cs_old")
	insertConversion(t, db, a)
	mustTx(t, db, func(tx hub.Tx) error {
		if err := tx.LockKeySets(ctx, []hub.KeySet{
			{ProgramID: hub.DefaultProgramID, Provider: "stripe", Keys: []string{"cs_new", "pi_new"}},
			{ProgramID: hub.DefaultProgramID, Provider: "stripe", Keys: []string{"cs_old", "ch_old"}},
		}); err != nil {
			return err
		}
		if got, err := tx.FindConversion(ctx, hub.DefaultProgramID, "stripe", []string{"ch_old", "cs_old"}); err != nil || got.ID != a.ID {
			t.Errorf("FindConversion(ch_old, cs_old) = %v, %v; want %s", got, err, a.ID)
		}
		if _, err := tx.FindConversion(ctx, hub.DefaultProgramID, "stripe", []string{"cs_new", "pi_new"}); !errors.Is(err, hub.ErrNotFound) {
			t.Errorf("FindConversion(cs_new, pi_new) before the insert: %v, want ErrNotFound", err)
		}
		b := newConversion(src, "cs_new")
		if err := tx.InsertConversion(ctx, b); err != nil {
			return err
		}
		if err := tx.AddAliases(ctx, b, []string{"pi_new"}); err != nil {
			return err
		}
		if err := tx.AddAliases(ctx, a, []string{"ch_old"}); err != nil {
			return err
		}
		for key, want := range map[string]string{"cs_new": b.ID, "pi_new": b.ID, "ch_old": a.ID} {
			if got, err := tx.FindConversion(ctx, hub.DefaultProgramID, "stripe", []string{key}); err != nil || got.ID != want {
				t.Errorf("FindConversion(%s) in the transaction = %v, %v; want %s", key, got, err, want)
			}
		}
		return nil
	})
	if got, err := findConversion(t, db, "pi_new"); err != nil || len(got.Keys) != 2 {
		t.Errorf("after commit: FindConversion(pi_new) = %+v, %v; want the new conversion with 2 keys", got, err)
	}
}

func testConversionHistory(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	ptn := seedPartner(t, db, "ref1")

	first := newConversion(src, "in_1")
	first.SubscriptionID = "sub_1"
	first.OccurredAt = t0
	insertConversion(t, db, first)
	trial := newConversion(src, "in_0")
	trial.SubscriptionID = "sub_2"
	trial.GrossMinor = 0
	trial.OccurredAt = t0
	insertConversion(t, db, trial)

	mustTx(t, db, func(tx hub.Tx) error {
		for _, tc := range []struct {
			name      string
			sub       string
			exclude   string
			at        time.Time
			wantFound bool
		}{
			{"later_payment", "sub_1", "cnv_new", t0.Add(time.Hour), true},
			{"same_time", "sub_1", "cnv_new", t0, false},
			{"itself_excluded", "sub_1", first.ID, t0.Add(time.Hour), false},
			{"zero_gross_trial", "sub_2", "cnv_new", t0.Add(time.Hour), false},
			{"other_subscription", "sub_9", "cnv_new", t0.Add(time.Hour), false},
			{"no_subscription", "", "cnv_new", t0.Add(time.Hour), false},
		} {
			got, err := tx.HasEarlierPayment(ctx, hub.DefaultProgramID, "stripe", tc.sub, tc.exclude, tc.at)
			if err != nil {
				return err
			}
			if got != tc.wantFound {
				t.Errorf("%s: HasEarlierPayment = %v, want %v", tc.name, got, tc.wantFound)
			}
		}
		return nil
	})

	// CustomerPartner: "" until a conversion of the customer is attributed.
	mustTx(t, db, func(tx hub.Tx) error {
		got, err := tx.CustomerPartner(ctx, hub.DefaultProgramID, "stripe", "cus_1")
		if err != nil || got != "" {
			t.Errorf("CustomerPartner before attribution = %q, %v; want \"\"", got, err)
		}
		c, err := tx.FindConversion(ctx, hub.DefaultProgramID, "stripe", []string{"in_1"})
		if err != nil {
			return err
		}
		c.PartnerID, c.AttributedBy = ptn.ID, "click"
		c.Hints = c.Hints.Merge(hub.Hints{PartnerCode: "ref1"})
		c.RefundedMinor, c.RefundedBaseMinor = 500, 400
		return tx.UpdateConversion(ctx, c)
	})
	mustTx(t, db, func(tx hub.Tx) error {
		got, err := tx.CustomerPartner(ctx, hub.DefaultProgramID, "stripe", "cus_1")
		if err != nil || got != ptn.ID {
			t.Errorf("CustomerPartner = %q, %v; want %s", got, err, ptn.ID)
		}
		got, err = tx.CustomerPartner(ctx, hub.DefaultProgramID, "stripe", "cus_other")
		if err != nil || got != "" {
			t.Errorf("CustomerPartner of another customer = %q, %v; want \"\"", got, err)
		}
		return nil
	})
	got, err := db.GetConversion(ctx, hub.DefaultProgramID, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *first
	want.PartnerID, want.AttributedBy = ptn.ID, "click"
	want.Hints = hub.Hints{PartnerCode: "ref1"}
	want.RefundedMinor, want.RefundedBaseMinor = 500, 400
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("updated conversion (-want +got):\n%s", diff)
	}
	err = db.InTx(ctx, func(tx hub.Tx) error {
		return tx.UpdateConversion(ctx, &hub.Conversion{ID: "cnv_missing"})
	})
	if !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("updating a missing conversion: err = %v, want ErrNotFound", err)
	}
}

// testConversionTimes checks that times round-trip in UTC to the
// microsecond, whatever zone they were written in.
func testConversionTimes(t *testing.T, db *store.DB) {
	src := seedSource(t, db)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	for _, tc := range []struct {
		name string
		at   time.Time
		want time.Time
	}{
		{"nanoseconds_truncated", time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC), time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)},
		{"zone_converted", time.Date(2026, 3, 1, 17, 30, 0, 1000, zone), time.Date(2026, 3, 1, 12, 0, 0, 1000, time.UTC)},
		{"before_1970", time.Date(1969, 7, 20, 20, 17, 40, 5000, time.UTC), time.Date(1969, 7, 20, 20, 17, 40, 5000, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConversion(src, "pi_"+tc.name)
			c.OccurredAt = tc.at
			insertConversion(t, db, c)
			got, err := db.GetConversion(t.Context(), hub.DefaultProgramID, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !got.OccurredAt.Equal(tc.want) || got.OccurredAt.Location() != time.UTC {
				t.Errorf("OccurredAt = %v, want %v", got.OccurredAt, tc.want)
			}
			if got.ReceivedAt.Location() != time.UTC || got.ReceivedAt.Nanosecond()%1000 != 0 {
				t.Errorf("ReceivedAt = %v, want UTC microseconds", got.ReceivedAt)
			}
		})
	}
}

func testTxRollback(t *testing.T, db *store.DB) {
	src := seedSource(t, db)
	boom := errors.New("boom")
	err := db.InTx(t.Context(), func(tx hub.Tx) error {
		if err := tx.InsertConversion(t.Context(), newConversion(src, "cs_rollback")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v, want fn's error", err)
	}
	if _, err := findConversion(t, db, "cs_rollback"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("rolled back conversion: err = %v, want ErrNotFound", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("InTx swallowed a panic")
			}
		}()
		_ = db.InTx(t.Context(), func(tx hub.Tx) error {
			_ = tx.InsertConversion(t.Context(), newConversion(src, "cs_panic"))
			panic("boom")
		})
	}()
	if _, err := findConversion(t, db, "cs_panic"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("conversion of a panicking tx: err = %v, want ErrNotFound", err)
	}
}

func int64p(v int64) *int64 { return &v }

func upsertRefund(t *testing.T, db *store.DB, r *hub.Refund) (*hub.Refund, bool) {
	t.Helper()
	var got *hub.Refund
	var changed bool
	mustTx(t, db, func(tx hub.Tx) error {
		var err error
		got, changed, err = tx.UpsertRefund(t.Context(), r)
		return err
	})
	return got, changed
}

func testRefundUpsert(t *testing.T, db *store.DB) {
	src := seedSource(t, db)
	c := newConversion(src, "ch_1")
	insertConversion(t, db, c)
	refund := func(amount int64, status string, at time.Time) *hub.Refund {
		return &hub.Refund{
			SourceID: src.ID, ConversionID: c.ID, Provider: "stripe", ExternalID: "ch_1",
			OriginalKeys: []string{"ch_1"}, Kind: hub.RefundKindRefund, Cumulative: true,
			AmountMinor: amount, BaseMinor: int64p(amount * 9000 / 10890), Currency: "EUR",
			Status: status, OccurredAt: at,
		}
	}
	first := refund(1000, hub.RefundSucceeded, t0.Add(time.Hour))
	got, changed := upsertRefund(t, db, first)
	if !changed || got.ID == "" {
		t.Fatalf("first upsert: changed = %v, row %+v", changed, got)
	}
	stored := *got

	for _, tc := range []struct {
		name        string
		r           *hub.Refund
		wantChanged bool
		wantAmount  int64
		wantStatus  string
		wantAt      time.Time
	}{
		{"replay", refund(1000, hub.RefundSucceeded, t0.Add(time.Hour)), false, 1000, hub.RefundSucceeded, t0.Add(time.Hour)},
		{"older_fact_ignored", refund(5000, hub.RefundSucceeded, t0.Add(30*time.Minute)), false, 1000, hub.RefundSucceeded, t0.Add(time.Hour)},
		{"newer_same_facts", refund(1000, hub.RefundSucceeded, t0.Add(90*time.Minute)), false, 1000, hub.RefundSucceeded, t0.Add(90 * time.Minute)},
		{"newer_amount", refund(3000, hub.RefundSucceeded, t0.Add(2*time.Hour)), true, 3000, hub.RefundSucceeded, t0.Add(2 * time.Hour)},
		{"same_time_new_status", refund(3000, hub.RefundFailed, t0.Add(2*time.Hour)), true, 3000, hub.RefundFailed, t0.Add(2 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := upsertRefund(t, db, tc.r)
			if changed != tc.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			if got.ID != stored.ID || got.AmountMinor != tc.wantAmount || got.Status != tc.wantStatus || !got.OccurredAt.Equal(tc.wantAt) {
				t.Errorf("returned row = %+v, want id %s amount %d status %s at %v", got, stored.ID, tc.wantAmount, tc.wantStatus, tc.wantAt)
			}
			var rs []*hub.Refund
			mustTx(t, db, func(tx hub.Tx) error {
				var err error
				rs, err = tx.ConversionRefunds(t.Context(), c.ID)
				return err
			})
			if len(rs) != 1 {
				t.Fatalf("ConversionRefunds = %d rows, want 1", len(rs))
			}
			if diff := cmp.Diff(got, rs[0]); diff != "" {
				t.Errorf("stored row differs from the returned one (-returned +stored):\n%s", diff)
			}
		})
	}

	// The same external id as a chargeback is another row.
	cb := refund(10890, hub.DisputeWithdrawn, t0.Add(3*time.Hour))
	cb.Kind = hub.RefundKindChargeback
	cb.BaseMinor = nil
	got, changed = upsertRefund(t, db, cb)
	if !changed || got.ID == stored.ID || got.BaseMinor != nil {
		t.Errorf("chargeback upsert: changed = %v, row %+v", changed, got)
	}
}

func testRefundParking(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	parked := &hub.Refund{
		SourceID: src.ID, Provider: "stripe", ExternalID: "re_1", OriginalKeys: []string{"pi_9"},
		Kind: hub.RefundKindRefund, AmountMinor: 500, Currency: "EUR", Status: hub.RefundSucceeded, OccurredAt: t0,
	}
	got, changed := upsertRefund(t, db, parked)
	if !changed || got.ConversionID != "" {
		t.Fatalf("parked upsert: changed = %v, row %+v", changed, got)
	}
	if !hasPrefix(got.ID, "rfd_") {
		t.Errorf("ID = %q", got.ID)
	}
	mustTx(t, db, func(tx hub.Tx) error {
		rs, err := tx.ParkedRefunds(ctx, hub.DefaultProgramID, "stripe")
		if err != nil {
			return err
		}
		if diff := cmp.Diff([]*hub.Refund{parked}, rs); diff != "" {
			t.Errorf("ParkedRefunds (-want +got):\n%s", diff)
		}
		rs, err = tx.ParkedRefunds(ctx, hub.DefaultProgramID, "paddle")
		if err != nil || len(rs) != 0 {
			t.Errorf("ParkedRefunds of another provider = %v, %v", rs, err)
		}
		return nil
	})

	// The sale arrives: the refund joins it, with the same facts.
	c := newConversion(src, "pi_9")
	insertConversion(t, db, c)
	join := *parked
	join.ID, join.ConversionID = "", c.ID
	got, changed = upsertRefund(t, db, &join)
	if !changed || got.ConversionID != c.ID || got.ID != parked.ID {
		t.Fatalf("joining upsert: changed = %v, row %+v", changed, got)
	}
	// A later fact without conversion does not park it again.
	later := *parked
	later.ID, later.ConversionID, later.OccurredAt = "", "", t0.Add(time.Hour)
	got, _ = upsertRefund(t, db, &later)
	if got.ConversionID != c.ID {
		t.Errorf("refund parked again: %+v", got)
	}
	mustTx(t, db, func(tx hub.Tx) error {
		rs, err := tx.ParkedRefunds(ctx, hub.DefaultProgramID, "stripe")
		if err != nil || len(rs) != 0 {
			t.Errorf("ParkedRefunds after join = %v, %v; want none", rs, err)
		}
		rs, err = tx.ConversionRefunds(ctx, c.ID)
		if err != nil || len(rs) != 1 || rs[0].ID != parked.ID {
			t.Errorf("ConversionRefunds after join = %v, %v", rs, err)
		}
		return nil
	})
}

// testRefundJoin: joining a parked refund attaches it and returns it as
// stored at that moment, even when the transaction listed it before
// another one changed it (PostgreSQL); a refund joined already is not
// joined again, and the transaction's parked list forgets it.
func testRefundJoin(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	parked, _ := upsertRefund(t, db, &hub.Refund{
		SourceID: src.ID, Provider: "stripe", ExternalID: "re_join", OriginalKeys: []string{"pi_join"},
		Kind: hub.RefundKindRefund, AmountMinor: 500, Currency: "EUR", Status: hub.RefundPending, OccurredAt: t0,
	})
	c := newConversion(src, "pi_join")
	insertConversion(t, db, c)
	mustTx(t, db, func(tx hub.Tx) error {
		listed, err := tx.ParkedRefunds(ctx, hub.DefaultProgramID, "stripe")
		if err != nil {
			return err
		}
		if len(listed) != 1 || listed[0].AmountMinor != 500 {
			t.Fatalf("parked refunds = %+v, want re_join at 500", listed)
		}
		want := int64(500)
		if db.Dialect() == "postgres" {
			// Another transaction settles the refund meanwhile.
			later := *listed[0]
			later.ID, later.AmountMinor, later.Status, later.OccurredAt = "", 700, hub.RefundSucceeded, t0.Add(time.Hour)
			upsertRefund(t, db, &later)
			want = 700
		}
		got, err := tx.JoinRefund(ctx, parked.ID, c.ID)
		if err != nil {
			return err
		}
		if got.ConversionID != c.ID || got.AmountMinor != want {
			t.Errorf("joined refund = %+v, want conversion %s and amount %d", got, c.ID, want)
		}
		if _, err := tx.JoinRefund(ctx, parked.ID, c.ID); !errors.Is(err, hub.ErrNotFound) {
			t.Errorf("second join: %v, want ErrNotFound", err)
		}
		if again, err := tx.ParkedRefunds(ctx, hub.DefaultProgramID, "stripe"); err != nil || len(again) != 0 {
			t.Errorf("parked refunds after the join = %+v, %v; want none", again, err)
		}
		return nil
	})
	mustTx(t, db, func(tx hub.Tx) error {
		rs, err := tx.ConversionRefunds(ctx, c.ID)
		if err != nil || len(rs) != 1 || rs[0].ID != parked.ID {
			t.Errorf("refunds of the conversion = %+v, %v; want re_join", rs, err)
		}
		return nil
	})
}

func testCommissionLedger(t *testing.T, db *store.DB) {
	ctx := t.Context()
	src := seedSource(t, db)
	ptn := seedPartner(t, db, "led")
	c := newConversion(src, "pi_led")
	insertConversion(t, db, c)
	com := &hub.Commission{
		ConversionID: c.ID, PartnerID: ptn.ID, RateBPS: 1000, Currency: "EUR",
		HoldUntil: t0.AddDate(0, 0, 30),
	}
	entries := []struct {
		name     string
		e        hub.LedgerEntry
		inserted bool
	}{
		{"earned", hub.LedgerEntry{Key: "earned", Type: hub.EntryEarned, AmountMinor: 900, Currency: "EUR"}, true},
		{"earned_replay", hub.LedgerEntry{Key: "earned", Type: hub.EntryEarned, AmountMinor: 900, Currency: "EUR"}, false},
		{"reversal", hub.LedgerEntry{Key: "reversal:re_1", Type: hub.EntryReversal, AmountMinor: -300, Currency: "EUR"}, true},
		{"reversal_replay_other_amount", hub.LedgerEntry{Key: "reversal:re_1", Type: hub.EntryReversal, AmountMinor: -999, Currency: "EUR"}, false},
	}
	mustTx(t, db, func(tx hub.Tx) error {
		if _, err := tx.GetCommission(ctx, c.ID); !errors.Is(err, hub.ErrNotFound) {
			t.Errorf("GetCommission before insert: err = %v, want ErrNotFound", err)
		}
		if err := tx.InsertCommission(ctx, com); err != nil {
			return err
		}
		for _, tc := range entries {
			e := tc.e
			e.CommissionID = com.ID
			got, err := tx.InsertEntry(ctx, &e)
			if err != nil {
				return err
			}
			if got != tc.inserted {
				t.Errorf("%s: InsertEntry = %v, want %v", tc.name, got, tc.inserted)
			}
		}
		return nil
	})
	if com.Status != hub.CommissionPending || com.ProgramID != hub.DefaultProgramID || !hasPrefix(com.ID, "com_") {
		t.Errorf("filled commission fields: %+v", com)
	}
	var got *hub.Commission
	mustTx(t, db, func(tx hub.Tx) error {
		var err error
		got, err = tx.GetCommission(ctx, c.ID)
		return err
	})
	if got.NetMinor != 600 || len(got.Entries) != 2 {
		t.Fatalf("GetCommission: net %d with %d entries, want 600 with 2", got.NetMinor, len(got.Entries))
	}
	if got.Entries[0].Key != "earned" || got.Entries[1].Key != "reversal:re_1" || !hasPrefix(got.Entries[0].ID, "ent_") {
		t.Errorf("entries = %+v", got.Entries)
	}
	list, err := db.ListCommissions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("ListCommissions = %d, want 1", len(list))
	}
	if diff := cmp.Diff(got, list[0]); diff != "" {
		t.Errorf("ListCommissions vs GetCommission (-get +list):\n%s", diff)
	}
	err = db.InTx(ctx, func(tx hub.Tx) error {
		return tx.InsertCommission(ctx, &hub.Commission{ConversionID: c.ID, PartnerID: ptn.ID, Currency: "EUR",
			Entries: []hub.LedgerEntry{{Key: "earned:again", Type: hub.EntryEarned, AmountMinor: 5, Currency: "EUR"}}})
	})
	wantCode(t, err, hub.ECONFLICT)

	// A commission inserted with its entries stores them with it.
	c2 := newConversion(src, "pi_led2")
	insertConversion(t, db, c2)
	com2 := &hub.Commission{ConversionID: c2.ID, PartnerID: ptn.ID, RateBPS: 500, Currency: "EUR", HoldUntil: t0,
		Entries: []hub.LedgerEntry{
			{Key: "earned", Type: hub.EntryEarned, AmountMinor: 450, Currency: "EUR"},
			{Key: "reversal:re_2", Type: hub.EntryReversal, AmountMinor: -50, Currency: "EUR"},
		}}
	mustTx(t, db, func(tx hub.Tx) error { return tx.InsertCommission(ctx, com2) })
	mustTx(t, db, func(tx hub.Tx) error {
		got, err := tx.GetCommission(ctx, c2.ID)
		if err != nil {
			return err
		}
		if got.NetMinor != 400 || len(got.Entries) != 2 || got.Entries[0].ID != com2.Entries[0].ID ||
			got.Entries[1].CommissionID != com2.ID || got.Entries[1].ProgramID != hub.DefaultProgramID {
			t.Errorf("commission inserted with entries: net %d, entries %+v; want 400 from %+v", got.NetMinor, got.Entries, com2.Entries)
		}
		return nil
	})
	if list, err := db.ListCommissions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{}); err != nil || len(list) != 2 || list[1].NetMinor != 600 {
		t.Errorf("after the refused second commission: %d commissions (%v), want 2 and the first still at 600", len(list), err)
	}
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// testNewSalesWrittenTogether: in a transaction that holds its sales'
// keys locked and knows them free (a processing batch), the conversions it
// creates and their commissions are written together: on PostgreSQL in
// one statement, just before the transaction's next statement or with its
// deferred rows before COMMIT. Every later read of the transaction sees
// them, they are stored as they were when inserted, and a row that cannot
// be written fails the whole transaction, with nothing kept.
func testNewSalesWrittenTogether(t *testing.T, db *store.DB) {
	ctx := t.Context()
	pg := db.Dialect() == "postgres"
	stmts := store.CountStatements(db)
	src := seedSource(t, db)
	ptn := seedPartner(t, db, "together")
	lockTogether := func(tx hub.Tx, keys ...string) error {
		var sets []hub.KeySet
		for _, k := range keys {
			sets = append(sets, hub.KeySet{ProgramID: hub.DefaultProgramID, Provider: "stripe", Keys: []string{k}})
		}
		return tx.LockKeySets(ctx, sets)
	}
	// sale inserts a conversion for key with its commission.
	sale := func(tx hub.Tx, key string) (*hub.Conversion, *hub.Commission, error) {
		c := newConversion(src, key)
		c.PartnerID, c.AttributedBy = ptn.ID, hub.ReasonPartnerCode
		c.Lines = []hub.LineItem{{ProductID: "prod_" + key, PriceID: "price_1", Quantity: 1, AmountMinor: 9000}}
		if err := tx.InsertConversion(ctx, c); err != nil {
			return nil, nil, err
		}
		com := &hub.Commission{
			ProgramID: hub.DefaultProgramID, ConversionID: c.ID, PartnerID: ptn.ID, RateBPS: 1000, Currency: "EUR",
			HoldUntil: t0.AddDate(0, 0, 30),
			Entries:   []hub.LedgerEntry{{Key: "earned", Type: hub.EntryEarned, AmountMinor: 900, Currency: "EUR"}},
		}
		return c, com, tx.InsertCommission(ctx, com)
	}
	// wantStatements checks, on PostgreSQL, the statements sent since
	// *mark, and moves the mark.
	wantStatements := func(what string, mark *int64, want int64) {
		t.Helper()
		n := stmts()
		if pg && n-*mark != want {
			t.Errorf("%s: %d statements, want %d", what, n-*mark, want)
		}
		*mark = n
	}

	keys := []string{"cs_t1", "cs_t2", "cs_t3"}
	var convs []*hub.Conversion
	mustTx(t, db, func(tx hub.Tx) error {
		mark := stmts()
		if err := lockTogether(tx, keys...); err != nil {
			return err
		}
		wantStatements("locking and probing three sales' keys", &mark, 2)
		for _, k := range keys {
			if _, err := tx.FindConversion(ctx, hub.DefaultProgramID, "stripe", []string{k}); !errors.Is(err, hub.ErrNotFound) {
				t.Fatalf("FindConversion(%s) before the insert: %v, want ErrNotFound", k, err)
			}
			c, com, err := sale(tx, k)
			if err != nil {
				return err
			}
			// Changes after the insert are not stored.
			c.BaseMinor, com.RateBPS, com.Entries[0].AmountMinor = 1, 1, 1
			convs = append(convs, c)
		}
		// A refund read leaves them pending.
		if _, err := tx.ParkedRefunds(ctx, hub.DefaultProgramID, "stripe"); err != nil {
			return err
		}
		wantStatements("three sales and a refund read", &mark, 1)
		// A commission read writes them first, and finds them.
		com, err := tx.GetCommission(ctx, convs[1].ID)
		if err != nil {
			t.Fatalf("GetCommission of a conversion inserted in the transaction: %v", err)
		}
		if com.RateBPS != 1000 || com.NetMinor != 900 || len(com.Entries) != 1 {
			t.Errorf("commission in the transaction: rate %d, net %d, %d entries; want 1000, 900, 1", com.RateBPS, com.NetMinor, len(com.Entries))
		}
		wantStatements("a commission read after three sales", &mark, 3) // the sales, the commission, its entries
		got, err := tx.FindConversion(ctx, hub.DefaultProgramID, "stripe", []string{"cs_t3"})
		if err != nil || got.ID != convs[2].ID {
			t.Fatalf("FindConversion(cs_t3) in the transaction = %v, %v; want %s", got, err, convs[2].ID)
		}
		// Another one after the reads, written at COMMIT.
		c := newConversion(src, "cs_t4")
		if err := lockTogether(tx, "cs_t4", "cs_t5"); err != nil {
			return err
		}
		if err := tx.InsertConversion(ctx, c); err != nil {
			return err
		}
		convs = append(convs, c)
		return nil
	})
	for i, c := range convs {
		got, err := db.GetConversion(ctx, hub.DefaultProgramID, c.ID)
		if err != nil {
			t.Fatalf("conversion %d: %v", i, err)
		}
		if got.BaseMinor != 9000 || len(got.Keys) != 1 || got.Keys[0] != c.Keys[0] {
			t.Errorf("stored conversion %d: base %d, keys %v; want 9000, %v", i, got.BaseMinor, got.Keys, c.Keys[:1])
		}
		if i < 3 && (len(got.Lines) != 1 || got.Lines[0].ProductID != "prod_"+c.Keys[0] || got.PartnerID != ptn.ID) {
			t.Errorf("stored conversion %d: lines %+v, partner %q", i, got.Lines, got.PartnerID)
		}
	}
	coms, err := db.ListCommissions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(coms) != 3 {
		t.Fatalf("%d commissions stored, want 3", len(coms))
	}
	for _, com := range coms {
		if com.RateBPS != 1000 || com.NetMinor != 900 || com.Status != hub.CommissionPending || len(com.Entries) != 1 {
			t.Errorf("stored commission %s: rate %d, net %d, status %s, %d entries; want 1000, 900, pending, 1",
				com.ID, com.RateBPS, com.NetMinor, com.Status, len(com.Entries))
		}
	}

	// A sale applied alone: its keys, locked, found free by FindConversion.
	// Its conversion and commission go in with the final state of the
	// inbound event: the transaction takes BEGIN, claim, lock, lookup,
	// the writes and COMMIT.
	ev, _, err := db.InsertInboundEvent(ctx, newInbound(src, "evt_alone"))
	if err != nil {
		t.Fatal(err)
	}
	mark := stmts()
	mustTx(t, db, func(tx hub.Tx) error {
		if _, err := tx.ClaimInbound(ctx, []string{ev.ID}); err != nil {
			return err
		}
		if err := tx.LockKeys(ctx, hub.DefaultProgramID, "stripe", []string{"cs_alone"}); err != nil {
			return err
		}
		if _, err := tx.FindConversion(ctx, hub.DefaultProgramID, "stripe", []string{"cs_alone"}); !errors.Is(err, hub.ErrNotFound) {
			t.Fatalf("FindConversion(cs_alone): %v, want ErrNotFound", err)
		}
		if _, _, err := sale(tx, "cs_alone"); err != nil {
			return err
		}
		return tx.FinishInbound(ctx, ev.ID, hub.InboundProcessed, "", t0)
	})
	wantStatements("a sale alone", &mark, 6)
	if got, err := findConversion(t, db, "cs_alone"); err != nil || got.BaseMinor != 9000 {
		t.Fatalf("FindConversion(cs_alone) after commit = %+v, %v", got, err)
	}

	// Keys the transaction has not locked: the conversion is inserted at
	// once, and a key that names another conversion fails the call itself.
	mustTx(t, db, func(tx hub.Tx) error {
		if _, err := tx.FindConversion(ctx, hub.DefaultProgramID, "stripe", []string{"cs_unlocked"}); !errors.Is(err, hub.ErrNotFound) {
			t.Fatalf("FindConversion(cs_unlocked): %v, want ErrNotFound", err)
		}
		mark := stmts()
		if err := tx.InsertConversion(ctx, newConversion(src, "cs_unlocked")); err != nil {
			return err
		}
		wantStatements("a sale whose keys are not locked", &mark, 1)
		wantCode(t, tx.InsertConversion(ctx, newConversion(src, "cs_other", "cs_t1")), hub.ECONFLICT)
		return nil
	})

	if !pg {
		return // SQLite's single connection: no writer can come in between
	}
	// A key taken, while the transaction ran, by a writer that did not
	// lock it: the transaction fails with ECONFLICT and keeps nothing.
	err = db.InTx(ctx, func(tx hub.Tx) error {
		if err := lockTogether(tx, "cs_c1", "cs_c2"); err != nil {
			return err
		}
		if err := tx.InsertConversion(ctx, newConversion(src, "cs_c1")); err != nil {
			return err
		}
		insertConversion(t, db, newConversion(src, "cs_c2")) // another connection
		if err := tx.InsertConversion(ctx, newConversion(src, "cs_c2")); err != nil {
			t.Errorf("InsertConversion(cs_c2) = %v; want the conflict found when the rows are written", err)
		}
		return nil
	})
	wantCode(t, err, hub.ECONFLICT)
	if _, err := findConversion(t, db, "cs_c1"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("the failed transaction left cs_c1 behind: err = %v", err)
	}
}
