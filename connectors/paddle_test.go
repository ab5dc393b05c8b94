package connectors

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	paddle "github.com/PaddleHQ/paddle-go-sdk/v4"
	"github.com/PaddleHQ/paddle-go-sdk/v4/pkg/paddlenotification"
	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

const (
	paddleTestSecret     = "pdl_ntfset_01hsdn8d43dt7mezr1ef2jtbaw_partnerhubTestSecret0123456"
	paddleTestPrevSecret = "pdl_ntfset_01hr0000000000000000000000_partnerhubPreviousSecret98"
)

var paddleTestdata = filepath.Join("..", "testdata", "paddle")

func signPaddle(secret string, now time.Time, body []byte, h http.Header) {
	h.Set("Paddle-Signature", paddleSignatureHeader(secret, now.Unix(), body))
}

func paddleEventID(tb testing.TB, body []byte) string {
	tb.Helper()
	var e struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		tb.Fatal(err)
	}
	return e.EventID
}

func TestPaddleGolden(t *testing.T) {
	runGolden(t, goldenSuite{
		Dir:       paddleTestdata,
		Connector: NewPaddle(PaddleConfig{}),
		Secret:    paddleTestSecret,
		Sign:      signPaddle,
		DedupeKey: func(c connectorCase) string { return paddleEventID(t, c.Body) },
	})
}

func TestPaddleVerify(t *testing.T) {
	body := []byte(loadCase(t, filepath.Join(paddleTestdata, "transaction_completed_web_discount.json")).Body)
	now := testNow
	ts := now.Unix()
	tsText := strconv.FormatInt(ts, 10)
	mac := func(secret string, at int64, b []byte) string {
		return hex.EncodeToString(paddleMAC(secret, at, b))
	}
	valid := mac(paddleTestSecret, ts, body)
	at := func(delta time.Duration) string {
		return paddleSignatureHeader(paddleTestSecret, ts+int64(delta/time.Second), body)
	}
	src := &hub.Source{Provider: "paddle", Secret: paddleTestSecret}
	rotating := &hub.Source{Provider: "paddle", Secret: paddleTestSecret, PreviousSecret: paddleTestPrevSecret}

	tests := []struct {
		name     string
		src      *hub.Source
		noSource bool
		header   string // "" sends no header
		body     []byte
		conn     *Paddle
		wantErr  error
	}{
		{name: "valid", header: at(0)},
		{name: "spaces around parts", header: "ts=" + tsText + " ; h1=" + valid},
		{name: "uppercase hex", header: "ts=" + tsText + ";h1=" + strings.ToUpper(valid)},
		{name: "several h1 one valid", header: "ts=" + tsText + ";h1=" + mac("pdl_ntfset_other", ts, body) +
			";h1=nothex;h1=" + valid + ";h2=" + valid},
		{name: "signature first", header: "h1=" + valid + ";ts=" + tsText},
		{name: "unknown scheme only", header: "ts=" + tsText + ";h2=" + valid, wantErr: hub.ErrBadSignature},
		{name: "previous secret accepted", src: rotating, header: paddleSignatureHeader(paddleTestPrevSecret, ts, body)},
		{name: "current secret during rotation", src: rotating, header: at(0)},
		{name: "previous secret unknown to source", header: paddleSignatureHeader(paddleTestPrevSecret, ts, body), wantErr: hub.ErrBadSignature},
		{name: "wrong secret", header: paddleSignatureHeader("pdl_ntfset_wrong", ts, body), wantErr: hub.ErrBadSignature},
		{name: "tampered body", header: at(0), body: bytes.Replace(body, []byte(`"7560"`), []byte(`"9560"`), 1), wantErr: hub.ErrBadSignature},
		{name: "signature of another timestamp", header: "ts=" + tsText + ";h1=" + mac(paddleTestSecret, ts-1, body), wantErr: hub.ErrBadSignature},
		{name: "stripe scheme", header: "ts=" + tsText + ";h1=" + hex.EncodeToString(stripeMAC(paddleTestSecret, ts, body)), wantErr: hub.ErrBadSignature},
		{name: "at the 72 h bound", header: at(-72 * time.Hour)},
		{name: "retry a day later", header: at(-24 * time.Hour)},
		{name: "too old", header: at(-72*time.Hour - time.Second), wantErr: hub.ErrBadSignature},
		{name: "furthest future accepted", header: at(5 * time.Minute)},
		{name: "too far in the future", header: at(5*time.Minute + time.Second), wantErr: hub.ErrBadSignature},
		{name: "custom max age", conn: NewPaddle(PaddleConfig{MaxAge: time.Hour}), header: at(-time.Hour)},
		{name: "custom max age too old", conn: NewPaddle(PaddleConfig{MaxAge: time.Hour}), header: at(-time.Hour - time.Second), wantErr: hub.ErrBadSignature},
		{name: "custom max future", conn: NewPaddle(PaddleConfig{MaxFuture: 10 * time.Second}), header: at(11 * time.Second), wantErr: hub.ErrBadSignature},
		{name: "missing header", header: "", wantErr: hub.ErrBadSignature},
		{name: "malformed header", header: "garbage", wantErr: hub.ErrBadSignature},
		{name: "stripe-style separators", header: "ts=" + tsText + ",h1=" + valid, wantErr: hub.ErrBadSignature},
		{name: "no timestamp", header: "h1=" + valid, wantErr: hub.ErrBadSignature},
		{name: "timestamp not a number", header: "ts=12ab;h1=" + valid, wantErr: hub.ErrBadSignature},
		{name: "timestamp with leading zero", header: "ts=0" + tsText + ";h1=" + valid, wantErr: hub.ErrBadSignature},
		{name: "negative timestamp", header: "ts=-" + tsText + ";h1=" + valid, wantErr: hub.ErrBadSignature},
		{name: "huge timestamp", header: "ts=999999999999999999;h1=" + valid, wantErr: hub.ErrBadSignature},
		{name: "two timestamps", header: "ts=1;" + at(0), wantErr: hub.ErrBadSignature},
		{name: "pair without value", header: at(0) + ";h1", wantErr: hub.ErrBadSignature},
		{name: "no h1", header: "ts=" + tsText, wantErr: hub.ErrBadSignature},
		{name: "truncated h1", header: "ts=" + tsText + ";h1=" + valid[:62], wantErr: hub.ErrBadSignature},
		{name: "source without secret", src: &hub.Source{Provider: "paddle"}, header: paddleSignatureHeader("", ts, body), wantErr: hub.ErrBadSignature},
		{name: "nil source", noSource: true, header: at(0), wantErr: hub.ErrBadSignature},
		{name: "verified body not JSON", header: paddleSignatureHeader(paddleTestSecret, ts, []byte("not json")), body: []byte("not json"), wantErr: hub.ErrUnparsable},
		{name: "verified body without event_id", header: paddleSignatureHeader(paddleTestSecret, ts, []byte(`{"event_type":"transaction.paid"}`)),
			body: []byte(`{"event_type":"transaction.paid"}`), wantErr: hub.ErrUnparsable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.conn
			if p == nil {
				p = NewPaddle(PaddleConfig{})
			}
			source := tt.src
			if source == nil && !tt.noSource {
				source = src
			}
			b := tt.body
			if b == nil {
				b = body
			}
			h := http.Header{}
			if tt.header != "" {
				h.Set("Paddle-Signature", tt.header)
			}
			r, err := p.Verify(source, h, b, now)
			if tt.wantErr != nil {
				wantErrIs(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := hub.Receipt{DedupeKey: "evt_01hs2qf5g7j9l2n4q6s8u1w3y5", EventType: "transaction.completed"}
			if diff := cmp.Diff(want, r); diff != "" {
				t.Errorf("receipt (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPaddleConfigDefaults(t *testing.T) {
	tests := []struct {
		cfg               PaddleConfig
		maxAge, maxFuture int64
	}{
		{PaddleConfig{}, 72 * 3600, 300},
		{PaddleConfig{MaxAge: -time.Hour, MaxFuture: -time.Second}, 72 * 3600, 300},
		{PaddleConfig{MaxAge: 36 * time.Hour, MaxFuture: time.Minute}, 36 * 3600, 60},
		{PaddleConfig{MaxAge: time.Millisecond, MaxFuture: 1500 * time.Millisecond}, 1, 1},
	}
	for _, tt := range tests {
		p := NewPaddle(tt.cfg)
		if p.maxAge != tt.maxAge || p.maxFuture != tt.maxFuture {
			t.Errorf("NewPaddle(%+v) = max age %d s, max future %d s; want %d, %d", tt.cfg, p.maxAge, p.maxFuture, tt.maxAge, tt.maxFuture)
		}
	}
	if got := NewPaddle(PaddleConfig{}).Provider(); got != "paddle" {
		t.Errorf("Provider() = %q", got)
	}
}

func TestPaddleVerifyErrorsKeepSecretsOut(t *testing.T) {
	body := []byte(`{"event_id":"evt_secretbody","event_type":"x"}`)
	for _, header := range []string{
		paddleSignatureHeader("pdl_ntfset_wrong", testNow.Unix(), body),
		paddleSignatureHeader(paddleTestSecret, testNow.Unix()-73*3600, body),
		"ts=x;h1=" + paddleTestSecret,
	} {
		h := http.Header{}
		h.Set("Paddle-Signature", header)
		_, err := NewPaddle(PaddleConfig{}).Verify(&hub.Source{Secret: paddleTestSecret}, h, body, testNow)
		if err == nil {
			t.Fatal("want an error")
		}
		if msg := err.Error(); strings.Contains(msg, paddleTestSecret) || strings.Contains(msg, "evt_secretbody") {
			t.Errorf("error message leaks the secret or the body: %q", msg)
		}
	}
}

// The example triple of the paddle-go-sdk v4.1.0 tests and docs
// (webhook_verifier_test.go, example_webhook_verifier_test.go).
const (
	paddleSDKExampleSignature = `ts=1710929255;h1=6c05ef8fa83c44d751be6d259ec955ce5638e2c54095bf128e408e2fce1589c8`
	paddleSDKExamplePayload   = `{"data":{"id":"pri_01hsdn96k2hxjzsq5yerecdj9j","name":null,"status":"active","quantity":{"maximum":999999,"minimum":1},"tax_mode":"account_setting","product_id":"pro_01hsdn8qp7yydry3x1yeg6a9rv","unit_price":{"amount":"1000","currency_code":"USD"},"custom_data":null,"description":"testing","import_meta":null,"trial_period":null,"billing_cycle":{"interval":"month","frequency":1},"unit_price_overrides":[]},"event_id":"evt_01hsdn97563968dy0szkmgjwh3","event_type":"price.created","occurred_at":"2024-03-20T10:07:35.590857Z","notification_id":"ntf_01hsdn977e920kbgzt6r6c9rqc"}`
	paddleSDKExampleSecretKey = `pdl_ntfset_01hsdn8d43dt7mezr1ef2jtbaw_hKkRiCGyyRhbFwIUuqiTBgI7gnWoV0Gr`
)

// Cross-check with the official paddle-go-sdk v4: its verifier accepts
// what we sign, we accept its example, and its notification types read our
// fixtures the way we do.
func TestPaddleCrossCheckSDK(t *testing.T) {
	p := NewPaddle(PaddleConfig{})
	src := &hub.Source{Provider: "paddle", Secret: paddleTestSecret}

	t.Run("sdk example verifies with ours", func(t *testing.T) {
		ex := &hub.Source{Provider: "paddle", Secret: paddleSDKExampleSecretKey}
		h := http.Header{}
		h.Set("Paddle-Signature", paddleSDKExampleSignature)
		signedAt := time.Unix(1710929255, 0)
		for _, now := range []time.Time{signedAt, signedAt.Add(72 * time.Hour), signedAt.Add(-5 * time.Minute)} {
			r, err := p.Verify(ex, h, []byte(paddleSDKExamplePayload), now)
			if err != nil {
				t.Fatalf("Verify at %v: %v", now, err)
			}
			if r.DedupeKey != "evt_01hsdn97563968dy0szkmgjwh3" || r.EventType != "price.created" {
				t.Errorf("receipt = %+v", r)
			}
		}
		if _, err := p.Verify(ex, h, []byte(paddleSDKExamplePayload), signedAt.Add(72*time.Hour+time.Second)); !errors.Is(err, hub.ErrBadSignature) {
			t.Errorf("73 h later: err = %v, want bad signature", err)
		}
		if _, err := p.Verify(ex, h, []byte(`{}`), signedAt); !errors.Is(err, hub.ErrBadSignature) {
			t.Errorf("other payload: err = %v, want bad signature", err)
		}
		n, err := p.Normalize(ex, &hub.InboundEvent{Body: []byte(paddleSDKExamplePayload)})
		if err != nil || n.Ignored == "" {
			t.Errorf("Normalize of price.created = %+v, %v; want ignored", n, err)
		}
	})

	for _, c := range loadCases(t, paddleTestdata) {
		t.Run(c.Name, func(t *testing.T) {
			// Our signature, single h1, verifies with the SDK.
			for _, secret := range []string{paddleTestSecret, "pdl_ntfset_wrong"} {
				req := httptest.NewRequest(http.MethodPost, "/in/src_test", bytes.NewReader(c.Body))
				signPaddle(paddleTestSecret, time.Now(), c.Body, req.Header)
				ok, err := paddle.NewWebhookVerifier(secret, paddle.VerifierWithTimestampTolerance(5*time.Minute)).Verify(req)
				if err != nil || ok != (secret == paddleTestSecret) {
					t.Errorf("sdk Verify under %s secret = %v, %v", map[bool]string{true: "our", false: "another"}[secret == paddleTestSecret], ok, err)
				}
			}
			n, err := p.Normalize(src, &hub.InboundEvent{Body: c.Body})
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			crossCheckPaddleNotification(t, c.Body, n)
		})
	}
}

// crossCheckPaddleNotification decodes body with the SDK's notification
// types and compares what they read with our normalized facts.
func crossCheckPaddleNotification(t *testing.T, body []byte, n *hub.Normalized) {
	t.Helper()
	var head paddlenotification.GenericNotificationEvent
	if err := json.Unmarshal(body, &head); err != nil {
		t.Fatalf("sdk decoding: %v", err)
	}
	amount := func(s string) int64 {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("sdk amount %q: %v", s, err)
		}
		return v
	}
	switch head.EventType {
	case "transaction.completed", "transaction.paid":
		var ev paddlenotification.TransactionCompleted
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Fatalf("sdk decoding: %v", err)
		}
		d := ev.Data
		if n.Subject != d.ID || d.CustomerID == nil || n.CustomerRef != *d.CustomerID {
			t.Errorf("subject/customer %s/%s, sdk reads %s/%v", n.Subject, n.CustomerRef, d.ID, d.CustomerID)
		}
		tot := d.Details.Totals
		if n.Payment == nil {
			if amount(tot.GrandTotal) != 0 {
				t.Errorf("ignored (%s) a transaction of grand total %s", n.Ignored, tot.GrandTotal)
			}
			return
		}
		pay := n.Payment
		want := hub.Payment{
			Keys:       []string{d.ID},
			BaseMinor:  amount(tot.Subtotal) - amount(tot.Discount),
			GrossMinor: amount(tot.GrandTotal),
			TaxMinor:   amount(tot.Tax),
			Currency:   string(d.CurrencyCode),
		}
		got := hub.Payment{Keys: pay.Keys, BaseMinor: pay.BaseMinor, GrossMinor: pay.GrossMinor, TaxMinor: pay.TaxMinor, Currency: pay.Currency}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("payment differs from the sdk's reading (-sdk +ours):\n%s", diff)
		}
		if d.SubscriptionID != nil && pay.SubscriptionID != *d.SubscriptionID {
			t.Errorf("subscription %q, sdk reads %q", pay.SubscriptionID, *d.SubscriptionID)
		}
		if d.DiscountID != nil && (len(pay.Hints.PromoCodes) == 0 || pay.Hints.PromoCodes[0] != *d.DiscountID) {
			t.Errorf("promo codes %v, sdk reads discount %q", pay.Hints.PromoCodes, *d.DiscountID)
		}
		if len(pay.Lines) != len(d.Details.LineItems) {
			t.Fatalf("%d lines, sdk reads %d", len(pay.Lines), len(d.Details.LineItems))
		}
		var sum int64
		for i, l := range d.Details.LineItems {
			want := hub.LineItem{ProductID: l.Product.ID, PriceID: l.PriceID, Quantity: int64(l.Quantity),
				AmountMinor: amount(l.Totals.Subtotal) - amount(l.Totals.Discount)}
			if diff := cmp.Diff(want, pay.Lines[i]); diff != "" {
				t.Errorf("line %d (-sdk +ours):\n%s", i, diff)
			}
			sum += want.AmountMinor
		}
		if sum != pay.BaseMinor {
			t.Errorf("lines sum to %d, base is %d", sum, pay.BaseMinor)
		}
	case "adjustment.created", "adjustment.updated":
		var ev paddlenotification.AdjustmentUpdated
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Fatalf("sdk decoding: %v", err)
		}
		d := ev.Data
		if n.Subject != d.TransactionID || n.CustomerRef != d.CustomerID {
			t.Errorf("subject/customer %s/%s, sdk reads %s/%s", n.Subject, n.CustomerRef, d.TransactionID, d.CustomerID)
		}
		total, subtotal := amount(d.Totals.Total), amount(d.Totals.Subtotal)
		if total != subtotal+amount(d.Totals.Tax) {
			t.Errorf("fixture totals do not add up: %+v", d.Totals)
		}
		switch {
		case n.Refund != nil:
			r := n.Refund
			sign := int64(1)
			if d.Action == paddlenotification.AdjustmentActionCreditReverse {
				sign = -1
			}
			if r.ExternalID != d.ID || r.AmountMinor != sign*total || r.Currency != string(d.CurrencyCode) ||
				len(r.Keys) != 1 || r.Keys[0] != d.TransactionID {
				t.Errorf("refund %+v, sdk reads %s %s %s of %s", r, d.ID, d.Totals.Total, d.CurrencyCode, d.TransactionID)
			}
			full := d.Type != nil && *d.Type == paddlenotification.AdjustmentTypeFull
			if full != (r.BaseMinor == nil) || (!full && *r.BaseMinor != sign*subtotal) {
				t.Errorf("refund base %v for a %v adjustment of subtotal %d", r.BaseMinor, d.Type, subtotal)
			}
		case n.Dispute != nil:
			if n.Dispute.AmountMinor != total || n.Dispute.Keys[0] != d.TransactionID || n.Dispute.Reason != string(d.Action) {
				t.Errorf("dispute %+v, sdk reads %s %s of %s", n.Dispute, d.Action, d.Totals.Total, d.TransactionID)
			}
		default:
			t.Errorf("adjustment %s %s ignored: %s", d.Action, d.Status, n.Ignored)
		}
	}
}

func paddleEventJSON(typ, data string) []byte {
	return []byte(`{"event_id":"evt_01hw9z0000000000000000test","event_type":"` + typ +
		`","occurred_at":"2024-04-30T10:00:00.000000Z","notification_id":"ntf_01hw9z0000000000000000test","data":` + data + `}`)
}

// paddleTxn returns a transaction with the given totals and extra fields.
func paddleTxn(totals, extra string) string {
	s := `{"id":"txn_01hw9z00000000000000000001","status":"completed","origin":"web","currency_code":"USD",` +
		`"customer_id":"ctm_01hw9z00000000000000000001","details":{"totals":` + totals + `}`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

// paddleTxnLines returns a transaction whose details carry lines.
func paddleTxnLines(lines string) string {
	return strings.Replace(paddleTxn(paddleUSDTotals, ""), `"details":{`, `"details":{"line_items":`+lines+`,`, 1)
}

const paddleUSDTotals = `{"subtotal":"1000","discount":"100","tax":"180","total":"1080","grand_total":"1080"}`

func paddleAdj(action, status, extra string) string {
	s := `{"id":"adj_01hw9z00000000000000000001","action":"` + action + `","status":"` + status + `",` +
		`"transaction_id":"txn_01hw9z00000000000000000001","customer_id":"ctm_01hw9z00000000000000000001","currency_code":"USD",` +
		`"totals":{"subtotal":"500","tax":"100","total":"600","currency_code":"USD"}`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func TestPaddleNormalizeUnparsable(t *testing.T) {
	tests := []struct {
		name string
		body []byte
	}{
		{"not JSON", []byte("<html>")},
		{"empty", nil},
		{"event without event_id", []byte(`{"event_type":"transaction.completed","data":{}}`)},
		{"event without event_type", []byte(`{"event_id":"evt_1","data":{}}`)},
		{"data an array", paddleEventJSON("transaction.completed", `[]`)},
		{"data null", paddleEventJSON("adjustment.created", `null`)},
		{"transaction without id", paddleEventJSON("transaction.completed", `{"status":"completed","currency_code":"USD","details":{"totals":`+paddleUSDTotals+`}}`)},
		{"transaction without totals", paddleEventJSON("transaction.completed", paddleTxn(`null`, ""))},
		{"totals without subtotal", paddleEventJSON("transaction.completed", paddleTxn(`{"tax":"0","total":"100"}`, ""))},
		{"totals without any total", paddleEventJSON("transaction.paid", paddleTxn(`{"subtotal":"100","tax":"0"}`, ""))},
		{"amount as number", paddleEventJSON("transaction.completed", paddleTxn(`{"subtotal":1000,"discount":"0","tax":"0","total":"1000"}`, ""))},
		{"amount with decimals", paddleEventJSON("transaction.completed", paddleTxn(`{"subtotal":"10.00","discount":"0","tax":"0","total":"1000"}`, ""))},
		{"amount with exponent", paddleEventJSON("transaction.completed", paddleTxn(`{"subtotal":"1e3","discount":"0","tax":"0","total":"1000"}`, ""))},
		{"amount too long", paddleEventJSON("transaction.completed", paddleTxn(`{"subtotal":"9223372036854775807","discount":"0","tax":"0","total":"1000"}`, ""))},
		{"line amount malformed", paddleEventJSON("transaction.completed", paddleTxnLines(`[{"quantity":1,"totals":{"subtotal":5}}]`))},
		{"line quantity fractional", paddleEventJSON("transaction.completed", paddleTxnLines(`[{"quantity":1.5}]`))},
		{"line items not a list", paddleEventJSON("transaction.completed", paddleTxnLines(`{}`))},
		{"unknown currency", paddleEventJSON("transaction.completed", strings.Replace(paddleTxn(paddleUSDTotals, ""), `"USD"`, `"XYZ"`, 1))},
		{"missing currency", paddleEventJSON("transaction.completed", strings.Replace(paddleTxn(paddleUSDTotals, ""), `"USD"`, `""`, 1))},
		{"negative base", paddleEventJSON("transaction.completed", paddleTxn(`{"subtotal":"100","discount":"200","tax":"0","total":"100","grand_total":"100"}`, ""))},
		{"no occurred_at", bytes.Replace(paddleEventJSON("transaction.completed", paddleTxn(paddleUSDTotals, "")), []byte(`"2024-04-30T10:00:00.000000Z"`), []byte(`"yesterday"`), 1)},
		{"subscription_id a number", paddleEventJSON("transaction.completed", paddleTxn(paddleUSDTotals, `"subscription_id":7`))},
		{"adjustment without id", paddleEventJSON("adjustment.created", strings.Replace(paddleAdj("refund", "approved", ""), `"id":"adj_01hw9z00000000000000000001",`, "", 1))},
		{"adjustment without transaction", paddleEventJSON("adjustment.created", strings.Replace(paddleAdj("refund", "approved", ""), `"transaction_id":"txn_01hw9z00000000000000000001",`, "", 1))},
		{"adjustment without totals", paddleEventJSON("adjustment.created", strings.Replace(paddleAdj("refund", "approved", ""), `"totals":{"subtotal":"500","tax":"100","total":"600","currency_code":"USD"}`, `"totals":null`, 1))},
		{"adjustment unknown action", paddleEventJSON("adjustment.created", paddleAdj("teleport", "approved", ""))},
		{"adjustment unknown status", paddleEventJSON("adjustment.updated", paddleAdj("refund", "pending", ""))},
		{"adjustment negative total", paddleEventJSON("adjustment.created", strings.Replace(paddleAdj("refund", "approved", ""), `"total":"600"`, `"total":"-600"`, 1))},
		{"chargeback negative total", paddleEventJSON("adjustment.created", strings.Replace(paddleAdj("chargeback", "approved", ""), `"total":"600"`, `"total":"-600"`, 1))},
	}
	p := NewPaddle(PaddleConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := p.Normalize(&hub.Source{}, &hub.InboundEvent{Body: tt.body})
			if n != nil {
				t.Errorf("got a result with the error: %+v", n)
			}
			wantErrIs(t, err, hub.ErrUnparsable)
		})
	}
	if _, err := p.Normalize(&hub.Source{}, nil); !errors.Is(err, hub.ErrUnparsable) {
		t.Errorf("nil event: err = %v", err)
	}
}

func TestPaddleTransactions(t *testing.T) {
	tests := []struct {
		name        string
		body        []byte
		options     map[string]string
		wantIgnored string
		want        *hub.Payment
		livemode    bool
	}{
		{
			name: "minimal", livemode: true,
			body: paddleEventJSON("transaction.completed", paddleTxn(paddleUSDTotals, "")),
			want: &hub.Payment{Keys: []string{"txn_01hw9z00000000000000000001"}, Kind: hub.KindNew,
				Customer:  hub.Customer{ProviderCustomerID: "ctm_01hw9z00000000000000000001"},
				BaseMinor: 900, GrossMinor: 1080, TaxMinor: 180, Currency: "USD",
				OccurredAt: time.Date(2024, 4, 30, 10, 0, 0, 0, time.UTC)},
		},
		{
			name: "sandbox source", options: map[string]string{"sandbox": "true"},
			body: paddleEventJSON("transaction.completed", paddleTxn(paddleUSDTotals, "")),
			want: &hub.Payment{Keys: []string{"txn_01hw9z00000000000000000001"}, Kind: hub.KindNew,
				Customer:  hub.Customer{ProviderCustomerID: "ctm_01hw9z00000000000000000001"},
				BaseMinor: 900, GrossMinor: 1080, TaxMinor: 180, Currency: "USD",
				OccurredAt: time.Date(2024, 4, 30, 10, 0, 0, 0, time.UTC)},
		},
		{
			// A customer's credit balance paid part: gross is what was
			// charged, the base stays the merchandise after discounts.
			name: "credit balance applied", livemode: true,
			body: paddleEventJSON("transaction.completed", strings.Replace(paddleTxn(
				`{"subtotal":"1000","discount":"0","tax":"200","total":"1200","credit":"500","grand_total":"700"}`, ""), `"currency_code":"USD"`, `"currency_code":"eur"`, 1)),
			want: &hub.Payment{Keys: []string{"txn_01hw9z00000000000000000001"}, Kind: hub.KindNew,
				Customer:  hub.Customer{ProviderCustomerID: "ctm_01hw9z00000000000000000001"},
				BaseMinor: 1000, GrossMinor: 700, TaxMinor: 200, Currency: "EUR",
				OccurredAt: time.Date(2024, 4, 30, 10, 0, 0, 0, time.UTC)},
		},
		{
			name: "total without grand_total", livemode: true,
			body: paddleEventJSON("transaction.paid", paddleTxn(`{"subtotal":"1000","discount":"0","tax":"0","total":"1000"}`, `"status":"paid"`)),
			want: &hub.Payment{Keys: []string{"txn_01hw9z00000000000000000001"}, Kind: hub.KindNew,
				Customer:  hub.Customer{ProviderCustomerID: "ctm_01hw9z00000000000000000001"},
				BaseMinor: 1000, GrossMinor: 1000, Currency: "USD",
				OccurredAt: time.Date(2024, 4, 30, 10, 0, 0, 0, time.UTC)},
		},
		{
			name: "occurred_at missing, updated_at used", livemode: true,
			body: bytes.Replace(paddleEventJSON("transaction.completed", paddleTxn(paddleUSDTotals, `"updated_at":"2024-04-29T08:00:00.5Z"`)),
				[]byte(`"occurred_at":"2024-04-30T10:00:00.000000Z",`), nil, 1),
			want: &hub.Payment{Keys: []string{"txn_01hw9z00000000000000000001"}, Kind: hub.KindNew,
				Customer:  hub.Customer{ProviderCustomerID: "ctm_01hw9z00000000000000000001"},
				BaseMinor: 900, GrossMinor: 1080, TaxMinor: 180, Currency: "USD",
				OccurredAt: time.Date(2024, 4, 29, 8, 0, 0, 5e8, time.UTC)},
		},
		{
			name:        "payment method change",
			body:        paddleEventJSON("transaction.completed", paddleTxn(paddleUSDTotals, `"origin":"subscription_payment_method_change"`)),
			wantIgnored: "payment method change",
		},
		{
			name:        "downgrade credit",
			body:        paddleEventJSON("transaction.completed", paddleTxn(`{"subtotal":"-500","discount":"0","tax":"-100","total":"-600","grand_total":"-600"}`, "")),
			wantIgnored: "negative total (credit to the customer's balance)",
		},
		{
			name:        "not paid",
			body:        paddleEventJSON("transaction.completed", paddleTxn(paddleUSDTotals, `"status":"past_due"`)),
			wantIgnored: "transaction status past_due",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewPaddle(PaddleConfig{}).Normalize(&hub.Source{Options: tt.options}, &hub.InboundEvent{Body: tt.body})
			if err != nil {
				t.Fatal(err)
			}
			checkNormalized(t, n)
			if n.Ignored != tt.wantIgnored {
				t.Errorf("Ignored = %q, want %q", n.Ignored, tt.wantIgnored)
			}
			if tt.want == nil {
				if n.Subject != "txn_01hw9z00000000000000000001" || n.CustomerRef != "ctm_01hw9z00000000000000000001" {
					t.Errorf("ignored transaction: subject %q, customer %q", n.Subject, n.CustomerRef)
				}
				return
			}
			if n.Livemode != tt.livemode {
				t.Errorf("Livemode = %v, want %v", n.Livemode, tt.livemode)
			}
			if diff := cmp.Diff(tt.want, n.Payment); diff != "" {
				t.Errorf("payment (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPaddleKinds(t *testing.T) {
	for origin, want := range map[string]string{
		"web":                    hub.KindNew,
		"api":                    hub.KindNew,
		"subscription_charge":    hub.KindNew,
		"subscription_recurring": "", // renewal, or new after a trial: the hub decides
		"subscription_update":    "",
		"some_future_origin":     "",
	} {
		body := paddleEventJSON("transaction.completed", paddleTxn(paddleUSDTotals, `"origin":"`+origin+`","subscription_id":"sub_01hw9z00000000000000000001"`))
		n, err := NewPaddle(PaddleConfig{}).Normalize(&hub.Source{}, &hub.InboundEvent{Body: body})
		if err != nil {
			t.Fatalf("%s: %v", origin, err)
		}
		if n.Payment.Kind != want || n.Payment.SubscriptionID != "sub_01hw9z00000000000000000001" {
			t.Errorf("origin %s: kind %q, subscription %q; want kind %q", origin, n.Payment.Kind, n.Payment.SubscriptionID, want)
		}
	}
}

func TestPaddleHints(t *testing.T) {
	txn := func(custom, extra string) []byte {
		e := `"custom_data":` + custom
		if extra != "" {
			e += "," + extra
		}
		return paddleEventJSON("transaction.completed", paddleTxn(paddleUSDTotals, e))
	}
	tests := []struct {
		name    string
		body    []byte
		options map[string]string
		want    hub.Hints
	}{
		{
			name: "default keys in order",
			body: txn(`{"ref":"clk_3","partner":" PARTNER2 ","partnerhub_click":"clk_1"}`, ""),
			want: hub.Hints{ClickID: "clk_1", PartnerCode: "PARTNER2"},
		},
		{
			name: "discount id and code",
			body: txn(`{"partner":"acme"}`, `"discount_id":"dsc_01hw9z00000000000000000001","discount":{"id":"dsc_01hw9z00000000000000000001","code":"SPRING24"}`),
			want: hub.Hints{PartnerCode: "acme", PromoCodes: []string{"dsc_01hw9z00000000000000000001", "SPRING24"}},
		},
		{
			name:    "configured keys",
			body:    txn(`{"partner":"IGNORED","affiliate":"AFF7","click":"clk_9"}`, ""),
			options: map[string]string{"hint_keys": "click, affiliate"},
			want:    hub.Hints{ClickID: "clk_9", PartnerCode: "AFF7"},
		},
		{
			name: "numeric code kept as written, objects skipped",
			body: txn(`{"partnerhub_click":{"id":"clk_1"},"partner":true,"ref":1042}`, ""),
			want: hub.Hints{PartnerCode: "1042"},
		},
		{
			name: "custom_data not an object",
			body: txn(`["partner","acme"]`, ""),
			want: hub.Hints{},
		},
		{
			name: "custom_data null",
			body: txn(`null`, ""),
			want: hub.Hints{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewPaddle(PaddleConfig{}).Normalize(&hub.Source{Options: tt.options}, &hub.InboundEvent{Body: tt.body})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, n.Payment.Hints); diff != "" {
				t.Errorf("hints (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPaddleAdjustments(t *testing.T) {
	type fact struct {
		kind     string // refund, dispute, ignored
		status   string
		external string
		amount   int64
		base     *int64
	}
	b := func(v int64) *int64 { return &v }
	const txn = "txn_01hw9z00000000000000000001"
	const adj = "adj_01hw9z00000000000000000001"
	tests := []struct {
		action, status, extra string
		want                  fact
	}{
		{"refund", "pending_approval", "", fact{"refund", hub.RefundAwaiting, adj, 600, b(500)}},
		{"refund", "approved", "", fact{"refund", hub.RefundSucceeded, adj, 600, b(500)}},
		{"refund", "rejected", "", fact{"refund", hub.RefundCanceled, adj, 600, b(500)}},
		{"refund", "reversed", "", fact{"refund", hub.RefundReversed, adj, 600, b(500)}},
		{"refund", "approved", `"type":"partial"`, fact{"refund", hub.RefundSucceeded, adj, 600, b(500)}},
		{"refund", "approved", `"type":null`, fact{"refund", hub.RefundSucceeded, adj, 600, b(500)}},
		{"refund", "approved", `"type":"full"`, fact{"refund", hub.RefundSucceeded, adj, 600, nil}},
		{"credit", "approved", `"credit_applied_to_balance":true`, fact{"refund", hub.RefundSucceeded, adj, 600, b(500)}},
		{"credit_reverse", "approved", "", fact{"refund", hub.RefundSucceeded, adj, -600, b(-500)}},
		{"credit_reverse", "reversed", "", fact{"refund", hub.RefundReversed, adj, -600, b(-500)}},
		{"chargeback", "approved", "", fact{"dispute", hub.DisputeWithdrawn, "chargeback:" + txn, 600, nil}},
		{"chargeback", "pending_approval", "", fact{"dispute", hub.DisputeInquiry, "chargeback:" + txn, 600, nil}},
		{"chargeback", "rejected", "", fact{"dispute", hub.DisputeInquiry, "chargeback:" + txn, 600, nil}},
		{"chargeback", "reversed", "", fact{"dispute", hub.DisputeReinstated, "chargeback:" + txn, 600, nil}},
		{"chargeback_reverse", "approved", "", fact{"dispute", hub.DisputeReinstated, "chargeback:" + txn, 600, nil}},
		{"chargeback_reverse", "reversed", "", fact{"dispute", hub.DisputeWithdrawn, "chargeback:" + txn, 600, nil}},
		{"chargeback_reverse", "pending_approval", "", fact{kind: "ignored"}},
		{"chargeback_reverse", "rejected", "", fact{kind: "ignored"}},
		{"chargeback_warning", "approved", "", fact{"dispute", hub.DisputeInquiry, "chargeback_warning:" + txn, 600, nil}},
		{"chargeback_warning_reverse", "approved", "", fact{"dispute", hub.DisputeInquiry, "chargeback_warning:" + txn, 600, nil}},
	}
	at := time.Date(2024, 4, 30, 10, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		name := tt.action + "_" + tt.status
		if tt.extra != "" {
			name += "_" + tt.extra
		}
		t.Run(name, func(t *testing.T) {
			body := paddleEventJSON("adjustment.updated", paddleAdj(tt.action, tt.status, tt.extra))
			n, err := NewPaddle(PaddleConfig{}).Normalize(&hub.Source{}, &hub.InboundEvent{Body: body})
			if err != nil {
				t.Fatal(err)
			}
			checkNormalized(t, n)
			if n.Subject != txn || n.CustomerRef != "ctm_01hw9z00000000000000000001" {
				t.Errorf("subject %q, customer %q", n.Subject, n.CustomerRef)
			}
			var got fact
			switch {
			case n.Refund != nil:
				r := n.Refund
				got = fact{"refund", r.Status, r.ExternalID, r.AmountMinor, r.BaseMinor}
				if r.Currency != "USD" || !r.OccurredAt.Equal(at) || len(r.Keys) != 1 || r.Keys[0] != txn {
					t.Errorf("refund %+v", r)
				}
			case n.Dispute != nil:
				d := n.Dispute
				got = fact{"dispute", d.Status, d.ExternalID, d.AmountMinor, nil}
				if d.Currency != "USD" || !d.OccurredAt.Equal(at) || len(d.Keys) != 1 || d.Keys[0] != txn || d.Reason != tt.action {
					t.Errorf("dispute %+v", d)
				}
			default:
				got = fact{kind: "ignored"}
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(fact{})); diff != "" {
				t.Errorf("fact (-want +got):\n%s", diff)
			}
		})
	}
}

// A reversal whose totals Paddle would send negative reads the same as one
// with positive totals.
func TestPaddleReversalSign(t *testing.T) {
	for _, action := range []string{"credit_reverse", "chargeback_reverse"} {
		pos := paddleEventJSON("adjustment.created", paddleAdj(action, "approved", ""))
		neg := strings.NewReplacer(`"500"`, `"-500"`, `"100"`, `"-100"`, `"600"`, `"-600"`).Replace(string(pos))
		p := NewPaddle(PaddleConfig{})
		a, err1 := p.Normalize(&hub.Source{}, &hub.InboundEvent{Body: pos})
		b, err2 := p.Normalize(&hub.Source{}, &hub.InboundEvent{Body: []byte(neg)})
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v, %v", action, err1, err2)
		}
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("%s: signs read differently (-positive +negative):\n%s", action, diff)
		}
	}
}

func TestPaddleIgnoredRefs(t *testing.T) {
	tests := []struct {
		body              []byte
		subject, customer string
	}{
		{paddleEventJSON("customer.updated", `{"id":"ctm_01hw9z00000000000000000009","email":"x"}`), "", "ctm_01hw9z00000000000000000009"},
		{paddleEventJSON("transaction.created", `{"id":"txn_01hw9z00000000000000000009","customer_id":null}`), "txn_01hw9z00000000000000000009", ""},
		{paddleEventJSON("subscription.activated", `{"id":"sub_1","transaction_id":"txn_9","customer_id":"ctm_9"}`), "txn_9", "ctm_9"},
		{paddleEventJSON("payout.paid", `{"id":7}`), "", ""},
		{paddleEventJSON("price.updated", `"not an object"`), "", ""},
	}
	for _, tt := range tests {
		n, err := NewPaddle(PaddleConfig{}).Normalize(&hub.Source{}, &hub.InboundEvent{Body: tt.body})
		if err != nil {
			t.Fatal(err)
		}
		if n.Ignored == "" || n.Subject != tt.subject || n.CustomerRef != tt.customer {
			t.Errorf("%s: %+v; want ignored with subject %q, customer %q", tt.body, n, tt.subject, tt.customer)
		}
	}
}

var paddleFuzzHeaderTS = regexp.MustCompile(`ts\s*=\s*([0-9]+)`)

func FuzzPaddleVerify(f *testing.F) {
	for _, c := range loadCases(f, paddleTestdata) {
		f.Add(paddleSignatureHeader(paddleTestSecret, testNow.Unix(), c.Body), []byte(c.Body))
	}
	f.Add(paddleSDKExampleSignature, []byte(paddleSDKExamplePayload))
	f.Add("", []byte{})
	f.Add("ts=1714564800;h1=00;h2=zz;;=;ts", []byte(`{"event_id":1}`))
	p := NewPaddle(PaddleConfig{})
	src := &hub.Source{Provider: "paddle", Secret: paddleTestSecret, PreviousSecret: paddleTestPrevSecret}
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		h := http.Header{}
		h.Set("Paddle-Signature", header)
		r, err := p.Verify(src, h, body, testNow)
		if err != nil && !errors.Is(err, hub.ErrBadSignature) && !errors.Is(err, hub.ErrUnparsable) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if errors.Is(err, hub.ErrBadSignature) {
			return
		}
		// The signature passed: the header must carry a genuine h1 for a
		// timestamp inside the window.
		lower := strings.ToLower(h.Get("Paddle-Signature"))
		ok := false
		for _, m := range paddleFuzzHeaderTS.FindAllStringSubmatch(lower, -1) {
			ts, perr := strconv.ParseInt(m[1], 10, 64)
			if perr != nil || ts > testNow.Unix()+300 || ts < testNow.Unix()-72*3600 {
				continue
			}
			for _, secret := range []string{src.Secret, src.PreviousSecret} {
				if strings.Contains(lower, hex.EncodeToString(paddleMAC(secret, ts, body))) {
					ok = true
				}
			}
		}
		if !ok {
			t.Fatalf("accepted a header without a valid signature: %q", header)
		}
		if err == nil && r.DedupeKey == "" {
			t.Fatal("accepted without a dedupe key")
		}
	})
}

func FuzzPaddleNormalize(f *testing.F) {
	for _, c := range loadCases(f, paddleTestdata) {
		f.Add([]byte(c.Body))
	}
	f.Add(paddleEventJSON("transaction.completed", strings.Replace(paddleTxn(`{"subtotal":"999999999999999999","discount":"-999999999999999999","tax":"0","grand_total":"1"}`, ""),
		`"details":{`, `"details":{"line_items":[{"totals":{"subtotal":"-999999999999999999","discount":"999999999999999999"}}],`, 1)))
	f.Add(paddleEventJSON("adjustment.updated", paddleAdj("credit_reverse", "reversed", `"type":"full"`)))
	p := NewPaddle(PaddleConfig{})
	src := &hub.Source{Provider: "paddle", Options: map[string]string{"hint_keys": "a,,b"}}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := p.Normalize(src, &hub.InboundEvent{Body: body})
		if err != nil {
			if !errors.Is(err, hub.ErrUnparsable) {
				t.Fatalf("error does not wrap ErrUnparsable: %v", err)
			}
			return
		}
		checkNormalized(t, n)
		if pay := n.Payment; pay != nil && (pay.GrossMinor <= 0 || pay.BaseMinor < 0 || pay.TaxMinor < 0) {
			t.Fatalf("payment amounts out of range: %+v", pay)
		}
		if r := n.Refund; r != nil && r.ExternalID == "" {
			t.Fatalf("refund without external id: %+v", r)
		}
		if d := n.Dispute; d != nil && (d.AmountMinor < 0 || d.ExternalID == "") {
			t.Fatalf("dispute out of range: %+v", d)
		}
	})
}

type paddleNopQueue struct{}

func (paddleNopQueue) EnqueueProcess(context.Context, string) error { return nil }

func (paddleNopQueue) EnqueueDelivery(context.Context, string, int, time.Time) error { return nil }

// TestPaddleLedger runs signed fixtures through Verify, the hub's ingest
// and processing, in an awkward order (a refund approved before its sale, a
// late pending_approval, a duplicate), and checks the commission ledger to
// the minor unit at every step.
func TestPaddleLedger(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	prog, err := st.GetProgram(ctx, hub.DefaultProgramID)
	if err != nil {
		t.Fatal(err)
	}
	prog.DefaultCommissionBPS = 1000 // 10 %
	if err := st.UpdateProgram(ctx, prog); err != nil {
		t.Fatal(err)
	}
	partners := map[string]string{}
	for _, code := range []string{"jane", "tokyo-dev"} {
		pt := &hub.Partner{ID: hub.NewID("ptn"), ProgramID: hub.DefaultProgramID, Name: code, Code: code}
		if err := st.CreatePartner(ctx, pt); err != nil {
			t.Fatal(err)
		}
		partners[code] = pt.ID
	}
	src := &hub.Source{ID: hub.NewID("src"), ProgramID: hub.DefaultProgramID, Provider: "paddle", Name: "paddle", Secret: paddleTestSecret}
	if err := st.CreateSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	p := NewPaddle(PaddleConfig{})
	svc, err := hub.NewService(hub.ServiceConfig{
		Store: st, Queue: paddleNopQueue{},
		Normalizer: func(provider string) (hub.Normalizer, bool) { return p, provider == "paddle" },
		Now:        func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}

	deliver := func(name string) (duplicate bool) {
		t.Helper()
		c := loadCase(t, filepath.Join(paddleTestdata, name+".json"))
		h := c.Header()
		signPaddle(paddleTestSecret, testNow, c.Body, h)
		r, err := p.Verify(src, h, c.Body, testNow)
		if err != nil {
			t.Fatalf("%s: Verify: %v", name, err)
		}
		ev, dup, err := svc.Ingest(ctx, src, r, c.Body)
		if err != nil {
			t.Fatalf("%s: Ingest: %v", name, err)
		}
		if !dup {
			if err := svc.Process(ctx, ev.ID); err != nil {
				t.Fatalf("%s: Process: %v", name, err)
			}
		}
		return dup
	}
	conversions := func(key string) []*hub.Conversion {
		t.Helper()
		all, err := st.ListConversions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
		if err != nil {
			t.Fatal(err)
		}
		var out []*hub.Conversion
		for _, c := range all {
			for _, k := range c.Keys {
				if k == key {
					out = append(out, c)
					break
				}
			}
		}
		return out
	}
	type state struct {
		Partner  string
		Kind     string
		Currency string
		Base     int64
		Gross    int64
		Net      int64
	}
	check := func(step, key string, want state) {
		t.Helper()
		cs := conversions(key)
		if len(cs) != 1 {
			t.Fatalf("%s: %d conversions for %s, want 1", step, len(cs), key)
		}
		c := cs[0]
		got := state{Partner: c.PartnerID, Kind: c.Kind, Currency: c.Currency, Base: c.BaseMinor, Gross: c.GrossMinor}
		coms, err := st.ListCommissions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
		if err != nil {
			t.Fatalf("%s: commissions: %v", step, err)
		}
		found := 0
		for _, com := range coms {
			if com.ConversionID == c.ID {
				got.Net = com.NetMinor
				found++
			}
		}
		if found != 1 {
			t.Fatalf("%s: %d commissions for %s, want 1", step, found, key)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after %s (-want +got):\n%s", step, diff)
		}
	}
	const txnWeb, txnRenew, txnJPY = "txn_01hs2qd7e9g1j3l5n7q9s1u3w5", "txn_01hvbp4a6c8e1g3j5l7n9q2s4u", "txn_01hw0m2p4r6t8v1x3z5b7d9f2h"
	web := func(net int64) state {
		return state{Partner: partners["jane"], Kind: hub.KindNew, Currency: "USD", Base: 6300, Gross: 7560, Net: net}
	}

	// The approved refund arrives before its sale: parked, then joined.
	deliver("adjustment_updated_refund_approved")
	if cs := conversions(txnWeb); len(cs) != 0 {
		t.Fatalf("a refund created a conversion: %+v", cs[0])
	}
	deliver("transaction_paid")
	check("transaction.paid", txnWeb, web(630-180)) // 10 % of 6300, less 10 % of the 1800 refunded
	deliver("adjustment_created_refund_pending")    // older than approved: changes nothing
	check("late pending_approval", txnWeb, web(450))
	deliver("transaction_completed_web_discount")
	check("transaction.completed", txnWeb, web(450))
	if !deliver("transaction_completed_web_discount") {
		t.Error("a second delivery of the same event_id was not a duplicate")
	}
	deliver("adjustment_updated_refund_rejected")
	check("rejected refund", txnWeb, web(450))
	deliver("adjustment_created_chargeback_warning")
	check("chargeback warning", txnWeb, web(450))
	deliver("adjustment_created_chargeback")
	check("chargeback", txnWeb, web(0))
	deliver("adjustment_created_chargeback_reverse")
	check("chargeback reverse", txnWeb, web(450))
	deliver("adjustment_updated_refund_reversed")
	check("refund reversed", txnWeb, web(630))

	// The renewal: same customer, so the same partner; a renewal because
	// the subscription was paid before.
	deliver("transaction_completed_renewal")
	renew := state{Partner: partners["jane"], Kind: hub.KindRenewal, Currency: "USD", Base: 5000, Gross: 6000, Net: 500}
	check("renewal", txnRenew, renew)
	deliver("adjustment_created_refund_partial")
	renew.Net = 500 - 125 // base 1250 refunded
	check("partial refund", txnRenew, renew)

	// JPY: whole yen in, whole yen out.
	deliver("transaction_completed_jpy")
	jpy := state{Partner: partners["tokyo-dev"], Kind: hub.KindNew, Currency: "JPY", Base: 4500, Gross: 4950, Net: 450}
	check("JPY sale", txnJPY, jpy)
	deliver("adjustment_updated_refund_full_jpy")
	jpy.Net = 0
	check("JPY full refund", txnJPY, jpy)

	// A credit on a paid invoice, then Paddle reverses the credit.
	const txnInvoice = "txn_01hv7e3g5j7l9n2q4s6u8w1y3a"
	deliver("transaction_paid_invoice")
	invoice := state{Partner: partners["jane"], Kind: hub.KindNew, Currency: "EUR", Base: 30000, Gross: 36000, Net: 3000}
	check("invoice paid", txnInvoice, invoice)
	deliver("adjustment_created_credit")
	invoice.Net = 3000 - 1000 // base 10000 credited
	check("credit", txnInvoice, invoice)
	deliver("adjustment_created_credit_reverse")
	invoice.Net = 3000
	check("credit reversed", txnInvoice, invoice)

	// A trial start moves nothing.
	deliver("transaction_completed_trial_zero")
	if cs := conversions("txn_01hw5c7e9g2j4l6n8q1s3u5w7y"); len(cs) != 0 {
		t.Errorf("a zero-amount transaction created a conversion")
	}

	events, err := st.ListEvents(ctx, hub.DefaultProgramID, hub.Page{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	disputed := 0
	for _, e := range events {
		if e.Type == hub.EventConversionDisputed {
			disputed++
		}
	}
	if disputed != 3 { // warning, chargeback, its reversal
		t.Errorf("%d conversion.disputed events, want 3", disputed)
	}
}
