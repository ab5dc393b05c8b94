package ui

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// publicBase is where referral links point: Config.PublicURL, else this
// server.
func (u *UI) publicBase(c echo.Context) string {
	if u.cfg.PublicURL != "" {
		return u.cfg.PublicURL
	}
	return c.Scheme() + "://" + c.Request().Host
}

func (u *UI) partnersPage(c echo.Context, s *session) error {
	var l list[partner]
	q := url.Values{"limit": {"100"}}
	setIf(q, "cursor", c.QueryParam("cursor"))
	if err := u.do(c, s, http.MethodGet, "/partners", q, nil, &l); err != nil {
		return u.fail(c, "Partners", err)
	}
	var promos list[promoCode]
	_ = u.do(c, s, http.MethodGet, "/promo-codes", url.Values{"limit": {"200"}}, nil, &promos)
	byPartner := map[string][]string{}
	for _, p := range promos.Data {
		byPartner[p.PartnerID] = append(byPartner[p.PartnerID], p.Code)
	}
	return u.render(c, http.StatusOK, "partners", &view{Title: "Partners", Nav: "partners", Public: u.publicBase(c),
		Data: map[string]any{"Partners": l.Data, "Promos": byPartner, "Next": next(c, l.NextCursor)}})
}

func (u *UI) createPartner(c echo.Context, s *session) error {
	in := map[string]any{"name": strings.TrimSpace(c.FormValue("name")), "code": strings.TrimSpace(c.FormValue("code"))}
	if e := strings.TrimSpace(c.FormValue("email")); e != "" {
		in["email"] = e
	}
	var p partner
	err := u.do(c, s, http.MethodPost, "/partners", nil, in, &p)
	return u.done(c, s, "/ui/partners", "Partner "+p.Name+" created with code "+p.Code+".", err)
}

// partnerNames maps partner ids to names for the lists (staff only).
func (u *UI) partnerNames(c echo.Context, s *session) map[string]string {
	names := map[string]string{}
	if s.role == rolePartner {
		names[s.partnerID] = s.partnerName
		return names
	}
	var l list[partner]
	if u.do(c, s, http.MethodGet, "/partners", url.Values{"limit": {"200"}}, nil, &l) == nil {
		for _, p := range l.Data {
			names[p.ID] = p.Name + " (" + p.Code + ")"
		}
	}
	return names
}

func (u *UI) conversionsPage(c echo.Context, s *session) error {
	q := url.Values{"limit": {"50"}}
	setIf(q, "partner_id", c.QueryParam("partner_id"))
	setIf(q, "since", u.sinceTime(c.QueryParam("since")))
	setIf(q, "cursor", c.QueryParam("cursor"))
	var l list[conversion]
	if err := u.do(c, s, http.MethodGet, "/conversions", q, nil, &l); err != nil {
		return u.fail(c, "Conversions", err)
	}
	return u.render(c, http.StatusOK, "conversions", &view{Title: "Conversions", Nav: "conversions", Live: true,
		Data: map[string]any{"Conversions": l.Data, "Names": u.partnerNames(c, s), "Next": next(c, l.NextCursor),
			"Since": sinceChoices, "Filter": filterForm{Since: c.QueryParam("since")}, "PartnerID": c.QueryParam("partner_id")}})
}

// conversionDetail shows a conversion with its commissions and their
// ledger entries. The commission list has no conversion filter: it is
// read for the conversion's partner and filtered here.
func (u *UI) conversionDetail(c echo.Context, s *session) error {
	var cv conversion
	if err := u.do(c, s, http.MethodGet, "/conversions/"+url.PathEscape(c.Param("id")), nil, nil, &cv); err != nil {
		return u.fail(c, "Conversion", err)
	}
	var comms []commission
	if cv.PartnerID != "" {
		q := url.Values{"limit": {"200"}, "partner_id": {cv.PartnerID}}
		for i := 0; i < 20; i++ {
			var l list[commission]
			if u.do(c, s, http.MethodGet, "/commissions", q, nil, &l) != nil {
				break
			}
			for _, cm := range l.Data {
				if cm.ConversionID == cv.ID {
					comms = append(comms, cm)
				}
			}
			if l.NextCursor == "" {
				break
			}
			q.Set("cursor", l.NextCursor)
		}
	}
	return u.render(c, http.StatusOK, "conversion", &view{Title: "Conversion " + cv.ID, Nav: "conversions",
		Data: map[string]any{"C": cv, "Commissions": comms, "Names": u.partnerNames(c, s)}})
}

func (u *UI) rulesPage(c echo.Context, s *session) error {
	var l list[rule]
	if err := u.do(c, s, http.MethodGet, "/rules", nil, nil, &l); err != nil {
		return u.fail(c, "Rules", err)
	}
	return u.render(c, http.StatusOK, "rules", &view{Title: "Commission rules", Nav: "rules",
		Data: map[string]any{"Rules": l.Data, "Names": u.partnerNames(c, s)}})
}

func (u *UI) payoutsPage(c echo.Context, s *session) error {
	var l list[payout]
	q := url.Values{"limit": {"50"}}
	setIf(q, "cursor", c.QueryParam("cursor"))
	if err := u.do(c, s, http.MethodGet, "/payouts", q, nil, &l); err != nil {
		return u.fail(c, "Payouts", err)
	}
	return u.render(c, http.StatusOK, "payouts", &view{Title: "Payouts", Nav: "payouts",
		Data: map[string]any{"Payouts": l.Data, "Next": next(c, l.NextCursor)}})
}

func (u *UI) createPayout(c echo.Context, s *session) error {
	var p payout
	if err := u.do(c, s, http.MethodPost, "/payouts", nil, nil, &p); err != nil {
		return u.done(c, s, "/ui/payouts", "", err)
	}
	return u.back(c, s, "/ui/payouts/"+url.PathEscape(p.ID), flash{Msg: "Payout run drafted. Export it, pay it, then confirm it."})
}

func (u *UI) payoutDetail(c echo.Context, s *session) error {
	var p payout
	if err := u.do(c, s, http.MethodGet, "/payouts/"+url.PathEscape(c.Param("id")), nil, nil, &p); err != nil {
		return u.fail(c, "Payout run", err)
	}
	return u.render(c, http.StatusOK, "payout", &view{Title: "Payout run " + p.ID, Nav: "payouts", Data: p})
}

func (u *UI) confirmPayout(c echo.Context, s *session) error {
	id := c.Param("id")
	err := u.do(c, s, http.MethodPost, "/payouts/"+url.PathEscape(id)+"/confirm", nil, nil, nil)
	return u.done(c, s, "/ui/payouts/"+url.PathEscape(id), "Payout run confirmed: its commissions are paid.", err)
}

// passCSV answers with the API's CSV as a download.
func (u *UI) passCSV(c echo.Context, s *session, path string, q url.Values, name string) error {
	r := u.call(c, s.key, http.MethodGet, path, q, nil)
	if r.Status != http.StatusOK {
		return u.fail(c, "Export", problemOf(r))
	}
	c.Response().Header().Set(echo.HeaderContentDisposition, `attachment; filename="`+name+`"`)
	return c.Blob(http.StatusOK, "text/csv; charset=utf-8", r.Body)
}

func (u *UI) exportPayout(c echo.Context, s *session) error {
	id := c.Param("id")
	return u.passCSV(c, s, "/payouts/"+url.PathEscape(id)+"/export.csv", nil, "payout-"+safeName(id)+".csv")
}

// reportQuery reads the report form: a partner and a period.
func (u *UI) reportQuery(c echo.Context) url.Values {
	q := url.Values{}
	setIf(q, "partner_id", c.QueryParam("partner_id"))
	for _, k := range []string{"since", "until"} {
		if v := c.QueryParam(k); v != "" {
			if t, err := time.Parse("2006-01-02", v); err == nil {
				if k == "until" {
					t = t.AddDate(0, 0, 1)
				}
				q.Set(k, t.UTC().Format(time.RFC3339))
			}
		}
	}
	return q
}

func (u *UI) reportsPage(c echo.Context, s *session) error {
	q := u.reportQuery(c)
	var rep report
	if err := u.do(c, s, http.MethodGet, "/reports/partners", q, nil, &rep); err != nil {
		return u.fail(c, "Reports", err)
	}
	var partners []partner
	if s.role != rolePartner {
		var l list[partner]
		_ = u.do(c, s, http.MethodGet, "/partners", url.Values{"limit": {"200"}}, nil, &l)
		partners = l.Data
	}
	return u.render(c, http.StatusOK, "reports", &view{Title: "Reports", Nav: "reports",
		Data: map[string]any{"Report": rep, "Charts": reportCharts(rep.Data), "Partners": partners,
			"PartnerID": c.QueryParam("partner_id"), "Since": c.QueryParam("since"), "Until": c.QueryParam("until"),
			"Export": "/ui/reports/export.csv?" + c.QueryString()}})
}

func (u *UI) exportReport(c echo.Context, s *session) error {
	q := u.reportQuery(c)
	q.Set("format", "csv")
	return u.passCSV(c, s, "/reports/partners", q, "partner-report.csv")
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}
