package hub

import (
	"cmp"
	"context"
	"encoding/csv"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// ActivityTotals is one partner's activity in one currency over a period:
// the live conversions that occurred in it and the commissions on them.
type ActivityTotals struct {
	PartnerID     string
	Currency      string
	Conversions   int64
	RevenueMinor  int64
	RefundedMinor int64
	// ByStatus is the net of the commissions in each status.
	ByStatus map[string]int64
}

// ReportStore is what partner reports read. *store.DB implements it.
type ReportStore interface {
	ClickStore
	ListPartners(ctx context.Context, programID string, p Page) ([]*Partner, error)
	// PartnerActivity totals, per partner and currency, the live
	// (non-test) attributed conversions that occurred in [f.Since,
	// f.Until) and the net of their commissions per status.
	// Filter.PartnerID applies.
	PartnerActivity(ctx context.Context, programID string, f Filter) ([]ActivityTotals, error)
}

// PartnerReport is one partner's line of a report.
type PartnerReport struct {
	PartnerID   string `json:"partner_id"`
	PartnerName string `json:"partner_name"`
	PartnerCode string `json:"partner_code"`
	// Clicks counts every click of the partner in the period: clicks
	// have no currency.
	Clicks     int64            `json:"clicks"`
	Currencies []CurrencyReport `json:"currencies"`
}

// CurrencyReport is a partner's conversions and commissions in one
// currency. Amounts are minor units of Currency.
type CurrencyReport struct {
	Currency      string `json:"currency"`
	Conversions   int64  `json:"conversions"`
	RevenueMinor  int64  `json:"revenue_minor"`
	RefundedMinor int64  `json:"refunded_minor"`
	Commissions   struct {
		PendingMinor  int64 `json:"pending_minor"`
		HeldMinor     int64 `json:"held_minor"`
		ApprovedMinor int64 `json:"approved_minor"`
		PaidMinor     int64 `json:"paid_minor"`
		NetMinor      int64 `json:"net_minor"`
	} `json:"commissions"`
}

// Report is the partner report of one period.
type Report struct {
	Since *time.Time      `json:"since,omitempty"`
	Until *time.Time      `json:"until,omitempty"`
	Data  []PartnerReport `json:"data"`
}

// PartnerReports builds the report of a period: per partner, the clicks,
// and per currency the conversions, revenue (gross), refunds and
// commissions by status. Test-mode conversions are left out. Partners
// with neither a click nor a conversion in the period are left out.
func PartnerReports(ctx context.Context, st ReportStore, programID string, f Filter) (*Report, error) {
	byPartner := map[string]*PartnerReport{}
	get := func(id string) *PartnerReport {
		r := byPartner[id]
		if r == nil {
			r = &PartnerReport{PartnerID: id, Currencies: []CurrencyReport{}}
			byPartner[id] = r
		}
		return r
	}
	cf := Filter{PartnerID: f.PartnerID, Since: f.Since, Until: f.Until}
	for pg := (Page{Limit: 200}); ; {
		cs, err := st.ListClicks(ctx, programID, cf, pg)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			get(c.PartnerID).Clicks++
		}
		if len(cs) < pg.Limit {
			break
		}
		pg.Cursor = cs[len(cs)-1].ID
	}
	acts, err := st.PartnerActivity(ctx, programID, cf)
	if err != nil {
		return nil, err
	}
	for _, a := range acts {
		cr := CurrencyReport{Currency: a.Currency, Conversions: a.Conversions, RevenueMinor: a.RevenueMinor, RefundedMinor: a.RefundedMinor}
		for status, v := range a.ByStatus {
			switch status {
			case CommissionPending:
				cr.Commissions.PendingMinor += v
			case CommissionHeld:
				cr.Commissions.HeldMinor += v
			case CommissionApproved:
				cr.Commissions.ApprovedMinor += v
			case CommissionPaid:
				cr.Commissions.PaidMinor += v
			}
			cr.Commissions.NetMinor += v
		}
		r := get(a.PartnerID)
		r.Currencies = append(r.Currencies, cr)
	}
	for pg := (Page{Limit: 200}); len(byPartner) > 0; {
		ps, err := st.ListPartners(ctx, programID, pg)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if r := byPartner[p.ID]; r != nil {
				r.PartnerName, r.PartnerCode = p.Name, p.Code
			}
		}
		if len(ps) < pg.Limit {
			break
		}
		pg.Cursor = ps[len(ps)-1].ID
	}
	rep := &Report{Data: []PartnerReport{}}
	if !f.Since.IsZero() {
		rep.Since = &f.Since
	}
	if !f.Until.IsZero() {
		rep.Until = &f.Until
	}
	for _, r := range byPartner {
		slices.SortFunc(r.Currencies, func(a, b CurrencyReport) int { return cmp.Compare(a.Currency, b.Currency) })
		rep.Data = append(rep.Data, *r)
	}
	slices.SortFunc(rep.Data, func(a, b PartnerReport) int { return cmp.Compare(a.PartnerID, b.PartnerID) })
	return rep, nil
}

// ReportCSVHeader is the header row of a partner report in CSV.
var ReportCSVHeader = []string{
	"partner_id", "partner_code", "partner_name", "clicks", "currency", "conversions", "revenue", "refunded",
	"commission_pending", "commission_held", "commission_approved", "commission_paid", "commission_net",
}

// WriteReportCSV writes a report as CSV with a header row: one row per
// partner and currency (one row with an empty currency for a partner with
// clicks only), amounts as decimal strings in the currency's digits. A
// partner's clicks, which have no currency, repeat on each of its rows.
func WriteReportCSV(w *csv.Writer, rep *Report) error {
	if err := w.Write(ReportCSVHeader); err != nil {
		return err
	}
	for _, r := range rep.Data {
		head := []string{r.PartnerID, csvText(r.PartnerCode), csvText(r.PartnerName), strconv.FormatInt(r.Clicks, 10)}
		if len(r.Currencies) == 0 {
			if err := w.Write(append(head, "", "0", "", "", "", "", "", "", "")); err != nil {
				return err
			}
			continue
		}
		for _, c := range r.Currencies {
			m := func(v int64) string { return FormatMinor(v, c.Currency) }
			rec := append(slices.Clone(head), c.Currency, strconv.FormatInt(c.Conversions, 10),
				m(c.RevenueMinor), m(c.RefundedMinor), m(c.Commissions.PendingMinor), m(c.Commissions.HeldMinor),
				m(c.Commissions.ApprovedMinor), m(c.Commissions.PaidMinor), m(c.Commissions.NetMinor))
			if err := w.Write(rec); err != nil {
				return err
			}
		}
	}
	w.Flush()
	return w.Error()
}

// MountReports adds the report routes to g, which must already
// authenticate (Auth).
//
//	GET /reports/partners?since=&until=&partner_id=&format=json|csv
func MountReports(g *echo.Group, st ReportStore) {
	g.GET("/reports/partners", func(c echo.Context) error {
		f, err := FilterOf(c)
		if err != nil {
			return err
		}
		format := c.QueryParam("format")
		if format != "" && format != "json" && format != "csv" {
			return Invalid(map[string]string{"format": "must be json or csv"})
		}
		rep, err := PartnerReports(c.Request().Context(), st, Caller(c).ProgramID, f)
		if err != nil {
			return err
		}
		if format == "csv" {
			return writeCSV(c, "partners.csv", func(w *csv.Writer) error { return WriteReportCSV(w, rep) })
		}
		return c.JSON(http.StatusOK, rep)
	}, StaffOrPartner)
}
