package connectors

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/partnerhub/partnerhub/hub"
)

const (
	stripeTestSecret     = "whsec_partnerhubTestSecret0123456789abcdef"
	stripeTestPrevSecret = "whsec_partnerhubPreviousSecret9876543210fe"
)

var stripeTestdata = filepath.Join("..", "testdata", "stripe")

func signStripe(secret string, now time.Time, body []byte, h http.Header) {
	h.Set("Stripe-Signature", stripeSignatureHeader(secret, now.Unix(), body))
}

func stripeEventID(tb testing.TB, body []byte) string {
	tb.Helper()
	var e struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		tb.Fatal(err)
	}
	return e.ID
}

func TestStripeGolden(t *testing.T) {
	runGolden(t, goldenSuite{
		Dir:       stripeTestdata,
		Connector: NewStripe(StripeConfig{}),
		Secret:    stripeTestSecret,
		Sign:      signStripe,
		DedupeKey: func(c connectorCase) string { return stripeEventID(t, c.Body) },
	})
}

func TestStripeRegistered(t *testing.T) {
	c, ok := Default().Get("stripe")
	if !ok {
		t.Fatal("stripe is not in the default registry")
	}
	if _, ok := c.(*Stripe); !ok || c.Provider() != "stripe" {
		t.Fatalf("registry holds %T named %q", c, c.Provider())
	}
}

func TestStripeVerify(t *testing.T) {
	body := loadCase(t, filepath.Join(stripeTestdata, "checkout_session_paid.json")).Body
	now := testNow
	ts := now.Unix()
	mac := func(secret string, at int64, b []byte) string {
		// The hex part of a header we produce.
		_, v1, _ := strings.Cut(stripeSignatureHeader(secret, at, b), ",v1=")
		return v1
	}
	valid := mac(stripeTestSecret, ts, body)
	at := func(delta int64) string {
		return stripeSignatureHeader(stripeTestSecret, ts+delta, body)
	}
	src := &hub.Source{Provider: "stripe", Secret: stripeTestSecret}
	rotating := &hub.Source{Provider: "stripe", Secret: stripeTestSecret, PreviousSecret: stripeTestPrevSecret}

	tests := []struct {
		name     string
		src      *hub.Source
		noSource bool
		header   string // "" sends no header
		body     []byte
		conn     *Stripe
		wantErr  error
	}{
		{name: "valid", header: at(0)},
		{name: "spaces after commas", header: "t=" + strconv.FormatInt(ts, 10) + ", v1=" + valid},
		{name: "several v1 one valid", header: "t=" + strconv.FormatInt(ts, 10) +
			",v1=" + mac("whsec_other", ts, body) + ",v1=nothex,v1=" + valid + ",v0=" + valid},
		{name: "uppercase hex", header: "t=" + strconv.FormatInt(ts, 10) + ",v1=" + strings.ToUpper(valid)},
		{name: "v0 only", header: "t=" + strconv.FormatInt(ts, 10) + ",v0=" + valid, wantErr: hub.ErrBadSignature},
		{name: "unknown scheme only", header: "t=" + strconv.FormatInt(ts, 10) + ",v2=" + valid, wantErr: hub.ErrBadSignature},
		{name: "previous secret accepted", src: rotating, header: stripeSignatureHeader(stripeTestPrevSecret, ts, body)},
		{name: "current secret during rotation", src: rotating, header: at(0)},
		{name: "previous secret unknown to source", header: stripeSignatureHeader(stripeTestPrevSecret, ts, body), wantErr: hub.ErrBadSignature},
		{name: "wrong secret", header: stripeSignatureHeader("whsec_wrong", ts, body), wantErr: hub.ErrBadSignature},
		{name: "tampered body", header: at(0), body: []byte(strings.Replace(string(body), "10200", "99999", 1)), wantErr: hub.ErrBadSignature},
		{name: "signature of another timestamp", header: "t=" + strconv.FormatInt(ts, 10) + ",v1=" + mac(stripeTestSecret, ts-1, body), wantErr: hub.ErrBadSignature},
		{name: "oldest accepted", header: at(-300)},
		{name: "too old", header: at(-301), wantErr: hub.ErrBadSignature},
		{name: "furthest future accepted", header: at(300)},
		{name: "too far in future", header: at(301), wantErr: hub.ErrBadSignature},
		{name: "custom tolerance", conn: NewStripe(StripeConfig{Tolerance: 10 * time.Second}), header: at(-10)},
		{name: "custom tolerance too old", conn: NewStripe(StripeConfig{Tolerance: 10 * time.Second}), header: at(-11), wantErr: hub.ErrBadSignature},
		{name: "missing header", header: "", wantErr: hub.ErrBadSignature},
		{name: "malformed header", header: "garbage", wantErr: hub.ErrBadSignature},
		{name: "no timestamp", header: "v1=" + valid, wantErr: hub.ErrBadSignature},
		{name: "timestamp not a number", header: "t=12ab,v1=" + valid, wantErr: hub.ErrBadSignature},
		{name: "timestamp with leading zero", header: "t=0" + strconv.FormatInt(ts, 10) + ",v1=" + valid, wantErr: hub.ErrBadSignature},
		{name: "negative timestamp", header: "t=-" + strconv.FormatInt(ts, 10) + ",v1=" + valid, wantErr: hub.ErrBadSignature},
		{name: "two timestamps", header: "t=1," + at(0), wantErr: hub.ErrBadSignature},
		{name: "pair without value", header: at(0) + ",v1", wantErr: hub.ErrBadSignature},
		{name: "no v1", header: "t=" + strconv.FormatInt(ts, 10), wantErr: hub.ErrBadSignature},
		{name: "source without secret", src: &hub.Source{Provider: "stripe"}, header: stripeSignatureHeader("", ts, body), wantErr: hub.ErrBadSignature},
		{name: "nil source", noSource: true, header: at(0), wantErr: hub.ErrBadSignature},
		{name: "verified body not JSON", header: stripeSignatureHeader(stripeTestSecret, ts, []byte("not json")), body: []byte("not json"), wantErr: hub.ErrUnparsable},
		{name: "verified body without id", header: stripeSignatureHeader(stripeTestSecret, ts, []byte(`{"type":"charge.refunded"}`)), body: []byte(`{"type":"charge.refunded"}`), wantErr: hub.ErrUnparsable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.conn
			if s == nil {
				s = NewStripe(StripeConfig{})
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
				h.Set("Stripe-Signature", tt.header)
			}
			r, err := s.Verify(source, h, b, now)
			if tt.wantErr != nil {
				wantErrIs(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := hub.Receipt{DedupeKey: "evt_1PBjUy2eZvKYlo2CQ2yb7Ztq", EventType: "checkout.session.completed"}
			if diff := cmp.Diff(want, r); diff != "" {
				t.Errorf("receipt (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStripeVerifyErrorsKeepSecretsOut(t *testing.T) {
	body := []byte(`{"id":"evt_1","type":"x"}`)
	h := http.Header{}
	h.Set("Stripe-Signature", stripeSignatureHeader("whsec_wrong", testNow.Unix(), body))
	_, err := NewStripe(StripeConfig{}).Verify(&hub.Source{Secret: stripeTestSecret}, h, body, testNow)
	if err == nil {
		t.Fatal("want an error")
	}
	if msg := err.Error(); strings.Contains(msg, stripeTestSecret) || strings.Contains(msg, "evt_1") {
		t.Errorf("error message leaks the secret or the body: %q", msg)
	}
}

// Cross-check with stripe-go v76, an independent implementation: its
// signatures verify with ours, and ours with it.
func TestStripeCrossCheckStripeGo(t *testing.T) {
	s := NewStripe(StripeConfig{})
	src := &hub.Source{Provider: "stripe", Secret: stripeTestSecret}
	for _, c := range loadCases(t, stripeTestdata) {
		t.Run(c.Name, func(t *testing.T) {
			signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
				Payload: c.Body, Secret: stripeTestSecret, Timestamp: testNow,
			})
			h := http.Header{}
			h.Set("Stripe-Signature", signed.Header)
			r, err := s.Verify(src, h, c.Body, testNow)
			if err != nil {
				t.Fatalf("our Verify of a stripe-go signature: %v", err)
			}

			v0 := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
				Payload: c.Body, Secret: stripeTestSecret, Timestamp: testNow, Scheme: "v0",
			})
			h.Set("Stripe-Signature", v0.Header)
			if _, err := s.Verify(src, h, c.Body, testNow); !errors.Is(err, hub.ErrBadSignature) {
				t.Errorf("v0-only header from stripe-go: err = %v, want bad signature", err)
			}

			// stripe-go checks the timestamp against its own clock.
			now := time.Now()
			header := stripeSignatureHeader(stripeTestSecret, now.Unix(), c.Body)
			ev, err := webhook.ConstructEventWithOptions(c.Body, header, stripeTestSecret,
				webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
			if err != nil {
				t.Fatalf("stripe-go rejects our signature: %v", err)
			}
			if ev.ID != r.DedupeKey || string(ev.Type) != r.EventType {
				t.Errorf("stripe-go reads %s %s, we read %s %s", ev.ID, ev.Type, r.DedupeKey, r.EventType)
			}
			if _, err := webhook.ConstructEventWithOptions(c.Body, header, "whsec_wrong",
				webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true}); err == nil {
				t.Error("stripe-go accepts our signature under another secret")
			}
		})
	}
}

// stripeEventType returns the type a body names, as Verify records it, or
// "" if it names none.
func stripeEventType(body []byte) string {
	var head struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(body, &head)
	return head.Type
}

func stripeEventJSON(typ, object string) []byte {
	return []byte(`{"id":"evt_test","object":"event","api_version":"2023-10-16","created":1714564000,` +
		`"livemode":true,"type":"` + typ + `","data":{"object":` + object + `}}`)
}

func TestStripeNormalizeUnparsable(t *testing.T) {
	paid := func(extra string) string {
		return `{"id":"cs_1","object":"checkout.session","mode":"payment","payment_status":"paid",` + extra + `}`
	}
	tests := []struct {
		name string
		body []byte
	}{
		{"not JSON", []byte("<html>")},
		{"empty", nil},
		{"event without id", []byte(`{"type":"invoice.paid","created":1,"data":{"object":{}}}`)},
		{"event without created", []byte(`{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1"}}}`)},
		{"data.object an array", stripeEventJSON("invoice.paid", `[]`)},
		{"data.object null", stripeEventJSON("invoice.paid", `null`)},
		{"data.object without id", stripeEventJSON("charge.refunded", `{"amount_refunded":100,"currency":"usd"}`)},
		{"amount as string", stripeEventJSON("checkout.session.completed", paid(`"amount_total":"1000","currency":"usd"`))},
		{"expandable id as number", stripeEventJSON("checkout.session.completed", paid(`"amount_total":1000,"currency":"usd","customer":42`))},
		{"metadata not strings", stripeEventJSON("checkout.session.completed", paid(`"amount_total":1000,"currency":"usd","metadata":{"partner":7}`))},
		{"paid session without amount", stripeEventJSON("checkout.session.completed", paid(`"currency":"usd"`))},
		{"paid session without currency", stripeEventJSON("checkout.session.completed", paid(`"amount_total":1000`))},
		{"invalid currency", stripeEventJSON("checkout.session.completed", paid(`"amount_total":1000,"currency":"u$d"`))},
		{"fractional ISK charged", stripeEventJSON("checkout.session.completed", paid(`"amount_total":1249050,"currency":"isk"`))},
		{"fractional UGX refunded", stripeEventJSON("charge.refunded", `{"id":"ch_1","amount_refunded":150,"currency":"ugx","payment_intent":"pi_1"}`)},
		{"negative amount", stripeEventJSON("refund.created", `{"id":"re_1","amount":-5,"currency":"usd","status":"succeeded","charge":"ch_1"}`)},
		{"base below zero", stripeEventJSON("checkout.session.completed", paid(`"amount_total":100,"currency":"usd","total_details":{"amount_tax":500,"amount_shipping":0}`))},
		{"unknown refund status", stripeEventJSON("refund.updated", `{"id":"re_1","amount":5,"currency":"usd","status":"teleported","charge":"ch_1"}`)},
		{"invoice lines not a list", stripeEventJSON("invoice.paid", `{"id":"in_1","amount_paid":100,"currency":"usd","lines":{"data":{}}}`)},
		{"dispute without payment", stripeEventJSON("charge.dispute.created", `{"id":"dp_1","amount":100,"currency":"usd","status":"needs_response"}`)},
		{"balance transaction malformed", stripeEventJSON("charge.dispute.updated", `{"id":"dp_1","amount":100,"currency":"usd","status":"under_review","charge":"ch_1","balance_transactions":[{"amount":"x"}]}`)},
		{"MGA amount overflows", stripeEventJSON("charge.refunded", `{"id":"ch_1","amount_refunded":9223372036854775807,"currency":"mga","payment_intent":"pi_1"}`)},
	}
	s := NewStripe(StripeConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The type recorded at receipt chooses the struct data.object
			// is read into; none, its own or another gives the same error.
			for _, recorded := range []string{"", stripeEventType(tt.body), "charge.refunded"} {
				n, err := s.Normalize(&hub.Source{}, &hub.InboundEvent{Body: tt.body, EventType: recorded})
				if n != nil {
					t.Errorf("recorded type %q: got a result with the error: %+v", recorded, n)
				}
				wantErrIs(t, err, hub.ErrUnparsable)
			}
		})
	}
	if _, err := s.Normalize(&hub.Source{}, nil); !errors.Is(err, hub.ErrUnparsable) {
		t.Errorf("nil event: err = %v", err)
	}
}

func TestStripeMoney(t *testing.T) {
	tests := []struct {
		currency string
		amount   int64
		exact    int64
		rounded  int64
		code     string
		exactErr bool
	}{
		{currency: "usd", amount: 1234, exact: 1234, rounded: 1234, code: "USD"},
		{currency: "JPY", amount: 500, exact: 500, rounded: 500, code: "JPY"},
		{currency: "kwd", amount: 5120, exact: 5120, rounded: 5120, code: "KWD"},
		// HUF and TWD: two decimals in Stripe charges and in ISO 4217.
		{currency: "huf", amount: 104545, exact: 104545, rounded: 104545, code: "HUF"},
		{currency: "twd", amount: 80045, exact: 80045, rounded: 80045, code: "TWD"},
		// ISK and UGX: two decimals in Stripe, none in ISO 4217.
		{currency: "isk", amount: 50000, exact: 500, rounded: 500, code: "ISK"},
		{currency: "isk", amount: 50050, rounded: 501, code: "ISK", exactErr: true},
		{currency: "isk", amount: 50049, rounded: 500, code: "ISK", exactErr: true},
		{currency: "isk", amount: -50050, rounded: -501, code: "ISK", exactErr: true},
		{currency: "ugx", amount: 370000, exact: 3700, rounded: 3700, code: "UGX"},
		// MGA: zero-decimal in Stripe, two decimals in ISO 4217.
		{currency: "mga", amount: 5000, exact: 500000, rounded: 500000, code: "MGA"},
	}
	for _, tt := range tests {
		t.Run(tt.currency+"_"+strconv.FormatInt(tt.amount, 10), func(t *testing.T) {
			m := newStripeMoney(tt.currency)
			if got := m.rounded(tt.amount); got != tt.rounded || m.err != nil {
				t.Errorf("rounded(%d) = %d, %v; want %d", tt.amount, got, m.err, tt.rounded)
			}
			got := m.exact(tt.amount)
			if tt.exactErr {
				if m.err == nil {
					t.Errorf("exact(%d) = %d, want an error", tt.amount, got)
				}
			} else if got != tt.exact || m.err != nil {
				t.Errorf("exact(%d) = %d, %v; want %d", tt.amount, got, m.err, tt.exact)
			}
			if m.currency != tt.code {
				t.Errorf("currency = %q, want %q", m.currency, tt.code)
			}
		})
	}
	for _, bad := range []string{"", "us", "usdx", "u$d", "12e"} {
		if m := newStripeMoney(bad); m.err == nil {
			t.Errorf("currency %q accepted", bad)
		}
	}
}

func TestStripeHints(t *testing.T) {
	session := func(ref, metadata string) []byte {
		return stripeEventJSON("checkout.session.completed", `{"id":"cs_1","mode":"payment","payment_status":"paid",`+
			`"amount_total":1000,"currency":"usd","client_reference_id":`+ref+`,"metadata":`+metadata+`}`)
	}
	tests := []struct {
		name    string
		body    []byte
		options map[string]string
		want    hub.Hints
	}{
		{
			name: "client_reference_id first",
			body: session(`"PARTNER1"`, `{"partner":"PARTNER2","partnerhub_click":"clk_2"}`),
			want: hub.Hints{ClickID: "clk_2", PartnerCode: "PARTNER1"},
		},
		{
			name: "metadata key order",
			body: session(`null`, `{"ref":"clk_3","partner":" PARTNER2 ","partnerhub_click":"clk_1"}`),
			want: hub.Hints{ClickID: "clk_1", PartnerCode: "PARTNER2"},
		},
		{
			name:    "configured keys",
			body:    session(`null`, `{"partner":"IGNORED","affiliate":"AFF7","click":"clk_9"}`),
			options: map[string]string{"hint_keys": "click, affiliate"},
			want:    hub.Hints{ClickID: "clk_9", PartnerCode: "AFF7"},
		},
		{
			name: "nothing",
			body: session(`""`, `{}`),
			want: hub.Hints{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewStripe(StripeConfig{}).Normalize(&hub.Source{Options: tt.options}, &hub.InboundEvent{Body: tt.body})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, n.Payment.Hints); diff != "" {
				t.Errorf("hints (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStripeDisputeState(t *testing.T) {
	withdrawn := json.RawMessage(`{"id":"txn_1","amount":-1000}`)
	returned := json.RawMessage(`{"id":"txn_2","amount":1000}`)
	tests := []struct {
		status string
		bts    []json.RawMessage
		want   string
	}{
		{"warning_needs_response", nil, hub.DisputeInquiry},
		{"warning_under_review", nil, hub.DisputeInquiry},
		{"warning_closed", nil, hub.DisputeInquiry},
		{"won", []json.RawMessage{withdrawn, returned}, hub.DisputeReinstated},
		{"lost", []json.RawMessage{withdrawn}, hub.DisputeLost},
		{"needs_response", []json.RawMessage{withdrawn}, hub.DisputeWithdrawn},
		{"under_review", []json.RawMessage{withdrawn}, hub.DisputeWithdrawn},
		{"under_review", nil, hub.DisputeInquiry},
		{"under_review", []json.RawMessage{json.RawMessage(`"txn_1"`)}, hub.DisputeInquiry},
		{"prevented", []json.RawMessage{withdrawn, returned}, hub.DisputeReinstated},
	}
	for _, tt := range tests {
		got, err := stripeDisputeState(stripeDispute{Status: tt.status, BalanceTransactions: tt.bts})
		if err != nil || got != tt.want {
			t.Errorf("stripeDisputeState(%s, %d transactions) = %q, %v; want %q", tt.status, len(tt.bts), got, err, tt.want)
		}
	}
}

func FuzzStripeVerify(f *testing.F) {
	for _, c := range loadCases(f, stripeTestdata) {
		f.Add(stripeSignatureHeader(stripeTestSecret, testNow.Unix(), c.Body), []byte(c.Body))
	}
	f.Add("", []byte{})
	f.Add("t=1714564800,v1=00,v0=zz,,=,t", []byte(`{"id":1}`))
	s := NewStripe(StripeConfig{})
	src := &hub.Source{Provider: "stripe", Secret: stripeTestSecret, PreviousSecret: stripeTestPrevSecret}
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		h := http.Header{}
		h.Set("Stripe-Signature", header)
		r, err := s.Verify(src, h, body, testNow)
		if err != nil && !errors.Is(err, hub.ErrBadSignature) && !errors.Is(err, hub.ErrUnparsable) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if errors.Is(err, hub.ErrBadSignature) {
			return
		}
		// The signature passed: the header must carry a genuine v1.
		lower := strings.ToLower(header)
		ok := false
		for _, secret := range []string{src.Secret, src.PreviousSecret} {
			for d := -300; d <= 300 && !ok; d++ {
				ts := testNow.Unix() + int64(d)
				if strings.Contains(lower, "t="+strconv.FormatInt(ts, 10)) {
					_, v1, _ := strings.Cut(stripeSignatureHeader(secret, ts, body), ",v1=")
					ok = strings.Contains(lower, v1)
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

func FuzzStripeNormalize(f *testing.F) {
	for _, c := range loadCases(f, stripeTestdata) {
		f.Add([]byte(c.Body))
	}
	f.Add(stripeEventJSON("invoice.paid", `{"id":"in_1","amount_paid":1,"currency":"isk","lines":{"data":[{"amount":150}]}}`))
	f.Add(stripeEventJSON("charge.dispute.updated", `{"id":"dp_1","charge":{"id":"ch_1"},"currency":"mga","balance_transactions":["txn_1",{"amount":-1}]}`))
	s := NewStripe(StripeConfig{})
	src := &hub.Source{Provider: "stripe", Options: map[string]string{"payment_intent_succeeded": "true"}}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := s.Normalize(src, &hub.InboundEvent{Body: body})
		// Read with the type recorded at receipt, or a wrong one, the
		// event gives the same facts or the same error.
		for _, recorded := range []string{stripeEventType(body), "invoice.paid"} {
			n2, err2 := s.Normalize(src, &hub.InboundEvent{Body: body, EventType: recorded})
			if fmt.Sprint(err) != fmt.Sprint(err2) {
				t.Fatalf("recorded type %q: err = %v, without it %v", recorded, err2, err)
			}
			if diff := cmp.Diff(n, n2); diff != "" {
				t.Fatalf("recorded type %q: facts differ (-without +with):\n%s", recorded, diff)
			}
		}
		if err != nil {
			if !errors.Is(err, hub.ErrUnparsable) {
				t.Fatalf("error does not wrap ErrUnparsable: %v", err)
			}
			return
		}
		checkNormalized(t, n)
		if p := n.Payment; p != nil && (p.GrossMinor < 0 || p.BaseMinor < 0) {
			t.Fatalf("negative payment amounts: %+v", p)
		}
	})
}

func TestStripeEmailHash(t *testing.T) {
	sum := sha256.Sum256([]byte("jane.doe@example.com"))
	if got, want := emailHash("  Jane.Doe@Example.COM "), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("emailHash = %s, want %s", got, want)
	}
	if got := emailHash(" "); got != "" {
		t.Errorf("emailHash of no address = %q, want empty", got)
	}
	// Addresses never reach normalized output.
	goldens, err := filepath.Glob(filepath.Join(stripeTestdata, "*.golden.json"))
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, g := range goldens {
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "@") {
			t.Errorf("%s contains an email address", g)
		}
	}
}
