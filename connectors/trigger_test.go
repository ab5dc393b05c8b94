package connectors

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
)

// triggerStore is sources in memory and the audit log they get.
type triggerStore struct {
	mu      sync.Mutex
	sources map[string]*hub.Source
	audit   []*hub.AuditEntry
}

func (s *triggerStore) GetSource(_ context.Context, id string) (*hub.Source, error) {
	src, ok := s.sources[id]
	if !ok {
		return nil, hub.ErrNotFound
	}
	cp := *src
	return &cp, nil
}

func (s *triggerStore) Audit(_ context.Context, a *hub.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audit = append(s.audit, a)
	return nil
}

// triggerIngester records what /in stores.
type triggerIngester struct {
	mu   sync.Mutex
	got  []hub.Receipt
	seen map[string]string
}

func (g *triggerIngester) Ingest(_ context.Context, src *hub.Source, rc hub.Receipt, _ []byte) (*hub.InboundEvent, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if id, ok := g.seen[src.ID+rc.DedupeKey]; ok {
		return &hub.InboundEvent{ID: id}, true, nil
	}
	g.got = append(g.got, rc)
	id := hub.NewID("ie")
	g.seen[src.ID+rc.DedupeKey] = id
	return &hub.InboundEvent{ID: id}, false, nil
}

const (
	triggerAdminKey  = "phk_trigger_admin_0123456789"
	triggerViewerKey = "phk_trigger_viewer_0123456789"
)

// newTriggerServer is the /in handler and the trigger route on one echo
// server, as cmd assembles them.
func newTriggerServer(t *testing.T) (*httptest.Server, *triggerStore, *triggerIngester) {
	t.Helper()
	st := &triggerStore{sources: map[string]*hub.Source{}}
	for _, p := range []string{"stripe", "shopify", "woocommerce", "paddle", "paddle_classic"} {
		st.sources["src_"+p] = &hub.Source{ID: "src_" + p, ProgramID: hub.DefaultProgramID, Provider: p, Secret: sampleSecrets[p] + "x"}
	}
	st.sources["src_other_program"] = &hub.Source{ID: "src_other_program", ProgramID: "prg_other", Provider: "stripe", Secret: "whsec_x"}
	ing := &triggerIngester{seen: map[string]string{}}
	e := echo.New()
	e.HTTPErrorHandler = hub.ErrorHandler
	NewInbound(InboundConfig{}, Default(), st, ing).Mount(e.Group("/in"))
	keys := []*hub.APIKey{
		{ID: "key_admin", ProgramID: hub.DefaultProgramID, Role: hub.RoleAdmin, Hash: hub.HashKey(triggerAdminKey)},
		{ID: "key_viewer", ProgramID: hub.DefaultProgramID, Role: hub.RoleViewer, Hash: hub.HashKey(triggerViewerKey)},
	}
	MountTrigger(e.Group("/api/v1", hub.Auth(nil, keys...)), e, st, TriggerConfig{})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, st, ing
}

func postTrigger(t *testing.T, base, key, source string, in any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/sources/"+source+"/trigger", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(res.Body)
	return res.StatusCode, out.Bytes()
}

// TestTriggerRoute: every supported event of every provider goes through
// the real /in handler, which verifies it under the source's secret and
// stores it once.
func TestTriggerRoute(t *testing.T) {
	srv, st, ing := newTriggerServer(t)
	for _, provider := range SampleProviders() {
		for _, ev := range SampleEvents(provider) {
			t.Run(provider+"/"+ev, func(t *testing.T) {
				code, body := postTrigger(t, srv.URL, triggerAdminKey, "src_"+provider,
					map[string]any{"event": ev, "partner_code": "ALICE", "amount_minor": 2500, "currency": "eur", "live": true})
				if code != http.StatusOK {
					t.Fatalf("status %d: %s", code, body)
				}
				var res TriggerResult
				if err := json.Unmarshal(body, &res); err != nil {
					t.Fatal(err)
				}
				if res.InboundStatus != http.StatusOK || res.InboundEventID == "" || res.Duplicate || res.InboundError != "" {
					t.Fatalf("result %+v: want /in to store it", res)
				}
				if res.EventID == "" || res.PaymentID == "" || res.Event != ev || res.Provider != provider || res.SourceID != "src_"+provider {
					t.Errorf("result %+v lacks the event's ids", res)
				}
				ing.mu.Lock()
				last := ing.got[len(ing.got)-1]
				ing.mu.Unlock()
				if last.EventType != ev {
					t.Errorf("stored event type %q, want %q", last.EventType, ev)
				}
			})
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := len(st.audit); n != 10 || st.audit[0].Action != "source.trigger" || st.audit[0].KeyID != "key_admin" {
		t.Fatalf("audit log has %d entries (first %+v), want 10 source.trigger entries", n, st.audit[0])
	}
}

// TestTriggerRefusals: what cannot be triggered is refused before /in
// sees anything.
func TestTriggerRefusals(t *testing.T) {
	srv, st, ing := newTriggerServer(t)
	cases := []struct {
		name, key, source string
		in                any
		status            int
		detail            string
	}{
		{"viewer role", triggerViewerKey, "src_stripe", map[string]any{"event": "invoice.paid"}, http.StatusForbidden, "viewer"},
		{"no key", "", "src_stripe", map[string]any{"event": "invoice.paid"}, http.StatusUnauthorized, ""},
		{"unknown source", triggerAdminKey, "src_nope", map[string]any{"event": "invoice.paid"}, http.StatusNotFound, "src_nope"},
		{"another program's source", triggerAdminKey, "src_other_program", map[string]any{"event": "invoice.paid"}, http.StatusNotFound, "src_other_program"},
		{"paddle classic", triggerAdminKey, "src_paddle_classic", map[string]any{"event": "payment_succeeded"}, http.StatusUnprocessableEntity,
			"Paddle Classic signs with your private key; send a test alert from the Paddle dashboard"},
		{"unknown event", triggerAdminKey, "src_woocommerce", map[string]any{"event": "order.deleted"}, http.StatusUnprocessableEntity,
			"supported: order.created, order.updated"},
		{"malformed body", triggerAdminKey, "src_stripe", "not an object", http.StatusUnprocessableEntity, "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := postTrigger(t, srv.URL, c.key, c.source, c.in)
			if code != c.status {
				t.Fatalf("status %d, want %d: %s", code, c.status, body)
			}
			var p hub.Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("answer is not a problem: %s", body)
			}
			if !strings.Contains(p.Detail, c.detail) {
				t.Errorf("detail %q does not say %q", p.Detail, c.detail)
			}
		})
	}
	if len(ing.got) != 0 || len(st.audit) != 0 {
		t.Fatalf("refused triggers stored %d events and %d audit entries", len(ing.got), len(st.audit))
	}
}

// TestTriggerReportsInboundRefusal: when /in refuses (here a database
// outage), the answer carries its status and problem.
func TestTriggerReportsInboundRefusal(t *testing.T) {
	st := &triggerStore{sources: map[string]*hub.Source{
		"src_stripe": {ID: "src_stripe", ProgramID: hub.DefaultProgramID, Provider: "stripe", Secret: "whsec_x"},
	}}
	down := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"database unavailable"}`))
	})
	e := echo.New()
	e.HTTPErrorHandler = hub.ErrorHandler
	key := &hub.APIKey{ID: "key_admin", ProgramID: hub.DefaultProgramID, Role: hub.RoleAdmin, Hash: hub.HashKey(triggerAdminKey)}
	MountTrigger(e.Group("/api/v1", hub.Auth(nil, key)), down, st, TriggerConfig{Now: func() time.Time { return time.Unix(1700000000, 0) }})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	code, body := postTrigger(t, srv.URL, triggerAdminKey, "src_stripe", map[string]any{"event": "charge.refunded"})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var res TriggerResult
	_ = json.Unmarshal(body, &res)
	if res.InboundStatus != http.StatusServiceUnavailable || res.InboundError != "Service Unavailable: database unavailable" || res.InboundEventID != "" {
		t.Fatalf("result %+v: want the 503 and its problem", res)
	}
}

// TestTriggerRefusesLiveSourcesUnlessConfirmed: WooCommerce and Paddle
// payloads have no test flag, so a test event on a live source would be a
// real, payable sale; it is refused unless the caller says live.
func TestTriggerRefusesLiveSourcesUnlessConfirmed(t *testing.T) {
	srv, _, _ := newTriggerServer(t)
	for _, tc := range []struct{ provider, event string }{{"woocommerce", "order.created"}, {"paddle", "transaction.completed"}} {
		code, body := postTrigger(t, srv.URL, triggerAdminKey, "src_"+tc.provider, map[string]any{"event": tc.event})
		if code != http.StatusUnprocessableEntity || !bytes.Contains(body, []byte("sandbox=true")) || !bytes.Contains(body, []byte(`"live"`)) {
			t.Errorf("%s test event on a live source without live: %d %s, want 422 naming sandbox=true and live", tc.provider, code, body)
		}
	}
	// Stripe test events are test-mode: no confirmation needed.
	if code, body := postTrigger(t, srv.URL, triggerAdminKey, "src_stripe", map[string]any{"event": "checkout.session.completed"}); code != http.StatusOK {
		t.Errorf("stripe test event: %d %s", code, body)
	}
}
