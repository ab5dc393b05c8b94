package store_test

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

// TestDispatchStore runs the dispatcher's store methods against SQLite,
// and PostgreSQL when DATABASE_URL is set.
func TestDispatchStore(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db *store.DB)
	}{
		{"record_attempts", testRecordAttempts},
		{"no_attempt_on_failed_delivery", testNoAttemptOnFailedDelivery},
		{"delivery_endpoints", testDeliveryEndpoints},
		{"defer_delivery", testDeferDelivery},
		{"endpoint_failing", testEndpointFailing},
		{"auto_disable", testAutoDisable},
	}
	for _, d := range []struct{ name, url string }{{"sqlite", ""}, {"postgres", os.Getenv("DATABASE_URL")}} {
		t.Run(d.name, func(t *testing.T) {
			if d.name == "postgres" && d.url == "" {
				t.Skip("DATABASE_URL is not set: the PostgreSQL dialect runs when it is")
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t, storetest.OpenURL(t, d.url))
				})
			}
		})
	}
}

func testRecordAttempts(t *testing.T, db *store.DB) {
	ctx := t.Context()
	createEndpoint(t, db, &hub.Endpoint{Description: "hook", Enabled: true})
	var ds []*hub.Delivery
	for range 4 {
		ds = append(ds, insertEvent(t, db, &hub.Event{Type: "ping"})...)
	}
	// ds[3] has attempt 1 recorded already.
	ds[3].Status, ds[3].Attempts = hub.DeliveryPending, 1
	if err := db.RecordAttempt(ctx, ds[3], &hub.Attempt{Number: 1, StatusCode: 500}); err != nil {
		t.Fatal(err)
	}
	next := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	set := func(d *hub.Delivery, status string, attempts int, next *time.Time, lastErr string) *hub.Delivery {
		c := *d
		c.Status, c.Attempts, c.NextAttemptAt, c.LastError = status, attempts, next, lastErr
		return &c
	}
	batch := []*hub.Delivery{
		set(ds[0], hub.DeliverySucceeded, 1, nil, ""),
		set(ds[1], hub.DeliveryPending, 1, &next, "http_500: Internal Server Error"),
		set(ds[1], hub.DeliverySucceeded, 1, nil, ""), // twice in one batch
		set(ds[3], hub.DeliverySucceeded, 1, nil, ""), // attempt 1 is recorded already
		{ID: "dlv_missing", Status: hub.DeliverySucceeded, Attempts: 1},
		set(ds[2], hub.DeliveryFailed, 1, nil, "timeout"),
	}
	as := []*hub.Attempt{
		{Number: 1, StatusCode: 204, LatencyMS: 3, ResponseHeaders: map[string]string{"X-Request-Id": "r1"}},
		{Number: 1, StatusCode: 500, LatencyMS: 4, Error: "http_500: Internal Server Error", ResponseBody: "boom",
			ResponseHeaders: map[string]string{"Content-Type": "text/plain", "Retry-After": "5"}},
		{Number: 1, StatusCode: 200},
		{Number: 1, StatusCode: 200},
		{Number: 1, StatusCode: 200},
		{Number: 1, Error: "timeout"},
	}
	errs := db.RecordAttempts(ctx, batch, as)
	wantCodes := []string{"", "", hub.ECONFLICT, hub.ECONFLICT, hub.ENOTFOUND, ""}
	for i, err := range errs {
		if got := hub.ErrorCode(err); (err == nil) != (wantCodes[i] == "") || (err != nil && got != wantCodes[i]) {
			t.Errorf("attempt %d: err = %v (code %q), want code %q", i, err, got, wantCodes[i])
		}
	}
	if !errors.Is(errs[4], hub.ErrNotFound) {
		t.Errorf("missing delivery: err = %v, want ErrNotFound", errs[4])
	}

	list, err := db.ListDeliveries(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*hub.Delivery{}
	for _, d := range list {
		got[d.ID] = d
	}
	for _, i := range []int{0, 1, 5} {
		want := *batch[i]
		want.AttemptLog = []hub.Attempt{*as[i]}
		if diff := cmp.Diff(&want, got[want.ID]); diff != "" {
			t.Errorf("delivery %d (-want +got):\n%s", i, diff)
		}
	}
	if d := got[ds[3].ID]; d.Status != hub.DeliveryPending || len(d.AttemptLog) != 1 || d.AttemptLog[0].StatusCode != 500 {
		t.Errorf("conflicting attempt changed the delivery: %+v", d)
	}
}

// testNoAttemptOnFailedDelivery: an attempt that ends after its delivery
// was failed (its endpoint disabled meanwhile) is not recorded; the
// delivery keeps its state and reason.
func testNoAttemptOnFailedDelivery(t *testing.T, db *store.DB) {
	ctx := t.Context()
	ep := createEndpoint(t, db, &hub.Endpoint{Description: "hook", Enabled: true})
	ds := insertEvent(t, db, &hub.Event{Type: "ping"})
	ds = append(ds, insertEvent(t, db, &hub.Event{Type: "ping"})...)
	if _, _, err := db.AutoDisableEndpoint(ctx, ep.ID, "410 Gone", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	a, b := *ds[0], *ds[1]
	a.Status, a.Attempts, a.LastError = hub.DeliveryFailed, 1, "endpoint_disabled: the endpoint is disabled"
	b.Status, b.Attempts = hub.DeliverySucceeded, 1
	errs := db.RecordAttempts(ctx, []*hub.Delivery{&a}, []*hub.Attempt{{Number: 1, Error: a.LastError}})
	if hub.ErrorCode(errs[0]) != hub.ECONFLICT {
		t.Errorf("RecordAttempts on a failed delivery: err = %v, want ECONFLICT", errs[0])
	}
	err := db.RecordAttempt(ctx, &b, &hub.Attempt{Number: 1, StatusCode: 204})
	if hub.ErrorCode(err) != hub.ECONFLICT {
		t.Errorf("RecordAttempt on a failed delivery: err = %v, want ECONFLICT", err)
	}
	for _, d := range ds {
		got, err := db.GetDelivery(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != hub.DeliveryFailed || got.Attempts != 0 || got.LastError != "endpoint_disabled: 410 Gone" || len(got.AttemptLog) != 0 {
			t.Errorf("delivery: status %q, %d attempts, last error %q, %d attempt rows; want failed, 0, the disabling reason, none",
				got.Status, got.Attempts, got.LastError, len(got.AttemptLog))
		}
	}
}

// testDeliveryEndpoints: endpoints by id with their secrets in clear, at
// the indexes asked, a copy each for an id asked twice, nil for one gone.
func testDeliveryEndpoints(t *testing.T, db *store.DB) {
	ctx := t.Context()
	a := createEndpoint(t, db, &hub.Endpoint{Description: "a", Enabled: true, Secret: "whsec_YWFhYWFhYWFhYWFhYWFhYQ=="})
	b := createEndpoint(t, db, &hub.Endpoint{Description: "b", Enabled: true})
	got, err := db.DeliveryEndpoints(ctx, []string{a.ID, "ep_gone", b.ID, a.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0] == nil || got[1] != nil || got[2] == nil || got[3] == nil {
		t.Fatalf("DeliveryEndpoints = %v, want a, nil, b, a", got)
	}
	if got[0].ID != a.ID || got[2].ID != b.ID || got[3].ID != a.ID || got[0].URL != a.URL {
		t.Errorf("DeliveryEndpoints ids %s %s %s, want %s %s %s", got[0].ID, got[2].ID, got[3].ID, a.ID, b.ID, a.ID)
	}
	if got[0].Secret != a.Secret || got[3].Secret != a.Secret {
		t.Errorf("secret %q, want %q in clear", got[0].Secret, a.Secret)
	}
	if got[0] == got[3] {
		t.Error("an id asked twice shares one endpoint value")
	}
	none, err := db.DeliveryEndpoints(ctx, nil)
	if err != nil || len(none) != 0 {
		t.Errorf("DeliveryEndpoints(nil) = %v, %v", none, err)
	}
}

func testDeferDelivery(t *testing.T, db *store.DB) {
	ctx := t.Context()
	createEndpoint(t, db, &hub.Endpoint{Description: "hook", Enabled: true})
	ds := insertEvent(t, db, &hub.Event{Type: "ping"})
	ds = append(ds, insertEvent(t, db, &hub.Event{Type: "ping"})...)
	ds[1].Status, ds[1].Attempts = hub.DeliveryFailed, 1
	if err := db.RecordAttempt(ctx, ds[1], &hub.Attempt{Number: 1}); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(30 * time.Second).UTC().Truncate(time.Microsecond)
	later := at.Add(time.Minute)
	tests := []struct {
		name     string
		id       string
		attempts int
		at       time.Time
		want     bool
	}{
		{"pending", ds[0].ID, 0, at, true},
		{"attempts moved on", ds[0].ID, 1, later, false},
		{"not pending", ds[1].ID, 1, later, false},
		{"missing", "dlv_missing", 0, later, false},
	}
	var ids []string
	var attempts []int
	var ats []time.Time
	var want []bool
	for _, tc := range tests {
		ids, attempts, ats, want = append(ids, tc.id), append(attempts, tc.attempts), append(ats, tc.at), append(want, tc.want)
	}
	moved, err := db.DeferDeliveries(ctx, ids, attempts, ats)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, moved); diff != "" {
		t.Errorf("DeferDeliveries moved (-want +got):\n%s", diff)
	}
	d, err := db.GetDelivery(ctx, ds[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(at) || d.Attempts != 0 || d.Status != hub.DeliveryPending {
		t.Errorf("deferred delivery = %+v, want pending, 0 attempts, next at %v", d, at)
	}
	due, err := db.DeliveriesDue(ctx, time.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 0 {
		t.Errorf("DeliveriesDue lists %d deliveries, want none (deferred)", len(due))
	}
}

func testEndpointFailing(t *testing.T, db *store.DB) {
	ctx := t.Context()
	ep := createEndpoint(t, db, &hub.Endpoint{Description: "hook", Enabled: true})
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	steps := []struct {
		name    string
		since   *time.Time
		changed bool
		want    *time.Time
	}{
		{"first failure", &t0, true, &t0},
		{"later failure keeps the start", &t1, false, &t0},
		{"success clears", nil, true, nil},
		{"success again", nil, false, nil},
		{"new run", &t1, true, &t1},
	}
	for _, s := range steps {
		changed, err := db.SetEndpointFailing(ctx, ep.ID, s.since)
		if err != nil || changed != s.changed {
			t.Fatalf("%s: SetEndpointFailing = %v, %v; want %v", s.name, changed, err, s.changed)
		}
		got, err := db.GetEndpoint(ctx, hub.DefaultProgramID, ep.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s.want, got.FailingSince); diff != "" {
			t.Errorf("%s: FailingSince (-want +got):\n%s", s.name, diff)
		}
	}
}

func testAutoDisable(t *testing.T, db *store.DB) {
	ctx := t.Context()
	p := seedPartner(t, db, "p1")
	bad := createEndpoint(t, db, &hub.Endpoint{Description: "bad", Enabled: true})
	ops := createEndpoint(t, db, &hub.Endpoint{Description: "ops", Enabled: true,
		EndpointSettings: hub.EndpointSettings{Operations: true}, EventTypes: []string{"commission.*"}})
	createEndpoint(t, db, &hub.Endpoint{Description: "everything", Enabled: true})
	createEndpoint(t, db, &hub.Endpoint{Description: "scoped ops", Enabled: true, PartnerID: p.ID,
		EndpointSettings: hub.EndpointSettings{Operations: true}})
	createEndpoint(t, db, &hub.Endpoint{Description: "disabled ops", Enabled: false,
		EndpointSettings: hub.EndpointSettings{Operations: true}})
	pending := insertEvent(t, db, &hub.Event{Type: "ping"})
	at := time.Now().UTC().Truncate(time.Microsecond)

	var notified *hub.Endpoint
	notify := func(e *hub.Endpoint) (*hub.Event, error) {
		notified = e
		return &hub.Event{Type: hub.EventEndpointDisabled, Data: json.RawMessage(`{"reason":"410 Gone"}`)}, nil
	}
	ep, dels, err := db.AutoDisableEndpoint(ctx, bad.ID, "410 Gone", at, notify)
	if err != nil {
		t.Fatal(err)
	}
	if ep == nil || ep.Enabled || ep.DisabledReason != "410 Gone" || notified != ep {
		t.Fatalf("AutoDisableEndpoint endpoint = %+v (notified %p)", ep, notified)
	}
	if len(dels) != 1 || dels[0].EndpointID != ops.ID || dels[0].EventType != hub.EventEndpointDisabled {
		t.Errorf("endpoint.disabled deliveries = %+v, want one to the operations endpoint %s", dels, ops.ID)
	}
	stored, err := db.GetEndpoint(ctx, hub.DefaultProgramID, bad.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Enabled || stored.DisabledReason != "410 Gone" || stored.Secret != bad.Secret {
		t.Errorf("stored endpoint = %+v", stored)
	}
	for _, d := range pending {
		got, err := db.GetDelivery(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d.EndpointID == bad.ID {
			if got.Status != hub.DeliveryFailed || got.NextAttemptAt != nil || got.LastError != "endpoint_disabled: 410 Gone" {
				t.Errorf("pending delivery to the disabled endpoint = %+v", got)
			}
		} else if got.Status != hub.DeliveryPending {
			t.Errorf("delivery to another endpoint = %+v, want pending", got)
		}
	}

	notified = nil
	ep, dels, err = db.AutoDisableEndpoint(ctx, bad.ID, "failing since then", at, notify)
	if err != nil || ep != nil || dels != nil || notified != nil {
		t.Errorf("second AutoDisableEndpoint = %+v, %v, %v (notified %v); want nothing", ep, dels, err, notified)
	}
	if _, _, err := db.AutoDisableEndpoint(ctx, "ep_missing", "x", at, notify); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing endpoint: err = %v, want ErrNotFound", err)
	}
}
