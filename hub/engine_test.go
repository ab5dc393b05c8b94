package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

func (f *fixture) partner(code, email string, tags ...string) *hub.Partner {
	f.t.Helper()
	p := &hub.Partner{ID: hub.NewID("ptn"), ProgramID: hub.DefaultProgramID, Name: code, Code: code, Email: email, Tags: tags}
	if err := f.st.CreatePartner(context.Background(), p); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) click(id, partnerID, visitor string, at time.Time) {
	f.t.Helper()
	cs := f.st.(hub.ClickStore)
	if err := cs.InsertClicks(context.Background(), []*hub.Click{{ID: id, ProgramID: hub.DefaultProgramID, PartnerID: partnerID, VisitorID: visitor, CreatedAt: at}}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) settings(fn func(p *hub.Program)) {
	f.t.Helper()
	ctx := context.Background()
	p, err := f.st.GetProgram(ctx, hub.DefaultProgramID)
	if err != nil {
		f.t.Fatal(err)
	}
	fn(p)
	if err := f.st.UpdateProgram(ctx, p); err != nil {
		f.t.Fatal(err)
	}
}

// conv returns the conversion named by key.
func (f *fixture) conv(key string) *hub.Conversion {
	f.t.Helper()
	cs, err := f.st.ListConversions(context.Background(), hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, c := range cs {
		for _, k := range c.Keys {
			if k == key {
				return c
			}
		}
	}
	f.t.Fatalf("no conversion named %s", key)
	return nil
}

func (f *fixture) commissionOf(convID string) *hub.Commission {
	f.t.Helper()
	cs, err := f.st.ListCommissions(context.Background(), hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, c := range cs {
		if c.ConversionID == convID {
			return c
		}
	}
	return nil
}

func at(d time.Duration, keys []string, hints hub.Hints, customer string) hub.Normalized {
	n := sale(keys, 10000, 10000, hints)
	n.Payment.OccurredAt = t0.Add(d)
	n.Payment.Customer.ProviderCustomerID = customer
	return n
}

func TestAttribution(t *testing.T) {
	day := 24 * time.Hour
	t.Run("click within the window beats a partner code", func(t *testing.T) {
		f := newFixture(t, 1000)
		bob := f.partner("bob", "")
		f.click("clk_1", bob.ID, "v1", t0.Add(-10*day))
		f.send(at(0, []string{"s1"}, hub.Hints{ClickID: "clk_1", PartnerCode: "alice"}, ""))
		if c := f.conv("s1"); c.PartnerID != bob.ID || c.AttributedBy != "click" {
			t.Fatalf("credited %s by %s, want bob by click", c.PartnerID, c.AttributedBy)
		}
	})
	t.Run("click outside the window falls through to the next source", func(t *testing.T) {
		f := newFixture(t, 1000)
		bob := f.partner("bob", "")
		f.click("clk_1", bob.ID, "v1", t0.Add(-61*day))
		f.send(at(0, []string{"s1"}, hub.Hints{ClickID: "clk_1", PartnerCode: "alice"}, ""))
		if c := f.conv("s1"); c.PartnerID == bob.ID || c.AttributedBy != "partner_code" {
			t.Fatalf("credited %s by %s, want alice by partner_code", c.PartnerID, c.AttributedBy)
		}
	})
	t.Run("first and last touch among a visitor's clicks", func(t *testing.T) {
		for _, model := range []string{"first", "last"} {
			f := newFixture(t, 1000)
			bob, carol := f.partner("bob", ""), f.partner("carol", "")
			f.click("clk_a", bob.ID, "v1", t0.Add(-5*day))
			f.click("clk_b", carol.ID, "v1", t0.Add(-1*day))
			f.settings(func(p *hub.Program) { p.TouchModel = model })
			f.send(at(0, []string{"s1"}, hub.Hints{ClickID: "clk_b"}, ""))
			want := map[string]string{"first": bob.ID, "last": carol.ID}[model]
			if c := f.conv("s1"); c.PartnerID != want {
				t.Fatalf("%s touch credited %s, want %s", model, c.PartnerID, want)
			}
		}
	})
	t.Run("promo code only while active, case-insensitive", func(t *testing.T) {
		f := newFixture(t, 1000)
		bob := f.partner("bob", "")
		end := t0.Add(day)
		rs := f.st.(hub.RuleStore)
		if err := rs.CreatePromoCode(context.Background(), &hub.PromoCode{ProgramID: hub.DefaultProgramID, PartnerID: bob.ID, Code: "Spring20", EndsAt: &end}); err != nil {
			t.Fatal(err)
		}
		f.send(at(0, []string{"s1"}, hub.Hints{PromoCodes: []string{"SPRING20"}}, ""))
		f.send(at(2*day, []string{"s2"}, hub.Hints{PromoCodes: []string{"spring20"}}, ""))
		if c := f.conv("s1"); c.PartnerID != bob.ID || c.AttributedBy != "promo_code" {
			t.Errorf("active code: credited %q by %q", c.PartnerID, c.AttributedBy)
		}
		if c := f.conv("s2"); c.PartnerID != "" {
			t.Errorf("expired code credited %q", c.PartnerID)
		}
	})
	t.Run("lifetime binding within its window", func(t *testing.T) {
		f := newFixture(t, 1000)
		f.settings(func(p *hub.Program) { p.LifetimeMonths = 12 })
		f.send(at(0, []string{"s1"}, hub.Hints{PartnerCode: "alice"}, "cus_1"))
		f.send(at(300*day, []string{"s2"}, hub.Hints{}, "cus_1"))
		f.send(at(400*day, []string{"s3"}, hub.Hints{}, "cus_1"))
		if c := f.conv("s2"); c.AttributedBy != "customer" {
			t.Errorf("within 12 months: credited by %q, want customer", c.AttributedBy)
		}
		if c := f.conv("s3"); c.PartnerID != "" {
			t.Errorf("after 12 months: still credited to %q", c.PartnerID)
		}
	})
	t.Run("configured order puts promo codes first", func(t *testing.T) {
		f := newFixture(t, 1000)
		bob := f.partner("bob", "")
		rs := f.st.(hub.RuleStore)
		if err := rs.CreatePromoCode(context.Background(), &hub.PromoCode{ProgramID: hub.DefaultProgramID, PartnerID: bob.ID, Code: "BOB"}); err != nil {
			t.Fatal(err)
		}
		f.settings(func(p *hub.Program) { p.AttributionOrder = []string{"promo_code", "partner_code"} })
		f.send(at(0, []string{"s1"}, hub.Hints{PartnerCode: "alice", PromoCodes: []string{"bob"}}, ""))
		if c := f.conv("s1"); c.PartnerID != bob.ID {
			t.Fatalf("credited %s, want bob through the promo code", c.PartnerID)
		}
	})
	t.Run("self-referral is held for review", func(t *testing.T) {
		f := newFixture(t, 1000)
		eve := f.partner("eve", "Eve@Example.com ")
		n := at(0, []string{"s1"}, hub.Hints{PartnerCode: "eve"}, "")
		n.Payment.Customer.EmailHash = hub.EmailHash("eve@example.com")
		f.send(n)
		c := f.commissionOf(f.conv("s1").ID)
		if c == nil || c.PartnerID != eve.ID || c.Status != hub.CommissionHeld || !c.Terms.Held {
			t.Fatalf("self-referral commission = %+v, want held", c)
		}
	})
}

func TestRules(t *testing.T) {
	day := 24 * time.Hour
	bps := func(v int64) *int64 { return &v }
	f := newFixture(t, 1000)
	rs := f.st.(hub.RuleStore)
	vip := f.partner("vip", "", "gold")
	ctx := context.Background()
	for _, r := range []*hub.Rule{
		{Name: "gold partners", BPS: bps(2000), PartnerTag: "gold"},
		{Name: "gold renewals, first 2 months", BPS: bps(500), PartnerTag: "gold", Kind: hub.KindRenewal, RecurringMonths: 2},
		{Name: "flat for the pro plan", FlatMinor: map[string]int64{"USD": 700}, ProductID: "prod_pro", CapMinor: map[string]int64{"USD": 650}},
	} {
		r.ProgramID = hub.DefaultProgramID
		if err := rs.CreateRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	send := func(key string, d time.Duration, code, kind, sub, product string) *hub.Commission {
		n := at(d, []string{key}, hub.Hints{PartnerCode: code}, "")
		n.Payment.Kind, n.Payment.SubscriptionID = kind, sub
		if product != "" {
			n.Payment.Lines = []hub.LineItem{{ProductID: product, Quantity: 1, AmountMinor: 10000}}
		}
		f.send(n)
		return f.commissionOf(f.conv(key).ID)
	}
	cases := []struct {
		name string
		com  *hub.Commission
		net  int64
	}{
		{"no rule matches: the program's rate", send("a", 0, "alice", hub.KindNew, "", ""), 1000},
		{"partner tag rule", send("b", 0, "vip", hub.KindNew, "sub_1", ""), 2000},
		{"the more specific renewal rule", send("c", 30*day, "vip", "", "sub_1", ""), 500},
		{"renewal past the recurring limit earns nothing", send("d", 70*day, "vip", "", "sub_1", ""), 0},
		{"flat amount, capped", send("e", 0, "alice", hub.KindNew, "", "prod_pro"), 650},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.com == nil || c.com.NetMinor != c.net || c.com.Terms.Explanation == "" {
				t.Fatalf("commission %+v, want net %d with an explanation", c.com, c.net)
			}
		})
	}
	_ = vip
}

// TestReattribute: an operator moves a conversion to another partner; the
// old commission is voided by a reversing entry, the new partner's is
// computed with the refunds so far, and moving it to no one voids it.
func TestReattribute(t *testing.T) {
	f := newFixture(t, 1000)
	ctx := context.Background()
	bob := f.partner("bob", "")
	f.send(sale([]string{"cs_1", "pi_1"}, 10000, 10000, hub.Hints{PartnerCode: "alice"}))
	f.send(cumulative([]string{"pi_1", "ch_1"}, "ch_1", 5000, t0.Add(time.Hour)))
	conv := f.conv("cs_1")
	alice := conv.PartnerID

	moved, err := f.svc.Reattribute(ctx, hub.DefaultProgramID, conv.ID, bob.ID, "customer says Bob referred them")
	if err != nil {
		t.Fatal(err)
	}
	if moved.PartnerID != bob.ID || moved.AttributedBy != hub.ReasonManual {
		t.Fatalf("conversion after override: %s by %s", moved.PartnerID, moved.AttributedBy)
	}
	cs, _ := f.st.ListCommissions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
	byPartner := map[string]*hub.Commission{}
	for _, c := range cs {
		byPartner[c.PartnerID] = c
	}
	if a := byPartner[alice]; a == nil || a.Status != hub.CommissionVoid || a.NetMinor != 0 {
		t.Fatalf("alice's commission after override: %+v, want void netting 0", a)
	}
	if b := byPartner[bob.ID]; b == nil || b.NetMinor != 500 || b.Terms.AttributionReason != hub.ReasonManual {
		t.Fatalf("bob's commission: %+v, want net 500 credited manually", b)
	}
	if _, err := f.svc.Reattribute(ctx, hub.DefaultProgramID, conv.ID, "", "test order"); err != nil {
		t.Fatal(err)
	}
	cs, _ = f.st.ListCommissions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
	var live int64
	for _, c := range cs {
		if c.Status != hub.CommissionVoid {
			t.Errorf("commission %s is %s after crediting no one", c.ID, c.Status)
		}
		live += c.NetMinor
	}
	if live != 0 {
		t.Fatalf("net across commissions %d, want 0", live)
	}
	// A later event of the conversion does not attribute it again.
	f.send(sale([]string{"cs_1", "in_1"}, 10000, 10000, hub.Hints{PartnerCode: "alice"}))
	if c := f.conv("cs_1"); c.PartnerID != "" || c.AttributedBy != hub.ReasonManual {
		t.Fatalf("after a later event: credited %q by %q, want the operator's decision kept", c.PartnerID, c.AttributedBy)
	}
	if got := f.eventTypes(); got["commission.reversed"] < 3 {
		t.Errorf("events %v: want commission.reversed for each voided commission and the refund", got)
	}
}

// TestTermsFollowLaterEvents: the line items or the customer's email that
// a later event of the same payment brings decide the commission as if
// they had come first (any order, same ledger).
func TestTermsFollowLaterEvents(t *testing.T) {
	bps := int64(3000)
	withLines := func(n hub.Normalized) hub.Normalized {
		n.Payment.Lines = []hub.LineItem{{ProductID: "prod_pro", Quantity: 1, AmountMinor: 10000}}
		return n
	}
	session := sale([]string{"cs_1", "in_1"}, 10000, 10000, hub.Hints{PartnerCode: "alice"})
	invoice := withLines(sale([]string{"in_1", "pi_1"}, 10000, 10000, hub.Hints{}))
	orders := map[string][]hub.Normalized{
		"session then invoice": {session, invoice},
		"invoice then session": {invoice, session},
	}
	for name, evs := range orders {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 1000)
			rs := f.st.(hub.RuleStore)
			if err := rs.CreateRule(context.Background(), &hub.Rule{ProgramID: hub.DefaultProgramID, Name: "pro", BPS: &bps, ProductID: "prod_pro"}); err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				f.send(e)
			}
			if c := f.commission(); c.NetMinor != 3000 {
				t.Fatalf("net %d (%s), want 3000 from the product rule", c.NetMinor, c.Terms.Explanation)
			}
		})
	}
	t.Run("a product rule pays on its lines' share", func(t *testing.T) {
		f := newFixture(t, 1000)
		half := int64(5000)
		rs := f.st.(hub.RuleStore)
		if err := rs.CreateRule(context.Background(), &hub.Rule{ProgramID: hub.DefaultProgramID, Name: "addon", BPS: &half, ProductID: "prod_addon"}); err != nil {
			t.Fatal(err)
		}
		n := sale([]string{"o_1"}, 9000, 10000, hub.Hints{PartnerCode: "alice"})
		n.Payment.Lines = []hub.LineItem{{ProductID: "prod_main", AmountMinor: 9000}, {ProductID: "prod_addon", AmountMinor: 1000}}
		f.send(n)
		if c := f.commission(); c.NetMinor != 450 {
			t.Fatalf("net %d (%s), want 450: 50 %% of the add-on's 900 share of the base", c.NetMinor, c.Terms.Explanation)
		}
	})
	t.Run("a self-referral learned later is held", func(t *testing.T) {
		f := newFixture(t, 1000)
		f.partner("eve", "eve@example.com")
		f.send(sale([]string{"cs_1", "in_1"}, 10000, 10000, hub.Hints{PartnerCode: "eve"}))
		later := sale([]string{"in_1"}, 10000, 10000, hub.Hints{})
		later.Payment.Customer.EmailHash = hub.EmailHash("eve@example.com")
		f.send(later)
		if c := f.commission(); c.Status != hub.CommissionHeld {
			t.Fatalf("commission %s, want held", c.Status)
		}
	})
}

func TestReviewHeldCommission(t *testing.T) {
	for _, release := range []bool{true, false} {
		t.Run(map[bool]string{true: "release", false: "reject"}[release], func(t *testing.T) {
			f := newFixture(t, 1000)
			f.partner("eve", "eve@example.com")
			n := sale([]string{"cs_1"}, 10000, 10000, hub.Hints{PartnerCode: "eve"})
			n.Payment.Customer.EmailHash = hub.EmailHash("eve@example.com")
			f.send(n)
			held := f.commission()
			got, err := f.svc.Review(context.Background(), hub.DefaultProgramID, held.ID, release)
			if err != nil {
				t.Fatal(err)
			}
			c := f.commission()
			switch {
			case release && (got.Status != hub.CommissionPending || c.NetMinor != 1000):
				t.Fatalf("released: %s net %d, want pending 1000", c.Status, c.NetMinor)
			case !release && (c.Status != hub.CommissionVoid || c.NetMinor != 0):
				t.Fatalf("rejected: %s net %d, want void 0", c.Status, c.NetMinor)
			}
			if _, err := f.svc.Review(context.Background(), hub.DefaultProgramID, held.ID, release); hub.ErrorCode(err) != hub.ECONFLICT {
				t.Fatalf("second review: %v, want a conflict", err)
			}
		})
	}
}
