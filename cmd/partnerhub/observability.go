package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/partnerhub/partnerhub/config"
	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/metrics"
	"github.com/partnerhub/partnerhub/hub/queue"
)

// queueUIPath is where asynqmon is mounted.
const queueUIPath = "/ops/queues"

// mountObservability adds the request id and access log middleware,
// GET /metrics (unauthenticated, as Prometheus expects) and, for the api
// role, the queue UI at /ops/queues behind the API keys (static ones
// included).
func (a *App) mountObservability(e *echo.Echo, static []*hub.APIKey) error {
	e.Pre(requestLog(a.log))
	reg, err := metrics.NewRegistry(
		metrics.NewQueueCollector(a.Queue.Name(), queueDepth(a.Queue)),
		metrics.NewBreakerCollector(a.Outbound.BreakerStates),
	)
	if err != nil {
		return err
	}
	e.GET("/metrics", echo.WrapHandler(metrics.Handler(reg)))
	if a.cfg.HasRole(config.RoleAPI) {
		mountQueueUI(e, a.Queue.Redis(), hub.Auth(a.DB, static...))
	}
	return nil
}

// queueDepth reads the depth of q's asynq queue. A queue that never had a
// task is not known to asynq yet: its depth is zero.
func queueDepth(q *queue.Queue) func() (metrics.QueueDepth, error) {
	insp := asynq.NewInspectorFromRedisClient(q.Redis()) // shares the queue's client: never closed
	return func() (metrics.QueueDepth, error) {
		names, err := insp.Queues()
		if err != nil {
			return metrics.QueueDepth{}, fmt.Errorf("listing queues: %w", err)
		}
		if !slices.Contains(names, q.Name()) {
			return metrics.QueueDepth{}, nil
		}
		info, err := insp.GetQueueInfo(q.Name())
		if err != nil {
			return metrics.QueueDepth{}, fmt.Errorf("reading queue %s: %w", q.Name(), err)
		}
		return metrics.QueueDepth{
			Pending: info.Pending, Active: info.Active, Scheduled: info.Scheduled,
			Retry: info.Retry, Archived: info.Archived, Completed: info.Completed,
			Latency: info.Latency,
		}, nil
	}
}

// sharedRedis gives asynqmon the queue's Redis client rather than letting
// it open its own. asynqmon's Close, which would close the client, is
// never called: the queue owns the client and closes it.
type sharedRedis struct{ rc redis.UniversalClient }

func (s sharedRedis) MakeRedisClient() any { return s.rc }

// mountQueueUI mounts asynqmon at /ops/queues for admin keys (full UI) and
// ops keys (read-only: its API refuses every method but GET with 405).
// Browsers cannot send a bearer header, so the key is also accepted as the
// password of HTTP Basic credentials, with any user name.
func mountQueueUI(e *echo.Echo, rc redis.UniversalClient, auth echo.MiddlewareFunc) {
	full := asynqmon.New(asynqmon.Options{RootPath: queueUIPath, RedisConnOpt: sharedRedis{rc}})
	readOnly := asynqmon.New(asynqmon.Options{RootPath: queueUIPath, RedisConnOpt: sharedRedis{rc}, ReadOnly: true})
	h := func(c echo.Context) error {
		ui := readOnly
		if hub.Caller(c).Role == hub.RoleAdmin {
			ui = full
		}
		ui.ServeHTTP(c.Response(), c.Request())
		return nil
	}
	g := e.Group(queueUIPath, sameOrigin, basicAsBearer, auth, hub.RequireRole(hub.RoleAdmin, hub.RoleOps))
	g.Any("", h)
	g.Any("/*", h)
}

// basicAsBearer takes the password of HTTP Basic credentials as the bearer
// API key, and asks browsers for Basic credentials when the key is
// missing or wrong.
func basicAsBearer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if _, pw, ok := r.BasicAuth(); ok && pw != "" {
			r.Header.Set(echo.HeaderAuthorization, "Bearer "+pw)
		}
		err := next(c)
		if err != nil && hub.ErrorCode(err) == hub.EUNAUTHORIZED {
			c.Response().Header().Add("WWW-Authenticate", `Basic realm="partnerhub", charset="UTF-8"`)
		}
		return err
	}
}

// sameOrigin refuses cross-site requests that change something: browsers
// send cached Basic credentials along with them.
func sameOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return next(c)
		}
		if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
			return hub.Errorf(hub.EFORBIDDEN, "cross-site requests may not change the queues")
		}
		if o := r.Header.Get(echo.HeaderOrigin); o != "" {
			if u, err := url.Parse(o); err != nil || u.Host != r.Host {
				return hub.Errorf(hub.EFORBIDDEN, "cross-site requests may not change the queues")
			}
		}
		return next(c)
	}
}

// requestIDRE is what an incoming X-Request-Id must look like to be kept.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

type requestIDKey struct{}

// requestID returns the id of the HTTP request ctx belongs to, or "".
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestLog gives every request an id (the client's X-Request-Id when it
// is a sane token, else a random one), returns it in X-Request-Id, puts it
// in the request's context for the logger, and writes one access log line
// per request at info: method, route pattern (never the path with its ids,
// nor the query), status, duration and request id.
func requestLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			r := c.Request()
			id := r.Header.Get(echo.HeaderXRequestID)
			if !requestIDRE.MatchString(id) {
				id = rand.Text()
			}
			c.Response().Header().Set(echo.HeaderXRequestID, id)
			ctx := context.WithValue(r.Context(), requestIDKey{}, id)
			c.SetRequest(r.WithContext(ctx))
			if err := next(c); err != nil {
				c.Error(err) // writes the response, so its status is known
			}
			// Probes and scrapes arrive every few seconds: their lines
			// are debug, unless they fail.
			level := slog.LevelInfo
			switch c.Path() {
			case "/healthz", "/readyz", "/metrics":
				if c.Response().Status < 400 {
					level = slog.LevelDebug
				}
			}
			log.LogAttrs(ctx, level, "http request",
				slog.String("method", r.Method),
				slog.String("route", c.Path()),
				slog.Int("status", c.Response().Status),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
			return nil
		}
	}
}

// requestIDHandler adds the request_id of the record's context, if any.
type requestIDHandler struct{ slog.Handler }

// withRequestID returns l with request ids: log lines written with a
// request's context (slog's *Context functions) carry its request_id.
func withRequestID(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(requestIDHandler); ok {
		return l
	}
	return slog.New(requestIDHandler{l.Handler()})
}

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestID(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
