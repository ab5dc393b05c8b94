package hub_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/schemas"
)

const ledgerHold = 30 * 24 * time.Hour

// approveAll moves the clock past the hold of everything booked so far
// and runs the approval job.
func (f *ledgerFixture) approveAll() {
	f.t.Helper()
	f.now = f.now.Add(ledgerHold + time.Hour)
	f.approve()
}

func (f *ledgerFixture) draft() *hub.Payout {
	f.t.Helper()
	p, err := f.svc.CreatePayout(f.ctx, hub.DefaultProgramID, "key_test")
	if err != nil {
		f.t.Fatalf("creating payout: %v", err)
	}
	return p
}

func (f *ledgerFixture) confirm(id string) *hub.Payout {
	f.t.Helper()
	p, _, err := f.svc.ConfirmPayout(f.ctx, hub.DefaultProgramID, id, "key_test")
	if err != nil {
		f.t.Fatalf("confirming payout: %v", err)
	}
	return p
}

// line is a payout line as the tests compare it.
type line struct {
	Partner     string // partner name
	Currency    string
	Amount      int64
	Entries     int
	Commissions int
}

func linesOf(p *hub.Payout) []line {
	out := []line{}
	for _, l := range p.Lines {
		out = append(out, line{l.PartnerName, l.Currency, l.AmountMinor, l.EntryCount, l.CommissionCount})
	}
	return out
}

func TestPayoutRun(t *testing.T) {
	cases := []struct {
		name     string
		minimums map[string]int64
		setup    func(f *ledgerFixture)
		want     []line
		totals   []hub.PayoutTotal
	}{
		{
			name:     "balances per currency at or above the minimum",
			minimums: map[string]int64{"USD": 1000, "EUR": 500},
			setup: func(f *ledgerFixture) {
				f.sale("o_1", "USD", 6000, "alice")
				f.sale("o_2", "USD", 4000, "alice") // alice: 1000 USD, exactly the minimum
				f.sale("o_3", "EUR", 4000, "alice") // 400 EUR: below
				f.sale("o_4", "USD", 9990, "bob")   // 999 USD: below
				f.sale("o_5", "JPY", 5000, "bob")   // no minimum in JPY
				f.sale("o_6", "EUR", 5000, "bob")
				f.approveAll()
			},
			want: []line{
				{"Bob", "EUR", 500, 2, 1},
				{"Bob", "JPY", 500, 2, 1},
				{"Alice", "USD", 1000, 4, 2},
			},
			totals: []hub.PayoutTotal{
				{Currency: "EUR", AmountMinor: 500, Amount: "5.00", Lines: 1},
				{Currency: "JPY", AmountMinor: 500, Amount: "500", Lines: 1},
				{Currency: "USD", AmountMinor: 1000, Amount: "10.00", Lines: 1},
			},
		},
		{
			name:     "minimums match currency codes in any case",
			minimums: map[string]int64{"usd": 2000},
			setup: func(f *ledgerFixture) {
				f.sale("o_1", "USD", 10000, "alice")
				f.approveAll()
			},
		},
		{
			name: "pending commissions wait for approval",
			setup: func(f *ledgerFixture) {
				f.sale("o_1", "USD", 10000, "alice")
				f.now = f.now.Add(ledgerHold - time.Minute)
				f.approve()
			},
		},
		{
			name: "test mode is never paid, even approved",
			setup: func(f *ledgerFixture) {
				f.send(hub.Normalized{Livemode: false, Payment: &hub.Payment{
					Keys: []string{"o_t"}, Kind: hub.KindNew, BaseMinor: 10000, GrossMinor: 10000, Currency: "USD",
					Hints: hub.Hints{PartnerCode: "alice"}, OccurredAt: f.now,
				}})
				if _, err := f.st.SQL().ExecContext(f.ctx, `UPDATE commissions SET status = 'approved'`); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "a fully reversed commission pays nothing",
			setup: func(f *ledgerFixture) {
				f.sale("o_1", "USD", 10000, "alice")
				f.refund("o_1", "USD", "re_1", 10000)
				f.approveAll()
			},
		},
		{
			name: "a partial refund before approval is netted",
			setup: func(f *ledgerFixture) {
				f.sale("o_1", "USD", 10000, "alice")
				f.refund("o_1", "USD", "re_1", 2500)
				f.approveAll()
			},
			want:   []line{{"Alice", "USD", 750, 3, 1}},
			totals: []hub.PayoutTotal{{Currency: "USD", AmountMinor: 750, Amount: "7.50", Lines: 1}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newLedgerFixture(t)
			f.partner("alice", "Alice", "alice@example.com")
			f.partner("bob", "Bob", "bob@example.com")
			f.setMinimums(c.minimums)
			c.setup(f)
			p := f.draft()
			if p.Status != hub.PayoutDraft {
				t.Errorf("status %s, want draft", p.Status)
			}
			if diff := cmp.Diff(append([]line{}, c.want...), linesOf(p)); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(append([]hub.PayoutTotal{}, c.totals...), p.Totals); diff != "" {
				t.Errorf("totals (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPayoutConfirm(t *testing.T) {
	f := newLedgerFixture(t)
	f.partner("alice", "Alice", "alice@example.com")
	f.sale("o_1", "USD", 10000, "alice")
	f.sale("o_2", "EUR", 20000, "alice")
	f.approveAll()
	p := f.draft()
	before := len(f.q.deliveries)
	got := f.confirm(p.ID)
	if got.Status != hub.PayoutConfirmed || got.ConfirmedAt == nil || got.ConfirmedBy != "key_test" {
		t.Fatalf("confirmed payout = %+v", got)
	}
	for _, key := range []string{"o_1", "o_2"} {
		c := f.commission(key)
		if c.Status != hub.CommissionPaid || entriesOfType(c, hub.EntryPaid) != 1 {
			t.Errorf("%s: commission %s with %d paid entries, want paid with 1", key, c.Status, entriesOfType(c, hub.EntryPaid))
		}
	}
	if n := f.countEvents(hub.EventCommissionPaid); n != 2 {
		t.Errorf("%d commission.paid events, want 2", n)
	}
	if n := len(f.q.deliveries) - before; n != 2 {
		t.Errorf("%d deliveries enqueued, want 2", n)
	}
	if next := f.draft(); len(next.Lines) != 0 {
		t.Errorf("a run after the confirmation pays %v again", linesOf(next))
	}

	t.Run("confirming twice changes nothing", func(t *testing.T) {
		events, entries := len(f.events()), len(f.commission("o_1").Entries)
		again, changed, err := f.svc.ConfirmPayout(f.ctx, hub.DefaultProgramID, p.ID, "key_other")
		if err != nil || changed {
			t.Fatalf("second confirmation: changed %v, %v", changed, err)
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Errorf("payout changed (-first +second):\n%s", diff)
		}
		if n := len(f.events()); n != events {
			t.Errorf("%d events, want %d", n, events)
		}
		if n := len(f.commission("o_1").Entries); n != entries {
			t.Errorf("%d entries, want %d", n, entries)
		}
	})
}

// TestRefundAfterPaymentIsCarried: a refund of a paid commission is not
// taken back from history; it is a negative amount in the next run.
func TestRefundAfterPaymentIsCarried(t *testing.T) {
	f := newLedgerFixture(t)
	f.partner("alice", "Alice", "alice@example.com")
	f.sale("o_1", "USD", 10000, "alice")
	f.approveAll()
	f.confirm(f.draft().ID)

	f.refund("o_1", "USD", "re_1", 5000)
	if c := f.commission("o_1"); c.Status != hub.CommissionPaid || c.NetMinor != 500 {
		t.Fatalf("refunded paid commission: %s net %d, want paid net 500", c.Status, c.NetMinor)
	}
	if p := f.draft(); len(p.Lines) != 0 {
		t.Fatalf("a negative balance is listed: %v", linesOf(p))
	}

	f.sale("o_2", "USD", 8000, "alice")
	f.approveAll()
	p := f.draft()
	if diff := cmp.Diff([]line{{"Alice", "USD", 300, 3, 2}}, linesOf(p)); diff != "" {
		t.Fatalf("next run (-want +got):\n%s", diff)
	}
	f.confirm(p.ID)
	c1, c2 := f.commission("o_1"), f.commission("o_2")
	if c1.Status != hub.CommissionPaid || entriesOfType(c1, hub.EntryPaid) != 2 {
		t.Errorf("o_1: %s with %d paid entries, want paid with 2 (one per run)", c1.Status, entriesOfType(c1, hub.EntryPaid))
	}
	if c2.Status != hub.CommissionPaid {
		t.Errorf("o_2: %s, want paid", c2.Status)
	}
	if n := f.countEvents(hub.EventCommissionPaid); n != 2 {
		t.Errorf("%d commission.paid events, want 2 (o_1 was paid already)", n)
	}
}

// TestDraftPinsItsEntries: an entry booked between the draft and its
// confirmation waits for the next run.
func TestDraftPinsItsEntries(t *testing.T) {
	f := newLedgerFixture(t)
	f.partner("alice", "Alice", "alice@example.com")
	f.sale("o_1", "USD", 10000, "alice")
	f.approveAll()
	p := f.draft()
	f.refund("o_1", "USD", "re_1", 3000)
	got := f.confirm(p.ID)
	if diff := cmp.Diff([]line{{"Alice", "USD", 1000, 2, 1}}, linesOf(got)); diff != "" {
		t.Fatalf("confirmed run (-want +got):\n%s", diff)
	}
	if c := f.commission("o_1"); c.Status != hub.CommissionApproved {
		t.Errorf("commission with an unpaid reversal is %s, want approved until it is settled", c.Status)
	}
	if n := f.countEvents(hub.EventCommissionPaid); n != 0 {
		t.Errorf("%d commission.paid events, want 0", n)
	}
	f.sale("o_2", "USD", 5000, "alice")
	f.approveAll()
	next := f.draft()
	if diff := cmp.Diff([]line{{"Alice", "USD", 200, 3, 2}}, linesOf(next)); diff != "" {
		t.Fatalf("next run (-want +got):\n%s", diff)
	}
	f.confirm(next.ID)
	for _, key := range []string{"o_1", "o_2"} {
		if c := f.commission(key); c.Status != hub.CommissionPaid {
			t.Errorf("%s is %s, want paid", key, c.Status)
		}
	}
}

// TestTwoDraftsOfTheSameEntries: once one is confirmed, the other cannot
// pay the same entries again.
func TestTwoDraftsOfTheSameEntries(t *testing.T) {
	f := newLedgerFixture(t)
	f.partner("alice", "Alice", "alice@example.com")
	f.sale("o_1", "USD", 10000, "alice")
	f.approveAll()
	a, b := f.draft(), f.draft()
	f.confirm(a.ID)
	_, _, err := f.svc.ConfirmPayout(f.ctx, hub.DefaultProgramID, b.ID, "key_test")
	if !errors.Is(err, &hub.Error{Code: hub.ECONFLICT}) {
		t.Fatalf("confirming a second draft of paid entries: %v, want a conflict", err)
	}
	if p, _ := f.svc.Payout(f.ctx, hub.DefaultProgramID, b.ID); p.Status != hub.PayoutDraft {
		t.Errorf("refused draft is %s, want draft", p.Status)
	}
}

// ledgerServer serves the payout, report and schema routes with an
// admin key "admin-key" and a viewer key "viewer-key".
func ledgerServer(f *ledgerFixture) *echo.Echo {
	e := echo.New()
	e.HTTPErrorHandler = hub.ErrorHandler
	admin := &hub.APIKey{ID: "key_admin", ProgramID: hub.DefaultProgramID, Role: hub.RoleAdmin, Hash: hub.HashKey("admin-key")}
	viewer := &hub.APIKey{ID: "key_viewer", ProgramID: hub.DefaultProgramID, Role: hub.RoleViewer, Hash: hub.HashKey("viewer-key")}
	g := e.Group("/api/v1", hub.Auth(f.st, admin, viewer))
	hub.MountPayouts(g, f.svc)
	hub.MountReports(g, f.st)
	schemas.Mount(e.Group("/api/v1"))
	return e
}

func call(e *echo.Echo, method, path, key string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func TestPayoutAPI(t *testing.T) {
	f := newLedgerFixture(t)
	zoe := f.partner("zoe", "Zoë, Ltd", "zoe@example.com")
	eve := f.partner("eve", "=HYPERLINK(\"x\")", "")
	f.sale("o_1", "JPY", 5000, "zoe")
	f.sale("o_2", "KWD", 12345, "eve") // 1234.5 fils round half up
	f.sale("o_3", "USD", 10000, "zoe")
	f.approveAll()
	e := ledgerServer(f)

	if rec := call(e, http.MethodPost, "/api/v1/payouts", "viewer-key"); rec.Code != http.StatusForbidden {
		t.Fatalf("viewer creating a payout: %d, want 403", rec.Code)
	}
	rec := call(e, http.MethodPost, "/api/v1/payouts", "admin-key")
	if rec.Code != http.StatusCreated {
		t.Fatalf("creating a payout: %d %s", rec.Code, rec.Body)
	}
	var p hub.Payout
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}

	t.Run("export", func(t *testing.T) {
		rec := call(e, http.MethodGet, "/api/v1/payouts/"+p.ID+"/export.csv", "viewer-key")
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/csv; charset=utf-8" {
			t.Fatalf("export: %d %s", rec.Code, rec.Header().Get("Content-Type"))
		}
		want := "partner_id,partner_name,partner_email,currency,amount,reference\n" +
			zoe.ID + ",\"Zoë, Ltd\",zoe@example.com,JPY,500," + p.ID + "\n" +
			eve.ID + ",\"'=HYPERLINK(\"\"x\"\")\",,KWD,1.235," + p.ID + "\n" +
			zoe.ID + ",\"Zoë, Ltd\",zoe@example.com,USD,10.00," + p.ID + "\n"
		if diff := cmp.Diff(want, rec.Body.String()); diff != "" {
			t.Errorf("CSV (-want +got):\n%s", diff)
		}
	})

	t.Run("read", func(t *testing.T) {
		rec := call(e, http.MethodGet, "/api/v1/payouts", "viewer-key")
		var l hub.List[hub.Payout]
		if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("list: %d %s", rec.Code, rec.Body)
		}
		if len(l.Data) != 1 || l.Data[0].ID != p.ID || len(l.Data[0].Totals) != 3 {
			t.Errorf("list = %s", rec.Body)
		}
		if rec := call(e, http.MethodGet, "/api/v1/payouts/pay_missing", "viewer-key"); rec.Code != http.StatusNotFound ||
			rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("missing payout: %d %s", rec.Code, rec.Header().Get("Content-Type"))
		}
		if rec := call(e, http.MethodGet, "/api/v1/payouts", ""); rec.Code != http.StatusUnauthorized {
			t.Errorf("no key: %d, want 401", rec.Code)
		}
		if rec := call(e, http.MethodGet, "/api/v1/schemas/commission.paid", ""); rec.Code != http.StatusOK {
			t.Errorf("schemas next to the authenticated routes: %d without a key, want 200", rec.Code)
		}
	})

	t.Run("confirm", func(t *testing.T) {
		if rec := call(e, http.MethodPost, "/api/v1/payouts/"+p.ID+"/confirm", "viewer-key"); rec.Code != http.StatusForbidden {
			t.Fatalf("viewer confirming: %d, want 403", rec.Code)
		}
		for i := range 2 {
			rec := call(e, http.MethodPost, "/api/v1/payouts/"+p.ID+"/confirm", "admin-key")
			if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"status":"confirmed"`) {
				t.Fatalf("confirmation %d: %d %s", i+1, rec.Code, rec.Body)
			}
		}
		audit, err := f.st.ListAudit(f.ctx, hub.DefaultProgramID, hub.Page{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, a := range audit {
			actions = append(actions, a.Action+" "+a.ResourceID+" "+a.KeyID)
		}
		want := []string{"payout.confirm " + p.ID + " key_admin", "payout.create " + p.ID + " key_admin"}
		if diff := cmp.Diff(want, actions); diff != "" {
			t.Errorf("audit log (-want +got):\n%s", diff)
		}
	})
}

// compileEventSchemas compiles the schema of every event type, asserting
// formats (date-time).
func compileEventSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	out := map[string]*jsonschema.Schema{}
	for _, typ := range schemas.Types() {
		b, _ := schemas.Schema(typ)
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		u := "https://partnerhub.invalid/schemas/" + typ + ".json"
		if err := c.AddResource(u, doc); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if out[typ], err = c.Compile(u); err != nil {
			t.Fatalf("compiling the schema of %s: %v", typ, err)
		}
	}
	return out
}

// envelope wraps an event as outbound delivers it.
func envelope(t *testing.T, e *hub.Event) any {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"id": e.ID, "type": e.Type, "api_version": "2026-11-01",
		"created_at": e.CreatedAt.UTC().Format(time.RFC3339), "program_id": e.ProgramID, "data": e.Data,
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestEventPayloadsMatchSchemas runs sales, refunds (one parked before its
// sale), disputes, approval and a payout through the Service and validates
// every event written to the outbox against its type's schema.
func TestEventPayloadsMatchSchemas(t *testing.T) {
	sch := compileEventSchemas(t)
	f := newLedgerFixture(t)
	f.partner("alice", "Alice", "alice@example.com")
	f.send(hub.Normalized{Livemode: true, Payment: &hub.Payment{
		Keys: []string{"cs_1", "pi_1"}, Kind: hub.KindNew, BaseMinor: 10000, GrossMinor: 12000, TaxMinor: 2000, Currency: "USD",
		Customer: hub.Customer{ProviderCustomerID: "cus_1", EmailHash: hub.HashKey("buyer@example.com")},
		Lines:    []hub.LineItem{{ProductID: "prod_1", PriceID: "price_1", Quantity: 2, AmountMinor: 10000}},
		Hints:    hub.Hints{PartnerCode: "alice", PromoCodes: []string{"SPRING"}}, SubscriptionID: "sub_1", OccurredAt: f.now,
	}})
	f.sale("o_unattributed", "USD", 5000, "")
	base := int64(1000)
	f.send(hub.Normalized{Livemode: true, Refund: &hub.RefundFact{
		Keys: []string{"pi_1"}, ExternalID: "re_1", AmountMinor: 1200, BaseMinor: &base, Currency: "USD",
		Status: hub.RefundSucceeded, OccurredAt: f.now,
	}})
	f.refund("o_parked", "EUR", "re_p", 1000)
	f.sale("o_parked", "EUR", 4000, "alice")
	f.sale("o_disputed", "GBP", 3000, "alice")
	for _, st := range []string{hub.DisputeInquiry, hub.DisputeWithdrawn, hub.DisputeReinstated} {
		f.now = f.now.Add(time.Hour)
		f.send(hub.Normalized{Livemode: true, Dispute: &hub.DisputeFact{
			Keys: []string{"o_disputed"}, ExternalID: "dp_1", Status: st, AmountMinor: 3000, Currency: "GBP", OccurredAt: f.now,
		}})
	}
	f.approveAll()
	f.confirm(f.draft().ID)

	seen := map[string]int{}
	for _, e := range f.events() {
		seen[e.Type]++
		s := sch[e.Type]
		if s == nil {
			t.Errorf("event type %s has no schema", e.Type)
			continue
		}
		if err := s.Validate(envelope(t, e)); err != nil {
			t.Errorf("%s event does not match its schema: %v\ndata: %s", e.Type, err, e.Data)
		}
	}
	for _, typ := range []string{
		hub.EventConversionCreated, hub.EventConversionRefunded, hub.EventConversionDisputed, hub.EventCommissionCreated,
		hub.EventCommissionApproved, hub.EventCommissionReversed, hub.EventCommissionPaid,
	} {
		if seen[typ] == 0 {
			t.Errorf("the scenario wrote no %s event (wrote %v)", typ, seen)
		}
	}

	// Nothing in the hub sends these two yet: check the shapes their
	// schemas promise.
	ep, _ := json.Marshal(map[string]any{
		"endpoint": &hub.Endpoint{ID: hub.NewID("ep"), ProgramID: hub.DefaultProgramID, URL: "https://example.com/h", Enabled: false, CreatedAt: f.now},
		"reason":   "failing for 5 days",
	})
	for typ, data := range map[string]string{hub.EventEndpointDisabled: string(ep), hub.EventPing: `{"message":"ping"}`} {
		e := &hub.Event{ID: hub.NewID("evt"), ProgramID: hub.DefaultProgramID, Type: typ, Data: json.RawMessage(data), CreatedAt: f.now}
		if err := sch[typ].Validate(envelope(t, e)); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
}
