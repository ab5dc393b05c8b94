package connectors

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"
	"unicode"

	"github.com/partnerhub/partnerhub/hub"
)

// Test events ("partnerhub trigger").
//
// A test event is a realistic payload of one provider event type, built
// from a template under samples/<provider>/ (shaped like the fixtures under
// testdata/<provider>/), with fresh ids and times, and signed with the
// source's secret exactly as the provider signs it. It is meant to be
// posted to the source's /in URL, so verification, dedupe, storage and
// processing are those of a real webhook.
//
// Every test event sells or refunds one item of AmountMinor, with no tax,
// shipping or discount, so its commission base is the amount. The partner
// code travels where the provider's checkout puts it: Stripe
// client_reference_id (sessions) and subscription metadata (invoices),
// Shopify note_attributes, WooCommerce order meta, Paddle custom_data,
// under the source's first hint_keys entry when it sets one. Refunds and
// disputes name PaymentID, the payment of an earlier test event, or a new
// one (they are then parked until that payment arrives, as a real refund of
// an unknown payment would be).
//
// Stripe events are test-mode events (livemode false) and Shopify orders
// are test orders: the hub flags their conversions as test, never paid.
// WooCommerce and Paddle Billing payloads carry no test flag: their events
// are test events only on a source with the option sandbox=true.

//go:embed samples
var sampleFS embed.FS

// Sample kinds: whether a test event sells or takes money back.
const (
	samplePayment = "payment"
	sampleRefund  = "refund"
	sampleDispute = "dispute"
)

// sampleSpec is one test event of a provider.
type sampleSpec struct {
	event string
	file  string // under samples/<provider>/
	kind  string
	vars  map[string]string // fixed template values, merged into ID
}

// sampleCatalog lists the test events of each provider, in the order help
// and error messages show them.
var sampleCatalog = map[string][]sampleSpec{
	"stripe": {
		{event: "checkout.session.completed", file: "checkout.session.completed.json", kind: samplePayment},
		{event: "invoice.paid", file: "invoice.paid.json", kind: samplePayment},
		{event: "charge.refunded", file: "charge.refunded.json", kind: sampleRefund},
		{event: "charge.dispute.created", file: "charge.dispute.created.json", kind: sampleDispute},
	},
	"shopify": {
		{event: "orders/paid", file: "orders_paid.json", kind: samplePayment},
		{event: "refunds/create", file: "refunds_create.json", kind: sampleRefund},
	},
	"woocommerce": {
		{event: "order.created", file: "order.created.json", kind: samplePayment, vars: map[string]string{"status": "processing"}},
		{event: "order.updated", file: "order.updated.json", kind: sampleRefund, vars: map[string]string{"status": "refunded"}},
	},
	"paddle": {
		{event: "transaction.completed", file: "transaction.completed.json", kind: samplePayment},
		{event: "adjustment.created", file: "adjustment.created.json", kind: sampleRefund},
	},
}

// sampleRefusals explain why a provider has no test events.
var sampleRefusals = map[string]string{
	"paddle_classic": "Paddle Classic signs with your private key; send a test alert from the Paddle dashboard",
}

// Defaults of a SampleRequest.
const (
	SampleDefaultAmountMinor = 4900
	SampleDefaultCurrency    = "usd"
	SampleDefaultEmail       = "jenny.rosen@example.com"
)

// sampleStripeAPIVersion is the API version of Stripe test events: the one
// stripe-go v76 pins, which `partnerhub sources connect stripe` registers
// endpoints with.
const sampleStripeAPIVersion = "2023-10-16"

// SampleEvents lists the test events of provider; nil when it has none.
func SampleEvents(provider string) []string {
	var out []string
	for _, s := range sampleCatalog[provider] {
		out = append(out, s.event)
	}
	return out
}

// SampleProviders lists the providers that have test events, sorted.
func SampleProviders() []string {
	out := make([]string, 0, len(sampleCatalog))
	for p := range sampleCatalog {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// SampleRequest describes a test event.
type SampleRequest struct {
	// Event is the provider's event type or topic ("invoice.paid",
	// "orders/paid"). Required.
	Event string
	// PartnerCode is the attribution hint the checkout carries (a value
	// starting with "clk_" is a click id). Zero: none.
	PartnerCode string
	// AmountMinor is what is sold or refunded, in ISO 4217 minor units.
	// Zero: SampleDefaultAmountMinor.
	AmountMinor int64
	// Currency is an ISO 4217 code in any case. Zero: SampleDefaultCurrency.
	Currency string
	// Email is the buyer's address. Zero: SampleDefaultEmail.
	Email string
	// PaymentID is, for refunds and disputes, the provider id of the
	// payment they take money from (the PaymentID of an earlier test
	// sale). Zero: a new payment.
	PaymentID string
}

// Sample is a signed test event, ready to be posted to /in/<source id>.
type Sample struct {
	Provider string
	Event    string
	// Kind is "payment", "refund" or "dispute".
	Kind string
	// EventID is what the provider would name the delivery by: Stripe and
	// Paddle event ids, Shopify's X-Shopify-Event-Id, WooCommerce's
	// X-WC-Webhook-Delivery-ID.
	EventID string
	// PaymentID is the provider id of the payment the event is about, to
	// pass to a later refund or dispute.
	PaymentID string
	// Livemode is false when the payload or the source marks the event as
	// a test.
	Livemode bool
	Header   http.Header
	Body     []byte
}

// sampleData is what the templates read.
type sampleData struct {
	EventID     string
	PaymentID   string
	PartnerCode string
	HintKey     string
	Email       string
	// Currency is upper case; CurrencyLower is Stripe's form.
	Currency, CurrencyLower, CurrencySymbol string
	// Amount is the provider's integer amount (Stripe's unit, Paddle's
	// minor units); Decimal and ZeroDecimal are major-unit decimals.
	Amount               int64
	Decimal, ZeroDecimal string
	// Fee and Earnings are Paddle's split of Amount.
	Fee, Earnings int64
	APIVersion    string
	ShopDomain    string
	StoreURL      string
	// ID holds the other generated ids, and the spec's fixed values.
	ID   map[string]string
	Time sampleTimes
	now  time.Time
}

// sampleTimes are now in each provider's format.
type sampleTimes struct {
	Shopify      string // 2006-01-02T15:04:05-07:00
	Woo, WooPaid string // 2006-01-02T15:04:05, GMT
	Paddle       string // RFC 3339 with microseconds
	PaddleBefore string
}

// Unix is now in Unix seconds; UnixBefore and UnixAfter shift it.
func (d *sampleData) Unix() int64              { return d.now.Unix() }
func (d *sampleData) UnixBefore(s int64) int64 { return d.now.Unix() - s }
func (d *sampleData) UnixAfter(s int64) int64  { return d.now.Unix() + s }

// HintObject is the JSON object carrying the partner code under the hint
// key, or {} without a code.
func (d *sampleData) HintObject() (string, error) {
	m := map[string]string{}
	if d.PartnerCode != "" {
		m[d.HintKey] = d.PartnerCode
	}
	return sampleJSON(m)
}

var sampleFuncs = template.FuncMap{
	"json": sampleJSON,
	"add":  func(a, b int64) int64 { return a + b },
}

// sampleJSON encodes v without HTML escaping, as providers write JSON.
func sampleJSON(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

var sampleTemplates sync.Map // provider/file → *template.Template

// sampleTemplate parses a provider's event template with the provider's
// shared definitions (samples/<provider>/*.tmpl).
func sampleTemplate(provider, file string) (*template.Template, error) {
	key := provider + "/" + file
	if t, ok := sampleTemplates.Load(key); ok {
		return t.(*template.Template), nil
	}
	dir := path.Join("samples", provider)
	shared, err := fs.Glob(sampleFS, dir+"/*.tmpl")
	if err != nil {
		return nil, err
	}
	t, err := template.New(file).Funcs(sampleFuncs).Option("missingkey=error").
		ParseFS(sampleFS, append(shared, path.Join(dir, file))...)
	if err != nil {
		return nil, fmt.Errorf("parsing test event template %s: %w", key, err)
	}
	sampleTemplates.Store(key, t)
	return t, nil
}

var (
	samplePaymentIDPatterns = map[string]*regexp.Regexp{
		"stripe":      regexp.MustCompile(`^pi_[A-Za-z0-9]{1,64}$`),
		"shopify":     regexp.MustCompile(`^[1-9][0-9]{0,17}$`),
		"woocommerce": regexp.MustCompile(`^[1-9][0-9]{0,17}$`),
		"paddle":      regexp.MustCompile(`^txn_[a-z0-9]{1,64}$`),
	}
	samplePaymentIDForms = map[string]string{
		"stripe":      "a payment intent id (pi_…)",
		"shopify":     "an order id",
		"woocommerce": "an order id",
		"paddle":      "a transaction id (txn_…)",
	}
)

// NewSample builds the test event req describes for src, signed with
// src's secret at now. Errors are *hub.Error values with code EINVALID
// for requests that cannot be served.
func NewSample(src *hub.Source, req SampleRequest, now time.Time) (*Sample, error) {
	if why, ok := sampleRefusals[src.Provider]; ok {
		return nil, hub.Errorf(hub.EINVALID, "%s", why)
	}
	specs, ok := sampleCatalog[src.Provider]
	if !ok {
		return nil, hub.Errorf(hub.EINVALID, "there are no test events for %s sources", src.Provider)
	}
	var spec sampleSpec
	for _, s := range specs {
		if s.event == req.Event {
			spec = s
		}
	}
	supported := strings.Join(SampleEvents(src.Provider), ", ")
	if spec.event == "" {
		msg := fmt.Sprintf("unknown %s test event %q; supported: %s", src.Provider, req.Event, supported)
		if req.Event == "" {
			msg = fmt.Sprintf("event is required; %s supports: %s", src.Provider, supported)
		}
		return nil, &hub.Error{Code: hub.EINVALID, Message: msg, Fields: map[string]string{"event": "must be one of " + supported}}
	}
	if src.Secret == "" {
		return nil, hub.Errorf(hub.EINVALID, "the source has no signing secret")
	}
	d, err := newSampleData(src.Provider, spec, req, now)
	if err != nil {
		return nil, err
	}
	s := &Sample{Provider: src.Provider, Event: spec.event, Kind: spec.kind, Header: http.Header{}}
	switch src.Provider {
	case "stripe":
		err = stripeSample(src, d, s)
	case "shopify":
		shopifySample(src, spec, d, s)
	case "woocommerce":
		wooSample(src, spec, d, s)
	case "paddle":
		paddleSample(src, d, s)
	}
	if err != nil {
		return nil, err
	}
	t, err := sampleTemplate(src.Provider, spec.file)
	if err != nil {
		return nil, err
	}
	var body bytes.Buffer
	if err := t.Execute(&body, d); err != nil {
		return nil, fmt.Errorf("building %s test event %s: %w", src.Provider, spec.event, err)
	}
	if !json.Valid(body.Bytes()) {
		return nil, fmt.Errorf("building %s test event %s: template output is not JSON", src.Provider, spec.event)
	}
	s.Body, s.EventID, s.PaymentID = body.Bytes(), d.EventID, d.PaymentID
	switch src.Provider {
	case "stripe":
		s.Header.Set("Stripe-Signature", stripeSignatureHeader(src.Secret, now.Unix(), s.Body))
	case "shopify":
		s.Header.Set(shopifyHeaderHMAC, shopifyHMAC(src.Secret, s.Body))
	case "woocommerce":
		s.Header.Set(wooHeaderSignature, wooSignature(src.Secret, s.Body))
	case "paddle":
		s.Header.Set("Paddle-Signature", paddleSignatureHeader(src.Secret, now.Unix(), s.Body))
	}
	return s, nil
}

// newSampleData validates req, applies its defaults and fills what every
// provider's templates share.
func newSampleData(provider string, spec sampleSpec, req SampleRequest, now time.Time) (*sampleData, error) {
	bad := map[string]string{}
	amount := req.AmountMinor
	switch {
	case amount == 0:
		amount = SampleDefaultAmountMinor
	case amount < 0 || amount > 1e12:
		bad["amount_minor"] = "must be a positive amount in minor units, at most 10^12"
	}
	currency := strings.ToUpper(strings.TrimSpace(req.Currency))
	if currency == "" {
		currency = strings.ToUpper(SampleDefaultCurrency)
	}
	if _, ok := hub.Exponent(currency); !ok || len(currency) != 3 {
		bad["currency"] = "must be an ISO 4217 code such as usd"
	}
	email := strings.TrimSpace(req.Email)
	if email == "" {
		email = SampleDefaultEmail
	}
	if len(email) > 254 || !strings.Contains(email, "@") || strings.IndexFunc(email, sampleBadRune) >= 0 || strings.ContainsRune(email, ' ') {
		bad["email"] = "must be an email address"
	}
	code := strings.TrimSpace(req.PartnerCode)
	if len(code) > 128 || strings.IndexFunc(code, sampleBadRune) >= 0 {
		bad["partner_code"] = "must be at most 128 printable characters"
	}
	pid := strings.TrimSpace(req.PaymentID)
	switch {
	case pid == "":
	case spec.kind == samplePayment:
		bad["payment_id"] = "applies to refund and dispute events only"
	case !samplePaymentIDPatterns[provider].MatchString(pid):
		bad["payment_id"] = "must be " + samplePaymentIDForms[provider]
	}
	if len(bad) > 0 {
		return nil, hub.Invalid(bad)
	}
	d := &sampleData{
		PaymentID:     pid,
		PartnerCode:   code,
		Email:         email,
		Currency:      currency,
		CurrencyLower: strings.ToLower(currency),
		Amount:        amount,
		Decimal:       hub.FormatMinor(amount, currency),
		ZeroDecimal:   hub.FormatMinor(0, currency),
		ID:            map[string]string{},
		now:           now.UTC(),
	}
	for k, v := range spec.vars {
		d.ID[k] = v
	}
	return d, nil
}

func sampleBadRune(r rune) bool { return !unicode.IsPrint(r) }

// sampleHintKey is the first of the source's hint_keys, else def.
func sampleHintKey(src *hub.Source, def string) string {
	for _, k := range strings.Split(src.Option("hint_keys"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			return k
		}
	}
	return def
}

func stripeSample(src *hub.Source, d *sampleData, s *Sample) error {
	// Stripe's unit differs from ISO 4217's for a few currencies.
	if sc, ok := stripeCurrencyScale[d.Currency]; ok {
		if d.Amount%sc.mul != 0 {
			return hub.Invalid(map[string]string{"amount_minor": fmt.Sprintf("Stripe charges whole %s units: must be a multiple of %d", d.Currency, sc.mul)})
		}
		d.Amount = d.Amount / sc.mul * sc.div
	}
	d.APIVersion = sampleStripeAPIVersion
	d.HintKey = sampleHintKey(src, "partner")
	d.EventID = "evt_1" + sampleAlnum(23)
	if d.PaymentID == "" {
		d.PaymentID = "pi_3" + sampleAlnum(23)
	}
	for k, v := range map[string]string{
		"session":             "cs_test_a1" + sampleAlnum(56),
		"customer":            "cus_" + sampleAlnum(14),
		"invoice":             "in_1" + sampleAlnum(23),
		"charge":              "ch_3" + sampleAlnum(23),
		"line":                "il_1" + sampleAlnum(23),
		"price":               "price_1" + sampleAlnum(23),
		"product":             "prod_" + sampleAlnum(14),
		"subscription":        "sub_1" + sampleAlnum(23),
		"subscription_item":   "si_" + sampleAlnum(14),
		"balance_transaction": "txn_3" + sampleAlnum(23),
		"payment_method":      "pm_1" + sampleAlnum(23),
		"dispute":             "dp_1" + sampleAlnum(23),
		"request":             "req_" + sampleAlnum(14),
		"idempotency_key":     sampleUUID(),
	} {
		d.ID[k] = v
	}
	s.Livemode = false
	h := s.Header
	h.Set("Accept", "*/*; q=0.5, application/xml")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	return nil
}

// sampleShopDomain is the shop Shopify test events come from.
const sampleShopDomain = "partnerhub-test.myshopify.com"

func shopifySample(src *hub.Source, spec sampleSpec, d *sampleData, s *Sample) {
	d.HintKey = sampleHintKey(src, "partner")
	d.ShopDomain = sampleShopDomain
	d.EventID = sampleUUID()
	if d.PaymentID == "" {
		d.PaymentID = sampleDigits(13)
	}
	number := sampleDigits(4)
	n, _ := strconv.Atoi(number)
	for k, v := range map[string]string{
		"order":              d.PaymentID,
		"number":             number,
		"order_number":       strconv.Itoa(n + 1000),
		"customer":           sampleDigits(13),
		"line_item":          sampleDigits(14),
		"product":            sampleDigits(13),
		"variant":            sampleDigits(14),
		"checkout":           sampleDigits(13),
		"checkout_token":     sampleHex(16),
		"cart_token":         sampleAlnum(26),
		"confirmation":       strings.ToUpper(sampleAlnum(9)),
		"refund":             sampleDigits(13),
		"refund_line_item":   sampleDigits(12),
		"transaction":        sampleDigits(13),
		"parent_transaction": sampleDigits(13),
	} {
		d.ID[k] = v
	}
	d.Time.Shopify = d.now.Format("2006-01-02T15:04:05-07:00")
	s.Livemode = false // test orders
	h := s.Header
	h.Set("Accept", "*/*")
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Shopify-Captain-Hook")
	h.Set(shopifyHeaderAPIVersion, "2025-07")
	h.Set(shopifyHeaderShopDomain, sampleShopDomain)
	h.Set(shopifyHeaderTopic, spec.event)
	h.Set(shopifyHeaderTriggeredAt, d.now.Format("2006-01-02T15:04:05.000Z"))
	h.Set(shopifyHeaderWebhookID, sampleUUID())
	h.Set(shopifyHeaderEventID, d.EventID)
}

// wooCurrencySymbols are the currency_symbol values WooCommerce writes for
// common currencies; others show the code.
var wooCurrencySymbols = map[string]string{
	"USD": "&#36;", "EUR": "&euro;", "GBP": "&pound;", "JPY": "&yen;", "INR": "&#8377;",
}

func wooSample(src *hub.Source, spec sampleSpec, d *sampleData, s *Sample) {
	d.HintKey = sampleHintKey(src, "_partner_ref")
	d.StoreURL = "https://shop.example.com/"
	if u, err := wooStoreURL(src.Option("store_url")); err == nil {
		d.StoreURL = strings.TrimSuffix(u.String(), "/") + "/"
	}
	d.CurrencySymbol = wooCurrencySymbols[d.Currency]
	if d.CurrencySymbol == "" {
		d.CurrencySymbol = d.Currency
	}
	d.EventID = sampleHex(16)
	if d.PaymentID == "" {
		// Far above the post ids of a real store's orders.
		d.PaymentID = "9" + sampleDigits(8)
	}
	for k, v := range map[string]string{
		"order_key": "wc_order_" + sampleAlnum(13),
		"cart_hash": sampleHex(16),
		"meta":      sampleDigits(5),
		"line_item": sampleDigits(5),
		"product":   sampleDigits(3),
		"refund":    "",
	} {
		d.ID[k] = v
	}
	paid := d.now
	if spec.kind != samplePayment {
		d.ID["refund"] = "9" + sampleDigits(8)
		paid = paid.Add(-time.Hour)
	}
	d.Time.Woo = d.now.Format(wooTimeLayout)
	d.Time.WooPaid = paid.Format(wooTimeLayout)
	s.Livemode = src.Option("sandbox") != "true"
	resource, ev, _ := strings.Cut(spec.event, ".")
	h := s.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)")
	h.Set(wooHeaderSource, d.StoreURL)
	h.Set(wooHeaderTopic, spec.event)
	h.Set(wooHeaderResource, resource)
	h.Set(wooHeaderEvent, ev)
	h.Set(wooHeaderID, "1")
	h.Set(wooHeaderDeliveryID, d.EventID)
}

func paddleSample(src *hub.Source, d *sampleData, s *Sample) {
	d.HintKey = sampleHintKey(src, "partner")
	d.Fee = min(d.Amount, d.Amount*5/100+50)
	d.Earnings = d.Amount - d.Fee
	d.EventID = hub.NewID("evt")
	if d.PaymentID == "" {
		d.PaymentID = hub.NewID("txn")
	}
	for k, v := range map[string]string{
		"notification":          hub.NewID("ntf"),
		"customer":              hub.NewID("ctm"),
		"address":               hub.NewID("add"),
		"invoice":               hub.NewID("inv"),
		"price":                 hub.NewID("pri"),
		"product":               hub.NewID("pro"),
		"line_item":             hub.NewID("txnitm"),
		"adjustment":            hub.NewID("adj"),
		"adjustment_item":       hub.NewID("adjitm"),
		"payment_method":        hub.NewID("paymtd"),
		"payment_attempt":       sampleUUID(),
		"stored_payment_method": sampleUUID(),
	} {
		d.ID[k] = v
	}
	const layout = "2006-01-02T15:04:05.000000Z07:00"
	d.Time.Paddle = d.now.Format(layout)
	d.Time.PaddleBefore = d.now.Add(-10 * time.Second).Format(layout)
	s.Livemode = src.Option("sandbox") != "true"
	s.Header.Set("Content-Type", "application/json")
}

const sampleAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// sampleAlnum returns n random letters and digits.
func sampleAlnum(n int) string {
	return sampleString(n, sampleAlphabet)
}

// sampleDigits returns n random digits, the first not 0.
func sampleDigits(n int) string {
	return sampleString(1, "123456789") + sampleString(n-1, "0123456789")
}

// sampleString returns n characters of alphabet drawn at random. Test
// event ids must be unique, not secret: math/rand/v2's generator, seeded
// from the system's randomness, draws them a hundred times faster than
// crypto/rand did, which the load tool's senders spent a tenth of their
// CPU on.
func sampleString(n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[mrand.IntN(len(alphabet))]
	}
	return string(b)
}

// sampleHex returns n random bytes in hex.
func sampleHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sampleUUID returns a random (version 4) UUID.
func sampleUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
