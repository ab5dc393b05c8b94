package hub_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/metrics"
	"github.com/partnerhub/partnerhub/hub/store"
)

// stage ingests one event without processing it and returns its id.
func (f *fixture) stage(n hub.Normalized) string {
	f.t.Helper()
	b, _ := json.Marshal(n)
	return f.stageRaw(b)
}

func (f *fixture) stageRaw(body []byte) string {
	f.t.Helper()
	f.n++
	ev, _, err := f.svc.Ingest(context.Background(), f.src, hub.Receipt{DedupeKey: "evt_batch_" + string(rune('a'+f.n)), EventType: "test"}, body)
	if err != nil {
		f.t.Fatalf("ingest: %v", err)
	}
	return ev.ID
}

func (f *fixture) inbound(id string) *hub.InboundEvent {
	f.t.Helper()
	ev, err := f.st.GetInboundEvent(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return ev
}

func (f *fixture) conversionCount() int {
	f.t.Helper()
	cs, err := f.st.ListConversions(context.Background(), hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
	if err != nil {
		f.t.Fatal(err)
	}
	return len(cs)
}

// TestProcessBatchTogether: events applied in one transaction come out as
// they do one by one, in arrival order: a refund right behind its sale in
// the same batch counts against it, a second event of the same payment
// merges into its conversion, and every event ends processed with its
// results recorded.
func TestProcessBatchTogether(t *testing.T) {
	f := newFixture(t, 1500)
	ctx := context.Background()
	hints := hub.Hints{PartnerCode: "alice"}
	ids := []string{
		f.stage(sale([]string{"cs_a", "pi_a"}, 10000, 10000, hints)),
		f.stage(refund([]string{"pi_a"}, "re_a", 5000, hub.RefundSucceeded, t0.Add(time.Hour))),
		f.stage(sale([]string{"cs_b"}, 20000, 20000, hints)),
		f.stage(sale([]string{"pi_a", "ch_a"}, 10000, 10000, hub.Hints{})),
	}
	if err := f.svc.ProcessBatch(ctx, ids); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if ev := f.inbound(id); ev.Status != hub.InboundProcessed || ev.Attempts != 0 {
			t.Errorf("inbound %s: status %s attempts %d, want processed at the first try", id, ev.Status, ev.Attempts)
		}
	}
	if n := f.conversionCount(); n != 2 {
		t.Fatalf("%d conversions, want 2", n)
	}
	a, b := f.conv("cs_a"), f.conv("cs_b")
	if a.RefundedMinor != 5000 || len(a.Keys) != 3 {
		t.Errorf("conversion A refunded %d with keys %v, want 5000 and cs_a, pi_a, ch_a", a.RefundedMinor, a.Keys)
	}
	if c := f.commissionOf(a.ID); c == nil || c.NetMinor != 750 {
		t.Errorf("commission of A = %+v, want net 750 (15 %% of 100.00, half refunded)", c)
	}
	if c := f.commissionOf(b.ID); c == nil || c.NetMinor != 3000 {
		t.Errorf("commission of B = %+v, want net 3000", c)
	}
	got := f.eventTypes()
	want := map[string]int{hub.EventConversionCreated: 2, hub.EventCommissionCreated: 2, hub.EventConversionRefunded: 1, hub.EventCommissionReversed: 1}
	for typ, n := range want {
		if got[typ] != n {
			t.Errorf("%d %s events, want %d (all: %v)", got[typ], typ, n, got)
		}
	}
	res, err := f.st.InboundResults(ctx, ids[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ConversionIDs) != 1 || res.ConversionIDs[0] != a.ID || len(res.RefundIDs) != 1 {
		t.Errorf("results of the refund event = %+v, want conversion %s and its refund", res, a.ID)
	}

	// Running the batch again changes nothing.
	if err := f.svc.ProcessBatch(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if again := f.eventTypes(); len(again) != len(got) || again[hub.EventCommissionCreated] != 2 {
		t.Errorf("events after a second run: %v, want %v", again, got)
	}
}

// TestProcessBatchParkedRefund: a refund that arrives before its sale and
// is parked by an event of the same batch is joined when the sale comes
// later in that batch, after another sale has read the parked refunds.
func TestProcessBatchParkedRefund(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	hints := hub.Hints{PartnerCode: "alice"}
	ids := []string{
		f.stage(sale([]string{"cs_a"}, 10000, 10000, hints)),
		f.stage(refund([]string{"pi_b"}, "re_b", 5000, hub.RefundSucceeded, t0.Add(time.Hour))),
		f.stage(sale([]string{"cs_b", "pi_b"}, 30000, 30000, hints)),
		f.stage(sale([]string{"cs_c"}, 20000, 20000, hub.Hints{PartnerCode: "ALICE"})),
	}
	if err := f.svc.ProcessBatch(ctx, ids); err != nil {
		t.Fatal(err)
	}
	b := f.conv("pi_b")
	if b.RefundedMinor != 5000 {
		t.Errorf("sale B refunded %d, want the parked 5000 joined", b.RefundedMinor)
	}
	if c := f.commissionOf(b.ID); c == nil || c.NetMinor != 2500 {
		t.Errorf("commission of B = %+v, want net 2500 (10 %% of 300.00 less 50.00)", c)
	}
	for key, want := range map[string]int64{"cs_a": 1000, "cs_c": 2000} {
		if c := f.commissionOf(f.conv(key).ID); c == nil || c.NetMinor != want {
			t.Errorf("commission of %s = %+v, want net %d", key, c, want)
		}
	}
	parked, err := f.st.ListRefunds(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].ConversionID != b.ID {
		t.Errorf("refunds %+v, want one, joined to %s", parked, b.ID)
	}
}

// TestProcessBatchFallsBack: one event that cannot be applied does not
// hold back the others. A payment without keys ends failed, a link whose
// payment is unknown stays received with the attempt counted (and the
// batch reports it, for the job to be retried), a body that is not JSON
// ends failed; the sales around them are applied.
func TestProcessBatchFallsBack(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	hints := hub.Hints{PartnerCode: "alice"}
	sale1 := f.stage(sale([]string{"cs_1"}, 10000, 10000, hints))
	keyless := f.stage(hub.Normalized{Livemode: true, Payment: &hub.Payment{BaseMinor: 100, GrossMinor: 100, Currency: "USD", OccurredAt: t0}})
	waiting := f.stage(hub.Normalized{Livemode: true, Link: &hub.LinkFact{Keys: []string{"in_9", "pi_9"}}})
	garbage := f.stageRaw([]byte(`{"payment":`))
	sale2 := f.stage(sale([]string{"cs_2"}, 30000, 30000, hints))

	err := f.svc.ProcessBatch(ctx, []string{sale1, keyless, waiting, garbage, sale2})
	if err == nil || !strings.Contains(err.Error(), waiting) {
		t.Fatalf("ProcessBatch error = %v, want the waiting link %s reported", err, waiting)
	}
	for id, want := range map[string]string{sale1: hub.InboundProcessed, sale2: hub.InboundProcessed, keyless: hub.InboundFailed, garbage: hub.InboundFailed, waiting: hub.InboundReceived} {
		if ev := f.inbound(id); ev.Status != want {
			t.Errorf("inbound %s: status %s (%s), want %s", id, ev.Status, ev.LastError, want)
		}
	}
	if ev := f.inbound(waiting); ev.Attempts != 1 || !strings.Contains(ev.LastError, "waiting for the payment") {
		t.Errorf("waiting link: attempts %d, last error %q; want 1 and the reason", ev.Attempts, ev.LastError)
	}
	if ev := f.inbound(keyless); !strings.Contains(ev.LastError, "payment without keys") {
		t.Errorf("keyless payment failed with %q, want the reason", ev.LastError)
	}
	if c := f.commissionOf(f.conv("cs_1").ID); c == nil || c.NetMinor != 1000 {
		t.Errorf("commission of sale 1 = %+v, want 1000", c)
	}
	if c := f.commissionOf(f.conv("cs_2").ID); c == nil || c.NetMinor != 3000 {
		t.Errorf("commission of sale 2 = %+v, want 3000", c)
	}
	if n := f.conversionCount(); n != 2 {
		t.Errorf("%d conversions, want 2", n)
	}

	// The sale arrives; the retried batch links the waiting event to it.
	f.send(sale([]string{"pi_9"}, 5000, 5000, hints))
	if err := f.svc.ProcessBatch(ctx, []string{sale1, keyless, waiting, garbage, sale2}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if ev := f.inbound(waiting); ev.Status != hub.InboundProcessed {
		t.Errorf("waiting link after its sale: %s (%s), want processed", ev.Status, ev.LastError)
	}
	if keys := f.conv("pi_9").Keys; len(keys) != 2 {
		t.Errorf("keys of the linked conversion = %v, want pi_9 and in_9", keys)
	}
}

// TestProcessBatchConcurrentRuns: two workers running the same batch at
// once (a task and its retry, or the sweeper's copy) apply each event
// once.
func TestProcessBatchConcurrentRuns(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	var ids []string
	for _, k := range []string{"cs_1", "cs_2", "cs_3", "cs_4", "cs_5", "cs_6"} {
		ids = append(ids, f.stage(sale([]string{k}, 10000, 10000, hub.Hints{PartnerCode: "alice"})))
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.svc.ProcessBatch(ctx, ids)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := f.conversionCount(); n != 6 {
		t.Errorf("%d conversions, want 6", n)
	}
	if got := f.eventTypes(); got[hub.EventConversionCreated] != 6 || got[hub.EventCommissionCreated] != 6 {
		t.Errorf("events %v, want 6 conversion.created and 6 commission.created", got)
	}
}

// TestProcessBatchStatements: a batch of sales costs a few statements per
// sale and a few for the whole batch (one claim, lock, insert of all
// outbound events and deliveries, inbound update…), far below what one
// transaction per sale takes (about 17 each).
func TestProcessBatchStatements(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	f.endpoint()
	const n = 20
	var ids []string
	for i := range n {
		ids = append(ids, f.stage(sale([]string{"cs_" + strconv.Itoa(i)}, 10000, 10000, hub.Hints{PartnerCode: "alice"})))
	}
	counter := metrics.SQLStatements(f.st.(*store.DB).Dialect())
	before := testutil.ToFloat64(counter)
	if err := f.svc.ProcessBatch(ctx, ids); err != nil {
		t.Fatal(err)
	}
	stmts := testutil.ToFloat64(counter) - before
	t.Logf("%d sales with 2 outbound events and a delivery each: %.0f statements (%.1f per sale)", n, stmts, stmts/n)
	// PostgreSQL looks every key of the batch up in one statement (a new
	// sale's keys need no query of their own) and writes every conversion,
	// alias, commission and entry with the outbound events, in the
	// statement before COMMIT: a transaction's statements do not grow with
	// its sales. Both dialects read a partner code and the parked refunds
	// once per transaction.
	want := 15.0
	if f.st.(*store.DB).Dialect() == "sqlite" {
		want = 7 * n
	}
	if stmts > want {
		t.Errorf("%.0f statements for %d sales, want at most %.0f", stmts, n, want)
	}
	if got := f.eventTypes(); got[hub.EventCommissionCreated] != n {
		t.Errorf("events %v, want %d commission.created", got, n)
	}
	if len(f.q.deliveries) != 2*n {
		t.Errorf("%d deliveries queued, want %d", len(f.q.deliveries), 2*n)
	}

	// A sale alone, as at low rates: the program, source, partner code,
	// rules and endpoints come from the cache the batch filled, and on
	// PostgreSQL the outbound events, deliveries, result and final state
	// are written in one statement.
	one := f.stage(sale([]string{"cs_alone"}, 10000, 10000, hub.Hints{PartnerCode: "alice"}))
	before = testutil.ToFloat64(counter)
	if err := f.svc.ProcessBatch(ctx, []string{one}); err != nil {
		t.Fatal(err)
	}
	stmts = testutil.ToFloat64(counter) - before
	t.Logf("a sale alone: %.0f statements", stmts)
	alone := 8.0 // BEGIN, epoch, claim, lock, lookup, parked refunds, writes, COMMIT
	if f.st.(*store.DB).Dialect() == "sqlite" {
		alone = 14
	}
	if stmts > alone {
		t.Errorf("a sale alone took %.0f statements, want at most %.0f", stmts, alone)
	}
}

// TestProcessBatchRedaction: a customer's erasure request applied in the
// same transaction as their earlier events erases those events' bodies
// too (their tags are written before the redaction looks for them).
func TestProcessBatchRedaction(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	evs := redactionCase()
	saleID, otherID, unpaidID, redactID := f.stage(evs[0]), f.stage(evs[1]), f.stage(evs[2]), f.stage(evs[3])
	if err := f.svc.ProcessBatch(ctx, []string{saleID, otherID, unpaidID, redactID}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{saleID, unpaidID, redactID} {
		if ev := f.inbound(id); string(ev.Body) != `{"redacted":true}` {
			t.Errorf("inbound event %s body = %s, want it erased", id, ev.Body)
		}
	}
	if ev := f.inbound(otherID); string(ev.Body) == `{"redacted":true}` || ev.Status != hub.InboundProcessed {
		t.Errorf("another customer's event: status %s, body %s; want it processed and kept", ev.Status, ev.Body)
	}
	if ev := f.inbound(unpaidID); ev.Status != hub.InboundIgnored {
		t.Errorf("unpaid order event status %s, want ignored", ev.Status)
	}
}
