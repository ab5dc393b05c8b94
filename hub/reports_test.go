package hub_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
)

// reportFixture books, for a period of one day from ledgerStart - 1h:
// alice 3 clicks, USD sales o_1, o_2 (paid) and o_6 (pending) and an EUR
// sale o_3 (approved, below the EUR minimum); bob 1 click and a USD sale
// half refunded (paid); carol 1 click. Outside the period or out of
// scope: a click and a sale of alice's a few days later, a test-mode sale
// and an unattributed one.
func reportFixture(t *testing.T) (f *ledgerFixture, partners [3]*hub.Partner, since, until time.Time) {
	f = newLedgerFixture(t)
	partners = [3]*hub.Partner{
		f.partner("alice", "Alice", "alice@example.com"),
		f.partner("bob", "Bob", "bob@example.com"),
		f.partner("carol", "Carol", ""),
	}
	f.partner("dave", "Dave", "")
	f.setMinimums(map[string]int64{"EUR": 1000})
	since, until = ledgerStart.Add(-time.Hour), ledgerStart.Add(23*time.Hour)
	var clicks []*hub.Click
	for i, at := range []time.Duration{-30 * time.Minute, time.Minute, 2 * time.Hour, 72 * time.Hour} {
		clicks = append(clicks, &hub.Click{ProgramID: hub.DefaultProgramID, PartnerID: partners[0].ID, VisitorID: "v" + string(rune('a'+i)), CreatedAt: ledgerStart.Add(at)})
	}
	clicks = append(clicks,
		&hub.Click{ProgramID: hub.DefaultProgramID, PartnerID: partners[1].ID, VisitorID: "vb", CreatedAt: ledgerStart},
		&hub.Click{ProgramID: hub.DefaultProgramID, PartnerID: partners[2].ID, VisitorID: "vc", CreatedAt: ledgerStart})
	if err := f.st.InsertClicks(f.ctx, clicks); err != nil {
		t.Fatal(err)
	}
	f.sale("o_1", "USD", 10000, "alice")
	f.sale("o_2", "USD", 5000, "alice")
	f.sale("o_3", "EUR", 4000, "alice")
	f.sale("o_4", "USD", 2000, "bob")
	f.refund("o_4", "USD", "re_4", 1000)
	f.sale("o_u", "USD", 9000, "")
	f.send(hub.Normalized{Livemode: false, Payment: &hub.Payment{
		Keys: []string{"o_t"}, Kind: hub.KindNew, BaseMinor: 9000, GrossMinor: 9000, Currency: "USD",
		Hints: hub.Hints{PartnerCode: "alice"}, OccurredAt: f.now,
	}})
	f.now = ledgerStart.Add(12 * time.Hour)
	f.sale("o_6", "USD", 3000, "alice")
	f.now = ledgerStart.Add(48 * time.Hour)
	f.sale("o_5", "USD", 7000, "alice")
	f.now = ledgerStart.Add(ledgerHold + time.Hour)
	f.approve()
	f.confirm(f.draft().ID)
	return f, partners, since, until
}

func TestPartnerReport(t *testing.T) {
	f, ps, since, until := reportFixture(t)
	alice, bob, carol := ps[0], ps[1], ps[2]
	cur := func(c string, n, revenue, refunded, pending, approved, paid int64) hub.CurrencyReport {
		r := hub.CurrencyReport{Currency: c, Conversions: n, RevenueMinor: revenue, RefundedMinor: refunded}
		r.Commissions.PendingMinor, r.Commissions.ApprovedMinor, r.Commissions.PaidMinor = pending, approved, paid
		r.Commissions.NetMinor = pending + approved + paid
		return r
	}
	aliceLine := hub.PartnerReport{PartnerID: alice.ID, PartnerName: "Alice", PartnerCode: "alice", Clicks: 3,
		Currencies: []hub.CurrencyReport{cur("EUR", 1, 4000, 0, 0, 400, 0), cur("USD", 3, 18000, 0, 300, 0, 1500)}}
	bobLine := hub.PartnerReport{PartnerID: bob.ID, PartnerName: "Bob", PartnerCode: "bob", Clicks: 1,
		Currencies: []hub.CurrencyReport{cur("USD", 1, 2000, 1000, 0, 0, 100)}}
	carolLine := hub.PartnerReport{PartnerID: carol.ID, PartnerName: "Carol", PartnerCode: "carol", Clicks: 1,
		Currencies: []hub.CurrencyReport{}}
	cases := []struct {
		name      string
		partnerID string
		want      []hub.PartnerReport
	}{
		{"every partner with activity", "", []hub.PartnerReport{aliceLine, bobLine, carolLine}},
		{"one partner", bob.ID, []hub.PartnerReport{bobLine}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep, err := hub.PartnerReports(f.ctx, f.st, hub.DefaultProgramID, hub.Filter{Since: since, Until: until, PartnerID: c.partnerID})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, rep.Data); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}

	e := ledgerServer(f)
	q := url.Values{"since": {since.Format(time.RFC3339)}, "until": {until.Format(time.RFC3339)}}
	t.Run("json", func(t *testing.T) {
		rec := call(e, http.MethodGet, "/api/v1/reports/partners?"+q.Encode(), "viewer-key")
		var rep hub.Report
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("report: %d %s", rec.Code, rec.Body)
		}
		if len(rep.Data) != 3 || rep.Since == nil || !rep.Since.Equal(since) || !rep.Until.Equal(until) {
			t.Errorf("report = %s", rec.Body)
		}
	})
	t.Run("csv", func(t *testing.T) {
		q := url.Values{"since": q["since"], "until": q["until"], "format": {"csv"}}
		rec := call(e, http.MethodGet, "/api/v1/reports/partners?"+q.Encode(), "viewer-key")
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/csv; charset=utf-8" {
			t.Fatalf("report: %d %s", rec.Code, rec.Header().Get("Content-Type"))
		}
		want := "partner_id,partner_code,partner_name,clicks,currency,conversions,revenue,refunded," +
			"commission_pending,commission_held,commission_approved,commission_paid,commission_net\n" +
			alice.ID + ",alice,Alice,3,EUR,1,40.00,0.00,0.00,0.00,4.00,0.00,4.00\n" +
			alice.ID + ",alice,Alice,3,USD,3,180.00,0.00,3.00,0.00,0.00,15.00,18.00\n" +
			bob.ID + ",bob,Bob,1,USD,1,20.00,10.00,0.00,0.00,0.00,1.00,1.00\n" +
			carol.ID + ",carol,Carol,1,,0,,,,,,,\n"
		if diff := cmp.Diff(want, rec.Body.String()); diff != "" {
			t.Errorf("CSV (-want +got):\n%s", diff)
		}
	})
	t.Run("bad format", func(t *testing.T) {
		rec := call(e, http.MethodGet, "/api/v1/reports/partners?format=xml", "viewer-key")
		if rec.Code != http.StatusUnprocessableEntity {
			t.Errorf("format=xml: %d, want 422", rec.Code)
		}
	})
}
