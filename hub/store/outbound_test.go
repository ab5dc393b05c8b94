package store_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
)

func createEndpoint(t *testing.T, db *store.DB, e *hub.Endpoint) *hub.Endpoint {
	t.Helper()
	if e.URL == "" {
		e.URL = "https://example.com/" + e.Description
	}
	if e.Secret == "" {
		e.Secret = "whsec_dGVzdA=="
	}
	if err := db.CreateEndpoint(t.Context(), e); err != nil {
		t.Fatalf("CreateEndpoint: %v", err)
	}
	return e
}

func insertEvent(t *testing.T, db *store.DB, e *hub.Event) []*hub.Delivery {
	t.Helper()
	var ds []*hub.Delivery
	mustTx(t, db, func(tx hub.Tx) error {
		var err error
		ds, err = tx.InsertEvent(t.Context(), e)
		return err
	})
	return ds
}

func testEventDeliveries(t *testing.T, db *store.DB) {
	ctx := t.Context()
	p1 := seedPartner(t, db, "p1")
	p2 := seedPartner(t, db, "p2")
	all := createEndpoint(t, db, &hub.Endpoint{Description: "all", Enabled: true})
	createEndpoint(t, db, &hub.Endpoint{Description: "disabled", Enabled: false})
	scoped := createEndpoint(t, db, &hub.Endpoint{Description: "p1_only", PartnerID: p1.ID, Enabled: true})
	typed := createEndpoint(t, db, &hub.Endpoint{Description: "conversions", EventTypes: []string{"conversion.created"}, Enabled: true})
	wild := createEndpoint(t, db, &hub.Endpoint{Description: "commissions", EventTypes: []string{"commission.*"}, Enabled: true})
	star := createEndpoint(t, db, &hub.Endpoint{Description: "star", EventTypes: []string{"*"}, PartnerID: p2.ID, Enabled: true})

	for _, tc := range []struct {
		name      string
		typ       string
		partnerID string
		want      []string
	}{
		{"commission_of_p1", "commission.created", p1.ID, []string{all.ID, scoped.ID, wild.ID}},
		{"commission_of_p2", "commission.approved", p2.ID, []string{all.ID, wild.ID, star.ID}},
		{"program_wide_conversion", "conversion.created", "", []string{all.ID, typed.ID}},
		{"wildcard_needs_dot", "commissionx.created", "", []string{all.ID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now().Add(-time.Second)
			e := &hub.Event{Type: tc.typ, PartnerID: tc.partnerID, Data: json.RawMessage(`{"amount_minor":900}`)}
			ds := insertEvent(t, db, e)
			var got []string
			for _, d := range ds {
				got = append(got, d.EndpointID)
				if d.EventID != e.ID || d.EventType != tc.typ || d.Status != hub.DeliveryPending || d.Attempts != 0 {
					t.Errorf("delivery %+v", d)
				}
				if d.NextAttemptAt == nil || d.NextAttemptAt.Before(before) || d.NextAttemptAt.After(time.Now()) {
					t.Errorf("NextAttemptAt = %v, want now", d.NextAttemptAt)
				}
				stored, err := db.GetDelivery(ctx, d.ID)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(d, stored); diff != "" {
					t.Errorf("stored delivery (-returned +stored):\n%s", diff)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("endpoints with a delivery (-want +got):\n%s", diff)
			}
		})
	}
	events, err := db.ListEvents(ctx, hub.DefaultProgramID, hub.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 4 || events[0].Type != "commissionx.created" || string(events[3].Data) != `{"amount_minor":900}` {
		t.Errorf("ListEvents = %+v", events)
	}
}

func testRecordAttempt(t *testing.T, db *store.DB) {
	ctx := t.Context()
	ep := createEndpoint(t, db, &hub.Endpoint{Description: "hook", Secret: "whsec_c2VjcmV0", Enabled: true})
	ds := insertEvent(t, db, &hub.Event{Type: "ping"})
	if len(ds) != 1 {
		t.Fatalf("deliveries = %d, want 1", len(ds))
	}
	d := ds[0]

	gotD, gotE, gotEP, err := db.DeliveryTarget(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gotD.ID != d.ID || gotE.Type != "ping" || string(gotE.Data) != "{}" || gotEP.Secret != ep.Secret || gotEP.URL != ep.URL {
		t.Errorf("DeliveryTarget = %+v, %+v, %+v", gotD, gotE, gotEP)
	}
	if _, _, _, err := db.DeliveryTarget(ctx, "dlv_missing"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing delivery: err = %v, want ErrNotFound", err)
	}

	retryAt := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
	d.Status, d.Attempts, d.NextAttemptAt, d.LastError = hub.DeliveryPending, 1, &retryAt, "HTTP 500"
	a1 := &hub.Attempt{Number: 1, StatusCode: 500, LatencyMS: 120, Error: "HTTP 500", ResponseBody: "oops"}
	if err := db.RecordAttempt(ctx, d, a1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		number int
	}{{"same_attempt_again", 1}, {"skipping_an_attempt", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			dup := *d
			err := db.RecordAttempt(ctx, &dup, &hub.Attempt{Number: tc.number, StatusCode: 200})
			wantCode(t, err, hub.ECONFLICT)
		})
	}
	d.Status, d.Attempts, d.NextAttemptAt, d.LastError = hub.DeliverySucceeded, 2, nil, ""
	a2 := &hub.Attempt{Number: 2, StatusCode: 204, LatencyMS: 80}
	if err := db.RecordAttempt(ctx, d, a2); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordAttempt(ctx, &hub.Delivery{ID: "dlv_missing"}, &hub.Attempt{Number: 1}); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("attempt of a missing delivery: err = %v, want ErrNotFound", err)
	}

	list, err := db.ListDeliveries(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{})
	if err != nil {
		t.Fatal(err)
	}
	want := *d
	want.AttemptLog = []hub.Attempt{*a1, *a2}
	if diff := cmp.Diff([]*hub.Delivery{&want}, list); diff != "" {
		t.Errorf("ListDeliveries (-want +got):\n%s", diff)
	}
	if !hasPrefix(a1.ID, "att_") || a1.DeliveryID != d.ID {
		t.Errorf("filled attempt fields: %+v", a1)
	}
}

func testDeliveriesDue(t *testing.T, db *store.DB) {
	ctx := t.Context()
	createEndpoint(t, db, &hub.Endpoint{Description: "hook", Enabled: true})
	var ds []*hub.Delivery
	for range 4 {
		ds = append(ds, insertEvent(t, db, &hub.Event{Type: "ping"})...)
	}
	now := time.Now().UTC()
	set := func(d *hub.Delivery, status string, next *time.Time) {
		t.Helper()
		d.Status, d.Attempts, d.NextAttemptAt = status, 1, next
		if err := db.RecordAttempt(ctx, d, &hub.Attempt{Number: 1}); err != nil {
			t.Fatal(err)
		}
	}
	early, late, future := now.Add(-2*time.Hour), now.Add(-time.Hour), now.Add(time.Hour)
	set(ds[0], hub.DeliveryPending, &late)
	set(ds[1], hub.DeliveryPending, &early)
	set(ds[2], hub.DeliveryPending, &future)
	set(ds[3], hub.DeliveryFailed, nil)

	for _, tc := range []struct {
		name   string
		before time.Time
		limit  int
		want   []string
	}{
		{"oldest_first", now, 0, []string{ds[1].ID, ds[0].ID}},
		{"limit", now, 1, []string{ds[1].ID}},
		{"before_is_exclusive", early, 0, nil},
		{"future_included_later", now.Add(2 * time.Hour), 10, []string{ds[1].ID, ds[0].ID, ds[2].ID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.DeliveriesDue(ctx, tc.before, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range got {
				ids = append(ids, d.ID)
			}
			if diff := cmp.Diff(tc.want, ids); diff != "" {
				t.Errorf("DeliveriesDue (-want +got):\n%s", diff)
			}
		})
	}
}
