// Package ui serves the web dashboard and the partner portal at /ui:
// server-rendered pages (html/template, embedded assets, htmx for live
// lists) behind a login with an API key. Every read and change goes
// through the hub's own /api/v1 in-process with the session's key, so
// roles and partner scoping are exactly the API's.
package ui

import (
	"crypto/subtle"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

//go:embed static templates
var assets embed.FS

// Config configures the dashboard.
type Config struct {
	// PublicURL is the base of the referral links shown to partners
	// (PublicURL + "/r/" + code). Zero: the request's scheme and host.
	PublicURL string
	// SessionIdle is how long a session lives without a request. Zero:
	// 8 hours.
	SessionIdle time.Duration
	// Now is the clock of sessions. Zero: time.Now.
	Now func() time.Time
	// Logger zero value: slog.Default().
	Logger *slog.Logger
}

// UI holds the dashboard's sessions and templates.
type UI struct {
	cfg      Config
	api      http.Handler
	sessions *sessions
	pages    pageSet
}

// Mount adds the dashboard's routes under /ui to e. The handlers call the
// API on e itself (e.ServeHTTP), so e must also serve /api/v1.
func Mount(e *echo.Echo, cfg Config) {
	u := New(e, cfg)
	u.Mount(e)
}

// New builds the dashboard; api serves /api/v1/... for its in-process
// calls.
func New(api http.Handler, cfg Config) *UI {
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 8 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &UI{cfg: cfg, api: api, sessions: newSessions(cfg.SessionIdle, cfg.Now), pages: mustParsePages()}
}

// Mount adds the routes to e.
func (u *UI) Mount(e *echo.Echo) {
	e.GET("/ui", func(c echo.Context) error { return c.Redirect(http.StatusFound, "/ui/") })
	static, _ := fs.Sub(assets, "static")
	files := http.StripPrefix("/ui/static/", http.FileServer(http.FS(static)))
	e.GET("/ui/static/*", func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	})
	e.GET("/ui/login", u.loginPage, headers)
	e.POST("/ui/login", u.login, headers, sameOrigin)

	get := func(path string, h pageHandler) { e.GET(path, u.page(h), headers) }
	post := func(path string, h pageHandler) { e.POST(path, u.page(h), headers, sameOrigin, u.csrf) }
	post("/ui/logout", u.logout)
	get("/ui/", u.home)

	// operations
	get("/ui/sources", u.sourcesPage)
	post("/ui/sources/:id/trigger", u.triggerSource)
	get("/ui/inbound", u.inboundPage)
	get("/ui/inbound/:id", u.inboundDetail)
	post("/ui/inbound/:id/reprocess", u.reprocessInbound)
	get("/ui/deliveries", u.deliveriesPage)
	get("/ui/deliveries/bulk-retry", u.bulkRetryConfirm)
	post("/ui/deliveries/bulk-retry", u.bulkRetry)
	get("/ui/deliveries/:id", u.deliveryDetail)
	post("/ui/deliveries/:id/retry", u.retryDelivery)
	post("/ui/events/:id/replay", u.replayEvent)
	get("/ui/endpoints", u.endpointsPage)
	post("/ui/endpoints", u.createEndpoint)
	post("/ui/endpoints/:id/enable", u.enableEndpoint)
	post("/ui/endpoints/:id/rotate", u.rotateEndpoint)
	post("/ui/endpoints/:id/ping", u.pingEndpoint)

	// program
	get("/ui/partners", u.partnersPage)
	post("/ui/partners", u.createPartner)
	get("/ui/conversions", u.conversionsPage)
	get("/ui/conversions/:id", u.conversionDetail)
	get("/ui/rules", u.rulesPage)
	get("/ui/payouts", u.payoutsPage)
	post("/ui/payouts", u.createPayout)
	get("/ui/payouts/:id", u.payoutDetail)
	post("/ui/payouts/:id/confirm", u.confirmPayout)
	get("/ui/payouts/:id/export.csv", u.exportPayout)
	get("/ui/reports", u.reportsPage)
	get("/ui/reports/export.csv", u.exportReport)

	// partner portal
	get("/ui/portal", u.portalPage)
}

// pageHandler serves a page for a signed-in session.
type pageHandler func(c echo.Context, s *session) error

const cookieName = "partnerhub_ui"

// page resolves the session cookie; without a live session a GET goes to
// the login page and anything else is refused.
func (u *UI) page(h pageHandler) echo.HandlerFunc {
	return func(c echo.Context) error {
		var s *session
		if ck, err := c.Cookie(cookieName); err == nil {
			// A live list polling does not keep an idle session alive.
			s = u.sessions.get(ck.Value, c.Request().Header.Get("HX-Request") != "true")
		}
		if s == nil {
			if c.Request().Method == http.MethodGet {
				next := c.Request().URL.RequestURI()
				return c.Redirect(http.StatusSeeOther, "/ui/login?next="+url.QueryEscape(next))
			}
			return u.render(c, http.StatusUnauthorized, "message", &view{Title: "Signed out",
				Error: "Your session ended. Sign in again."})
		}
		c.Set(sessionCtxKey, s)
		return h(c, s)
	}
}

const sessionCtxKey = "partnerhub.ui.session"

// csrf checks the form's token against the session's.
func (u *UI) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var s *session
		if ck, err := c.Cookie(cookieName); err == nil {
			s = u.sessions.get(ck.Value, false)
		}
		if s != nil && subtle.ConstantTimeCompare([]byte(c.FormValue("csrf")), []byte(s.csrf)) != 1 {
			return u.render(c, http.StatusForbidden, "message", &view{Title: "Refused",
				Error: "The form expired or did not come from this page. Go back, reload and try again."})
		}
		return next(c)
	}
}

// headers sets the security headers of every page.
func headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// sameOrigin refuses cross-site form posts, on top of the SameSite=Strict
// cookie and the CSRF token.
func sameOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
			return echo.NewHTTPError(http.StatusForbidden, "cross-site form posts are refused")
		}
		if o := r.Header.Get(echo.HeaderOrigin); o != "" && o != "null" {
			if ou, err := url.Parse(o); err != nil || ou.Host != r.Host {
				return echo.NewHTTPError(http.StatusForbidden, "cross-site form posts are refused")
			}
		}
		return next(c)
	}
}
