package outbound_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/netguard"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
	"github.com/partnerhub/partnerhub/outbound"
)

// The store implements what the dispatcher needs.
var _ outbound.Store = (*store.DB)(nil)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// base is the fixed clock of the dispatcher tests.
var base = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

// testSchedule keeps tests short: three attempts.
var testSchedule = []time.Duration{0, time.Minute, 3 * time.Hour}

// jitter is the fixed Rand of the tests: a factor of 0.8 + 0.4*0.75 = 1.1.
const jitter = 0.75

func jittered(d time.Duration) time.Duration {
	return time.Duration(float64(d) * 1.1).Round(time.Millisecond)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// enqueued is one EnqueueDelivery call.
type enqueued struct {
	DeliveryID string
	Attempt    int
	At         time.Time
}

// fakeQueue records EnqueueDelivery calls.
type fakeQueue struct {
	mu    sync.Mutex
	calls []enqueued
	err   error
}

var _ hub.Queue = (*fakeQueue)(nil)

func (q *fakeQueue) EnqueueProcess(context.Context, string) error { return nil }

func (q *fakeQueue) EnqueueDelivery(_ context.Context, id string, attempt int, at time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, enqueued{id, attempt, at.UTC()})
	return q.err
}

func (q *fakeQueue) Calls() []enqueued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]enqueued(nil), q.calls...)
}

// receiver is a local webhook receiver answering with scripted responses
// (the last one repeats) and keeping what it received.
type receiver struct {
	*httptest.Server
	mu        sync.Mutex
	responses []func(w http.ResponseWriter, r *http.Request)
	requests  []received
}

type received struct {
	Header http.Header
	Body   []byte
}

func newReceiver(t *testing.T, responses ...func(w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{responses: responses}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.requests)
		rc.requests = append(rc.requests, received{r.Header.Clone(), b})
		h := rc.responses[min(n, len(rc.responses)-1)]
		rc.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) Requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.requests...)
}

func reply(status int, body string, headers ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// localClient is the netguard client with loopback allowed.
func localClient(t *testing.T) *http.Client {
	t.Helper()
	c := netguard.NewClient(netguard.Config{AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// fixture is a store with one endpoint and one event delivered to it.
type fixture struct {
	st       *store.DB
	endpoint *hub.Endpoint
	event    *hub.Event
	delivery string
}

func newFixture(t *testing.T, url string) *fixture {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	ep := &hub.Endpoint{
		ID:        hub.NewID("ep"),
		ProgramID: hub.DefaultProgramID,
		URL:       url,
		Secret:    outbound.NewSecret(),
		Enabled:   true,
		CreatedAt: base,
	}
	if err := st.CreateEndpoint(ctx, ep); err != nil {
		t.Fatalf("CreateEndpoint: %v", err)
	}
	evt := &hub.Event{
		ID:        hub.NewID("evt"),
		ProgramID: hub.DefaultProgramID,
		Type:      "commission.created",
		Data:      json.RawMessage(`{"commission_id":"com_1","amount_minor":1234,"currency":"EUR","note":"<a&b>"}`),
		CreatedAt: base.Add(-time.Minute),
	}
	var dels []*hub.Delivery
	err := st.InTx(ctx, func(tx hub.Tx) error {
		var err error
		dels, err = tx.InsertEvent(ctx, evt)
		return err
	})
	if err != nil {
		t.Fatalf("InsertEvent: %v", err)
	}
	if len(dels) != 1 {
		t.Fatalf("InsertEvent created %d deliveries, want 1", len(dels))
	}
	return &fixture{st: st, endpoint: ep, event: evt, delivery: dels[0].ID}
}

// dispatcher returns a dispatcher over f's store (or st when given) with
// the fixed clock and jitter.
func (f *fixture) dispatcher(t *testing.T, clk *clock, q hub.Queue, client *http.Client, st outbound.Store) *outbound.Dispatcher {
	t.Helper()
	if st == nil {
		st = f.st
	}
	d, err := outbound.New(testConfig(clk, client), st, q)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// testConfig is the dispatcher configuration of the tests: the test
// schedule, a 2 s timeout, clk and the fixed jitter.
func testConfig(clk *clock, client *http.Client) outbound.Config {
	return outbound.Config{
		Schedule: testSchedule,
		Timeout:  2 * time.Second,
		Client:   client,
		Now:      clk.Now,
		Rand:     func() float64 { return jitter },
	}
}

// get returns the delivery with its attempts.
func (f *fixture) get(t *testing.T) *hub.Delivery {
	t.Helper()
	return f.byID(t, f.delivery)
}

// deliveries lists f's deliveries (up to 200).
func (f *fixture) deliveries(t *testing.T) []*hub.Delivery {
	t.Helper()
	ds, err := f.st.ListDeliveries(context.Background(), hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// byID returns the delivery id of f's program.
func (f *fixture) byID(t *testing.T, id string) *hub.Delivery {
	t.Helper()
	for _, d := range f.deliveries(t) {
		if d.ID == id {
			return d
		}
	}
	t.Fatalf("delivery %s not listed", id)
	return nil
}

func errorClass(s string) string {
	c, _, _ := strings.Cut(s, ":")
	return c
}

func TestDeliverRetryThenSuccess(t *testing.T) {
	rc := newReceiver(t, reply(500, "boom"), reply(204, ""))
	f := newFixture(t, rc.URL+"/hooks")
	clk := &clock{t: base}
	q := &fakeQueue{}
	d := f.dispatcher(t, clk, q, localClient(t), nil)
	ctx := context.Background()

	if err := d.Deliver(ctx, f.delivery, 1); err != nil {
		t.Fatalf("attempt 1: %v", err)
	}
	del := f.get(t)
	next := base.Add(jittered(testSchedule[1]))
	if del.Status != hub.DeliveryPending || del.Attempts != 1 || errorClass(del.LastError) != "http_500" {
		t.Errorf("after attempt 1: status %q, attempts %d, last error %q; want pending, 1, http_500", del.Status, del.Attempts, del.LastError)
	}
	if del.NextAttemptAt == nil || !del.NextAttemptAt.Equal(next) {
		t.Errorf("next attempt at %v, want %v", del.NextAttemptAt, next)
	}
	if len(del.AttemptLog) != 1 {
		t.Fatalf("%d attempts recorded, want 1", len(del.AttemptLog))
	}
	a := del.AttemptLog[0]
	if a.Number != 1 || a.StatusCode != 500 || errorClass(a.Error) != "http_500" || a.ResponseBody != "boom" {
		t.Errorf("attempt 1 = %+v; want number 1, status 500, http_500, body boom", a)
	}
	if diff := cmp.Diff([]enqueued{{f.delivery, 2, next}}, q.Calls()); diff != "" {
		t.Errorf("enqueued (-want +got):\n%s", diff)
	}

	clk.Add(jittered(testSchedule[1]))
	if err := d.Deliver(ctx, f.delivery, 2); err != nil {
		t.Fatalf("attempt 2: %v", err)
	}
	del = f.get(t)
	if del.Status != hub.DeliverySucceeded || del.Attempts != 2 || del.NextAttemptAt != nil {
		t.Errorf("after attempt 2: status %q, attempts %d, next %v; want succeeded, 2, none", del.Status, del.Attempts, del.NextAttemptAt)
	}
	if len(del.AttemptLog) != 2 {
		t.Errorf("%d attempts recorded, want 2", len(del.AttemptLog))
	}
	if n := len(q.Calls()); n != 1 {
		t.Errorf("%d enqueues after success, want 1 in all", n)
	}

	reqs := rc.Requests()
	if len(reqs) != 2 {
		t.Fatalf("receiver got %d requests, want 2", len(reqs))
	}
	wh, err := standardwebhooks.NewWebhook(f.endpoint.Secret)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range reqs {
		t.Run(fmt.Sprintf("request %d", i+1), func(t *testing.T) {
			// The clock is fixed in the past, so the timestamp is checked
			// here and the signature by the reference library.
			if err := wh.VerifyIgnoringTimestamp(r.Body, r.Header); err != nil {
				t.Errorf("reference library: %v", err)
			}
			wantTS := strconv.FormatInt(base.Unix()+int64(i)*int64(jittered(testSchedule[1])/time.Second), 10)
			for name, want := range map[string]string{
				"webhook-id":        f.event.ID,
				"webhook-timestamp": wantTS,
				"content-type":      "application/json",
				"user-agent":        "partnerhub-webhooks/1",
			} {
				if got := r.Header.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			var env map[string]any
			if err := json.Unmarshal(r.Body, &env); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			want := map[string]any{
				"id":          f.event.ID,
				"type":        "commission.created",
				"api_version": "2026-11-01",
				"created_at":  "2026-11-02T09:59:00Z",
				"program_id":  hub.DefaultProgramID,
				"data":        map[string]any{"commission_id": "com_1", "amount_minor": 1234.0, "currency": "EUR", "note": "<a&b>"},
			}
			if diff := cmp.Diff(want, env); diff != "" {
				t.Errorf("envelope (-want +got):\n%s", diff)
			}
		})
	}
	if string(reqs[0].Body) != string(reqs[1].Body) {
		t.Errorf("bodies differ across attempts:\n%s\n%s", reqs[0].Body, reqs[1].Body)
	}
	if reqs[0].Header.Get("webhook-timestamp") == reqs[1].Header.Get("webhook-timestamp") ||
		reqs[0].Header.Get("webhook-signature") == reqs[1].Header.Get("webhook-signature") {
		t.Error("timestamp and signature were not computed afresh for attempt 2")
	}
}

func TestDeliverVerifiesNow(t *testing.T) {
	// With the real clock, the reference library's full Verify (timestamp
	// tolerance included) accepts the delivery.
	rc := newReceiver(t, reply(200, "ok"))
	f := newFixture(t, rc.URL)
	d, err := outbound.New(outbound.Config{Client: localClient(t)}, f.st, &fakeQueue{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver(context.Background(), f.delivery, 1); err != nil {
		t.Fatal(err)
	}
	reqs := rc.Requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(reqs))
	}
	wh, _ := standardwebhooks.NewWebhook(f.endpoint.Secret)
	if err := wh.Verify(reqs[0].Body, reqs[0].Header); err != nil {
		t.Errorf("reference library: %v", err)
	}
	if got := f.get(t).Status; got != hub.DeliverySucceeded {
		t.Errorf("status = %q, want succeeded", got)
	}
}

func TestDeliverFailures(t *testing.T) {
	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr + "/hooks"
	}
	tests := []struct {
		name string
		// respond scripts the receiver; url, when set, replaces its URL.
		respond    func(http.ResponseWriter, *http.Request)
		url        func(t *testing.T) string
		guarded    bool // use the default client: loopback refused
		wantClass  string
		wantStatus int
		wantBody   string
	}{
		{name: "server error", respond: reply(500, "internal"), wantClass: "http_500", wantStatus: 500, wantBody: "internal"},
		{name: "client error", respond: reply(400, `{"error":"bad"}`), wantClass: "http_400", wantStatus: 400, wantBody: `{"error":"bad"}`},
		{name: "redirect not followed", respond: reply(302, "", "Location", "/elsewhere"), wantClass: "http_302", wantStatus: 302},
		{name: "timeout", respond: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, wantClass: "timeout"},
		{name: "connection refused", url: refused, wantClass: "connection_refused"},
		{name: "forbidden address", respond: reply(200, "ok"), guarded: true, wantClass: "forbidden_address"},
		{name: "long binary body truncated", respond: reply(503, "\x00\xff"+strings.Repeat("x", 10000)), wantClass: "http_503", wantStatus: 503,
			wantBody: "\uFFFD" + strings.Repeat("x", 4094)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var paths []string
			var mu sync.Mutex
			rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths = append(paths, r.URL.Path)
				mu.Unlock()
				if tt.respond != nil {
					tt.respond(w, r)
				}
			})
			url := rc.URL + "/hooks"
			if tt.url != nil {
				url = tt.url(t)
			}
			f := newFixture(t, url)
			clk := &clock{t: base}
			q := &fakeQueue{}
			client := localClient(t)
			if tt.guarded {
				client = nil
			}
			d, err := outbound.New(outbound.Config{
				Schedule: testSchedule,
				Timeout:  200 * time.Millisecond,
				Client:   client,
				Now:      clk.Now,
				Rand:     func() float64 { return jitter },
			}, f.st, q)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Deliver(context.Background(), f.delivery, 1); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			del := f.get(t)
			if len(del.AttemptLog) != 1 {
				t.Fatalf("%d attempts recorded, want 1", len(del.AttemptLog))
			}
			a := del.AttemptLog[0]
			if errorClass(a.Error) != tt.wantClass || a.StatusCode != tt.wantStatus {
				t.Errorf("attempt: error %q, status %d; want class %q, status %d", a.Error, a.StatusCode, tt.wantClass, tt.wantStatus)
			}
			if a.ResponseBody != tt.wantBody {
				t.Errorf("response body = %.40q (%d bytes), want %.40q (%d bytes)", a.ResponseBody, len(a.ResponseBody), tt.wantBody, len(tt.wantBody))
			}
			next := base.Add(jittered(testSchedule[1]))
			if del.Status != hub.DeliveryPending || del.LastError != a.Error || del.NextAttemptAt == nil || !del.NextAttemptAt.Equal(next) {
				t.Errorf("delivery: status %q, last error %q, next %v; want pending, %q, %v", del.Status, del.LastError, del.NextAttemptAt, a.Error, next)
			}
			if diff := cmp.Diff([]enqueued{{f.delivery, 2, next}}, q.Calls()); diff != "" {
				t.Errorf("enqueued (-want +got):\n%s", diff)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range paths {
				if p != "/hooks" {
					t.Errorf("request to %s: a redirect was followed", p)
				}
			}
		})
	}
}

func TestDeliverLastAttemptFails(t *testing.T) {
	rc := newReceiver(t, reply(500, "down"))
	f := newFixture(t, rc.URL)
	clk := &clock{t: base}
	q := &fakeQueue{}
	d := f.dispatcher(t, clk, q, localClient(t), nil)
	ctx := context.Background()
	for attempt := 1; attempt <= len(testSchedule); attempt++ {
		if err := d.Deliver(ctx, f.delivery, attempt); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		clk.Add(4 * time.Hour)
	}
	del := f.get(t)
	if del.Status != hub.DeliveryFailed || del.Attempts != 3 || del.NextAttemptAt != nil || errorClass(del.LastError) != "http_500" {
		t.Errorf("delivery: status %q, attempts %d, next %v, last error %q; want failed, 3, none, http_500", del.Status, del.Attempts, del.NextAttemptAt, del.LastError)
	}
	var attempts []int
	for _, c := range q.Calls() {
		attempts = append(attempts, c.Attempt)
	}
	if diff := cmp.Diff([]int{2, 3}, attempts); diff != "" {
		t.Errorf("enqueued attempts (-want +got):\n%s", diff)
	}
	// A late duplicate of the last task does nothing.
	if err := d.Deliver(ctx, f.delivery, 3); err != nil {
		t.Fatal(err)
	}
	if n := len(rc.Requests()); n != 3 {
		t.Errorf("receiver got %d requests, want 3", n)
	}
}

func TestDeliverStaleTask(t *testing.T) {
	tests := []struct {
		name string
		// status is the receiver's answer to the attempts made before the
		// stale task, numbered 1..before.
		status  int
		before  int
		attempt int
		id      string
	}{
		{name: "attempt ahead of the row", status: 500, attempt: 2},
		{name: "attempt already made", status: 500, before: 1, attempt: 1},
		{name: "attempt zero", status: 500, attempt: 0},
		{name: "delivery already succeeded", status: 200, before: 1, attempt: 2},
		{name: "unknown delivery", status: 200, attempt: 1, id: "dlv_unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, reply(tt.status, ""))
			f := newFixture(t, rc.URL)
			q := &fakeQueue{}
			d := f.dispatcher(t, &clock{t: base}, q, localClient(t), nil)
			ctx := context.Background()
			for i := 1; i <= tt.before; i++ {
				if err := d.Deliver(ctx, f.delivery, i); err != nil {
					t.Fatal(err)
				}
			}
			before := f.get(t)
			enqueues := len(q.Calls())
			id := f.delivery
			if tt.id != "" {
				id = tt.id
			}
			if err := d.Deliver(ctx, id, tt.attempt); err != nil {
				t.Fatalf("Deliver = %v, want nil", err)
			}
			if n := len(rc.Requests()); n != tt.before {
				t.Errorf("receiver got %d requests, want %d", n, tt.before)
			}
			if diff := cmp.Diff(before, f.get(t)); diff != "" {
				t.Errorf("delivery changed (-before +after):\n%s", diff)
			}
			if n := len(q.Calls()); n != enqueues {
				t.Errorf("%d enqueues, want %d", n, enqueues)
			}
		})
	}
}

func TestDeliverRetryAfter(t *testing.T) {
	httpDate := func(d time.Duration) string { return base.Add(d).Format(http.TimeFormat) }
	tests := []struct {
		name      string
		status    int
		header    string
		wantDelay time.Duration
	}{
		{name: "429 seconds beyond the schedule", status: 429, header: "3600", wantDelay: time.Hour},
		{name: "503 HTTP date", status: 503, header: httpDate(2 * time.Hour), wantDelay: 2 * time.Hour},
		{name: "capped at the largest delay", status: 429, header: "86400", wantDelay: 3 * time.Hour},
		{name: "shorter than the schedule", status: 429, header: "1", wantDelay: jittered(time.Minute)},
		{name: "date in the past", status: 503, header: httpDate(-time.Hour), wantDelay: jittered(time.Minute)},
		{name: "garbage", status: 503, header: "soon", wantDelay: jittered(time.Minute)},
		{name: "ignored on 500", status: 500, header: "3600", wantDelay: jittered(time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, reply(tt.status, "", "Retry-After", tt.header))
			f := newFixture(t, rc.URL)
			q := &fakeQueue{}
			d := f.dispatcher(t, &clock{t: base}, q, localClient(t), nil)
			if err := d.Deliver(context.Background(), f.delivery, 1); err != nil {
				t.Fatal(err)
			}
			want := base.Add(tt.wantDelay)
			if diff := cmp.Diff([]enqueued{{f.delivery, 2, want}}, q.Calls()); diff != "" {
				t.Errorf("enqueued (-want +got):\n%s", diff)
			}
			if del := f.get(t); del.NextAttemptAt == nil || !del.NextAttemptAt.Equal(want) {
				t.Errorf("next attempt at %v, want %v", del.NextAttemptAt, want)
			}
		})
	}
}

// disabledStore serves targets whose endpoint has been disabled since the
// delivery was created.
type disabledStore struct{ outbound.Store }

func (s disabledStore) DeliveryTargets(ctx context.Context, ids []string) ([]*hub.Delivery, []*hub.Event, []*hub.Endpoint, error) {
	ds, es, eps, err := s.Store.DeliveryTargets(ctx, ids)
	for _, ep := range eps {
		if ep != nil {
			ep.Enabled = false
		}
	}
	return ds, es, eps, err
}

// staleStore serves the row as it was at the first read, as a worker that
// loaded it before another worker recorded the attempt would see it.
type staleStore struct {
	outbound.Store
	mu    sync.Mutex
	first *hub.Delivery
}

func (s *staleStore) DeliveryTargets(ctx context.Context, ids []string) ([]*hub.Delivery, []*hub.Event, []*hub.Endpoint, error) {
	ds, es, eps, err := s.Store.DeliveryTargets(ctx, ids)
	if err != nil || len(ds) != 1 || ds[0] == nil {
		return ds, es, eps, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == nil {
		c := *ds[0]
		s.first = &c
	}
	c := *s.first
	return []*hub.Delivery{&c}, es, eps, nil
}

// downStore fails to record attempts.
type downStore struct{ outbound.Store }

func (downStore) RecordAttempts(_ context.Context, ds []*hub.Delivery, _ []*hub.Attempt) []error {
	errs := make([]error, len(ds))
	for i := range errs {
		errs[i] = fmt.Errorf("recording: %w", hub.ErrUnavailable)
	}
	return errs
}

func TestDeliverEndpointDisabled(t *testing.T) {
	rc := newReceiver(t, reply(200, "ok"))
	f := newFixture(t, rc.URL)
	q := &fakeQueue{}
	d := f.dispatcher(t, &clock{t: base}, q, localClient(t), disabledStore{f.st})
	if err := d.Deliver(context.Background(), f.delivery, 1); err != nil {
		t.Fatal(err)
	}
	del := f.get(t)
	if del.Status != hub.DeliveryFailed || errorClass(del.LastError) != "endpoint_disabled" || len(del.AttemptLog) != 1 {
		t.Errorf("delivery: status %q, last error %q, %d attempts; want failed, endpoint_disabled, 1", del.Status, del.LastError, len(del.AttemptLog))
	}
	if n := len(rc.Requests()); n != 0 {
		t.Errorf("receiver got %d requests, want 0", n)
	}
	if n := len(q.Calls()); n != 0 {
		t.Errorf("%d enqueues, want 0", n)
	}
}

func TestDeliverConcurrentAttempt(t *testing.T) {
	rc := newReceiver(t, reply(500, "down"))
	f := newFixture(t, rc.URL)
	q := &fakeQueue{}
	d := f.dispatcher(t, &clock{t: base}, q, localClient(t), &staleStore{Store: f.st})
	ctx := context.Background()
	for i := range 2 {
		if err := d.Deliver(ctx, f.delivery, 1); err != nil {
			t.Fatalf("run %d: Deliver = %v, want nil", i+1, err)
		}
	}
	if n := len(f.get(t).AttemptLog); n != 1 {
		t.Errorf("%d attempts recorded, want 1", n)
	}
	if n := len(q.Calls()); n != 1 {
		t.Errorf("%d enqueues, want 1 (the loser enqueues nothing)", n)
	}
}

func TestDeliverStoreUnavailable(t *testing.T) {
	rc := newReceiver(t, reply(500, "down"))
	f := newFixture(t, rc.URL)
	q := &fakeQueue{}
	d := f.dispatcher(t, &clock{t: base}, q, localClient(t), downStore{f.st})
	err := d.Deliver(context.Background(), f.delivery, 1)
	if !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("Deliver = %v, want ErrUnavailable", err)
	}
	if n := len(q.Calls()); n != 0 {
		t.Errorf("%d enqueues before the attempt was recorded, want 0", n)
	}
}

func TestDeliverEnqueueFailure(t *testing.T) {
	rc := newReceiver(t, reply(500, "down"))
	f := newFixture(t, rc.URL)
	q := &fakeQueue{err: fmt.Errorf("enqueueing: %w", hub.ErrUnavailable)}
	d := f.dispatcher(t, &clock{t: base}, q, localClient(t), nil)
	if err := d.Deliver(context.Background(), f.delivery, 1); err != nil {
		t.Fatalf("Deliver = %v, want nil (the sweeper re-enqueues)", err)
	}
	del := f.get(t)
	if del.Status != hub.DeliveryPending || del.NextAttemptAt == nil {
		t.Errorf("delivery: status %q, next %v; want pending with a next attempt", del.Status, del.NextAttemptAt)
	}
}

func TestNewValidates(t *testing.T) {
	st, q := disabledStore{}, &fakeQueue{}
	tests := []struct {
		name  string
		cfg   outbound.Config
		st    outbound.Store
		q     hub.Queue
		valid bool
	}{
		{name: "defaults", st: st, q: q, valid: true},
		{name: "no store", q: q},
		{name: "no queue", st: st},
		{name: "empty schedule", cfg: outbound.Config{Schedule: []time.Duration{}}, st: st, q: q},
		{name: "negative delay", cfg: outbound.Config{Schedule: []time.Duration{0, -time.Second}}, st: st, q: q},
		{name: "negative timeout", cfg: outbound.Config{Timeout: -time.Second}, st: st, q: q},
		{name: "negative breaker failures", cfg: outbound.Config{BreakerFailures: -1}, st: st, q: q},
		{name: "negative breaker cooldown", cfg: outbound.Config{BreakerCooldown: -time.Second}, st: st, q: q},
		{name: "negative disable after", cfg: outbound.Config{DisableAfter: -time.Hour}, st: st, q: q},
		{name: "negative concurrency", cfg: outbound.Config{MaxInFlight: -1}, st: st, q: q},
		{name: "negative endpoint concurrency", cfg: outbound.Config{EndpointMaxInFlight: -1}, st: st, q: q},
		{name: "negative batch", cfg: outbound.Config{MaxBatch: -1}, st: st, q: q},
		{name: "negative batch concurrency", cfg: outbound.Config{BatchConcurrency: -1}, st: st, q: q},
		{name: "negative direct window", cfg: outbound.Config{DirectWithin: -time.Second}, st: st, q: q},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := outbound.New(tt.cfg, tt.st, tt.q)
			if (err == nil) != tt.valid {
				t.Errorf("New error = %v, valid %v", err, tt.valid)
			}
		})
	}
}

func TestEnvelope(t *testing.T) {
	evt := &hub.Event{
		ID:        "evt_1",
		ProgramID: "prg_default",
		Type:      "ping",
		Data:      json.RawMessage(`{ "a": "<b>",  "n": 1 }`),
		CreatedAt: time.Date(2026, 11, 2, 11, 0, 0, 123, time.FixedZone("CET", 3600)),
	}
	want := `{"id":"evt_1","type":"ping","api_version":"2026-11-01","created_at":"2026-11-02T10:00:00Z","program_id":"prg_default","data":{"a":"<b>","n":1}}`
	for i := range 2 {
		got, err := outbound.Envelope(evt)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("call %d: Envelope =\n%s\nwant\n%s", i+1, got, want)
		}
	}
}
