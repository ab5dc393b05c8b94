package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// commissionStatusSetter is the part of the store's transaction an
// override needs beyond Tx.
type commissionStatusSetter interface {
	SetCommissionStatus(ctx context.Context, id, status string) error
}

// Reattribute credits a conversion to another partner, or to none, as an
// operator decided. The current commission is voided: an entry reverses
// what it still carries (a paid commission's reversal is carried to the
// partner's next payout), and the new partner's commission is computed
// afresh, refunds included. History is kept: nothing is edited.
func (s *Service) Reattribute(ctx context.Context, programID, conversionID, partnerID, reason string) (*Conversion, error) {
	c0, err := s.st.GetConversion(ctx, programID, conversionID)
	if err != nil {
		return nil, err
	}
	var out *Conversion
	var deliveries []*Delivery
	err = s.st.InTx(ctx, func(tx Tx) error {
		a := &applier{s: s, tx: tx, src: &Source{ProgramID: programID, Provider: c0.Provider, ID: c0.SourceID},
			ev: &InboundEvent{ID: NewID("ovr")}}
		if err := tx.LockKeys(ctx, programID, c0.Provider, c0.Keys); err != nil {
			return err
		}
		conv, err := tx.FindConversion(ctx, programID, c0.Provider, c0.Keys)
		if err != nil {
			return err
		}
		if partnerID != "" {
			if _, err := tx.GetPartner(ctx, programID, partnerID); errors.Is(err, ErrNotFound) {
				return Invalid(map[string]string{"partner_id": "no such partner"})
			} else if err != nil {
				return err
			}
		}
		if conv.PartnerID == partnerID {
			out = conv
			return nil
		}
		com, err := tx.GetCommission(ctx, conv.ID)
		switch {
		case err == nil:
			if com.NetMinor != 0 {
				if _, err := tx.InsertEntry(ctx, &LedgerEntry{
					ID: NewID("ent"), ProgramID: programID, CommissionID: com.ID, Key: "void:" + a.ev.ID,
					Type: EntryVoid, AmountMinor: -com.NetMinor, Currency: com.Currency, CreatedAt: s.cfg.Now().UTC(),
				}); err != nil {
					return fmt.Errorf("booking void entry: %w", err)
				}
			}
			setter, ok := tx.(commissionStatusSetter)
			if !ok {
				return errors.New("store cannot void commissions")
			}
			if err := setter.SetCommissionStatus(ctx, com.ID, CommissionVoid); err != nil {
				return err
			}
			reversed := com.NetMinor
			com.Status, com.NetMinor = CommissionVoid, 0
			data := map[string]any{"commission": com, "reversed_minor": reversed, "conversion_id": conv.ID, "reason": reason}
			if err := a.emit(ctx, EventCommissionReversed, com.PartnerID, data); err != nil {
				return err
			}
		case !errors.Is(err, ErrNotFound):
			return err
		}
		// The reason stays "manual" even when no one is credited, so later
		// events of the conversion do not attribute it again.
		conv.PartnerID, conv.AttributedBy = partnerID, ReasonManual
		if _, err := a.settle(ctx, conv, false, nil); err != nil {
			return err
		}
		deliveries, out = a.deliveries, conv
		return nil
	})
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	for _, d := range deliveries {
		if err := s.q.EnqueueDelivery(ctx, d.ID, 1, now); err != nil {
			s.log.WarnContext(ctx, "queue unavailable; the sweeper will enqueue the delivery", "delivery_id", d.ID, "error", err)
		}
	}
	return out, nil
}

// MountOverrides adds POST /conversions/{id}/attribution (admin).
func MountOverrides(g *echo.Group, svc *Service) {
	g.POST("/conversions/:id/attribution", func(c echo.Context) error {
		var in struct {
			PartnerID *string `json:"partner_id"`
			Reason    string  `json:"reason"`
		}
		if err := Bind(c, &in); err != nil {
			return err
		}
		bad := map[string]string{}
		if in.PartnerID == nil {
			bad["partner_id"] = "is required: a partner id, or null to credit no one"
		}
		if strings.TrimSpace(in.Reason) == "" {
			bad["reason"] = "is required: why the conversion is re-attributed"
		}
		if len(bad) > 0 {
			return Invalid(bad)
		}
		k := Caller(c)
		ctx := c.Request().Context()
		before, err := svc.st.GetConversion(ctx, k.ProgramID, c.Param("id"))
		if err != nil {
			return err
		}
		conv, err := svc.Reattribute(ctx, k.ProgramID, c.Param("id"), *in.PartnerID, in.Reason)
		if err != nil {
			return err
		}
		after, _ := json.Marshal(map[string]any{"partner_id": conv.PartnerID, "attribution_reason": conv.AttributedBy, "reason": in.Reason})
		was, _ := json.Marshal(map[string]any{"partner_id": before.PartnerID, "attribution_reason": before.AttributedBy})
		if err := svc.st.Audit(ctx, &AuditEntry{ID: NewID("aud"), ProgramID: k.ProgramID, KeyID: k.ID,
			Action: "conversion.reattribute", Resource: "conversion", ResourceID: conv.ID, Before: was, After: after}); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, conv)
	}, RequireRole(RoleAdmin))
}

// Review settles a commission held for review (a self-referral): release
// returns it to pending, where the hold timer approves it; reject voids it
// with an entry reversing what it carries.
func (s *Service) Review(ctx context.Context, programID, commissionID string, release bool) (*Commission, error) {
	ls, ok := s.st.(LedgerStore)
	if !ok {
		return nil, errors.New("store cannot review commissions")
	}
	var out *Commission
	var deliveries []*Delivery
	err := ls.InLedgerTx(ctx, func(tx LedgerTx) error {
		com, err := tx.LockCommission(ctx, commissionID)
		if err != nil {
			return err
		}
		if com.ProgramID != programID {
			return Errorf(ENOTFOUND, "commission %s not found", commissionID)
		}
		if com.Status != CommissionHeld {
			return Errorf(ECONFLICT, "commission %s is %s, not held for review", com.ID, com.Status)
		}
		if release {
			com.Status = CommissionPending
			out = com
			return tx.SetCommissionStatus(ctx, com.ID, CommissionPending)
		}
		if com.NetMinor != 0 {
			e := &LedgerEntry{ID: NewID("ent"), ProgramID: com.ProgramID, CommissionID: com.ID, Key: "void:review",
				Type: EntryVoid, AmountMinor: -com.NetMinor, Currency: com.Currency, CreatedAt: s.cfg.Now().UTC()}
			if _, err := tx.BookEntry(ctx, e, ""); err != nil {
				return err
			}
		}
		if err := tx.SetCommissionStatus(ctx, com.ID, CommissionVoid); err != nil {
			return err
		}
		reversed := com.NetMinor
		com.Status, com.NetMinor = CommissionVoid, 0
		ds, err := emitLedgerEvent(ctx, tx, com.ProgramID, EventCommissionReversed, com.PartnerID,
			map[string]any{"commission": com, "reversed_minor": reversed, "conversion_id": com.ConversionID, "reason": "rejected on review"},
			s.cfg.Now().UTC())
		deliveries, out = ds, com
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, d := range deliveries {
		if err := s.q.EnqueueDelivery(ctx, d.ID, 1, s.cfg.Now()); err != nil {
			s.log.WarnContext(ctx, "queue unavailable; the sweeper will enqueue the delivery", "delivery_id", d.ID, "error", err)
		}
	}
	return out, nil
}

// MountReviews adds POST /commissions/{id}/release and /reject (admin).
func MountReviews(g *echo.Group, svc *Service) {
	for _, action := range []string{"release", "reject"} {
		release := action == "release"
		g.POST("/commissions/:id/"+action, func(c echo.Context) error {
			k := Caller(c)
			com, err := svc.Review(c.Request().Context(), k.ProgramID, c.Param("id"), release)
			if err != nil {
				return err
			}
			if err := svc.st.Audit(c.Request().Context(), &AuditEntry{ID: NewID("aud"), ProgramID: k.ProgramID, KeyID: k.ID,
				Action: "commission." + action, Resource: "commission", ResourceID: com.ID}); err != nil {
				return err
			}
			return c.JSON(http.StatusOK, com)
		}, RequireRole(RoleAdmin))
	}
}
