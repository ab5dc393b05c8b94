package connectors

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

const paddleBackfillKey = "pdl_sdbx_apikey_01backfill0123456789"

// paddleEventsAPI serves GET /events as Paddle documents it: events in id
// order after the `after` id, of the event_type list, at most per_page
// (and pageSize) per page, with meta.pagination.
type paddleEventsAPI struct {
	t        *testing.T
	pageSize int

	mu       sync.Mutex
	events   []paddleListed // id order
	requests []url.Values
}

type paddleListed struct {
	id, typ string
	body    json.RawMessage
}

func (s *paddleEventsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodGet || r.URL.Path != "/events" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	s.requests = append(s.requests, q)
	if r.Header.Get("Authorization") != "Bearer "+paddleBackfillKey {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error":{"type":"request_error","code":"forbidden","detail":"You aren't permitted to perform this request.","documentation_url":"https://developer.paddle.com/v1/errors/shared/forbidden"},"meta":{"request_id":"5d1ce1b4"}}`)
		return
	}
	if q.Get("order_by") != "id[ASC]" {
		s.t.Errorf("order_by=%q, want id[ASC]", q.Get("order_by"))
	}
	perPage, _ := strconv.Atoi(q.Get("per_page"))
	if perPage == 0 {
		perPage = 50
	}
	types := strings.Split(q.Get("event_type"), ",")
	var list []paddleListed
	for _, e := range s.events {
		if e.id > q.Get("after") && (q.Get("event_type") == "" || slices.Contains(types, e.typ)) {
			list = append(list, e)
		}
	}
	n := min(perPage, s.pageSize, len(list))
	data := make([]json.RawMessage, n)
	next := ""
	for i := range n {
		data[i] = list[i].body
		next = list[i].id
	}
	b, _ := json.MarshalIndent(map[string]any{"data": data, "meta": map[string]any{
		"request_id": "b93d9c94",
		"pagination": map[string]any{"per_page": perPage, "next": "https://api.paddle.com/events?after=" + next, "has_more": n < len(list), "estimated_total": len(list)},
	}}, "", "  ")
	_, _ = w.Write(b)
}

func (s *paddleEventsAPI) queries() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.requests...)
}

// listedPaddleEvent returns a case's event as the events API lists it: with an
// event id made from its occurred_at, as Paddle's are, and without the
// notification_id of a delivery.
func listedPaddleEvent(t *testing.T, name string, at time.Time) paddleListed {
	t.Helper()
	c := loadCase(t, filepath.Join(paddleTestdata, name+".json"))
	var ev map[string]any
	if err := json.Unmarshal(c.Body, &ev); err != nil {
		t.Fatal(err)
	}
	if at.IsZero() {
		var err error
		if at, err = time.Parse(time.RFC3339Nano, ev["occurred_at"].(string)); err != nil {
			t.Fatal(err)
		}
	}
	id := ulid.MustNew(ulid.Timestamp(at), bytes.NewReader(bytes.Repeat([]byte{7}, 10)))
	ev["event_id"] = "evt_" + strings.ToLower(id.String())
	ev["occurred_at"] = at.UTC().Format(time.RFC3339Nano)
	delete(ev, "notification_id")
	b, _ := json.MarshalIndent(ev, "", "  ")
	return paddleListed{id: ev["event_id"].(string), typ: ev["event_type"].(string), body: b}
}

var paddleBackfillCases = []string{
	"transaction_paid", "unsupported_type", "transaction_completed_web_discount", "transaction_completed_renewal",
	"adjustment_created_refund_pending", "adjustment_updated_refund_approved", "transaction_completed_jpy",
	"adjustment_created_refund_partial", "adjustment_created_credit_reverse",
}

func newPaddleEventsAPI(t *testing.T, pageSize int, events ...paddleListed) (*paddleEventsAPI, *httptest.Server) {
	t.Helper()
	api := &paddleEventsAPI{t: t, pageSize: pageSize, events: events}
	if len(events) == 0 {
		for _, name := range paddleBackfillCases {
			api.events = append(api.events, listedPaddleEvent(t, name, time.Time{}))
		}
	}
	sort.Slice(api.events, func(i, j int) bool { return api.events[i].id < api.events[j].id })
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return api, srv
}

func paddleBackfillSource(base string) *hub.Source {
	return &hub.Source{
		ID: "src_paddle_backfill", ProgramID: hub.DefaultProgramID, Provider: "paddle", Secret: paddleTestSecret,
		Options: map[string]string{"api_base": base}, Credentials: map[string]string{"api_key": paddleBackfillKey},
	}
}

// TestPaddleBackfillListsEvents: a backfill since a time lists, page by
// page in id order, the events of the types the connector reads from that
// time on, keyed by event_id; the cursor is the last event id.
func TestPaddleBackfillListsEvents(t *testing.T) {
	api, srv := newPaddleEventsAPI(t, 3)
	p := NewPaddle(PaddleConfig{Backfill: PaddleBackfillConfig{Client: localClient()}})
	since := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	res, err := p.Reconcile(context.Background(), paddleBackfillSource(srv.URL), since.Format(time.RFC3339), testNow)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	var want, got []string
	for _, e := range api.events {
		if e.typ != "subscription.created" {
			want = append(want, e.id+" "+e.typ)
		}
	}
	for _, ev := range res.Events {
		got = append(got, ev.Receipt.DedupeKey+" "+ev.Receipt.EventType)
		if ev.Receipt.Headers[wooHeaderReconciled] != "true" {
			t.Errorf("%s: headers %v", ev.Receipt.DedupeKey, ev.Receipt.Headers)
		}
		for _, e := range api.events {
			if e.id == ev.Receipt.DedupeKey && string(ev.Body) != compactJSON(t, e.body) {
				t.Errorf("%s: body differs from the listed event", e.id)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if res.Cursor != api.events[len(api.events)-1].id || res.More {
		t.Errorf("cursor %q more %v, want the last event id and no more", res.Cursor, res.More)
	}
	qs := api.queries()
	if len(qs) != 3 {
		t.Fatalf("%d requests, want 3 pages of 3", len(qs))
	}
	after := paddleIDAt(since)
	for i, q := range qs {
		wantQ := url.Values{"after": {after}, "order_by": {"id[ASC]"}, "per_page": {"200"},
			"event_type": {"transaction.paid,transaction.completed,adjustment.created,adjustment.updated"}}
		if diff := cmp.Diff(wantQ, q); diff != "" {
			t.Errorf("request %d query (-want +got):\n%s", i+1, diff)
		}
		if 3*i+2 < len(res.Events) {
			after = res.Events[3*i+2].Receipt.DedupeKey
		}
	}
}

// TestPaddleBackfillCursor: the first poll looks back 72 hours, a poll
// stopped at its page bound resumes after the last event it read, and a
// complete poll leaves events of the last minutes to the next one.
func TestPaddleBackfillCursor(t *testing.T) {
	t.Run("first poll", func(t *testing.T) {
		api, srv := newPaddleEventsAPI(t, 3)
		p := NewPaddle(PaddleConfig{Backfill: PaddleBackfillConfig{Client: localClient()}})
		res, err := p.Reconcile(context.Background(), paddleBackfillSource(srv.URL), "", testNow)
		if err != nil {
			t.Fatal(err)
		}
		if got := api.queries()[0].Get("after"); got != paddleIDAt(testNow.Add(-72*time.Hour)) {
			t.Errorf("after=%s, want the id of now-72h", got)
		}
		last := api.events[len(api.events)-1]
		if len(res.Events) != 1 || res.Events[0].Receipt.DedupeKey != last.id || res.Cursor != last.id {
			t.Errorf("first poll = %d events, cursor %q; want only the credit reversal of 2024-04-28", len(res.Events), res.Cursor)
		}
	})
	t.Run("resume after the page bound", func(t *testing.T) {
		_, srv := newPaddleEventsAPI(t, 3)
		p := NewPaddle(PaddleConfig{Backfill: PaddleBackfillConfig{Client: localClient(), MaxPages: 1}})
		seen := map[string]int{}
		cursor := "2024-03-01T00:00:00Z"
		for polls := 1; ; polls++ {
			if polls > 10 {
				t.Fatal("the backfill does not finish")
			}
			res, err := p.Reconcile(context.Background(), paddleBackfillSource(srv.URL), cursor, testNow)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range res.Events {
				seen[ev.Receipt.DedupeKey]++
			}
			if res.More && len(res.Events) != 3 {
				t.Errorf("poll %d stopped after %d events, want one page of 3", polls, len(res.Events))
			}
			cursor = res.Cursor
			if !res.More {
				break
			}
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("%s read %d times", id, n)
			}
		}
		if len(seen) != len(paddleBackfillCases)-1 {
			t.Errorf("read %d events, want %d", len(seen), len(paddleBackfillCases)-1)
		}
	})
	t.Run("settle", func(t *testing.T) {
		recent := listedPaddleEvent(t, "transaction_completed_jpy", testNow.Add(-time.Minute))
		_, srv := newPaddleEventsAPI(t, 3, recent)
		p := NewPaddle(PaddleConfig{Backfill: PaddleBackfillConfig{Client: localClient()}})
		res, err := p.Reconcile(context.Background(), paddleBackfillSource(srv.URL), "", testNow)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Events) != 1 || res.Cursor != paddleIDAt(testNow.Add(-10*time.Minute)) {
			t.Errorf("poll = %d events, cursor %q; want the recent event, and the cursor 10 minutes back", len(res.Events), res.Cursor)
		}
	})
}

// TestPaddleIDAt: the id made from a time sorts after the ids of earlier
// events and before those of later ones.
func TestPaddleIDAt(t *testing.T) {
	at := time.Date(2024, 4, 20, 10, 5, 0, 0, time.UTC)
	before := listedPaddleEvent(t, "adjustment_created_refund_pending", time.Time{}) // 10:02
	after := listedPaddleEvent(t, "adjustment_updated_refund_approved", time.Time{}) // 10:12
	id := paddleIDAt(at)
	if !paddleEventIDRE.MatchString(id) || !(before.id < id && id < after.id) {
		t.Errorf("paddleIDAt(%s) = %s, want between %s and %s", at, id, before.id, after.id)
	}
}

// TestPaddleBackfillIngests: backfilled events are ingested like
// webhooks: the one received by webhook is a duplicate, the others become
// conversions, and a second run ingests nothing.
func TestPaddleBackfillIngests(t *testing.T) {
	ctx := context.Background()
	api, srv := newPaddleEventsAPI(t, 4)
	st := storetest.Open(t)
	src := paddleBackfillSource(srv.URL)
	src.ID = ""
	if err := st.CreateSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	p := NewPaddle(PaddleConfig{Backfill: PaddleBackfillConfig{Client: localClient()}})
	reg := NewRegistry(p)
	q := &backfillQueue{}
	svc, err := hub.NewService(hub.ServiceConfig{Store: st, Queue: q, Normalizer: reg.Normalizer, Reconciler: reg.Reconciler,
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	// transaction.paid arrived by webhook before the outage.
	paid := api.events[0]
	h := http.Header{}
	signPaddle(paddleTestSecret, testNow, paid.body, h)
	rc, err := p.Verify(src, h, paid.body, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Ingest(ctx, src, rc, paid.body); err != nil {
		t.Fatal(err)
	}

	since := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	res, err := svc.Backfill(ctx, hub.DefaultProgramID, src.ID, since)
	if err != nil {
		t.Fatalf("Backfill: %v", err)
	}
	if res.Fetched != 8 || res.Ingested != 7 || res.Duplicates != 1 {
		t.Fatalf("backfill = %+v, want 8 fetched, 7 ingested, 1 duplicate", res)
	}
	q.drain(t, svc)
	convs, err := st.ListConversions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, cv := range convs {
		keys = append(keys, cv.Keys...)
	}
	sort.Strings(keys)
	want := []string{"txn_01hs2qd7e9g1j3l5n7q9s1u3w5", "txn_01hvbp4a6c8e1g3j5l7n9q2s4u", "txn_01hw0m2p4r6t8v1x3z5b7d9f2h"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("conversions (-want +got):\n%s", diff)
	}
	evs, err := st.ListInboundEvents(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Status == hub.InboundReceived || ev.Status == hub.InboundFailed {
			t.Errorf("inbound %s (%s) is %s: %s", ev.DedupeKey, ev.EventType, ev.Status, ev.LastError)
		}
	}

	again, err := svc.Backfill(ctx, hub.DefaultProgramID, src.ID, since)
	if err != nil {
		t.Fatal(err)
	}
	if again.Ingested != 0 || again.Duplicates != 8 {
		t.Errorf("second backfill = %+v, want all 8 duplicates", again)
	}
	// The periodic reconciliation continues from the saved cursor.
	if err := svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	qs := api.queries()
	if got := qs[len(qs)-1].Get("after"); got != api.events[len(api.events)-1].id {
		t.Errorf("periodic poll after=%s, want the last backfilled id", got)
	}
	if n := len(q.take()); n != 0 {
		t.Errorf("runs after the backfill queued %d events", n)
	}
}

// roundTripFunc answers requests without a network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestPaddleBackfillErrors: a source without a key or with a bad api_base
// is refused before any call, an API refusal is explained without the
// key, and the sandbox option selects Paddle's sandbox API.
func TestPaddleBackfillErrors(t *testing.T) {
	_, srv := newPaddleEventsAPI(t, 3)
	p := NewPaddle(PaddleConfig{Backfill: PaddleBackfillConfig{Client: localClient()}})
	tests := []struct {
		name   string
		src    func(*hub.Source)
		cursor string
		want   string
	}{
		{name: "no key", src: func(s *hub.Source) { s.Credentials = map[string]string{} }, want: "needs the credential api_key"},
		{name: "ftp api_base", src: func(s *hub.Source) { s.Options["api_base"] = "ftp://127.0.0.1" }, want: "api_base must be an https:// address"},
		{name: "bad cursor", cursor: "txn_01hs2qd7e9g1j3l5n7q9s1u3w5", want: "invalid paddle backfill cursor"},
		{name: "refused", src: func(s *hub.Source) { s.Credentials["api_key"] = "pdl_live_apikey_wrong" },
			want: "403 Forbidden (forbidden: You aren't permitted to perform this request.; the API key may not read events)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := paddleBackfillSource(srv.URL)
			if tt.src != nil {
				tt.src(src)
			}
			_, err := p.Reconcile(context.Background(), src, tt.cursor, testNow)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Reconcile error %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), src.Credentials["api_key"]) && src.Credentials["api_key"] != "" {
				t.Errorf("error reveals the key: %v", err)
			}
		})
	}
	for _, tt := range []struct {
		sandbox string
		host    string
	}{{"", "api.paddle.com"}, {"true", "sandbox-api.paddle.com"}} {
		t.Run("host "+tt.host, func(t *testing.T) {
			var got string
			client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				got = r.URL.Scheme + "://" + r.URL.Host + r.URL.Path
				body := `{"data":[],"meta":{"pagination":{"per_page":200,"next":"","has_more":false,"estimated_total":0}}}`
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
			})}
			src := paddleBackfillSource("")
			src.Options = map[string]string{"sandbox": tt.sandbox}
			pp := NewPaddle(PaddleConfig{Backfill: PaddleBackfillConfig{Client: client}})
			if _, err := pp.Reconcile(context.Background(), src, "", testNow); err != nil {
				t.Fatal(err)
			}
			if got != "https://"+tt.host+"/events" {
				t.Errorf("called %s, want https://%s/events", got, tt.host)
			}
		})
	}
}
