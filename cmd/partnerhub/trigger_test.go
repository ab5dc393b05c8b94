package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/connectors"
)

// TestTriggerEveryEvent runs every supported test event through the real
// server with the CLI: sales become conversions attributed by the partner
// code, and refunds and disputes of those sales become refunds joined to
// them. A refund of an unknown payment is parked.
func TestTriggerEveryEvent(t *testing.T) {
	h := startHub(t, testEnv(t), Options{})
	var partner struct {
		ID string `json:"id"`
	}
	if st := h.api("POST", "/partners", map[string]any{"name": "Alice Example", "code": "alice"}, &partner); st != 201 {
		t.Fatalf("creating partner: %d", st)
	}
	env := map[string]string{"PARTNERHUB_URL": h.base, "PARTNERHUB_KEY": testAdminKey}
	trigger := func(t *testing.T, args ...string) connectors.TriggerResult {
		t.Helper()
		out, err := runCLI(t, env, append([]string{"trigger", "--json"}, args...)...)
		if err != nil {
			t.Fatalf("trigger %v: %v\n%s", args, err, out)
		}
		var res connectors.TriggerResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("trigger %v printed %q: %v", args, out, err)
		}
		if res.InboundStatus != 200 || res.InboundEventID == "" || res.Duplicate {
			t.Fatalf("trigger %v: /in answered %+v", args, res)
		}
		return res
	}

	// The test events of each provider: sales first, then what takes money
	// back from a sale.
	events := map[string][2][]string{
		"stripe":      {{"checkout.session.completed", "invoice.paid"}, {"charge.refunded", "charge.dispute.created"}},
		"shopify":     {{"orders/paid"}, {"refunds/create"}},
		"woocommerce": {{"order.created"}, {"order.updated"}},
		"paddle":      {{"transaction.completed"}, {"adjustment.created"}},
	}
	payments := map[string]string{} // payment id → event that sold it
	refunds := map[string]string{}  // refund or dispute event → payment id
	var parked string
	for _, provider := range connectors.SampleProviders() {
		sales, backs := events[provider][0], events[provider][1]
		if got := connectors.SampleEvents(provider); !slices.Equal(got, append(slices.Clone(sales), backs...)) {
			t.Fatalf("%s test events are %v: add the new ones to this test", provider, got)
		}
		var src struct {
			ID string `json:"id"`
		}
		if st := h.api("POST", "/sources", map[string]any{"provider": provider, "secret": "secret_" + provider + "_" + randHex(8)}, &src); st != 201 {
			t.Fatalf("creating %s source: %d", provider, st)
		}
		for _, ev := range sales {
			res := trigger(t, ev, "--source", src.ID, "--partner-code", "alice", "--amount", "4900", "--currency", "eur", "--live")
			if res.Kind != "payment" {
				t.Fatalf("%s %s is a %s, want a payment", provider, ev, res.Kind)
			}
			payments[res.PaymentID] = provider + " " + ev
		}
		firstSale := ""
		for p, ev := range payments {
			if ev == provider+" "+sales[0] {
				firstSale = p
			}
		}
		for _, ev := range backs {
			res := trigger(t, ev, "--source", src.ID, "--payment", firstSale, "--amount", "4900", "--currency", "eur", "--live")
			if res.PaymentID != firstSale {
				t.Fatalf("%s %s is about %s, want %s", provider, ev, res.PaymentID, firstSale)
			}
			refunds[provider+" "+ev] = firstSale
		}
		if provider == "stripe" {
			parked = trigger(t, "charge.refunded", "--source", src.ID).PaymentID
		}
	}
	if len(payments) != 5 || len(refunds) != 5 {
		t.Fatalf("triggered %d sales and %d refunds or disputes, want 5 and 5", len(payments), len(refunds))
	}

	var convs struct {
		Data []struct {
			ID        string   `json:"id"`
			Keys      []string `json:"keys"`
			PartnerID string   `json:"partner_id"`
			BaseMinor int64    `json:"base_minor"`
			Currency  string   `json:"currency"`
		} `json:"data"`
	}
	var rs struct {
		Data []struct {
			ConversionID *string  `json:"conversion_id"`
			OriginalKeys []string `json:"original_keys"`
			Kind         string   `json:"kind"`
			AmountMinor  int64    `json:"amount_minor"`
			Currency     string   `json:"currency"`
		} `json:"data"`
	}
	waitFor(t, 30*time.Second, "5 conversions and 6 refunds", func() bool {
		convs.Data, rs.Data = nil, nil // decoding into reused elements would keep absent fields
		h.api("GET", "/conversions", nil, &convs)
		h.api("GET", "/refunds", nil, &rs)
		return len(convs.Data) == 5 && len(rs.Data) == 6
	})
	byPayment := map[string]string{} // payment id → conversion id
	for _, c := range convs.Data {
		var sold string
		for _, k := range c.Keys {
			if _, ok := payments[k]; ok {
				sold = k
			}
		}
		if sold == "" {
			t.Errorf("conversion %s (keys %v) is no triggered sale", c.ID, c.Keys)
			continue
		}
		byPayment[sold] = c.ID
		if c.PartnerID != partner.ID || c.BaseMinor != 4900 || c.Currency != "EUR" {
			t.Errorf("%s: conversion %+v, want base 4900 EUR attributed to %s", payments[sold], c, partner.ID)
		}
	}
	for ev, pid := range refunds {
		found := false
		for _, r := range rs.Data {
			if r.ConversionID != nil && *r.ConversionID == byPayment[pid] && r.AmountMinor == 4900 && r.Currency == "EUR" &&
				(r.Kind == "chargeback") == strings.Contains(ev, "dispute") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s of %s: no refund joined to conversion %s in %+v", ev, pid, byPayment[pid], rs.Data)
		}
	}
	parkedFound := false
	for _, r := range rs.Data {
		if slices.Contains(r.OriginalKeys, parked) && r.ConversionID == nil {
			parkedFound = true
		}
	}
	if !parkedFound {
		t.Errorf("the refund of unknown payment %s is not parked: %+v", parked, rs.Data)
	}
	var ins struct {
		Data []struct {
			Status    string `json:"status"`
			EventType string `json:"event_type"`
		} `json:"data"`
	}
	h.api("GET", "/inbound-events", nil, &ins)
	for _, e := range ins.Data {
		if e.Status == "failed" || e.Status == "unparsable" {
			t.Errorf("inbound %s event is %s", e.EventType, e.Status)
		}
	}
}

// TestTriggerCLI: the human output, the refusals, and what they say.
func TestTriggerCLI(t *testing.T) {
	h := startHub(t, testEnv(t), Options{})
	src, _ := setupProgram(t, h, nil)
	env := map[string]string{"PARTNERHUB_URL": h.base, "PARTNERHUB_KEY": testAdminKey}

	out, err := runCLI(t, env, "trigger", "checkout.session.completed", "--source", src, "--partner-code", "alice")
	if err != nil {
		t.Fatalf("trigger: %v\n%s", err, out)
	}
	for _, want := range []string{"sent stripe checkout.session.completed to " + src + " (test mode)", "event id:   evt_",
		"payment id: pi_", "--payment pi_", "/in answered 200: stored as inbound event "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	var classic struct {
		ID string `json:"id"`
	}
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if st := h.api("POST", "/sources", map[string]any{"provider": "paddle_classic", "secret": pub}, &classic); st != 201 {
		t.Fatalf("creating paddle_classic source: %d", st)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"paddle classic", []string{"payment_succeeded", "--source", classic.ID},
			"Paddle Classic signs with your private key; send a test alert from the Paddle dashboard"},
		{"unknown event", []string{"customer.created", "--source", src},
			"supported: checkout.session.completed, invoice.paid, charge.refunded, charge.dispute.created"},
		{"unknown source", []string{"invoice.paid", "--source", "src_nope"}, "not found"},
		{"no source", []string{"invoice.paid"}, "--source is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := runCLI(t, env, append([]string{"trigger"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q\n%s", err, c.want, out)
			}
		})
	}
	help, err := runCLI(t, nil, "trigger", "--help")
	if err != nil || !strings.Contains(help, "woocommerce  order.created, order.updated") {
		t.Fatalf("help does not list the events: %v\n%s", err, help)
	}
}
