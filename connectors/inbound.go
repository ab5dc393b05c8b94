package connectors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/metrics"
)

// Ingester stores a verified event durably and queues its processing.
type Ingester interface {
	Ingest(ctx context.Context, src *hub.Source, rc hub.Receipt, body []byte) (*hub.InboundEvent, bool, error)
}

// SourceGetter loads a source with its secrets.
type SourceGetter interface {
	GetSource(ctx context.Context, id string) (*hub.Source, error)
}

// InboundConfig configures the /in handler.
type InboundConfig struct {
	// MaxBodyBytes caps request bodies; larger ones get 413. Zero: 1 MiB.
	MaxBodyBytes int64
	// Now returns the time signatures are checked at. Zero: time.Now.
	Now func() time.Time
	// Logger zero value: slog.Default().
	Logger *slog.Logger
}

// Inbound receives providers' webhooks at POST /in/{source_id}.
type Inbound struct {
	cfg     InboundConfig
	reg     *Registry
	sources SourceGetter
	cache   *sourceCache
	ing     Ingester
	// noted remembers, per source and outcome, when the source's
	// connection status was last written, so that a flood of webhooks
	// writes it at most once a second.
	noted sync.Map
}

// SourceNoter records a source's last verified and last refused webhook;
// the /in handler uses it when its SourceGetter has it.
type SourceNoter interface {
	NoteSourceVerified(ctx context.Context, id string, at time.Time) error
	NoteSourceFailure(ctx context.Context, id, reason string, at time.Time) error
}

// noteSource records the outcome of a webhook on its source (reason "" for
// a verified one), at most once a second per source and outcome, without
// holding up the answer.
func (in *Inbound) noteSource(ctx context.Context, src *hub.Source, reason string) {
	n, ok := in.sources.(SourceNoter)
	if !ok {
		return
	}
	now := in.cfg.Now()
	key := src.ID + "|" + strconv.FormatBool(reason == "")
	if last, ok := in.noted.Load(key); ok && now.Sub(last.(time.Time)) < time.Second {
		return
	}
	in.noted.Store(key, now)
	go func() {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var err error
		if reason == "" {
			err = n.NoteSourceVerified(wctx, src.ID, now)
		} else {
			err = n.NoteSourceFailure(wctx, src.ID, reason, now)
		}
		if err != nil {
			in.cfg.Logger.WarnContext(wctx, "recording source status", "source_id", src.ID, "error", err)
		}
	}()
}

// NewInbound returns the /in handler.
func NewInbound(cfg InboundConfig, reg *Registry, sources SourceGetter, ing Ingester) *Inbound {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Inbound{cfg: cfg, reg: reg, sources: sources, ing: ing,
		cache: &sourceCache{get: sources.GetSource, now: time.Now}}
}

// Mount adds POST /:source_id to g (mounted at /in).
func (in *Inbound) Mount(g *echo.Group) {
	g.POST("/:source_id", in.receive)
}

// receiveResponse is the acknowledgement body.
type receiveResponse struct {
	Received  bool   `json:"received"`
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

func (in *Inbound) receive(c echo.Context) error {
	// The provider label is set once the source is known: source ids are
	// request data and never become labels.
	provider, outcome := metrics.ProviderUnknown, metrics.InboundError
	defer func() { metrics.InboundWebhook(provider, outcome) }()
	ctx := c.Request().Context()
	r := c.Request()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, in.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			outcome = metrics.InboundTooLarge
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "request body exceeds the limit")
		}
		outcome = metrics.InboundBadRequest
		return echo.NewHTTPError(http.StatusBadRequest, "reading request body failed")
	}
	id := c.Param("source_id")
	if !hub.ValidText(id) {
		// No source has such an id; PostgreSQL would refuse to look it up.
		outcome = metrics.InboundUnknownSource
		return hub.Errorf(hub.ENOTFOUND, "unknown source")
	}
	src, cached, err := in.cache.lookup(ctx, id)
	if errors.Is(err, hub.ErrNotFound) {
		outcome = metrics.InboundUnknownSource
		return hub.Errorf(hub.ENOTFOUND, "unknown source")
	}
	if err != nil {
		outcome = failureOutcome(ctx, err)
		return err
	}
	conn, ok := in.reg.Get(src.Provider)
	if !ok {
		outcome = metrics.InboundUnknownSource
		return hub.Errorf(hub.ENOTFOUND, "unknown source")
	}
	provider = src.Provider
	rc, err := conn.Verify(src, r.Header, body, in.cfg.Now())
	if err != nil && cached && !errors.Is(err, ErrPing) {
		// The source may have a new secret since it was cached: verify
		// against the stored one before refusing.
		if fresh, ferr := in.cache.refresh(ctx, id); ferr == nil && fresh.Provider == src.Provider {
			src = fresh
			rc, err = conn.Verify(src, r.Header, body, in.cfg.Now())
		}
	}
	if errors.Is(err, ErrPing) {
		// A provider's setup ping (WooCommerce's webhook_id=<n>) needs
		// exactly 200 and carries no event: nothing is stored.
		in.cfg.Logger.DebugContext(ctx, "provider ping acknowledged", "source_id", src.ID, "provider", src.Provider)
		outcome = metrics.InboundIgnored
		return c.NoContent(http.StatusOK)
	}
	if err == nil {
		err = checkText(rc, body)
	}
	if err != nil {
		if errors.Is(err, hub.ErrUnparsable) {
			in.cfg.Logger.DebugContext(ctx, "inbound webhook not readable", "source_id", src.ID, "provider", src.Provider, "error", err)
			outcome = metrics.InboundUnreadable
			in.noteSource(ctx, src, "the payload could not be read: "+oneLineErr(err))
			return hub.Errorf(hub.EINVALID, "the payload could not be read")
		}
		in.cfg.Logger.DebugContext(ctx, "inbound webhook rejected", "source_id", src.ID, "provider", src.Provider, "error", err)
		outcome = metrics.InboundBadSignature
		in.noteSource(ctx, src, "signature not verified: "+oneLineErr(err))
		return echo.NewHTTPError(http.StatusUnauthorized)
	}
	ev, dup, err := in.ing.Ingest(ctx, src, rc, body)
	if err != nil {
		outcome = failureOutcome(ctx, err)
		return err
	}
	outcome = metrics.InboundAccepted
	in.noteSource(ctx, src, "")
	if dup {
		outcome = metrics.InboundDuplicate
	}
	return c.JSON(http.StatusOK, receiveResponse{Received: true, ID: ev.ID, Duplicate: dup})
}

// checkText refuses a verified payload that is not UTF-8 text, or that
// holds a NUL (raw, or as the JSON escape \u0000) in the body or in the
// values the receipt takes from it: no provider sends one, and no stored
// text may hold it.
func checkText(rc hub.Receipt, body []byte) error {
	if !utf8.Valid(body) || bytes.IndexByte(body, 0) >= 0 || hub.HasEscapedNUL(body) {
		return fmt.Errorf("reading webhook: the body is not UTF-8 text without NUL: %w", hub.ErrUnparsable)
	}
	if !hub.ValidText(rc.DedupeKey) || !hub.ValidText(rc.EventType) {
		return fmt.Errorf("reading webhook: the event id or type is not UTF-8 text without NUL: %w", hub.ErrUnparsable)
	}
	for name, v := range rc.Headers {
		if !hub.ValidText(v) {
			return fmt.Errorf("reading webhook: header %s is not UTF-8 text without NUL: %w", name, hub.ErrUnparsable)
		}
	}
	return nil
}

// failureOutcome is the metrics outcome of a request that failed on our
// side, or that its sender gave up on (ctx is the request's).
func failureOutcome(ctx context.Context, err error) string {
	switch {
	case errors.Is(err, hub.ErrUnavailable):
		return metrics.InboundUnavailable
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return metrics.InboundCanceled
	}
	return metrics.InboundError
}

// oneLineErr is err's message on one line, at most 200 bytes, for a
// source's last_failure. Verification errors name headers and reasons,
// never secrets.
func oneLineErr(err error) string {
	m := strings.Join(strings.Fields(err.Error()), " ")
	if len(m) > 200 {
		m = strings.ToValidUTF8(m[:200], "")
	}
	return m
}
