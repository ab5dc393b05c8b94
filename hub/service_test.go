package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

// fakeQueue records enqueued work; it can be made to fail.
type fakeQueue struct {
	mu         sync.Mutex
	process    []string
	deliveries []string
	down       bool
}

func (q *fakeQueue) EnqueueProcess(_ context.Context, id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.down {
		return errors.New("dial tcp 127.0.0.1:6379: connection refused")
	}
	q.process = append(q.process, id)
	return nil
}

func (q *fakeQueue) EnqueueDelivery(_ context.Context, id string, _ int, _ time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.down {
		return errors.New("dial tcp 127.0.0.1:6379: connection refused")
	}
	q.deliveries = append(q.deliveries, id)
	return nil
}

// jsonNormalizer reads the test's canonical facts straight from the body.
var jsonNormalizer = hub.NormalizerFunc(func(_ *hub.Source, ev *hub.InboundEvent) (*hub.Normalized, error) {
	var n hub.Normalized
	if err := json.Unmarshal(ev.Body, &n); err != nil {
		return nil, errors.Join(hub.ErrUnparsable, err)
	}
	return &n, nil
})

type fixture struct {
	t   *testing.T
	st  hub.Store
	q   *fakeQueue
	svc *hub.Service
	src *hub.Source
	n   int
}

func newFixture(t *testing.T, bps int64) *fixture {
	t.Helper()
	st := storetest.Open(t)
	ctx := context.Background()
	p, err := st.GetProgram(ctx, hub.DefaultProgramID)
	if err != nil {
		t.Fatal(err)
	}
	p.DefaultCommissionBPS = bps
	if err := st.UpdateProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := st.CreatePartner(ctx, &hub.Partner{ID: hub.NewID("ptn"), ProgramID: hub.DefaultProgramID, Name: "Alice", Code: "alice"}); err != nil {
		t.Fatal(err)
	}
	src := &hub.Source{ID: hub.NewID("src"), ProgramID: hub.DefaultProgramID, Provider: "test", Name: "test", Secret: "s3cret"}
	if err := st.CreateSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	q := &fakeQueue{}
	svc, err := hub.NewService(hub.ServiceConfig{Store: st, Queue: q, Normalizer: func(string) (hub.Normalizer, bool) { return jsonNormalizer, true }})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, st: st, q: q, svc: svc, src: src}
}

// endpoint creates an enabled endpoint that receives every event.
func (f *fixture) endpoint() {
	f.t.Helper()
	ep := &hub.Endpoint{ID: hub.NewID("ep"), ProgramID: hub.DefaultProgramID, URL: "https://example.com/h",
		Secret: "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=", Enabled: true}
	if err := f.st.CreateEndpoint(context.Background(), ep); err != nil {
		f.t.Fatal(err)
	}
}

// send ingests and processes one normalized event, returning the inbound id.
func (f *fixture) send(n hub.Normalized) string {
	f.t.Helper()
	f.n++
	b, _ := json.Marshal(n)
	ev, _, err := f.svc.Ingest(context.Background(), f.src, hub.Receipt{DedupeKey: "evt_" + string(rune('a'+f.n)), EventType: "test"}, b)
	if err != nil {
		f.t.Fatalf("ingest: %v", err)
	}
	if err := f.svc.Process(context.Background(), ev.ID); err != nil {
		f.t.Fatalf("process: %v", err)
	}
	return ev.ID
}

func (f *fixture) commission() *hub.Commission {
	f.t.Helper()
	cs, err := f.st.ListCommissions(context.Background(), hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
	if err != nil {
		f.t.Fatal(err)
	}
	if len(cs) != 1 {
		f.t.Fatalf("got %d commissions, want 1", len(cs))
	}
	return cs[0]
}

func (f *fixture) eventTypes() map[string]int {
	f.t.Helper()
	es, err := f.st.ListEvents(context.Background(), hub.DefaultProgramID, hub.Page{Limit: 200})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range es {
		out[e.Type]++
	}
	return out
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func sale(keys []string, base, gross int64, hints hub.Hints) hub.Normalized {
	return hub.Normalized{Livemode: true, Payment: &hub.Payment{
		Keys: keys, Kind: hub.KindNew, BaseMinor: base, GrossMinor: gross, TaxMinor: gross - base,
		Currency: "USD", Hints: hints, OccurredAt: t0,
	}}
}

func cumulative(keys []string, charge string, amount int64, at time.Time) hub.Normalized {
	return hub.Normalized{Livemode: true, Refund: &hub.RefundFact{
		Keys: keys, ExternalID: charge, Cumulative: true, AmountMinor: amount, Currency: "USD", Status: hub.RefundSucceeded, OccurredAt: at,
	}}
}

func refund(keys []string, id string, amount int64, status string, at time.Time) hub.Normalized {
	return hub.Normalized{Livemode: true, Refund: &hub.RefundFact{
		Keys: keys, ExternalID: id, AmountMinor: amount, Currency: "USD", Status: status, OccurredAt: at,
	}}
}

func knownBase(n hub.Normalized, base int64) hub.Normalized {
	n.Refund.BaseMinor = &base
	return n
}

func dispute(keys []string, status string, at time.Time) hub.Normalized {
	return hub.Normalized{Livemode: true, Dispute: &hub.DisputeFact{
		Keys: keys, ExternalID: "dp_1", Status: status, AmountMinor: 11000, Currency: "USD", OccurredAt: at,
	}}
}

func TestLedger(t *testing.T) {
	pay := []string{"cs_1", "pi_1"}
	chg := []string{"pi_1", "ch_1"}
	alice := hub.Hints{PartnerCode: "ALICE"}
	cases := []struct {
		name    string
		bps     int64
		events  []hub.Normalized
		net     int64
		entries int
	}{
		{"earned is rate times base, half up", 1250, []hub.Normalized{sale(pay, 10004, 11004, alice)}, 1251, 1},
		{"replayed sale books nothing twice", 1500, []hub.Normalized{sale(pay, 10000, 11000, alice), sale(pay, 10000, 11000, alice)}, 1500, 1},
		{"partial refund is prorated on the base", 1500, []hub.Normalized{
			sale(pay, 10000, 11000, alice), cumulative(chg, "ch_1", 5500, t0.Add(time.Hour)),
		}, 750, 2},
		{"cumulative and individual reports of one refund converge", 1500, []hub.Normalized{
			sale(pay, 10000, 11000, alice),
			refund(chg, "re_1", 5500, hub.RefundSucceeded, t0.Add(time.Hour)),
			cumulative(chg, "ch_1", 5500, t0.Add(time.Hour)),
			refund(chg, "re_2", 2200, hub.RefundSucceeded, t0.Add(2*time.Hour)),
			cumulative(chg, "ch_1", 7700, t0.Add(2*time.Hour)),
		}, 450, 3},
		{"full refund nets exactly zero", 1333, []hub.Normalized{
			sale(pay, 9999, 10999, alice),
			refund(chg, "re_1", 3333, hub.RefundSucceeded, t0.Add(time.Hour)),
			refund(chg, "re_2", 7666, hub.RefundSucceeded, t0.Add(2*time.Hour)),
		}, 0, 3},
		{"failed refund restores", 1500, []hub.Normalized{
			sale(pay, 10000, 11000, alice),
			refund(chg, "re_1", 11000, hub.RefundPending, t0.Add(time.Hour)),
			refund(chg, "re_1", 11000, hub.RefundFailed, t0.Add(2*time.Hour)),
		}, 1500, 3},
		{"refund failing after the running total was reported restores", 1500, []hub.Normalized{
			sale(pay, 10000, 11000, alice),
			refund(chg, "re_1", 5500, hub.RefundPending, t0.Add(time.Hour)),
			cumulative(chg, "ch_1", 5500, t0.Add(time.Hour)),
			refund(chg, "re_1", 5500, hub.RefundFailed, t0.Add(2*time.Hour)),
		}, 1500, 3},
		{"running totals tied in time never go down", 1500, []hub.Normalized{
			sale(pay, 10000, 11000, alice),
			cumulative(chg, "ch_1", 11000, t0.Add(time.Hour)),
			cumulative(chg, "ch_1", 4000, t0.Add(time.Hour)),
		}, 0, 2},
		{"a link joins a refund naming the payment intent to its invoice", 1500, []hub.Normalized{
			sale([]string{"in_1"}, 10000, 11000, alice),
			cumulative(chg, "ch_1", 11000, t0.Add(time.Hour)),
			{Livemode: true, Link: &hub.LinkFact{Keys: []string{"in_1", "pi_1"}}},
		}, 0, 2},
		{"a refund with a known base and one without are each counted their way", 1000, []hub.Normalized{
			sale(pay, 10000, 12000, alice),
			knownBase(refund(chg, "vat", 2000, hub.RefundSucceeded, t0.Add(time.Hour)), 0),
			refund(chg, "re_2", 6000, hub.RefundSucceeded, t0.Add(2*time.Hour)),
		}, 500, 2},
		{"stale refund status is ignored", 1500, []hub.Normalized{
			sale(pay, 10000, 11000, alice),
			refund(chg, "re_1", 11000, hub.RefundFailed, t0.Add(2*time.Hour)),
			refund(chg, "re_1", 11000, hub.RefundPending, t0.Add(time.Hour)),
		}, 1500, 1},
		{"dispute withdrawn then won", 1500, []hub.Normalized{
			sale(pay, 10000, 11000, alice),
			dispute(chg, hub.DisputeWithdrawn, t0.Add(time.Hour)),
			dispute(chg, hub.DisputeReinstated, t0.Add(2*time.Hour)),
		}, 1500, 3},
		{"dispute lost stays reversed", 1500, []hub.Normalized{
			sale(pay, 10000, 11000, alice),
			dispute(chg, hub.DisputeWithdrawn, t0.Add(time.Hour)),
			dispute(chg, hub.DisputeLost, t0.Add(2*time.Hour)),
		}, 0, 2},
		{"inquiry moves no money", 1500, []hub.Normalized{
			sale(pay, 10000, 11000, alice),
			dispute(chg, hub.DisputeInquiry, t0.Add(time.Hour)),
		}, 1500, 1},
		{"refund before sale is joined", 1500, []hub.Normalized{
			cumulative(chg, "ch_1", 11000, t0.Add(time.Hour)),
			sale(pay, 10000, 11000, alice),
		}, 0, 2},
		{"hints of a later event attribute an earlier payment", 1000, []hub.Normalized{
			sale([]string{"in_1", "pi_1"}, 10000, 10000, hub.Hints{}),
			sale([]string{"cs_1", "in_1"}, 10000, 10000, alice),
		}, 1000, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.bps)
			for _, e := range c.events {
				f.send(e)
			}
			com := f.commission()
			if com.NetMinor != c.net || len(com.Entries) != c.entries {
				t.Fatalf("net %d with %d entries %+v, want net %d with %d entries", com.NetMinor, len(com.Entries), com.Entries, c.net, c.entries)
			}
			cs, _ := f.st.ListConversions(context.Background(), hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
			if len(cs) != 1 {
				t.Fatalf("got %d conversions, want 1", len(cs))
			}
		})
	}
}

func TestTestModeCommissionIsFlagged(t *testing.T) {
	f := newFixture(t, 1000)
	n := sale([]string{"cs_t"}, 5000, 5000, hub.Hints{PartnerCode: "alice"})
	n.Livemode = false
	f.send(n)
	if c := f.commission(); !c.Test {
		t.Fatalf("commission from a test-mode event is not flagged test: %+v", c)
	}
}

func TestOutboxEvents(t *testing.T) {
	f := newFixture(t, 1000)
	f.endpoint()
	f.send(sale([]string{"cs_1", "pi_1"}, 10000, 10000, hub.Hints{PartnerCode: "alice"}))
	f.send(cumulative([]string{"pi_1"}, "ch_1", 1000, t0.Add(time.Hour)))
	got := f.eventTypes()
	want := map[string]int{"conversion.created": 1, "commission.created": 1, "conversion.refunded": 1, "commission.reversed": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s events = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if len(f.q.deliveries) != 4 {
		t.Errorf("enqueued %d deliveries, want 4", len(f.q.deliveries))
	}
}

// TestParkedRefundIsAnnounced: a refund that waited for its sale is
// announced as conversion.refunded when it joins.
func TestParkedRefundIsAnnounced(t *testing.T) {
	f := newFixture(t, 1000)
	f.send(cumulative([]string{"pi_1", "ch_1"}, "ch_1", 4000, t0.Add(time.Hour)))
	f.send(sale([]string{"cs_1", "pi_1"}, 10000, 10000, hub.Hints{PartnerCode: "alice"}))
	got := f.eventTypes()
	for _, typ := range []string{"conversion.created", "commission.created", "conversion.refunded", "commission.reversed"} {
		if got[typ] != 1 {
			t.Errorf("%s events = %d, want 1 (all: %v)", typ, got[typ], got)
		}
	}
}

func TestQueueDownStillAcknowledges(t *testing.T) {
	f := newFixture(t, 1000)
	f.q.down = true
	b, _ := json.Marshal(sale([]string{"cs_q"}, 100, 100, hub.Hints{}))
	ev, dup, err := f.svc.Ingest(context.Background(), f.src, hub.Receipt{DedupeKey: "evt_q"}, b)
	if err != nil || dup {
		t.Fatalf("ingest with the queue down: %v, dup %v; want stored", err, dup)
	}
	f.q.down = false
	// Nothing is queued; the sweeper finds the row once it is past grace.
	svc, _ := hub.NewService(hub.ServiceConfig{Store: f.st, Queue: f.q, SweepGrace: -time.Second,
		Normalizer: func(string) (hub.Normalizer, bool) { return jsonNormalizer, true }})
	if err := svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.q.process) != 1 || f.q.process[0] != ev.ID {
		t.Fatalf("sweep enqueued %v, want [%s]", f.q.process, ev.ID)
	}
}

func TestUnparsableEventIsKeptAsFailed(t *testing.T) {
	f := newFixture(t, 1000)
	ev, _, err := f.svc.Ingest(context.Background(), f.src, hub.Receipt{DedupeKey: "evt_bad"}, []byte("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Process(context.Background(), ev.ID); err != nil {
		t.Fatalf("process returned %v; an unparsable payload is not retried", err)
	}
	got, err := f.st.GetInboundEvent(context.Background(), ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != hub.InboundFailed || got.LastError == "" || string(got.Body) != "{not json" {
		t.Fatalf("event = %+v, want failed with an error and its body kept", got)
	}
}

// redactionCase is a sale and an unpaid order of customer cust_9, a sale
// of another customer, and cust_9's erasure request, in that order.
func redactionCase() []hub.Normalized {
	n := sale([]string{"order_1"}, 10000, 10000, hub.Hints{PartnerCode: "alice"})
	n.Payment.Customer = hub.Customer{ProviderCustomerID: "cust_9", EmailHash: "abc"}
	n.Subject, n.CustomerRef = "order_1", "cust_9"
	other := sale([]string{"order_2"}, 500, 500, hub.Hints{})
	other.Subject, other.CustomerRef = "order_2", "cust_other"
	return []hub.Normalized{n, other,
		{Ignored: "order not paid", Subject: "order_3", CustomerRef: "cust_9"},
		{Livemode: true, Redact: &hub.RedactFact{CustomerRef: "cust_9", Subjects: []string{"order_1"}}},
	}
}

// TestRedactCustomer: a privacy erasure request removes the customer's
// identifiers and the raw bodies that carried their data, and keeps every
// amount of the ledger.
func TestRedactCustomer(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	evs := redactionCase()
	saleID, otherID, unpaidID, redactID := f.send(evs[0]), f.send(evs[1]), f.send(evs[2]), f.send(evs[3])

	for _, id := range []string{saleID, unpaidID, redactID} {
		ev, err := f.st.GetInboundEvent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if string(ev.Body) != `{"redacted":true}` {
			t.Errorf("inbound event %s body = %s, want it erased", id, ev.Body)
		}
	}
	if ev, _ := f.st.GetInboundEvent(ctx, otherID); string(ev.Body) == `{"redacted":true}` {
		t.Errorf("another customer's event was erased")
	}
	cs, _ := f.st.ListConversions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
	for _, c := range cs {
		if c.Keys[0] == "order_1" && (c.Customer != hub.Customer{} || c.BaseMinor != 10000) {
			t.Errorf("redacted conversion = %+v, want no customer and amounts kept", c)
		}
	}
	if com := f.commission(); com.NetMinor != 1000 {
		t.Errorf("commission net = %d after erasure, want 1000", com.NetMinor)
	}
}

// TestMergedPaymentKeepsKeysAndCustomer: a second event of one payment adds
// its aliases once and fills the customer the first event lacked, which
// lifetime attribution of the customer's next payment relies on.
func TestMergedPaymentKeepsKeysAndCustomer(t *testing.T) {
	f := newFixture(t, 1000)
	f.send(sale([]string{"in_1", "pi_1"}, 10000, 10000, hub.Hints{}))
	second := sale([]string{"cs_1", "in_1"}, 10000, 10000, hub.Hints{PartnerCode: "alice"})
	second.Payment.Customer.ProviderCustomerID = "cus_1"
	f.send(second)
	next := sale([]string{"in_2"}, 2000, 2000, hub.Hints{})
	next.Payment.Customer.ProviderCustomerID = "cus_1"
	f.send(next)
	cs, err := f.st.ListConversions(context.Background(), hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("got %d conversions, want 2", len(cs))
	}
	first, later := cs[1], cs[0]
	if len(first.Keys) != 3 || first.Customer.ProviderCustomerID != "cus_1" {
		t.Errorf("merged conversion keys %v, customer %+v; want 3 keys and cus_1", first.Keys, first.Customer)
	}
	if later.PartnerID == "" || later.AttributedBy != hub.ReasonCustomer {
		t.Errorf("the customer's next payment is attributed %q by %q, want the partner by customer", later.PartnerID, later.AttributedBy)
	}
}

// TestLinkBeforePaymentWaits: a link naming no known payment is retried,
// not dropped, and applies once the payment is known.
func TestLinkBeforePaymentWaits(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	b, _ := json.Marshal(hub.Normalized{Livemode: true, Link: &hub.LinkFact{Keys: []string{"in_9", "pi_9"}}})
	ev, _, err := f.svc.Ingest(ctx, f.src, hub.Receipt{DedupeKey: "evt_link"}, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Process(ctx, ev.ID); !errors.Is(err, hub.ErrWaitingForPayment) {
		t.Fatalf("process before the payment: %v, want ErrWaitingForPayment", err)
	}
	f.send(sale([]string{"in_9"}, 1000, 1000, hub.Hints{}))
	if err := f.svc.Process(ctx, ev.ID); err != nil {
		t.Fatalf("process after the payment: %v", err)
	}
	got, _ := f.st.GetInboundEvent(ctx, ev.ID)
	if got.Status != hub.InboundProcessed {
		t.Fatalf("link event status %s, want processed", got.Status)
	}
	cs, _ := f.st.ListConversions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 5})
	if len(cs) != 1 || len(cs[0].Keys) != 2 {
		t.Fatalf("conversions %+v, want one named by in_9 and pi_9", cs)
	}
}

// TestSnapshots: order states (WooCommerce) are applied by comparing with
// what is stored: new refund entries count, a refund that disappears is
// undone, and a state older than the one applied changes nothing.
func TestSnapshots(t *testing.T) {
	f := newFixture(t, 1000)
	keys := []string{"order_7"}
	state := func(at time.Duration, refunds ...hub.RefundFact) hub.Normalized {
		n := sale(keys, 10000, 11000, hub.Hints{PartnerCode: "alice"})
		for i := range refunds {
			refunds[i].Keys, refunds[i].Currency, refunds[i].Status, refunds[i].OccurredAt = keys, "USD", hub.RefundSucceeded, t0.Add(at)
		}
		n.Snapshot = &hub.Snapshot{Keys: keys, At: t0.Add(at), Refunds: refunds}
		return n
	}
	r1 := hub.RefundFact{ExternalID: "r1", AmountMinor: 2200}
	r2 := hub.RefundFact{ExternalID: "r2", AmountMinor: 1100}
	steps := []struct {
		name string
		n    hub.Normalized
		net  int64
	}{
		{"paid", state(time.Hour), 1000},
		{"first refund", state(2*time.Hour, r1), 800},
		{"late delivery of an older state", state(90 * time.Minute), 800},
		{"second refund", state(3*time.Hour, r1, r2), 700},
		{"two more refunds in one coalesced state", state(3*time.Hour+time.Minute, r1, r2,
			hub.RefundFact{ExternalID: "r3", AmountMinor: 1100}, hub.RefundFact{ExternalID: "r4", AmountMinor: 2200}), 400},
		{"first refund deleted", state(4*time.Hour, r2, hub.RefundFact{ExternalID: "r3", AmountMinor: 1100}, hub.RefundFact{ExternalID: "r4", AmountMinor: 2200}), 600},
		{"replay of the newest state", state(4*time.Hour, r2, hub.RefundFact{ExternalID: "r3", AmountMinor: 1100}, hub.RefundFact{ExternalID: "r4", AmountMinor: 2200}), 600},
	}
	for _, s := range steps {
		id := f.send(s.n)
		if got := f.commission().NetMinor; got != s.net {
			t.Fatalf("after %s: net %d, want %d", s.name, got, s.net)
		}
		if s.name == "late delivery of an older state" {
			ev, _ := f.st.GetInboundEvent(context.Background(), id)
			if ev.Status != hub.InboundIgnored || ev.LastError == "" {
				t.Errorf("older state recorded as %s %q, want ignored with the reason", ev.Status, ev.LastError)
			}
		}
	}
}

type fakeReconciler struct {
	res *hub.Reconciliation
	err error
	got string
}

func (r *fakeReconciler) Reconcile(_ context.Context, _ *hub.Source, cursor string, _ time.Time) (*hub.Reconciliation, error) {
	r.got = cursor
	return r.res, r.err
}

// TestReconcile: objects a poll finds are ingested like webhooks (a state
// already received is a duplicate), the cursor advances, and a broken
// source is reported on the source.
func TestReconcile(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	src := &hub.Source{ProgramID: hub.DefaultProgramID, Provider: "test", Name: "shop", Secret: "s", Credentials: map[string]string{"key": "ck_1"}}
	if err := f.st.CreateSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(sale([]string{"order_1"}, 100, 100, hub.Hints{}))
	if _, _, err := f.svc.Ingest(ctx, src, hub.Receipt{DedupeKey: "h1"}, b); err != nil {
		t.Fatal(err)
	}
	rec := &fakeReconciler{res: &hub.Reconciliation{Cursor: "2026-11-01T00:00:00Z", Health: "webhook 4 is disabled", Events: []hub.ReconciledEvent{
		{Receipt: hub.Receipt{DedupeKey: "h1"}, Body: b},
		{Receipt: hub.Receipt{DedupeKey: "h2"}, Body: []byte(`{}`)},
	}}}
	svc, err := hub.NewService(hub.ServiceConfig{Store: f.st, Queue: f.q,
		Normalizer: func(string) (hub.Normalizer, bool) { return jsonNormalizer, true },
		Reconciler: func(p string) (hub.Reconciler, bool) { return rec, p == "test" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := f.st.GetSource(ctx, src.ID)
	if got.Cursor != "2026-11-01T00:00:00Z" || got.Health != "webhook 4 is disabled" || got.Credentials["key"] != "ck_1" {
		t.Fatalf("source after reconcile = %+v", got)
	}
	evs, _ := f.st.ListInboundEvents(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
	n := 0
	for _, e := range evs {
		if e.SourceID == src.ID {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d inbound events for the source, want 2 (one new, one duplicate)", n)
	}
	rec.res, rec.err = nil, errors.New("401 Unauthorized")
	if err := svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = f.st.GetSource(ctx, src.ID)
	if rec.got != "2026-11-01T00:00:00Z" || got.Cursor != "2026-11-01T00:00:00Z" || !strings.Contains(got.Health, "401") {
		t.Fatalf("after a failed poll: cursor passed %q, source %+v", rec.got, got)
	}
}

// TestRefundInAnotherCurrency: a refund that cannot be in the conversion's
// terms is refused visibly instead of being subtracted as if it were.
func TestRefundInAnotherCurrency(t *testing.T) {
	f := newFixture(t, 1000)
	f.send(sale([]string{"o_1"}, 10000, 10000, hub.Hints{PartnerCode: "alice"}))
	r := refund([]string{"o_1"}, "r_1", 5000, hub.RefundSucceeded, t0.Add(time.Hour))
	r.Refund.Currency = "EUR"
	id := f.send(r)
	ev, _ := f.st.GetInboundEvent(context.Background(), id)
	if ev.Status != hub.InboundFailed || !strings.Contains(ev.LastError, "EUR") {
		t.Fatalf("refund in EUR against a USD conversion: %s %q, want failed naming the currency", ev.Status, ev.LastError)
	}
	if c := f.commission(); c.NetMinor != 1000 {
		t.Fatalf("net %d, want 1000 untouched", c.NetMinor)
	}
}

// TestFirstAttemptsTakeNewDeliveries: once a processing transaction has
// committed, its deliveries go to FirstAttempts; those it does not take
// are queued, and every delivery is either taken or queued.
func TestFirstAttemptsTakeNewDeliveries(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	for range 2 {
		f.endpoint()
	}
	var handed [][]string
	var stored []string
	var mismatch []string
	svc, err := hub.NewService(hub.ServiceConfig{Store: f.st, Queue: f.q,
		Normalizer: func(string) (hub.Normalizer, bool) { return jsonNormalizer, true },
		FirstAttempts: func(ds []*hub.Delivery, es []*hub.Event) int {
			var ids []string
			for i, d := range ds {
				ids = append(ids, d.ID)
				// Handed over after the commit, as stored: another
				// connection reads them.
				sd, se, _, err := f.st.DeliveryTarget(ctx, d.ID)
				if err != nil {
					t.Error(err)
					continue
				}
				if diff := cmp.Diff(sd, d, cmpopts.EquateApproxTime(0)); diff != "" {
					mismatch = append(mismatch, "delivery "+d.ID+" (-stored +handed):\n"+diff)
				}
				if diff := cmp.Diff(se, es[i], cmpopts.EquateApproxTime(0)); diff != "" {
					mismatch = append(mismatch, "event of "+d.ID+" (-stored +handed):\n"+diff)
				}
			}
			handed = append(handed, ids)
			ls, err := f.st.ListDeliveries(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
			if err != nil {
				t.Error(err)
			}
			for _, d := range ls {
				stored = append(stored, d.ID)
			}
			return min(3, len(ds))
		}})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	f.send(sale([]string{"cs_1"}, 10000, 10000, hub.Hints{PartnerCode: "alice"}))
	// Two events (conversion.created, commission.created) to two endpoints.
	if len(handed) != 1 || len(handed[0]) != 4 {
		t.Fatalf("FirstAttempts given %v, want the 4 new deliveries once", handed)
	}
	for _, m := range mismatch {
		t.Error(m)
	}
	if len(f.q.deliveries) != 1 || f.q.deliveries[0] != handed[0][3] {
		t.Errorf("queued %v, want only the one not taken, %s", f.q.deliveries, handed[0][3])
	}
	slices.Sort(stored)
	got := slices.Sorted(slices.Values(handed[0]))
	if !slices.Equal(stored, got) {
		t.Errorf("handed %v, stored %v: want the committed deliveries", got, stored)
	}
}

// TestProcessInline: a process that runs the worker applies the events it
// stores without queueing them; one that cannot be applied yet is queued
// for the queue to retry, and after Close every stored event is queued.
func TestProcessInline(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	svc, err := hub.NewService(hub.ServiceConfig{Store: f.st, Queue: f.q, ProcessInline: true,
		Normalizer: func(string) (hub.Normalizer, bool) { return jsonNormalizer, true }})
	if err != nil {
		t.Fatal(err)
	}
	ingest := func(key string, n hub.Normalized) *hub.InboundEvent {
		t.Helper()
		b, _ := json.Marshal(n)
		ev, _, err := svc.Ingest(ctx, f.src, hub.Receipt{DedupeKey: key}, b)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	status := func(id string) string {
		t.Helper()
		ev, err := f.st.GetInboundEvent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return ev.Status
	}
	waitStatus := func(id, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for status(id) != want {
			if time.Now().After(deadline) {
				t.Fatalf("event %s is %s, want %s", id, status(id), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	sale1 := ingest("evt_sale", sale([]string{"cs_1"}, 10000, 10000, hub.Hints{PartnerCode: "alice"}))
	waitStatus(sale1.ID, hub.InboundProcessed)
	if c := f.conv("cs_1"); c.GrossMinor != 10000 {
		t.Errorf("conversion gross %d, want 10000", c.GrossMinor)
	}

	link := ingest("evt_link", hub.Normalized{Livemode: true, Link: &hub.LinkFact{Keys: []string{"in_9", "pi_9"}}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.q.mu.Lock()
		queued := slices.Clone(f.q.process)
		f.q.mu.Unlock()
		if slices.Equal(queued, []string{link.ID}) {
			break
		}
		if len(queued) > 0 || time.Now().After(deadline) {
			t.Fatalf("queued %v, want only the link event waiting for its payment, %s", queued, link.ID)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := status(link.ID); got != hub.InboundReceived {
		t.Errorf("link event %s, want received (waiting for its payment)", got)
	}
	// The provider sends it again: tried before, it is left to the
	// queue's retries rather than tried inline once more.
	before, _ := f.st.GetInboundEvent(ctx, link.ID)
	ingest("evt_link", hub.Normalized{Livemode: true, Link: &hub.LinkFact{Keys: []string{"in_9", "pi_9"}}})
	after, _ := f.st.GetInboundEvent(ctx, link.ID)
	if before.Attempts == 0 || after.Attempts != before.Attempts {
		t.Errorf("attempts %d after the repeat, %d before; want unchanged and > 0", after.Attempts, before.Attempts)
	}

	svc.Close()
	late := ingest("evt_late", sale([]string{"cs_2"}, 500, 500, hub.Hints{}))
	f.q.mu.Lock()
	queued := slices.Clone(f.q.process)
	f.q.mu.Unlock()
	if want := []string{link.ID, link.ID, late.ID}; !slices.Equal(queued, want) {
		t.Errorf("queued %v, want %v", queued, want)
	}
	if got := status(late.ID); got != hub.InboundReceived {
		t.Errorf("event stored after Close is %s, want received (queued)", got)
	}
}

// TestProcessInlineLimits: at most 32 chunks are applied inline at once
// (the 33rd group is queued), and Close waits for those under way.
func TestProcessInlineLimits(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	f.endpoint()
	// Applying holds its chunk's slot until the gate opens: the hand-over
	// of its deliveries, after the commit, waits for it.
	gate := make(chan struct{})
	svc, err := hub.NewService(hub.ServiceConfig{Store: f.st, Queue: f.q, ProcessInline: true,
		Normalizer:    func(string) (hub.Normalizer, bool) { return jsonNormalizer, true },
		FirstAttempts: func([]*hub.Delivery, []*hub.Event) int { <-gate; return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 33 {
		b, _ := json.Marshal(sale([]string{fmt.Sprintf("cs_%d", i)}, 100, 100, hub.Hints{}))
		ev, _, err := svc.Ingest(ctx, f.src, hub.Receipt{DedupeKey: fmt.Sprintf("evt_%d", i)}, b)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	f.q.mu.Lock()
	queued := slices.Clone(f.q.process)
	f.q.mu.Unlock()
	if !slices.Equal(queued, ids[32:]) {
		t.Fatalf("queued %v with 32 groups under way, want only the 33rd, %s", queued, ids[32])
	}

	closed := make(chan struct{})
	go func() { svc.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while events were being applied")
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	<-closed
	f.q.mu.Lock()
	queued = slices.Clone(f.q.process)
	f.q.mu.Unlock()
	for _, id := range ids[:32] {
		ev, err := f.st.GetInboundEvent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Status != hub.InboundProcessed && !slices.Contains(queued, id) {
			t.Errorf("event %s is %s and not queued after Close", id, ev.Status)
		}
	}
}
