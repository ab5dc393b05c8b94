package connectors

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// Stripe webhooks.
//
// Signature: header Stripe-Signature "t=<unix>,v1=<hex>[,v1=<hex>…]"; v1 is
// the lowercase hex HMAC-SHA256 of "<t>.<raw body>" keyed with the endpoint
// secret string as is ("whsec_…" included). Several v1 entries appear while
// Stripe rolls a secret; v0 and unknown schemes are ignored. The timestamp
// must lie within the tolerance of the verification time, in the past or in
// the future (Stripe signs every retry afresh). A source's PreviousSecret is
// accepted as well as its Secret, for rotations on our side.
//
// Dedupe key: the event id (evt_…).
//
// Events read. Bodies are parsed defensively into minimal structs, whatever
// the endpoint's API version: fields that basil (2025-03-31) moved or
// removed are read at their old and new places.
//
//	checkout.session.completed          payment when payment_status is paid or
//	                                    no_payment_required; setup sessions ignored
//	checkout.session.async_payment_succeeded   payment
//	invoice.paid                        payment (amount_paid 0 ignored)
//	payment_intent.succeeded            payment only with the source option
//	                                    payment_intent_succeeded=true and no invoice
//	invoice_payment.paid                links an invoice to its payment intent
//	                                    (API 2025-03-31+ invoices no longer name it)
//	charge.refunded                     cumulative refund (amount_refunded)
//	refund.created|updated|failed,      one refund and its status
//	charge.refund.updated
//	charge.dispute.*                    dispute state (created, updated, closed,
//	                                    funds_withdrawn, funds_reinstated)
//
// Every other type is ignored. Key aliases of one payment: Checkout Session,
// invoice, payment intent and charge ids.
//
// Attribution hints: client_reference_id, then the metadata keys
// partnerhub_click, partner and ref (session and payment intent metadata;
// subscription metadata, then invoice metadata, on invoices). The source
// option hint_keys (comma separated) replaces the metadata key list. A value
// starting with "clk_" is a click id, anything else a partner code. Invoice
// discount ids become promo codes; the customer id is the lifetime key.
//
// Source options: payment_intent_succeeded ("true" to count
// payment_intent.succeeded of intents without an invoice: custom
// integrations without Checkout; since basil the intent no longer names its
// invoice, so only opt in when the account does not use Billing),
// hint_keys.

const stripeDefaultTolerance = 300 * time.Second

// StripeConfig configures the Stripe connector.
type StripeConfig struct {
	// Tolerance is how far the signature timestamp may lie from the
	// verification time, in the past as in the future. Zero or negative
	// means 300 s (Stripe's own default). It is applied in whole seconds.
	Tolerance time.Duration
	// Backfill configures the listing of missed events through Stripe's
	// API (stripe_backfill.go).
	Backfill StripeBackfillConfig
}

// Stripe verifies and normalizes Stripe webhooks, and recovers missed ones
// through Stripe's API.
type Stripe struct {
	tolerance int64 // seconds
	backfill  StripeBackfillConfig
}

var _ Connector = (*Stripe)(nil)

// NewStripe returns the Stripe connector.
func NewStripe(cfg StripeConfig) *Stripe {
	tol := cfg.Tolerance
	if tol <= 0 {
		tol = stripeDefaultTolerance
	}
	secs := int64(tol / time.Second)
	if secs < 1 {
		secs = 1
	}
	return &Stripe{tolerance: secs, backfill: cfg.Backfill.withDefaults()}
}

// Provider returns "stripe".
func (s *Stripe) Provider() string { return "stripe" }

// Verify checks the Stripe-Signature header of body at now and returns the
// event id and type.
func (s *Stripe) Verify(src *hub.Source, h http.Header, body []byte, now time.Time) (hub.Receipt, error) {
	if src == nil || src.Secret == "" {
		return hub.Receipt{}, fmt.Errorf("verifying stripe signature: source has no secret: %w", hub.ErrBadSignature)
	}
	ts, sigs, err := parseStripeSignature(h.Get("Stripe-Signature"))
	if err != nil {
		return hub.Receipt{}, fmt.Errorf("verifying stripe signature: %v: %w", err, hub.ErrBadSignature)
	}
	// Compare in seconds: no time.Time arithmetic on an attacker's number.
	n := now.Unix()
	if ts < n-s.tolerance || ts > n+s.tolerance {
		return hub.Receipt{}, fmt.Errorf("verifying stripe signature: timestamp outside tolerance: %w", hub.ErrBadSignature)
	}
	if !stripeSignatureMatches(src, ts, body, sigs) {
		return hub.Receipt{}, fmt.Errorf("verifying stripe signature: no v1 signature matches: %w", hub.ErrBadSignature)
	}
	var head struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return hub.Receipt{}, fmt.Errorf("reading stripe event: %v: %w", err, hub.ErrUnparsable)
	}
	if head.ID == "" {
		return hub.Receipt{}, fmt.Errorf("reading stripe event: no id: %w", hub.ErrUnparsable)
	}
	return hub.Receipt{DedupeKey: head.ID, EventType: head.Type}, nil
}

// parseStripeSignature reads "t=…,v1=…" and returns the timestamp and the
// decoded v1 signatures. Undecodable v1 entries are skipped, as Stripe's
// libraries do.
func parseStripeSignature(header string) (int64, [][]byte, error) {
	return signatureHeader{name: "Stripe-Signature", sep: ",", tsKey: "t", sigKey: "v1"}.parse(header)
}

func stripeSignatureMatches(src *hub.Source, ts int64, body []byte, sigs [][]byte) bool {
	return secretsMatch(src, func(secret string) []byte { return stripeMAC(secret, ts, body) }, sigs)
}

// stripeMAC is Stripe's v1 scheme: HMAC-SHA256 of "<t>.<body>" keyed with
// the secret string's bytes.
func stripeMAC(secret string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// stripeSignatureHeader returns a Stripe-Signature header value for body,
// as Stripe would send it.
func stripeSignatureHeader(secret string, ts int64, body []byte) string {
	return "t=" + strconv.FormatInt(ts, 10) + ",v1=" + hex.EncodeToString(stripeMAC(secret, ts, body))
}

// Money.
//
// Stripe amounts are integers in Stripe's minor unit; canonical amounts are
// ISO 4217 minor units. They differ for three currencies
// (https://docs.stripe.com/currencies, "Zero-decimal currencies" and
// "Special cases"):
//
//   - ISK and UGX "transitioned to a zero-decimal currency, but backward
//     compatibility requires you to represent it as a two-decimal value,
//     where the decimal amount is always 00" (ISK since 2023-04-14, see
//     support.stripe.com/questions/deprecation-of-fractional-isk-charges-and-refunds:
//     "an ISK amount of 100 will continue to represent 1 króna"): ISO 4217
//     gives both 0 digits, so Stripe amounts are divided by 100. UGX is
//     still listed among Stripe's zero-decimal currencies too; the special
//     case ("to charge 5 UGX, provide an amount value of 500") wins.
//   - MGA is in Stripe's zero-decimal list, while ISO 4217 gives it 2 digits:
//     Stripe amounts are multiplied by 100.
//   - HUF and TWD are special cases for payouts only ("even though you can
//     charge two-decimal amounts"); ISO 4217 gives both 2 digits, so their
//     charge, refund and dispute amounts are used as they are.
//
// Every other currency (the zero-decimal ones, the three-decimal BHD JOD KWD
// OMR TND, the two-decimal rest) has the same exponent in both.
//
// Division must be exact for the money that moves (charged, refunded,
// disputed): Stripe rejects fractional ISK and UGX charges, so a remainder
// means we misread the payload, and the event fails as unparsable (kept,
// shown to operators, reprocessable). Components Stripe computes (tax,
// shipping, invoice totals before rounding, line amounts) may be fractional
// ("for invoices where the amount is fractional after prorations, coupons,
// or taxes, Stripe automatically rounds"): they are rounded half away from
// zero, the project's rounding rule.
var stripeCurrencyScale = map[string]struct{ div, mul int64 }{
	"ISK": {div: 100, mul: 1},
	"UGX": {div: 100, mul: 1},
	"MGA": {div: 1, mul: 100},
}

// stripeMoney converts one currency's Stripe amounts to ISO 4217 minor
// units. The first failure is kept in err.
type stripeMoney struct {
	currency string
	div, mul int64
	err      error
}

func newStripeMoney(currency string) *stripeMoney {
	m := &stripeMoney{currency: strings.ToUpper(strings.TrimSpace(currency)), div: 1, mul: 1}
	if len(m.currency) != 3 || strings.Trim(m.currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		m.err = errors.New("missing or invalid currency")
		return m
	}
	if sc, ok := stripeCurrencyScale[m.currency]; ok {
		m.div, m.mul = sc.div, sc.mul
	}
	return m
}

// exact converts money that moved; a fractional result is an error.
func (m *stripeMoney) exact(v int64) int64 {
	if v%m.div != 0 {
		m.fail(fmt.Errorf("%s amount is not a whole number of ISO 4217 minor units", m.currency))
		return 0
	}
	return m.scale(v / m.div)
}

// rounded converts a computed component, half away from zero.
func (m *stripeMoney) rounded(v int64) int64 {
	q, r := v/m.div, v%m.div
	if 2*r >= m.div {
		q++
	} else if -2*r >= m.div {
		q--
	}
	return m.scale(q)
}

func (m *stripeMoney) scale(v int64) int64 {
	if m.mul == 1 {
		return v
	}
	if v > math.MaxInt64/m.mul || v < math.MinInt64/m.mul {
		m.fail(fmt.Errorf("%s amount out of range", m.currency))
		return 0
	}
	return v * m.mul
}

func (m *stripeMoney) fail(err error) {
	if m.err == nil {
		m.err = err
	}
}

// Payload shapes: only the fields read, tolerant of every API version.

// stripeID is an expandable reference: an id string, null, or an expanded
// object carrying an id.
type stripeID string

func (r *stripeID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*r = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*r = stripeID(s)
	case b[0] == '{':
		var o struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		*r = stripeID(o.ID)
	default:
		return errors.New("expected an id or an object")
	}
	return nil
}

type stripeEvent struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Created  int64  `json:"created"`
	Livemode bool   `json:"livemode"`
	Data     struct {
		// Object holds a pointer to the struct data.object was read into
		// with the event (see decodeStripeEvent); nil if it was null.
		Object any `json:"object"`
	} `json:"data"`
	body []byte
}

// stripeSkipped stands for a data.object no struct was chosen for: it is
// checked as JSON but not read.
type stripeSkipped struct{}

func (*stripeSkipped) UnmarshalJSON([]byte) error { return nil }

// newStripeObject returns a pointer to the struct data.object of an event
// of type typ is read into.
func newStripeObject(typ string) any {
	switch typ {
	case "checkout.session.completed", "checkout.session.async_payment_succeeded":
		return new(stripeCheckoutSession)
	case "invoice.paid":
		return new(stripeInvoice)
	case "payment_intent.succeeded":
		return new(stripePaymentIntent)
	case "invoice_payment.paid":
		return new(stripeInvoicePayment)
	case "charge.refunded":
		return new(stripeCharge)
	case "refund.created", "refund.updated", "refund.failed", "charge.refund.updated":
		return new(stripeRefund)
	case "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
		"charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated":
		return new(stripeDispute)
	}
	return new(stripeSkipped)
}

// decodeStripeEvent reads a Stripe event in one pass, its data.object into
// the struct that typ (the type recorded when the event was received)
// takes. When the event's own type differs, or the object does not fit
// the struct, stripeObject reads the event again for the handler and says
// what is wrong.
func decodeStripeEvent(body []byte, typ string) (*stripeEvent, error) {
	e := &stripeEvent{body: body}
	e.Data.Object = newStripeObject(typ)
	if err := json.Unmarshal(body, e); err != nil {
		// Tell a broken envelope from an object that does not fit.
		e = &stripeEvent{body: body}
		e.Data.Object = new(stripeSkipped)
		if err := json.Unmarshal(body, e); err != nil {
			return nil, stripeUnparsable("reading stripe event", err)
		}
	}
	return e, nil
}

type stripeCheckoutSession struct {
	ID                string            `json:"id"`
	Mode              string            `json:"mode"`
	PaymentStatus     string            `json:"payment_status"`
	AmountTotal       *int64            `json:"amount_total"`
	Currency          string            `json:"currency"`
	ClientReferenceID string            `json:"client_reference_id"`
	Metadata          map[string]string `json:"metadata"`
	Customer          stripeID          `json:"customer"`
	CustomerDetails   *struct {
		Email string `json:"email"`
	} `json:"customer_details"`
	Invoice       stripeID `json:"invoice"`
	PaymentIntent stripeID `json:"payment_intent"`
	Subscription  stripeID `json:"subscription"`
	TotalDetails  *struct {
		AmountShipping int64 `json:"amount_shipping"`
		AmountTax      int64 `json:"amount_tax"`
	} `json:"total_details"`
}

type stripeAmount struct {
	Amount int64 `json:"amount"`
}

type stripeSubscriptionDetails struct {
	Subscription stripeID          `json:"subscription"`
	Metadata     map[string]string `json:"metadata"`
}

type stripeInvoice struct {
	ID                string            `json:"id"`
	AmountPaid        int64             `json:"amount_paid"`
	Total             int64             `json:"total"`
	TotalExcludingTax *int64            `json:"total_excluding_tax"`
	Tax               *int64            `json:"tax"`               // before basil
	TotalTaxAmounts   []stripeAmount    `json:"total_tax_amounts"` // before basil
	TotalTaxes        []stripeAmount    `json:"total_taxes"`       // basil
	Currency          string            `json:"currency"`
	BillingReason     string            `json:"billing_reason"`
	Customer          stripeID          `json:"customer"`
	CustomerEmail     string            `json:"customer_email"`
	Metadata          map[string]string `json:"metadata"`
	Discounts         []stripeID        `json:"discounts"`
	ShippingCost      *struct {
		AmountSubtotal int64 `json:"amount_subtotal"`
	} `json:"shipping_cost"`
	// Before basil.
	PaymentIntent       stripeID                   `json:"payment_intent"`
	Charge              stripeID                   `json:"charge"`
	Subscription        stripeID                   `json:"subscription"`
	SubscriptionDetails *stripeSubscriptionDetails `json:"subscription_details"`
	// Basil and later.
	Parent *struct {
		SubscriptionDetails *stripeSubscriptionDetails `json:"subscription_details"`
	} `json:"parent"`
	Payments *struct {
		Data []struct {
			Status  string `json:"status"`
			Payment struct {
				PaymentIntent stripeID `json:"payment_intent"`
				Charge        stripeID `json:"charge"`
			} `json:"payment"`
		} `json:"data"`
	} `json:"payments"`
	Lines struct {
		Data []stripeInvoiceLine `json:"data"`
	} `json:"lines"`
}

type stripePriceRef struct {
	ID      string   `json:"id"`
	Product stripeID `json:"product"`
}

type stripeInvoiceLine struct {
	Amount   int64           `json:"amount"`
	Quantity *int64          `json:"quantity"`
	Price    *stripePriceRef `json:"price"` // before basil
	Plan     *stripePriceRef `json:"plan"`  // legacy plans
	Pricing  *struct {       // basil
		PriceDetails *struct {
			Price   stripeID `json:"price"`
			Product string   `json:"product"`
		} `json:"price_details"`
	} `json:"pricing"`
}

type stripePaymentIntent struct {
	ID             string            `json:"id"`
	AmountReceived int64             `json:"amount_received"`
	Currency       string            `json:"currency"`
	Invoice        stripeID          `json:"invoice"` // removed in basil
	LatestCharge   stripeID          `json:"latest_charge"`
	Customer       stripeID          `json:"customer"`
	Metadata       map[string]string `json:"metadata"`
	Charges        *struct {         // before 2022-11-15
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	} `json:"charges"`
}

type stripeCharge struct {
	ID             string   `json:"id"`
	AmountRefunded int64    `json:"amount_refunded"`
	Currency       string   `json:"currency"`
	PaymentIntent  stripeID `json:"payment_intent"`
	Invoice        stripeID `json:"invoice"` // removed in basil
}

type stripeRefund struct {
	ID            string   `json:"id"`
	Amount        int64    `json:"amount"`
	Currency      string   `json:"currency"`
	Status        string   `json:"status"`
	Charge        stripeID `json:"charge"`
	PaymentIntent stripeID `json:"payment_intent"`
}

type stripeDispute struct {
	ID                  string            `json:"id"`
	Amount              int64             `json:"amount"`
	Currency            string            `json:"currency"`
	Status              string            `json:"status"`
	Reason              string            `json:"reason"`
	Charge              stripeID          `json:"charge"`
	PaymentIntent       stripeID          `json:"payment_intent"`
	BalanceTransactions []json.RawMessage `json:"balance_transactions"`
}

// Normalize turns a stored Stripe event into canonical facts.
func (s *Stripe) Normalize(src *hub.Source, ev *hub.InboundEvent) (*hub.Normalized, error) {
	if ev == nil {
		return nil, fmt.Errorf("normalizing stripe event: no event: %w", hub.ErrUnparsable)
	}
	e, err := decodeStripeEvent(ev.Body, ev.EventType)
	if err != nil {
		return nil, err
	}
	if e.ID == "" || e.Type == "" || e.Created <= 0 {
		return nil, fmt.Errorf("reading stripe event: missing id, type or created: %w", hub.ErrUnparsable)
	}
	n := &hub.Normalized{Livemode: e.Livemode}
	at := time.Unix(e.Created, 0).UTC()
	switch e.Type {
	case "checkout.session.completed", "checkout.session.async_payment_succeeded":
		err = s.checkoutSession(src, e, at, n)
	case "invoice.paid":
		err = s.invoicePaid(src, e, at, n)
	case "payment_intent.succeeded":
		err = s.paymentIntentSucceeded(src, e, at, n)
	case "invoice_payment.paid":
		err = s.invoicePaymentPaid(e, n)
	case "charge.refunded":
		err = s.chargeRefunded(e, at, n)
	case "refund.created", "refund.updated", "refund.failed", "charge.refund.updated":
		err = s.refund(e, at, n)
	case "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
		"charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated":
		err = s.dispute(e, at, n)
	default:
		n.Ignored = "unsupported event type " + e.Type
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}

func stripeUnparsable(what string, err error) error {
	return fmt.Errorf("%s: %v: %w", what, err, hub.ErrUnparsable)
}

// stripeObject returns data.object of e as a T, which must name an id.
func stripeObject[T any](e *stripeEvent, id func(*T) string) (*T, error) {
	if v, ok := e.Data.Object.(*T); ok && id(v) != "" {
		return v, nil
	}
	// Not read as a T, or not usable: read the event again with
	// data.object as a T, as decodeStripeEvent would have, and tell why.
	what := "reading " + e.Type + " object"
	var shape struct {
		Data struct {
			Object json.RawMessage `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(e.body, &shape); err != nil {
		return nil, stripeUnparsable(what, err)
	}
	if obj := bytes.TrimSpace(shape.Data.Object); len(obj) == 0 || obj[0] != '{' {
		return nil, fmt.Errorf("%s: data.object is not an object: %w", what, hub.ErrUnparsable)
	}
	again := &stripeEvent{}
	again.Data.Object = new(T)
	if err := json.Unmarshal(e.body, again); err != nil {
		return nil, stripeUnparsable(what, err)
	}
	v, ok := again.Data.Object.(*T)
	if !ok {
		return nil, fmt.Errorf("%s: data.object is not an object: %w", what, hub.ErrUnparsable)
	}
	if id(v) == "" {
		return nil, fmt.Errorf("%s: no id: %w", what, hub.ErrUnparsable)
	}
	return v, nil
}

func (s *Stripe) checkoutSession(src *hub.Source, e *stripeEvent, at time.Time, n *hub.Normalized) error {
	cs, err := stripeObject(e, func(o *stripeCheckoutSession) string { return o.ID })
	if err != nil {
		return err
	}
	if cs.Mode == "setup" {
		n.Ignored = "setup mode session"
		return nil
	}
	if e.Type == "checkout.session.completed" && cs.PaymentStatus != "paid" && cs.PaymentStatus != "no_payment_required" {
		n.Ignored = "payment_status " + cs.PaymentStatus
		if cs.PaymentStatus == "" {
			n.Ignored = "payment_status missing"
		}
		return nil
	}
	if cs.AmountTotal == nil {
		return fmt.Errorf("reading %s object: no amount_total: %w", e.Type, hub.ErrUnparsable)
	}
	m := newStripeMoney(cs.Currency)
	gross := m.exact(*cs.AmountTotal)
	var tax, shipping int64
	if td := cs.TotalDetails; td != nil {
		tax = m.rounded(td.AmountTax)
		shipping = m.rounded(td.AmountShipping)
	}
	p := &hub.Payment{
		Keys:           compactKeys(cs.ID, string(cs.Invoice), string(cs.PaymentIntent)),
		Customer:       hub.Customer{ProviderCustomerID: string(cs.Customer)},
		GrossMinor:     gross,
		TaxMinor:       tax,
		BaseMinor:      gross - tax - shipping,
		Currency:       m.currency,
		SubscriptionID: string(cs.Subscription),
		OccurredAt:     at,
	}
	if cs.CustomerDetails != nil {
		p.Customer.EmailHash = emailHash(cs.CustomerDetails.Email)
	}
	if cs.Mode == "payment" {
		p.Kind = hub.KindNew
	}
	var hb hintBuilder
	hb.add(cs.ClientReferenceID)
	hb.addMetadata(src, cs.Metadata)
	p.Hints = hb.h
	return finishStripePayment(e, m, p, n)
}

func (s *Stripe) invoicePaid(src *hub.Source, e *stripeEvent, at time.Time, n *hub.Normalized) error {
	in, err := stripeObject(e, func(o *stripeInvoice) string { return o.ID })
	if err != nil {
		return err
	}
	if in.AmountPaid == 0 {
		n.Ignored = "zero amount"
		return nil
	}
	m := newStripeMoney(in.Currency)
	var base, tax int64
	if in.TotalExcludingTax != nil {
		base = m.rounded(*in.TotalExcludingTax)
		tax = m.rounded(in.Total) - base
	} else {
		var t int64
		switch {
		case in.TotalTaxes != nil:
			t = sumStripeAmounts(in.TotalTaxes)
		case in.TotalTaxAmounts != nil:
			t = sumStripeAmounts(in.TotalTaxAmounts)
		case in.Tax != nil:
			t = *in.Tax
		}
		tax = m.rounded(t)
		base = m.rounded(in.Total) - tax
	}
	if in.ShippingCost != nil {
		base -= m.rounded(in.ShippingCost.AmountSubtotal)
	}
	keys := []string{in.ID, string(in.PaymentIntent), string(in.Charge)}
	if in.Payments != nil {
		for _, ip := range in.Payments.Data {
			if ip.Status == "" || ip.Status == "paid" {
				keys = append(keys, string(ip.Payment.PaymentIntent), string(ip.Payment.Charge))
			}
		}
	}
	sub, subMeta := in.Subscription, map[string]string(nil)
	if in.SubscriptionDetails != nil {
		subMeta = in.SubscriptionDetails.Metadata
	}
	if in.Parent != nil && in.Parent.SubscriptionDetails != nil {
		if sub == "" {
			sub = in.Parent.SubscriptionDetails.Subscription
		}
		if subMeta == nil {
			subMeta = in.Parent.SubscriptionDetails.Metadata
		}
	}
	p := &hub.Payment{
		Keys: compactKeys(keys...),
		Customer: hub.Customer{
			ProviderCustomerID: string(in.Customer),
			EmailHash:          emailHash(in.CustomerEmail),
		},
		BaseMinor:      base,
		GrossMinor:     m.exact(in.AmountPaid),
		TaxMinor:       tax,
		Currency:       m.currency,
		SubscriptionID: string(sub),
		OccurredAt:     at,
	}
	if sub == "" || in.BillingReason == "subscription_create" {
		p.Kind = hub.KindNew
	}
	for _, l := range in.Lines.Data {
		li := hub.LineItem{AmountMinor: m.rounded(l.Amount)}
		if l.Quantity != nil {
			li.Quantity = *l.Quantity
		}
		switch {
		case l.Price != nil:
			li.PriceID, li.ProductID = l.Price.ID, string(l.Price.Product)
		case l.Pricing != nil && l.Pricing.PriceDetails != nil:
			li.PriceID, li.ProductID = string(l.Pricing.PriceDetails.Price), l.Pricing.PriceDetails.Product
		case l.Plan != nil:
			li.PriceID, li.ProductID = l.Plan.ID, string(l.Plan.Product)
		}
		p.Lines = append(p.Lines, li)
	}
	var hb hintBuilder
	hb.addMetadata(src, subMeta)
	hb.addMetadata(src, in.Metadata)
	for _, d := range in.Discounts {
		hb.addPromo(string(d))
	}
	p.Hints = hb.h
	return finishStripePayment(e, m, p, n)
}

func (s *Stripe) paymentIntentSucceeded(src *hub.Source, e *stripeEvent, at time.Time, n *hub.Normalized) error {
	pi, err := stripeObject(e, func(o *stripePaymentIntent) string { return o.ID })
	if err != nil {
		return err
	}
	if src.Option("payment_intent_succeeded") != "true" {
		n.Ignored = "payment_intent.succeeded not enabled for this source"
		return nil
	}
	if pi.Invoice != "" {
		n.Ignored = "payment intent of an invoice"
		return nil
	}
	keys := []string{pi.ID, string(pi.LatestCharge)}
	if pi.LatestCharge == "" && pi.Charges != nil {
		for _, c := range pi.Charges.Data {
			keys = append(keys, c.ID)
		}
	}
	m := newStripeMoney(pi.Currency)
	gross := m.exact(pi.AmountReceived)
	p := &hub.Payment{
		Keys:       compactKeys(keys...),
		Kind:       hub.KindNew,
		Customer:   hub.Customer{ProviderCustomerID: string(pi.Customer)},
		BaseMinor:  gross,
		GrossMinor: gross,
		Currency:   m.currency,
		OccurredAt: at,
	}
	var hb hintBuilder
	hb.addMetadata(src, pi.Metadata)
	p.Hints = hb.h
	return finishStripePayment(e, m, p, n)
}

func finishStripePayment(e *stripeEvent, m *stripeMoney, p *hub.Payment, n *hub.Normalized) error {
	if m.err != nil {
		return stripeUnparsable("reading "+e.Type+" object", m.err)
	}
	if p.GrossMinor < 0 || p.BaseMinor < 0 {
		return fmt.Errorf("reading %s object: negative amount or commission base: %w", e.Type, hub.ErrUnparsable)
	}
	n.Payment = p
	return nil
}

// stripeInvoicePayment is an InvoicePayment (API 2025-03-31 and later).
type stripeInvoicePayment struct {
	ID      string   `json:"id"`
	Invoice stripeID `json:"invoice"`
	Status  string   `json:"status"`
	Payment struct {
		Type          string   `json:"type"`
		PaymentIntent stripeID `json:"payment_intent"`
		Charge        stripeID `json:"charge"`
	} `json:"payment"`
}

// invoicePaymentPaid ties an invoice to the payment intent (or charge)
// that paid it: since API 2025-03-31 neither invoice.paid nor the refund and
// dispute events name the other side, so without this link refunds of
// subscription payments could not find their conversion.
func (s *Stripe) invoicePaymentPaid(e *stripeEvent, n *hub.Normalized) error {
	ip, err := stripeObject(e, func(o *stripeInvoicePayment) string { return o.ID })
	if err != nil {
		return err
	}
	keys := compactKeys(string(ip.Invoice), string(ip.Payment.PaymentIntent), string(ip.Payment.Charge))
	if ip.Status != "paid" || len(keys) < 2 {
		n.Ignored = "invoice payment names no paid payment"
		return nil
	}
	n.Link = &hub.LinkFact{Keys: keys}
	n.Subject = string(ip.Invoice)
	return nil
}

func (s *Stripe) chargeRefunded(e *stripeEvent, at time.Time, n *hub.Normalized) error {
	ch, err := stripeObject(e, func(o *stripeCharge) string { return o.ID })
	if err != nil {
		return err
	}
	m := newStripeMoney(ch.Currency)
	r := &hub.RefundFact{
		Keys:        compactKeys(string(ch.PaymentIntent), ch.ID, string(ch.Invoice)),
		ExternalID:  ch.ID,
		Cumulative:  true,
		AmountMinor: m.exact(ch.AmountRefunded),
		Currency:    m.currency,
		Status:      hub.RefundSucceeded,
		OccurredAt:  at,
	}
	return finishStripeRefund(e, m, r, n)
}

func (s *Stripe) refund(e *stripeEvent, at time.Time, n *hub.Normalized) error {
	re, err := stripeObject(e, func(o *stripeRefund) string { return o.ID })
	if err != nil {
		return err
	}
	var status string
	switch re.Status {
	case "pending", "requires_action":
		status = hub.RefundPending
	case "succeeded":
		status = hub.RefundSucceeded
	case "failed":
		status = hub.RefundFailed
	case "canceled":
		status = hub.RefundCanceled
	default:
		return fmt.Errorf("reading %s object: unknown refund status: %w", e.Type, hub.ErrUnparsable)
	}
	keys := compactKeys(string(re.PaymentIntent), string(re.Charge))
	if len(keys) == 0 {
		n.Ignored = "refund names no payment"
		return nil
	}
	m := newStripeMoney(re.Currency)
	r := &hub.RefundFact{
		Keys:        keys,
		ExternalID:  re.ID,
		AmountMinor: m.exact(re.Amount),
		Currency:    m.currency,
		Status:      status,
		OccurredAt:  at,
	}
	return finishStripeRefund(e, m, r, n)
}

func finishStripeRefund(e *stripeEvent, m *stripeMoney, r *hub.RefundFact, n *hub.Normalized) error {
	if m.err != nil {
		return stripeUnparsable("reading "+e.Type+" object", m.err)
	}
	if r.AmountMinor < 0 {
		return fmt.Errorf("reading %s object: negative amount: %w", e.Type, hub.ErrUnparsable)
	}
	n.Refund = r
	return nil
}

func (s *Stripe) dispute(e *stripeEvent, at time.Time, n *hub.Normalized) error {
	dp, err := stripeObject(e, func(o *stripeDispute) string { return o.ID })
	if err != nil {
		return err
	}
	var status string
	switch e.Type {
	case "charge.dispute.funds_withdrawn":
		status = hub.DisputeWithdrawn
	case "charge.dispute.funds_reinstated":
		status = hub.DisputeReinstated
	case "charge.dispute.created":
		status = hub.DisputeWithdrawn
		if strings.HasPrefix(dp.Status, "warning_") {
			status = hub.DisputeInquiry
		}
	default: // closed, updated
		var err error
		if status, err = stripeDisputeState(*dp); err != nil {
			return stripeUnparsable("reading "+e.Type+" object", err)
		}
	}
	m := newStripeMoney(dp.Currency)
	d := &hub.DisputeFact{
		Keys:        compactKeys(string(dp.PaymentIntent), string(dp.Charge)),
		ExternalID:  dp.ID,
		Status:      status,
		Reason:      dp.Reason,
		AmountMinor: m.exact(dp.Amount),
		Currency:    m.currency,
		OccurredAt:  at,
	}
	if m.err != nil {
		return stripeUnparsable("reading "+e.Type+" object", m.err)
	}
	if d.AmountMinor < 0 {
		return fmt.Errorf("reading %s object: negative amount: %w", e.Type, hub.ErrUnparsable)
	}
	if len(d.Keys) == 0 {
		return fmt.Errorf("reading %s object: dispute names no payment: %w", e.Type, hub.ErrUnparsable)
	}
	n.Dispute = d
	return nil
}

// stripeDisputeState maps a dispute's status to where the money is. Statuses
// that say nothing about the money (needs_response, under_review, and any
// newer one) leave it where the balance transactions put it: withdrawn
// while they net below zero, reinstated once they net back to zero or
// more, an inquiry when there are none.
func stripeDisputeState(dp stripeDispute) (string, error) {
	switch {
	case strings.HasPrefix(dp.Status, "warning_"):
		return hub.DisputeInquiry, nil
	case dp.Status == "won":
		return hub.DisputeReinstated, nil
	case dp.Status == "lost":
		return hub.DisputeLost, nil
	}
	var net int64
	seen := false
	for _, raw := range dp.BalanceTransactions {
		var bt struct {
			Amount int64 `json:"amount"`
		}
		if b := bytes.TrimSpace(raw); len(b) == 0 || b[0] != '{' {
			continue // an unexpanded id says nothing about the amount
		}
		if err := json.Unmarshal(raw, &bt); err != nil {
			return "", err
		}
		net += bt.Amount
		seen = true
	}
	switch {
	case !seen:
		return hub.DisputeInquiry, nil
	case net < 0:
		return hub.DisputeWithdrawn, nil
	default:
		return hub.DisputeReinstated, nil
	}
}

// hintBuilder collects attribution hints; the first value of each kind
// wins.
type hintBuilder struct{ h hub.Hints }

var stripeDefaultHintKeys = []string{"partnerhub_click", "partner", "ref"}

func (b *hintBuilder) add(v string) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
	case strings.HasPrefix(v, "clk_"):
		if b.h.ClickID == "" {
			b.h.ClickID = v
		}
	default:
		if b.h.PartnerCode == "" {
			b.h.PartnerCode = v
		}
	}
}

func (b *hintBuilder) addMetadata(src *hub.Source, md map[string]string) {
	if len(md) == 0 {
		return
	}
	keys := stripeDefaultHintKeys
	if o := src.Option("hint_keys"); strings.TrimSpace(o) != "" {
		keys = strings.Split(o, ",")
	}
	for _, k := range keys {
		b.add(md[strings.TrimSpace(k)])
	}
}

func (b *hintBuilder) addPromo(code string) {
	if code == "" {
		return
	}
	for _, c := range b.h.PromoCodes {
		if c == code {
			return
		}
	}
	b.h.PromoCodes = append(b.h.PromoCodes, code)
}

// compactKeys drops empty and repeated ids, keeping order.
func compactKeys(ids ...string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id == "" {
			continue
		}
		dup := false
		for _, o := range out {
			if o == id {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, id)
		}
	}
	return out
}

func sumStripeAmounts(as []stripeAmount) int64 {
	var t int64
	for _, a := range as {
		t += a.Amount
	}
	return t
}

// emailHash is the lowercase hex SHA-256 of the trimmed, lowercased
// address, or "" without one. The address itself is never kept.
func emailHash(email string) string { return hub.EmailHash(email) }
