package ui

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// Roles, as the API names them.
const (
	roleAdmin   = "admin"
	roleOps     = "ops"
	roleViewer  = "viewer"
	rolePartner = "partner"
)

func (u *UI) loginPage(c echo.Context) error {
	return u.render(c, http.StatusOK, "login", &view{Title: "Sign in", Data: safeNext(c.QueryParam("next"))})
}

// safeNext keeps a post-login redirect on the dashboard.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/"
	}
	return next
}

// login checks the API key by calling the API with it, learns its role
// (and, for a partner key, its partner) and starts a session.
func (u *UI) login(c echo.Context) error {
	key := strings.TrimSpace(c.FormValue("key"))
	next := safeNext(c.FormValue("next"))
	fail := func(status int, msg string) error {
		return u.render(c, status, "login", &view{Title: "Sign in", Error: msg, Data: next})
	}
	if key == "" {
		return fail(http.StatusUnprocessableEntity, "Enter an API key.")
	}
	s, err := u.identify(c, key)
	if err != nil {
		return fail(http.StatusUnauthorized, err.Error())
	}
	id := u.sessions.create(s)
	c.SetCookie(&http.Cookie{
		Name: cookieName, Value: id, Path: "/ui", HttpOnly: true, Secure: c.Scheme() == "https",
		SameSite: http.SameSiteStrictMode, MaxAge: int(u.cfg.SessionIdle.Seconds()),
	})
	if s.role == rolePartner && next == "/ui/" {
		next = "/ui/portal"
	}
	return c.Redirect(http.StatusSeeOther, next)
}

type loginError string

func (e loginError) Error() string { return string(e) }

// identify finds the role of key from what the API lets it read: the
// program is staff-only, API keys admin-only, and retrying a delivery is
// for ops and admins (a retry of a delivery that does not exist changes
// nothing: the API answers 404 to ops and 403 to viewers).
func (u *UI) identify(c echo.Context, key string) (*session, error) {
	r := u.call(c, key, http.MethodGet, "/program", nil, nil)
	switch {
	case r.Status == http.StatusUnauthorized:
		return nil, loginError("That API key is not valid (or was revoked).")
	case r.Status == http.StatusForbidden:
		return u.identifyPartner(c, key)
	case r.Status != http.StatusOK:
		return nil, loginError("The hub could not check the key: " + problemOf(r).Error())
	}
	if u.call(c, key, http.MethodGet, "/api-keys", url.Values{"limit": {"1"}}, nil).Status == http.StatusOK {
		return &session{key: key, role: roleAdmin}, nil
	}
	if u.call(c, key, http.MethodPost, "/deliveries/dlv_role_probe/retry", nil, nil).Status == http.StatusForbidden {
		return &session{key: key, role: roleViewer}, nil
	}
	return &session{key: key, role: roleOps}, nil
}

// identifyPartner finds the partner of a partner key from the first of
// its own rows the API shows it.
func (u *UI) identifyPartner(c echo.Context, key string) (*session, error) {
	s := &session{key: key, role: rolePartner}
	var rep report
	if err := u.do(c, s, http.MethodGet, "/reports/partners", nil, nil, &rep); err != nil {
		return nil, loginError("This key may not use the dashboard: " + err.Error())
	}
	if len(rep.Data) > 0 {
		s.partnerID = rep.Data[0].PartnerID
	}
	for _, path := range []string{"/conversions", "/clicks", "/endpoints"} {
		if s.partnerID != "" {
			break
		}
		var l list[struct {
			PartnerID string `json:"partner_id"`
		}]
		if u.do(c, s, http.MethodGet, path, url.Values{"limit": {"1"}}, nil, &l) == nil && len(l.Data) > 0 {
			s.partnerID = l.Data[0].PartnerID
		}
	}
	if s.partnerID != "" {
		var p partner
		if u.do(c, s, http.MethodGet, "/partners/"+url.PathEscape(s.partnerID), nil, nil, &p) == nil {
			s.partnerCode, s.partnerName = p.Code, p.Name
		}
	}
	return s, nil
}

func (u *UI) logout(c echo.Context, s *session) error {
	if ck, err := c.Cookie(cookieName); err == nil {
		u.sessions.delete(ck.Value)
	}
	c.SetCookie(&http.Cookie{Name: cookieName, Value: "", Path: "/ui", HttpOnly: true, Secure: c.Scheme() == "https",
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	return c.Redirect(http.StatusSeeOther, "/ui/login")
}

func (u *UI) home(c echo.Context, s *session) error {
	if s.role == rolePartner {
		return c.Redirect(http.StatusFound, "/ui/portal")
	}
	return c.Redirect(http.StatusFound, "/ui/deliveries")
}
