package connectors

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// Shopify webhooks.
//
// Signature: header X-Shopify-Hmac-Sha256 is the standard (padded) base64
// of the HMAC-SHA256 of the raw body, keyed with the app's client secret
// (or, for webhooks created in the shop admin under Settings →
// Notifications → Webhooks, the shop's notification signing key). It is
// compared in constant time as the exact string Shopify's own library
// compares. A source's PreviousSecret is accepted as well as its Secret.
// There is no timestamp: Shopify retries for hours and merchants resend, so
// late deliveries are processed normally. X-Shopify-Topic,
// X-Shopify-Shop-Domain and X-Shopify-Webhook-Id are required (401
// without them). X-Shopify-Triggered-At is unsigned: it is recorded for
// display and never decides money.
//
// Dedupe key: X-Shopify-Event-Id, else X-Shopify-Webhook-Id.
//
// Topics read (the topic header is not signed, so every fact is also
// checked against the signed body):
//
//	orders/create, orders/updated   payment when financial_status is paid,
//	                                partially_paid, partially_refunded or
//	                                refunded; otherwise ignored
//	orders/paid                     payment
//	orders/cancelled                full reversal of a paid order: a refund
//	                                "cancel:<order id>" of the whole gross and
//	                                base (the hub caps refund totals); the body
//	                                must carry cancelled_at
//	refunds/create                  refund: successful refund transactions,
//	                                base = merchandise of refund_line_items
//	disputes/create|update          dispute state
//	customers/data_request          ignored, recorded with its customer
//	customers/redact                erase the customer's personal data
//	shop/redact                     erase every stored body of the source
//	app/uninstalled                 ignored, recorded
//
// Every other topic is ignored. The key of a conversion is the order id,
// decoded as an exact int64 (ids exceed 2^53) and written in decimal.
//
// Money comes from the *_set fields, shop_money by default, presentment
// money with the source option money=presentment; decimal strings are
// parsed exactly. Commission base = subtotal_price_set (after discounts,
// before shipping and tax), minus the line items' taxes when
// taxes_included, fixed at the first paid event: the current_* fields of a
// later orders/updated already reflect refunds and are never read. Refund
// amount = the successful refund transactions (kind refund, status
// success), converted to shop money through the refund's own money sets
// when the transactions are in the presentment currency; refund base = the
// refund_line_items' subtotal_set (minus their total_tax_set when the
// source option taxes_included=true: refund payloads do not say), never
// more than the refund amount. Shipping, duties and tax are never base.
//
// Attribution hints: note_attributes (cart attributes) named
// partnerhub_click, partner, ref; then the landing_site query parameters
// ref, partner, click_id; then landing_site_ref. A value starting with
// "clk_" is a click id, anything else a partner code. discount_codes[].code
// are promo codes; customer.id is the lifetime key; the email address is
// kept only as a SHA-256 hash. referring_site stays in the stored body: the
// canonical hints have no field for it.
//
// Source options: money (shop | presentment), taxes_included (true |
// false: whether refund line subtotals include tax), hint_keys and
// landing_params (comma separated names replacing the defaults above).

// Shopify header names.
const (
	shopifyHeaderHMAC        = "X-Shopify-Hmac-Sha256"
	shopifyHeaderTopic       = "X-Shopify-Topic"
	shopifyHeaderShopDomain  = "X-Shopify-Shop-Domain"
	shopifyHeaderAPIVersion  = "X-Shopify-API-Version"
	shopifyHeaderWebhookID   = "X-Shopify-Webhook-Id"
	shopifyHeaderEventID     = "X-Shopify-Event-Id"
	shopifyHeaderTriggeredAt = "X-Shopify-Triggered-At"
)

var (
	shopifyDefaultNoteAttributes = []string{"partnerhub_click", "partner", "ref"}
	shopifyDefaultLandingParams  = []string{"ref", "partner", "click_id"}
)

// ShopifyConfig configures the Shopify connector. A source's options
// override it.
type ShopifyConfig struct {
	// NoteAttributes are the note_attributes (cart attribute) names read
	// for attribution hints, first match first. Empty means
	// partnerhub_click, partner, ref. The source option hint_keys (comma
	// separated) replaces it.
	NoteAttributes []string
	// LandingParams are the landing_site query parameters read for
	// attribution hints, after the note attributes. Empty means ref,
	// partner, click_id. The source option landing_params replaces it.
	LandingParams []string
}

// Shopify verifies and normalizes Shopify webhooks.
type Shopify struct {
	noteAttributes []string
	landingParams  []string
}

var _ Connector = (*Shopify)(nil)

// NewShopify returns the Shopify connector.
func NewShopify(cfg ShopifyConfig) *Shopify {
	s := &Shopify{noteAttributes: shopifyDefaultNoteAttributes, landingParams: shopifyDefaultLandingParams}
	if len(cfg.NoteAttributes) > 0 {
		s.noteAttributes = append([]string(nil), cfg.NoteAttributes...)
	}
	if len(cfg.LandingParams) > 0 {
		s.landingParams = append([]string(nil), cfg.LandingParams...)
	}
	return s
}

// Provider returns "shopify".
func (s *Shopify) Provider() string { return "shopify" }

// Verify checks the X-Shopify-Hmac-Sha256 header of body and returns the
// dedupe key, the topic and the headers worth keeping. now is unused:
// Shopify signs no timestamp.
func (s *Shopify) Verify(src *hub.Source, h http.Header, body []byte, _ time.Time) (hub.Receipt, error) {
	if src == nil || src.Secret == "" {
		return hub.Receipt{}, fmt.Errorf("verifying shopify signature: source has no secret: %w", hub.ErrBadSignature)
	}
	got := strings.TrimSpace(h.Get(shopifyHeaderHMAC))
	if got == "" {
		return hub.Receipt{}, fmt.Errorf("verifying shopify signature: missing %s header: %w", shopifyHeaderHMAC, hub.ErrBadSignature)
	}
	kept := map[string]string{}
	for _, name := range []string{shopifyHeaderTopic, shopifyHeaderShopDomain, shopifyHeaderAPIVersion,
		shopifyHeaderWebhookID, shopifyHeaderEventID, shopifyHeaderTriggeredAt} {
		if v := strings.TrimSpace(h.Get(name)); v != "" {
			kept[name] = v
		}
	}
	for _, name := range []string{shopifyHeaderTopic, shopifyHeaderShopDomain, shopifyHeaderWebhookID} {
		if kept[name] == "" {
			return hub.Receipt{}, fmt.Errorf("verifying shopify signature: missing %s header: %w", name, hub.ErrBadSignature)
		}
	}
	if !shopifySignatureMatches(src, body, got) {
		return hub.Receipt{}, fmt.Errorf("verifying shopify signature: HMAC does not match: %w", hub.ErrBadSignature)
	}
	key := kept[shopifyHeaderEventID]
	if key == "" {
		key = kept[shopifyHeaderWebhookID]
	}
	return hub.Receipt{DedupeKey: key, EventType: kept[shopifyHeaderTopic], Headers: kept}, nil
}

func shopifySignatureMatches(src *hub.Source, body []byte, got string) bool {
	ok := false
	for _, secret := range []string{src.Secret, src.PreviousSecret} {
		if secret != "" && hmac.Equal([]byte(shopifyHMAC(secret, body)), []byte(got)) {
			ok = true
		}
	}
	return ok
}

// shopifyHMAC is the X-Shopify-Hmac-Sha256 value Shopify sends for body.
func shopifyHMAC(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Payload shapes: only the fields read.

// shopifyID is a Shopify integer id (order, customer, refund…), read
// exactly from a JSON number or a string of digits and kept in decimal.
// Ids exceed 2^53, so they never pass through float64. Null and 0 are "".
type shopifyID string

func (id *shopifyID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*id = ""
		return nil
	}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	if !hub.IsDigits(s) {
		return errors.New("id is not a whole number")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("id out of range")
	}
	*id = ""
	if n != 0 {
		*id = shopifyID(strconv.FormatInt(n, 10))
	}
	return nil
}

// shopifyAmount is a decimal amount as Shopify writes it: a string
// ("409.94"), or in some payloads a bare JSON number, whose text is kept
// as is (never a float64).
type shopifyAmount struct {
	text string
	set  bool
}

func (a *shopifyAmount) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*a = shopifyAmount{}
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = shopifyAmount{text: strings.TrimSpace(s), set: true}
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*a = shopifyAmount{text: string(b), set: true}
	default:
		return errors.New("amount is not a decimal")
	}
	return nil
}

// shopifyTime reads RFC 3339 times, dates ("2024-05-01") and null.
type shopifyTime struct{ time.Time }

func (t *shopifyTime) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("time is not a string")
	}
	t.Time = time.Time{}
	if s == nil || *s == "" {
		return nil
	}
	v, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		if v, err = time.Parse(time.DateOnly, *s); err != nil {
			return errors.New("time is not RFC 3339")
		}
	}
	t.Time = v.UTC()
	return nil
}

// shopifyText is a note attribute value: a string, or a number kept as
// written; anything else reads as "".
type shopifyText string

func (v *shopifyText) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*v = ""
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = shopifyText(s)
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*v = shopifyText(b)
	}
	return nil
}

type shopifyMoney struct {
	Amount       shopifyAmount `json:"amount"`
	CurrencyCode string        `json:"currency_code"`
}

type shopifyMoneySet struct {
	ShopMoney        *shopifyMoney `json:"shop_money"`
	PresentmentMoney *shopifyMoney `json:"presentment_money"`
}

type shopifyTaxLine struct {
	PriceSet *shopifyMoneySet `json:"price_set"`
}

type shopifyLineItem struct {
	ProductID           shopifyID        `json:"product_id"`
	VariantID           shopifyID        `json:"variant_id"`
	Quantity            int64            `json:"quantity"`
	PriceSet            *shopifyMoneySet `json:"price_set"`
	TaxLines            []shopifyTaxLine `json:"tax_lines"`
	DiscountAllocations []struct {
		AmountSet *shopifyMoneySet `json:"amount_set"`
	} `json:"discount_allocations"`
}

type shopifyCustomer struct {
	ID    shopifyID `json:"id"`
	Email string    `json:"email"`
}

type shopifyOrder struct {
	ID               shopifyID         `json:"id"`
	Test             bool              `json:"test"`
	FinancialStatus  string            `json:"financial_status"`
	TaxesIncluded    bool              `json:"taxes_included"`
	SubtotalPriceSet *shopifyMoneySet  `json:"subtotal_price_set"`
	TotalPriceSet    *shopifyMoneySet  `json:"total_price_set"`
	TotalTaxSet      *shopifyMoneySet  `json:"total_tax_set"`
	LineItems        []shopifyLineItem `json:"line_items"`
	ShippingLines    []struct {
		TaxLines []shopifyTaxLine `json:"tax_lines"`
	} `json:"shipping_lines"`
	Customer       *shopifyCustomer `json:"customer"`
	Email          string           `json:"email"`
	ContactEmail   string           `json:"contact_email"`
	NoteAttributes []struct {
		Name  string      `json:"name"`
		Value shopifyText `json:"value"`
	} `json:"note_attributes"`
	LandingSite    string `json:"landing_site"`
	LandingSiteRef string `json:"landing_site_ref"`
	DiscountCodes  []struct {
		Code string `json:"code"`
	} `json:"discount_codes"`
	CreatedAt   shopifyTime `json:"created_at"`
	ProcessedAt shopifyTime `json:"processed_at"`
	CancelledAt shopifyTime `json:"cancelled_at"`
}

type shopifyRefund struct {
	ID              shopifyID   `json:"id"`
	OrderID         shopifyID   `json:"order_id"`
	CreatedAt       shopifyTime `json:"created_at"`
	ProcessedAt     shopifyTime `json:"processed_at"`
	RefundLineItems []struct {
		SubtotalSet *shopifyMoneySet `json:"subtotal_set"`
		TotalTaxSet *shopifyMoneySet `json:"total_tax_set"`
	} `json:"refund_line_items"`
	RefundShippingLines []struct {
		SubtotalAmountSet *shopifyMoneySet `json:"subtotal_amount_set"`
		TaxAmountSet      *shopifyMoneySet `json:"tax_amount_set"`
	} `json:"refund_shipping_lines"`
	OrderAdjustments []struct {
		Kind         string           `json:"kind"`
		AmountSet    *shopifyMoneySet `json:"amount_set"`
		TaxAmountSet *shopifyMoneySet `json:"tax_amount_set"`
	} `json:"order_adjustments"`
	TotalDutiesSet *shopifyMoneySet `json:"total_duties_set"`
	Transactions   []struct {
		Kind     string        `json:"kind"`
		Status   string        `json:"status"`
		Amount   shopifyAmount `json:"amount"`
		Currency string        `json:"currency"`
		Test     bool          `json:"test"`
	} `json:"transactions"`
}

type shopifyDispute struct {
	ID             shopifyID     `json:"id"`
	OrderID        shopifyID     `json:"order_id"`
	Type           string        `json:"type"`
	Status         string        `json:"status"`
	Reason         string        `json:"reason"`
	Amount         shopifyAmount `json:"amount"`
	Currency       string        `json:"currency"`
	InitiatedAt    shopifyTime   `json:"initiated_at"`
	EvidenceSentOn shopifyTime   `json:"evidence_sent_on"`
	FinalizedOn    shopifyTime   `json:"finalized_on"`
}

// Normalize turns a stored Shopify webhook into canonical facts.
func (s *Shopify) Normalize(src *hub.Source, ev *hub.InboundEvent) (*hub.Normalized, error) {
	if ev == nil {
		return nil, fmt.Errorf("normalizing shopify event: no event: %w", hub.ErrUnparsable)
	}
	topic := ev.Headers[shopifyHeaderTopic]
	if topic == "" {
		topic = ev.EventType
	}
	topic = strings.ToLower(strings.TrimSpace(topic))
	if topic == "" {
		return nil, fmt.Errorf("reading shopify event: no topic: %w", hub.ErrUnparsable)
	}
	body := bytes.TrimSpace(ev.Body)
	if len(body) == 0 || body[0] != '{' || !json.Valid(body) {
		return nil, fmt.Errorf("reading shopify %s: body is not a JSON object: %w", shopifyQuote(topic), hub.ErrUnparsable)
	}
	// Options matter for money only: a bad one never blocks the privacy
	// topics.
	opts, optErr := s.options(src)
	n := &hub.Normalized{Livemode: true}
	var err error
	switch topic {
	case "orders/create", "orders/updated", "orders/paid":
		if err = optErr; err == nil {
			err = s.order(opts, topic, body, n)
		}
	case "orders/cancelled":
		if err = optErr; err == nil {
			err = s.cancelled(opts, body, n)
		}
	case "refunds/create":
		if err = optErr; err == nil {
			err = s.refund(opts, body, n)
		}
	case "disputes/create", "disputes/update":
		err = s.dispute(topic, body, n)
	case "customers/data_request":
		var r struct {
			Customer *shopifyCustomer `json:"customer"`
		}
		if err = decodeShopify(topic, body, &r); err == nil {
			n.Ignored = "data request recorded"
			if r.Customer != nil {
				n.CustomerRef = string(r.Customer.ID)
			}
		}
	case "customers/redact":
		var r struct {
			Customer       *shopifyCustomer `json:"customer"`
			OrdersToRedact []shopifyID      `json:"orders_to_redact"`
		}
		if err = decodeShopify(topic, body, &r); err == nil {
			err = checkShopifyPrivacyBody(topic, body, ev.Headers[shopifyHeaderShopDomain], "customer", "orders_to_redact")
		}
		if err == nil {
			rf := &hub.RedactFact{}
			if r.Customer != nil {
				rf.CustomerRef = string(r.Customer.ID)
			}
			for _, id := range r.OrdersToRedact {
				if id != "" {
					rf.Subjects = append(rf.Subjects, string(id))
				}
			}
			n.Redact = rf
		}
	case "shop/redact":
		if err = checkShopifyPrivacyBody(topic, body, ev.Headers[shopifyHeaderShopDomain]); err == nil {
			n.Redact = &hub.RedactFact{Source: true}
		}
	case "app/uninstalled":
		n.Ignored = "app uninstalled"
	default:
		n.Ignored = "unsupported topic " + shopifyQuote(topic)
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}

// shopifyOptions are a source's settings, resolved.
type shopifyOptions struct {
	presentment    bool
	taxesIncluded  bool
	noteAttributes []string
	landingParams  []string
}

func (s *Shopify) options(src *hub.Source) (shopifyOptions, error) {
	o := shopifyOptions{noteAttributes: s.noteAttributes, landingParams: s.landingParams}
	switch v := strings.ToLower(strings.TrimSpace(src.Option("money"))); v {
	case "", "shop":
	case "presentment":
		o.presentment = true
	default:
		return o, fmt.Errorf("reading shopify source option money %q: want shop or presentment: %w", v, hub.ErrUnparsable)
	}
	switch v := strings.ToLower(strings.TrimSpace(src.Option("taxes_included"))); v {
	case "", "false":
	case "true":
		o.taxesIncluded = true
	default:
		return o, fmt.Errorf("reading shopify source option taxes_included %q: want true or false: %w", v, hub.ErrUnparsable)
	}
	if l := shopifySplitOption(src.Option("hint_keys")); len(l) > 0 {
		o.noteAttributes = l
	}
	if l := shopifySplitOption(src.Option("landing_params")); len(l) > 0 {
		o.landingParams = l
	}
	return o, nil
}

func shopifySplitOption(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// shopifyQuote quotes an unsigned header value for messages, shortened.
func shopifyQuote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}

// checkShopifyPrivacyBody makes sure an erasure request's signed body is
// one: the topic header is not signed, so a captured order delivery replayed
// under a redaction topic must not erase anything. The body must name the
// shop the request came from, hold the fields the topic requires, and
// nothing an order or refund body has.
func checkShopifyPrivacyBody(topic string, body []byte, shopDomain string, required ...string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return shopifyUnparsable(topic, "%v", err)
	}
	var domain string
	if err := json.Unmarshal(m["shop_domain"], &domain); err != nil || domain == "" || !strings.EqualFold(domain, shopDomain) {
		return shopifyUnparsable(topic, "body does not name the shop the request came from")
	}
	if _, ok := m["shop_id"]; !ok {
		return shopifyUnparsable(topic, "body has no shop_id")
	}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			return shopifyUnparsable(topic, "body has no %s", k)
		}
	}
	for _, k := range []string{"id", "order_id", "line_items", "refund_line_items", "financial_status"} {
		if _, ok := m[k]; ok {
			return shopifyUnparsable(topic, "body has %s: not an erasure request", k)
		}
	}
	return nil
}

func decodeShopify(topic string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("reading shopify %s: %v: %w", topic, err, hub.ErrUnparsable)
	}
	return nil
}

func shopifyUnparsable(topic, format string, args ...any) error {
	return fmt.Errorf("reading shopify %s: %s: %w", topic, fmt.Sprintf(format, args...), hub.ErrUnparsable)
}

// shopifyPaid reports whether a financial_status says the order was paid.
func shopifyPaid(status string) bool {
	switch status {
	case "paid", "partially_paid", "partially_refunded", "refunded":
		return true
	}
	return false
}

// decodeShopifyOrder reads an order and fills the event's subject and customer.
func decodeShopifyOrder(topic string, body []byte, n *hub.Normalized) (*shopifyOrder, error) {
	var o shopifyOrder
	if err := decodeShopify(topic, body, &o); err != nil {
		return nil, err
	}
	if o.ID == "" {
		return nil, shopifyUnparsable(topic, "no order id")
	}
	n.Livemode = !o.Test
	n.Subject = string(o.ID)
	if o.Customer != nil {
		n.CustomerRef = string(o.Customer.ID)
	}
	return &o, nil
}

// shopifyOrderMoney is an order's money in the selected currency.
type shopifyOrderMoney struct {
	currency         string
	base, gross, tax int64
	lines            []hub.LineItem
}

func (s *Shopify) order(opts shopifyOptions, topic string, body []byte, n *hub.Normalized) error {
	o, err := decodeShopifyOrder(topic, body, n)
	if err != nil {
		return err
	}
	if topic != "orders/paid" && !shopifyPaid(o.FinancialStatus) {
		n.Ignored = "order not paid (financial_status " + shopifyQuote(o.FinancialStatus) + ")"
		return nil
	}
	m, err := readShopifyOrderMoney(opts, topic, o)
	if err != nil {
		return err
	}
	at := o.ProcessedAt.Time
	if at.IsZero() {
		at = o.CreatedAt.Time
	}
	if at.IsZero() {
		return shopifyUnparsable(topic, "no processed_at or created_at")
	}
	p := &hub.Payment{
		Keys:       []string{string(o.ID)},
		Kind:       hub.KindNew,
		BaseMinor:  m.base,
		GrossMinor: m.gross,
		TaxMinor:   m.tax,
		Currency:   m.currency,
		Lines:      m.lines,
		OccurredAt: at,
	}
	email := o.Email
	if email == "" {
		email = o.ContactEmail
	}
	if o.Customer != nil {
		p.Customer.ProviderCustomerID = string(o.Customer.ID)
		if email == "" {
			email = o.Customer.Email
		}
	}
	p.Customer.EmailHash = emailHash(email)
	p.Hints = shopifyHints(opts, o)
	n.Payment = p
	return nil
}

func (s *Shopify) cancelled(opts shopifyOptions, body []byte, n *hub.Normalized) error {
	const topic = "orders/cancelled"
	o, err := decodeShopifyOrder(topic, body, n)
	if err != nil {
		return err
	}
	if o.CancelledAt.IsZero() {
		return shopifyUnparsable(topic, "order has no cancelled_at")
	}
	if !shopifyPaid(o.FinancialStatus) {
		n.Ignored = "order cancelled before payment (financial_status " + shopifyQuote(o.FinancialStatus) + ")"
		return nil
	}
	m, err := readShopifyOrderMoney(opts, topic, o)
	if err != nil {
		return err
	}
	base := m.base
	n.Refund = &hub.RefundFact{
		Keys:        []string{string(o.ID)},
		ExternalID:  "cancel:" + string(o.ID),
		AmountMinor: m.gross,
		BaseMinor:   &base,
		Currency:    m.currency,
		Status:      hub.RefundSucceeded,
		OccurredAt:  o.CancelledAt.Time,
	}
	return nil
}

// readShopifyOrderMoney computes an order's gross, tax, commission base and line
// amounts from its *_set fields, never from current_*.
func readShopifyOrderMoney(opts shopifyOptions, topic string, o *shopifyOrder) (*shopifyOrderMoney, error) {
	mr := &shopifyMoneyReader{presentment: opts.presentment}
	m := &shopifyOrderMoney{}
	m.gross = mr.read("total_price_set", o.TotalPriceSet, true)
	subtotal := mr.read("subtotal_price_set", o.SubtotalPriceSet, true)
	m.tax = mr.read("total_tax_set", o.TotalTaxSet, false)
	var lineTax int64
	taxLines := 0
	for _, li := range o.LineItems {
		if o.TaxesIncluded {
			for _, tl := range li.TaxLines {
				lineTax = mr.add(lineTax, mr.read("line_items[].tax_lines[].price_set", tl.PriceSet, true))
				taxLines++
			}
		}
		l := hub.LineItem{ProductID: string(li.ProductID), PriceID: string(li.VariantID), Quantity: li.Quantity}
		price := mr.read("line_items[].price_set", li.PriceSet, true)
		if li.Quantity < 0 || (li.Quantity > 0 && price > math.MaxInt64/li.Quantity) || price < 0 {
			mr.fail(errors.New("line item quantity or price out of range"))
		} else {
			l.AmountMinor = price * li.Quantity
		}
		for _, d := range li.DiscountAllocations {
			l.AmountMinor = mr.add(l.AmountMinor, -mr.read("line_items[].discount_allocations[].amount_set", d.AmountSet, true))
		}
		m.lines = append(m.lines, l)
	}
	m.base = subtotal
	if o.TaxesIncluded {
		if taxLines == 0 && m.tax != 0 {
			// No per-line taxes: the order's tax less the shipping's.
			lineTax = m.tax
			for _, sl := range o.ShippingLines {
				for _, tl := range sl.TaxLines {
					lineTax = mr.add(lineTax, -mr.read("shipping_lines[].tax_lines[].price_set", tl.PriceSet, true))
				}
			}
		}
		m.base = mr.add(m.base, -lineTax)
	}
	m.currency = mr.currency
	if mr.err != nil {
		return nil, shopifyUnparsable(topic, "%v", mr.err)
	}
	if m.gross < 0 || m.base < 0 || m.tax < 0 {
		return nil, shopifyUnparsable(topic, "negative amount or commission base")
	}
	return m, nil
}

// shopifyMoneyReader reads amounts of one currency out of money sets. The
// first failure is kept in err.
type shopifyMoneyReader struct {
	presentment bool
	currency    string
	err         error
}

// pick returns the selected money of set, or nil.
func (r *shopifyMoneyReader) pick(set *shopifyMoneySet) *shopifyMoney {
	if set == nil {
		return nil
	}
	if r.presentment {
		return set.PresentmentMoney
	}
	return set.ShopMoney
}

// read parses the selected amount of set; an absent one is 0 unless
// required.
func (r *shopifyMoneyReader) read(field string, set *shopifyMoneySet, required bool) int64 {
	money := r.pick(set)
	if money == nil || !money.Amount.set {
		if required {
			r.fail(fmt.Errorf("no %s amount in %s", r.which(), field))
		}
		return 0
	}
	cur := strings.ToUpper(strings.TrimSpace(money.CurrencyCode))
	switch {
	case cur == "":
		r.fail(fmt.Errorf("no currency_code in %s", field))
		return 0
	case r.currency == "":
		r.currency = cur
	case cur != r.currency:
		r.fail(fmt.Errorf("%s is in %s, not %s", field, cur, r.currency))
		return 0
	}
	v, err := hub.ParseDecimal(money.Amount.text, cur)
	if err != nil {
		r.fail(fmt.Errorf("%s: %v", field, err))
		return 0
	}
	return v
}

func (r *shopifyMoneyReader) which() string {
	if r.presentment {
		return "presentment_money"
	}
	return "shop_money"
}

// add returns a+b, failing on overflow.
func (r *shopifyMoneyReader) add(a, b int64) int64 {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		r.fail(errors.New("amount out of range"))
		return 0
	}
	return s
}

func (r *shopifyMoneyReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// shopifyHints reads the attribution hints of an order.
func shopifyHints(opts shopifyOptions, o *shopifyOrder) hub.Hints {
	var hb hintBuilder
	for _, name := range opts.noteAttributes {
		for _, a := range o.NoteAttributes {
			if strings.TrimSpace(a.Name) == name {
				hb.add(string(a.Value))
			}
		}
	}
	if q := shopifyLandingQuery(o.LandingSite); q != nil {
		for _, p := range opts.landingParams {
			hb.add(q.Get(p))
		}
	}
	hb.add(o.LandingSiteRef)
	for _, d := range o.DiscountCodes {
		hb.addPromo(strings.TrimSpace(d.Code))
	}
	return hb.h
}

// shopifyLandingQuery returns the query parameters of a landing_site, a path or
// URL ("/products/x?ref=anna"). Malformed pairs are skipped.
func shopifyLandingQuery(site string) url.Values {
	_, q, ok := strings.Cut(strings.TrimSpace(site), "?")
	if !ok {
		return nil
	}
	q, _, _ = strings.Cut(q, "#")
	v, _ := url.ParseQuery(q) // keeps the well-formed pairs
	return v
}

func (s *Shopify) refund(opts shopifyOptions, body []byte, n *hub.Normalized) error {
	const topic = "refunds/create"
	var rf shopifyRefund
	if err := decodeShopify(topic, body, &rf); err != nil {
		return err
	}
	if rf.ID == "" || rf.OrderID == "" {
		return shopifyUnparsable(topic, "no refund id or order_id")
	}
	n.Subject = string(rf.OrderID)
	at := rf.ProcessedAt.Time
	if at.IsZero() {
		at = rf.CreatedAt.Time
	}
	if at.IsZero() {
		return shopifyUnparsable(topic, "no processed_at or created_at")
	}
	sel := &shopifyMoneyReader{presentment: opts.presentment}
	pres := &shopifyMoneyReader{presentment: true}

	// Merchandise, in the selected money.
	var merch int64
	for _, li := range rf.RefundLineItems {
		sub := sel.read("refund_line_items[].subtotal_set", li.SubtotalSet, true)
		if opts.taxesIncluded {
			sub = sel.add(sub, -sel.read("refund_line_items[].total_tax_set", li.TotalTaxSet, false))
		}
		merch = sel.add(merch, sub)
	}
	// Everything the refund's sets describe, in both moneys: the ratio
	// converts transactions made in the presentment currency.
	compSel, compPres := shopifyRefundComponents(sel, &rf), shopifyRefundComponents(pres, &rf)

	// Money moved: successful refund transactions.
	var txTotal int64
	txCurrency := ""
	counted := 0
	for _, tx := range rf.Transactions {
		if tx.Test {
			n.Livemode = false
		}
		if tx.Kind != "refund" || tx.Status != "success" {
			continue
		}
		cur := strings.ToUpper(strings.TrimSpace(tx.Currency))
		if cur == "" {
			cur = pres.currency // Shopify transactions are in the presentment currency
		}
		if cur == "" {
			cur = sel.currency
		}
		if cur == "" {
			return shopifyUnparsable(topic, "refund transaction without currency")
		}
		if txCurrency != "" && cur != txCurrency {
			return shopifyUnparsable(topic, "refund transactions in %s and %s", txCurrency, cur)
		}
		txCurrency = cur
		if !tx.Amount.set {
			return shopifyUnparsable(topic, "refund transaction without amount")
		}
		v, err := hub.ParseDecimal(tx.Amount.text, cur)
		if err != nil {
			return shopifyUnparsable(topic, "%v", err)
		}
		if v < 0 {
			return shopifyUnparsable(topic, "negative refund transaction")
		}
		txTotal = sel.add(txTotal, v)
		counted++
	}
	if sel.err != nil {
		return shopifyUnparsable(topic, "%v", sel.err)
	}
	currency := sel.currency
	amount := txTotal
	switch {
	case counted == 0:
		amount = 0
	case currency == "":
		currency = txCurrency // nothing but transactions
	case txCurrency != currency:
		if pres.err != nil || pres.currency != txCurrency || compPres <= 0 || compSel < 0 {
			return shopifyUnparsable(topic, "cannot convert refund transactions in %s to %s", txCurrency, currency)
		}
		var ok bool
		if amount, ok = shopifyConvert(txTotal, compSel, compPres); !ok {
			return shopifyUnparsable(topic, "refund amount out of range")
		}
	}
	if currency == "" {
		n.Ignored = "refund moves no money"
		return nil
	}
	// A refund of an amount typed in by the merchant names no line items,
	// shipping or duties: with no merchandise split, the hub prorates it on
	// the order's base.
	var basePtr *int64
	if shopifyRefundHasSplit(&rf) {
		base := min(max(merch, 0), amount)
		basePtr = &base
	}
	n.Refund = &hub.RefundFact{
		Keys:        []string{string(rf.OrderID)},
		ExternalID:  string(rf.ID),
		AmountMinor: amount,
		BaseMinor:   basePtr,
		Currency:    currency,
		Status:      hub.RefundSucceeded,
		OccurredAt:  at,
	}
	return nil
}

// shopifyConvert returns amount × num / den rounded half up, exactly, and
// whether it fits in an int64 (hub.MulDivRound panics when it does not).
func shopifyConvert(amount, num, den int64) (int64, bool) {
	if den <= 0 || amount < 0 || num < 0 {
		return 0, false
	}
	q, r := new(big.Int).QuoRem(new(big.Int).Mul(big.NewInt(amount), big.NewInt(num)), big.NewInt(den), new(big.Int))
	if r.Lsh(r, 1).Cmp(big.NewInt(den)) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, false
	}
	return q.Int64(), true
}

// shopifyRefundHasSplit reports whether a refund says what it refunds:
// line items, shipping or duties, rather than only a discrepancy.
func shopifyRefundHasSplit(rf *shopifyRefund) bool {
	if len(rf.RefundLineItems) > 0 || len(rf.RefundShippingLines) > 0 || rf.TotalDutiesSet != nil {
		return true
	}
	for _, a := range rf.OrderAdjustments {
		if a.Kind == "shipping_refund" {
			return true
		}
	}
	return false
}

// shopifyRefundComponents is what a refund's money sets add up to in r's money:
// line items with their tax, refunded shipping with its tax, duties, less
// the order adjustments (a shipping refund is a negative adjustment, a
// refund below the calculated amount a positive discrepancy). Legacy
// shipping_refund adjustments are skipped when refund_shipping_lines
// describe the shipping.
func shopifyRefundComponents(r *shopifyMoneyReader, rf *shopifyRefund) int64 {
	var t int64
	for _, li := range rf.RefundLineItems {
		t = r.add(t, r.read("refund_line_items[].subtotal_set", li.SubtotalSet, false))
		t = r.add(t, r.read("refund_line_items[].total_tax_set", li.TotalTaxSet, false))
	}
	for _, sl := range rf.RefundShippingLines {
		t = r.add(t, r.read("refund_shipping_lines[].subtotal_amount_set", sl.SubtotalAmountSet, false))
		t = r.add(t, r.read("refund_shipping_lines[].tax_amount_set", sl.TaxAmountSet, false))
	}
	for _, a := range rf.OrderAdjustments {
		if a.Kind == "shipping_refund" && len(rf.RefundShippingLines) > 0 {
			continue
		}
		t = r.add(t, -r.read("order_adjustments[].amount_set", a.AmountSet, false))
		t = r.add(t, -r.read("order_adjustments[].tax_amount_set", a.TaxAmountSet, false))
	}
	return r.add(t, r.read("total_duties_set", rf.TotalDutiesSet, false))
}

func (s *Shopify) dispute(topic string, body []byte, n *hub.Normalized) error {
	var dp shopifyDispute
	if err := decodeShopify(topic, body, &dp); err != nil {
		return err
	}
	if dp.ID == "" {
		return shopifyUnparsable(topic, "no dispute id")
	}
	if dp.OrderID == "" {
		n.Ignored = "dispute names no order"
		return nil
	}
	n.Subject = string(dp.OrderID)
	var status string
	switch dp.Type {
	case "chargeback":
		switch dp.Status {
		case "won":
			status = hub.DisputeReinstated
		case "lost", "accepted", "charge_refunded":
			status = hub.DisputeLost
		default: // needs_response, under_review: the funds are withdrawn
			status = hub.DisputeWithdrawn
		}
	case "inquiry":
		// An inquiry moves no money, whatever its outcome: if the bank
		// escalates it, Shopify sends a chargeback.
		status = hub.DisputeInquiry
	default:
		return shopifyUnparsable(topic, "unknown dispute type %s", shopifyQuote(dp.Type))
	}
	// The dispute's own latest time orders its states.
	at := dp.FinalizedOn.Time
	if at.IsZero() {
		at = dp.EvidenceSentOn.Time
	}
	if at.IsZero() {
		at = dp.InitiatedAt.Time
	}
	if at.IsZero() {
		return shopifyUnparsable(topic, "no initiated_at")
	}
	currency := strings.ToUpper(strings.TrimSpace(dp.Currency))
	if !dp.Amount.set {
		return shopifyUnparsable(topic, "no amount")
	}
	amount, err := hub.ParseDecimal(dp.Amount.text, currency)
	if err != nil {
		return shopifyUnparsable(topic, "%v", err)
	}
	if amount < 0 {
		return shopifyUnparsable(topic, "negative amount")
	}
	n.Dispute = &hub.DisputeFact{
		Keys:        []string{string(dp.OrderID)},
		ExternalID:  string(dp.ID),
		Status:      status,
		Reason:      dp.Reason,
		AmountMinor: amount,
		Currency:    currency,
		OccurredAt:  at,
	}
	return nil
}
