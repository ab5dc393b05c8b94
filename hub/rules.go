package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// PromoCode credits a partner with the sales that use a discount code.
// Codes are case-insensitive and unique per program.
type PromoCode struct {
	ID        string     `json:"id"`
	ProgramID string     `json:"program_id"`
	PartnerID string     `json:"partner_id"`
	Code      string     `json:"code"`
	StartsAt  *time.Time `json:"starts_at,omitempty"`
	EndsAt    *time.Time `json:"ends_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// ActiveAt reports whether the code counts for a sale at t.
func (p *PromoCode) ActiveAt(t time.Time) bool {
	return (p.StartsAt == nil || !t.Before(*p.StartsAt)) && (p.EndsAt == nil || t.Before(*p.EndsAt))
}

// Rule sets what a commission earns. Empty scope fields match anything;
// the matching rule with the most specific scope wins (partner, then
// partner tag, then price, then product, then kind), the older one on a
// tie, and the program's default rate applies when none matches.
type Rule struct {
	ID        string `json:"id"`
	ProgramID string `json:"program_id"`
	Name      string `json:"name"`
	// BPS is a rate in basis points of the commission base; FlatMinor a
	// fixed amount per conversion, per currency (a rule with FlatMinor does
	// not match a conversion in a currency it does not list).
	BPS       *int64           `json:"bps,omitempty"`
	FlatMinor map[string]int64 `json:"flat_minor,omitempty"`
	// Scope.
	PartnerID  string `json:"partner_id,omitempty"`
	PartnerTag string `json:"partner_tag,omitempty"`
	ProductID  string `json:"product_id,omitempty"`
	PriceID    string `json:"price_id,omitempty"`
	Kind       string `json:"kind,omitempty"`
	// RecurringMonths limits commissions on a subscription to payments in
	// its first N months; 0 is forever.
	RecurringMonths int `json:"recurring_months,omitempty"`
	// CapMinor caps the commission of one conversion, per currency.
	CapMinor  map[string]int64 `json:"cap_minor,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
}

// specificity ranks how narrow a rule's scope is.
func (r *Rule) specificity() int {
	s := 0
	for _, f := range []struct {
		set    bool
		weight int
	}{{r.PartnerID != "", 16}, {r.PartnerTag != "", 8}, {r.PriceID != "", 4}, {r.ProductID != "", 2}, {r.Kind != "", 1}} {
		if f.set {
			s += f.weight
		}
	}
	return s
}

// matches reports whether the rule applies to a conversion credited to p.
func (r *Rule) matches(c *Conversion, p *Partner) bool {
	if r.PartnerID != "" && r.PartnerID != p.ID {
		return false
	}
	if r.PartnerTag != "" && !slices.Contains(p.Tags, r.PartnerTag) {
		return false
	}
	if r.Kind != "" && r.Kind != c.Kind {
		return false
	}
	if r.ProductID != "" && !slices.ContainsFunc(c.Lines, func(l LineItem) bool { return l.ProductID == r.ProductID }) {
		return false
	}
	if r.PriceID != "" && !slices.ContainsFunc(c.Lines, func(l LineItem) bool { return l.PriceID == r.PriceID }) {
		return false
	}
	if r.BPS == nil {
		if _, ok := r.FlatMinor[c.Currency]; !ok {
			return false
		}
	}
	return true
}

// Validate reports field errors.
func (r *Rule) Validate() map[string]string {
	bad := map[string]string{}
	switch {
	case r.BPS == nil && len(r.FlatMinor) == 0:
		bad["bps"] = "a rule needs bps or flat_minor"
	case r.BPS != nil && len(r.FlatMinor) > 0:
		bad["flat_minor"] = "a rule has either bps or flat_minor"
	case r.BPS != nil && (*r.BPS < 0 || *r.BPS > 10000):
		bad["bps"] = "must be from 0 to 10000"
	}
	for name, m := range map[string]map[string]int64{"flat_minor": r.FlatMinor, "cap_minor": r.CapMinor} {
		for cur, v := range m {
			if _, ok := Exponent(cur); !ok || cur != strings.ToUpper(cur) || v < 0 {
				bad[name] = "keys must be upper-case ISO 4217 codes and values non-negative minor units"
			}
		}
	}
	if r.Kind != "" && r.Kind != KindNew && r.Kind != KindRenewal {
		bad["kind"] = "must be new or renewal"
	}
	if r.RecurringMonths < 0 {
		bad["recurring_months"] = "must be 0 (forever) or a number of months"
	}
	return bad
}

// CommissionTerms record how a commission's amount was decided, so anyone
// can see why it is that amount.
type CommissionTerms struct {
	RuleID string `json:"rule_id,omitempty"`
	// BaseMinor, when set, is the part of the conversion's base a product
	// or price rule pays on: its lines' share of the base.
	BaseMinor *int64 `json:"base_minor,omitempty"`
	FlatMinor *int64 `json:"flat_minor,omitempty"`
	CapMinor  *int64 `json:"cap_minor,omitempty"`
	// Explanation says in words which rule applied and why.
	Explanation string `json:"explanation"`
	// AttributionReason is how the conversion was credited to the partner
	// (click, partner_code, promo_code, customer, manual).
	AttributionReason string `json:"attribution_reason,omitempty"`
	// Held, with HeldReason, keeps the commission from approval until an
	// operator reviews it (a self-referral).
	Held       bool   `json:"held,omitempty"`
	HeldReason string `json:"held_reason,omitempty"`
}

// earned is what a commission with these terms earns on base.
func (t CommissionTerms) earned(base, bps int64) int64 {
	if t.BaseMinor != nil {
		base = *t.BaseMinor
	}
	e := BPS(base, bps)
	if t.FlatMinor != nil {
		e = *t.FlatMinor
	}
	if t.CapMinor != nil && e > *t.CapMinor {
		e = *t.CapMinor
	}
	return e
}

// chooseTerms picks the rule for a conversion credited to partner and
// returns the rate and terms of its commission. subStart is the first paid
// payment of the conversion's subscription (zero when unknown or none).
func chooseTerms(rules []*Rule, prog *Program, c *Conversion, p *Partner, subStart time.Time) (int64, CommissionTerms) {
	var best *Rule
	for _, r := range rules {
		if !r.matches(c, p) {
			continue
		}
		if best == nil || r.specificity() > best.specificity() ||
			(r.specificity() == best.specificity() && r.ID < best.ID) {
			best = r
		}
	}
	if best == nil {
		return prog.DefaultCommissionBPS, CommissionTerms{
			Explanation: fmt.Sprintf("program default rate %s", bpsText(prog.DefaultCommissionBPS)),
		}
	}
	t := CommissionTerms{RuleID: best.ID}
	rate := int64(0)
	what := ""
	if best.BPS != nil {
		rate = *best.BPS
		what = bpsText(rate)
	} else {
		f := best.FlatMinor[c.Currency]
		t.FlatMinor = &f
		what = "flat " + FormatMinor(f, c.Currency) + " " + c.Currency
	}
	if (best.ProductID != "" || best.PriceID != "") && best.BPS != nil {
		var all, match int64
		for _, l := range c.Lines {
			all += l.AmountMinor
			if (best.ProductID == "" || l.ProductID == best.ProductID) && (best.PriceID == "" || l.PriceID == best.PriceID) {
				match += l.AmountMinor
			}
		}
		if all > 0 && match < all {
			part := MulDivRound(c.BaseMinor, match, all)
			t.BaseMinor = &part
			what += " of the matching lines' share of the base, " + FormatMinor(part, c.Currency) + " " + c.Currency
		}
	}
	if capv, ok := best.CapMinor[c.Currency]; ok {
		t.CapMinor = &capv
		what += ", capped at " + FormatMinor(capv, c.Currency) + " " + c.Currency
	}
	t.Explanation = fmt.Sprintf("rule %s (%s): %s", best.ID, best.Name, what)
	if best.RecurringMonths > 0 && c.Kind == KindRenewal && !subStart.IsZero() &&
		!c.OccurredAt.Before(subStart.AddDate(0, best.RecurringMonths, 0)) {
		zero := int64(0)
		t.FlatMinor, rate = &zero, 0
		t.Explanation += fmt.Sprintf("; past its %d-month recurring limit (subscription started %s): earns nothing",
			best.RecurringMonths, subStart.UTC().Format(time.DateOnly))
	}
	return rate, t
}

func bpsText(bps int64) string {
	return fmt.Sprintf("%s %%", FormatMinor(bps, "USD"))
}

// RuleStore persists rules and promo codes. *store.DB implements it.
type RuleStore interface {
	CreateRule(ctx context.Context, r *Rule) error
	ListRules(ctx context.Context, programID string) ([]*Rule, error)
	DeleteRule(ctx context.Context, programID, id string) error
	CreatePromoCode(ctx context.Context, p *PromoCode) error
	ListPromoCodes(ctx context.Context, programID string, p Page) ([]*PromoCode, error)
	DeletePromoCode(ctx context.Context, programID, id string) error
	UpdatePartner(ctx context.Context, p *Partner) error
}

// EmailHash is the hex SHA-256 of a trimmed, lower-cased email address,
// as connectors store customers' emails.
// The empty address hashes to "".
func EmailHash(email string) string {
	email = strings.ToLower(strings.TrimSpace(email))
	if email == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(email))
	return hex.EncodeToString(sum[:])
}
