package outbound_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/schemas"
	"github.com/partnerhub/partnerhub/outbound"
)

func TestGoneDisablesAndNotifiesOperations(t *testing.T) {
	gone := newReceiver(t, reply(410, "this hook was removed"))
	opsRC := newReceiver(t, reply(204, ""))
	allRC := newReceiver(t, reply(204, ""))
	bad := &hub.Endpoint{URL: gone.URL + "/hook", Description: "old zap", Enabled: true,
		EndpointSettings: hub.EndpointSettings{Headers: map[string]string{"Authorization": "Bearer s3cret"}}}
	// The operations endpoint gets endpoint.disabled whatever its type
	// filter; the catch-all endpoint does not get it.
	ops := &hub.Endpoint{URL: opsRC.URL, Enabled: true, EventTypes: []string{"ping"},
		EndpointSettings: hub.EndpointSettings{Operations: true}}
	all := &hub.Endpoint{URL: allRC.URL, Enabled: true, EventTypes: []string{"*"}}
	w := newWorld(t, outbound.Config{}, bad, ops, all)
	first := w.event(t, "commission.created")
	second := w.event(t, "commission.created")

	w.deliver(t, first[bad.ID].ID, 1)

	ep, err := w.st.GetEndpoint(t.Context(), hub.DefaultProgramID, bad.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Enabled || ep.DisabledReason != "410 Gone" {
		t.Errorf("endpoint: enabled %v, reason %q; want disabled, 410 Gone", ep.Enabled, ep.DisabledReason)
	}
	d := w.get(t, first[bad.ID].ID)
	if d.Status != hub.DeliveryFailed || d.Attempts != 1 || errorClass(d.LastError) != "http_410" || d.NextAttemptAt != nil {
		t.Errorf("delivery answered 410: status %q, %d attempts, last error %q; want failed, 1, http_410, no retry", d.Status, d.Attempts, d.LastError)
	}
	d = w.get(t, second[bad.ID].ID)
	if d.Status != hub.DeliveryFailed || d.Attempts != 0 || d.LastError != "endpoint_disabled: 410 Gone" {
		t.Errorf("other pending delivery: status %q, %d attempts, last error %q; want failed, 0, endpoint_disabled", d.Status, d.Attempts, d.LastError)
	}
	for _, dl := range []*hub.Delivery{first[all.ID], second[all.ID]} {
		if got := w.get(t, dl.ID); got.Status != hub.DeliveryPending {
			t.Errorf("delivery to another endpoint: %q, want pending", got.Status)
		}
	}

	// One endpoint.disabled delivery, to the operations endpoint, queued.
	ds, err := w.st.FindDeliveries(t.Context(), hub.DefaultProgramID, hub.Filter{}, "", hub.EventEndpointDisabled, hub.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].EndpointID != ops.ID {
		t.Fatalf("endpoint.disabled deliveries = %+v, want one to the operations endpoint", ds)
	}
	if calls := w.requeued(ds[0].ID, 1); len(calls) != 1 {
		t.Errorf("endpoint.disabled delivery queued %d times, want once", len(calls))
	}
	w.deliver(t, ds[0].ID, 1)
	reqs := opsRC.Requests()
	if len(reqs) != 1 {
		t.Fatalf("operations endpoint got %d requests, want 1", len(reqs))
	}
	body := reqs[0].Body
	wh, _ := standardwebhooks.NewWebhook(ops.Secret)
	if err := wh.VerifyIgnoringTimestamp(body, reqs[0].Header); err != nil {
		t.Errorf("reference library: %v", err)
	}
	for _, secret := range []string{bad.Secret, "s3cret", "Authorization"} {
		if bytes.Contains(body, []byte(secret)) {
			t.Errorf("endpoint.disabled body contains %q: %s", secret, body)
		}
	}
	var env struct {
		Type string `json:"type"`
		Data struct {
			Endpoint map[string]any `json:"endpoint"`
			Reason   string         `json:"reason"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": bad.ID, "program_id": hub.DefaultProgramID, "url": bad.URL, "description": "old zap",
		"enabled": false, "disabled_reason": "410 Gone", "failing_since": "2026-11-02T10:00:00Z",
		"created_at": "2026-11-02T10:00:00Z",
	}
	if env.Type != hub.EventEndpointDisabled || env.Data.Reason != "410 Gone" {
		t.Errorf("event type %q, reason %q", env.Type, env.Data.Reason)
	}
	if diff := cmp.Diff(want, env.Data.Endpoint); diff != "" {
		t.Errorf("data.endpoint (-want +got):\n%s", diff)
	}
	validate(t, hub.EventEndpointDisabled, body)
	if n := len(allRC.Requests()); n != 0 {
		t.Errorf("catch-all endpoint got %d requests, want 0", n)
	}
}

// validate checks body against the event type's published JSON Schema.
func validate(t *testing.T, typ string, body []byte) {
	t.Helper()
	b, ok := schemas.Schema(typ)
	if !ok {
		t.Fatalf("no schema for %s", typ)
	}
	c := jsonschema.NewCompiler()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource(typ+".json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(typ + ".json")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("%s does not match its schema: %v", typ, err)
	}
}

func TestFailingEndpointDisabled(t *testing.T) {
	day := 24 * time.Hour
	type step struct {
		at     time.Duration // after base
		status int
	}
	tests := []struct {
		name         string
		disableAfter time.Duration
		steps        []step
		wantReason   string // "" : still enabled
		wantSince    time.Duration
	}{
		{name: "failing five days", steps: []step{{0, 500}, {2 * day, 503}, {5 * day, 500}},
			wantReason: "failing since 2026-11-02T10:00:00Z"},
		{name: "just under five days", steps: []step{{0, 500}, {5*day - time.Second, 500}}, wantSince: 0},
		{name: "a success ends the run", steps: []step{{0, 500}, {3 * day, 200}, {4 * day, 500}, {8 * day, 500}},
			wantSince: 4 * day},
		{name: "configurable period", disableAfter: time.Hour, steps: []step{{0, 400}, {time.Hour, 400}},
			wantReason: "failing since 2026-11-02T10:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var status atomic.Int32
			rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(status.Load())) })
			opsRC := newReceiver(t, reply(204, ""))
			ep := &hub.Endpoint{URL: rc.URL, Enabled: true}
			ops := &hub.Endpoint{URL: opsRC.URL, Enabled: true, EventTypes: []string{"ping"},
				EndpointSettings: hub.EndpointSettings{Operations: true}}
			w := newWorld(t, outbound.Config{DisableAfter: tt.disableAfter}, ep, ops)
			for _, s := range tt.steps {
				w.clk.t = base.Add(s.at)
				status.Store(int32(s.status))
				w.deliver(t, w.event(t, "commission.created")[ep.ID].ID, 1)
			}
			got, err := w.st.GetEndpoint(t.Context(), hub.DefaultProgramID, ep.ID)
			if err != nil {
				t.Fatal(err)
			}
			notices, err := w.st.FindDeliveries(t.Context(), hub.DefaultProgramID, hub.Filter{}, ops.ID, hub.EventEndpointDisabled, hub.Page{})
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantReason != "" {
				if got.Enabled || got.DisabledReason != tt.wantReason || len(notices) != 1 {
					t.Errorf("endpoint: enabled %v, reason %q, %d notices; want disabled, %q, 1", got.Enabled, got.DisabledReason, len(notices), tt.wantReason)
				}
				return
			}
			want := base.Add(tt.wantSince)
			if !got.Enabled || got.FailingSince == nil || !got.FailingSince.Equal(want) || len(notices) != 0 {
				t.Errorf("endpoint: enabled %v, failing since %v, %d notices; want enabled, failing since %v, none", got.Enabled, got.FailingSince, len(notices), want)
			}
		})
	}
}

func TestSuccessClearsFailingSince(t *testing.T) {
	var status atomic.Int32
	status.Store(500)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(status.Load())) })
	ep := &hub.Endpoint{URL: rc.URL, Enabled: true}
	w := newWorld(t, outbound.Config{}, ep)
	w.deliver(t, w.event(t, "commission.created")[ep.ID].ID, 1)
	got, _ := w.st.GetEndpoint(t.Context(), hub.DefaultProgramID, ep.ID)
	if got.FailingSince == nil || !got.FailingSince.Equal(base) {
		t.Fatalf("after a failure: failing since %v, want %v", got.FailingSince, base)
	}
	status.Store(200)
	w.deliver(t, w.event(t, "commission.created")[ep.ID].ID, 1)
	got, _ = w.st.GetEndpoint(t.Context(), hub.DefaultProgramID, ep.ID)
	if got.FailingSince != nil {
		t.Errorf("after a success: failing since %v, want none", got.FailingSince)
	}
}

func TestDisabledEndpointEventOnlyToOperations(t *testing.T) {
	// Endpoint.Accepts: endpoint.disabled goes to enabled operations
	// endpoints in scope, whatever their filter, and to nothing else.
	tests := []struct {
		name string
		ep   hub.Endpoint
		want bool
	}{
		{"operations", hub.Endpoint{Enabled: true, EndpointSettings: hub.EndpointSettings{Operations: true}}, true},
		{"operations with a filter", hub.Endpoint{Enabled: true, EventTypes: []string{"commission.*"}, EndpointSettings: hub.EndpointSettings{Operations: true}}, true},
		{"catch-all", hub.Endpoint{Enabled: true}, false},
		{"star", hub.Endpoint{Enabled: true, EventTypes: []string{"*"}}, false},
		{"named", hub.Endpoint{Enabled: true, EventTypes: []string{"endpoint.disabled"}}, false},
		{"disabled operations", hub.Endpoint{EndpointSettings: hub.EndpointSettings{Operations: true}}, false},
		{"partner-scoped operations", hub.Endpoint{Enabled: true, PartnerID: "ptn_1", EndpointSettings: hub.EndpointSettings{Operations: true}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ep.Accepts(hub.EventEndpointDisabled, ""); got != tt.want {
				t.Errorf("Accepts(endpoint.disabled) = %v, want %v", got, tt.want)
			}
		})
	}
	if !(&hub.Endpoint{Enabled: true, EndpointSettings: hub.EndpointSettings{Operations: true}}).Accepts("commission.created", "") {
		t.Error("an operations endpoint without a filter no longer accepts other events")
	}
}

func TestDeliveryToDisabledEndpointStops(t *testing.T) {
	rc := newReceiver(t, reply(204, ""))
	ep := &hub.Endpoint{URL: rc.URL, Enabled: true}
	w := newWorld(t, outbound.Config{}, ep)
	id := w.event(t, "commission.created")[ep.ID].ID
	if _, err := w.st.ModifyEndpoint(t.Context(), hub.DefaultProgramID, ep.ID, func(e *hub.Endpoint) error {
		e.Enabled, e.DisabledReason = false, "by an operator"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w.deliver(t, id, 1)
	d := w.get(t, id)
	if d.Status != hub.DeliveryFailed || !strings.HasPrefix(d.LastError, "endpoint_disabled") {
		t.Errorf("delivery: %q, %q; want failed, endpoint_disabled", d.Status, d.LastError)
	}
	if n := len(rc.Requests()); n != 0 {
		t.Errorf("receiver got %d requests, want 0", n)
	}
}
