package hub

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// APIConfig configures the hub's API routes.
type APIConfig struct {
	// PublicURL is the base of the webhook URLs shown to merchants.
	PublicURL string
	// Providers lists the provider names sources may use.
	Providers []string
	// SetupSteps returns the steps that connect a provider to a source's
	// webhook URL; optional.
	SetupSteps func(provider, webhookURL string) []string
}

// API serves the hub's resources under /api/v1.
type API struct {
	cfg APIConfig
	st  Store
}

// NewAPI returns the hub's API.
func NewAPI(cfg APIConfig, st Store) *API {
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &API{cfg: cfg, st: st}
}

// Mount adds the routes to g, which must already authenticate (Auth).
func (a *API) Mount(g *echo.Group) {
	g.GET("/program", a.getProgram, Staff)
	g.PATCH("/program", a.patchProgram, AdminOnly)
	g.POST("/programs", a.createProgram, AdminOnly)
	g.GET("/programs", a.listPrograms, AdminOnly)
	g.POST("/sources", a.createSource, AdminOnly)
	g.GET("/sources", a.listSources, Staff)
	g.GET("/sources/:id", a.getSource, Staff)
	g.PATCH("/sources/:id", a.patchSource, AdminOnly)
	g.POST("/partners", a.createPartner, AdminOnly)
	g.GET("/partners", a.listPartners, Staff)
	g.GET("/partners/:id", a.getPartner, StaffOrPartner)
	g.GET("/conversions", a.listConversions, StaffOrPartner)
	g.GET("/conversions/:id", a.getConversion, StaffOrPartner)
	g.GET("/refunds", a.listRefunds, StaffOrPartner)
	g.GET("/commissions", a.listCommissions, StaffOrPartner)
	g.GET("/commissions/summary", a.commissionSummary, StaffOrPartner)
	g.GET("/inbound-events", a.listInbound, Staff)
	g.GET("/audit-log", a.listAudit, Staff)
	g.GET("/me", a.me, StaffOrPartner)
	g.POST("/api-keys", a.createKey, AdminOnly)
	g.GET("/api-keys", a.listKeys, AdminOnly)
	g.GET("/api-keys/:id", a.getKey, AdminOnly)
	g.DELETE("/api-keys/:id", a.revokeKey, AdminOnly)
	a.mountRules(g)
}

func (a *API) audit(c echo.Context, action, resource, id string, before, after any) error {
	return auditChange(c, a.st, action, resource, id, before, after)
}

func (a *API) getProgram(c echo.Context) error {
	p, err := a.st.GetProgram(c.Request().Context(), Caller(c).ProgramID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

type programPatch struct {
	Name                 *string          `json:"name"`
	DefaultCommissionBPS *int64           `json:"default_commission_bps"`
	HoldDays             *int             `json:"hold_days"`
	CookieDays           *int             `json:"cookie_days"`
	AttributionOrder     []string         `json:"attribution_order"`
	TouchModel           *string          `json:"touch_model"`
	LifetimeMonths       *int             `json:"lifetime_months"`
	DestinationURL       *string          `json:"destination_url"`
	AllowedHosts         []string         `json:"allowed_hosts"`
	MinPayoutMinor       map[string]int64 `json:"min_payout_minor"`
}

// patchSettings applies the settings fields of in to p, collecting field
// errors in bad.
func patchSettings(p *Program, in programPatch, bad map[string]string) {
	if in.CookieDays != nil {
		if *in.CookieDays < 1 || *in.CookieDays > 3650 {
			bad["cookie_days"] = "must be from 1 to 3650"
		}
		p.CookieDays = *in.CookieDays
	}
	if in.AttributionOrder != nil {
		seen := map[string]bool{}
		for _, o := range in.AttributionOrder {
			switch o {
			case SourceClick, SourcePartnerCode, SourcePromoCode, SourceCustomer:
			default:
				bad["attribution_order"] = "items must be click, partner_code, promo_code or customer"
			}
			if seen[o] {
				bad["attribution_order"] = "must not repeat an item"
			}
			seen[o] = true
		}
		p.AttributionOrder = in.AttributionOrder
	}
	if in.TouchModel != nil {
		if *in.TouchModel != "first" && *in.TouchModel != "last" {
			bad["touch_model"] = "must be first or last"
		}
		p.TouchModel = *in.TouchModel
	}
	if in.LifetimeMonths != nil {
		if *in.LifetimeMonths < 0 {
			bad["lifetime_months"] = "must be 0 (forever) or a number of months"
		}
		p.LifetimeMonths = *in.LifetimeMonths
	}
	if in.DestinationURL != nil {
		if u, err := url.Parse(*in.DestinationURL); *in.DestinationURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
			bad["destination_url"] = "must be an absolute http(s) URL"
		}
		p.DestinationURL = *in.DestinationURL
	}
	if in.AllowedHosts != nil {
		for _, h := range in.AllowedHosts {
			if h == "" || strings.ContainsAny(h, "/:?# ") {
				bad["allowed_hosts"] = "items must be host names such as shop.example.com"
			}
		}
		p.AllowedHosts = in.AllowedHosts
	}
	if in.MinPayoutMinor != nil {
		for cur, v := range in.MinPayoutMinor {
			if _, ok := Exponent(cur); !ok || v < 0 {
				bad["min_payout_minor"] = "keys must be ISO 4217 codes and values non-negative minor units"
			}
		}
		p.MinPayoutMinor = in.MinPayoutMinor
	}
}

func (a *API) patchProgram(c echo.Context) error {
	var in programPatch
	if err := Bind(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	p, err := a.st.GetProgram(ctx, Caller(c).ProgramID)
	if err != nil {
		return err
	}
	before := *p
	bad := map[string]string{}
	if in.Name != nil {
		if strings.TrimSpace(*in.Name) == "" {
			bad["name"] = "must not be empty"
		}
		p.Name = strings.TrimSpace(*in.Name)
	}
	if in.DefaultCommissionBPS != nil {
		if *in.DefaultCommissionBPS < 0 || *in.DefaultCommissionBPS > 10000 {
			bad["default_commission_bps"] = "must be from 0 to 10000 basis points"
		}
		p.DefaultCommissionBPS = *in.DefaultCommissionBPS
	}
	if in.HoldDays != nil {
		if *in.HoldDays < 0 || *in.HoldDays > 365 {
			bad["hold_days"] = "must be from 0 to 365"
		}
		p.HoldDays = *in.HoldDays
	}
	patchSettings(p, in, bad)
	if len(bad) > 0 {
		return Invalid(bad)
	}
	if err := a.st.UpdateProgram(ctx, p); err != nil {
		return err
	}
	if err := a.audit(c, "program.update", "program", p.ID, before, p); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// sourceView is a source as the API shows it: with the URL to paste into
// the provider's webhook settings, never with its secrets.
type sourceView struct {
	*Source
	WebhookURL     string `json:"webhook_url"`
	HasCredentials bool   `json:"has_credentials"`
	// Setup says how to connect the provider to WebhookURL.
	Setup []string `json:"setup,omitempty"`
}

func (a *API) view(s *Source) sourceView {
	v := sourceView{Source: s, WebhookURL: a.cfg.PublicURL + "/in/" + s.ID, HasCredentials: len(s.Credentials) > 0}
	if a.cfg.SetupSteps != nil {
		v.Setup = a.cfg.SetupSteps(s.Provider, v.WebhookURL)
	}
	return v
}

type sourceInput struct {
	Provider string            `json:"provider"`
	Name     string            `json:"name"`
	Secret   string            `json:"secret"`
	Options  map[string]string `json:"options"`
	// Credentials are write-only REST credentials for reconciliation.
	Credentials map[string]string `json:"credentials"`
}

func (a *API) createSource(c echo.Context) error {
	var in sourceInput
	if err := Bind(c, &in); err != nil {
		return err
	}
	bad := map[string]string{}
	if !slices.Contains(a.cfg.Providers, in.Provider) {
		bad["provider"] = "must be one of " + strings.Join(a.cfg.Providers, ", ")
	}
	if strings.TrimSpace(in.Secret) == "" {
		bad["secret"] = "is required: the signing secret the provider shows for this webhook"
	}
	if len(bad) > 0 {
		return Invalid(bad)
	}
	if in.Name == "" {
		in.Name = in.Provider
	}
	s := &Source{ID: NewID("src"), ProgramID: Caller(c).ProgramID, Provider: in.Provider, Name: in.Name,
		Secret: strings.TrimSpace(in.Secret), Options: in.Options, Credentials: in.Credentials}
	if err := a.st.CreateSource(c.Request().Context(), s); err != nil {
		return err
	}
	if err := a.audit(c, "source.create", "source", s.ID, nil, s); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, a.view(s))
}

func (a *API) listSources(c echo.Context) error {
	p, err := PageOf(c)
	if err != nil {
		return err
	}
	ss, err := a.st.ListSources(c.Request().Context(), Caller(c).ProgramID, p)
	if err != nil {
		return err
	}
	vs := make([]sourceView, len(ss))
	for i, s := range ss {
		vs[i] = a.view(s)
	}
	return c.JSON(http.StatusOK, NewList(vs, p, func(v sourceView) string { return v.ID }))
}

func (a *API) getSource(c echo.Context) error {
	s, err := a.st.GetSource(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	if s.ProgramID != Caller(c).ProgramID {
		return Errorf(ENOTFOUND, "source %s not found", c.Param("id"))
	}
	return c.JSON(http.StatusOK, a.view(s))
}

var codeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{1,63}$`)

type partnerInput struct {
	Name  string   `json:"name"`
	Email string   `json:"email"`
	Code  string   `json:"code"`
	Tags  []string `json:"tags"`
}

func (a *API) createPartner(c echo.Context) error {
	var in partnerInput
	if err := Bind(c, &in); err != nil {
		return err
	}
	bad := map[string]string{}
	if strings.TrimSpace(in.Name) == "" {
		bad["name"] = "is required"
	}
	if !codeRE.MatchString(in.Code) || strings.HasPrefix(strings.ToLower(in.Code), "clk_") {
		bad["code"] = "must be 2-64 letters, digits, '-' or '_', not starting with clk_"
	}
	if msg := checkTags(in.Tags); msg != "" {
		bad["tags"] = msg
	}
	if len(bad) > 0 {
		return Invalid(bad)
	}
	ctx := c.Request().Context()
	pid := Caller(c).ProgramID
	p := &Partner{ID: NewID("ptn"), ProgramID: pid, Name: strings.TrimSpace(in.Name), Email: in.Email, Code: in.Code, Tags: in.Tags}
	if err := a.st.CreatePartner(ctx, p); err != nil {
		if errors.Is(err, &Error{Code: ECONFLICT}) {
			return &Error{Code: ECONFLICT, Message: "partner code already in use", Fields: map[string]string{"code": "is already used by another partner"}}
		}
		return err
	}
	if err := a.audit(c, "partner.create", "partner", p.ID, nil, p); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, p)
}

func (a *API) listPartners(c echo.Context) error {
	return listOf(c, func(ctx context.Context, pid string, _ Filter, p Page) ([]*Partner, error) {
		return a.st.ListPartners(ctx, pid, p)
	}, func(p *Partner) string { return p.ID })
}

func (a *API) getPartner(c echo.Context) error {
	if !OwnedBy(c, c.Param("id")) {
		return Errorf(ENOTFOUND, "partner %s not found", c.Param("id"))
	}
	p, err := a.st.GetPartner(c.Request().Context(), Caller(c).ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (a *API) listConversions(c echo.Context) error {
	return listOf(c, a.st.ListConversions, func(x *Conversion) string { return x.ID })
}

func (a *API) getConversion(c echo.Context) error {
	x, err := a.st.GetConversion(c.Request().Context(), Caller(c).ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	if !OwnedBy(c, x.PartnerID) {
		return Errorf(ENOTFOUND, "conversion %s not found", c.Param("id"))
	}
	return c.JSON(http.StatusOK, x)
}

func (a *API) listRefunds(c echo.Context) error {
	return listOf(c, a.st.ListRefunds, func(x *Refund) string { return x.ID })
}

func (a *API) listCommissions(c echo.Context) error {
	return listOf(c, a.st.ListCommissions, func(x *Commission) string { return x.ID })
}

// CurrencyTotal is the net of commissions in one currency.
type CurrencyTotal struct {
	Currency string `json:"currency"`
	NetMinor int64  `json:"net_minor"`
	Count    int    `json:"count"`
}

// commissionSummary totals net commissions per currency over every
// commission matching the filter. Test-mode commissions are left out.
func (a *API) commissionSummary(c echo.Context) error {
	f, err := FilterOf(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	totals := map[string]*CurrencyTotal{}
	var order []string
	p := Page{Limit: 200}
	for {
		cs, err := a.st.ListCommissions(ctx, Caller(c).ProgramID, f, p)
		if err != nil {
			return err
		}
		for _, x := range cs {
			if x.Test {
				continue
			}
			t, ok := totals[x.Currency]
			if !ok {
				t = &CurrencyTotal{Currency: x.Currency}
				totals[x.Currency] = t
				order = append(order, x.Currency)
			}
			t.NetMinor += x.NetMinor
			t.Count++
		}
		if len(cs) < p.Limit {
			break
		}
		p.Cursor = cs[len(cs)-1].ID
	}
	slices.Sort(order)
	out := make([]CurrencyTotal, 0, len(order))
	for _, cur := range order {
		out = append(out, *totals[cur])
	}
	return c.JSON(http.StatusOK, map[string]any{"data": out})
}

func (a *API) listInbound(c echo.Context) error {
	return listOf(c, a.st.ListInboundEvents, func(x *InboundEvent) string { return x.ID })
}

func (a *API) listAudit(c echo.Context) error {
	return listOf(c, func(ctx context.Context, pid string, _ Filter, p Page) ([]*AuditEntry, error) {
		return a.st.ListAudit(ctx, pid, p)
	}, func(x *AuditEntry) string { return x.ID })
}

func listOf[T any](c echo.Context, list func(context.Context, string, Filter, Page) ([]T, error), idOf func(T) string) error {
	p, err := PageOf(c)
	if err != nil {
		return err
	}
	f, err := FilterOf(c)
	if err != nil {
		return err
	}
	items, err := list(c.Request().Context(), Caller(c).ProgramID, f, p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NewList(items, p, idOf))
}
