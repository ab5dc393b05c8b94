package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
)

// OperatorStore is what the API routes need: the hub's store and the
// operator queries hub/store adds to it.
type OperatorStore interface {
	hub.Store
	// FindDeliveries is ListDeliveries narrowed by endpoint and event type
	// (a type, a category such as "commission.*", or "*") when they are
	// not empty.
	FindDeliveries(ctx context.Context, programID string, f hub.Filter, endpointID, eventType string, p hub.Page) ([]*hub.Delivery, error)
	// GetDeliveryLog returns a delivery of the program with its
	// AttemptLog.
	GetDeliveryLog(ctx context.Context, programID, id string) (*hub.Delivery, error)
	// RequeueDeliveries sets up to limit deliveries matching the filter
	// (f.Status failed or succeeded) whose endpoint is enabled and that
	// did not change since now back to pending, due at now, and returns
	// them; a delivery is requeued by one call only.
	RequeueDeliveries(ctx context.Context, programID string, f hub.Filter, endpointID, eventType string, now time.Time, limit int) ([]*hub.Delivery, error)
	// RequeueDelivery sets one finished delivery back to pending, due at
	// now; it reports false, changing nothing, for a pending one.
	RequeueDelivery(ctx context.Context, programID, id string, now time.Time) (*hub.Delivery, bool, error)
	// GetEvent returns an outbound event of the program.
	GetEvent(ctx context.Context, programID, id string) (*hub.Event, error)
	// InsertDelivery adds a pending delivery, due at now, of an existing
	// event to an endpoint.
	InsertDelivery(ctx context.Context, programID, eventID, endpointID string, now time.Time) (*hub.Delivery, error)
	// InsertEventTo stores an event and one pending delivery of it to
	// endpointID only.
	InsertEventTo(ctx context.Context, e *hub.Event, endpointID string) (*hub.Delivery, error)
	// ModifyEndpoint applies fn to an endpoint under a row lock and saves
	// it; fn's error aborts.
	ModifyEndpoint(ctx context.Context, programID, id string, fn func(e *hub.Endpoint) error) (*hub.Endpoint, error)
	// DeleteEndpoint deletes an endpoint with its deliveries.
	DeleteEndpoint(ctx context.Context, programID, id string) error
}

// requeueBatch is how many deliveries a bulk retry requeues per statement
// (a variable for tests).
var requeueBatch = 500

// deliveryQuery reads the delivery filters shared by the list and the bulk
// retry: status, endpoint_id, event_type, partner_id, since and until.
type deliveryQuery struct {
	Status     string `json:"status"`
	EndpointID string `json:"endpoint_id"`
	EventType  string `json:"event_type"`
	PartnerID  string `json:"partner_id"`
	Since      string `json:"since"`
	Until      string `json:"until"`
}

// filter validates q and returns the store's filter, collecting field
// errors in bad.
func (q deliveryQuery) filter(bad map[string]string) hub.Filter {
	f := hub.Filter{Status: q.Status, PartnerID: q.PartnerID}
	for _, t := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", q.Since, &f.Since}, {"until", q.Until, &f.Until}} {
		if t.v == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.v)
		if err != nil {
			bad[t.name] = "must be an RFC 3339 time"
		}
		*t.dst = v
	}
	if q.EventType != "" && !validEventType(q.EventType) {
		bad["event_type"] = "must be a type of the catalog, a category such as \"commission.*\", or \"*\""
	}
	return f
}

func (a *api) listDeliveries(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	q := deliveryQuery{
		Status:     c.QueryParam("status"),
		EndpointID: c.QueryParam("endpoint_id"),
		EventType:  c.QueryParam("event_type"),
		PartnerID:  c.QueryParam("partner_id"),
		Since:      c.QueryParam("since"),
		Until:      c.QueryParam("until"),
	}
	bad := map[string]string{}
	f := q.filter(bad)
	switch f.Status {
	case "", hub.DeliveryPending, hub.DeliverySucceeded, hub.DeliveryFailed:
	default:
		bad["status"] = "must be pending, succeeded or failed"
	}
	if len(bad) > 0 {
		return hub.Invalid(bad)
	}
	p, err := hub.PageOf(c)
	if err != nil {
		return err
	}
	ds, err := a.st.FindDeliveries(c.Request().Context(), k.ProgramID, f, q.EndpointID, q.EventType, p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, hub.NewList(ds, p, func(d *hub.Delivery) string { return d.ID }))
}

func (a *api) getDelivery(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	d, err := a.st.GetDeliveryLog(c.Request().Context(), k.ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// retried is the answer to a retry of one delivery.
type retried struct {
	// Requeued is false when the delivery was pending already.
	Requeued bool          `json:"requeued"`
	Delivery *hub.Delivery `json:"delivery"`
}

// retryDelivery sets a failed (or succeeded) delivery pending again and
// queues its next attempt now. A pending delivery is left alone: its
// attempt is queued already.
func (a *api) retryDelivery(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	d, err := a.st.GetDeliveryLog(ctx, k.ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	if d.Status == hub.DeliveryPending {
		return c.JSON(http.StatusOK, retried{Delivery: d})
	}
	if err := a.requireEnabled(ctx, k.ProgramID, d.EndpointID); err != nil {
		return err
	}
	now := a.now().UTC()
	d, requeued, err := a.st.RequeueDelivery(ctx, k.ProgramID, d.ID, now)
	if err != nil {
		return err
	}
	if !requeued {
		return c.JSON(http.StatusOK, retried{Delivery: d})
	}
	a.enqueue(ctx, d, now)
	a.audit(c, "delivery.retry", "delivery", d.ID, nil, map[string]any{"attempt": d.Attempts + 1})
	return c.JSON(http.StatusAccepted, retried{Requeued: true, Delivery: d})
}

// bulkRetried is the answer to a bulk retry.
type bulkRetried struct {
	Requeued int `json:"requeued"`
}

// retryDeliveries requeues every delivery matching the body's filters
// (status failed unless it says succeeded; endpoint_id or since is
// required) whose endpoint is enabled, and queues their next attempts now.
// Running it again requeues nothing new: the deliveries are pending.
func (a *api) retryDeliveries(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var q deliveryQuery
	if err := hub.Bind(c, &q); err != nil {
		return err
	}
	if q.Status == "" {
		q.Status = hub.DeliveryFailed
	}
	bad := map[string]string{}
	f := q.filter(bad)
	if q.Status != hub.DeliveryFailed && q.Status != hub.DeliverySucceeded {
		bad["status"] = "must be failed or succeeded (pending deliveries are queued already)"
	}
	if q.EndpointID == "" && q.Since == "" {
		bad["endpoint_id"] = "endpoint_id or since is required"
	}
	if len(bad) > 0 {
		return hub.Invalid(bad)
	}
	if q.EndpointID != "" {
		if err := a.requireEnabled(ctx, k.ProgramID, q.EndpointID); err != nil {
			return err
		}
	}
	now := a.now().UTC()
	total, unqueued := 0, 0
	var queueErr error
	defer func() {
		if unqueued > 0 {
			slog.WarnContext(ctx, "queue unavailable; the sweeper will queue the retried deliveries", "endpoint_id", q.EndpointID, "deliveries", unqueued, "error", queueErr)
		}
	}()
	for {
		ds, err := a.st.RequeueDeliveries(ctx, k.ProgramID, f, q.EndpointID, q.EventType, now, requeueBatch)
		if err != nil {
			if total > 0 {
				a.audit(c, "deliveries.retry", "delivery", q.EndpointID, nil, map[string]any{"filter": q, "requeued": total})
			}
			return err
		}
		for _, d := range ds {
			if err := a.queueNext(ctx, d, now); err != nil {
				unqueued++
				queueErr = err
			}
		}
		total += len(ds)
		// Stop only when nothing matches any more: a short batch may
		// mean a concurrent bulk retry took some rows.
		if len(ds) == 0 {
			break
		}
	}
	if total > 0 {
		a.audit(c, "deliveries.retry", "delivery", q.EndpointID, nil, map[string]any{"filter": q, "requeued": total})
	}
	return c.JSON(http.StatusOK, bulkRetried{Requeued: total})
}

type replayInput struct {
	EndpointID string `json:"endpoint_id"`
}

// replayEvent delivers a past event again to one endpoint: a new delivery
// of the same event, so receivers see the same webhook-id and body.
func (a *api) replayEvent(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var in replayInput
	if err := hub.Bind(c, &in); err != nil {
		return err
	}
	evt, err := a.st.GetEvent(ctx, k.ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	if in.EndpointID == "" {
		return hub.Invalid(map[string]string{"endpoint_id": "is required"})
	}
	ep, err := a.st.GetEndpoint(ctx, k.ProgramID, in.EndpointID)
	if errors.Is(err, hub.ErrNotFound) {
		return hub.Invalid(map[string]string{"endpoint_id": "no such endpoint"})
	}
	if err != nil {
		return err
	}
	if !ep.Enabled {
		return disabledError(ep)
	}
	// A partner-scoped endpoint never receives another partner's event,
	// and no endpoint receives a type it does not subscribe to.
	if !ep.Accepts(evt.Type, evt.PartnerID) {
		if ep.PartnerID != "" && ep.PartnerID != evt.PartnerID {
			return hub.Invalid(map[string]string{"endpoint_id": "the endpoint is scoped to partner " + ep.PartnerID + " and the event is not that partner's"})
		}
		return hub.Invalid(map[string]string{"endpoint_id": "the endpoint does not subscribe to " + evt.Type + " events"})
	}
	now := a.now().UTC()
	d, err := a.st.InsertDelivery(ctx, k.ProgramID, evt.ID, ep.ID, now)
	if err != nil {
		return err
	}
	a.enqueue(ctx, d, now)
	a.audit(c, "event.replay", "event", evt.ID, nil, map[string]any{"endpoint_id": ep.ID, "delivery_id": d.ID})
	return c.JSON(http.StatusAccepted, d)
}

// pinged is the answer to a ping.
type pinged struct {
	Event    *hub.Event    `json:"event"`
	Delivery *hub.Delivery `json:"delivery"`
	// Attempt is the attempt made, nil when none was made yet (the
	// endpoint's circuit breaker was open; the delivery waits for it).
	Attempt *hub.Attempt `json:"attempt"`
}

// ping writes a ping event with one delivery to the endpoint, attempts it
// while the caller waits and returns the attempt. A failed ping is retried
// on the schedule like any delivery.
func (a *api) ping(c echo.Context) error {
	k, err := caller(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	ep, err := a.st.GetEndpoint(ctx, k.ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	if !ep.Enabled {
		return disabledError(ep)
	}
	data, _ := json.Marshal(map[string]string{"message": "Test event sent by partnerhub", "endpoint_id": ep.ID})
	evt := &hub.Event{
		ID:        hub.NewID("evt"),
		ProgramID: k.ProgramID,
		Type:      "ping",
		PartnerID: ep.PartnerID,
		Data:      data,
		CreatedAt: a.now().UTC(),
	}
	d, err := a.st.InsertEventTo(ctx, evt, ep.ID)
	if err != nil {
		return err
	}
	a.audit(c, "endpoint.ping", "endpoint", ep.ID, nil, map[string]any{"event_id": evt.ID, "delivery_id": d.ID})
	// The attempt is recorded even when the caller goes away; if it
	// cannot be made now, the sweeper queues the pending delivery.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.pingTimeout)
	defer cancel()
	if err := a.deliver(actx, d.ID, 1); err != nil {
		slog.WarnContext(ctx, "ping attempt not recorded; the sweeper will queue it", "delivery_id", d.ID, "endpoint_id", ep.ID, "error", err)
	}
	d, err = a.st.GetDeliveryLog(ctx, k.ProgramID, d.ID)
	if err != nil {
		return err
	}
	out := pinged{Event: evt, Delivery: d}
	for i := range d.AttemptLog {
		if d.AttemptLog[i].Number == 1 {
			out.Attempt = &d.AttemptLog[i]
		}
	}
	if out.Attempt == nil {
		return c.JSON(http.StatusAccepted, out)
	}
	return c.JSON(http.StatusOK, out)
}

// requireEnabled fails with ECONFLICT when the endpoint is disabled, and
// ENOTFOUND when it is not the program's.
func (a *api) requireEnabled(ctx context.Context, programID, endpointID string) error {
	ep, err := a.st.GetEndpoint(ctx, programID, endpointID)
	if err != nil {
		return err
	}
	if !ep.Enabled {
		return disabledError(ep)
	}
	return nil
}

func disabledError(ep *hub.Endpoint) error {
	msg := "endpoint " + ep.ID + " is disabled"
	if ep.DisabledReason != "" {
		msg += " (" + ep.DisabledReason + ")"
	}
	return hub.Errorf(hub.ECONFLICT, "%s: enable it first with POST /endpoints/%s/enable", msg, ep.ID)
}

// enqueue queues the next attempt of a delivery made due at now. A queue
// failure is not the caller's: the row is due, and the sweeper queues it.
func (a *api) enqueue(ctx context.Context, d *hub.Delivery, now time.Time) {
	if err := a.queueNext(ctx, d, now); err != nil {
		slog.WarnContext(ctx, "queue unavailable; the sweeper will queue the delivery", "delivery_id", d.ID, "error", err)
	}
}

// queueNext queues attempt d.Attempts+1 of a delivery made due at now.
func (a *api) queueNext(ctx context.Context, d *hub.Delivery, now time.Time) error {
	return a.q.EnqueueDelivery(context.WithoutCancel(ctx), d.ID, d.Attempts+1, now)
}
