package connectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
)

// TriggerStore loads sources with their secrets and keeps the audit log.
type TriggerStore interface {
	SourceGetter
	Audit(ctx context.Context, a *hub.AuditEntry) error
}

// TriggerConfig configures the trigger route.
type TriggerConfig struct {
	// Now is when test events are created and signed. Zero: time.Now.
	Now func() time.Time
	// Logger zero value: slog.Default().
	Logger *slog.Logger
}

// trigger serves POST /sources/:id/trigger.
type trigger struct {
	cfg     TriggerConfig
	inbound http.Handler
	st      TriggerStore
}

// MountTrigger adds POST /sources/:id/trigger (admin role) to g, the
// authenticated /api/v1 group. The route builds a signed test event (see
// NewSample) and serves it in-process to h, the server's own handler, at
// /in/<source id>: verification, dedupe, storage and processing are those
// of a real webhook. The answer says what /in answered.
func MountTrigger(g *echo.Group, h http.Handler, st TriggerStore, cfg TriggerConfig) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &trigger{cfg: cfg, inbound: h, st: st}
	g.POST("/sources/:id/trigger", t.serve, hub.RequireRole(hub.RoleAdmin))
}

// TriggerInput is the body of POST /sources/:id/trigger. Every field but
// Event is optional (see SampleRequest for the defaults).
type TriggerInput struct {
	Event       string `json:"event"`
	PartnerCode string `json:"partner_code,omitempty"`
	AmountMinor int64  `json:"amount_minor,omitempty"`
	Currency    string `json:"currency,omitempty"`
	Email       string `json:"email,omitempty"`
	PaymentID   string `json:"payment_id,omitempty"`
	// Live confirms a test event on a live source, where it counts as a
	// real, payable sale (WooCommerce and Paddle payloads carry no test
	// flag; their sources say sandbox=true instead).
	Live bool `json:"live,omitempty"`
}

// TriggerResult is the answer of POST /sources/:id/trigger.
type TriggerResult struct {
	SourceID string `json:"source_id"`
	Provider string `json:"provider"`
	Event    string `json:"event"`
	// Kind is "payment", "refund" or "dispute".
	Kind string `json:"kind"`
	// EventID is the provider's id of the test event (see Sample).
	EventID string `json:"event_id"`
	// PaymentID names the payment, for a later refund or dispute.
	PaymentID string `json:"payment_id"`
	Livemode  bool   `json:"livemode"`
	// InboundStatus is the HTTP status /in/<source id> answered.
	InboundStatus int `json:"inbound_status"`
	// InboundEventID is the stored inbound event, when /in accepted it.
	InboundEventID string `json:"inbound_event_id,omitempty"`
	Duplicate      bool   `json:"duplicate"`
	// InboundError is the problem /in answered, when it refused.
	InboundError string `json:"inbound_error,omitempty"`
}

func (t *trigger) serve(c echo.Context) error {
	ctx := c.Request().Context()
	var in TriggerInput
	if err := hub.Bind(c, &in); err != nil {
		return err
	}
	caller := hub.Caller(c)
	src, err := t.st.GetSource(ctx, c.Param("id"))
	if errors.Is(err, hub.ErrNotFound) || (err == nil && src.ProgramID != caller.ProgramID) {
		return hub.Errorf(hub.ENOTFOUND, "source %s not found", c.Param("id"))
	}
	if err != nil {
		return err
	}
	s, err := NewSample(src, SampleRequest{
		Event: in.Event, PartnerCode: in.PartnerCode, AmountMinor: in.AmountMinor,
		Currency: in.Currency, Email: in.Email, PaymentID: in.PaymentID,
	}, t.cfg.Now())
	if err != nil {
		return err
	}
	if s.Livemode && !in.Live {
		return &hub.Error{Code: hub.EINVALID, Message: "this source is live: the test event would count as a real, payable " + s.Kind +
			"; set the source option sandbox=true for a test source, or send \"live\": true (partnerhub trigger --live) to send it anyway",
			Fields: map[string]string{"live": "must be true to send a test event to a live source"}}
	}
	after, _ := json.Marshal(map[string]string{"event": s.Event, "event_id": s.EventID, "payment_id": s.PaymentID})
	if err := t.st.Audit(ctx, &hub.AuditEntry{ID: hub.NewID("aud"), ProgramID: caller.ProgramID, KeyID: caller.ID,
		Action: "source.trigger", Resource: "source", ResourceID: src.ID, After: after}); err != nil {
		return err
	}
	res := TriggerResult{SourceID: src.ID, Provider: s.Provider, Event: s.Event, Kind: s.Kind, EventID: s.EventID,
		PaymentID: s.PaymentID, Livemode: s.Livemode}
	t.deliver(ctx, src.ID, s, &res)
	t.cfg.Logger.DebugContext(ctx, "test event sent", "source_id", src.ID, "provider", s.Provider,
		"event_id", s.EventID, "status", res.InboundStatus)
	return c.JSON(http.StatusOK, res)
}

// deliver serves s to the inbound handler as the provider would post it
// and records the answer in res.
func (t *trigger) deliver(ctx context.Context, sourceID string, s *Sample, res *TriggerResult) {
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/in/"+url.PathEscape(sourceID), bytes.NewReader(s.Body))
	req.Header = s.Header.Clone()
	rec := httptest.NewRecorder()
	t.inbound.ServeHTTP(rec, req)
	res.InboundStatus = rec.Code
	if rec.Code >= 200 && rec.Code <= 299 {
		var ack receiveResponse
		if json.Unmarshal(rec.Body.Bytes(), &ack) == nil {
			res.InboundEventID, res.Duplicate = ack.ID, ack.Duplicate
		}
		return
	}
	var p hub.Problem
	if json.Unmarshal(rec.Body.Bytes(), &p) != nil || p.Title == "" {
		p.Title = http.StatusText(rec.Code)
	}
	res.InboundError = p.Title
	if p.Detail != "" {
		res.InboundError += ": " + p.Detail
	}
}
