package connectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/netguard"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

const stripeBackfillKey = "sk_test_51Backfill0123456789"

// stripeEventsAPI serves GET /v1/events as Stripe documents it: newest
// first, filtered by created[gt] / created[lte] and delivery_success, a
// page of at most pageSize events after starting_after, with has_more.
type stripeEventsAPI struct {
	t        *testing.T
	pageSize int

	mu       sync.Mutex
	events   []stripeListed
	requests []url.Values
	fail     int // answer this status to every request when set
}

type stripeListed struct {
	id      string
	created int64
	body    json.RawMessage
}

func (s *stripeEventsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method != http.MethodGet || r.URL.Path != "/v1/events" {
		http.Error(w, `{"error":{"message":"Unrecognized request URL","type":"invalid_request_error"}}`, http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	s.requests = append(s.requests, q)
	if s.fail != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.fail)
		fmt.Fprintf(w, `{"error":{"code":"api_key_expired","message":"Expired API Key provided: sk_test_****6789","type":"invalid_request_error"}}`)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+stripeBackfillKey {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"message":"Invalid API Key provided","type":"invalid_request_error"}}`)
		return
	}
	num := func(name string) int64 {
		v := q.Get(name)
		if v == "" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			s.t.Errorf("query %s=%q is not a number", name, v)
		}
		return n
	}
	gt, lte := num("created[gt]"), num("created[lte]")
	limit := int(num("limit"))
	if limit == 0 {
		limit = 10
	}
	var list []stripeListed
	for _, e := range s.events {
		if e.created > gt && (lte == 0 || e.created <= lte) {
			list = append(list, e)
		}
	}
	sort.SliceStable(list, func(i, j int) bool {
		if list[i].created != list[j].created {
			return list[i].created > list[j].created
		}
		return list[i].id > list[j].id
	})
	if after := q.Get("starting_after"); after != "" {
		i := 0
		for i < len(list) && list[i].id != after {
			i++
		}
		if i == len(list) {
			s.t.Errorf("starting_after=%s names no listed event", after)
		}
		list = list[min(i+1, len(list)):]
	}
	n := min(limit, s.pageSize, len(list))
	data := make([]json.RawMessage, n)
	for i := range n {
		data[i] = list[i].body
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.MarshalIndent(map[string]any{"object": "list", "url": "/v1/events", "has_more": n < len(list), "data": data}, "", "  ")
	_, _ = w.Write(b)
}

func (s *stripeEventsAPI) queries() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.requests...)
}

// stripeBackfillCases are the events the fake API lists; every one is
// undelivered.
var stripeBackfillCases = []string{
	"checkout_session_paid", "invoice_paid_one_off", "charge_refunded_partial",
	"refund_created", "unsupported_type", "checkout_session_test_mode",
}

func newStripeEventsAPI(t *testing.T, pageSize int) (*stripeEventsAPI, *httptest.Server) {
	t.Helper()
	api := &stripeEventsAPI{t: t, pageSize: pageSize}
	for _, name := range stripeBackfillCases {
		c := loadCase(t, filepath.Join(stripeTestdata, name+".json"))
		var head struct {
			ID      string `json:"id"`
			Created int64  `json:"created"`
		}
		if err := json.Unmarshal(c.Body, &head); err != nil || head.ID == "" || head.Created == 0 {
			t.Fatalf("case %s: no id or created: %v", name, err)
		}
		api.events = append(api.events, stripeListed{id: head.ID, created: head.Created, body: c.Body})
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return api, srv
}

func localClient() *http.Client {
	return wooLocalClient()
}

func stripeBackfillSource(base string) *hub.Source {
	return &hub.Source{
		ID: "src_stripe_backfill", ProgramID: hub.DefaultProgramID, Provider: "stripe", Secret: stripeTestSecret,
		Options: map[string]string{"api_base": base}, Credentials: map[string]string{"api_key": stripeBackfillKey},
	}
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestStripeBackfillListsUndeliveredEvents: one poll reads every page of
// undelivered events created after the cursor and returns them oldest
// first, as the API rendered them, keyed by event id; the cursor moves to
// now minus the settle time.
func TestStripeBackfillListsUndeliveredEvents(t *testing.T) {
	api, srv := newStripeEventsAPI(t, 2)
	s := NewStripe(StripeConfig{Backfill: StripeBackfillConfig{Client: localClient()}})
	res, err := s.Reconcile(context.Background(), stripeBackfillSource(srv.URL), "", testNow)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}

	qs := api.queries()
	if len(qs) != 3 {
		t.Fatalf("%d requests, want 3 pages of 2", len(qs))
	}
	since := strconv.FormatInt(testNow.Add(-72*time.Hour).Unix(), 10)
	prev := ""
	for i, q := range qs {
		want := url.Values{"delivery_success": {"false"}, "created[gt]": {since}, "limit": {"100"}}
		if prev != "" {
			want.Set("starting_after", prev)
		}
		if diff := cmp.Diff(want, q); diff != "" {
			t.Errorf("request %d query (-want +got):\n%s", i+1, diff)
		}
		if i < len(res.Events) {
			// the page's last event, newest first: count from the end.
			prev = res.Events[len(res.Events)-1-(2*i+1)].Receipt.DedupeKey
		}
	}

	var got []string
	for _, ev := range res.Events {
		got = append(got, ev.Receipt.DedupeKey+" "+ev.Receipt.EventType)
		if ev.Receipt.Headers[wooHeaderReconciled] != "true" {
			t.Errorf("%s: headers %v, want the reconciled marker", ev.Receipt.DedupeKey, ev.Receipt.Headers)
		}
	}
	want := []string{
		"evt_1PBkLm2eZvKYlo2CwF5d1Ts8 invoice.paid",
		"evt_3PBjUw2eZvKYlo2C0Hk9sLm4 charge.refunded",
		"evt_3PBjUw2eZvKYlo2C0Nv3pQa8 refund.created",
		"evt_1PBjcT2eZvKYlo2Cg7Hk3p5R checkout.session.completed",
		"evt_1PBkS02eZvKYlo2Cj2Kl3Mn4 customer.created",
		"evt_1PBjUy2eZvKYlo2CQ2yb7Ztq checkout.session.completed",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events, oldest first (-want +got):\n%s", diff)
	}
	for _, ev := range res.Events {
		for _, e := range api.events {
			if e.id == ev.Receipt.DedupeKey && string(ev.Body) != compactJSON(t, e.body) {
				t.Errorf("%s: body differs from the listed event", e.id)
			}
		}
	}
	if wantCursor := testNow.Add(-10 * time.Minute).Format(time.RFC3339); res.Cursor != wantCursor || res.More {
		t.Errorf("cursor %q more %v, want %q and no more", res.Cursor, res.More, wantCursor)
	}

	// The next poll asks only for events created after the cursor.
	if _, err := s.Reconcile(context.Background(), stripeBackfillSource(srv.URL), res.Cursor, testNow); err != nil {
		t.Fatal(err)
	}
	qs = api.queries()
	if got := qs[len(qs)-1].Get("created[gt]"); got != strconv.FormatInt(testNow.Add(-10*time.Minute).Unix(), 10) {
		t.Errorf("next poll created[gt]=%s", got)
	}
}

// TestStripeBackfillResumesAfterItsBound: a poll that stops at its page
// bound says so and keeps the unread part of the window in its cursor;
// the following polls read it (its last second again) and then move on,
// so together they see every event.
func TestStripeBackfillResumesAfterItsBound(t *testing.T) {
	api, srv := newStripeEventsAPI(t, 2)
	s := NewStripe(StripeConfig{Backfill: StripeBackfillConfig{Client: localClient(), MaxPages: 1}})
	src := stripeBackfillSource(srv.URL)
	seen := map[string]int{}
	cursor := ""
	polls := 0
	for {
		polls++
		if polls > 10 {
			t.Fatal("the backfill does not finish")
		}
		res, err := s.Reconcile(context.Background(), src, cursor, testNow)
		if err != nil {
			t.Fatalf("poll %d: %v", polls, err)
		}
		for _, ev := range res.Events {
			seen[ev.Receipt.DedupeKey]++
		}
		cursor = res.Cursor
		if !res.More {
			break
		}
		if strings.Count(cursor, ",") != 2 {
			t.Fatalf("poll %d stopped with cursor %q, want a window", polls, cursor)
		}
	}
	if len(seen) != len(stripeBackfillCases) {
		t.Errorf("saw %d distinct events over %d polls, want %d: %v", len(seen), polls, len(stripeBackfillCases), seen)
	}
	if want := testNow.Add(-10 * time.Minute).Format(time.RFC3339); cursor != want {
		t.Errorf("final cursor %q, want %q", cursor, want)
	}
	var windowed bool
	for _, q := range api.queries() {
		if q.Get("created[lte]") != "" {
			windowed = true
		}
	}
	if !windowed {
		t.Error("no poll asked for created[lte]: the window was not resumed")
	}
}

// TestStripeBackfillIngests: backfilled events go through the webhook
// path: an event already received by webhook is a duplicate, the others
// become conversions and refunds, and running the backfill again ingests
// nothing.
func TestStripeBackfillIngests(t *testing.T) {
	ctx := context.Background()
	_, srv := newStripeEventsAPI(t, 2)
	st := storetest.Open(t)
	src := stripeBackfillSource(srv.URL)
	src.ID = ""
	if err := st.CreateSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	s := NewStripe(StripeConfig{Backfill: StripeBackfillConfig{Client: localClient()}})
	reg := NewRegistry(s)
	q := &backfillQueue{}
	svc, err := hub.NewService(hub.ServiceConfig{Store: st, Queue: q, Normalizer: reg.Normalizer, Reconciler: reg.Reconciler,
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}

	// One event arrived by webhook before the outage.
	c := loadCase(t, filepath.Join(stripeTestdata, "checkout_session_paid.json"))
	h := c.Header()
	signStripe(stripeTestSecret, testNow, c.Body, h)
	rc, err := s.Verify(src, h, c.Body, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Ingest(ctx, src, rc, c.Body); err != nil {
		t.Fatal(err)
	}

	res, err := svc.Backfill(ctx, hub.DefaultProgramID, src.ID, time.Time{})
	if err != nil {
		t.Fatalf("Backfill: %v", err)
	}
	if res.Fetched != 6 || res.Ingested != 5 || res.Duplicates != 1 || res.More {
		t.Fatalf("backfill = %+v, want 6 fetched, 5 ingested, 1 duplicate", res)
	}
	q.drain(t, svc)

	convs, err := st.ListConversions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, cv := range convs {
		keys = append(keys, cv.Keys[0])
	}
	sort.Strings(keys)
	wantKeys := []string{"cs_live_a1Kq3XbN9fRZ2vT7wYc4PmLs0dHjE8uG6iOx5BnVtQ", "cs_test_a1Fq9XbN3fRZ7vT2wYc8PmLs4dHjE1uG0iOx6BnVtQ", "in_1PBkLj2eZvKYlo2CbN6g2Jj0"}
	if diff := cmp.Diff(wantKeys, keys); diff != "" {
		t.Errorf("conversions (-want +got):\n%s", diff)
	}
	refunds, err := st.ListRefunds(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(refunds) == 0 {
		t.Error("the backfilled refunds were not recorded")
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

	again, err := svc.Backfill(ctx, hub.DefaultProgramID, src.ID, testNow.Add(-72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if again.Ingested != 0 || again.Duplicates != 6 {
		t.Errorf("second backfill = %+v, want all 6 duplicates", again)
	}
	if n := len(q.take()); n != 0 {
		t.Errorf("second backfill queued %d events", n)
	}
	got, err := st.GetSource(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Cursor != testNow.Add(-10*time.Minute).Format(time.RFC3339) {
		t.Errorf("source cursor %q", got.Cursor)
	}
}

// TestStripeBackfillErrors: a source without a usable key or API address
// is refused before any call; API failures are explained without the key;
// the default client refuses non-public addresses.
func TestStripeBackfillErrors(t *testing.T) {
	api, srv := newStripeEventsAPI(t, 2)
	s := NewStripe(StripeConfig{Backfill: StripeBackfillConfig{Client: localClient()}})
	tests := []struct {
		name    string
		src     func(*hub.Source)
		cursor  string
		status  int
		want    string
		wantErr error
	}{
		{name: "no key", src: func(s *hub.Source) { s.Credentials = nil }, want: "needs the credential api_key"},
		{name: "publishable key", src: func(s *hub.Source) { s.Credentials["api_key"] = "pk_test_123" }, want: "needs the credential api_key"},
		{name: "plain http api_base", src: func(s *hub.Source) { s.Options["api_base"] = "http://api.example.com" }, want: "api_base must be an https:// address"},
		{name: "bad cursor", cursor: "yesterday", want: "invalid stripe backfill cursor"},
		{name: "expired key", status: http.StatusUnauthorized, want: "HTTP 401 api_key_expired: Expired API Key provided: sk_test_****6789 (check the source's api_key)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := stripeBackfillSource(srv.URL)
			if tt.src != nil {
				tt.src(src)
			}
			api.mu.Lock()
			api.fail, api.requests = tt.status, nil
			api.mu.Unlock()
			_, err := s.Reconcile(context.Background(), src, tt.cursor, testNow)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Reconcile error %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), stripeBackfillKey) {
				t.Errorf("error reveals the key: %v", err)
			}
			if tt.status == 0 && len(api.queries()) != 0 {
				t.Errorf("the API was called")
			}
		})
	}
	t.Run("ssrf guard", func(t *testing.T) {
		_, err := NewStripe(StripeConfig{}).Reconcile(context.Background(), stripeBackfillSource(srv.URL), "", testNow)
		if !errors.Is(err, netguard.ErrForbiddenAddress) {
			t.Fatalf("Reconcile with the default client to 127.0.0.1: %v, want ErrForbiddenAddress", err)
		}
	})
}

// backfillQueue records the inbound events queued for processing.
type backfillQueue struct {
	mu  sync.Mutex
	ids []string
}

func (q *backfillQueue) EnqueueProcess(_ context.Context, id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ids = append(q.ids, id)
	return nil
}

func (q *backfillQueue) EnqueueDelivery(context.Context, string, int, time.Time) error { return nil }

func (q *backfillQueue) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := q.ids
	q.ids = nil
	return ids
}

// drain processes every queued event.
func (q *backfillQueue) drain(t *testing.T, svc *hub.Service) {
	t.Helper()
	for _, id := range q.take() {
		if err := svc.Process(context.Background(), id); err != nil {
			t.Fatalf("Process %s: %v", id, err)
		}
	}
}

// TestStripeBackfillAgainstStripeMock sends the backfill's request to
// stripe-mock, which validates it against Stripe's OpenAPI specification.
// It skips when stripe-mock is not installed, and fails under CI=true.
func TestStripeBackfillAgainstStripeMock(t *testing.T) {
	bin, err := exec.LookPath("stripe-mock")
	if err != nil {
		if p := filepath.Join(build.Default.GOPATH, "bin", "stripe-mock"); fileExists(p) {
			bin, err = p, nil
		}
	}
	if err != nil {
		why := "stripe-mock is not installed (go install github.com/stripe/stripe-mock@v0.203.0)"
		if os.Getenv("CI") == "true" {
			t.Fatalf("cross-check cannot run with CI=true: %s", why)
		}
		t.Skip(why)
	}
	httpAddr, httpsAddr := freeLoopbackAddr(t), freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-http-addr", httpAddr, "-https-addr", httpsAddr)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting stripe-mock: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", httpAddr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock did not listen on %s: %s", httpAddr, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	s := NewStripe(StripeConfig{Backfill: StripeBackfillConfig{Client: localClient()}})
	res, err := s.Reconcile(context.Background(), stripeBackfillSource("http://"+httpAddr), "", testNow)
	if err != nil {
		t.Fatalf("Reconcile against stripe-mock: %v", err)
	}
	if len(res.Events) == 0 {
		t.Fatal("stripe-mock listed no event")
	}
	for _, ev := range res.Events {
		if !strings.HasPrefix(ev.Receipt.DedupeKey, "evt_") || !json.Valid(ev.Body) {
			t.Errorf("listed event %q with body %.80s", ev.Receipt.DedupeKey, ev.Body)
		}
	}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// freeLoopbackAddr returns a free 127.0.0.1 port.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestBackfillStopsBeforeTheDeadline: a poll whose context ends soon reads
// one page, and leaves the rest to the next poll instead of failing.
func TestBackfillStopsBeforeTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), reconcileDeadlineMargin-time.Second)
	defer cancel()
	_, ssrv := newStripeEventsAPI(t, 2)
	sres, err := NewStripe(StripeConfig{Backfill: StripeBackfillConfig{Client: localClient()}}).Reconcile(ctx, stripeBackfillSource(ssrv.URL), "", testNow)
	if err != nil {
		t.Fatalf("stripe: %v", err)
	}
	if !sres.More || len(sres.Events) != 2 {
		t.Errorf("stripe: more %v, %d events; want one page of 2 and more", sres.More, len(sres.Events))
	}
	_, psrv := newPaddleEventsAPI(t, 2)
	pres, err := NewPaddle(PaddleConfig{Backfill: PaddleBackfillConfig{Client: localClient()}}).Reconcile(ctx, paddleBackfillSource(psrv.URL), "2024-03-01T00:00:00Z", testNow)
	if err != nil {
		t.Fatalf("paddle: %v", err)
	}
	if !pres.More || len(pres.Events) != 2 {
		t.Errorf("paddle: more %v, %d events; want one page of 2 and more", pres.More, len(pres.Events))
	}
}
