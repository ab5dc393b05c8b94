package connectors

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/netguard"
)

// WooCommerce webhooks and REST reconciliation.
//
// Signature: header X-WC-Webhook-Signature, the base64 HMAC-SHA256 of the
// raw body keyed with the webhook's secret as WordPress decodes it,
// wp_specialchars_decode($secret, ENT_QUOTES): only &amp; &lt; &gt; &quot;
// &#039; and their numeric forms (&#38; &#x26; &#60; &#62; &#34; &#x22;
// &#39; &#x27;, zero padded or not) are decoded; &apos;, &#x3c; and every
// other entity stay as they are. The source's PreviousSecret is accepted as
// well, for rotations.
//
// Ping: when a webhook is saved, WooCommerce posts the form body
// webhook_id=<n>, unsigned and without X-WC-* headers, and keeps the
// webhook pending unless the answer is exactly 200. Verify returns ErrPing
// for it; the /in handler answers a bare 200 and stores nothing. Any other
// unsigned request is a bad signature.
//
// Dedupe key: the hex SHA-256 of the body. WooCommerce has no event id and
// sends the order's whole state, so two deliveries of one state are one
// event and two states (even within one second) are two.
//
// Topics read: order.created, order.updated (also sent for refunds and
// refund deletions), order.restored and order.deleted; every other topic is
// recorded and ignored. The body is the order as GET /wp-json/wc/v3/orders/<id>
// returns it at send time, and deliveries can be coalesced, so each state
// becomes a hub.Snapshot (keys: the order id; at: date_modified_gmt) that
// the hub compares with what it applied before:
//
//	date_paid_gmt empty        not paid: recorded and ignored
//	date_paid_gmt set          a payment, whatever the status: base = Σ
//	                           line_items[].total, gross = total, tax =
//	                           total_tax (the hub fixes them at the first
//	                           paid state)
//	refunds[]                  refunded: Σ |refunds[].total|
//	status cancelled, failed   refunded: the whole order (gross)
//	or trash; status refunded
//	with refunds[] empty
//
// What is refunded is one running total per order (a cumulative refund
// named by the order id, prorated on the base by the hub), not one refund
// per refunds[] entry: the hub keys the ledger movements of an event by
// the event, so a coalesced state that adds several refunds, or a refund
// and a cancellation, must change a single fact to be booked in full. A
// new refund raises the total; a deleted refund, or a cancelled, trashed
// or refunded order reopened or restored, lowers it; two states of one
// second can only raise it; a state older than the one applied is recorded
// and ignored. order.deleted carries only {"id": <n>} (WooCommerce builds
// no payload for deletions): it is recorded and ignored, and the trashed
// state is read by reconciliation, which lists trashed orders too.
//
// Money: decimal strings in the order's currency, parsed without floats.
// Stores may show more decimals than ISO 4217 gives the currency (the
// WooCommerce default is two, also for JPY): amounts are read exactly and
// rounded half away from zero to the currency's minor unit, the base once,
// after summing the lines.
//
// Attribution hints: order meta_data keys _partnerhub_click and _partner_ref
// (the source option hint_keys, comma separated, replaces the list), then
// the query parameters ref, partner and click_id of the landing page that
// WooCommerce's order attribution records (_wc_order_attribution_session_entry;
// the source option landing_params replaces the list). A value starting with
// "clk_" is a click id, anything else a partner code. coupon_lines[].code
// are promo codes. The lifetime key is customer_id, or for guests
// "email:<SHA-256 of the billing email>". WooCommerce Subscriptions renewal
// orders (meta _subscription_renewal) are renewals of that subscription.
//
// Source options: store_url (for reconciliation), hint_keys,
// landing_params, sandbox ("true" for a staging store: its conversions are
// test conversions). Credentials (for reconciliation): consumer_key and
// consumer_secret of a REST API key with Read permission.
//
// Reconciliation: WooCommerce never retries a failed delivery and disables
// a webhook after repeated failures, so Reconcile lists the orders modified
// since the cursor, GET {store_url}/wp-json/wc/v3/orders?modified_after=…
// &dates_are_gmt=true&orderby=modified&order=asc, page by page following
// X-WP-TotalPages, then once more with status=trash. Each order is
// ingested like an order.updated webhook. The bound is exclusive and to
// the second, so the next cursor is the newest date_modified_gmt seen minus
// one second: the overlap is absorbed by dedupe and snapshots. The first
// poll looks back FirstWindow (24 h). Reconcile also lists the store's
// webhooks and reports those delivering to this source (or, when none
// does, every order.* webhook) that are disabled or paused.

// ErrPing is returned by Verify for a provider's setup ping: a request that
// is unsigned by design and carries no event (WooCommerce posts
// webhook_id=<n> when a webhook is saved, and needs exactly HTTP 200). The
// /in handler answers it with a bare 200 and stores nothing.
var ErrPing = errors.New("provider setup ping")

const (
	wooHeaderSignature  = "X-WC-Webhook-Signature"
	wooHeaderTopic      = "X-WC-Webhook-Topic"
	wooHeaderResource   = "X-WC-Webhook-Resource"
	wooHeaderEvent      = "X-WC-Webhook-Event"
	wooHeaderSource     = "X-WC-Webhook-Source"
	wooHeaderID         = "X-WC-Webhook-ID"
	wooHeaderDeliveryID = "X-WC-Webhook-Delivery-ID"
	// wooHeaderReconciled marks orders fetched by reconciliation.
	wooHeaderReconciled = "X-Partnerhub-Reconciled"

	wooDefaultPageSize    = 50
	wooMaxPageSize        = 100 // WooCommerce's per_page maximum
	wooDefaultTimeout     = 30 * time.Second
	wooDefaultMaxPages    = 100
	wooDefaultFirstWindow = 24 * time.Hour
	wooMaxResponseBytes   = 32 << 20
	wooTimeLayout         = "2006-01-02T15:04:05"
)

var (
	wooDefaultHintKeys      = []string{"_partnerhub_click", "_partner_ref"}
	wooDefaultLandingParams = []string{"ref", "partner", "click_id"}
)

// WooCommerceConfig configures the WooCommerce connector.
type WooCommerceConfig struct {
	// Client makes reconciliation's REST calls. Zero value:
	// netguard.NewClient with no allowed networks (public addresses only);
	// pass one built from PARTNERHUB_OUTBOUND_ALLOW_NETS to reach a store on
	// a private network.
	Client *http.Client
	// PageSize is per_page of the order listings, at most 100. Zero: 50.
	PageSize int
	// Timeout bounds each REST request, body included. Zero: 30 s.
	Timeout time.Duration
	// MaxPages bounds the pages read per listing in one poll; the next
	// poll resumes where this one stopped. Zero: 100.
	MaxPages int
	// FirstWindow is how far back the first poll of a source (empty
	// cursor) looks. Zero: 24 h.
	FirstWindow time.Duration
}

// WooCommerce verifies and normalizes WooCommerce webhooks, and recovers
// missed ones through the REST API.
type WooCommerce struct {
	cfg WooCommerceConfig
}

var (
	_ Connector      = (*WooCommerce)(nil)
	_ hub.Reconciler = (*WooCommerce)(nil)
)

// NewWooCommerce returns the WooCommerce connector.
func NewWooCommerce(cfg WooCommerceConfig) *WooCommerce {
	if cfg.Client == nil {
		cfg.Client = netguard.NewClient(netguard.Config{})
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = wooDefaultPageSize
	}
	cfg.PageSize = min(cfg.PageSize, wooMaxPageSize)
	if cfg.Timeout <= 0 {
		cfg.Timeout = wooDefaultTimeout
	}
	if cfg.MaxPages <= 0 {
		cfg.MaxPages = wooDefaultMaxPages
	}
	if cfg.FirstWindow <= 0 {
		cfg.FirstWindow = wooDefaultFirstWindow
	}
	return &WooCommerce{cfg: cfg}
}

// Provider returns "woocommerce".
func (w *WooCommerce) Provider() string { return "woocommerce" }

// Verify checks the X-WC-Webhook-Signature of body and returns the body
// hash and the topic. The creation ping gives ErrPing.
func (w *WooCommerce) Verify(src *hub.Source, h http.Header, body []byte, _ time.Time) (hub.Receipt, error) {
	if isWooPing(h, body) {
		return hub.Receipt{}, fmt.Errorf("woocommerce webhook creation ping: %w", ErrPing)
	}
	if src == nil || src.Secret == "" {
		return hub.Receipt{}, fmt.Errorf("verifying woocommerce signature: source has no secret: %w", hub.ErrBadSignature)
	}
	got := strings.TrimSpace(h.Get(wooHeaderSignature))
	if got == "" {
		return hub.Receipt{}, fmt.Errorf("verifying woocommerce signature: missing %s header: %w", wooHeaderSignature, hub.ErrBadSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(got)
	if err != nil || len(sig) != sha256.Size {
		return hub.Receipt{}, fmt.Errorf("verifying woocommerce signature: malformed %s header: %w", wooHeaderSignature, hub.ErrBadSignature)
	}
	ok := false
	for _, secret := range []string{src.Secret, src.PreviousSecret} {
		if secret != "" && hmac.Equal(wooMAC(secret, body), sig) {
			ok = true
		}
	}
	if !ok {
		return hub.Receipt{}, fmt.Errorf("verifying woocommerce signature: HMAC does not match: %w", hub.ErrBadSignature)
	}
	kept := map[string]string{}
	for _, name := range []string{wooHeaderTopic, wooHeaderResource, wooHeaderEvent, wooHeaderSource, wooHeaderID, wooHeaderDeliveryID} {
		if v := strings.TrimSpace(h.Get(name)); v != "" {
			kept[name] = v
		}
	}
	if kept[wooHeaderTopic] == "" {
		return hub.Receipt{}, fmt.Errorf("reading woocommerce webhook: missing %s header: %w", wooHeaderTopic, hub.ErrUnparsable)
	}
	return hub.Receipt{DedupeKey: wooBodyHash(body), EventType: kept[wooHeaderTopic], Headers: kept}, nil
}

// isWooPing recognizes the ping WooCommerce sends when a webhook is saved
// (WC_Webhook::deliver_ping): the body webhook_id=<n> and no X-WC-* header.
func isWooPing(h http.Header, body []byte) bool {
	for name := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(name), "X-Wc-") {
			return false
		}
	}
	id, ok := bytes.CutPrefix(body, []byte("webhook_id="))
	return ok && len(id) <= 20 && hub.IsDigits(string(id))
}

// wooMAC is the raw HMAC-SHA256 WooCommerce signs body with
// (WC_Webhook::generate_signature).
func wooMAC(secret string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(wpSpecialcharsDecode(secret)))
	m.Write(body)
	return m.Sum(nil)
}

// wooSignature is the X-WC-Webhook-Signature value WooCommerce sends for
// body.
func wooSignature(secret string, body []byte) string {
	return base64.StdEncoding.EncodeToString(wooMAC(secret, body))
}

func wooBodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// wpSpecialcharsNumeric and wpSpecialcharsReplacer are WordPress's
// wp_specialchars_decode( $s, ENT_QUOTES ) (wp-includes/formatting.php):
// first the zero padding of the numeric entities it knows is removed, one
// pattern after the other in its order (the hexadecimal ones ignore case),
// then one strtr() pass over the fixed table. No key of the table is a
// prefix of another, so strings.Replacer's leftmost, argument-order
// matching is strtr()'s longest-first matching.
var (
	wpSpecialcharsNumeric = []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(`&#0*39;`), "&#039;"},
		{regexp.MustCompile(`(?i)&#x0*27;`), "&#x27;"},
		{regexp.MustCompile(`&#0*34;`), "&#034;"},
		{regexp.MustCompile(`(?i)&#x0*22;`), "&#x22;"},
		{regexp.MustCompile(`&#0*60;`), "&#060;"},
		{regexp.MustCompile(`&#0*62;`), "&#062;"},
		{regexp.MustCompile(`&#0*38;`), "&#038;"},
		{regexp.MustCompile(`(?i)&#x0*26;`), "&#x26;"},
	}
	wpSpecialcharsReplacer = strings.NewReplacer(
		"&#039;", "'", "&#x27;", "'",
		"&quot;", `"`, "&#034;", `"`, "&#x22;", `"`,
		"&lt;", "<", "&#060;", "<", "&gt;", ">", "&#062;", ">",
		"&amp;", "&", "&#038;", "&", "&#x26;", "&",
	)
)

// wpSpecialcharsDecode decodes s as wp_specialchars_decode(s, ENT_QUOTES).
func wpSpecialcharsDecode(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	for _, p := range wpSpecialcharsNumeric {
		s = p.re.ReplaceAllLiteralString(s, p.with)
	}
	return wpSpecialcharsReplacer.Replace(s)
}

// Payload shapes: only the fields read.

// wooInt is a WooCommerce integer id or count, from a JSON number or a
// string of digits; null is 0.
type wooInt int64

func (v *wooInt) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		*v = 0
		return nil
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
		if s == "" {
			*v = 0
			return nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("expected an integer, got %.40s", s)
	}
	*v = wooInt(n)
	return nil
}

// wooDecimal is a decimal amount, from a JSON string (WooCommerce's form)
// or number; null is "".
type wooDecimal string

func (d *wooDecimal) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*d = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*d = wooDecimal(strings.TrimSpace(s))
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New("expected a decimal amount")
		}
		*d = wooDecimal(n)
	}
	return nil
}

type wooMeta struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// text returns a string or number meta value, "" for anything else.
func (m wooMeta) text() string {
	v := bytes.TrimSpace(m.Value)
	if len(v) == 0 {
		return ""
	}
	switch {
	case v[0] == '"':
		var s string
		if json.Unmarshal(v, &s) == nil {
			return strings.TrimSpace(s)
		}
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		var n json.Number
		if json.Unmarshal(v, &n) == nil {
			return n.String()
		}
	}
	return ""
}

type wooOrder struct {
	ID              wooInt     `json:"id"`
	Status          string     `json:"status"`
	Currency        string     `json:"currency"`
	DateModifiedGMT *string    `json:"date_modified_gmt"`
	DatePaidGMT     *string    `json:"date_paid_gmt"`
	Total           wooDecimal `json:"total"`
	TotalTax        wooDecimal `json:"total_tax"`
	CustomerID      wooInt     `json:"customer_id"`
	Billing         *struct {
		Email string `json:"email"`
	} `json:"billing"`
	MetaData  []wooMeta `json:"meta_data"`
	LineItems []struct {
		ProductID   wooInt      `json:"product_id"`
		VariationID wooInt      `json:"variation_id"`
		Quantity    json.Number `json:"quantity"`
		Total       wooDecimal  `json:"total"`
	} `json:"line_items"`
	CouponLines []struct {
		Code string `json:"code"`
	} `json:"coupon_lines"`
	Refunds []struct {
		ID    wooInt     `json:"id"`
		Total wooDecimal `json:"total"`
	} `json:"refunds"`
}

// meta returns the first value of each meta key.
func (o *wooOrder) meta() map[string]string {
	out := map[string]string{}
	for _, m := range o.MetaData {
		if _, seen := out[m.Key]; !seen && m.Key != "" {
			out[m.Key] = m.text()
		}
	}
	return out
}

// wooReversalStatuses reverse a paid order as a whole.
var wooReversalStatuses = map[string]bool{"cancelled": true, "failed": true, "trash": true}

// Normalize turns an order state into a snapshot of the order with its
// payment and refunded total, when it has been paid.
func (w *WooCommerce) Normalize(src *hub.Source, ev *hub.InboundEvent) (*hub.Normalized, error) {
	topic := ev.Headers[wooHeaderTopic]
	if topic == "" {
		topic = ev.EventType
	}
	n := &hub.Normalized{Livemode: src.Option("sandbox") != "true"}
	switch topic {
	case "order.created", "order.updated", "order.restored", "order.deleted":
	default:
		n.Ignored = fmt.Sprintf("topic %.60q is not read", topic)
		return n, nil
	}
	var o wooOrder
	if err := json.Unmarshal(ev.Body, &o); err != nil {
		return nil, wooUnparsable(topic, err)
	}
	if o.ID <= 0 {
		return nil, wooUnparsable(topic, errors.New("no order id"))
	}
	id := strconv.FormatInt(int64(o.ID), 10)
	n.Subject = id
	if topic == "order.deleted" && o.Status == "" && o.Currency == "" && o.DateModifiedGMT == nil {
		n.Ignored = "order moved to the trash: WooCommerce sends only its id; reconciliation reads the trashed order"
		return n, nil
	}
	cust := wooCustomer(&o)
	n.CustomerRef = cust.ProviderCustomerID
	status := strings.ToLower(strings.TrimSpace(o.Status))
	paidAt, err := wooTime(o.DatePaidGMT)
	if err != nil {
		return nil, wooUnparsable(topic, fmt.Errorf("date_paid_gmt: %w", err))
	}
	if paidAt.IsZero() {
		n.Ignored = fmt.Sprintf("order not paid (status %.40q)", status)
		return n, nil
	}
	at, err := wooTime(o.DateModifiedGMT)
	if err != nil || at.IsZero() {
		return nil, wooUnparsable(topic, errors.New("no valid date_modified_gmt"))
	}
	p, facts, err := w.orderState(src, &o, id, status, at)
	if err != nil {
		return nil, wooUnparsable(topic, err)
	}
	p.Customer, p.OccurredAt = cust, paidAt
	n.Payment = p
	n.Snapshot = &hub.Snapshot{Keys: []string{id}, At: at, Refunds: facts}
	return n, nil
}

// orderState reads a paid order's money: its payment, and what is
// refunded as of at.
func (w *WooCommerce) orderState(src *hub.Source, o *wooOrder, id, status string, at time.Time) (*hub.Payment, []hub.RefundFact, error) {
	m, err := newWooMoney(o.Currency)
	if err != nil {
		return nil, nil, err
	}
	gross := m.minor(m.fine("total", o.Total, false))
	tax := m.minor(m.fine("total_tax", o.TotalTax, true))
	var baseFine int64
	lines := make([]hub.LineItem, 0, len(o.LineItems))
	for i, li := range o.LineItems {
		f := m.fine(fmt.Sprintf("line_items[%d].total", i), li.Total, false)
		baseFine = m.add(baseFine, f)
		line := hub.LineItem{Quantity: wooQuantity(li.Quantity), AmountMinor: m.minor(f)}
		if li.ProductID > 0 {
			line.ProductID = strconv.FormatInt(int64(li.ProductID), 10)
		}
		if li.VariationID > 0 {
			line.PriceID = strconv.FormatInt(int64(li.VariationID), 10)
		}
		lines = append(lines, line)
	}
	base := m.minor(baseFine)
	var refundedFine int64
	seen := map[int64]bool{}
	for i, r := range o.Refunds {
		if r.ID <= 0 {
			return nil, nil, fmt.Errorf("refunds[%d] has no id", i)
		}
		f := m.fine(fmt.Sprintf("refunds[%d].total", i), r.Total, false)
		if f < 0 {
			f = -f // WooCommerce lists refunds as negative amounts
		}
		if !seen[int64(r.ID)] {
			seen[int64(r.ID)] = true
			refundedFine = m.add(refundedFine, f)
		}
	}
	if m.err != nil {
		return nil, nil, m.err
	}
	if base < 0 || gross < 0 || tax < 0 {
		return nil, nil, errors.New("negative total, tax or commission base")
	}
	// One running total per order: what its refunds add up to, or the whole
	// order when its status reverses it.
	refunded := m.minor(refundedFine)
	if wooReversalStatuses[status] || (status == "refunded" && len(o.Refunds) == 0) {
		refunded = gross
	}
	var facts []hub.RefundFact
	if refunded > 0 {
		facts = append(facts, hub.RefundFact{
			Keys: []string{id}, ExternalID: id, Cumulative: true, AmountMinor: refunded,
			Currency: m.currency, Status: hub.RefundSucceeded, OccurredAt: at,
		})
	}
	meta := o.meta()
	p := &hub.Payment{
		Keys:       []string{id},
		Kind:       hub.KindNew,
		BaseMinor:  base,
		GrossMinor: gross,
		TaxMinor:   tax,
		Currency:   m.currency,
		Lines:      lines,
		Hints:      wooHints(src, o, meta),
	}
	if sub := meta["_subscription_renewal"]; sub != "" {
		p.Kind, p.SubscriptionID = hub.KindRenewal, sub
	}
	return p, facts, nil
}

func wooUnparsable(topic string, err error) error {
	return fmt.Errorf("reading woocommerce %.60s: %v: %w", topic, err, hub.ErrUnparsable)
}

// wooTime reads a REST date: "2006-01-02T15:04:05" in GMT for the *_gmt
// fields (RFC 3339 is accepted too). Null and "" are the zero time.
func wooTime(s *string) (time.Time, error) {
	if s == nil || strings.TrimSpace(*s) == "" {
		return time.Time{}, nil
	}
	v := strings.TrimSpace(*s)
	if t, err := time.Parse(wooTimeLayout, v); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid date %.40q", v)
	}
	return t.UTC(), nil
}

// wooQuantity reads a line's quantity; quantities that are not whole
// numbers (plugins allow them) are 0, unknown.
func wooQuantity(q json.Number) int64 {
	n, err := strconv.ParseInt(q.String(), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// wooCustomer is the order's customer: the WordPress user id, or for guests
// "email:" and the billing email's hash, which is the lifetime key.
func wooCustomer(o *wooOrder) hub.Customer {
	var c hub.Customer
	if o.Billing != nil {
		c.EmailHash = emailHash(o.Billing.Email)
	}
	switch {
	case o.CustomerID > 0:
		c.ProviderCustomerID = strconv.FormatInt(int64(o.CustomerID), 10)
	case c.EmailHash != "":
		c.ProviderCustomerID = "email:" + c.EmailHash
	}
	return c
}

func wooHints(src *hub.Source, o *wooOrder, meta map[string]string) hub.Hints {
	var hb hintBuilder
	for _, k := range wooOptionList(src, "hint_keys", wooDefaultHintKeys) {
		hb.add(meta[k])
	}
	if entry := meta["_wc_order_attribution_session_entry"]; entry != "" {
		if u, err := url.Parse(entry); err == nil {
			q := u.Query()
			for _, k := range wooOptionList(src, "landing_params", wooDefaultLandingParams) {
				hb.add(q.Get(k))
			}
		}
	}
	for _, c := range o.CouponLines {
		hb.addPromo(strings.TrimSpace(c.Code))
	}
	return hb.h
}

func wooOptionList(src *hub.Source, name string, def []string) []string {
	o := src.Option(name)
	if strings.TrimSpace(o) == "" {
		return def
	}
	var out []string
	for _, k := range strings.Split(o, ",") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}

// Money.

// wooSubDigits is how many decimals beyond the currency's ISO 4217
// exponent amounts are read with, exactly, before rounding to the minor
// unit.
const (
	wooSubDigits = 4
	wooSubScale  = 10_000
)

// wooMoney reads one order's decimal strings in fine units (minor units
// × wooSubScale). The first failure is kept in err.
type wooMoney struct {
	currency string
	exp      int
	err      error
}

func newWooMoney(currency string) (*wooMoney, error) {
	c := strings.ToUpper(strings.TrimSpace(currency))
	exp, ok := hub.Exponent(c)
	if !ok {
		return nil, fmt.Errorf("unknown currency %.10q", currency)
	}
	return &wooMoney{currency: c, exp: exp}, nil
}

// fine parses s ("12.50", "-3", "1000.000"); "" is 0 when optional.
func (m *wooMoney) fine(field string, s wooDecimal, optional bool) int64 {
	if s == "" && optional {
		return 0
	}
	v, err := parseFine(string(s), m.exp+wooSubDigits)
	if err != nil {
		m.fail(fmt.Errorf("%s %.40q: %v", field, string(s), err))
		return 0
	}
	return v
}

// minor rounds fine units to minor units, half away from zero.
func (m *wooMoney) minor(fine int64) int64 {
	return hub.MulDivRound(fine, 1, wooSubScale)
}

func (m *wooMoney) add(a, b int64) int64 {
	s := a + b
	if (s > a) != (b > 0) {
		m.fail(errors.New("amounts out of range"))
		return 0
	}
	return s
}

func (m *wooMoney) fail(err error) {
	if m.err == nil {
		m.err = err
	}
}

// parseFine reads a decimal string as an integer count of 10^-digits
// units, exactly: an optional sign, digits, optionally a point and digits.
// Decimals beyond digits must be zeros.
func parseFine(s string, digits int) (int64, error) {
	rest, neg := s, false
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		neg, rest = rest[0] == '-', rest[1:]
	}
	intPart, frac, hasPoint := strings.Cut(rest, ".")
	if !hub.IsDigits(intPart) || (hasPoint && !hub.IsDigits(frac)) {
		return 0, errors.New("not a decimal number")
	}
	if len(frac) > digits {
		if strings.Trim(frac[digits:], "0") != "" {
			return 0, fmt.Errorf("more than %d decimal places", digits)
		}
		frac = frac[:digits]
	}
	all := strings.TrimLeft(intPart+frac+strings.Repeat("0", digits-len(frac)), "0")
	if all == "" {
		return 0, nil
	}
	if len(all) > 18 {
		return 0, errors.New("out of range")
	}
	v, err := strconv.ParseInt(all, 10, 64)
	if err != nil {
		return 0, errors.New("out of range")
	}
	if neg {
		v = -v
	}
	return v, nil
}

// Reconciliation.

// Reconcile lists the orders modified since cursor (RFC 3339, exclusive;
// "" for the first poll) and the store's webhooks.
func (w *WooCommerce) Reconcile(ctx context.Context, src *hub.Source, cursor string, now time.Time) (*hub.Reconciliation, error) {
	base, err := wooStoreURL(src.Option("store_url"))
	if err != nil {
		return nil, err
	}
	key, secret := strings.TrimSpace(src.Credentials["consumer_key"]), strings.TrimSpace(src.Credentials["consumer_secret"])
	if key == "" || secret == "" {
		return nil, errors.New("woocommerce source needs the credentials consumer_key and consumer_secret of a REST API key")
	}
	since := now.Add(-w.cfg.FirstWindow).UTC().Truncate(time.Second)
	if cursor != "" {
		if since, err = time.Parse(time.RFC3339, cursor); err != nil {
			return nil, fmt.Errorf("invalid woocommerce reconciliation cursor %.40q", cursor)
		}
		since = since.UTC()
	}
	c := &wooClient{w: w, base: base, key: key, secret: secret}
	res := &hub.Reconciliation{}
	// upTo is the newest modification time the cursor may move to: orders
	// modified later may not have been read.
	var newest time.Time
	upTo := time.Time{}
	limit := func(t time.Time) {
		if upTo.IsZero() || t.Before(upTo) {
			upTo = t
		}
	}
	for _, status := range []string{"", "trash"} {
		l, err := c.listOrders(ctx, since, status)
		if err != nil {
			return nil, err
		}
		for _, o := range l.orders {
			res.Events = append(res.Events, hub.ReconciledEvent{
				Receipt: hub.Receipt{DedupeKey: wooBodyHash(o.body), EventType: "order.updated", Headers: map[string]string{
					wooHeaderTopic: "order.updated", wooHeaderResource: "order", wooHeaderEvent: "updated", wooHeaderReconciled: "true",
				}},
				Body: o.body,
			})
			if o.modified.After(newest) {
				newest = o.modified
			}
		}
		if l.truncated {
			limit(l.newest)
		}
		if !l.shifted.IsZero() {
			limit(l.shifted)
		}
	}
	next := newest
	if !upTo.IsZero() && upTo.Before(next) {
		next = upTo
	}
	next = next.Add(-time.Second) // the bound is exclusive and to the second
	if next.Before(since) {
		next = since
	}
	res.Cursor = next.Format(time.RFC3339)
	res.Health = c.webhookHealth(ctx, src)
	return res, nil
}

// wooStoreURL checks the store_url option: an absolute http(s) URL without
// credentials, query or fragment.
func wooStoreURL(raw string) (*url.URL, error) {
	const msg = "woocommerce source needs the option store_url, the store's address (https://shop.example.com)"
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New(msg)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New(msg + ": it must be an http(s) address without credentials, query or fragment")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

type wooClient struct {
	w           *WooCommerce
	base        *url.URL
	key, secret string
}

type wooListedOrder struct {
	body     []byte
	modified time.Time
}

type wooListing struct {
	orders []wooListedOrder
	newest time.Time
	// truncated says pages were left unread (MaxPages).
	truncated bool
	// shifted, when set, is the first-seen modification time of an order
	// listed twice: it was modified while the pages were read, so the
	// orders after it moved up a page and one may have been skipped.
	shifted time.Time
}

// listOrders reads every page of orders modified after since, in status
// ("" for WooCommerce's default, every status but trash).
func (c *wooClient) listOrders(ctx context.Context, since time.Time, status string) (*wooListing, error) {
	l := &wooListing{}
	first := map[int64]time.Time{}
	for page, pages := 1, 1; page <= pages; page++ {
		if page > c.w.cfg.MaxPages {
			l.truncated = true
			break
		}
		q := url.Values{}
		q.Set("modified_after", since.UTC().Format(wooTimeLayout))
		q.Set("dates_are_gmt", "true")
		q.Set("per_page", strconv.Itoa(c.w.cfg.PageSize))
		q.Set("page", strconv.Itoa(page))
		q.Set("orderby", "modified")
		q.Set("order", "asc")
		if status != "" {
			q.Set("status", status)
		}
		var items []json.RawMessage
		h, err := c.get(ctx, "orders", q, &items)
		if err != nil {
			return nil, err
		}
		if tp := h.Get("X-WP-TotalPages"); tp != "" {
			n, err := strconv.Atoi(strings.TrimSpace(tp))
			if err != nil || n < 0 {
				return nil, fmt.Errorf("listing woocommerce orders: invalid X-WP-TotalPages header %.20q", tp)
			}
			pages = n
		}
		for _, raw := range items {
			var head struct {
				ID              wooInt  `json:"id"`
				DateModifiedGMT *string `json:"date_modified_gmt"`
			}
			if err := json.Unmarshal(raw, &head); err != nil || head.ID <= 0 {
				return nil, fmt.Errorf("listing woocommerce orders: page %d lists something that is not an order", page)
			}
			var body bytes.Buffer
			if err := json.Compact(&body, raw); err != nil {
				return nil, fmt.Errorf("listing woocommerce orders: page %d: %v", page, err)
			}
			mod, _ := wooTime(head.DateModifiedGMT)
			if t, dup := first[int64(head.ID)]; dup {
				if l.shifted.IsZero() || t.Before(l.shifted) {
					l.shifted = t
				}
			} else {
				first[int64(head.ID)] = mod
			}
			l.orders = append(l.orders, wooListedOrder{body: body.Bytes(), modified: mod})
			if mod.After(l.newest) {
				l.newest = mod
			}
		}
		if len(items) == 0 {
			break
		}
	}
	return l, nil
}

type wooWebhook struct {
	ID          wooInt `json:"id"`
	Status      string `json:"status"`
	Topic       string `json:"topic"`
	DeliveryURL string `json:"delivery_url"`
}

// webhookHealth reports the store's webhooks that should deliver to src
// and do not: those whose delivery URL is this source's /in address, or,
// when none is, every order.* webhook.
func (c *wooClient) webhookHealth(ctx context.Context, src *hub.Source) string {
	var hooks []wooWebhook
	for page, pages := 1, 1; page <= pages && page <= c.w.cfg.MaxPages; page++ {
		q := url.Values{}
		q.Set("per_page", strconv.Itoa(wooMaxPageSize))
		q.Set("page", strconv.Itoa(page))
		var items []wooWebhook
		h, err := c.get(ctx, "webhooks", q, &items)
		if err != nil {
			return "could not check the store's webhooks: " + err.Error()
		}
		hooks = append(hooks, items...)
		if n, err := strconv.Atoi(strings.TrimSpace(h.Get("X-WP-TotalPages"))); err == nil {
			pages = n
		}
		if len(items) == 0 {
			break
		}
	}
	var ours, orders []wooWebhook
	for _, wh := range hooks {
		if u, err := url.Parse(wh.DeliveryURL); err == nil && src.ID != "" && strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/in/"+src.ID) {
			ours = append(ours, wh)
		}
		if strings.HasPrefix(wh.Topic, "order.") {
			orders = append(orders, wh)
		}
	}
	if len(ours) == 0 {
		ours = orders
	}
	if len(ours) == 0 {
		return "no order webhook found in the store: add one in WooCommerce → Settings → Advanced → Webhooks"
	}
	sort.Slice(ours, func(i, j int) bool { return ours[i].ID < ours[j].ID })
	var bad []string
	for _, wh := range ours {
		if st := strings.ToLower(wh.Status); st == "disabled" || st == "paused" {
			bad = append(bad, fmt.Sprintf("webhook %d (%.40s) is %s", wh.ID, wh.Topic, st))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	it := "it"
	if len(bad) > 1 {
		it = "them"
	}
	return strings.Join(bad, "; ") + ": re-enable " + it + " in WooCommerce → Settings → Advanced → Webhooks"
}

// get calls GET /wp-json/wc/v3/<path>?<q> with the REST key, under the
// per-request timeout, and decodes the JSON answer into v. Errors name the
// request, never the credentials.
func (c *wooClient) get(ctx context.Context, path string, q url.Values, v any) (http.Header, error) {
	u := c.base.JoinPath("wp-json", "wc", "v3", path)
	u.RawQuery = q.Encode()
	what := "GET /wp-json/wc/v3/" + path
	if p := q.Get("page"); p != "" {
		what += " page " + p
	}
	ctx, cancel := context.WithTimeout(ctx, c.w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("woocommerce %s: %v", what, err)
	}
	req.SetBasicAuth(c.key, c.secret)
	req.Header.Set("Accept", "application/json")
	resp, err := c.w.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("woocommerce %s: %w", what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, wooMaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("woocommerce %s: reading the answer: %w", what, err)
	}
	if len(body) > wooMaxResponseBytes {
		return nil, fmt.Errorf("woocommerce %s: answer larger than %d bytes", what, wooMaxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("woocommerce %s: %s%s", what, resp.Status, wooErrorDetail(resp, body))
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("woocommerce %s: the answer is not the expected JSON (Content-Type %.60q): is store_url the WordPress address?", what, mt)
	}
	return resp.Header, nil
}

// wooErrorDetail explains a failed REST call: WooCommerce's error code and
// message, and what to check.
func wooErrorDetail(resp *http.Response, body []byte) string {
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	var parts []string
	if json.Unmarshal(body, &e) == nil && (e.Code != "" || e.Message != "") {
		parts = append(parts, fmt.Sprintf("%.80s: %.200s", e.Code, e.Message))
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		parts = append(parts, "check the source's consumer_key and consumer_secret and the key's Read permission"+
			" (WooCommerce accepts them over HTTPS only; some servers drop the Authorization header)")
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		parts = append(parts, fmt.Sprintf("redirected to %.200q: set store_url to the final address", resp.Header.Get("Location")))
	case resp.StatusCode == http.StatusNotFound:
		parts = append(parts, "is store_url the WordPress address, with pretty permalinks enabled?")
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(slices.Compact(parts), "; ") + ")"
}
