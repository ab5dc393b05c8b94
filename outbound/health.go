package outbound

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// Endpoint health. Every attempt's outcome updates the endpoint's
// FailingSince: the first failure of a run sets it, a success clears it
// (one write per change, none while it holds). An endpoint is disabled,
// with a DisabledReason, when it answers 410 Gone ("410 Gone") or when an
// attempt fails and it has been failing for Config.DisableAfter ("failing
// since <RFC 3339 time>"). Disabling fails the endpoint's pending
// deliveries (error class endpoint_disabled: operators retry them once it
// is enabled again) and sends an endpoint.disabled event to the program's
// operations endpoints (EndpointSettings.Operations), all in one
// transaction through the outbox.

// disableReason returns why the outcome res disables ep, or "".
func (d *Dispatcher) disableReason(ep *hub.Endpoint, res result, now time.Time) string {
	switch {
	case !ep.Enabled || !res.failed():
		return ""
	case res.status == http.StatusGone:
		return "410 Gone"
	case ep.FailingSince != nil && now.Sub(*ep.FailingSince) >= d.disableAfter:
		return "failing since " + ep.FailingSince.UTC().Format(time.RFC3339)
	}
	return ""
}

// track updates ep's failing-since time after an attempt, and disables it
// when disable is set. Errors are logged: the attempt is recorded, and the
// next attempt's outcome tries again.
func (d *Dispatcher) track(ctx context.Context, ep *hub.Endpoint, res result, now time.Time, disable string) {
	var err error
	switch {
	case res.ok() && ep.FailingSince != nil:
		_, err = d.st.SetEndpointFailing(ctx, ep.ID, nil)
	case res.failed() && ep.FailingSince == nil:
		since := now
		_, err = d.st.SetEndpointFailing(ctx, ep.ID, &since)
	}
	if err != nil {
		d.log.WarnContext(ctx, "recording endpoint health", "endpoint_id", ep.ID, "error", err)
	}
	if disable != "" {
		d.disable(ctx, ep.ID, disable, now)
	}
}

// disable disables an endpoint and queues the endpoint.disabled event's
// deliveries.
func (d *Dispatcher) disable(ctx context.Context, id, reason string, now time.Time) {
	ep, dels, err := d.st.AutoDisableEndpoint(ctx, id, reason, now, func(e *hub.Endpoint) (*hub.Event, error) {
		data, err := json.Marshal(disabledData{Endpoint: viewEndpoint(e), Reason: reason})
		if err != nil {
			return nil, err
		}
		return &hub.Event{
			ID:        hub.NewID("evt"),
			ProgramID: e.ProgramID,
			Type:      hub.EventEndpointDisabled,
			Data:      data,
			CreatedAt: now,
		}, nil
	})
	if err != nil {
		d.log.WarnContext(ctx, "disabling endpoint", "endpoint_id", id, "reason", reason, "error", err)
		return
	}
	if ep == nil {
		return // disabled already
	}
	d.log.WarnContext(ctx, "endpoint disabled", "endpoint_id", id, "reason", reason, "notified", len(dels))
	for _, dl := range dels {
		if err := d.q.EnqueueDelivery(ctx, dl.ID, 1, now); err != nil {
			d.log.WarnContext(ctx, "queueing endpoint.disabled delivery; the sweeper will", "delivery_id", dl.ID, "error", err)
		}
	}
}

// disabledData is the data of an endpoint.disabled event.
type disabledData struct {
	Endpoint endpointView `json:"endpoint"`
	Reason   string       `json:"reason"`
}

// endpointView is an endpoint as events show it: no secrets, no custom
// headers (they often carry credentials), no password in the URL.
type endpointView struct {
	ID             string     `json:"id"`
	ProgramID      string     `json:"program_id"`
	URL            string     `json:"url"`
	Description    string     `json:"description,omitempty"`
	EventTypes     []string   `json:"event_types,omitempty"`
	PartnerID      string     `json:"partner_id,omitempty"`
	Enabled        bool       `json:"enabled"`
	DisabledReason string     `json:"disabled_reason,omitempty"`
	FailingSince   *time.Time `json:"failing_since,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
}

func viewEndpoint(e *hub.Endpoint) endpointView {
	return endpointView{
		ID:             e.ID,
		ProgramID:      e.ProgramID,
		URL:            redactURL(e.URL),
		Description:    e.Description,
		EventTypes:     e.EventTypes,
		PartnerID:      e.PartnerID,
		Enabled:        e.Enabled,
		DisabledReason: e.DisabledReason,
		FailingSince:   e.FailingSince,
		CreatedAt:      e.CreatedAt,
	}
}

// redactURL hides the password of a URL's user info.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
