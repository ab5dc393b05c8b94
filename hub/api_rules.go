package hub

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// mountRules adds promo code, rule and partner update routes when the
// store keeps rules.
func (a *API) mountRules(g *echo.Group) {
	rs, ok := a.st.(RuleStore)
	if !ok {
		return
	}
	r := &rulesAPI{API: a, rs: rs}
	g.PATCH("/partners/:id", r.patchPartner, AdminOnly)
	g.POST("/promo-codes", r.createPromo, AdminOnly)
	g.GET("/promo-codes", r.listPromos, Staff)
	g.DELETE("/promo-codes/:id", r.deletePromo, AdminOnly)
	g.POST("/rules", r.createRule, AdminOnly)
	g.GET("/rules", r.listRules, Staff)
	g.DELETE("/rules/:id", r.deleteRule, AdminOnly)
}

type rulesAPI struct {
	*API
	rs RuleStore
}

type partnerPatch struct {
	Name  *string  `json:"name"`
	Email *string  `json:"email"`
	Tags  []string `json:"tags"`
}

func (r *rulesAPI) patchPartner(c echo.Context) error {
	var in partnerPatch
	if err := Bind(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	p, err := r.st.GetPartner(ctx, Caller(c).ProgramID, c.Param("id"))
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
	if in.Email != nil {
		p.Email = strings.TrimSpace(*in.Email)
	}
	if in.Tags != nil {
		if msg := checkTags(in.Tags); msg != "" {
			bad["tags"] = msg
		}
		p.Tags = in.Tags
	}
	if len(bad) > 0 {
		return Invalid(bad)
	}
	if err := r.rs.UpdatePartner(ctx, p); err != nil {
		return err
	}
	if err := r.audit(c, "partner.update", "partner", p.ID, before, p); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func checkTags(tags []string) string {
	for _, t := range tags {
		if !codeRE.MatchString(t) {
			return "items must be 2-64 letters, digits, '-' or '_'"
		}
	}
	return ""
}

type promoInput struct {
	PartnerID string     `json:"partner_id"`
	Code      string     `json:"code"`
	StartsAt  *time.Time `json:"starts_at"`
	EndsAt    *time.Time `json:"ends_at"`
}

func (r *rulesAPI) createPromo(c echo.Context) error {
	var in promoInput
	if err := Bind(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	pid := Caller(c).ProgramID
	bad := map[string]string{}
	if strings.TrimSpace(in.Code) == "" || len(in.Code) > 100 {
		bad["code"] = "is required (up to 100 characters)"
	}
	if in.StartsAt != nil && in.EndsAt != nil && !in.EndsAt.After(*in.StartsAt) {
		bad["ends_at"] = "must be after starts_at"
	}
	if _, err := r.st.GetPartner(ctx, pid, in.PartnerID); err != nil {
		bad["partner_id"] = "no such partner"
	}
	if len(bad) > 0 {
		return Invalid(bad)
	}
	p := &PromoCode{ID: NewID("prm"), ProgramID: pid, PartnerID: in.PartnerID, Code: strings.TrimSpace(in.Code), StartsAt: in.StartsAt, EndsAt: in.EndsAt}
	if err := r.rs.CreatePromoCode(ctx, p); err != nil {
		if ErrorCode(err) == ECONFLICT {
			return &Error{Code: ECONFLICT, Message: "promo code already in use", Fields: map[string]string{"code": "is already used in this program"}}
		}
		return err
	}
	if err := r.audit(c, "promo_code.create", "promo_code", p.ID, nil, p); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, p)
}

func (r *rulesAPI) listPromos(c echo.Context) error {
	p, err := PageOf(c)
	if err != nil {
		return err
	}
	ps, err := r.rs.ListPromoCodes(c.Request().Context(), Caller(c).ProgramID, p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NewList(ps, p, func(x *PromoCode) string { return x.ID }))
}

func (r *rulesAPI) deletePromo(c echo.Context) error {
	if err := r.rs.DeletePromoCode(c.Request().Context(), Caller(c).ProgramID, c.Param("id")); err != nil {
		return err
	}
	if err := r.audit(c, "promo_code.delete", "promo_code", c.Param("id"), nil, nil); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (r *rulesAPI) createRule(c echo.Context) error {
	var in Rule
	if err := Bind(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	in.ID, in.ProgramID, in.CreatedAt = NewID("rul"), Caller(c).ProgramID, time.Time{}
	bad := in.Validate()
	if in.PartnerID != "" {
		if _, err := r.st.GetPartner(ctx, in.ProgramID, in.PartnerID); err != nil {
			bad["partner_id"] = "no such partner"
		}
	}
	if len(bad) > 0 {
		return Invalid(bad)
	}
	if err := r.rs.CreateRule(ctx, &in); err != nil {
		return err
	}
	if err := r.audit(c, "rule.create", "rule", in.ID, nil, in); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, in)
}

func (r *rulesAPI) listRules(c echo.Context) error {
	rs, err := r.rs.ListRules(c.Request().Context(), Caller(c).ProgramID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, List[*Rule]{Data: append([]*Rule{}, rs...)})
}

func (r *rulesAPI) deleteRule(c echo.Context) error {
	if err := r.rs.DeleteRule(c.Request().Context(), Caller(c).ProgramID, c.Param("id")); err != nil {
		return err
	}
	if err := r.audit(c, "rule.delete", "rule", c.Param("id"), nil, nil); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
