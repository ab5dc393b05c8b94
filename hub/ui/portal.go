package ui

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
)

// portalPage is a partner's home: its referral link, report, recent
// conversions and webhook endpoints. Every list is what the API shows the
// partner key, which is its own rows only.
func (u *UI) portalPage(c echo.Context, s *session) error {
	if s.role != rolePartner {
		return c.Redirect(http.StatusFound, "/ui/reports")
	}
	var rep report
	if err := u.do(c, s, http.MethodGet, "/reports/partners", nil, nil, &rep); err != nil {
		return u.fail(c, "Partner portal", err)
	}
	var convs list[conversion]
	_ = u.do(c, s, http.MethodGet, "/conversions", url.Values{"limit": {"20"}}, nil, &convs)
	var eps list[endpoint]
	_ = u.do(c, s, http.MethodGet, "/endpoints", url.Values{"limit": {"100"}}, nil, &eps)
	var row *reportRow
	if len(rep.Data) > 0 {
		row = &rep.Data[0]
	}
	link := ""
	if s.partnerCode != "" {
		link = u.publicBase(c) + "/r/" + url.PathEscape(s.partnerCode)
	}
	return u.render(c, http.StatusOK, "portal", &view{Title: "Partner portal", Nav: "portal", Live: true,
		Data: map[string]any{"Link": link, "Row": row, "Conversions": convs.Data, "Endpoints": eps.Data,
			"Charts": reportCharts(rep.Data), "Names": map[string]string{s.partnerID: s.partnerName}}})
}
