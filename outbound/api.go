package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/metrics"
)

// EventTypes is the outbound event catalog.
var EventTypes = []string{
	"conversion.created",
	"conversion.refunded",
	"conversion.disputed",
	"commission.created",
	"commission.approved",
	"commission.reversed",
	"commission.paid",
	"endpoint.disabled",
	"ping",
}

// DefaultGracePeriod is how long the previous secret keeps signing after a
// rotation when the call does not say.
const DefaultGracePeriod = 24 * time.Hour

// maxGracePeriod bounds a rotation's grace period.
const maxGracePeriod = 7 * 24 * time.Hour

// APIConfig configures the routes Mount adds.
type APIConfig struct {
	// Queue queues the attempts that retries and replays make due.
	// Required.
	Queue hub.Queue
	// Deliver performs one delivery attempt at once and records it
	// (Dispatcher.Deliver); pings use it. Required.
	Deliver func(ctx context.Context, deliveryID string, attempt int) error
	// Now gives the time of changes. Nil means time.Now.
	Now func() time.Time
	// PingTimeout bounds a ping's attempt, made while the caller waits.
	// Zero means 60 seconds.
	PingTimeout time.Duration
	// Breakers reports the circuit breaker state of the endpoints this
	// process has delivered to (Dispatcher.BreakerStates); optional.
	Breakers func() map[string]int
}

// endpointWithBreaker is an endpoint as the API shows it: with its circuit
// breaker's state in this process ("closed", "half_open" or "open";
// "closed" for an endpoint it has not delivered to).
type endpointWithBreaker struct {
	*hub.Endpoint
	Breaker string `json:"breaker"`
}

func (a *api) views(eps []*hub.Endpoint) []endpointWithBreaker {
	var states map[string]int
	if a.breakers != nil {
		states = a.breakers()
	}
	out := make([]endpointWithBreaker, len(eps))
	for i, ep := range eps {
		out[i] = endpointWithBreaker{Endpoint: ep, Breaker: breakerName(states[ep.ID])}
	}
	return out
}

func breakerName(state int) string {
	switch state {
	case metrics.BreakerHalfOpen:
		return "half_open"
	case metrics.BreakerOpen:
		return "open"
	}
	return "closed"
}

// Mount adds the endpoint, delivery and event routes to g. The caller has
// already applied hub.Auth to g; errors are returned for hub.ErrorHandler.
// Writes need the admin role; retries, replays, pings and re-enabling an
// endpoint may also be done by ops.
//
//	POST   /endpoints                    create an endpoint; the secret is shown once
//	GET    /endpoints                    list endpoints
//	GET    /endpoints/:id                one endpoint
//	PATCH  /endpoints/:id                change the fields given
//	DELETE /endpoints/:id                delete it with its deliveries
//	POST   /endpoints/:id/rotate-secret  new secret, shown once; the old one signs during a grace period
//	POST   /endpoints/:id/enable         re-enable (ops)
//	POST   /endpoints/:id/ping           send a ping event now and return the attempt (ops)
//	GET    /deliveries                   list deliveries with their attempts
//	GET    /deliveries/:id               one delivery with its attempts
//	POST   /deliveries/:id/retry         retry one delivery now (ops)
//	POST   /deliveries/retry             retry every matching failed delivery (ops)
//	GET    /events                       list outbound events
//	POST   /events/:id/replay            deliver an event again to an endpoint (ops)
func Mount(g *echo.Group, st OperatorStore, cfg APIConfig) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PingTimeout == 0 {
		cfg.PingTimeout = 60 * time.Second
	}
	a := &api{st: st, q: cfg.Queue, deliver: cfg.Deliver, now: cfg.Now, pingTimeout: cfg.PingTimeout, breakers: cfg.Breakers}
	// Partner keys manage their own partner's endpoints, as a partner
	// portal does: adminOrOwner lets them through to endpoints of their
	// partner only.
	adminOrOwner := []echo.MiddlewareFunc{hub.RequireRole(hub.RoleAdmin, hub.RolePartner), a.ownEndpoint}
	opsOrOwner := []echo.MiddlewareFunc{hub.RequireRole(hub.RoleAdmin, hub.RoleOps, hub.RolePartner), a.ownEndpoint}
	readOrOwner := []echo.MiddlewareFunc{hub.StaffOrPartner, a.ownEndpoint}
	g.POST("/endpoints", a.createEndpoint, hub.RequireRole(hub.RoleAdmin, hub.RolePartner))
	g.GET("/endpoints", a.listEndpoints, hub.StaffOrPartner)
	g.GET("/endpoints/:id", a.getEndpoint, readOrOwner...)
	g.PATCH("/endpoints/:id", a.patchEndpoint, adminOrOwner...)
	g.DELETE("/endpoints/:id", a.deleteEndpoint, adminOrOwner...)
	g.POST("/endpoints/:id/rotate-secret", a.rotateSecret, adminOrOwner...)
	g.POST("/endpoints/:id/enable", a.enableEndpoint, opsOrOwner...)
	g.POST("/endpoints/:id/ping", a.ping, opsOrOwner...)
	g.GET("/deliveries", a.listDeliveries, hub.Staff)
	g.POST("/deliveries/retry", a.retryDeliveries, hub.OpsOrAdmin)
	g.GET("/deliveries/:id", a.getDelivery, hub.Staff)
	g.POST("/deliveries/:id/retry", a.retryDelivery, hub.OpsOrAdmin)
	g.GET("/events", a.listEvents, hub.Staff)
	g.POST("/events/:id/replay", a.replayEvent, hub.OpsOrAdmin)
}

type api struct {
	st          OperatorStore
	q           hub.Queue
	deliver     func(ctx context.Context, deliveryID string, attempt int) error
	now         func() time.Time
	pingTimeout time.Duration
	breakers    func() map[string]int
}

// createdEndpoint is the answer to a creation or a rotation: the only time
// the secret is shown.
type createdEndpoint struct {
	*hub.Endpoint
	Secret string `json:"secret"`
}

// endpointInput is the body of a creation or a PATCH; nil fields are
// left as they are (a creation requires url).
type endpointInput struct {
	URL         *string            `json:"url"`
	Description *string            `json:"description"`
	EventTypes  *[]string          `json:"event_types"`
	PartnerID   *string            `json:"partner_id"`
	Headers     *map[string]string `json:"headers"`
	RateLimit   *int               `json:"rate_limit"`
	TimeoutMS   *int               `json:"timeout_ms"`
	MaxInFlight *int               `json:"max_in_flight"`
	Operations  *bool              `json:"operations"`
	Enabled     *bool              `json:"enabled"`
}

func (a *api) createEndpoint(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var in endpointInput
	if err := hub.Bind(c, &in); err != nil {
		return err
	}
	now := a.now().UTC()
	ep := &hub.Endpoint{
		ID:        hub.NewID("ep"),
		ProgramID: k.ProgramID,
		Secret:    NewSecret(),
		Enabled:   true,
		CreatedAt: now,
	}
	bad := map[string]string{}
	if in.URL == nil {
		bad["url"] = "is required"
	}
	if k.Role == hub.RolePartner {
		// A partner's endpoint receives its partner's events only.
		if in.PartnerID != nil && strings.TrimSpace(*in.PartnerID) != k.PartnerID {
			bad["partner_id"] = "must be your own partner id, or left out"
		}
		in.PartnerID = &k.PartnerID
		if in.Operations != nil && *in.Operations {
			bad["operations"] = "is for the program's own endpoints"
		}
	}
	applyEndpoint(ep, &in, now, bad)
	if err := a.checkPartner(ctx, k.ProgramID, ep.PartnerID, bad); err != nil {
		return err
	}
	if len(bad) > 0 {
		return hub.Invalid(bad)
	}
	if err := a.st.CreateEndpoint(ctx, ep); err != nil {
		return err
	}
	// The endpoint exists: failing now would lose its secret, which is
	// shown only in this response.
	a.audit(c, "endpoint.create", "endpoint", ep.ID, nil, auditEndpoint(ep))
	return c.JSON(http.StatusCreated, createdEndpoint{Endpoint: ep, Secret: ep.Secret})
}

func (a *api) patchEndpoint(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var in endpointInput
	if err := hub.Bind(c, &in); err != nil {
		return err
	}
	var before any
	ep, err := a.st.ModifyEndpoint(ctx, k.ProgramID, c.Param("id"), func(ep *hub.Endpoint) error {
		before = auditEndpoint(ep)
		bad := map[string]string{}
		if k.Role == hub.RolePartner && in.Operations != nil && *in.Operations {
			bad["operations"] = "is for the program's own endpoints"
		}
		if in.PartnerID != nil && strings.TrimSpace(*in.PartnerID) != ep.PartnerID {
			// Deliveries already written for the old scope would reach
			// the new one: scope is fixed at creation.
			bad["partner_id"] = "cannot be changed; create another endpoint for another partner"
		}
		applyEndpoint(ep, &in, a.now().UTC(), bad)
		if len(bad) > 0 {
			return hub.Invalid(bad)
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.audit(c, "endpoint.update", "endpoint", ep.ID, before, auditEndpoint(ep))
	return c.JSON(http.StatusOK, ep)
}

func (a *api) deleteEndpoint(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	ep, err := a.st.GetEndpoint(ctx, k.ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	if err := a.st.DeleteEndpoint(ctx, k.ProgramID, ep.ID); err != nil {
		return err
	}
	a.audit(c, "endpoint.delete", "endpoint", ep.ID, auditEndpoint(ep), nil)
	return c.NoContent(http.StatusNoContent)
}

type rotateInput struct {
	// GraceSeconds is how long the previous secret keeps signing; nil
	// means DefaultGracePeriod, 0 stops it at once.
	GraceSeconds *int64 `json:"grace_seconds"`
}

// rotateSecret gives the endpoint a new secret, shown once in the answer.
// The secret it replaces keeps signing, alongside the new one, for the
// grace period; a secret still in an earlier grace period stops.
func (a *api) rotateSecret(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	var in rotateInput
	if err := hub.Bind(c, &in); err != nil {
		return err
	}
	grace := DefaultGracePeriod
	if in.GraceSeconds != nil {
		if *in.GraceSeconds < 0 || *in.GraceSeconds > int64(maxGracePeriod/time.Second) {
			return hub.Invalid(map[string]string{"grace_seconds": "must be from 0 to " + strconv.FormatInt(int64(maxGracePeriod/time.Second), 10) + " (7 days)"})
		}
		grace = time.Duration(*in.GraceSeconds) * time.Second
	}
	var before any
	ep, err := a.st.ModifyEndpoint(c.Request().Context(), k.ProgramID, c.Param("id"), func(ep *hub.Endpoint) error {
		before = auditEndpoint(ep)
		ep.PreviousSecret, ep.PreviousSecretUntil = "", nil
		if grace > 0 {
			until := a.now().UTC().Add(grace)
			ep.PreviousSecret, ep.PreviousSecretUntil = ep.Secret, &until
		}
		ep.Secret = NewSecret()
		return nil
	})
	if err != nil {
		return err
	}
	// Like a creation: the new secret is shown only in this response.
	a.audit(c, "endpoint.rotate_secret", "endpoint", ep.ID, before, auditEndpoint(ep))
	return c.JSON(http.StatusOK, createdEndpoint{Endpoint: ep, Secret: ep.Secret})
}

// enableEndpoint re-enables an endpoint and clears its failure state.
// Deliveries that failed while it was disabled stay failed: retry them
// with POST /deliveries/retry.
func (a *api) enableEndpoint(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	var before any
	changed := false
	ep, err := a.st.ModifyEndpoint(c.Request().Context(), k.ProgramID, c.Param("id"), func(ep *hub.Endpoint) error {
		before = auditEndpoint(ep)
		changed = !ep.Enabled || ep.DisabledReason != "" || ep.FailingSince != nil
		ep.Enabled, ep.DisabledReason, ep.FailingSince = true, "", nil
		return nil
	})
	if err != nil {
		return err
	}
	if changed {
		a.audit(c, "endpoint.enable", "endpoint", ep.ID, before, auditEndpoint(ep))
	}
	return c.JSON(http.StatusOK, ep)
}

// applyEndpoint copies the fields set in in to ep, normalizing them and
// collecting field errors in bad.
func applyEndpoint(ep *hub.Endpoint, in *endpointInput, now time.Time, bad map[string]string) {
	if in.URL != nil {
		ep.URL = strings.TrimSpace(*in.URL)
		switch u, err := url.Parse(ep.URL); {
		case ep.URL == "":
			bad["url"] = "is required"
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "":
			bad["url"] = "must be an absolute http or https URL"
		case len(ep.URL) > 2048:
			bad["url"] = "must be at most 2048 characters"
		}
	}
	if in.Description != nil {
		ep.Description = *in.Description
		if len(ep.Description) > 500 {
			bad["description"] = "must be at most 500 characters"
		}
	}
	if in.EventTypes != nil {
		var types []string
		for _, t := range *in.EventTypes {
			if !validEventType(t) {
				bad["event_types"] = "unknown event type " + strconv.Quote(t) + "; use a type of the catalog, a category such as \"commission.*\", or \"*\""
				break
			}
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
		ep.EventTypes = types
	}
	if in.PartnerID != nil {
		ep.PartnerID = strings.TrimSpace(*in.PartnerID)
	}
	if in.Headers != nil {
		ep.Headers = nil
		if len(*in.Headers) > 0 {
			ep.Headers = *in.Headers
		}
		if msg := checkHeaders(ep.Headers); msg != "" {
			bad["headers"] = msg
		}
	}
	for _, f := range []struct {
		name     string
		in       *int
		dst      *int
		min, max int
	}{
		{"rate_limit", in.RateLimit, &ep.RateLimit, 1, 10000},
		{"timeout_ms", in.TimeoutMS, &ep.TimeoutMS, 100, 60000},
		{"max_in_flight", in.MaxInFlight, &ep.MaxInFlight, 1, 1000},
	} {
		if f.in == nil {
			continue
		}
		*f.dst = *f.in
		if *f.in != 0 && (*f.in < f.min || *f.in > f.max) {
			bad[f.name] = "must be 0 (the default) or from " + strconv.Itoa(f.min) + " to " + strconv.Itoa(f.max)
		}
	}
	if in.Operations != nil {
		ep.Operations = *in.Operations
	}
	if in.Enabled != nil && *in.Enabled != ep.Enabled {
		ep.Enabled = *in.Enabled
		if ep.Enabled {
			ep.DisabledReason, ep.FailingSince = "", nil
		} else {
			ep.DisabledReason = "disabled by an operator on " + now.Format(time.RFC3339)
		}
	}
}

// checkHeaders validates custom headers with the rules the dispatcher
// sends them by (customHeader); it returns a message or "".
func checkHeaders(h map[string]string) string {
	if len(h) > 20 {
		return "at most 20 headers"
	}
	seen := map[string]bool{}
	for name, v := range h {
		canon := http.CanonicalHeaderKey(name)
		switch {
		case name == "" || len(name) > 100 || !validToken(name):
			return "header name " + strconv.Quote(name) + " is not a valid HTTP header name"
		case !customHeader(name, ""):
			return "header " + name + " is set by partnerhub or the HTTP client and cannot be replaced"
		case seen[canon]:
			return "header " + name + " is given twice"
		case len(v) > 2048:
			return "header " + name + " is longer than 2048 characters"
		case !customHeader(name, v):
			return "header " + name + " contains a line break or another control character"
		}
		seen[canon] = true
	}
	return ""
}

// checkPartner records a field error when partnerID is set and is not a
// partner of the program.
func (a *api) checkPartner(ctx context.Context, programID, partnerID string, bad map[string]string) error {
	if partnerID == "" || bad["partner_id"] != "" {
		return nil
	}
	_, err := a.st.GetPartner(ctx, programID, partnerID)
	switch {
	case errors.Is(err, hub.ErrNotFound):
		bad["partner_id"] = "no such partner"
	case err != nil:
		return err
	}
	return nil
}

// validEventType accepts a catalog type, "<category>.*" for a category of
// the catalog, or "*".
func validEventType(t string) bool {
	if t == "*" || slices.Contains(EventTypes, t) {
		return true
	}
	cat, ok := strings.CutSuffix(t, ".*")
	if !ok || cat == "" {
		return false
	}
	return slices.ContainsFunc(EventTypes, func(e string) bool { return strings.HasPrefix(e, cat+".") })
}

// auditEndpoint is what the audit log keeps of an endpoint: never its
// secrets (Endpoint's JSON omits them) nor its custom header values,
// which often carry receivers' credentials.
func auditEndpoint(ep *hub.Endpoint) any {
	cp := *ep
	if len(ep.Headers) > 0 {
		cp.Headers = make(map[string]string, len(ep.Headers))
		for k := range ep.Headers {
			cp.Headers[k] = "[redacted]"
		}
	}
	return &cp
}

// audit records a change made through the API. The change is done when
// it is called, so a failure is logged rather than returned.
func (a *api) audit(c echo.Context, action, resource, id string, before, after any) {
	k := hub.Caller(c)
	ctx := c.Request().Context()
	e := &hub.AuditEntry{
		ID:         hub.NewID("aud"),
		ProgramID:  k.ProgramID,
		KeyID:      k.ID,
		Action:     action,
		Resource:   resource,
		ResourceID: id,
		CreatedAt:  a.now().UTC(),
	}
	var err error
	if before != nil {
		e.Before, err = json.Marshal(before)
	}
	if after != nil && err == nil {
		e.After, err = json.Marshal(after)
	}
	if err == nil {
		err = a.st.Audit(context.WithoutCancel(ctx), e)
	}
	if err != nil {
		slog.ErrorContext(ctx, "recording audit entry", "action", action, "resource_id", id, "error", err)
	}
}

// caller returns the authenticated API key.
func caller(c echo.Context) (*hub.APIKey, error) {
	k := hub.Caller(c)
	if k == nil {
		return nil, hub.Errorf(hub.EUNAUTHORIZED, "missing bearer API key")
	}
	return k, nil
}

// ownEndpoint answers 404 to a partner key for an endpoint that is not
// its partner's; other roles pass.
func (a *api) ownEndpoint(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		k, err := caller(c)
		if err != nil {
			return err
		}
		if k.Role != hub.RolePartner {
			return next(c)
		}
		ep, err := a.st.GetEndpoint(c.Request().Context(), k.ProgramID, c.Param("id"))
		if err != nil {
			return err
		}
		if !hub.OwnedBy(c, ep.PartnerID) {
			return hub.Errorf(hub.ENOTFOUND, "endpoint %s not found", c.Param("id"))
		}
		return next(c)
	}
}

func (a *api) listEndpoints(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	p, err := hub.PageOf(c)
	if err != nil {
		return err
	}
	if k.Role != hub.RolePartner {
		eps, err := a.st.ListEndpoints(c.Request().Context(), k.ProgramID, p)
		if err != nil {
			return err
		}
		l := hub.NewList(eps, p, func(e *hub.Endpoint) string { return e.ID })
		return c.JSON(http.StatusOK, hub.List[endpointWithBreaker]{Data: a.views(l.Data), NextCursor: l.NextCursor})
	}
	// A partner sees its own endpoints: the program's pages are read
	// until this page is full.
	var own []*hub.Endpoint
	scan := hub.Page{Cursor: p.Cursor, Limit: 200}
	for len(own) < p.Limit {
		eps, err := a.st.ListEndpoints(c.Request().Context(), k.ProgramID, scan)
		if err != nil {
			return err
		}
		for _, e := range eps {
			if e.PartnerID == k.PartnerID && len(own) < p.Limit {
				own = append(own, e)
			}
		}
		if len(eps) < scan.Limit {
			break
		}
		scan.Cursor = eps[len(eps)-1].ID
	}
	l := hub.NewList(own, p, func(e *hub.Endpoint) string { return e.ID })
	return c.JSON(http.StatusOK, hub.List[endpointWithBreaker]{Data: a.views(l.Data), NextCursor: l.NextCursor})
}

func (a *api) getEndpoint(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	ep, err := a.st.GetEndpoint(c.Request().Context(), k.ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, a.views([]*hub.Endpoint{ep})[0])
}

func (a *api) listEvents(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	p, err := hub.PageOf(c)
	if err != nil {
		return err
	}
	evs, err := a.st.ListEvents(c.Request().Context(), k.ProgramID, p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, hub.NewList(evs, p, func(e *hub.Event) string { return e.ID }))
}
