package connectors

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
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
	ing     Ingester
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
	return &Inbound{cfg: cfg, reg: reg, sources: sources, ing: ing}
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
	ctx := c.Request().Context()
	r := c.Request()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, in.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "request body exceeds the limit")
		}
		return echo.NewHTTPError(http.StatusBadRequest, "reading request body failed")
	}
	id := c.Param("source_id")
	src, err := in.sources.GetSource(ctx, id)
	if errors.Is(err, hub.ErrNotFound) {
		return hub.Errorf(hub.ENOTFOUND, "unknown source")
	}
	if err != nil {
		return err
	}
	conn, ok := in.reg.Get(src.Provider)
	if !ok {
		return hub.Errorf(hub.ENOTFOUND, "unknown source")
	}
	rc, err := conn.Verify(src, r.Header, body, in.cfg.Now())
	if errors.Is(err, ErrPing) {
		// A provider's setup ping (WooCommerce's webhook_id=<n>) needs
		// exactly 200 and carries no event: nothing is stored.
		in.cfg.Logger.DebugContext(ctx, "provider ping acknowledged", "source_id", src.ID, "provider", src.Provider)
		return c.NoContent(http.StatusOK)
	}
	if err != nil {
		if errors.Is(err, hub.ErrUnparsable) {
			in.cfg.Logger.DebugContext(ctx, "inbound webhook not readable", "source_id", src.ID, "provider", src.Provider, "error", err)
			return hub.Errorf(hub.EINVALID, "the payload could not be read")
		}
		in.cfg.Logger.DebugContext(ctx, "inbound webhook rejected", "source_id", src.ID, "provider", src.Provider, "error", err)
		return echo.NewHTTPError(http.StatusUnauthorized)
	}
	ev, dup, err := in.ing.Ingest(ctx, src, rc, body)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, receiveResponse{Received: true, ID: ev.ID, Duplicate: dup})
}
