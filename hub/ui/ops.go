package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// testEvents is the payment test event offered first per provider; the
// form accepts any event the API's trigger supports.
var testEvents = map[string]string{
	"stripe":      "checkout.session.completed",
	"shopify":     "orders/paid",
	"woocommerce": "order.created",
	"paddle":      "transaction.completed",
}

type sourceRow struct {
	source
	TestEvent string
}

func (u *UI) sourcesPage(c echo.Context, s *session) error {
	var l list[source]
	if err := u.do(c, s, http.MethodGet, "/sources", url.Values{"limit": {"200"}}, nil, &l); err != nil {
		return u.fail(c, "Sources", err)
	}
	rows := make([]sourceRow, len(l.Data))
	for i, src := range l.Data {
		rows[i] = sourceRow{source: src, TestEvent: testEvents[src.Provider]}
	}
	return u.render(c, http.StatusOK, "sources", &view{Title: "Sources", Nav: "sources", Data: rows})
}

func (u *UI) triggerSource(c echo.Context, s *session) error {
	in := map[string]any{"event": strings.TrimSpace(c.FormValue("event"))}
	if code := strings.TrimSpace(c.FormValue("partner_code")); code != "" {
		in["partner_code"] = code
	}
	var res triggerResult
	err := u.do(c, s, http.MethodPost, "/sources/"+url.PathEscape(c.Param("id"))+"/trigger", nil, in, &res)
	if err != nil {
		return u.done(c, s, "/ui/sources", "", err)
	}
	if res.InboundStatus < 200 || res.InboundStatus > 299 {
		return u.back(c, s, "/ui/sources", flash{Err: fmt.Sprintf("Test event %s refused by /in (%d): %s", res.EventID, res.InboundStatus, res.InboundError)})
	}
	return u.back(c, s, "/ui/sources", flash{Msg: fmt.Sprintf("Test event %s (%s) accepted as inbound event %s.", res.EventID, res.Event, res.InboundEventID)})
}

// filterForm is the state of a list's filter form.
type filterForm struct {
	Status, EndpointID, EventType, Since, Cursor string
}

// sinceChoices are the time windows the filter forms offer.
var sinceChoices = []struct{ Value, Label string }{
	{"", "any time"}, {"1h", "last hour"}, {"24h", "last 24 hours"}, {"168h", "last 7 days"}, {"720h", "last 30 days"},
}

// sinceTime turns a window ("24h") into an RFC 3339 time, or "".
func (u *UI) sinceTime(w string) string {
	d, err := time.ParseDuration(w)
	if err != nil || d <= 0 {
		return ""
	}
	return u.cfg.Now().Add(-d).UTC().Format(time.RFC3339)
}

func (u *UI) inboundPage(c echo.Context, s *session) error {
	f := filterForm{Status: c.QueryParam("status"), Since: c.QueryParam("since"), Cursor: c.QueryParam("cursor")}
	q := url.Values{"limit": {"50"}}
	setIf(q, "status", f.Status)
	setIf(q, "since", u.sinceTime(f.Since))
	setIf(q, "cursor", f.Cursor)
	var l list[inboundEvent]
	if err := u.do(c, s, http.MethodGet, "/inbound-events", q, nil, &l); err != nil {
		return u.fail(c, "Inbound events", err)
	}
	return u.render(c, http.StatusOK, "inbound", &view{Title: "Inbound events", Nav: "inbound", Live: true,
		Data: map[string]any{"Filter": f, "Events": l.Data, "Next": next(c, l.NextCursor), "Since": sinceChoices}})
}

func (u *UI) inboundDetail(c echo.Context, s *session) error {
	var ev inboundEvent
	if err := u.do(c, s, http.MethodGet, "/inbound-events/"+url.PathEscape(c.Param("id")), nil, nil, &ev); err != nil {
		return u.fail(c, "Inbound event", err)
	}
	body := ""
	if s.role == roleAdmin {
		body = maskBody(ev.Body, ev.BodyEncoding)
	}
	return u.render(c, http.StatusOK, "inbound_detail", &view{Title: "Inbound event " + ev.ID, Nav: "inbound",
		Data: map[string]any{"Event": ev, "Body": body}})
}

func (u *UI) reprocessInbound(c echo.Context, s *session) error {
	id := c.Param("id")
	err := u.do(c, s, http.MethodPost, "/inbound-events/"+url.PathEscape(id)+"/reprocess", nil, nil, nil)
	return u.done(c, s, "/ui/inbound/"+url.PathEscape(id), "Reprocessing queued.", err)
}

func (u *UI) deliveryQuery(c echo.Context) (filterForm, url.Values) {
	f := filterForm{Status: c.QueryParam("status"), EndpointID: c.QueryParam("endpoint_id"),
		EventType: c.QueryParam("event_type"), Since: c.QueryParam("since"), Cursor: c.QueryParam("cursor")}
	q := url.Values{}
	setIf(q, "status", f.Status)
	setIf(q, "endpoint_id", f.EndpointID)
	setIf(q, "event_type", f.EventType)
	setIf(q, "since", u.sinceTime(f.Since))
	return f, q
}

func (u *UI) deliveriesPage(c echo.Context, s *session) error {
	f, q := u.deliveryQuery(c)
	q.Set("limit", "50")
	setIf(q, "cursor", f.Cursor)
	var l list[delivery]
	if err := u.do(c, s, http.MethodGet, "/deliveries", q, nil, &l); err != nil {
		return u.fail(c, "Deliveries", err)
	}
	var eps list[endpoint]
	_ = u.do(c, s, http.MethodGet, "/endpoints", url.Values{"limit": {"200"}}, nil, &eps)
	return u.render(c, http.StatusOK, "deliveries", &view{Title: "Deliveries", Nav: "deliveries", Live: true,
		Data: map[string]any{"Filter": f, "Deliveries": l.Data, "Endpoints": eps.Data, "Next": next(c, l.NextCursor),
			"Since": sinceChoices, "EventTypes": eventTypes}})
}

var eventTypes = []string{"conversion.created", "conversion.refunded", "conversion.disputed", "commission.created",
	"commission.approved", "commission.reversed", "commission.paid", "endpoint.disabled", "ping"}

// maxCount bounds how many pages the bulk retry confirmation counts.
const maxCount = 50

// bulkRetryConfirm counts, from the list API, the failed deliveries a
// bulk retry would requeue and asks to confirm.
func (u *UI) bulkRetryConfirm(c echo.Context, s *session) error {
	f, q := u.deliveryQuery(c)
	if f.EndpointID == "" && f.Since == "" {
		return u.back(c, s, "/ui/deliveries?status=failed", flash{Err: "Choose an endpoint or a time window to retry in bulk."})
	}
	q.Set("status", "failed")
	q.Set("limit", "200")
	n, more := 0, false
	for i := 0; ; i++ {
		var l list[delivery]
		if err := u.do(c, s, http.MethodGet, "/deliveries", q, nil, &l); err != nil {
			return u.fail(c, "Bulk retry", err)
		}
		n += len(l.Data)
		if l.NextCursor == "" {
			break
		}
		if i+1 == maxCount {
			more = true
			break
		}
		q.Set("cursor", l.NextCursor)
	}
	return u.render(c, http.StatusOK, "bulk_retry", &view{Title: "Retry failed deliveries", Nav: "deliveries",
		Data: map[string]any{"Filter": f, "Count": n, "More": more, "SinceAt": q.Get("since")}})
}

func (u *UI) bulkRetry(c echo.Context, s *session) error {
	in := map[string]string{"status": "failed"}
	setIfMap(in, "endpoint_id", c.FormValue("endpoint_id"))
	setIfMap(in, "event_type", c.FormValue("event_type"))
	setIfMap(in, "since", c.FormValue("since_at"))
	var res struct {
		Requeued int `json:"requeued"`
	}
	err := u.do(c, s, http.MethodPost, "/deliveries/retry", nil, in, &res)
	return u.done(c, s, "/ui/deliveries?status=pending", fmt.Sprintf("Requeued %d deliveries.", res.Requeued), err)
}

func (u *UI) deliveryDetail(c echo.Context, s *session) error {
	var d delivery
	if err := u.do(c, s, http.MethodGet, "/deliveries/"+url.PathEscape(c.Param("id")), nil, nil, &d); err != nil {
		return u.fail(c, "Delivery", err)
	}
	var ep endpoint
	_ = u.do(c, s, http.MethodGet, "/endpoints/"+url.PathEscape(d.EndpointID), nil, nil, &ep)
	return u.render(c, http.StatusOK, "delivery", &view{Title: "Delivery " + d.ID, Nav: "deliveries", Live: d.Status == "pending",
		Data: map[string]any{"D": d, "Endpoint": ep}})
}

func (u *UI) retryDelivery(c echo.Context, s *session) error {
	id := c.Param("id")
	var res struct {
		Requeued bool `json:"requeued"`
	}
	err := u.do(c, s, http.MethodPost, "/deliveries/"+url.PathEscape(id)+"/retry", nil, nil, &res)
	msg := "Retry queued."
	if err == nil && !res.Requeued {
		msg = "The delivery is pending already: its next attempt is queued."
	}
	return u.done(c, s, "/ui/deliveries/"+url.PathEscape(id), msg, err)
}

func (u *UI) replayEvent(c echo.Context, s *session) error {
	var d delivery
	err := u.do(c, s, http.MethodPost, "/events/"+url.PathEscape(c.Param("id"))+"/replay", nil,
		map[string]string{"endpoint_id": c.FormValue("endpoint_id")}, &d)
	if err != nil {
		return u.done(c, s, "/ui/deliveries", "", err)
	}
	return u.back(c, s, "/ui/deliveries/"+url.PathEscape(d.ID), flash{Msg: "Event replayed as a new delivery."})
}

func (u *UI) endpointsPage(c echo.Context, s *session) error {
	var l list[endpoint]
	if err := u.do(c, s, http.MethodGet, "/endpoints", url.Values{"limit": {"200"}}, nil, &l); err != nil {
		return u.fail(c, "Endpoints", err)
	}
	return u.render(c, http.StatusOK, "endpoints", &view{Title: "Endpoints", Nav: "endpoints", Data: map[string]any{"Endpoints": l.Data}})
}

// endpointsHome is where endpoint forms return to.
func endpointsHome(s *session) string {
	if s.role == rolePartner {
		return "/ui/portal#endpoints"
	}
	return "/ui/endpoints"
}

func (u *UI) createEndpoint(c echo.Context, s *session) error {
	in := map[string]any{"url": strings.TrimSpace(c.FormValue("url"))}
	if d := strings.TrimSpace(c.FormValue("description")); d != "" {
		in["description"] = d
	}
	var ep endpoint
	if err := u.do(c, s, http.MethodPost, "/endpoints", nil, in, &ep); err != nil {
		return u.done(c, s, endpointsHome(s), "", err)
	}
	return u.back(c, s, endpointsHome(s), flash{Msg: "Endpoint " + ep.ID + " created. Its signing secret is shown once:", Secret: ep.Secret})
}

func (u *UI) enableEndpoint(c echo.Context, s *session) error {
	err := u.do(c, s, http.MethodPost, "/endpoints/"+url.PathEscape(c.Param("id"))+"/enable", nil, nil, nil)
	return u.done(c, s, endpointsHome(s), "Endpoint re-enabled. Retry its failed deliveries from Deliveries.", err)
}

func (u *UI) rotateEndpoint(c echo.Context, s *session) error {
	var ep endpoint
	if err := u.do(c, s, http.MethodPost, "/endpoints/"+url.PathEscape(c.Param("id"))+"/rotate-secret", nil,
		map[string]any{}, &ep); err != nil {
		return u.done(c, s, endpointsHome(s), "", err)
	}
	return u.back(c, s, endpointsHome(s), flash{Msg: "Secret of " + ep.ID + " rotated; the previous one stays valid for a grace period. The new secret is shown once:", Secret: ep.Secret})
}

func (u *UI) pingEndpoint(c echo.Context, s *session) error {
	var res struct {
		Attempt *attempt `json:"attempt"`
	}
	err := u.do(c, s, http.MethodPost, "/endpoints/"+url.PathEscape(c.Param("id"))+"/ping", nil, nil, &res)
	msg := "Ping queued."
	if err == nil && res.Attempt != nil {
		msg = fmt.Sprintf("Ping answered %d in %d ms.", res.Attempt.StatusCode, res.Attempt.LatencyMS)
		if res.Attempt.Error != "" {
			msg = "Ping failed: " + res.Attempt.Error
		}
	}
	return u.done(c, s, endpointsHome(s), msg, err)
}

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

func setIfMap(m map[string]string, k, v string) {
	if v = strings.TrimSpace(v); v != "" {
		m[k] = v
	}
}

// next is the URL of the next page of a list, or "".
func next(c echo.Context, cursor string) string {
	if cursor == "" {
		return ""
	}
	q := c.QueryParams()
	q.Set("cursor", cursor)
	return c.Request().URL.Path + "?" + q.Encode()
}
