package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/partnerhub/partnerhub/config"
	"github.com/partnerhub/partnerhub/connectors"
	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/netguard"
	"github.com/partnerhub/partnerhub/hub/openapi"
	"github.com/partnerhub/partnerhub/hub/queue"
	"github.com/partnerhub/partnerhub/hub/schemas"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/ui"
	"github.com/partnerhub/partnerhub/outbound"
)

// Options tune an App beyond its configuration.
type Options struct {
	// QueueName overrides the configured queue; tests use it to share one
	// Redis. Zero: the configuration's.
	QueueName string
}

// App is one partnerhub process: the HTTP server, the worker and the
// scheduler, as its roles say.
type App struct {
	cfg  *config.Config
	opts Options
	log  *slog.Logger
	out  io.Writer // where the generated admin key is printed

	DB       *store.DB
	Queue    *queue.Queue
	Service  *hub.Service
	Outbound *outbound.Dispatcher
	Links    *hub.Links

	ln   net.Listener
	srv  *http.Server
	echo *echo.Echo
}

// NewApp opens the database (migrating it) and the queue, and assembles
// the server. out receives the one-time admin key banner.
func NewApp(ctx context.Context, cfg *config.Config, log *slog.Logger, out io.Writer, opts Options) (*App, error) {
	a := &App{cfg: cfg, opts: opts, log: withRequestID(log), out: out}
	if err := a.open(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) open(ctx context.Context) error {
	cfg := a.cfg
	secretKey := cfg.SecretKey
	if secretKey == "" {
		k, err := config.LoadOrCreateSecretKey(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("loading secret key: %w", err)
		}
		secretKey = k
	}
	ciph, err := hub.NewAESCipher(secretKey)
	if err != nil {
		return fmt.Errorf("PARTNERHUB_SECRET_KEY: %w", err)
	}
	a.DB, err = store.Open(ctx, store.Config{URL: cfg.DatabaseURL, DataDir: cfg.DataDir, Cipher: ciph})
	if err != nil {
		return fmt.Errorf("opening database: %w", err)
	}
	if err := a.DB.Migrate(ctx); err != nil {
		return fmt.Errorf("migrating database: %w", err)
	}
	if a.DB.Dialect() == "sqlite" {
		a.log.Info("database: embedded SQLite, for trying partnerhub and small single-node programs; set DATABASE_URL for PostgreSQL", "data_dir", cfg.DataDir)
	} else {
		a.log.Info("database: PostgreSQL")
	}
	a.Queue, err = queue.Open(queue.Config{RedisURL: cfg.RedisURL, Logger: a.log, Name: cmp.Or(a.opts.QueueName, cfg.QueueName), SweepEvery: cfg.SweepInterval, ReconcileEvery: cfg.ReconcileInterval, PollInterval: cfg.QueuePollInterval})
	if err != nil {
		return fmt.Errorf("opening queue: %w", err)
	}
	if a.Queue.Embedded() {
		a.log.Info("queue: in-process Redis (miniredis), for trying partnerhub and small single-node programs; set REDIS_URL for Redis")
	} else {
		a.log.Info("queue: Redis")
	}
	client := netguard.NewClient(netguard.Config{AllowNets: cfg.OutboundAllowNets})
	reg := connectors.NewDefault(connectors.DefaultConfig{Client: client})
	a.Outbound, err = outbound.New(outbound.Config{
		Client:   client,
		Schedule: cfg.RetrySchedule,
		// A first attempt made in process must be over before the
		// sweeper would queue its delivery again.
		DirectWithin: cfg.SweepInterval / 2,
	}, a.DB, a.Queue)
	if err != nil {
		return err
	}
	svc := hub.ServiceConfig{
		Store: a.DB, Queue: a.Queue, Logger: a.log, SweepGrace: cfg.SweepInterval,
		Normalizer: reg.Normalizer, Reconciler: reg.Reconciler,
	}
	if a.cfg.HasRole(config.RoleWorker) {
		svc.ProcessInline = true
		svc.FirstAttempts = a.Outbound.DeliverNew
	}
	a.Service, err = hub.NewService(svc)
	if err != nil {
		return err
	}
	static, err := a.bootstrapAdmin(ctx)
	if err != nil {
		return err
	}
	a.Links, err = hub.NewLinks(hub.LinksConfig{IPKey: hub.DeriveClickKey(secretKey), Logger: a.log}, a.DB)
	if err != nil {
		return err
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = hub.ErrorHandler
	// Client addresses (hashed for clicks) come from X-Forwarded-For only
	// through proxies on private networks.
	e.IPExtractor = echo.ExtractIPFromXFFHeader()
	e.Use(middleware.Recover())
	if err := a.mountObservability(e, static); err != nil {
		return err
	}
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", a.ready)
	if cfg.HasRole(config.RoleIngest) {
		in := connectors.NewInbound(connectors.InboundConfig{MaxBodyBytes: cfg.MaxBodyBytes, Logger: a.log}, reg, a.DB, a.Service)
		in.Mount(e.Group("/in"))
		a.Links.Mount(e) // public: /r/:code and /t.js
	}
	if cfg.HasRole(config.RoleAPI) {
		g := e.Group("/api/v1", middleware.BodyLimit(fmt.Sprint(cfg.MaxBodyBytes/1024)+"K"), hub.Auth(a.DB, static...), hub.Idempotency(a.DB))
		hub.NewAPI(hub.APIConfig{PublicURL: cfg.PublicURL, Providers: reg.Providers(), SetupSteps: connectors.SetupSteps}, a.DB).Mount(g)
		a.Links.MountAPI(g)
		connectors.MountTrigger(g, e, a.DB, connectors.TriggerConfig{Logger: a.log})
		outbound.Mount(g, a.DB, outbound.APIConfig{Queue: a.Queue, Deliver: a.Outbound.Deliver, Breakers: a.Outbound.BreakerStates})
		hub.MountPayouts(g, a.Service)
		hub.MountOverrides(g, a.Service)
		hub.MountReviews(g, a.Service)
		hub.MountInbound(g, a.Service)
		hub.MountReports(g, a.DB)
		schemas.Mount(e.Group("/api/v1"))
		openapi.Mount(e.Group("/api/v1"))
		ui.Mount(e, ui.Config{PublicURL: cfg.PublicURL, Logger: a.log}) // /ui: dashboard and partner portal, through the API above
	}
	a.echo = e
	a.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("PARTNERHUB_ADDR: %w", err)
	}
	a.srv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// bootstrapAdmin returns the configured admin key as a static key, or
// creates a random one the first time the database is used and prints it.
func (a *App) bootstrapAdmin(ctx context.Context) ([]*hub.APIKey, error) {
	if a.cfg.AdminKey != "" {
		return []*hub.APIKey{{
			ID: "key_admin_env", ProgramID: hub.DefaultProgramID, Name: "PARTNERHUB_ADMIN_KEY",
			Role: hub.RoleAdmin, Hash: hub.HashKey(a.cfg.AdminKey), Prefix: a.cfg.AdminKey[:8],
		}}, nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	key := "phk_" + base64.RawURLEncoding.EncodeToString(b)
	k := &hub.APIKey{ID: "key_bootstrap", ProgramID: hub.DefaultProgramID, Name: "bootstrap admin",
		Role: hub.RoleAdmin, Hash: hub.HashKey(key), Prefix: key[:8]}
	err := a.DB.CreateAPIKey(ctx, k)
	if errors.Is(err, &hub.Error{Code: hub.ECONFLICT}) {
		return nil, nil // created on an earlier start and printed then
	}
	if err != nil {
		return nil, fmt.Errorf("creating bootstrap admin key: %w", err)
	}
	fmt.Fprintf(a.out, "\nGenerated admin API key (shown once, store it now):\n\n    %s\n\nSet PARTNERHUB_ADMIN_KEY to choose your own.\n\n", key)
	return nil, nil
}

func (a *App) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	st := map[string]string{"database": "ok", "queue": "ok"}
	code := http.StatusOK
	if err := a.DB.Ping(ctx); err != nil {
		st["database"], code = "unavailable", http.StatusServiceUnavailable
	}
	if err := a.Queue.Ping(ctx); err != nil {
		st["queue"], code = "unavailable", http.StatusServiceUnavailable
	}
	return c.JSON(code, st)
}

// Addr is the address the server listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Run serves until ctx is done, then shuts down gracefully.
func (a *App) Run(ctx context.Context) error {
	if a.cfg.HasRole(config.RoleWorker) {
		retention, err := hub.NewRetention(hub.RetentionConfig{Store: a.DB, Period: a.cfg.RawRetention, Logger: a.log})
		if err != nil {
			return err
		}
		if err := a.Queue.StartWorker(queue.Handlers{
			Process:      a.Service.Process,
			ProcessBatch: a.Service.ProcessBatch,
			Deliver:      a.Outbound.Deliver,
			Sweep:        a.Service.Sweep,
			Reconcile:    a.Service.Reconcile,
			Approve:      a.Service.Approve,
			Retention:    retention.Job,
		}); err != nil {
			return fmt.Errorf("starting worker: %w", err)
		}
		if err := a.Queue.StartScheduler(); err != nil {
			return fmt.Errorf("starting scheduler: %w", err)
		}
	}
	go func() { _ = a.Links.Run(context.WithoutCancel(ctx)) }()
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	a.log.Info("partnerhub listening", "addr", a.Addr(), "roles", a.cfg.Roles, "godebug", os.Getenv("GODEBUG"))
	select {
	case err := <-errc:
		return fmt.Errorf("serving HTTP: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down HTTP server: %w", err)
	}
	if err := a.Links.Close(); err != nil {
		return fmt.Errorf("writing queued clicks: %w", err)
	}
	return nil
}

// Close stops the worker and closes the queue and the database.
func (a *App) Close() {
	if a.ln != nil && a.srv == nil {
		_ = a.ln.Close()
	}
	if a.Links != nil {
		_ = a.Links.Close()
	}
	if a.Service != nil {
		a.Service.Close() // waits for events being applied inline
	}
	if a.Queue != nil {
		a.Queue.StopWorker() // waits for running tasks, which may still record attempts
	}
	if a.Outbound != nil {
		a.Outbound.Close() // first attempts under way may still queue their next ones
	}
	if a.Queue != nil {
		a.Queue.Close()
	}
	if a.DB != nil {
		_ = a.DB.Close()
	}
}
