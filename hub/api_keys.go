package hub

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// NewAPIKeySecret returns a new random API key: "phk_" and 32 base64url
// characters (24 random bytes).
func NewAPIKeySecret() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return "phk_" + base64.RawURLEncoding.EncodeToString(b)
}

// keyCreated is the answer to creating a key: the only time the secret is
// shown.
type keyCreated struct {
	*APIKey
	Key string `json:"key"`
}

type keyInput struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	PartnerID string `json:"partner_id"`
}

func (a *API) createKey(c echo.Context) error {
	var in keyInput
	if err := Bind(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	pid := Caller(c).ProgramID
	bad := map[string]string{}
	if strings.TrimSpace(in.Name) == "" {
		bad["name"] = "is required: say who or what uses the key"
	}
	if !slices.Contains(Roles, in.Role) {
		bad["role"] = "must be one of " + strings.Join(Roles, ", ")
	}
	switch {
	case in.Role == RolePartner && in.PartnerID == "":
		bad["partner_id"] = "is required for a partner key"
	case in.Role != RolePartner && in.PartnerID != "":
		bad["partner_id"] = "is only for partner keys"
	case in.PartnerID != "":
		if _, err := a.st.GetPartner(ctx, pid, in.PartnerID); errors.Is(err, ErrNotFound) {
			bad["partner_id"] = "is not a partner of this program"
		} else if err != nil {
			return err
		}
	}
	if len(bad) > 0 {
		return Invalid(bad)
	}
	secret := NewAPIKeySecret()
	k := &APIKey{ID: NewID("key"), ProgramID: pid, Name: strings.TrimSpace(in.Name), Role: in.Role,
		PartnerID: in.PartnerID, Hash: HashKey(secret), Prefix: secret[:8]}
	if err := a.st.CreateAPIKey(ctx, k); err != nil {
		return err
	}
	if err := a.audit(c, "api_key.create", "api_key", k.ID, nil, k); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, keyCreated{APIKey: k, Key: secret})
}

func (a *API) listKeys(c echo.Context) error {
	p, err := PageOf(c)
	if err != nil {
		return err
	}
	ks, err := a.st.ListAPIKeys(c.Request().Context(), Caller(c).ProgramID, p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NewList(ks, p, func(k *APIKey) string { return k.ID }))
}

func (a *API) getKey(c echo.Context) error {
	k, err := a.st.GetAPIKey(c.Request().Context(), Caller(c).ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, k)
}

// revokeKey revokes a key at once; the key stays listed with revoked_at.
// A key cannot revoke itself, so a program keeps a working admin key.
func (a *API) revokeKey(c echo.Context) error {
	ctx := c.Request().Context()
	me := Caller(c)
	if c.Param("id") == me.ID {
		return Errorf(ECONFLICT, "a key cannot revoke itself; revoke it with another admin key")
	}
	before, err := a.st.GetAPIKey(ctx, me.ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	if err := a.st.RevokeAPIKey(ctx, me.ProgramID, before.ID, time.Now().UTC()); err != nil {
		return err
	}
	after, err := a.st.GetAPIKey(ctx, me.ProgramID, before.ID)
	if err != nil {
		return err
	}
	if err := a.audit(c, "api_key.revoke", "api_key", after.ID, before, after); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, after)
}

type programCreated struct {
	Program  *Program   `json:"program"`
	AdminKey keyCreated `json:"admin_key"`
}

// createProgram adds a program (a merchant) to the deployment with its
// first admin key. Only the default program's admins manage the
// deployment's programs.
func (a *API) createProgram(c echo.Context) error {
	me := Caller(c)
	if me.ProgramID != DefaultProgramID {
		return Errorf(EFORBIDDEN, "only the default program's admin keys create programs")
	}
	var in struct {
		Name string `json:"name"`
	}
	if err := Bind(c, &in); err != nil {
		return err
	}
	if strings.TrimSpace(in.Name) == "" {
		return Invalid(map[string]string{"name": "is required"})
	}
	ctx := c.Request().Context()
	def, err := a.st.GetProgram(ctx, DefaultProgramID)
	if err != nil {
		return err
	}
	p := &Program{Name: strings.TrimSpace(in.Name), DefaultCommissionBPS: 1000, HoldDays: 30}
	// A new program starts with the deployment's settings minus the
	// destination and hosts, which belong to the default program's shop.
	p.ProgramSettings = def.ProgramSettings
	p.DestinationURL, p.AllowedHosts = "", nil
	if err := a.st.CreateProgram(ctx, p); err != nil {
		return err
	}
	secret := NewAPIKeySecret()
	k := &APIKey{ID: NewID("key"), ProgramID: p.ID, Name: "first admin", Role: RoleAdmin,
		Hash: HashKey(secret), Prefix: secret[:8]}
	if err := a.st.CreateAPIKey(ctx, k); err != nil {
		return err
	}
	if err := a.audit(c, "program.create", "program", p.ID, nil, p); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, programCreated{Program: p, AdminKey: keyCreated{APIKey: k, Key: secret}})
}

func (a *API) listPrograms(c echo.Context) error {
	me := Caller(c)
	if me.ProgramID != DefaultProgramID {
		return Errorf(EFORBIDDEN, "only the default program's admin keys list programs")
	}
	p, err := PageOf(c)
	if err != nil {
		return err
	}
	ps, err := a.st.ListPrograms(c.Request().Context(), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NewList(ps, p, func(p *Program) string { return p.ID }))
}

type sourcePatch struct {
	Name *string `json:"name"`
	// Secret replaces the signing secret. The one it replaces is still
	// accepted until the next change, unless keep_previous is false.
	Secret       *string           `json:"secret"`
	KeepPrevious *bool             `json:"keep_previous"`
	Options      map[string]string `json:"options"`
	// Credentials replace the REST credentials; {} removes them.
	Credentials map[string]string `json:"credentials"`
}

func (a *API) patchSource(c echo.Context) error {
	var in sourcePatch
	if err := Bind(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	s, err := a.st.GetSource(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	if s.ProgramID != Caller(c).ProgramID {
		return Errorf(ENOTFOUND, "source %s not found", c.Param("id"))
	}
	before := a.view(s)
	beforeCopy := *before.Source
	before.Source = &beforeCopy
	bad := map[string]string{}
	if in.Name != nil {
		if strings.TrimSpace(*in.Name) == "" {
			bad["name"] = "must not be empty"
		}
		s.Name = strings.TrimSpace(*in.Name)
	}
	if in.Secret != nil {
		sec := strings.TrimSpace(*in.Secret)
		if sec == "" {
			bad["secret"] = "must not be empty"
		}
		if sec != s.Secret {
			s.PreviousSecret = s.Secret
			if in.KeepPrevious != nil && !*in.KeepPrevious {
				s.PreviousSecret = ""
			}
			s.Secret = sec
		}
	} else if in.KeepPrevious != nil && !*in.KeepPrevious {
		s.PreviousSecret = ""
	}
	if in.Options != nil {
		s.Options = in.Options
	}
	if in.Credentials != nil {
		s.Credentials = in.Credentials
		if len(in.Credentials) == 0 {
			s.Credentials = nil
		}
	}
	if len(bad) > 0 {
		return Invalid(bad)
	}
	if err := a.st.UpdateSource(ctx, s); err != nil {
		return err
	}
	if err := a.audit(c, "source.update", "source", s.ID, before, a.view(s)); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, a.view(s))
}

// programRef names a program.
type programRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// whoAmI is the answer of GET /me.
type whoAmI struct {
	Key     *APIKey    `json:"key"`
	Program programRef `json:"program"`
	// Partner is the partner a partner key speaks for.
	Partner *Partner `json:"partner,omitempty"`
}

// me tells a caller which key it uses: its role, its program and, for a
// partner key, its partner, so that clients (the dashboard) show what
// the role allows.
func (a *API) me(c echo.Context) error {
	k := Caller(c)
	ctx := c.Request().Context()
	out := whoAmI{Key: k}
	p, err := a.st.GetProgram(ctx, k.ProgramID)
	if err != nil {
		return err
	}
	out.Program = programRef{ID: p.ID, Name: p.Name}
	if k.Role == RolePartner {
		if out.Partner, err = a.st.GetPartner(ctx, k.ProgramID, k.PartnerID); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, out)
}
