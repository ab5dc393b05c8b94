package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

type commissionList struct {
	Data []struct {
		ID           string `json:"id"`
		ConversionID string `json:"conversion_id"`
		PartnerID    string `json:"partner_id"`
		NetMinor     int64  `json:"net_minor"`
		Currency     string `json:"currency"`
		Entries      []struct {
			Type        string `json:"type"`
			AmountMinor int64  `json:"amount_minor"`
		} `json:"entries"`
	} `json:"data"`
}

type conversionList struct {
	Data []struct {
		ID                string   `json:"id"`
		Keys              []string `json:"keys"`
		PartnerID         string   `json:"partner_id"`
		Reason            string   `json:"attribution_reason"`
		BaseMinor         int64    `json:"base_minor"`
		RefundedMinor     int64    `json:"refunded_minor"`
		RefundedBaseMinor int64    `json:"refunded_base_minor"`
	} `json:"data"`
}

// TestEndToEndStripe runs the whole flow on the real server: a signed
// Stripe checkout becomes a conversion and a commission, and the partner's
// automation receives signed events it verifies with the Standard
// Webhooks library; refunds converge whichever Stripe events report them.
func TestEndToEndStripe(t *testing.T) {
	h := startHub(t, testEnv(t), Options{})
	rcv := newReceiver(t)
	src, secret := setupProgram(t, h, rcv)

	body := checkoutCompleted("evt_e2e_1", "cs_test_e2e_1", "pi_e2e_1", "alice", 11000, 1000)
	st, ack := h.postStripe(src, secret, body)
	if st != http.StatusOK || ack["duplicate"] != false {
		t.Fatalf("first delivery: got %d %v, want 200 and not duplicate", st, ack)
	}
	st, ack = h.postStripe(src, secret, body)
	if st != http.StatusOK || ack["duplicate"] != true {
		t.Fatalf("redelivery: got %d %v, want 200 duplicate", st, ack)
	}

	// Deliveries are concurrent: the two events may arrive in either
	// order.
	waitFor(t, 20*time.Second, "commission.created and conversion.created", func() bool {
		return len(rcv.ofType("commission.created")) >= 1 && len(rcv.ofType("conversion.created")) >= 1
	})
	created := rcv.ofType("commission.created")[0]
	if got := created.Data["net_minor"]; got != float64(1500) {
		t.Errorf("commission.created net_minor = %v, want 1500 (15%% of base 10000)", got)
	}

	var convs conversionList
	h.api("GET", "/conversions", nil, &convs)
	if len(convs.Data) != 1 || convs.Data[0].Reason != "partner_code" || convs.Data[0].BaseMinor != 10000 {
		t.Fatalf("conversions = %+v, want one attributed by partner_code with base 10000", convs.Data)
	}

	// Half refunded, reported cumulatively by charge.refunded…
	st, _ = h.postStripe(src, secret, chargeRefunded("evt_e2e_2", "ch_e2e_1", "pi_e2e_1", 11000, 5500))
	if st != http.StatusOK {
		t.Fatalf("charge.refunded: %d", st)
	}
	waitFor(t, 20*time.Second, "commission.reversed", func() bool { return len(rcv.ofType("commission.reversed")) == 1 })
	if got := rcv.ofType("commission.reversed")[0].Data["reversed_minor"]; got != float64(750) {
		t.Errorf("reversed_minor = %v, want 750", got)
	}
	// …then the rest: the commission nets to exactly zero.
	st, _ = h.postStripe(src, secret, chargeRefunded("evt_e2e_3", "ch_e2e_1", "pi_e2e_1", 11000, 11000))
	if st != http.StatusOK {
		t.Fatalf("charge.refunded: %d", st)
	}
	waitFor(t, 20*time.Second, "second commission.reversed", func() bool { return len(rcv.ofType("commission.reversed")) == 2 })
	// The redelivered checkout created nothing more.
	for _, typ := range []string{"conversion.created", "commission.created"} {
		if n := len(rcv.ofType(typ)); n != 1 {
			t.Errorf("%s delivered %d times, want 1", typ, n)
		}
	}
	var coms commissionList
	h.api("GET", "/commissions", nil, &coms)
	if len(coms.Data) != 1 || coms.Data[0].NetMinor != 0 || len(coms.Data[0].Entries) != 3 {
		t.Fatalf("commissions = %+v, want one with net 0 and three entries", coms.Data)
	}
	if p := rcv.problems(); len(p) > 0 {
		t.Fatalf("receiver rejected deliveries: %v", p)
	}
}

// TestRefundBeforeSale: a refund that arrives before its sale is parked
// and joined when the sale arrives.
func TestRefundBeforeSale(t *testing.T) {
	h := startHub(t, testEnv(t), Options{})
	rcv := newReceiver(t)
	src, secret := setupProgram(t, h, rcv)

	if st, _ := h.postStripe(src, secret, chargeRefunded("evt_oo_1", "ch_oo_1", "pi_oo_1", 20000, 20000)); st != 200 {
		t.Fatalf("refund: %d", st)
	}
	var rs struct {
		Data []map[string]any `json:"data"`
	}
	waitFor(t, 20*time.Second, "parked refund", func() bool {
		h.api("GET", "/refunds", nil, &rs)
		return len(rs.Data) == 1
	})
	if rs.Data[0]["conversion_id"] != nil {
		t.Fatalf("refund joined a conversion before the sale: %v", rs.Data[0])
	}
	if st, _ := h.postStripe(src, secret, checkoutCompleted("evt_oo_2", "cs_oo_1", "pi_oo_1", "alice", 20000, 0)); st != 200 {
		t.Fatalf("sale: %d", st)
	}
	waitFor(t, 20*time.Second, "reversal of the joined refund", func() bool { return len(rcv.ofType("commission.reversed")) == 1 })
	var coms commissionList
	h.api("GET", "/commissions", nil, &coms)
	if len(coms.Data) != 1 || coms.Data[0].NetMinor != 0 {
		t.Fatalf("commissions = %+v, want one netting to 0", coms.Data)
	}
}

// TestInboundErrors: every refusal is clear and stores nothing.
func TestInboundErrors(t *testing.T) {
	env := testEnv(t)
	env["PARTNERHUB_MAX_BODY_BYTES"] = "4096"
	h := startHub(t, env, Options{})
	src, secret := setupProgram(t, h, nil)
	post := func(path, sig string, body []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, h.base+path, bytes.NewReader(body))
		if sig != "" {
			req.Header.Set("Stripe-Signature", sig)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		return res.StatusCode, res.Header.Get("Content-Type")
	}
	body := checkoutCompleted("evt_err_1", "cs_err_1", "pi_err_1", "alice", 1000, 0)
	cases := []struct {
		name, path, sig string
		body            []byte
		want            int
	}{
		{"unknown source", "/in/src_unknown", "t=1,v1=00", body, http.StatusNotFound},
		{"missing signature", "/in/" + src, "", body, http.StatusUnauthorized},
		{"bad signature", "/in/" + src, "t=" + time.Now().Format("20060102") + ",v1=deadbeef", body, http.StatusUnauthorized},
		{"oversized body", "/in/" + src, "t=1,v1=00", bytes.Repeat([]byte("x"), 5000), http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, ct := post(c.path, c.sig, c.body)
			if st != c.want {
				t.Errorf("status = %d, want %d", st, c.want)
			}
			if !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("content type = %q, want problem+json", ct)
			}
		})
	}
	var ins struct {
		Data []any `json:"data"`
	}
	h.api("GET", "/inbound-events", nil, &ins)
	if len(ins.Data) != 0 {
		t.Fatalf("refused requests stored %d inbound events", len(ins.Data))
	}
	_ = secret
}

// TestDatabaseDown: without a durable row there is no 2xx.
func TestDatabaseDown(t *testing.T) {
	h := startHub(t, testEnv(t), Options{})
	src, secret := setupProgram(t, h, nil)
	_ = h.app.DB.Close()
	st, _ := h.postStripe(src, secret, checkoutCompleted("evt_db_1", "cs_db_1", "pi_db_1", "alice", 1000, 0))
	if st != http.StatusServiceUnavailable {
		t.Fatalf("status with the database closed = %d, want 503", st)
	}
}
