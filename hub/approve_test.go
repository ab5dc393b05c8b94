package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

// ledgerStart is when the sales of the ledger fixtures occur.
var ledgerStart = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// ledgerQueue records enqueued deliveries.
type ledgerQueue struct {
	mu         sync.Mutex
	deliveries []string
}

func (q *ledgerQueue) EnqueueProcess(context.Context, string) error { return nil }

func (q *ledgerQueue) EnqueueDelivery(_ context.Context, id string, _ int, _ time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deliveries = append(q.deliveries, id)
	return nil
}

// ledgerFixture runs canonical facts through a real Service and store,
// on a clock the test moves.
type ledgerFixture struct {
	t   *testing.T
	ctx context.Context
	st  *store.DB
	q   *ledgerQueue
	svc *hub.Service
	src *hub.Source
	now time.Time
	n   int
}

// newLedgerFixture opens a store whose program pays 10 % and holds
// commissions 30 days, with an endpoint receiving every event.
func newLedgerFixture(t *testing.T) *ledgerFixture {
	t.Helper()
	f := &ledgerFixture{t: t, ctx: context.Background(), st: storetest.Open(t), q: &ledgerQueue{}, now: ledgerStart}
	p, err := f.st.GetProgram(f.ctx, hub.DefaultProgramID)
	if err != nil {
		t.Fatal(err)
	}
	p.DefaultCommissionBPS, p.HoldDays = 1000, 30
	if err := f.st.UpdateProgram(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	f.src = &hub.Source{ProgramID: hub.DefaultProgramID, Provider: "test", Name: "test", Secret: "s3cret"}
	if err := f.st.CreateSource(f.ctx, f.src); err != nil {
		t.Fatal(err)
	}
	ep := &hub.Endpoint{ProgramID: hub.DefaultProgramID, URL: "https://example.com/hook", Secret: "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=", Enabled: true}
	if err := f.st.CreateEndpoint(f.ctx, ep); err != nil {
		t.Fatal(err)
	}
	norm := hub.NormalizerFunc(func(_ *hub.Source, ev *hub.InboundEvent) (*hub.Normalized, error) {
		var n hub.Normalized
		if err := json.Unmarshal(ev.Body, &n); err != nil {
			return nil, errors.Join(hub.ErrUnparsable, err)
		}
		return &n, nil
	})
	f.svc, err = hub.NewService(hub.ServiceConfig{Store: f.st, Queue: f.q, Now: func() time.Time { return f.now },
		Normalizer: func(string) (hub.Normalizer, bool) { return norm, true }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *ledgerFixture) setMinimums(m map[string]int64) {
	f.t.Helper()
	p, err := f.st.GetProgram(f.ctx, hub.DefaultProgramID)
	if err != nil {
		f.t.Fatal(err)
	}
	p.MinPayoutMinor = m
	if err := f.st.UpdateProgram(f.ctx, p); err != nil {
		f.t.Fatal(err)
	}
}

func (f *ledgerFixture) partner(code, name, email string) *hub.Partner {
	f.t.Helper()
	p := &hub.Partner{ProgramID: hub.DefaultProgramID, Name: name, Email: email, Code: code}
	if err := f.st.CreatePartner(f.ctx, p); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// send ingests and processes one fact.
func (f *ledgerFixture) send(n hub.Normalized) {
	f.t.Helper()
	f.n++
	b, err := json.Marshal(n)
	if err != nil {
		f.t.Fatal(err)
	}
	ev, _, err := f.svc.Ingest(f.ctx, f.src, hub.Receipt{DedupeKey: fmt.Sprintf("ledger_%d", f.n), EventType: "test"}, b)
	if err != nil {
		f.t.Fatalf("ingest: %v", err)
	}
	if err := f.svc.Process(f.ctx, ev.ID); err != nil {
		f.t.Fatalf("process: %v", err)
	}
	got, err := f.st.GetInboundEvent(f.ctx, ev.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	if got.Status == hub.InboundFailed {
		f.t.Fatalf("event %s failed: %s", b, got.LastError)
	}
}

// sale books a live sale of base (gross = base) credited by code.
func (f *ledgerFixture) sale(key, currency string, base int64, code string) {
	f.t.Helper()
	f.send(hub.Normalized{Livemode: true, Payment: &hub.Payment{
		Keys: []string{key}, Kind: hub.KindNew, BaseMinor: base, GrossMinor: base, Currency: currency,
		Hints: hub.Hints{PartnerCode: code}, OccurredAt: f.now,
	}})
}

// refund books a refund of amount on the sale named key.
func (f *ledgerFixture) refund(key, currency, id string, amount int64) {
	f.t.Helper()
	f.send(hub.Normalized{Livemode: true, Refund: &hub.RefundFact{
		Keys: []string{key}, ExternalID: id, AmountMinor: amount, Currency: currency,
		Status: hub.RefundSucceeded, OccurredAt: f.now,
	}})
}

func (f *ledgerFixture) approve() {
	f.t.Helper()
	if err := f.svc.Approve(f.ctx); err != nil {
		f.t.Fatalf("approve: %v", err)
	}
}

// commissions returns the commissions by conversion key.
func (f *ledgerFixture) commissions() map[string]*hub.Commission {
	f.t.Helper()
	cs, err := f.st.ListCommissions(f.ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
	if err != nil {
		f.t.Fatal(err)
	}
	convs, err := f.st.ListConversions(f.ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
	if err != nil {
		f.t.Fatal(err)
	}
	keyOf := map[string]string{}
	for _, c := range convs {
		keyOf[c.ID] = c.Keys[0]
	}
	out := map[string]*hub.Commission{}
	for _, c := range cs {
		out[keyOf[c.ConversionID]] = c
	}
	return out
}

func (f *ledgerFixture) commission(key string) *hub.Commission {
	f.t.Helper()
	c := f.commissions()[key]
	if c == nil {
		f.t.Fatalf("no commission on %s", key)
	}
	return c
}

func (f *ledgerFixture) events() []*hub.Event {
	f.t.Helper()
	var out []*hub.Event
	for p := (hub.Page{Limit: 200}); ; {
		es, err := f.st.ListEvents(f.ctx, hub.DefaultProgramID, p)
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, es...)
		if len(es) < p.Limit {
			return out
		}
		p.Cursor = es[len(es)-1].ID
	}
}

func (f *ledgerFixture) countEvents(typ string) int {
	f.t.Helper()
	n := 0
	for _, e := range f.events() {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func entriesOfType(c *hub.Commission, typ string) int {
	n := 0
	for _, e := range c.Entries {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func TestApprove(t *testing.T) {
	hold := 30 * 24 * time.Hour
	cases := []struct {
		name string
		// setup books facts at ledgerStart; it returns the key of the
		// commission looked at.
		setup   func(f *ledgerFixture) string
		at      time.Duration // approval time after ledgerStart
		runs    int
		status  string
		net     int64
		events  int // commission.approved events
		entries int // approved entries
	}{
		{"approved once the hold has passed", func(f *ledgerFixture) string {
			f.sale("o_1", "USD", 10000, "alice")
			return "o_1"
		}, hold, 1, hub.CommissionApproved, 1000, 1, 1},
		{"not approved before the hold ends", func(f *ledgerFixture) string {
			f.sale("o_1", "USD", 10000, "alice")
			return "o_1"
		}, hold - time.Second, 1, hub.CommissionPending, 1000, 0, 0},
		{"running twice changes nothing", func(f *ledgerFixture) string {
			f.sale("o_1", "USD", 10000, "alice")
			return "o_1"
		}, hold + time.Hour, 2, hub.CommissionApproved, 1000, 1, 1},
		{"test mode is never approved for payment", func(f *ledgerFixture) string {
			f.send(hub.Normalized{Livemode: false, Payment: &hub.Payment{
				Keys: []string{"o_t"}, Kind: hub.KindNew, BaseMinor: 10000, GrossMinor: 10000, Currency: "USD",
				Hints: hub.Hints{PartnerCode: "alice"}, OccurredAt: f.now,
			}})
			return "o_t"
		}, 10 * hold, 1, hub.CommissionPending, 1000, 0, 0},
		{"a fully reversed commission is approved and pays nothing", func(f *ledgerFixture) string {
			f.sale("o_1", "USD", 10000, "alice")
			f.refund("o_1", "USD", "re_1", 10000)
			return "o_1"
		}, hold, 1, hub.CommissionApproved, 0, 1, 1},
		{"a commission held for review is not approved", func(f *ledgerFixture) string {
			f.sale("o_1", "USD", 10000, "alice")
			if _, err := f.st.SQL().ExecContext(f.ctx, `UPDATE commissions SET status = 'held'`); err != nil {
				t.Fatal(err)
			}
			return "o_1"
		}, hold, 1, "held", 1000, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newLedgerFixture(t)
			f.partner("alice", "Alice", "")
			key := c.setup(f)
			f.now = ledgerStart.Add(c.at)
			before := len(f.q.deliveries)
			for range c.runs {
				f.approve()
			}
			com := f.commission(key)
			if com.Status != c.status || com.NetMinor != c.net {
				t.Errorf("commission %s with net %d, want %s with net %d", com.Status, com.NetMinor, c.status, c.net)
			}
			if got := entriesOfType(com, hub.EntryApproved); got != c.entries {
				t.Errorf("%d approved entries, want %d", got, c.entries)
			}
			if got := f.countEvents(hub.EventCommissionApproved); got != c.events {
				t.Errorf("%d commission.approved events, want %d", got, c.events)
			}
			if got := len(f.q.deliveries) - before; got != c.events {
				t.Errorf("%d deliveries enqueued, want %d", got, c.events)
			}
		})
	}
}

// TestApproveEventCarriesTheApprovedCommission: the event says approved
// and lists the approved entry, so receivers need not call back.
func TestApproveEventCarriesTheApprovedCommission(t *testing.T) {
	f := newLedgerFixture(t)
	f.partner("alice", "Alice", "")
	f.sale("o_1", "USD", 10000, "alice")
	f.now = ledgerStart.Add(31 * 24 * time.Hour)
	f.approve()
	for _, e := range f.events() {
		if e.Type != hub.EventCommissionApproved {
			continue
		}
		var com hub.Commission
		if err := json.Unmarshal(e.Data, &com); err != nil {
			t.Fatal(err)
		}
		if com.Status != hub.CommissionApproved || com.NetMinor != 1000 || entriesOfType(&com, hub.EntryApproved) != 1 || e.PartnerID != com.PartnerID {
			t.Fatalf("commission.approved data = %s", e.Data)
		}
		return
	}
	t.Fatal("no commission.approved event")
}
