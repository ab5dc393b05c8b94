package connectors

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// Paddle Billing webhooks (notification destinations, API version 1).
//
// Signature: header Paddle-Signature "ts=<unix>;h1=<hex>[;h1=<hex>…]"; h1
// is the hex HMAC-SHA256 of "<ts>:<raw body>" keyed with the destination's
// secret key string as is ("pdl_ntfset_…" included). Any matching h1 is
// accepted; unknown keys and undecodable h1 entries are ignored. A source's
// PreviousSecret is accepted as well as its Secret, for rotations. The
// timestamp may lie up to MaxFuture ahead of the verification time and up
// to MaxAge behind it: Paddle retries for up to three days, so an old
// timestamp alone is no reason to refuse; the event_id dedupe stops
// replays.
//
// Dedupe key: the body's event_id (evt_…); notification_id differs per
// destination and replay.
//
// Events read:
//
//	transaction.paid, transaction.completed   payment keyed by the transaction id
//	                                          (paid precedes completed; one conversion)
//	adjustment.created, adjustment.updated    refund, credit or chargeback state
//
// Every other type is ignored (with the ids of its entity recorded).
//
// Money: amounts are strings of integers in the currency's lowest
// denomination, which for every currency Paddle supports is the ISO 4217
// minor unit (100 JPY is "100", 10 USD is "1000"), so they are used as they
// are, parsed exactly. Commission base = details.totals.subtotal −
// details.totals.discount (Paddle reports discounts net of tax); gross =
// details.totals.grand_total (what was charged after credits), else total;
// tax = details.totals.tax. Transactions with a grand total of zero (trial
// starts, payment method changes, fully credited invoices) or below (credit
// from a downgrade) are ignored. Line amounts are subtotal − discount.
//
// New vs renewal from origin: web (checkout) and api create new sales, and
// subscription_charge is a one-time charge billed now: KindNew.
// subscription_recurring (renewals, and the first charge after a trial) and
// subscription_update (changes billed now) leave the kind to the hub, which
// makes the first paid payment of a subscription new and later ones
// renewals. subscription_payment_method_change transactions are ignored.
//
// Adjustments move money only once approved. refund and credit (credit to
// the customer's balance, or off a billed invoice) are refunds: amount =
// totals.total, base = totals.subtotal (0 for tax-only adjustments); a full
// adjustment (type "full") adjusts the transaction's grand total, so its base
// is left to the hub, which reverses the whole commission base once the
// refunded amount covers the gross. Status pending_approval → awaiting
// approval, approved → succeeded, rejected → canceled, reversed → reversed.
// credit_reverse undoes a credit: Paddle does not say which credit it
// reverses, so it is booked as a refund of its own (its adjustment id) with
// negated amount and base, which nets the credit out of the conversion's
// refund totals. chargeback approved → dispute withdrawn, chargeback_reverse
// approved → reinstated; both share the external id "chargeback:<transaction
// id>" so the newer fact wins. chargeback_warning is an inquiry on its own
// row ("chargeback_warning:<transaction id>"): no money, but
// conversion.disputed. chargeback_warning_reverse is recorded on that row
// as an inquiry too (the hub has no status for a lifted warning, and
// "reinstated" would claim funds came back). The fact time is the event's
// occurred_at (else the adjustment's updated_at), so a late pending_approval
// never overrides approved.
//
// Attribution hints: custom_data keys partnerhub_click, partner and ref
// (source option hint_keys, comma separated, replaces the list); a value
// starting with "clk_" is a click id, anything else a partner code. The
// discount id (and its code when the payload carries the discount) becomes
// a promo code; customer_id is the lifetime key.
//
// Source options: hint_keys; sandbox ("true" for a sandbox account's
// destination: its events are flagged as test mode).

const (
	paddleDefaultMaxAge    = 72 * time.Hour
	paddleDefaultMaxFuture = 5 * time.Minute
)

// PaddleConfig configures the Paddle Billing connector. Durations are
// applied in whole seconds.
type PaddleConfig struct {
	// MaxAge is how far in the past a signature timestamp may lie. Zero or
	// negative means 72 h, Paddle's retry window.
	MaxAge time.Duration
	// MaxFuture is how far in the future a signature timestamp may lie
	// (clock skew). Zero or negative means 5 min.
	MaxFuture time.Duration
	// Backfill configures the listing of missed events through Paddle's
	// API (paddle_backfill.go).
	Backfill PaddleBackfillConfig
}

// Paddle verifies and normalizes Paddle Billing webhooks, and recovers
// missed ones through Paddle's API.
type Paddle struct {
	maxAge, maxFuture int64 // seconds
	backfill          PaddleBackfillConfig
}

var _ Connector = (*Paddle)(nil)

// NewPaddle returns the Paddle Billing connector.
func NewPaddle(cfg PaddleConfig) *Paddle {
	secs := func(d, def time.Duration) int64 {
		if d <= 0 {
			d = def
		}
		return max(int64(d/time.Second), 1)
	}
	return &Paddle{
		maxAge:    secs(cfg.MaxAge, paddleDefaultMaxAge),
		maxFuture: secs(cfg.MaxFuture, paddleDefaultMaxFuture),
		backfill:  cfg.Backfill.withDefaults(),
	}
}

// Provider returns "paddle".
func (p *Paddle) Provider() string { return "paddle" }

// Verify checks the Paddle-Signature header of body at now and returns the
// event id and type.
func (p *Paddle) Verify(src *hub.Source, h http.Header, body []byte, now time.Time) (hub.Receipt, error) {
	if src == nil || src.Secret == "" {
		return hub.Receipt{}, fmt.Errorf("verifying paddle signature: source has no secret: %w", hub.ErrBadSignature)
	}
	ts, sigs, err := parsePaddleSignature(h.Get("Paddle-Signature"))
	if err != nil {
		return hub.Receipt{}, fmt.Errorf("verifying paddle signature: %v: %w", err, hub.ErrBadSignature)
	}
	// Compare in seconds: no time.Time arithmetic on an attacker's number.
	n := now.Unix()
	switch {
	case ts > n+p.maxFuture:
		return hub.Receipt{}, fmt.Errorf("verifying paddle signature: timestamp too far in the future: %w", hub.ErrBadSignature)
	case ts < n-p.maxAge:
		return hub.Receipt{}, fmt.Errorf("verifying paddle signature: timestamp too old: %w", hub.ErrBadSignature)
	}
	if !paddleSignatureMatches(src, ts, body, sigs) {
		return hub.Receipt{}, fmt.Errorf("verifying paddle signature: no h1 signature matches: %w", hub.ErrBadSignature)
	}
	var head struct {
		EventID   string `json:"event_id"`
		EventType string `json:"event_type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return hub.Receipt{}, fmt.Errorf("reading paddle event: %v: %w", err, hub.ErrUnparsable)
	}
	if head.EventID == "" {
		return hub.Receipt{}, fmt.Errorf("reading paddle event: no event_id: %w", hub.ErrUnparsable)
	}
	return hub.Receipt{DedupeKey: head.EventID, EventType: head.EventType}, nil
}

// parsePaddleSignature reads "ts=…;h1=…" and returns the timestamp and the
// decoded h1 signatures. Undecodable h1 entries and unknown keys are
// skipped.
func parsePaddleSignature(header string) (int64, [][]byte, error) {
	return signatureHeader{name: "Paddle-Signature", sep: ";", tsKey: "ts", sigKey: "h1", trim: true}.parse(header)
}

func paddleSignatureMatches(src *hub.Source, ts int64, body []byte, sigs [][]byte) bool {
	return secretsMatch(src, func(secret string) []byte { return paddleMAC(secret, ts, body) }, sigs)
}

// paddleMAC is Paddle's h1 scheme: HMAC-SHA256 of "<ts>:<body>" keyed with
// the secret key string's bytes.
func paddleMAC(secret string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{':'})
	m.Write(body)
	return m.Sum(nil)
}

// paddleSignatureHeader returns a Paddle-Signature header value for body,
// as Paddle would send it.
func paddleSignatureHeader(secret string, ts int64, body []byte) string {
	return "ts=" + strconv.FormatInt(ts, 10) + ";h1=" + hex.EncodeToString(paddleMAC(secret, ts, body))
}

// paddleAmount is an amount string of Paddle's ("1000", "-250"): an integer
// in the currency's lowest denomination. Null or absent leaves it unset;
// anything else than such a string fails decoding.
type paddleAmount struct {
	v   int64
	set bool
}

func (a *paddleAmount) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*a = paddleAmount{}
		return nil
	}
	var s string
	if len(b) == 0 || b[0] != '"' || json.Unmarshal(b, &s) != nil {
		return errors.New("amount is not a string")
	}
	digits := strings.TrimPrefix(s, "-")
	// 18 digits keep every sum and difference of two amounts inside int64.
	if !hub.IsDigits(digits) || len(digits) > 18 {
		return errors.New("amount is not an integer of at most 18 digits")
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("amount out of range")
	}
	*a = paddleAmount{v: v, set: true}
	return nil
}

// Payload shapes: only the fields read.

type paddleEvent struct {
	EventID    string          `json:"event_id"`
	EventType  string          `json:"event_type"`
	OccurredAt string          `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
}

type paddleTotals struct {
	Subtotal   paddleAmount `json:"subtotal"`
	Discount   paddleAmount `json:"discount"`
	Tax        paddleAmount `json:"tax"`
	Total      paddleAmount `json:"total"`
	GrandTotal paddleAmount `json:"grand_total"`
	// CurrencyCode is set on adjustment totals.
	CurrencyCode string `json:"currency_code"`
}

type paddleTransaction struct {
	ID             string          `json:"id"`
	Status         string          `json:"status"`
	Origin         string          `json:"origin"`
	CustomerID     string          `json:"customer_id"`
	SubscriptionID string          `json:"subscription_id"`
	DiscountID     string          `json:"discount_id"`
	CurrencyCode   string          `json:"currency_code"`
	CustomData     json.RawMessage `json:"custom_data"`
	UpdatedAt      string          `json:"updated_at"`
	// Discount is only present where Paddle includes the entity; read
	// leniently, it is a hint at most.
	Discount json.RawMessage `json:"discount"`
	Details  struct {
		Totals    *paddleTotals `json:"totals"`
		LineItems []struct {
			PriceID  string `json:"price_id"`
			Quantity int64  `json:"quantity"`
			Product  *struct {
				ID string `json:"id"`
			} `json:"product"`
			ProductID string       `json:"product_id"`
			Totals    paddleTotals `json:"totals"`
		} `json:"line_items"`
	} `json:"details"`
}

type paddleAdjustment struct {
	ID            string        `json:"id"`
	Action        string        `json:"action"`
	Type          string        `json:"type"`
	Status        string        `json:"status"`
	TransactionID string        `json:"transaction_id"`
	CustomerID    string        `json:"customer_id"`
	CurrencyCode  string        `json:"currency_code"`
	Totals        *paddleTotals `json:"totals"`
	UpdatedAt     string        `json:"updated_at"`
}

// Normalize turns a stored Paddle Billing event into canonical facts.
func (p *Paddle) Normalize(src *hub.Source, ev *hub.InboundEvent) (*hub.Normalized, error) {
	if ev == nil {
		return nil, fmt.Errorf("normalizing paddle event: no event: %w", hub.ErrUnparsable)
	}
	var e paddleEvent
	if err := json.Unmarshal(ev.Body, &e); err != nil {
		return nil, paddleUnparsable("reading paddle event", err)
	}
	if e.EventID == "" || e.EventType == "" {
		return nil, fmt.Errorf("reading paddle event: missing event_id or event_type: %w", hub.ErrUnparsable)
	}
	n := &hub.Normalized{Livemode: src.Option("sandbox") != "true"}
	var err error
	switch e.EventType {
	case "transaction.paid", "transaction.completed":
		err = p.transaction(src, &e, n)
	case "adjustment.created", "adjustment.updated":
		err = p.adjustment(&e, n)
	default:
		n.Ignored = "unsupported event type " + e.EventType
		paddleRefs(e.Data, n)
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}

func paddleUnparsable(what string, err error) error {
	return fmt.Errorf("%s: %v: %w", what, err, hub.ErrUnparsable)
}

// decodePaddleData reads the event's data object into v.
func decodePaddleData(e *paddleEvent, v any) error {
	what := "reading " + e.EventType + " data"
	d := bytes.TrimSpace(e.Data)
	if len(d) == 0 || d[0] != '{' {
		return fmt.Errorf("%s: data is not an object: %w", what, hub.ErrUnparsable)
	}
	if err := json.Unmarshal(d, v); err != nil {
		return paddleUnparsable(what, err)
	}
	return nil
}

// paddleOccurredAt is the event's occurred_at, else the entity's
// updated_at (Paddle sends 0001-01-01 there before any update).
func paddleOccurredAt(e *paddleEvent, updatedAt string) (time.Time, error) {
	for _, s := range []string{e.OccurredAt, updatedAt} {
		t, err := time.Parse(time.RFC3339, s)
		if err == nil && t.Year() > 1 {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("reading %s: no valid occurred_at: %w", e.EventType, hub.ErrUnparsable)
}

// paddleCurrency returns the upper-case ISO 4217 code, which must be known.
func paddleCurrency(what, code string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(code))
	if _, ok := hub.Exponent(c); !ok || len(c) != 3 {
		return "", fmt.Errorf("%s: missing or unknown currency: %w", what, hub.ErrUnparsable)
	}
	return c, nil
}

var paddleDefaultHintKeys = []string{"partnerhub_click", "partner", "ref"}

func (p *Paddle) transaction(src *hub.Source, e *paddleEvent, n *hub.Normalized) error {
	what := "reading " + e.EventType + " data"
	var t paddleTransaction
	if err := decodePaddleData(e, &t); err != nil {
		return err
	}
	if t.ID == "" {
		return fmt.Errorf("%s: no transaction id: %w", what, hub.ErrUnparsable)
	}
	n.Subject, n.CustomerRef = t.ID, t.CustomerID
	switch t.Status {
	case "", "paid", "completed":
	default:
		n.Ignored = "transaction status " + t.Status
		return nil
	}
	if t.Origin == "subscription_payment_method_change" {
		n.Ignored = "payment method change"
		return nil
	}
	at, err := paddleOccurredAt(e, t.UpdatedAt)
	if err != nil {
		return err
	}
	currency, err := paddleCurrency(what, t.CurrencyCode)
	if err != nil {
		return err
	}
	tot := t.Details.Totals
	if tot == nil || !tot.Subtotal.set || !tot.Tax.set || (!tot.GrandTotal.set && !tot.Total.set) {
		return fmt.Errorf("%s: details.totals incomplete: %w", what, hub.ErrUnparsable)
	}
	gross := tot.GrandTotal
	if !gross.set {
		gross = tot.Total
	}
	switch {
	case gross.v == 0:
		n.Ignored = "zero amount"
		return nil
	case gross.v < 0:
		n.Ignored = "negative total (credit to the customer's balance)"
		return nil
	}
	base := tot.Subtotal.v - tot.Discount.v
	if base < 0 || tot.Tax.v < 0 {
		return fmt.Errorf("%s: negative commission base or tax: %w", what, hub.ErrUnparsable)
	}
	pay := &hub.Payment{
		Keys:           []string{t.ID},
		Kind:           paddleKind(t.Origin),
		Customer:       hub.Customer{ProviderCustomerID: t.CustomerID},
		BaseMinor:      base,
		GrossMinor:     gross.v,
		TaxMinor:       tot.Tax.v,
		Currency:       currency,
		SubscriptionID: t.SubscriptionID,
		OccurredAt:     at,
	}
	for _, l := range t.Details.LineItems {
		li := hub.LineItem{
			ProductID:   l.ProductID,
			PriceID:     l.PriceID,
			Quantity:    l.Quantity,
			AmountMinor: l.Totals.Subtotal.v - l.Totals.Discount.v,
		}
		if l.Product != nil && l.Product.ID != "" {
			li.ProductID = l.Product.ID
		}
		pay.Lines = append(pay.Lines, li)
	}
	keys := paddleDefaultHintKeys
	if o := src.Option("hint_keys"); strings.TrimSpace(o) != "" {
		keys = strings.Split(o, ",")
	}
	// custom_data is an object or null; any other shape carries no hint.
	var custom map[string]json.RawMessage
	if b := bytes.TrimSpace(t.CustomData); len(b) > 0 && b[0] == '{' {
		_ = json.Unmarshal(b, &custom)
	}
	var hb hintBuilder
	for _, k := range keys {
		hb.add(paddleHintValue(custom[strings.TrimSpace(k)]))
	}
	hb.addPromo(t.DiscountID)
	if b := bytes.TrimSpace(t.Discount); len(b) > 0 && b[0] == '{' {
		var d struct {
			Code string `json:"code"`
		}
		if json.Unmarshal(b, &d) == nil {
			hb.addPromo(strings.TrimSpace(d.Code))
		}
	}
	pay.Hints = hb.h
	n.Payment = pay
	return nil
}

// paddleKind maps a transaction's origin to a conversion kind; "" lets the
// hub decide from the subscription's history.
func paddleKind(origin string) string {
	switch origin {
	case "web", "api", "subscription_charge":
		return hub.KindNew
	default: // subscription_recurring, subscription_update, newer origins
		return ""
	}
}

// paddleHintValue reads a custom_data value: a string, or a number as
// written. Other values (objects, arrays, booleans) carry no hint.
func paddleHintValue(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case c == '-' || (c >= '0' && c <= '9'):
		var num json.Number
		if json.Unmarshal(raw, &num) == nil {
			return num.String()
		}
	}
	return ""
}

// paddleRefundStatus maps an adjustment status to a refund status.
func paddleRefundStatus(status string) (string, bool) {
	switch status {
	case "pending_approval":
		return hub.RefundAwaiting, true
	case "approved":
		return hub.RefundSucceeded, true
	case "rejected":
		return hub.RefundCanceled, true
	case "reversed":
		return hub.RefundReversed, true
	}
	return "", false
}

func (p *Paddle) adjustment(e *paddleEvent, n *hub.Normalized) error {
	what := "reading " + e.EventType + " data"
	var a paddleAdjustment
	if err := decodePaddleData(e, &a); err != nil {
		return err
	}
	if a.ID == "" {
		return fmt.Errorf("%s: no adjustment id: %w", what, hub.ErrUnparsable)
	}
	n.Subject, n.CustomerRef = a.TransactionID, a.CustomerID
	if a.TransactionID == "" {
		return fmt.Errorf("%s: adjustment names no transaction: %w", what, hub.ErrUnparsable)
	}
	refundStatus, ok := paddleRefundStatus(a.Status)
	if !ok {
		return fmt.Errorf("%s: unknown adjustment status: %w", what, hub.ErrUnparsable)
	}
	at, err := paddleOccurredAt(e, a.UpdatedAt)
	if err != nil {
		return err
	}
	tot := a.Totals
	code := a.CurrencyCode
	if code == "" && tot != nil {
		code = tot.CurrencyCode
	}
	currency, err := paddleCurrency(what, code)
	if err != nil {
		return err
	}
	if tot == nil || !tot.Total.set || !tot.Subtotal.set {
		return fmt.Errorf("%s: totals incomplete: %w", what, hub.ErrUnparsable)
	}
	amount, base := tot.Total.v, tot.Subtotal.v
	reverse := strings.HasSuffix(a.Action, "_reverse")
	if reverse {
		// The sign Paddle gives a reversal's totals is not documented:
		// take magnitudes.
		amount, base = abs64(amount), abs64(base)
	}
	if amount < 0 || base < 0 {
		return fmt.Errorf("%s: negative adjustment totals: %w", what, hub.ErrUnparsable)
	}
	keys := []string{a.TransactionID}

	switch a.Action {
	case "refund", "credit", "credit_reverse":
		r := &hub.RefundFact{
			Keys:        keys,
			ExternalID:  a.ID,
			AmountMinor: amount,
			Currency:    currency,
			Status:      refundStatus,
			OccurredAt:  at,
		}
		if a.Type != "full" {
			r.BaseMinor = &base
		}
		if a.Action == "credit_reverse" {
			r.AmountMinor = -amount
			if r.BaseMinor != nil {
				neg := -base
				r.BaseMinor = &neg
			}
		}
		n.Refund = r
		return nil
	case "chargeback", "chargeback_reverse", "chargeback_warning", "chargeback_warning_reverse":
	default:
		return fmt.Errorf("%s: unknown adjustment action: %w", what, hub.ErrUnparsable)
	}

	d := &hub.DisputeFact{
		Keys:        keys,
		ExternalID:  "chargeback:" + a.TransactionID,
		Reason:      a.Action,
		AmountMinor: amount,
		Currency:    currency,
		OccurredAt:  at,
	}
	switch a.Action {
	case "chargeback":
		d.Status = map[string]string{
			"pending_approval": hub.DisputeInquiry,
			"approved":         hub.DisputeWithdrawn,
			"rejected":         hub.DisputeInquiry,
			"reversed":         hub.DisputeReinstated,
		}[a.Status]
	case "chargeback_reverse":
		switch a.Status {
		case "approved":
			d.Status = hub.DisputeReinstated
		case "reversed":
			d.Status = hub.DisputeWithdrawn
		default:
			// A reversal not (or no longer) in force says nothing the
			// chargeback's own state does not.
			n.Ignored = "chargeback_reverse " + a.Status
			return nil
		}
	default: // warnings: never money, kept apart from the chargeback
		d.ExternalID = "chargeback_warning:" + a.TransactionID
		d.Status = hub.DisputeInquiry
	}
	n.Dispute = d
	return nil
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v // amounts have at most 18 digits: no overflow
	}
	return v
}

// paddleRefs records the transaction and customer an ignored event is
// about, when its data names them, so personal data can be found later.
func paddleRefs(data json.RawMessage, n *hub.Normalized) {
	var d struct {
		ID            string `json:"id"`
		TransactionID string `json:"transaction_id"`
		CustomerID    string `json:"customer_id"`
	}
	if b := bytes.TrimSpace(data); len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &d) != nil {
		return
	}
	switch {
	case d.TransactionID != "":
		n.Subject = d.TransactionID
	case strings.HasPrefix(d.ID, "txn_"):
		n.Subject = d.ID
	}
	switch {
	case d.CustomerID != "":
		n.CustomerRef = d.CustomerID
	case strings.HasPrefix(d.ID, "ctm_"):
		n.CustomerRef = d.ID
	}
}
