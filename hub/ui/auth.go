package ui

import (
	"encoding/json"
	"net/http"
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

// identify asks the API who key is (GET /me): its role and, for a
// partner key, its partner.
func (u *UI) identify(c echo.Context, key string) (*session, error) {
	var me struct {
		Key struct {
			Role string `json:"role"`
		} `json:"key"`
		Partner *partner `json:"partner"`
	}
	r := u.call(c, key, http.MethodGet, "/me", nil, nil)
	switch {
	case r.Status == http.StatusUnauthorized:
		return nil, loginError("That API key is not valid (or was revoked).")
	case r.Status != http.StatusOK:
		return nil, loginError("The hub could not check the key: " + problemOf(r).Error())
	}
	if err := json.Unmarshal(r.Body, &me); err != nil {
		return nil, loginError("The hub's answer about the key could not be read.")
	}
	s := &session{key: key}
	switch me.Key.Role {
	case "admin":
		s.role = roleAdmin
	case "ops":
		s.role = roleOps
	case "viewer":
		s.role = roleViewer
	case "partner":
		s.role = rolePartner
		if me.Partner != nil {
			s.partnerID, s.partnerCode, s.partnerName = me.Partner.ID, me.Partner.Code, me.Partner.Name
		}
	default:
		return nil, loginError("This key's role may not use the dashboard.")
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
