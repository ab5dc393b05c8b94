package ui

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
)

// view is what every page template gets.
type view struct {
	Title  string
	Nav    string // the nav entry to mark current
	S      *session
	Flash  flash
	Error  string
	Data   any
	Live   bool // the page refreshes its #live region
	Public string
	Here   string // the page's own URL, which live regions poll
}

// Role is the session's role, or "".
func (v *view) Role() string {
	if v.S == nil {
		return ""
	}
	return v.S.role
}

// PartnerCode is a partner session's code.
func (v *view) PartnerCode() string {
	if v.S == nil {
		return ""
	}
	return v.S.partnerCode
}

// CSRF is the session's form token.
func (v *view) CSRF() string {
	if v.S == nil {
		return ""
	}
	return v.S.csrf
}

// Can says whether the session's role may do action; the API decides in
// the end, this only hides buttons it would refuse.
func (v *view) Can(action string) bool {
	switch v.Role() {
	case roleAdmin:
		return true
	case roleOps:
		switch action {
		case "retry", "reprocess", "replay", "enable", "ping":
			return true
		}
	case rolePartner:
		switch action {
		case "endpoints", "enable", "ping":
			return true
		}
	}
	return false
}

// Staff reports whether the session reads the whole program.
func (v *view) Staff() bool {
	r := v.Role()
	return r == roleAdmin || r == roleOps || r == roleViewer
}

type pageSet map[string]*template.Template

var funcs = template.FuncMap{
	"money": func(minor int64, currency string) string {
		return hub.FormatMinor(minor, currency) + " " + strings.ToUpper(currency)
	},
	"when": when,
	"join": strings.Join,
	"short": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
	"statusClass": func(s string) string {
		switch s {
		case "succeeded", "processed", "approved", "paid", "confirmed", "enabled", "ok":
			return "good"
		case "failed", "disabled", "void":
			return "bad"
		}
		return "wait"
	},
}

// when renders a time as <time datetime=RFC 3339> with UTC text; app.js
// rewrites the text in the viewer's time zone.
func when(t any) template.HTML {
	var tt time.Time
	switch v := t.(type) {
	case time.Time:
		tt = v
	case *time.Time:
		if v == nil {
			return "—"
		}
		tt = *v
	}
	if tt.IsZero() {
		return "—"
	}
	tt = tt.UTC()
	return template.HTML(fmt.Sprintf(`<time datetime="%s">%s</time>`,
		tt.Format(time.RFC3339), tt.Format("2006-01-02 15:04 UTC")))
}

func mustParsePages() pageSet {
	base := template.Must(template.New("base").Funcs(funcs).ParseFS(assets, "templates/partials/*.html"))
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		panic(err)
	}
	ps := pageSet{}
	for _, n := range names {
		t := template.Must(template.Must(base.Clone()).ParseFS(assets, n))
		ps[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	return ps
}

// render writes page name inside the layout.
func (u *UI) render(c echo.Context, status int, name string, v *view) error {
	t, ok := u.pages[name]
	if !ok {
		return fmt.Errorf("no page template %q", name)
	}
	if v.S == nil {
		v.S, _ = c.Get(sessionCtxKey).(*session)
	}
	v.Here = c.Request().URL.RequestURI()
	if v.S != nil {
		if f := u.sessions.takeFlash(v.S); f != (flash{}) {
			v.Flash = f
		}
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return fmt.Errorf("rendering %s: %w", name, err)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// fail renders an API error as a page: 403 says the role may not see it.
func (u *UI) fail(c echo.Context, title string, err error) error {
	status := http.StatusBadGateway
	if ae, ok := err.(*apiError); ok {
		status = ae.Status
	}
	return u.render(c, status, "message", &view{Title: title, Error: err.Error()})
}

// back redirects to the page the form was on, with a flash.
func (u *UI) back(c echo.Context, s *session, to string, f flash) error {
	u.sessions.setFlash(s, f)
	return c.Redirect(http.StatusSeeOther, to)
}

// done redirects with the outcome of an API call.
func (u *UI) done(c echo.Context, s *session, to, ok string, err error) error {
	if err != nil {
		return u.back(c, s, to, flash{Err: err.Error()})
	}
	return u.back(c, s, to, flash{Msg: ok})
}
