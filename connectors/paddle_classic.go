package connectors

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// Paddle Classic (legacy Paddle) webhook alerts.
//
// Body: application/x-www-form-urlencoded fields. Signature: the field
// p_signature is the base64 of an RSA PKCS#1 v1.5 SHA-1 signature, made
// with the vendor's private key, over PHP serialize() of the array of every
// other field, ksort()ed, every value a PHP string. The source's Secret
// holds the vendor's public key (PEM, from Developer Tools → Public Key);
// PreviousSecret may hold a previous key during a rotation. See
// paddleClassicSignedData for the byte-exact rules.
//
// Dedupe key: alert_id (Paddle retries an alert every 15 min for 3 days
// with the same alert_id). Event type: alert_name.
//
// Alerts read:
//
//	payment_succeeded               payment (new), keys order_id, checkout_id
//	subscription_payment_succeeded  payment, keys order_id, subscription_payment_id;
//	                                new when initial_payment is 1, else renewal
//	payment_refunded,               one refund; refund_type full, partial or vat
//	subscription_payment_refunded   (vat reverses no commission)
//	payment_dispute_created         dispute, funds withdrawn
//	payment_dispute_closed          dispute reinstated (Paddle fires it when it
//	                                won the chargeback: status "closed")
//
// Every other alert is ignored. Keys are namespaced ("order:…",
// "subscription_payment:…", "checkout:…") because Paddle's order and
// subscription payment ids are separate integer sequences that can collide.
//
// Money: major-unit decimal strings in the sale currency (currency), parsed
// exactly: gross sale_gross, tax payment_tax, commission base sale_gross −
// payment_tax (after coupons, before tax). A refund's base is gross_refund
// − tax_refund (0 for refund_type vat).
//
// Attribution hints: passthrough, either a plain value (a click id "clk_…"
// or a partner code; a single token without spaces) or a JSON object with
// the keys partnerhub_click, partner, ref (the source option hint_keys,
// comma separated, replaces the list); coupon as a promo code; user_id (on
// subscription alerts) as the lifetime customer key; the SHA-256 of email.
//
// Source options: hint_keys; sandbox ("true" for a source connected to
// sandbox-vendors.paddle.com: its conversions are test conversions, never
// paid). Paddle Classic alerts carry no test-mode marker of their own.

// PaddleClassicConfig configures the Paddle Classic connector. It has no
// settings yet: the zero value is ready to use.
type PaddleClassicConfig struct{}

// PaddleClassic verifies and normalizes Paddle Classic webhook alerts.
type PaddleClassic struct{}

var _ Connector = (*PaddleClassic)(nil)

// NewPaddleClassic returns the Paddle Classic connector.
func NewPaddleClassic(cfg PaddleClassicConfig) *PaddleClassic { return &PaddleClassic{} }

// Provider returns "paddle_classic".
func (p *PaddleClassic) Provider() string { return "paddle_classic" }

const (
	// paddleClassicMaxFields is PHP's default max_input_vars: PHP drops
	// the fields beyond it, so a PHP verifier could not check such a body.
	paddleClassicMaxFields = 1000
	paddleClassicSigField  = "p_signature"
	paddleClassicTimeFmt   = "2006-01-02 15:04:05"
)

// Verify checks the p_signature field of the form body under the source's
// public keys and returns alert_id and alert_name. The body is never
// logged nor quoted in errors.
func (p *PaddleClassic) Verify(src *hub.Source, h http.Header, body []byte, now time.Time) (hub.Receipt, error) {
	bad := func(reason string) (hub.Receipt, error) {
		return hub.Receipt{}, fmt.Errorf("verifying paddle classic signature: %s: %w", reason, hub.ErrBadSignature)
	}
	if src == nil || strings.TrimSpace(src.Secret) == "" {
		return bad("source has no public key")
	}
	fields, err := parsePaddleClassicForm(body)
	if err != nil {
		return bad(err.Error())
	}
	sigText, ok := fields.get(paddleClassicSigField)
	if !ok || sigText == "" {
		return bad("no p_signature field")
	}
	sig, err := decodePaddleClassicSignature(sigText)
	if err != nil {
		return bad("p_signature is not base64")
	}
	data, err := paddleClassicSignedData(fields)
	if err != nil {
		return bad(err.Error())
	}
	digest := sha1.Sum(data)
	usable := 0
	for _, secret := range []string{src.Secret, src.PreviousSecret} {
		if strings.TrimSpace(secret) == "" {
			continue
		}
		key, err := parsePaddleClassicPublicKey(secret)
		if err != nil {
			continue
		}
		usable++
		if rsa.VerifyPKCS1v15(key, crypto.SHA1, digest[:], sig) == nil {
			alertID, _ := fields.get("alert_id")
			if alertID == "" {
				return hub.Receipt{}, fmt.Errorf("reading paddle classic alert: no alert_id: %w", hub.ErrUnparsable)
			}
			name, _ := fields.get("alert_name")
			return hub.Receipt{DedupeKey: alertID, EventType: name}, nil
		}
	}
	if usable == 0 {
		return bad("the source's public key is not an RSA public key in PEM")
	}
	return bad("signature does not match")
}

func decodePaddleClassicSignature(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// parsePaddleClassicPublicKey reads an RSA public key: PEM "PUBLIC KEY"
// (as the Paddle dashboard shows it) or "RSA PUBLIC KEY", or the bare
// base64 of the former when a merchant pasted it without its header lines.
func parsePaddleClassicPublicKey(text string) (*rsa.PublicKey, error) {
	var der []byte
	if block, _ := pem.Decode([]byte(strings.TrimSpace(text))); block != nil {
		if block.Type == "RSA PUBLIC KEY" {
			return x509.ParsePKCS1PublicKey(block.Bytes)
		}
		der = block.Bytes
	} else {
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(text), ""))
		if err != nil {
			return nil, errors.New("not PEM")
		}
		der = b
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return rk, nil
}

// paddleClassicFields are the decoded fields of one alert, in body order,
// with unique names.
type paddleClassicFields []paddleClassicField

type paddleClassicField struct{ name, value string }

func (fs paddleClassicFields) get(name string) (string, bool) {
	for _, f := range fs {
		if f.name == name {
			return f.value, true
		}
	}
	return "", false
}

// value returns a field's value, "" when absent.
func (fs paddleClassicFields) value(name string) string {
	v, _ := fs.get(name)
	return v
}

// parsePaddleClassicForm decodes a form body the way PHP fills $_POST
// (fields separated by "&" only, "+" and valid %XX escapes decoded, other
// "%" kept as is, a field without "=" has an empty value, empty segments
// skipped), but refuses what PHP would have changed or dropped, since
// Paddle signs its own array and a PHP verifier sees $_POST: names with
// "[" (PHP makes arrays of them), names PHP rewrites (" " and "." become
// "_") or truncates (control bytes), empty names, repeated names (PHP keeps
// the last), and more than max_input_vars fields.
func parsePaddleClassicForm(body []byte) (paddleClassicFields, error) {
	var fs paddleClassicFields
	seen := make(map[string]struct{})
	for seg := range strings.SplitSeq(string(body), "&") {
		if seg == "" {
			continue
		}
		if len(fs) == paddleClassicMaxFields {
			return nil, fmt.Errorf("more than %d fields", paddleClassicMaxFields)
		}
		k, v, _ := strings.Cut(seg, "=")
		name, value := phpURLDecode(k), phpURLDecode(v)
		if err := checkPaddleClassicName(name); err != nil {
			return nil, err
		}
		if _, dup := seen[name]; dup {
			return nil, errors.New("a field name is repeated")
		}
		seen[name] = struct{}{}
		fs = append(fs, paddleClassicField{name: name, value: value})
	}
	if len(fs) == 0 {
		return nil, errors.New("empty form body")
	}
	return fs, nil
}

func checkPaddleClassicName(name string) error {
	if name == "" {
		return errors.New("a field has an empty name")
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '[' || c == ']':
			return errors.New("array-style field name")
		case c == ' ' || c == '.':
			return errors.New("field name PHP would rewrite")
		case c < 0x20 || c == 0x7f:
			return errors.New("control character in a field name")
		}
	}
	return nil
}

// phpURLDecode is PHP's urldecode(): "+" is a space, "%XX" with two hex
// digits a byte, and any other "%" is kept.
func phpURLDecode(s string) string {
	if !strings.ContainsAny(s, "+%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && phpIsHex(s[i+1]) && phpIsHex(s[i+2]):
			b = append(b, phpUnhex(s[i+1])<<4|phpUnhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func phpIsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func phpUnhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// phpKey is a PHP array key: a canonical decimal integer string is stored
// by PHP as an int, anything else as a string.
type phpKey struct {
	s     string
	isInt bool
	n     int64
}

func newPHPKey(s string) (phpKey, error) {
	if n, ok := phpIntKey(s); ok {
		return phpKey{s: s, isInt: true, n: n}, nil
	}
	if phpNumericString(s) {
		// "05", "-0", "1e3", "+1", 20-digit numbers: PHP keeps them as
		// strings but ksort compares them numerically with some keys and
		// as text with others; Paddle never sends such names.
		return phpKey{}, errors.New("numeric field name PHP would not store as an integer")
	}
	return phpKey{s: s}, nil
}

// phpIntKey reports whether PHP turns the array key s into an integer
// (ZEND_HANDLE_NUMERIC_STR): "0" or an optional "-" and digits without a
// leading zero, within the 64-bit range.
func phpIntKey(s string) (int64, bool) {
	d := strings.TrimPrefix(s, "-")
	if d == "" || !hub.IsDigits(d) || (d[0] == '0' && len(s) > 1) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// phpNumericString reports whether PHP's is_numeric_string accepts s,
// restricted to what a checked field name can hold (no spaces, dots or
// control bytes): a sign, digits and an exponent.
func phpNumericString(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	mant, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	if !hub.IsDigits(mant) {
		return false
	}
	if !hasExp {
		return true
	}
	if exp != "" && (exp[0] == '+' || exp[0] == '-') {
		exp = exp[1:]
	}
	return hub.IsDigits(exp)
}

// comparePHPKeys is ksort's SORT_REGULAR order in PHP 8.2 and later: two
// integers numerically, two non-numeric strings byte-wise
// (zendi_smart_strcmp), an integer and a non-numeric string as the
// integer's decimal text against the string, byte-wise (zend_compare).
// PHP 8.1 and older compared an integer with a non-numeric string as with
// 0; the two agree whenever no name is numeric, as in every Paddle alert.
func comparePHPKeys(a, b phpKey) int {
	if a.isInt && b.isInt {
		switch {
		case a.n < b.n:
			return -1
		case a.n > b.n:
			return 1
		}
		return 0
	}
	return strings.Compare(a.s, b.s)
}

// paddleClassicSignedData returns the bytes Paddle signs: PHP serialize()
// of the ksort()ed array of every field but p_signature, each value a PHP
// string:
//
//	a:<count>:{<key><value>…}
//	key    i:<int>;                          canonical integers (PHP int keys)
//	       s:<UTF-8 byte length>:"<name>";   any other name
//	value  s:<UTF-8 byte length>:"<value>";  empty values included
//
// Sorting mixes numeric and textual comparison when integer names are
// present; when that order is not a total order on the names (9, 10 and
// "1a" form a cycle) PHP's result depends on its sort algorithm, and the
// body is refused rather than guessed.
func paddleClassicSignedData(fs paddleClassicFields) ([]byte, error) {
	keys := make([]phpKey, 0, len(fs))
	values := make(map[string]string, len(fs))
	ints := 0
	for _, f := range fs {
		if f.name == paddleClassicSigField {
			continue
		}
		k, err := newPHPKey(f.name)
		if err != nil {
			return nil, err
		}
		if k.isInt {
			ints++
		}
		keys = append(keys, k)
		values[f.name] = f.value
	}
	slices.SortFunc(keys, comparePHPKeys)
	if ints > 1 {
		// Integers compare numerically among themselves and as text with
		// strings: check the order holds between every pair.
		for i := range keys {
			for j := i + 1; j < len(keys); j++ {
				if comparePHPKeys(keys[i], keys[j]) >= 0 {
					return nil, errors.New("numeric field names PHP cannot order consistently")
				}
			}
		}
	}
	var b strings.Builder
	b.WriteString("a:")
	b.WriteString(strconv.Itoa(len(keys)))
	b.WriteString(":{")
	for _, k := range keys {
		if k.isInt {
			b.WriteString("i:")
			b.WriteString(k.s)
			b.WriteByte(';')
		} else {
			writePHPString(&b, k.s)
		}
		writePHPString(&b, values[k.s])
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// writePHPString writes s:<byte length>:"<bytes>"; as PHP serialize()
// does: the length counts bytes, and nothing is escaped.
func writePHPString(b *strings.Builder, s string) {
	b.WriteString("s:")
	b.WriteString(strconv.Itoa(len(s)))
	b.WriteString(`:"`)
	b.WriteString(s)
	b.WriteString(`";`)
}

// Normalize turns a stored Paddle Classic alert into canonical facts.
func (p *PaddleClassic) Normalize(src *hub.Source, ev *hub.InboundEvent) (*hub.Normalized, error) {
	if ev == nil {
		return nil, fmt.Errorf("normalizing paddle classic alert: no event: %w", hub.ErrUnparsable)
	}
	fs, err := parsePaddleClassicForm(ev.Body)
	if err != nil {
		return nil, paddleClassicUnparsable("reading paddle classic alert", err)
	}
	name := fs.value("alert_name")
	if name == "" {
		return nil, fmt.Errorf("reading paddle classic alert: no alert_name: %w", hub.ErrUnparsable)
	}
	a := &paddleClassicAlert{name: name, f: fs}
	n := &hub.Normalized{Livemode: src.Option("sandbox") != "true", CustomerRef: fs.value("user_id")}
	if id := fs.value("order_id"); id != "" {
		n.Subject = paddleClassicOrderKey(id)
	}
	switch name {
	case "payment_succeeded", "subscription_payment_succeeded":
		err = a.payment(src, n)
	case "payment_refunded", "subscription_payment_refunded":
		err = a.refund(n)
	case "payment_dispute_created", "payment_dispute_closed":
		err = a.dispute(n)
	default:
		n.Ignored = "unsupported alert " + name
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}

func paddleClassicUnparsable(what string, err error) error {
	return fmt.Errorf("%s: %v: %w", what, err, hub.ErrUnparsable)
}

func paddleClassicOrderKey(id string) string { return "order:" + id }

// paddleClassicAlert reads one alert's fields; the first failure is kept.
type paddleClassicAlert struct {
	name string
	f    paddleClassicFields
	err  error
}

func (a *paddleClassicAlert) fail(format string, args ...any) {
	if a.err == nil {
		a.err = fmt.Errorf("reading %s alert: "+format+": %w", append(append([]any{a.name}, args...), hub.ErrUnparsable)...)
	}
}

// required returns a field that must be present and not empty.
func (a *paddleClassicAlert) required(name string) string {
	v := a.f.value(name)
	if v == "" {
		a.fail("no %s", name)
	}
	return v
}

func (a *paddleClassicAlert) occurredAt() time.Time {
	v := a.required("event_time")
	if v == "" {
		return time.Time{}
	}
	t, err := time.ParseInLocation(paddleClassicTimeFmt, v, time.UTC)
	if err != nil {
		a.fail("event_time is not %q", paddleClassicTimeFmt)
	}
	return t
}

func (a *paddleClassicAlert) currency() string {
	c := strings.ToUpper(a.required("currency"))
	if _, ok := hub.Exponent(c); c != "" && !ok {
		a.fail("unknown currency")
	}
	return c
}

// money parses a non-negative major-unit amount of currency; an absent
// optional field is 0.
func (a *paddleClassicAlert) money(name, currency string, optional bool) int64 {
	v := a.f.value(name)
	if v == "" {
		if !optional {
			a.fail("no %s", name)
		}
		return 0
	}
	if a.err != nil {
		return 0
	}
	m, err := hub.ParseDecimal(v, currency)
	if err != nil {
		a.fail("%s: %v", name, err)
		return 0
	}
	if m < 0 {
		a.fail("negative %s", name)
	}
	return m
}

func (a *paddleClassicAlert) payment(src *hub.Source, n *hub.Normalized) error {
	orderID := a.required("order_id")
	at := a.occurredAt()
	cur := a.currency()
	gross := a.money("sale_gross", cur, false)
	tax := a.money("payment_tax", cur, false)
	qty := int64(1)
	if q := a.f.value("quantity"); q != "" {
		v, err := strconv.ParseInt(q, 10, 64)
		if err != nil || v < 0 {
			a.fail("quantity is not a count")
		}
		qty = v
	}
	if a.err != nil {
		return a.err
	}
	if tax > gross {
		a.fail("payment_tax exceeds sale_gross")
		return a.err
	}
	if gross == 0 {
		n.Ignored = "zero amount"
		return nil
	}
	p := &hub.Payment{
		Kind: hub.KindNew,
		Customer: hub.Customer{
			ProviderCustomerID: a.f.value("user_id"),
			EmailHash:          emailHash(a.f.value("email")),
		},
		BaseMinor:  gross - tax,
		GrossMinor: gross,
		TaxMinor:   tax,
		Currency:   cur,
		OccurredAt: at,
	}
	line := hub.LineItem{Quantity: qty, AmountMinor: gross - tax}
	if a.name == "payment_succeeded" {
		p.Keys = compactKeys(paddleClassicOrderKey(orderID), paddleClassicID("checkout:", a.f.value("checkout_id")))
		line.ProductID = a.f.value("product_id")
	} else {
		p.Keys = compactKeys(paddleClassicOrderKey(orderID), paddleClassicID("subscription_payment:", a.f.value("subscription_payment_id")))
		p.SubscriptionID = a.f.value("subscription_id")
		line.ProductID = a.f.value("subscription_plan_id")
		switch a.f.value("initial_payment") {
		case "1", "true":
			p.Kind = hub.KindNew
		case "0", "false":
			p.Kind = hub.KindRenewal
		case "":
			p.Kind = "" // the hub decides from the subscription's history
		default:
			a.fail("initial_payment is not 0 or 1")
			return a.err
		}
	}
	if line.ProductID != "" {
		p.Lines = []hub.LineItem{line}
	}
	var hb hintBuilder
	hb.addPassthrough(src, a.f.value("passthrough"))
	hb.addPromo(strings.TrimSpace(a.f.value("coupon")))
	p.Hints = hb.h
	n.Payment = p
	return nil
}

// refund reads one refund alert. Classic refunds have no id of their own,
// and their alert_id changes if Paddle fires the refund under another
// alert, so the refund's id is built from what describes the refund itself:
// the order, the time Paddle refunded it (event_time, fixed across retries
// of an alert), the refund type and the amount. Retries and repeated
// alerts of one refund map to one id; two partial refunds of an order, even
// of equal amounts, differ by their time.
//
// The base is gross_refund − tax_refund for full and partial refunds (a
// full refund's split is the sale's own; once refunds reach the sale's
// gross the hub reverses the whole base whatever their split), nil when
// tax_refund is absent (the hub prorates), and 0 for a VAT-only refund.
func (a *paddleClassicAlert) refund(n *hub.Normalized) error {
	orderID := a.required("order_id")
	at := a.occurredAt()
	cur := a.currency()
	amountField := "gross_refund"
	if a.f.value(amountField) == "" {
		amountField = "amount" // "the amount refunded", same money
	}
	amount := a.money(amountField, cur, false)
	_, hasTax := a.f.get("tax_refund")
	tax := a.money("tax_refund", cur, true)
	typ := a.f.value("refund_type")
	if a.err != nil {
		return a.err
	}
	var base *int64
	switch typ {
	case "vat":
		zero := int64(0)
		base = &zero
	case "full", "partial":
		if hasTax {
			if tax > amount {
				a.fail("tax_refund exceeds the refund")
				return a.err
			}
			b := amount - tax
			base = &b
		}
	default:
		a.fail("unknown refund_type")
		return a.err
	}
	n.Refund = &hub.RefundFact{
		Keys: compactKeys(paddleClassicOrderKey(orderID), paddleClassicID("subscription_payment:", a.f.value("subscription_payment_id"))),
		ExternalID: "refund:" + orderID + ":" + strconv.FormatInt(at.Unix(), 10) + ":" + typ + ":" +
			strconv.FormatInt(amount, 10),
		AmountMinor: amount,
		BaseMinor:   base,
		Currency:    cur,
		Status:      hub.RefundSucceeded,
		OccurredAt:  at,
	}
	return nil
}

// dispute reads a chargeback alert. Paddle documents status "open" on
// payment_dispute_created and "closed" on payment_dispute_closed, which it
// fires only when it contested and won the chargeback; a lost chargeback
// fires nothing, so its funds stay withdrawn. "won" and "lost" are read too
// in case Paddle ever sends them. Created and closed share one id per
// order, so the newest state wins.
func (a *paddleClassicAlert) dispute(n *hub.Normalized) error {
	orderID := a.required("order_id")
	at := a.occurredAt()
	cur := a.currency()
	amount := a.money("amount", cur, false)
	if a.err != nil {
		return a.err
	}
	status := hub.DisputeWithdrawn
	if a.name == "payment_dispute_closed" {
		switch a.f.value("status") {
		case "closed", "won", "":
			status = hub.DisputeReinstated
		case "lost":
			status = hub.DisputeLost
		default:
			a.fail("unknown dispute status")
			return a.err
		}
	}
	n.Dispute = &hub.DisputeFact{
		Keys:        []string{paddleClassicOrderKey(orderID)},
		ExternalID:  "dispute:" + orderID,
		Status:      status,
		AmountMinor: amount,
		Currency:    cur,
		OccurredAt:  at,
	}
	return nil
}

func paddleClassicID(prefix, id string) string {
	if id == "" {
		return ""
	}
	return prefix + id
}

// paddleClassicMaxPlainHint bounds a plain passthrough value read as a
// click id or partner code.
const paddleClassicMaxPlainHint = 200

// addPassthrough reads Paddle's passthrough: a JSON object whose hint keys
// (see addMetadata) carry strings or numbers, or a single plain token (a
// click id or partner code). Anything else (free text, invalid JSON, JSON
// without the keys) gives no hint: passthrough belongs to the merchant's
// own integration too, and never fails the alert.
func (b *hintBuilder) addPassthrough(src *hub.Source, v string) {
	v = strings.TrimSpace(v)
	if v == "" {
		return
	}
	if v[0] == '{' {
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(v), &obj) != nil {
			return
		}
		md := make(map[string]string, len(obj))
		for k, raw := range obj {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				md[k] = s
				continue
			}
			var num json.Number
			if json.Unmarshal(raw, &num) == nil {
				md[k] = num.String()
			}
		}
		b.addMetadata(src, md)
		return
	}
	if len(v) > paddleClassicMaxPlainHint || strings.ContainsFunc(v, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r == '{' || r == '"'
	}) {
		return
	}
	b.add(v)
}
