package outbound_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/netguard"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
	"github.com/partnerhub/partnerhub/outbound"
)

var _ outbound.OperatorStore = (*store.DB)(nil)

// apiServer is the outbound routes behind hub.Auth, as cmd mounts them,
// with one API key per role, a recording queue and a real dispatcher
// allowed to reach 127.0.0.1.
type apiServer struct {
	st    *store.DB
	e     *echo.Echo
	keys  map[string]string // role → bearer key
	q     *apiQueue
	clock *apiClock
	disp  *outbound.Dispatcher
}

// apiQueue records EnqueueDelivery calls.
type apiQueue struct {
	mu    sync.Mutex
	calls []apiEnqueued
}

type apiEnqueued struct {
	DeliveryID string
	Attempt    int
}

func (q *apiQueue) EnqueueProcess(context.Context, string) error { return nil }

func (q *apiQueue) EnqueueDelivery(_ context.Context, id string, attempt int, _ time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, apiEnqueued{id, attempt})
	return nil
}

// take returns the calls recorded since the last take.
func (q *apiQueue) take() []apiEnqueued {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.calls
	q.calls = nil
	return c
}

// apiClock is the API's clock: real time (receivers check signature
// timestamps against it) shifted by an offset.
type apiClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *apiClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }

func (c *apiClock) Shift(d time.Duration) { c.mu.Lock(); c.off = d; c.mu.Unlock() }

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	s := &apiServer{st: st, e: echo.New(), keys: map[string]string{}, q: &apiQueue{}, clock: &apiClock{}}
	for _, role := range []string{hub.RoleAdmin, hub.RoleOps, hub.RoleViewer} {
		key := "phk_test_" + role + "_0123456789abcdef"
		err := st.CreateAPIKey(ctx, &hub.APIKey{
			ID:        hub.NewID("key"),
			ProgramID: hub.DefaultProgramID,
			Name:      role,
			Role:      role,
			Hash:      hub.HashKey(key),
			Prefix:    key[:8],
			CreatedAt: time.Now(),
		})
		if err != nil {
			t.Fatalf("CreateAPIKey: %v", err)
		}
		s.keys[role] = key
	}
	client := netguard.NewClient(netguard.Config{AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	t.Cleanup(client.CloseIdleConnections)
	var err error
	s.disp, err = outbound.New(outbound.Config{
		Schedule: []time.Duration{0, time.Minute, time.Hour},
		Timeout:  5 * time.Second,
		Client:   client,
	}, st, s.q)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.disp.Close)
	s.e.HTTPErrorHandler = hub.ErrorHandler
	outbound.Mount(s.e.Group("/api/v1", hub.Auth(st)), st, outbound.APIConfig{
		Queue:    s.q,
		Deliver:  s.disp.Deliver,
		Now:      s.clock.Now,
		Breakers: s.disp.BreakerStates,
	})
	return s
}

// do sends a request as role ("" for none) and returns the status and
// decoded JSON body.
func (s *apiServer) do(t *testing.T, role, method, path, body string) (int, map[string]any, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+s.keys[role])
	}
	rec := httptest.NewRecorder()
	s.e.ServeHTTP(rec, req)
	var out map[string]any
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: body is not a JSON object: %s", method, path, rec.Body)
		}
	}
	return rec.Code, out, rec.Body.String()
}

// decode sends a request as role, checks the status and decodes the
// answer into v (when not nil).
func (s *apiServer) decode(t *testing.T, role, method, path, body string, want int, v any) {
	t.Helper()
	code, _, raw := s.do(t, role, method, path, body)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, raw)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(raw), v); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// createEndpoint creates an endpoint through the API and returns its id
// and secret.
func (s *apiServer) createEndpoint(t *testing.T, body string) (id, secret string) {
	t.Helper()
	var out struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	s.decode(t, hub.RoleAdmin, http.MethodPost, "/api/v1/endpoints", body, http.StatusCreated, &out)
	return out.ID, out.Secret
}

// event writes an outbound event as the hub does, returning its
// deliveries.
func (s *apiServer) event(t *testing.T, typ, partnerID string) (*hub.Event, []*hub.Delivery) {
	t.Helper()
	ctx := context.Background()
	e := &hub.Event{
		ID:        hub.NewID("evt"),
		ProgramID: hub.DefaultProgramID,
		Type:      typ,
		PartnerID: partnerID,
		Data:      json.RawMessage(`{"partner_id":"` + partnerID + `","amount_minor":1200}`),
		CreatedAt: time.Now().UTC(),
	}
	var ds []*hub.Delivery
	err := s.st.InTx(ctx, func(tx hub.Tx) error {
		var err error
		ds, err = tx.InsertEvent(ctx, e)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return e, ds
}

// fail records a final failed attempt of d.
func (s *apiServer) fail(t *testing.T, d *hub.Delivery) {
	t.Helper()
	d.Status, d.Attempts, d.LastError, d.NextAttemptAt = hub.DeliveryFailed, d.Attempts+1, "http_500: Internal Server Error", nil
	err := s.st.RecordAttempt(context.Background(), d, &hub.Attempt{
		ID: hub.NewID("att"), DeliveryID: d.ID, Number: d.Attempts, StatusCode: 500, Error: d.LastError, CreatedAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// delivery returns a delivery with its attempts.
func (s *apiServer) delivery(t *testing.T, id string) *hub.Delivery {
	t.Helper()
	d, err := s.st.GetDeliveryLog(context.Background(), hub.DefaultProgramID, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// hookReceiver is a local webhook receiver answering status and keeping
// what it received.
type hookReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	got    []hookRequest
}

type hookRequest struct {
	Header http.Header
	Body   []byte
}

func newHookReceiver(t *testing.T, status int) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{status: status}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, hookRequest{r.Header.Clone(), b})
		st := rc.status
		rc.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *hookReceiver) requests() []hookRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hookRequest(nil), rc.got...)
}

// ids returns the webhook-id of every request received, sorted.
func (rc *hookReceiver) ids() []string {
	var out []string
	for _, r := range rc.requests() {
		out = append(out, r.Header.Get("webhook-id"))
	}
	slices.Sort(out)
	return out
}

func TestCreateEndpointShowsSecretOnce(t *testing.T) {
	s := newAPIServer(t)
	code, created, _ := s.do(t, hub.RoleAdmin, http.MethodPost, "/api/v1/endpoints",
		`{"url":"https://partner.example/hooks","description":"CRM","event_types":["commission.*","ping","ping"]}`)
	if code != http.StatusCreated {
		t.Fatalf("create: status %d, body %v", code, created)
	}
	secret, _ := created["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("create: secret = %q, want whsec_…", secret)
	}
	id, _ := created["id"].(string)
	want := map[string]any{
		"id":          id,
		"program_id":  hub.DefaultProgramID,
		"url":         "https://partner.example/hooks",
		"description": "CRM",
		"event_types": []any{"commission.*", "ping"},
		"enabled":     true,
		"secret":      secret,
	}
	delete(created, "created_at")
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("create response (-want +got):\n%s", diff)
	}

	// The store keeps the secret the response showed: deliveries are
	// signed with it.
	ep, err := s.st.GetEndpoint(context.Background(), hub.DefaultProgramID, id)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Secret != secret {
		t.Error("stored secret differs from the one shown")
	}

	for _, tt := range []struct{ name, path string }{
		{"list", "/api/v1/endpoints"},
		{"get", "/api/v1/endpoints/" + id},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, raw := s.do(t, hub.RoleViewer, http.MethodGet, tt.path, "")
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, raw)
			}
			if !strings.Contains(raw, id) {
				t.Errorf("response lacks the endpoint: %s", raw)
			}
			if strings.Contains(raw, secret) || strings.Contains(raw, `"secret"`) {
				t.Errorf("response shows the secret: %s", raw)
			}
		})
	}

	t.Run("audit", func(t *testing.T) {
		a := lastAudit(t, s, "endpoint.create")
		if a.Resource != "endpoint" || a.ResourceID != id || a.KeyID == "" {
			t.Errorf("audit entry = %+v", a)
		}
		if strings.Contains(string(a.After), secret) || !strings.Contains(string(a.After), id) {
			t.Errorf("audit After = %s; want the endpoint without its secret", a.After)
		}
	})
}

// lastAudit returns the newest audit entry with action.
func lastAudit(t *testing.T, s *apiServer, action string) *hub.AuditEntry {
	t.Helper()
	entries, err := s.st.ListAudit(context.Background(), hub.DefaultProgramID, hub.Page{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(entries, func(a *hub.AuditEntry) bool { return a.Action == action })
	if i < 0 {
		t.Fatalf("no %s audit entry", action)
	}
	return entries[i]
}

func TestCreateEndpointSettings(t *testing.T) {
	s := newAPIServer(t)
	code, created, raw := s.do(t, hub.RoleAdmin, http.MethodPost, "/api/v1/endpoints", `{
		"url": "https://ops.example/hooks",
		"headers": {"X-Api-Key": "k-123", "Authorization": "Bearer abc"},
		"rate_limit": 20, "timeout_ms": 5000, "max_in_flight": 4,
		"operations": true, "enabled": false}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, raw)
	}
	ep, err := s.st.GetEndpoint(context.Background(), hub.DefaultProgramID, created["id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	want := hub.EndpointSettings{
		Headers:   map[string]string{"X-Api-Key": "k-123", "Authorization": "Bearer abc"},
		RateLimit: 20, TimeoutMS: 5000, MaxInFlight: 4, Operations: true,
	}
	if diff := cmp.Diff(want, ep.EndpointSettings); diff != "" {
		t.Errorf("stored settings (-want +got):\n%s", diff)
	}
	if ep.Enabled || ep.DisabledReason == "" {
		t.Errorf("enabled = %v, reason %q; want a disabled endpoint with a reason", ep.Enabled, ep.DisabledReason)
	}
	a := lastAudit(t, s, "endpoint.create")
	if strings.Contains(string(a.After), "k-123") || strings.Contains(string(a.After), "Bearer abc") {
		t.Errorf("audit entry shows custom header values: %s", a.After)
	}
}

// fieldErrors returns the sorted names of the fields a 422 answer lists.
func fieldErrors(out map[string]any) []string {
	errs, _ := out["errors"].(map[string]any)
	var got []string
	for k := range errs {
		got = append(got, k)
	}
	slices.Sort(got)
	return got
}

func TestCreateEndpointInvalid(t *testing.T) {
	s := newAPIServer(t)
	err := s.st.CreatePartner(context.Background(), &hub.Partner{
		ID: "ptn_known", ProgramID: hub.DefaultProgramID, Name: "Known", Code: "known", CreatedAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		body   string
		fields []string // fields with errors; nil for a malformed body
		ok     bool
	}{
		{name: "missing url", body: `{}`, fields: []string{"url"}},
		{name: "relative url", body: `{"url":"/hooks"}`, fields: []string{"url"}},
		{name: "ftp url", body: `{"url":"ftp://example.com/x"}`, fields: []string{"url"}},
		{name: "no host", body: `{"url":"https:///x"}`, fields: []string{"url"}},
		{name: "unknown event type", body: `{"url":"https://a.example","event_types":["order.created"]}`, fields: []string{"event_types"}},
		{name: "wildcard of no category", body: `{"url":"https://a.example","event_types":["order.*"]}`, fields: []string{"event_types"}},
		{name: "bare prefix", body: `{"url":"https://a.example","event_types":["commission"]}`, fields: []string{"event_types"}},
		{name: "unknown partner", body: `{"url":"https://a.example","partner_id":"ptn_nope"}`, fields: []string{"partner_id"}},
		{name: "several fields", body: `{"url":"x","event_types":["nope"]}`, fields: []string{"event_types", "url"}},
		{name: "signature header", body: `{"url":"https://a.example","headers":{"webhook-signature":"v1,x"}}`, fields: []string{"headers"}},
		{name: "header with line break", body: `{"url":"https://a.example","headers":{"X-A":"a\r\nX-B: b"}}`, fields: []string{"headers"}},
		{name: "bad header name", body: `{"url":"https://a.example","headers":{"X A":"1"}}`, fields: []string{"headers"}},
		{name: "header twice", body: `{"url":"https://a.example","headers":{"X-A":"1","x-a":"2"}}`, fields: []string{"headers"}},
		{name: "numbers out of range", body: `{"url":"https://a.example","rate_limit":-1,"timeout_ms":50,"max_in_flight":100000}`, fields: []string{"max_in_flight", "rate_limit", "timeout_ms"}},
		{name: "malformed JSON", body: `{"url":`},
		{name: "every type", body: `{"url":"http://a.example/h","event_types":["*"]}`, ok: true},
		{name: "zero settings are defaults", body: `{"url":"http://a.example/h","rate_limit":0,"timeout_ms":0,"max_in_flight":0}`, ok: true},
		{name: "known partner", body: `{"url":"https://a.example","partner_id":"ptn_known","event_types":["conversion.*","endpoint.disabled"]}`, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, raw := s.do(t, hub.RoleAdmin, http.MethodPost, "/api/v1/endpoints", tt.body)
			if tt.ok {
				if code != http.StatusCreated {
					t.Errorf("status %d, want 201: %s", code, raw)
				}
				return
			}
			if code != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422: %s", code, raw)
			}
			if diff := cmp.Diff(tt.fields, fieldErrors(out)); diff != "" {
				t.Errorf("fields with errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPatchEndpoint(t *testing.T) {
	s := newAPIServer(t)
	ctx := context.Background()
	if err := s.st.CreatePartner(ctx, &hub.Partner{ID: "ptn_a", ProgramID: hub.DefaultProgramID, Name: "A", Code: "a"}); err != nil {
		t.Fatal(err)
	}
	id, secret := s.createEndpoint(t, `{"url":"https://a.example/h","partner_id":"ptn_a","headers":{"X-Token":"t0"}}`)
	path := "/api/v1/endpoints/" + id

	tests := []struct {
		name   string
		body   string
		fields []string // 422 with these fields when set
		check  func(t *testing.T, ep *hub.Endpoint)
	}{
		{
			name: "url and description",
			body: `{"url":" https://b.example/h ","description":"moved"}`,
			check: func(t *testing.T, ep *hub.Endpoint) {
				if ep.URL != "https://b.example/h" || ep.Description != "moved" {
					t.Errorf("url %q, description %q", ep.URL, ep.Description)
				}
				if ep.PartnerID != "ptn_a" || ep.Headers["X-Token"] != "t0" {
					t.Errorf("fields not in the body changed: %+v", ep)
				}
			},
		},
		{
			name: "event types with wildcards",
			body: `{"event_types":["commission.*","conversion.created"]}`,
			check: func(t *testing.T, ep *hub.Endpoint) {
				if diff := cmp.Diff([]string{"commission.*", "conversion.created"}, ep.EventTypes); diff != "" {
					t.Errorf("event types (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "settings",
			body: `{"headers":{"X-Token":"t1"},"rate_limit":5,"timeout_ms":2000,"max_in_flight":2,"operations":true}`,
			check: func(t *testing.T, ep *hub.Endpoint) {
				want := hub.EndpointSettings{Headers: map[string]string{"X-Token": "t1"}, RateLimit: 5, TimeoutMS: 2000, MaxInFlight: 2, Operations: true}
				if diff := cmp.Diff(want, ep.EndpointSettings); diff != "" {
					t.Errorf("settings (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "clear headers and limits",
			body: `{"headers":{},"rate_limit":0}`,
			check: func(t *testing.T, ep *hub.Endpoint) {
				if ep.Headers != nil || ep.RateLimit != 0 || ep.TimeoutMS != 2000 {
					t.Errorf("settings = %+v", ep.EndpointSettings)
				}
			},
		},
		{
			name: "disable",
			body: `{"enabled":false}`,
			check: func(t *testing.T, ep *hub.Endpoint) {
				if ep.Enabled || !strings.Contains(ep.DisabledReason, "operator") {
					t.Errorf("enabled %v, reason %q", ep.Enabled, ep.DisabledReason)
				}
			},
		},
		{
			name: "enable",
			body: `{"enabled":true}`,
			check: func(t *testing.T, ep *hub.Endpoint) {
				if !ep.Enabled || ep.DisabledReason != "" {
					t.Errorf("enabled %v, reason %q", ep.Enabled, ep.DisabledReason)
				}
			},
		},
		{name: "partner scope is fixed", body: `{"partner_id":""}`, fields: []string{"partner_id"}},
		{name: "invalid fields", body: `{"url":"nope","event_types":["x.*"],"max_in_flight":-3}`, fields: []string{"event_types", "max_in_flight", "url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := s.st.GetEndpoint(ctx, hub.DefaultProgramID, id)
			code, out, raw := s.do(t, hub.RoleAdmin, http.MethodPatch, path, tt.body)
			after, err := s.st.GetEndpoint(ctx, hub.DefaultProgramID, id)
			if err != nil {
				t.Fatal(err)
			}
			if tt.fields != nil {
				if code != http.StatusUnprocessableEntity {
					t.Fatalf("status %d, want 422: %s", code, raw)
				}
				if diff := cmp.Diff(tt.fields, fieldErrors(out)); diff != "" {
					t.Errorf("fields with errors (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(before, after); diff != "" {
					t.Errorf("a refused PATCH changed the endpoint (-before +after):\n%s", diff)
				}
				return
			}
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, raw)
			}
			if after.Secret != secret {
				t.Error("PATCH changed the secret")
			}
			if strings.Contains(raw, secret) {
				t.Error("PATCH answer shows the secret")
			}
			tt.check(t, after)
		})
	}

	t.Run("audit", func(t *testing.T) {
		a := lastAudit(t, s, "endpoint.update")
		if a.ResourceID != id || len(a.Before) == 0 || len(a.After) == 0 {
			t.Errorf("audit entry = %+v", a)
		}
		for _, leak := range []string{secret, "t0", "t1"} {
			if strings.Contains(string(a.Before)+string(a.After), `"`+leak+`"`) {
				t.Errorf("audit entry shows %q: %s %s", leak, a.Before, a.After)
			}
		}
	})
	t.Run("unknown endpoint", func(t *testing.T) {
		code, _, raw := s.do(t, hub.RoleAdmin, http.MethodPatch, "/api/v1/endpoints/ep_nope", `{"description":"x"}`)
		if code != http.StatusNotFound {
			t.Errorf("status %d, want 404: %s", code, raw)
		}
	})
}

func TestDeleteEndpoint(t *testing.T) {
	s := newAPIServer(t)
	ctx := context.Background()
	id, secret := s.createEndpoint(t, `{"url":"https://a.example/h"}`)
	keep, _ := s.createEndpoint(t, `{"url":"https://b.example/h"}`)
	evt, ds := s.event(t, "commission.created", "")
	if len(ds) != 2 {
		t.Fatalf("%d deliveries, want 2", len(ds))
	}

	s.decode(t, hub.RoleAdmin, http.MethodDelete, "/api/v1/endpoints/"+id, "", http.StatusNoContent, nil)

	if _, err := s.st.GetEndpoint(ctx, hub.DefaultProgramID, id); hub.ErrorCode(err) != hub.ENOTFOUND {
		t.Errorf("GetEndpoint after delete: %v, want not found", err)
	}
	left, err := s.st.FindDeliveries(ctx, hub.DefaultProgramID, hub.Filter{}, "", "", hub.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].EndpointID != keep {
		t.Errorf("deliveries left = %+v, want only the one to %s", left, keep)
	}
	if _, err := s.st.GetEvent(ctx, hub.DefaultProgramID, evt.ID); err != nil {
		t.Errorf("the event went with the endpoint: %v", err)
	}
	a := lastAudit(t, s, "endpoint.delete")
	if a.ResourceID != id || len(a.Before) == 0 || strings.Contains(string(a.Before), secret) {
		t.Errorf("audit entry = %+v", a)
	}
	code, _, raw := s.do(t, hub.RoleAdmin, http.MethodDelete, "/api/v1/endpoints/"+id, "")
	if code != http.StatusNotFound {
		t.Errorf("second delete: status %d, want 404: %s", code, raw)
	}
}

// TestRoles checks who may do what: viewers only read, ops may retry,
// replay, ping and re-enable, and only admins change endpoints.
func TestRoles(t *testing.T) {
	s := newAPIServer(t)
	rc := newHookReceiver(t, http.StatusNoContent)
	id, _ := s.createEndpoint(t, `{"url":"`+rc.URL+`/h"}`)
	evt, ds := s.event(t, "commission.created", "")
	s.fail(t, ds[0])
	ep := "/api/v1/endpoints/" + id
	tests := []struct {
		method, path, body string
		// want is the status for viewer, ops and admin.
		viewer, ops, admin int
	}{
		{http.MethodGet, "/api/v1/endpoints", "", 200, 200, 200},
		{http.MethodGet, "/api/v1/deliveries", "", 200, 200, 200},
		{http.MethodGet, "/api/v1/deliveries/" + ds[0].ID, "", 200, 200, 200},
		{http.MethodGet, "/api/v1/events", "", 200, 200, 200},
		{http.MethodPost, "/api/v1/endpoints", `{"url":"https://x.example"}`, 403, 403, 201},
		{http.MethodPatch, ep, `{"description":"d"}`, 403, 403, 200},
		{http.MethodPost, ep + "/rotate-secret", `{}`, 403, 403, 200},
		{http.MethodPost, ep + "/enable", ``, 403, 200, 200},
		{http.MethodPost, ep + "/ping", ``, 403, 200, 200},
		{http.MethodPost, "/api/v1/deliveries/" + ds[0].ID + "/retry", ``, 403, 202, 200},
		{http.MethodPost, "/api/v1/deliveries/retry", `{"endpoint_id":"` + id + `"}`, 403, 200, 200},
		{http.MethodPost, "/api/v1/events/" + evt.ID + "/replay", `{"endpoint_id":"` + id + `"}`, 403, 202, 202},
		{http.MethodDelete, "/api/v1/endpoints/ep_other", ``, 403, 403, 404},
	}
	for _, tt := range tests {
		for _, role := range []string{hub.RoleViewer, hub.RoleOps, hub.RoleAdmin} {
			want := map[string]int{hub.RoleViewer: tt.viewer, hub.RoleOps: tt.ops, hub.RoleAdmin: tt.admin}[role]
			t.Run(role+" "+tt.method+" "+strings.TrimPrefix(tt.path, "/api/v1"), func(t *testing.T) {
				code, out, raw := s.do(t, role, tt.method, tt.path, tt.body)
				if code != want {
					t.Fatalf("status %d, want %d: %s", code, want, raw)
				}
				if code == http.StatusForbidden {
					if st, _ := out["status"].(float64); int(st) != 403 {
						t.Errorf("not a problem document: %s", raw)
					}
				}
			})
		}
	}
	t.Run("no key", func(t *testing.T) {
		code, _, raw := s.do(t, "", http.MethodPost, "/api/v1/deliveries/retry", `{"endpoint_id":"`+id+`"}`)
		if code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401: %s", code, raw)
		}
	})
	t.Run("unknown endpoint", func(t *testing.T) {
		code, _, raw := s.do(t, hub.RoleViewer, http.MethodGet, "/api/v1/endpoints/ep_nope", "")
		if code != http.StatusNotFound {
			t.Errorf("status %d, want 404: %s", code, raw)
		}
	})
}

// deliveryList is a decoded GET /deliveries.
type deliveryList struct {
	Data []struct {
		ID         string `json:"id"`
		EventID    string `json:"event_id"`
		EndpointID string `json:"endpoint_id"`
		EventType  string `json:"event_type"`
		Status     string `json:"status"`
		Attempts   []struct {
			Number     int    `json:"number"`
			StatusCode int    `json:"status_code"`
			Error      string `json:"error"`
		} `json:"attempts_log"`
	} `json:"data"`
	NextCursor string `json:"next_cursor"`
}

func (l deliveryList) ids() []string {
	var out []string
	for _, d := range l.Data {
		out = append(out, d.ID)
	}
	slices.Sort(out)
	return out
}

func sortedIDs(ds ...*hub.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	slices.Sort(out)
	return out
}

func TestListDeliveriesFilters(t *testing.T) {
	s := newAPIServer(t)
	ctx := context.Background()
	if err := s.st.CreatePartner(ctx, &hub.Partner{ID: "ptn_a", ProgramID: hub.DefaultProgramID, Name: "A", Code: "a"}); err != nil {
		t.Fatal(err)
	}
	ep1, _ := s.createEndpoint(t, `{"url":"https://one.example/h"}`)
	ep2, _ := s.createEndpoint(t, `{"url":"https://two.example/h","event_types":["commission.*"]}`)

	_, conv := s.event(t, "conversion.created", "ptn_a") // ep1 only
	time.Sleep(5 * time.Millisecond)
	mid := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	_, com := s.event(t, "commission.created", "") // ep1 and ep2
	s.fail(t, com[0])
	by := map[string]*hub.Delivery{}
	for _, d := range append(conv, com...) {
		by[d.EndpointID+" "+d.EventType] = d
	}
	c1, m1, m2 := by[ep1+" conversion.created"], by[ep1+" commission.created"], by[ep2+" commission.created"]
	if c1 == nil || m1 == nil || m2 == nil {
		t.Fatalf("deliveries = %v", by)
	}

	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{"all", "", sortedIDs(c1, m1, m2)},
		{"endpoint", "endpoint_id=" + ep2, sortedIDs(m2)},
		{"event type", "event_type=conversion.created", sortedIDs(c1)},
		{"event category", "event_type=commission.*", sortedIDs(m1, m2)},
		{"every type", "event_type=*", sortedIDs(c1, m1, m2)},
		{"status", "status=failed", sortedIDs(com[0])},
		{"partner", "partner_id=ptn_a", sortedIDs(c1)},
		{"since", "since=" + mid.Format(time.RFC3339Nano), sortedIDs(m1, m2)},
		{"until", "until=" + mid.Format(time.RFC3339Nano), sortedIDs(c1)},
		{"endpoint and type", "endpoint_id=" + ep1 + "&event_type=commission.created", sortedIDs(m1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l deliveryList
			s.decode(t, hub.RoleViewer, http.MethodGet, "/api/v1/deliveries?"+tt.query, "", http.StatusOK, &l)
			if diff := cmp.Diff(tt.want, l.ids()); diff != "" {
				t.Errorf("deliveries (-want +got):\n%s", diff)
			}
		})
	}
	for _, tt := range []struct{ name, query, field string }{
		{"bad status", "status=bogus", "status"},
		{"bad event type", "event_type=order.*", "event_type"},
		{"bad since", "since=yesterday", "since"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, raw := s.do(t, hub.RoleViewer, http.MethodGet, "/api/v1/deliveries?"+tt.query, "")
			if code != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422: %s", code, raw)
			}
			if diff := cmp.Diff([]string{tt.field}, fieldErrors(out)); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("one delivery with attempts", func(t *testing.T) {
		var d hub.Delivery
		s.decode(t, hub.RoleViewer, http.MethodGet, "/api/v1/deliveries/"+com[0].ID, "", http.StatusOK, &d)
		if d.Status != hub.DeliveryFailed || len(d.AttemptLog) != 1 || d.AttemptLog[0].StatusCode != 500 {
			t.Errorf("delivery = %+v", d)
		}
		code, _, _ := s.do(t, hub.RoleViewer, http.MethodGet, "/api/v1/deliveries/dlv_nope", "")
		if code != http.StatusNotFound {
			t.Errorf("unknown delivery: status %d, want 404", code)
		}
	})
	t.Run("events paginate", func(t *testing.T) {
		var first, second struct {
			Data       []hub.Event `json:"data"`
			NextCursor string      `json:"next_cursor"`
		}
		s.decode(t, hub.RoleViewer, http.MethodGet, "/api/v1/events?limit=1", "", http.StatusOK, &first)
		if len(first.Data) != 1 || first.NextCursor == "" {
			t.Fatalf("first page = %+v, want one event and a cursor", first)
		}
		s.decode(t, hub.RoleViewer, http.MethodGet, "/api/v1/events?limit=1&cursor="+first.NextCursor, "", http.StatusOK, &second)
		if len(second.Data) != 1 || second.Data[0].ID == first.Data[0].ID {
			t.Errorf("second page = %+v", second)
		}
	})
}

// jsonNormalizer reads the test's canonical facts straight from the body.
var jsonNormalizer = hub.NormalizerFunc(func(_ *hub.Source, ev *hub.InboundEvent) (*hub.Normalized, error) {
	var n hub.Normalized
	if err := json.Unmarshal(ev.Body, &n); err != nil {
		return nil, err
	}
	return &n, nil
})

// TestPartnerScopeIsolation runs conversions and a refund of two partners
// (and an unattributed one) through hub.Service, delivers every resulting
// delivery with the dispatcher, and checks that each partner-scoped
// endpoint received exactly its partner's events and never a byte naming
// the other partner, while the unscoped endpoint received them all.
func TestPartnerScopeIsolation(t *testing.T) {
	s := newAPIServer(t)
	ctx := context.Background()
	prog, err := s.st.GetProgram(ctx, hub.DefaultProgramID)
	if err != nil {
		t.Fatal(err)
	}
	prog.DefaultCommissionBPS = 1000
	if err := s.st.UpdateProgram(ctx, prog); err != nil {
		t.Fatal(err)
	}
	partners := map[string]string{"alice": "ptn_alice000000000000000000", "bob": "ptn_bob00000000000000000000"}
	for code, id := range partners {
		if err := s.st.CreatePartner(ctx, &hub.Partner{ID: id, ProgramID: hub.DefaultProgramID, Name: code, Code: code}); err != nil {
			t.Fatal(err)
		}
	}
	src := &hub.Source{ID: hub.NewID("src"), ProgramID: hub.DefaultProgramID, Provider: "test", Name: "test", Secret: "s3cret"}
	if err := s.st.CreateSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	svc, err := hub.NewService(hub.ServiceConfig{Store: s.st, Queue: s.q, Normalizer: func(string) (hub.Normalizer, bool) { return jsonNormalizer, true }})
	if err != nil {
		t.Fatal(err)
	}

	receivers := map[string]*hookReceiver{"alice": newHookReceiver(t, 204), "bob": newHookReceiver(t, 204), "all": newHookReceiver(t, 204)}
	endpoints := map[string]string{}
	for name, rc := range receivers {
		body := `{"url":"` + rc.URL + `/` + name + `"}`
		if id := partners[name]; id != "" {
			body = `{"url":"` + rc.URL + `/` + name + `","partner_id":"` + id + `"}`
		}
		endpoints[name], _ = s.createEndpoint(t, body)
	}

	now := time.Now().UTC()
	pay := func(key, code string) hub.Normalized {
		return hub.Normalized{Livemode: true, Subject: key, Payment: &hub.Payment{
			Keys: []string{key}, BaseMinor: 10000, GrossMinor: 12000, TaxMinor: 2000, Currency: "USD",
			Hints: hub.Hints{PartnerCode: code}, OccurredAt: now,
		}}
	}
	facts := []hub.Normalized{
		pay("pay_a1", "alice"),
		pay("pay_b1", "bob"),
		pay("pay_a2", "alice"),
		pay("pay_none", ""),
		{Livemode: true, Subject: "pay_b1", Refund: &hub.RefundFact{
			Keys: []string{"pay_b1"}, ExternalID: "re_b1", AmountMinor: 6000, Currency: "USD", Status: hub.RefundSucceeded, OccurredAt: now,
		}},
	}
	for i, n := range facts {
		b, _ := json.Marshal(n)
		ev, _, err := svc.Ingest(ctx, src, hub.Receipt{DedupeKey: "evt_" + strconv.Itoa(i), EventType: "test"}, b)
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Process(ctx, ev.ID); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range s.q.take() {
		if err := s.disp.Deliver(ctx, c.DeliveryID, c.Attempt); err != nil {
			t.Fatal(err)
		}
	}

	events, err := s.st.ListEvents(ctx, hub.DefaultProgramID, hub.Page{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	for _, e := range events {
		want["all"] = append(want["all"], e.ID)
		for name, id := range partners {
			if e.PartnerID == id {
				want[name] = append(want[name], e.ID)
			}
		}
	}
	for name, rc := range receivers {
		t.Run(name, func(t *testing.T) {
			slices.Sort(want[name])
			if len(want[name]) < 2 {
				t.Fatalf("only %d events for %s; the scenario is too small", len(want[name]), name)
			}
			if diff := cmp.Diff(want[name], rc.ids()); diff != "" {
				t.Errorf("webhook ids received (-want +got):\n%s", diff)
			}
			for other, id := range partners {
				if other == name || name == "all" {
					continue
				}
				for _, r := range rc.requests() {
					if strings.Contains(string(r.Body), id) {
						t.Errorf("%s's endpoint received %s's data: %s", name, other, r.Body)
					}
				}
			}
			var l deliveryList
			s.decode(t, hub.RoleViewer, http.MethodGet, "/api/v1/deliveries?limit=200&endpoint_id="+endpoints[name], "", http.StatusOK, &l)
			if len(l.Data) != len(want[name]) {
				t.Errorf("%d deliveries listed for the endpoint, want %d", len(l.Data), len(want[name]))
			}
			for _, d := range l.Data {
				if d.Status != hub.DeliverySucceeded {
					t.Errorf("delivery %s is %s", d.ID, d.Status)
				}
			}
		})
	}

	t.Run("replay of another partner's event is refused", func(t *testing.T) {
		var bobs string
		for _, e := range events {
			if e.PartnerID == partners["bob"] {
				bobs = e.ID
			}
		}
		code, out, raw := s.do(t, hub.RoleAdmin, http.MethodPost, "/api/v1/events/"+bobs+"/replay", `{"endpoint_id":"`+endpoints["alice"]+`"}`)
		if code != http.StatusUnprocessableEntity || !slices.Equal(fieldErrors(out), []string{"endpoint_id"}) {
			t.Errorf("status %d, want 422 on endpoint_id: %s", code, raw)
		}
	})
}

// TestEndpointShowsBreakerState: the endpoint API shows its circuit
// breaker's state: closed at first, open once attempts keep failing.
func TestEndpointShowsBreakerState(t *testing.T) {
	s := newAPIServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/hook"
	ln.Close() // connections are refused from now on
	id, _ := s.createEndpoint(t, `{"url":"`+dead+`"}`)
	var ep map[string]any
	s.decode(t, hub.RoleViewer, "GET", "/api/v1/endpoints/"+id, "", 200, &ep)
	if ep["breaker"] != "closed" {
		t.Fatalf("new endpoint breaker = %v, want closed", ep["breaker"])
	}
	for range 8 {
		s.do(t, hub.RoleOps, "POST", "/api/v1/endpoints/"+id+"/ping", "")
	}
	s.decode(t, hub.RoleViewer, "GET", "/api/v1/endpoints/"+id, "", 200, &ep)
	if ep["breaker"] != "open" {
		t.Errorf("after 8 refused attempts breaker = %v, want open", ep["breaker"])
	}
	var l struct {
		Data []map[string]any `json:"data"`
	}
	s.decode(t, hub.RoleViewer, "GET", "/api/v1/endpoints", "", 200, &l)
	if len(l.Data) != 1 || l.Data[0]["breaker"] != "open" || l.Data[0]["url"] != dead {
		t.Errorf("endpoint list = %v, want the endpoint with breaker open", l.Data)
	}
}
