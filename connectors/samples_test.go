package connectors

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	paddle "github.com/PaddleHQ/paddle-go-sdk/v4"
	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/partnerhub/partnerhub/hub"
)

// sampleSecrets are the signing secrets of the test sources, one per
// provider, as each provider formats them.
var sampleSecrets = map[string]string{
	"stripe":      "whsec_sample_0123456789abcdef",
	"shopify":     "shpss_sample_0123456789abcdef",
	"woocommerce": "wc sample secret with &amp; entity",
	"paddle":      "pdl_ntfset_01sample_0123456789abcdef",
}

func sampleSource(provider string, opts map[string]string) *hub.Source {
	return &hub.Source{ID: "src_sample", ProgramID: hub.DefaultProgramID, Provider: provider,
		Secret: sampleSecrets[provider], Options: opts}
}

// TestSampleEvents builds every test event in several currencies, checks
// that our connector verifies it and reads from it exactly the sale,
// refund or dispute asked for, with the partner code where the provider
// carries it.
func TestSampleEvents(t *testing.T) {
	reg := Default()
	for _, provider := range SampleProviders() {
		conn, ok := reg.Get(provider)
		if !ok {
			t.Fatalf("no connector for %s", provider)
		}
		for _, spec := range sampleCatalog[provider] {
			for _, c := range []struct {
				currency string
				amount   int64
			}{{"usd", 4900}, {"jpy", 4900}, {"kwd", 12345}, {"isk", 990}} {
				t.Run(provider+"/"+spec.event+"/"+c.currency, func(t *testing.T) {
					src := sampleSource(provider, nil)
					now := time.Now()
					s, err := NewSample(src, SampleRequest{Event: spec.event, PartnerCode: "ALICE", AmountMinor: c.amount, Currency: c.currency}, now)
					if err != nil {
						t.Fatal(err)
					}
					rc, err := conn.Verify(src, s.Header, s.Body, now)
					if err != nil {
						t.Fatalf("our %s connector rejects the test event: %v", provider, err)
					}
					if rc.DedupeKey == "" || rc.EventType != spec.event {
						t.Errorf("receipt %+v: want the event type %s and a dedupe key", rc, spec.event)
					}
					n, err := conn.Normalize(src, &hub.InboundEvent{Provider: provider, EventType: rc.EventType, Headers: rc.Headers, Body: s.Body})
					if err != nil {
						t.Fatalf("normalizing: %v", err)
					}
					checkSampleNormalized(t, spec, s, n, c.amount, strings.ToUpper(c.currency))
				})
			}
		}
	}
}

func checkSampleNormalized(t *testing.T, spec sampleSpec, s *Sample, n *hub.Normalized, amount int64, currency string) {
	t.Helper()
	if n.Ignored != "" {
		t.Fatalf("event ignored: %s", n.Ignored)
	}
	if n.Livemode != s.Livemode {
		t.Errorf("livemode %v, the sample says %v", n.Livemode, s.Livemode)
	}
	switch spec.kind {
	case samplePayment:
		p := n.Payment
		if p == nil {
			t.Fatalf("no payment in %+v", n)
		}
		if p.GrossMinor != amount || p.BaseMinor != amount || p.TaxMinor != 0 || p.Currency != currency {
			t.Errorf("payment gross %d base %d tax %d %s, want %d %d 0 %s", p.GrossMinor, p.BaseMinor, p.TaxMinor, p.Currency, amount, amount, currency)
		}
		if !slices.Contains(p.Keys, s.PaymentID) {
			t.Errorf("payment keys %v do not name the payment id %s", p.Keys, s.PaymentID)
		}
		if p.Hints.PartnerCode != "ALICE" {
			t.Errorf("partner code %q, want ALICE", p.Hints.PartnerCode)
		}
		if p.Customer.EmailHash != hub.EmailHash(SampleDefaultEmail) && p.Customer.ProviderCustomerID == "" {
			t.Errorf("no customer in %+v", p.Customer)
		}
	case sampleRefund:
		var r *hub.RefundFact
		switch {
		case n.Refund != nil:
			r = n.Refund
		case n.Snapshot != nil && len(n.Snapshot.Refunds) == 1:
			r = &n.Snapshot.Refunds[0]
		default:
			t.Fatalf("no refund in %+v", n)
		}
		if r.AmountMinor != amount || r.Currency != currency || r.Status != hub.RefundSucceeded {
			t.Errorf("refund %d %s %s, want %d %s succeeded", r.AmountMinor, r.Currency, r.Status, amount, currency)
		}
		if !slices.Contains(r.Keys, s.PaymentID) {
			t.Errorf("refund keys %v do not name the payment id %s", r.Keys, s.PaymentID)
		}
	case sampleDispute:
		d := n.Dispute
		if d == nil {
			t.Fatalf("no dispute in %+v", n)
		}
		if d.AmountMinor != amount || d.Currency != currency || d.Status != hub.DisputeWithdrawn {
			t.Errorf("dispute %d %s %s, want %d %s withdrawn", d.AmountMinor, d.Currency, d.Status, amount, currency)
		}
		if !slices.Contains(d.Keys, s.PaymentID) {
			t.Errorf("dispute keys %v do not name the payment id %s", d.Keys, s.PaymentID)
		}
	}
}

// TestSampleSignatures checks the signatures with the providers' own
// libraries where there is one, and against a computation written from
// their documentation otherwise.
func TestSampleSignatures(t *testing.T) {
	now := time.Now()
	for _, provider := range SampleProviders() {
		t.Run(provider, func(t *testing.T) {
			src := sampleSource(provider, nil)
			s, err := NewSample(src, SampleRequest{Event: SampleEvents(provider)[0]}, now)
			if err != nil {
				t.Fatal(err)
			}
			mac := func(key string, msg []byte) []byte {
				m := hmac.New(sha256.New, []byte(key))
				m.Write(msg)
				return m.Sum(nil)
			}
			switch provider {
			case "stripe":
				ev, err := webhook.ConstructEvent(s.Body, s.Header.Get("Stripe-Signature"), src.Secret)
				if err != nil {
					t.Fatalf("stripe-go rejects the test event: %v", err)
				}
				if ev.ID != s.EventID || ev.Livemode {
					t.Errorf("stripe-go reads %s livemode %v, want %s in test mode", ev.ID, ev.Livemode, s.EventID)
				}
			case "paddle":
				req := httptest.NewRequest(http.MethodPost, "/in/src_sample", bytes.NewReader(s.Body))
				req.Header = s.Header.Clone()
				ok, err := paddle.NewWebhookVerifier(src.Secret).Verify(req)
				if err != nil || !ok {
					t.Fatalf("paddle-go-sdk rejects the test event: %v %v", ok, err)
				}
			case "shopify":
				want := base64.StdEncoding.EncodeToString(mac(src.Secret, s.Body))
				if got := s.Header.Get("X-Shopify-Hmac-Sha256"); got != want {
					t.Errorf("X-Shopify-Hmac-Sha256 %q, want %q", got, want)
				}
				for _, h := range []string{"X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-API-Version", "X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Triggered-At"} {
					if s.Header.Get(h) == "" {
						t.Errorf("no %s header", h)
					}
				}
			case "woocommerce":
				// WordPress decodes the secret with wp_specialchars_decode first.
				key := strings.ReplaceAll(src.Secret, "&amp;", "&")
				want := base64.StdEncoding.EncodeToString(mac(key, s.Body))
				if got := s.Header.Get("X-WC-Webhook-Signature"); got != want {
					t.Errorf("X-WC-Webhook-Signature %q, want %q", got, want)
				}
				for _, h := range []string{"X-WC-Webhook-Source", "X-WC-Webhook-Topic", "X-WC-Webhook-Resource", "X-WC-Webhook-Event", "X-WC-Webhook-ID", "X-WC-Webhook-Delivery-ID"} {
					if s.Header.Get(h) == "" {
						t.Errorf("no %s header", h)
					}
				}
			default:
				t.Fatalf("no signature check for %s", provider)
			}
		})
	}
}

// TestSampleStripeAPIVersion: Stripe test events carry the API version
// stripe-go pins, the one endpoints are registered with.
func TestSampleStripeAPIVersion(t *testing.T) {
	if sampleStripeAPIVersion != stripe.APIVersion {
		t.Fatalf("test events say API version %s, stripe-go pins %s", sampleStripeAPIVersion, stripe.APIVersion)
	}
}

// TestSampleShapes: a test event has no field the provider's payloads in
// testdata/<provider>/ lack, and none of another JSON type.
func TestSampleShapes(t *testing.T) {
	for _, provider := range SampleProviders() {
		fixtures := map[string]map[string][]string{} // event → path → kinds
		for _, c := range loadCases(t, filepath.Join("..", "testdata", provider)) {
			ev := sampleFixtureEvent(provider, c)
			if fixtures[ev] == nil {
				fixtures[ev] = map[string][]string{}
			}
			var v any
			if err := json.Unmarshal(c.Body, &v); err != nil {
				t.Fatal(err)
			}
			jsonPaths(v, "", fixtures[ev])
		}
		for _, spec := range sampleCatalog[provider] {
			t.Run(provider+"/"+spec.event, func(t *testing.T) {
				known := fixtures[spec.event]
				if len(known) == 0 {
					t.Fatalf("no fixture of %s in testdata/%s", spec.event, provider)
				}
				s, err := NewSample(sampleSource(provider, nil), SampleRequest{Event: spec.event, PartnerCode: "ALICE"}, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				var v any
				if err := json.Unmarshal(s.Body, &v); err != nil {
					t.Fatal(err)
				}
				got := map[string][]string{}
				jsonPaths(v, "", got)
				var bad []string
				for p, kinds := range got {
					want, ok := known[p]
					switch {
					case !ok:
						bad = append(bad, p+": not in any fixture")
					case kinds[0] != "null" && !slices.Contains(want, kinds[0]) && !slices.Equal(want, []string{"null"}):
						bad = append(bad, fmt.Sprintf("%s: %s, fixtures have %v", p, kinds[0], want))
					}
				}
				sort.Strings(bad)
				for _, b := range bad {
					t.Error(b)
				}
			})
		}
	}
}

// sampleFixtureEvent is the event type or topic of a fixture.
func sampleFixtureEvent(provider string, c connectorCase) string {
	var head struct {
		Type      string `json:"type"`
		EventType string `json:"event_type"`
	}
	_ = json.Unmarshal(c.Body, &head)
	switch provider {
	case "shopify":
		return c.Headers["X-Shopify-Topic"]
	case "woocommerce":
		return c.Headers["X-WC-Webhook-Topic"]
	case "paddle":
		return head.EventType
	}
	return head.Type
}

// jsonPaths records the JSON kind of every path of v ("a.b[].c").
func jsonPaths(v any, at string, out map[string][]string) {
	kind := "null"
	switch x := v.(type) {
	case map[string]any:
		kind = "object"
		for k, e := range x {
			jsonPaths(e, strings.TrimPrefix(at+"."+k, "."), out)
		}
	case []any:
		kind = "array"
		for _, e := range x {
			jsonPaths(e, at+"[]", out)
		}
	case string:
		kind = "string"
	case float64:
		kind = "number"
	case bool:
		kind = "bool"
	}
	if at != "" && !slices.Contains(out[at], kind) {
		out[at] = append(out[at], kind)
	}
}

// TestSampleRefusals: requests that cannot be served are EINVALID errors
// that say why.
func TestSampleRefusals(t *testing.T) {
	cases := []struct {
		name     string
		provider string
		req      SampleRequest
		want     string
	}{
		{"paddle classic", "paddle_classic", SampleRequest{Event: "payment_succeeded"},
			"Paddle Classic signs with your private key; send a test alert from the Paddle dashboard"},
		{"unknown event", "stripe", SampleRequest{Event: "customer.created"},
			"supported: checkout.session.completed, invoice.paid, charge.refunded, charge.dispute.created"},
		{"no event", "shopify", SampleRequest{}, "event is required; shopify supports: orders/paid, refunds/create"},
		{"payment id on a sale", "stripe", SampleRequest{Event: "invoice.paid", PaymentID: "pi_1"}, "payment_id"},
		{"foreign payment id", "paddle", SampleRequest{Event: "adjustment.created", PaymentID: "pi_123"}, "transaction id"},
		{"negative amount", "woocommerce", SampleRequest{Event: "order.created", AmountMinor: -1}, "amount_minor"},
		{"unknown currency", "shopify", SampleRequest{Event: "orders/paid", Currency: "xyz"}, "currency"},
		{"fractional Stripe MGA", "stripe", SampleRequest{Event: "invoice.paid", Currency: "mga", AmountMinor: 150}, "multiple of 100"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := &hub.Source{ID: "src_x", Provider: c.provider, Secret: "secret"}
			_, err := NewSample(src, c.req, time.Now())
			var he *hub.Error
			if !errors.As(err, &he) || he.Code != hub.EINVALID {
				t.Fatalf("error %v, want EINVALID", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// TestSampleHintKeys: a source's hint_keys option decides where the code
// travels.
func TestSampleHintKeys(t *testing.T) {
	for _, provider := range []string{"stripe", "shopify", "woocommerce", "paddle"} {
		t.Run(provider, func(t *testing.T) {
			src := sampleSource(provider, map[string]string{"hint_keys": " affiliate ,partner"})
			ev := SampleEvents(provider)[0]
			if provider == "stripe" {
				ev = "invoice.paid" // sessions carry the code in client_reference_id
			}
			s, err := NewSample(src, SampleRequest{Event: ev, PartnerCode: "BOB"}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(s.Body, []byte(`"affiliate"`)) {
				t.Errorf("the code does not travel under the hint key affiliate:\n%s", s.Body)
			}
			conn, _ := Default().Get(provider)
			rc, err := conn.Verify(src, s.Header, s.Body, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			n, err := conn.Normalize(src, &hub.InboundEvent{Provider: provider, EventType: rc.EventType, Headers: rc.Headers, Body: s.Body})
			if err != nil {
				t.Fatal(err)
			}
			if n.Payment == nil || n.Payment.Hints.PartnerCode != "BOB" {
				t.Errorf("normalized %+v, want a payment with partner code BOB", n)
			}
		})
	}
}

// TestSampleFreshIDs: two test events share no id.
func TestSampleFreshIDs(t *testing.T) {
	src := sampleSource("stripe", nil)
	a, err := NewSample(src, SampleRequest{Event: "checkout.session.completed"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSample(src, SampleRequest{Event: "checkout.session.completed"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a.EventID == b.EventID || a.PaymentID == b.PaymentID || bytes.Equal(a.Body, b.Body) {
		t.Fatalf("two test events share ids: %s %s, %s %s", a.EventID, b.EventID, a.PaymentID, b.PaymentID)
	}
}
