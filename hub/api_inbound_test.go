package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

// inboundHub serves the inbound operations routes over a real store, with
// one key per role and an admin key of another program.
type inboundHub struct {
	t      *testing.T
	st     hub.Store
	q      *fakeQueue
	svc    *hub.Service
	src    *hub.Source
	e      *echo.Echo
	now    time.Time
	broken atomic.Bool // the normalizer refuses every payload
	rec    *stubReconciler
	n      int
}

const (
	adminKey      = "admin-key"
	opsKey        = "ops-key"
	viewerKey     = "viewer-key"
	otherAdminKey = "other-admin-key"
)

// stubReconciler answers every poll with res or err and records the
// cursor it was given.
type stubReconciler struct {
	res *hub.Reconciliation
	err error
	got string
}

func (r *stubReconciler) Reconcile(_ context.Context, _ *hub.Source, cursor string, _ time.Time) (*hub.Reconciliation, error) {
	r.got = cursor
	return r.res, r.err
}

func newInboundHub(t *testing.T) *inboundHub {
	t.Helper()
	h := &inboundHub{t: t, st: storetest.Open(t), q: &fakeQueue{}, now: t0, rec: &stubReconciler{}}
	ctx := context.Background()
	p, err := h.st.GetProgram(ctx, hub.DefaultProgramID)
	if err != nil {
		t.Fatal(err)
	}
	p.DefaultCommissionBPS = 1000
	if err := h.st.UpdateProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := h.st.CreatePartner(ctx, &hub.Partner{ID: hub.NewID("ptn"), ProgramID: hub.DefaultProgramID, Name: "Alice", Code: "alice"}); err != nil {
		t.Fatal(err)
	}
	h.src = h.source("test", map[string]string{"token": "t0k3n"})
	norm := hub.NormalizerFunc(func(src *hub.Source, ev *hub.InboundEvent) (*hub.Normalized, error) {
		if h.broken.Load() {
			return nil, errors.Join(hub.ErrUnparsable, errors.New("unknown payload version"))
		}
		return jsonNormalizer.Normalize(src, ev)
	})
	h.svc, err = hub.NewService(hub.ServiceConfig{Store: h.st, Queue: h.q,
		Normalizer: func(string) (hub.Normalizer, bool) { return norm, true },
		Reconciler: func(p string) (hub.Reconciler, bool) { return h.rec, p == "test" },
		Now:        func() time.Time { return h.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.e = echo.New()
	h.e.HTTPErrorHandler = hub.ErrorHandler
	keys := []*hub.APIKey{
		{ID: "key_admin", ProgramID: hub.DefaultProgramID, Role: hub.RoleAdmin, Hash: hub.HashKey(adminKey)},
		{ID: "key_ops", ProgramID: hub.DefaultProgramID, Role: hub.RoleOps, Hash: hub.HashKey(opsKey)},
		{ID: "key_viewer", ProgramID: hub.DefaultProgramID, Role: hub.RoleViewer, Hash: hub.HashKey(viewerKey)},
		{ID: "key_other", ProgramID: "prg_other", Role: hub.RoleAdmin, Hash: hub.HashKey(otherAdminKey)},
	}
	hub.MountInbound(h.e.Group("/api/v1", hub.Auth(h.st, keys...)), h.svc)
	return h
}

func (h *inboundHub) source(provider string, creds map[string]string) *hub.Source {
	h.t.Helper()
	src := &hub.Source{ID: hub.NewID("src"), ProgramID: hub.DefaultProgramID, Provider: provider, Name: provider, Secret: "s3cret", Credentials: creds}
	if err := h.st.CreateSource(context.Background(), src); err != nil {
		h.t.Fatal(err)
	}
	return src
}

// ingest stores one normalized event of src (with headers) and returns
// its id, without processing it.
func (h *inboundHub) ingest(src *hub.Source, n hub.Normalized, headers map[string]string) string {
	h.t.Helper()
	h.n++
	b, _ := json.Marshal(n)
	ev, _, err := h.svc.Ingest(context.Background(), src, hub.Receipt{DedupeKey: "evt_" + string(rune('a'+h.n)), EventType: "test.event", Headers: headers}, b)
	if err != nil {
		h.t.Fatalf("ingest: %v", err)
	}
	return ev.ID
}

// drain processes every queued inbound event.
func (h *inboundHub) drain() {
	h.t.Helper()
	h.q.mu.Lock()
	ids := h.q.process
	h.q.process = nil
	h.q.mu.Unlock()
	for _, id := range ids {
		if err := h.svc.Process(context.Background(), id); err != nil {
			h.t.Fatalf("process %s: %v", id, err)
		}
	}
}

func (h *inboundHub) queued() []string {
	h.q.mu.Lock()
	defer h.q.mu.Unlock()
	return append([]string(nil), h.q.process...)
}

// call sends a request and decodes a JSON answer into out (when not nil).
func (h *inboundHub) call(method, path, key string, body any, out any) int {
	h.t.Helper()
	var r *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	} else {
		r = bytes.NewReader(nil)
	}
	req := httptest.NewRequest(method, path, r)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	h.e.ServeHTTP(rec, req)
	if out != nil && rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			h.t.Fatalf("%s %s: decoding %q: %v", method, path, rec.Body.String(), err)
		}
	}
	return rec.Code
}

type inboundDetail struct {
	ID           string            `json:"id"`
	Status       string            `json:"status"`
	Reason       string            `json:"reason"`
	Attempts     int               `json:"attempts"`
	Headers      map[string]string `json:"headers"`
	ProcessedAt  *time.Time        `json:"processed_at"`
	BodyPurgedAt *time.Time        `json:"body_purged_at"`
	Results      struct {
		ConversionIDs []string `json:"conversion_ids"`
		RefundIDs     []string `json:"refund_ids"`
	} `json:"results"`
	Body *string `json:"body"`
}

func (h *inboundHub) detail(id, key string) inboundDetail {
	h.t.Helper()
	var d inboundDetail
	if st := h.call("GET", "/api/v1/inbound-events/"+id, key, nil, &d); st != http.StatusOK {
		h.t.Fatalf("GET inbound event %s: %d", id, st)
	}
	return d
}

func (h *inboundHub) conversions() []*hub.Conversion {
	h.t.Helper()
	cs, err := h.st.ListConversions(context.Background(), hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
	if err != nil {
		h.t.Fatal(err)
	}
	return cs
}

// money is everything a replay must leave alone: every ledger entry,
// every conversion's refunded totals, and the outbox.
func (h *inboundHub) money() string {
	h.t.Helper()
	ctx := context.Background()
	cs, err := h.st.ListCommissions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
	if err != nil {
		h.t.Fatal(err)
	}
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.ID + " " + c.Status + " net " + itoa(c.NetMinor) + "\n")
		for _, e := range c.Entries {
			b.WriteString("  " + e.ID + " " + e.Key + " " + e.Type + " " + itoa(e.AmountMinor) + "\n")
		}
	}
	for _, c := range h.conversions() {
		b.WriteString(c.ID + " refunded " + itoa(c.RefundedMinor) + "/" + itoa(c.RefundedBaseMinor) + "\n")
	}
	es, err := h.st.ListEvents(ctx, hub.DefaultProgramID, hub.Page{Limit: 200})
	if err != nil {
		h.t.Fatal(err)
	}
	b.WriteString("outbound events " + itoa(int64(len(es))) + "\n")
	return b.String()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (h *inboundHub) audit(action string) []*hub.AuditEntry {
	h.t.Helper()
	all, err := h.st.ListAudit(context.Background(), hub.DefaultProgramID, hub.Page{Limit: 200})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*hub.AuditEntry
	for _, a := range all {
		if a.Action == action {
			out = append(out, a)
		}
	}
	return out
}

// TestInboundEventDetail: an inbound event shows its metadata, what it
// produced, its headers without secrets, and its raw body to admins only;
// another program's key does not see it.
func TestInboundEventDetail(t *testing.T) {
	h := newInboundHub(t)
	headers := map[string]string{"X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": "c2lnbmF0dXJl", "Stripe-Signature": "t=1,v1=00", "Authorization": "Basic eDp5"}
	saleID := h.ingest(h.src, sale([]string{"pay_1"}, 10000, 12000, hub.Hints{PartnerCode: "alice"}), headers)
	refundID := h.ingest(h.src, refund([]string{"pay_1"}, "re_1", 6000, hub.RefundSucceeded, t0.Add(time.Hour)), nil)
	h.drain()
	convs := h.conversions()
	if len(convs) != 1 {
		t.Fatalf("%d conversions, want 1", len(convs))
	}
	refunds, err := h.st.ListRefunds(context.Background(), hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
	if err != nil || len(refunds) != 1 {
		t.Fatalf("refunds %v %v", refunds, err)
	}

	d := h.detail(saleID, adminKey)
	if d.Status != hub.InboundProcessed || d.ProcessedAt == nil || d.BodyPurgedAt != nil {
		t.Errorf("sale detail = %+v, want processed", d)
	}
	if diff := cmp.Diff(map[string]string{"X-Shopify-Topic": "orders/paid"}, d.Headers); diff != "" {
		t.Errorf("headers shown (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{convs[0].ID}, d.Results.ConversionIDs); diff != "" || len(d.Results.RefundIDs) != 0 {
		t.Errorf("sale results = %+v, want conversion %s", d.Results, convs[0].ID)
	}
	want, _ := json.Marshal(sale([]string{"pay_1"}, 10000, 12000, hub.Hints{PartnerCode: "alice"}))
	if d.Body == nil || *d.Body != string(want) {
		t.Errorf("admin sees body %v, want the raw body", d.Body)
	}
	r := h.detail(refundID, adminKey)
	if diff := cmp.Diff([]string{refunds[0].ID}, r.Results.RefundIDs); diff != "" || len(r.Results.ConversionIDs) != 1 {
		t.Errorf("refund results = %+v, want refund %s and its conversion", r.Results, refunds[0].ID)
	}
	for _, key := range []string{opsKey, viewerKey} {
		if d := h.detail(saleID, key); d.Body != nil || d.Status != hub.InboundProcessed {
			t.Errorf("role of %s sees body %v", key, d.Body)
		}
	}
	if st := h.call("GET", "/api/v1/inbound-events/"+saleID, otherAdminKey, nil, nil); st != http.StatusNotFound {
		t.Errorf("another program's admin: %d, want 404", st)
	}
	if st := h.call("GET", "/api/v1/inbound-events/inb_missing", adminKey, nil, nil); st != http.StatusNotFound {
		t.Errorf("unknown event: %d, want 404", st)
	}
}

// TestReprocessProcessedEventMovesNoMoney: reprocessing a sale and its
// refund, both already processed, runs them again through the ledger and
// changes no entry, total or outbound event.
func TestReprocessProcessedEventMovesNoMoney(t *testing.T) {
	h := newInboundHub(t)
	saleID := h.ingest(h.src, sale([]string{"pay_1"}, 10000, 12000, hub.Hints{PartnerCode: "alice"}), nil)
	refundID := h.ingest(h.src, refund([]string{"pay_1"}, "re_1", 6000, hub.RefundSucceeded, t0.Add(time.Hour)), nil)
	h.drain()
	before := h.money()
	if !strings.Contains(before, "net 500") {
		t.Fatalf("ledger before the replay:\n%s\nwant 1000 earned and 500 reversed", before)
	}

	for _, id := range []string{refundID, saleID, refundID} {
		var d inboundDetail
		if st := h.call("POST", "/api/v1/inbound-events/"+id+"/reprocess", opsKey, nil, &d); st != http.StatusAccepted {
			t.Fatalf("reprocess %s: %d", id, st)
		}
		if d.Status != hub.InboundReceived || d.Attempts != 0 || d.ProcessedAt != nil {
			t.Errorf("reprocessed event = %+v, want received again", d)
		}
		if q := h.queued(); len(q) != 1 || q[0] != id {
			t.Fatalf("queued %v, want %s", q, id)
		}
		h.drain()
		if d := h.detail(id, viewerKey); d.Status != hub.InboundProcessed {
			t.Errorf("after the replay %s is %s", id, d.Status)
		}
	}
	if after := h.money(); after != before {
		t.Errorf("the replay moved money:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if n := len(h.audit("inbound_event.reprocess")); n != 3 {
		t.Errorf("%d audit entries, want 3", n)
	}
	a := h.audit("inbound_event.reprocess")[0]
	if a.KeyID != "key_ops" || !strings.Contains(string(a.Before), `"status":"processed"`) || !strings.Contains(string(a.After), `"status":"received"`) {
		t.Errorf("audit entry %+v before %s after %s", a, a.Before, a.After)
	}
	if st := h.call("POST", "/api/v1/inbound-events/"+saleID+"/reprocess", viewerKey, nil, nil); st != http.StatusForbidden {
		t.Errorf("viewer reprocess: %d, want 403", st)
	}
	if st := h.call("POST", "/api/v1/inbound-events/"+saleID+"/reprocess", otherAdminKey, nil, nil); st != http.StatusNotFound {
		t.Errorf("another program's admin: %d, want 404", st)
	}
}

// TestReprocessFailedEvent: a payload the connector could not read is
// kept as failed with its reason; once the connector reads it, a
// reprocess turns it into a conversion.
func TestReprocessFailedEvent(t *testing.T) {
	h := newInboundHub(t)
	h.broken.Store(true)
	id := h.ingest(h.src, sale([]string{"pay_1"}, 10000, 12000, hub.Hints{}), nil)
	h.drain()
	d := h.detail(id, viewerKey)
	if d.Status != hub.InboundFailed || !strings.Contains(d.Reason, "unknown payload version") {
		t.Fatalf("detail = %+v, want failed with the reason", d)
	}
	h.broken.Store(false)
	if st := h.call("POST", "/api/v1/inbound-events/"+id+"/reprocess", adminKey, nil, nil); st != http.StatusAccepted {
		t.Fatalf("reprocess: %d", st)
	}
	h.drain()
	d = h.detail(id, viewerKey)
	convs := h.conversions()
	if d.Status != hub.InboundProcessed || d.Reason != "" || len(convs) != 1 || len(d.Results.ConversionIDs) != 1 || d.Results.ConversionIDs[0] != convs[0].ID {
		t.Errorf("after reprocessing: %+v with %d conversions", d, len(convs))
	}
}

type reprocessAnswer struct {
	Requeued   int    `json:"requeued"`
	More       bool   `json:"more"`
	NextCursor string `json:"next_cursor"`
}

// TestBulkReprocess: a filter requeues the matching events oldest first,
// a page at a time with a cursor; calling it again requeues nothing, and
// other sources' events are left alone.
func TestBulkReprocess(t *testing.T) {
	h := newInboundHub(t)
	other := h.source("other", nil)
	h.broken.Store(true)
	var ids []string
	for i := range 5 {
		ids = append(ids, h.ingest(h.src, sale([]string{"pay_" + string(rune('a'+i))}, 1000, 1000, hub.Hints{}), nil))
	}
	otherID := h.ingest(other, sale([]string{"pay_other"}, 1000, 1000, hub.Hints{}), nil)
	h.drain()
	h.broken.Store(false)

	for _, tt := range []struct {
		body map[string]any
		bad  string
	}{
		{map[string]any{"status": "bogus"}, "status"},
		{map[string]any{"since": "yesterday"}, "since"},
		{map[string]any{"limit": 10001}, "limit"},
	} {
		var p hub.Problem
		if st := h.call("POST", "/api/v1/inbound-events/reprocess", opsKey, tt.body, &p); st != http.StatusUnprocessableEntity || p.Errors[tt.bad] == "" {
			t.Errorf("%v: %d %+v, want 422 naming %s", tt.body, st, p, tt.bad)
		}
	}
	var none reprocessAnswer
	if st := h.call("POST", "/api/v1/inbound-events/reprocess", opsKey, map[string]any{"provider": "stripe"}, &none); st != http.StatusOK || none.Requeued != 0 || none.More {
		t.Errorf("provider stripe: %d %+v, want nothing requeued", st, none)
	}
	if st := h.call("POST", "/api/v1/inbound-events/reprocess", viewerKey, map[string]any{}, nil); st != http.StatusForbidden {
		t.Errorf("viewer: %d, want 403", st)
	}

	var got []int
	cursor := ""
	for {
		var a reprocessAnswer
		body := map[string]any{"status": "failed", "source_id": h.src.ID, "since": t0.Add(-time.Hour).Format(time.RFC3339), "limit": 2, "cursor": cursor}
		if st := h.call("POST", "/api/v1/inbound-events/reprocess", opsKey, body, &a); st != http.StatusOK {
			t.Fatalf("bulk reprocess: %d", st)
		}
		got = append(got, a.Requeued)
		if !a.More {
			break
		}
		cursor = a.NextCursor
	}
	if diff := cmp.Diff([]int{2, 2, 1}, got); diff != "" {
		t.Errorf("requeued per call (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ids, h.queued()); diff != "" {
		t.Errorf("queued, oldest first (-want +got):\n%s", diff)
	}
	var again reprocessAnswer
	if st := h.call("POST", "/api/v1/inbound-events/reprocess", opsKey, map[string]any{"source_id": h.src.ID}, &again); st != http.StatusOK || again.Requeued != 0 {
		t.Errorf("second bulk reprocess: %d %+v, want nothing requeued", st, again)
	}
	h.drain()
	if n := len(h.conversions()); n != 5 {
		t.Errorf("%d conversions after the reprocess, want 5", n)
	}
	if d := h.detail(otherID, viewerKey); d.Status != hub.InboundFailed {
		t.Errorf("the other source's event is %s, want failed", d.Status)
	}
	if n := len(h.audit("inbound_event.reprocess_bulk")); n != 5 {
		t.Errorf("%d bulk audit entries, want 5 (one per successful call)", n)
	}
}

type backfillAnswer struct {
	SourceID   string `json:"source_id"`
	Fetched    int    `json:"fetched"`
	Ingested   int    `json:"ingested"`
	Duplicates int    `json:"duplicates"`
	Cursor     string `json:"cursor"`
	More       bool   `json:"more"`
}

// TestBackfillRoute: an operator backfills a source from a time: the
// reconciler starts there, what it lists is ingested (a second run is all
// duplicates), and the cursor is saved; sources that cannot be backfilled
// are refused, and a provider failure answers 502.
func TestBackfillRoute(t *testing.T) {
	h := newInboundHub(t)
	b1, _ := json.Marshal(sale([]string{"pay_1"}, 1000, 1000, hub.Hints{}))
	b2, _ := json.Marshal(sale([]string{"pay_2"}, 2000, 2000, hub.Hints{}))
	h.rec.res = &hub.Reconciliation{Cursor: "2026-11-01T11:50:00Z", More: true, Events: []hub.ReconciledEvent{
		{Receipt: hub.Receipt{DedupeKey: "evt_1", EventType: "test.sale"}, Body: b1},
		{Receipt: hub.Receipt{DedupeKey: "evt_2", EventType: "test.sale"}, Body: b2},
	}}
	path := "/api/v1/sources/" + h.src.ID + "/backfill"
	var a backfillAnswer
	if st := h.call("POST", path, opsKey, map[string]any{"since": "2026-10-01T00:00:00+02:00"}, &a); st != http.StatusOK {
		t.Fatalf("backfill: %d", st)
	}
	if h.rec.got != "2026-09-30T22:00:00Z" {
		t.Errorf("reconciler started at %q, want since in UTC", h.rec.got)
	}
	want := backfillAnswer{SourceID: h.src.ID, Fetched: 2, Ingested: 2, Cursor: "2026-11-01T11:50:00Z", More: true}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	h.drain()
	if n := len(h.conversions()); n != 2 {
		t.Errorf("%d conversions, want 2", n)
	}
	// Without since the saved cursor is used; everything is a duplicate.
	if st := h.call("POST", path, adminKey, nil, &a); st != http.StatusOK || a.Duplicates != 2 || a.Ingested != 0 {
		t.Errorf("second backfill: %d %+v, want 2 duplicates", st, a)
	}
	if h.rec.got != "2026-11-01T11:50:00Z" {
		t.Errorf("second run started at %q, want the saved cursor", h.rec.got)
	}
	if n := len(h.audit("source.backfill")); n != 2 {
		t.Errorf("%d audit entries, want 2", n)
	}

	h.rec.err = errors.New("stripe GET /v1/events: HTTP 401 (check the source's api_key)")
	var p hub.Problem
	if st := h.call("POST", path, opsKey, nil, &p); st != http.StatusBadGateway || !strings.Contains(p.Detail, "HTTP 401") {
		t.Errorf("provider failure: %d %+v, want 502 with the reason", st, p)
	}
	src, err := h.st.GetSource(context.Background(), h.src.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src.Health, "HTTP 401") || src.Cursor != "2026-11-01T11:50:00Z" {
		t.Errorf("source after a failed backfill: health %q cursor %q", src.Health, src.Cursor)
	}

	noCreds := h.source("test", nil)
	noReconciler := h.source("other", map[string]string{"token": "x"})
	for _, tt := range []struct {
		path, key string
		body      any
		status    int
	}{
		{"/api/v1/sources/" + noCreds.ID + "/backfill", opsKey, nil, http.StatusUnprocessableEntity},
		{"/api/v1/sources/" + noReconciler.ID + "/backfill", opsKey, nil, http.StatusUnprocessableEntity},
		{"/api/v1/sources/src_missing/backfill", opsKey, nil, http.StatusNotFound},
		{path, otherAdminKey, nil, http.StatusNotFound},
		{path, viewerKey, nil, http.StatusForbidden},
		{path, opsKey, map[string]any{"since": "last week"}, http.StatusUnprocessableEntity},
	} {
		if st := h.call("POST", tt.path, tt.key, tt.body, nil); st != tt.status {
			t.Errorf("POST %s as %s: %d, want %d", tt.path, tt.key, st, tt.status)
		}
	}
}
