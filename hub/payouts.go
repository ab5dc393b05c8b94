package hub

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// Payout statuses.
const (
	// PayoutDraft lists balances and pins the entries it would pay;
	// nothing is paid until it is confirmed.
	PayoutDraft = "draft"
	// PayoutConfirmed has marked its entries paid.
	PayoutConfirmed = "confirmed"
)

// Payout is a payout run: each partner's approved balance per currency at
// or above the program's minimum, when the run was drafted.
type Payout struct {
	ID        string `json:"id"`
	ProgramID string `json:"program_id"`
	Status    string `json:"status"`
	// Totals sum the lines per currency; currencies are never added
	// together.
	Totals []PayoutTotal `json:"totals"`
	Lines  []PayoutLine  `json:"lines"`
	// CreatedBy and ConfirmedBy are API key ids.
	CreatedBy   string     `json:"created_by"`
	ConfirmedBy string     `json:"confirmed_by,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ConfirmedAt *time.Time `json:"confirmed_at,omitempty"`
}

// PayoutLine is what one partner is paid in one currency.
type PayoutLine struct {
	PartnerID    string `json:"partner_id"`
	PartnerName  string `json:"partner_name"`
	PartnerEmail string `json:"partner_email,omitempty"`
	Currency     string `json:"currency"`
	AmountMinor  int64  `json:"amount_minor"`
	// Amount is AmountMinor as a decimal string in the currency's digits.
	Amount string `json:"amount"`
	// EntryCount is the number of ledger entries paid, CommissionCount
	// the number of commissions they belong to.
	EntryCount      int `json:"entry_count"`
	CommissionCount int `json:"commission_count"`
}

// PayoutTotal is a run's total in one currency.
type PayoutTotal struct {
	Currency    string `json:"currency"`
	AmountMinor int64  `json:"amount_minor"`
	Amount      string `json:"amount"`
	Lines       int    `json:"lines"`
}

// finish orders the lines, fills their decimal amounts and the totals.
func (p *Payout) finish() {
	slices.SortFunc(p.Lines, func(a, b PayoutLine) int {
		return cmp.Or(cmp.Compare(a.Currency, b.Currency), cmp.Compare(a.PartnerID, b.PartnerID))
	})
	p.Totals = []PayoutTotal{}
	for i := range p.Lines {
		l := &p.Lines[i]
		l.Amount = FormatMinor(l.AmountMinor, l.Currency)
		if n := len(p.Totals); n == 0 || p.Totals[n-1].Currency != l.Currency {
			p.Totals = append(p.Totals, PayoutTotal{Currency: l.Currency})
		}
		t := &p.Totals[len(p.Totals)-1]
		t.AmountMinor += l.AmountMinor
		t.Lines++
	}
	for i := range p.Totals {
		p.Totals[i].Amount = FormatMinor(p.Totals[i].AmountMinor, p.Totals[i].Currency)
	}
	if p.Lines == nil {
		p.Lines = []PayoutLine{}
	}
}

// paidCommission is the data of commission.paid: the commission and the
// run that paid it.
type paidCommission struct {
	*Commission
	PayoutID string `json:"payout_id"`
}

// minimumFor returns the program's minimum payout in currency (any case).
func minimumFor(s ProgramSettings, currency string) int64 {
	if v, ok := s.MinPayoutMinor[currency]; ok {
		return v
	}
	for cur, v := range s.MinPayoutMinor {
		if strings.EqualFold(cur, currency) {
			return v
		}
	}
	return 0
}

// CreatePayout drafts a payout run: per partner and currency, the sum of
// the unpaid entries of approved and paid commissions (negative
// adjustments booked after an earlier payout included), listed when it is
// positive and at least the program's minimum for the currency. The draft
// pins those entries: entries booked later wait for the next run.
func (s *Service) CreatePayout(ctx context.Context, programID, keyID string) (*Payout, error) {
	ls, err := s.ledger()
	if err != nil {
		return nil, err
	}
	p := &Payout{ID: NewID("pay"), ProgramID: programID, Status: PayoutDraft, CreatedBy: keyID, CreatedAt: s.cfg.Now().UTC()}
	err = ls.InLedgerTx(ctx, func(tx LedgerTx) error {
		prog, err := tx.GetProgram(ctx, programID)
		if err != nil {
			return err
		}
		entries, err := tx.PayableEntries(ctx, programID)
		if err != nil {
			return err
		}
		type group struct {
			line        PayoutLine
			entries     []string
			commissions map[string]bool
		}
		groups := map[[2]string]*group{}
		for _, e := range entries {
			k := [2]string{e.PartnerID, e.Currency}
			g := groups[k]
			if g == nil {
				g = &group{line: PayoutLine{PartnerID: e.PartnerID, Currency: e.Currency}, commissions: map[string]bool{}}
				groups[k] = g
			}
			g.line.AmountMinor += e.AmountMinor
			g.line.EntryCount++
			g.entries = append(g.entries, e.EntryID)
			g.commissions[e.CommissionID] = true
		}
		var pinned []string
		p.Lines = nil
		for _, g := range groups {
			if g.line.AmountMinor <= 0 || g.line.AmountMinor < minimumFor(prog.ProgramSettings, g.line.Currency) {
				continue // carried to a later run
			}
			g.line.CommissionCount = len(g.commissions)
			p.Lines = append(p.Lines, g.line)
			pinned = append(pinned, g.entries...)
		}
		p.finish()
		return tx.InsertPayout(ctx, p, pinned)
	})
	if err != nil {
		return nil, fmt.Errorf("creating payout run: %w", err)
	}
	return s.Payout(ctx, programID, p.ID)
}

// Payout returns a payout run with its lines and totals.
func (s *Service) Payout(ctx context.Context, programID, id string) (*Payout, error) {
	ls, err := s.ledger()
	if err != nil {
		return nil, err
	}
	p, err := ls.GetPayout(ctx, programID, id)
	if err != nil {
		return nil, err
	}
	p.finish()
	return p, nil
}

// Payouts lists a program's payout runs, newest first, with their lines
// and totals.
func (s *Service) Payouts(ctx context.Context, programID string, pg Page) ([]*Payout, error) {
	ls, err := s.ledger()
	if err != nil {
		return nil, err
	}
	ps, err := ls.ListPayouts(ctx, programID, pg)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		p.finish()
	}
	return ps, nil
}

// ConfirmPayout records that a draft run was paid: it marks the entries
// the draft pinned with the run's id, books a zero-amount paid entry on
// every commission it leaves with no unpaid entry, sets those commissions
// paid and writes commission.paid events. It reports whether it changed
// anything: confirming a confirmed run does nothing.
func (s *Service) ConfirmPayout(ctx context.Context, programID, id, keyID string) (*Payout, bool, error) {
	ls, err := s.ledger()
	if err != nil {
		return nil, false, err
	}
	now := s.cfg.Now().UTC()
	var ds []*Delivery
	changed := false
	err = ls.InLedgerTx(ctx, func(tx LedgerTx) error {
		ds, changed = nil, false
		p, err := tx.LockPayout(ctx, programID, id)
		if err != nil {
			return err
		}
		if p.Status == PayoutConfirmed {
			return nil
		}
		if err := tx.PayEntries(ctx, p.ID); err != nil {
			return err
		}
		settled, err := tx.SettledCommissions(ctx, p.ID)
		if err != nil {
			return err
		}
		for _, com := range settled {
			e := &LedgerEntry{
				ID: NewID("ent"), ProgramID: com.ProgramID, CommissionID: com.ID, Key: EntryPaid + ":" + p.ID,
				Type: EntryPaid, Currency: com.Currency, CreatedAt: now,
			}
			ok, err := tx.BookEntry(ctx, e, p.ID)
			if err != nil {
				return err
			}
			if ok {
				com.Entries = append(com.Entries, *e)
			}
			if com.Status == CommissionPaid || com.Status == CommissionVoid {
				continue // a carried adjustment settled: paid already, or replaced
			}
			if err := tx.SetCommissionStatus(ctx, com.ID, CommissionPaid); err != nil {
				return err
			}
			com.Status = CommissionPaid
			more, err := emitLedgerEvent(ctx, tx, com.ProgramID, EventCommissionPaid, com.PartnerID,
				paidCommission{Commission: com, PayoutID: p.ID}, now)
			if err != nil {
				return err
			}
			ds = append(ds, more...)
		}
		p.Status, p.ConfirmedBy, p.ConfirmedAt = PayoutConfirmed, keyID, &now
		if err := tx.ConfirmPayout(ctx, p); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("confirming payout run %s: %w", id, err)
	}
	s.enqueueDeliveries(ctx, ds)
	p, err := s.Payout(ctx, programID, id)
	return p, changed, err
}

// MountPayouts adds the payout routes to g, which must already
// authenticate (Auth). Writes need the admin role.
//
//	POST /payouts                   draft a payout run
//	GET  /payouts                   list runs, newest first
//	GET  /payouts/:id               one run with its lines
//	GET  /payouts/:id/export.csv    the lines for a PayPal, Wise or bank batch upload
//	POST /payouts/:id/confirm       record the run as paid
func MountPayouts(g *echo.Group, svc *Service) {
	h := &payoutAPI{svc: svc}
	g.POST("/payouts", h.create, AdminOnly)
	g.GET("/payouts", h.list, Staff)
	g.GET("/payouts/:id", h.get, Staff)
	g.GET("/payouts/:id/export.csv", h.export, Staff)
	g.POST("/payouts/:id/confirm", h.confirm, AdminOnly)
}

type payoutAPI struct {
	svc *Service
}

func (h *payoutAPI) create(c echo.Context) error {
	k := Caller(c)
	p, err := h.svc.CreatePayout(c.Request().Context(), k.ProgramID, k.ID)
	if err != nil {
		return err
	}
	if err := auditChange(c, h.svc.st, "payout.create", "payout", p.ID, nil, p); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, p)
}

func (h *payoutAPI) list(c echo.Context) error {
	pg, err := PageOf(c)
	if err != nil {
		return err
	}
	ps, err := h.svc.Payouts(c.Request().Context(), Caller(c).ProgramID, pg)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NewList(ps, pg, func(p *Payout) string { return p.ID }))
}

func (h *payoutAPI) get(c echo.Context) error {
	p, err := h.svc.Payout(c.Request().Context(), Caller(c).ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (h *payoutAPI) confirm(c echo.Context) error {
	k := Caller(c)
	p, changed, err := h.svc.ConfirmPayout(c.Request().Context(), k.ProgramID, c.Param("id"), k.ID)
	if err != nil {
		return err
	}
	if changed {
		if err := auditChange(c, h.svc.st, "payout.confirm", "payout", p.ID, nil, p); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, p)
}

// PayoutCSVHeader is the header row of a payout export.
var PayoutCSVHeader = []string{"partner_id", "partner_name", "partner_email", "currency", "amount", "reference"}

// WritePayoutCSV writes a run's lines as CSV with a header row: amounts are
// decimal strings in the currency's digits, the reference is the run id.
func WritePayoutCSV(w *csv.Writer, p *Payout) error {
	if err := w.Write(PayoutCSVHeader); err != nil {
		return err
	}
	for _, l := range p.Lines {
		rec := []string{l.PartnerID, csvText(l.PartnerName), csvText(l.PartnerEmail), l.Currency, l.Amount, p.ID}
		if err := w.Write(rec); err != nil {
			return err
		}
	}
	w.Flush()
	return w.Error()
}

func (h *payoutAPI) export(c echo.Context) error {
	p, err := h.svc.Payout(c.Request().Context(), Caller(c).ProgramID, c.Param("id"))
	if err != nil {
		return err
	}
	return writeCSV(c, p.ID+".csv", func(w *csv.Writer) error { return WritePayoutCSV(w, p) })
}

// writeCSV answers a CSV attachment.
func writeCSV(c echo.Context, filename string, write func(*csv.Writer) error) error {
	res := c.Response()
	res.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	res.Header().Set(echo.HeaderContentDisposition, `attachment; filename="`+filename+`"`)
	res.WriteHeader(http.StatusOK)
	return write(csv.NewWriter(res))
}

// csvText keeps free text from being read as a formula by spreadsheets.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// auditChange records a change made through the API. The change is
// committed already: its record is written even if the client has hung
// up meanwhile.
func auditChange(c echo.Context, st Store, action, resource, id string, before, after any) error {
	k := Caller(c)
	e := &AuditEntry{ID: NewID("aud"), ProgramID: k.ProgramID, KeyID: k.ID, Action: action, Resource: resource, ResourceID: id}
	if before != nil {
		e.Before, _ = json.Marshal(before)
	}
	if after != nil {
		e.After, _ = json.Marshal(after)
	}
	return st.Audit(context.WithoutCancel(c.Request().Context()), e)
}
