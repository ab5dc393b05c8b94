package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// hostileMaxBody is the body limit of the hub under attack: small enough
// to keep the oversized cases fast, large enough for 100,000 nested
// arrays to reach the JSON decoder.
const hostileMaxBody = 256 << 10

// hostileCase is one hostile request and the answer it must get.
type hostileCase struct {
	name   string
	method string
	// path is sent as is, after the hub's base URL: escape it yourself.
	path string
	// header is added in order, so a name may repeat.
	header [][2]string
	body   []byte
	// key sends the admin API key.
	key  bool
	want int
	// ctype is the answer's media type; zero: application/problem+json.
	ctype string
	// detail must appear in the problem's detail or field errors.
	detail string
}

// problemText is the human part of a problem document: its detail and
// field errors.
func problemText(b []byte) (string, bool) {
	var p struct {
		Title  string            `json:"title"`
		Status int               `json:"status"`
		Detail string            `json:"detail"`
		Errors map[string]string `json:"errors"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.Status == 0 || p.Title == "" {
		return "", false
	}
	s := p.Detail
	for k, v := range p.Errors {
		s += " | " + k + ": " + v
	}
	return s, true
}

// signStripe returns a Stripe-Signature header for body signed at ts.
func signStripe(secret string, ts time.Time, body []byte) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: ts}).Header
}

// signShopify returns the X-Shopify-Hmac-Sha256 value of body.
func signShopify(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// TestHostileRequests sends hostile requests to every public route and to
// a representative set of API routes (a POST, PATCHes, GETs by id, lists
// with filters). Each gets a clear 4xx, never a 5xx; nothing is stored
// but what the valid control requests create; and the server still
// answers afterwards.
func TestHostileRequests(t *testing.T) {
	env := testEnv(t)
	env["PARTNERHUB_MAX_BODY_BYTES"] = strconv.Itoa(hostileMaxBody)
	h := startHub(t, env, Options{})
	src, secret := setupProgram(t, h, nil)
	shopSecret := "shpss_" + randHex(8)
	var shop map[string]any
	if st := h.api("POST", "/sources", map[string]any{"provider": "shopify", "name": "Shop", "secret": shopSecret}, &shop); st != 201 {
		t.Fatalf("creating shopify source: %d %v", st, shop)
	}
	shopSrc := shop["id"].(string)
	var alice map[string]any
	var partners struct {
		Data []map[string]any `json:"data"`
	}
	h.api("GET", "/partners", nil, &partners)
	if len(partners.Data) != 1 {
		t.Fatalf("partners after setup = %v, want alice only", partners.Data)
	}
	alice = partners.Data[0]
	aliceID := alice["id"].(string)

	// The valid control requests: one sale through /in, one partner
	// through the API.
	now := time.Now()
	sale := checkoutCompleted("evt_ok_1", "cs_ok_1", "pi_ok_1", "alice", 11000, 1000)
	if st, ack := h.postStripe(src, secret, sale); st != http.StatusOK {
		t.Fatalf("control sale: %d %v", st, ack)
	}
	if st := h.api("POST", "/partners", map[string]any{"name": "Bob", "code": "bob"}, nil); st != 201 {
		t.Fatalf("control partner: %d", st)
	}

	stripeIn := "/in/" + src
	signed := func(body []byte) [][2]string {
		return [][2]string{{"Content-Type", "application/json"}, {"Stripe-Signature", signStripe(secret, now, body)}}
	}
	withAmount := func(evtID, amount string) []byte {
		b := checkoutCompleted(evtID, "cs_"+evtID, "pi_"+evtID, "alice", 11000, 1000)
		return bytes.Replace(b, []byte(`"amount_total": 11000`), []byte(`"amount_total": `+amount), 1)
	}
	deep := []byte(`{"id":"evt_deep","type":"checkout.session.completed","data":` + strings.Repeat("[", 100000))
	badUTF8 := bytes.Replace(withAmount("evt_utf8", "11000"), []byte(`"alice"`), []byte("\"al\xffice\""), 1)
	nulID := bytes.Replace(withAmount("evt_nul", "11000"), []byte(`"evt_nul"`), []byte(`"evt_\u0000"`), 1)
	nulRef := bytes.Replace(withAmount("evt_nul_ref", "11000"), []byte(`"alice"`), []byte(`"al\u0000ice"`), 1)
	oversized := bytes.Repeat([]byte("x"), hostileMaxBody+1)
	longID := strings.Repeat("a", 10000)
	shopBody := []byte(`{"id":820982911946154508,"total_price":"10.00","currency":"USD"}`)
	jsonCT := [2]string{"Content-Type", "application/json"}
	ids := []struct{ name, id string }{
		{"SQL injection", url.PathEscape("' OR 1=1 --")},
		{"path traversal", url.PathEscape("../../etc/passwd")},
		{"raw path traversal", "../../etc/passwd"},
		{"NUL byte", "%00"},
		{"invalid UTF-8", "%FF%FE"},
		{"10,000 characters", longID},
	}

	cases := []hostileCase{
		// POST /in/{source_id}: answers as connectors/inbound.go says.
		{name: "in/oversized body", method: "POST", path: stripeIn, header: signed(oversized), body: oversized, want: 413, detail: "exceeds the limit"},
		{name: "in/XML body signed", method: "POST", path: stripeIn, body: []byte(`<event id="evt_xml"/>`),
			header: [][2]string{{"Content-Type", "text/xml"}, {"Stripe-Signature", signStripe(secret, now, []byte(`<event id="evt_xml"/>`))}},
			want:   422, detail: "could not be read"},
		{name: "in/invalid UTF-8 signed", method: "POST", path: stripeIn, header: signed(badUTF8), body: badUTF8, want: 422, detail: "could not be read"},
		{name: "in/NUL in the event id signed", method: "POST", path: stripeIn, header: signed(nulID), body: nulID, want: 422, detail: "could not be read"},
		{name: "in/NUL in a field signed", method: "POST", path: stripeIn, header: signed(nulRef), body: nulRef, want: 422, detail: "could not be read"},
		{name: "in/Shopify topic not UTF-8", method: "POST", path: "/in/" + shopSrc, body: shopBody,
			header: [][2]string{jsonCT, {"X-Shopify-Hmac-Sha256", signShopify(shopSecret, shopBody)}, {"X-Shopify-Topic", "orders/\xffpaid"},
				{"X-Shopify-Shop-Domain", "shop.myshopify.com"}, {"X-Shopify-Webhook-Id", "wh_3"}}, want: 422, detail: "could not be read"},
		{name: "in/100,000 nested arrays signed", method: "POST", path: stripeIn, header: signed(deep), body: deep, want: 422, detail: "could not be read"},
		{name: "in/missing signature", method: "POST", path: stripeIn, header: [][2]string{jsonCT}, body: sale, want: 401},
		{name: "in/two Stripe-Signature headers", method: "POST", path: stripeIn, body: withAmount("evt_dup_sig", "11000"),
			header: [][2]string{jsonCT, {"Stripe-Signature", "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=" + strings.Repeat("0", 64)},
				{"Stripe-Signature", signStripe(secret, now, withAmount("evt_dup_sig", "11000"))}}, want: 401},
		{name: "in/replayed timestamp", method: "POST", path: stripeIn, body: withAmount("evt_old", "11000"),
			header: [][2]string{jsonCT, {"Stripe-Signature", signStripe(secret, now.Add(-time.Hour), withAmount("evt_old", "11000"))}}, want: 401},
		{name: "in/future timestamp", method: "POST", path: stripeIn, body: withAmount("evt_future", "11000"),
			header: [][2]string{jsonCT, {"Stripe-Signature", signStripe(secret, now.Add(time.Hour), withAmount("evt_future", "11000"))}}, want: 401},
		{name: "in/Shopify without X-Shopify-Topic", method: "POST", path: "/in/" + shopSrc, body: shopBody,
			header: [][2]string{jsonCT, {"X-Shopify-Hmac-Sha256", signShopify(shopSecret, shopBody)},
				{"X-Shopify-Shop-Domain", "shop.myshopify.com"}, {"X-Shopify-Webhook-Id", "wh_1"}}, want: 401},
		{name: "in/Shopify without signature", method: "POST", path: "/in/" + shopSrc, body: shopBody,
			header: [][2]string{jsonCT, {"X-Shopify-Topic", "orders/paid"}, {"X-Shopify-Shop-Domain", "shop.myshopify.com"}, {"X-Shopify-Webhook-Id", "wh_2"}}, want: 401},
		{name: "in/GET", method: "GET", path: stripeIn, want: 405},

		// GET /r/{code}, /t.js and the operational routes.
		{name: "r/unknown code", method: "GET", path: "/r/nobody", want: 404, ctype: "text/plain"},
		{name: "t.js/POST", method: "POST", path: "/t.js", body: []byte("x"), want: 405},
		{name: "healthz/POST", method: "POST", path: "/healthz", want: 405},
		{name: "readyz/DELETE", method: "DELETE", path: "/readyz", want: 405},
		{name: "metrics/POST", method: "POST", path: "/metrics", body: oversized, want: 405},
		{name: "ops/queues without a key", method: "GET", path: "/ops/queues", want: 401, detail: "missing bearer API key"},
		{name: "ops/queues with a junk key", method: "GET", path: "/ops/queues", header: [][2]string{{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("x:' OR 1=1 --"))}},
			want: 401, detail: "invalid API key"},
		// /api/v1 answers 401 to any request without a key but the public
		// GETs; with a key, other methods are not found.
		{name: "openapi.json/POST", method: "POST", path: "/api/v1/openapi.json", body: []byte("{}"), want: 401, detail: "missing bearer API key"},
		{name: "openapi.json/POST with a key", method: "POST", path: "/api/v1/openapi.json", key: true, body: []byte("{}"), want: 404},
		{name: "schemas/unknown type", method: "GET", path: "/api/v1/schemas/" + url.PathEscape("' OR 1=1 --"), want: 404, detail: "no schema for event type"},
		{name: "schemas/POST", method: "POST", path: "/api/v1/schemas", key: true, body: []byte("{}"), want: 404},

		// POST /api/v1/partners.
		{name: "api/POST oversized body", method: "POST", path: "/api/v1/partners", key: true, header: [][2]string{jsonCT}, body: oversized, want: 413},
		{name: "api/POST XML", method: "POST", path: "/api/v1/partners", key: true, header: [][2]string{{"Content-Type", "application/xml"}},
			body: []byte(`<partnerInput><Name>Mallory</Name><Code>mallory</Code></partnerInput>`), want: 415, detail: "application/json"},
		{name: "api/POST form", method: "POST", path: "/api/v1/partners", key: true, header: [][2]string{{"Content-Type", "application/x-www-form-urlencoded"}},
			body: []byte(`name=Mallory&code=mallory`), want: 415, detail: "application/json"},
		{name: "api/POST text/plain", method: "POST", path: "/api/v1/partners", key: true, header: [][2]string{{"Content-Type", "text/plain"}},
			body: []byte(`{"name":"Mallory","code":"mallory"}`), want: 415, detail: "application/json"},
		{name: "api/POST invalid UTF-8", method: "POST", path: "/api/v1/partners", key: true, header: [][2]string{jsonCT},
			body: []byte("{\"name\":\"Mal\xffory\",\"code\":\"mallory\"}"), want: 422, detail: "UTF-8"},
		{name: "api/POST NUL", method: "POST", path: "/api/v1/partners", key: true, header: [][2]string{jsonCT},
			body: []byte(`{"name":"Mal\u0000ory","code":"mallory"}`), want: 422, detail: "u0000"},
		{name: "api/POST two JSON values", method: "POST", path: "/api/v1/partners", key: true, header: [][2]string{jsonCT},
			body: []byte(`{"name":"Mallory","code":"mallory"} {"name":"Eve","code":"eve"}`), want: 422, detail: "more than one JSON value"},
		{name: "api/POST 100,000 nested arrays", method: "POST", path: "/api/v1/partners", key: true, header: [][2]string{jsonCT},
			body: []byte(`{"name":"Mallory","code":"mallory","tags":` + strings.Repeat("[", 100000)), want: 422, detail: "malformed JSON"},
		{name: "api/POST unknown field", method: "POST", path: "/api/v1/partners", key: true, header: [][2]string{jsonCT},
			body: []byte(`{"name":"Mallory","code":"mallory","commission_bps":10000}`), want: 422, detail: "commission_bps"},
		{name: "api/POST garbage Idempotency-Key", method: "POST", path: "/api/v1/partners", key: true,
			header: [][2]string{jsonCT, {"Idempotency-Key", "ключ' OR 1=1 --"}}, body: []byte(`{"name":"Mallory","code":"mallory"}`),
			want: 422, detail: "Idempotency-Key"},
		{name: "api/POST 1,000-byte Idempotency-Key", method: "POST", path: "/api/v1/partners", key: true,
			header: [][2]string{jsonCT, {"Idempotency-Key", strings.Repeat("k", 1000)}}, body: []byte(`{"name":"Mallory","code":"mallory"}`),
			want: 422, detail: "Idempotency-Key"},
		{name: "api/POST SQL injection code", method: "POST", path: "/api/v1/partners", key: true, header: [][2]string{jsonCT},
			body: []byte(`{"name":"Mallory","code":"' OR 1=1 --"}`), want: 422, detail: "code"},
		{name: "api/POST without a key", method: "POST", path: "/api/v1/partners", header: [][2]string{jsonCT},
			body: []byte(`{"name":"Mallory","code":"mallory"}`), want: 401, detail: "missing bearer API key"},

		// PATCH /api/v1/program and /api/v1/partners/{id}.
		{name: "api/PATCH 1e400", method: "PATCH", path: "/api/v1/program", key: true, header: [][2]string{jsonCT},
			body: []byte(`{"default_commission_bps":1e400}`), want: 422, detail: "malformed JSON"},
		{name: "api/PATCH 2^64+1", method: "PATCH", path: "/api/v1/program", key: true, header: [][2]string{jsonCT},
			body: []byte(`{"default_commission_bps":18446744073709551617}`), want: 422, detail: "malformed JSON"},
		{name: "api/PATCH unknown field", method: "PATCH", path: "/api/v1/program", key: true, header: [][2]string{jsonCT},
			body: []byte(`{"hold_days":0,"owner":"mallory"}`), want: 422, detail: "owner"},
		{name: "api/PATCH wrong content type", method: "PATCH", path: "/api/v1/program", key: true, header: [][2]string{{"Content-Type", "application/x-www-form-urlencoded"}},
			body: []byte(`hold_days=0`), want: 415, detail: "application/json"},
		{name: "api/PATCH partner oversized", method: "PATCH", path: "/api/v1/partners/" + aliceID, key: true, header: [][2]string{jsonCT},
			body: oversized, want: 413},
		{name: "api/PATCH partner unknown field", method: "PATCH", path: "/api/v1/partners/" + aliceID, key: true, header: [][2]string{jsonCT},
			body: []byte(`{"name":"Alice","program_id":"prg_other"}`), want: 422, detail: "program_id"},

		// Lists with filters.
		{name: "api/list limit=-1", method: "GET", path: "/api/v1/conversions?limit=-1", key: true, want: 422, detail: "limit"},
		{name: "api/list limit=1e400", method: "GET", path: "/api/v1/conversions?limit=1e400", key: true, want: 422, detail: "limit"},
		{name: "api/list since=yesterday", method: "GET", path: "/api/v1/inbound-events?since=yesterday", key: true, want: 422, detail: "since"},
		{name: "api/list until=%00", method: "GET", path: "/api/v1/commissions?until=%00", key: true, want: 422, detail: "until"},
		{name: "api/list cursor=junk", method: "GET", path: "/api/v1/partners?cursor=junk", key: true, want: 422, detail: "cursor"},
		{name: "api/list cursor SQL injection", method: "GET", path: "/api/v1/conversions?cursor=" + url.QueryEscape("' OR 1=1 --"), key: true, want: 422, detail: "cursor"},
		{name: "api/list partner_id not UTF-8", method: "GET", path: "/api/v1/conversions?partner_id=%FF", key: true, want: 422, detail: "partner_id"},
		{name: "api/list status NUL", method: "GET", path: "/api/v1/inbound-events?status=%00", key: true, want: 422, detail: "status"},
		{name: "api/list partner_id SQL injection", method: "GET", path: "/api/v1/conversions?partner_id=" + url.QueryEscape("' OR 1=1 --"), key: true, want: 200, ctype: "application/json"},
	}
	for _, id := range ids {
		cases = append(cases,
			hostileCase{name: "in/source id " + id.name, method: "POST", path: "/in/" + id.id, header: signed(sale), body: sale, want: 404},
			hostileCase{name: "r/code " + id.name, method: "GET", path: "/r/" + id.id, want: 404, ctype: "text/plain"},
			hostileCase{name: "schemas/type " + id.name, method: "GET", path: "/api/v1/schemas/" + id.id, want: 404},
			hostileCase{name: "api/GET partner " + id.name, method: "GET", path: "/api/v1/partners/" + id.id, key: true, want: 404},
			hostileCase{name: "api/GET conversion " + id.name, method: "GET", path: "/api/v1/conversions/" + id.id, key: true, want: 404},
			hostileCase{name: "api/GET inbound event " + id.name, method: "GET", path: "/api/v1/inbound-events/" + id.id, key: true, want: 404},
			hostileCase{name: "api/PATCH partner " + id.name, method: "PATCH", path: "/api/v1/partners/" + id.id, key: true,
				header: [][2]string{jsonCT}, body: []byte(`{"name":"Mallory"}`), want: 404},
		)
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, h.base+c.path, bytes.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range c.header {
				req.Header.Add(kv[0], kv[1])
			}
			if c.key {
				req.Header.Set("Authorization", "Bearer "+testAdminKey)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %.80s: %v", c.method, c.path, err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Fatalf("status = %d, want %d; body %.300s", res.StatusCode, c.want, b)
			}
			ctype := c.ctype
			if ctype == "" {
				ctype = "application/problem+json"
			}
			if got := res.Header.Get("Content-Type"); !strings.HasPrefix(got, ctype) {
				t.Fatalf("content type = %q, want %s; body %.300s", got, ctype, b)
			}
			if ctype != "application/problem+json" {
				return
			}
			text, ok := problemText(b)
			if !ok {
				t.Fatalf("body is not a problem document: %.300s", b)
			}
			if !strings.Contains(text, c.detail) {
				t.Errorf("problem %q does not mention %q", text, c.detail)
			}
		})
	}

	// Signed events whose amounts no integer holds are the provider's
	// own: they are kept, and their processing fails without creating a
	// conversion.
	for _, amount := range []string{"1e400", "18446744073709551617"} {
		evt := "evt_huge_" + strings.TrimSuffix(amount[:4], "e")
		b := withAmount(evt, amount)
		if st, ack := h.postStripe(src, secret, b); st != http.StatusOK {
			t.Fatalf("signed event with amount %s: %d %v, want 200: a verified event is kept", amount, st, ack)
		}
	}

	type row struct {
		ID        string `json:"id"`
		DedupeKey string `json:"dedupe_key"`
		Status    string `json:"status"`
		Error     string `json:"error"`
		Code      string `json:"code"`
	}
	var ins struct {
		Data []row `json:"data"`
	}
	waitFor(t, 20*time.Second, "the control sale and the huge amounts to be processed", func() bool {
		h.api("GET", "/inbound-events", nil, &ins)
		done := 0
		for _, r := range ins.Data {
			if r.Status != "received" {
				done++
			}
		}
		return done == len(ins.Data)
	})
	statuses := map[string]string{}
	for _, r := range ins.Data {
		statuses[r.DedupeKey] = r.Status
	}
	want := map[string]string{"evt_ok_1": "processed", "evt_huge_1e40": "failed", "evt_huge_1844": "failed"}
	if len(statuses) != len(want) {
		t.Errorf("inbound events = %v, want %v", statuses, want)
	}
	for k, v := range want {
		if statuses[k] != v {
			t.Errorf("inbound event %s status = %q, want %q (all: %v)", k, statuses[k], v, statuses)
		}
	}

	var convs conversionList
	h.api("GET", "/conversions", nil, &convs)
	if len(convs.Data) != 1 || convs.Data[0].BaseMinor != 10000 {
		t.Errorf("conversions = %+v, want the control sale only", convs.Data)
	}
	h.api("GET", "/partners", nil, &partners)
	var codes []string
	for _, p := range partners.Data {
		codes = append(codes, p["code"].(string))
	}
	if strings.Join(codes, ",") != "bob,alice" && strings.Join(codes, ",") != "alice,bob" {
		t.Errorf("partners = %v, want alice and bob", codes)
	}
	var prog map[string]any
	h.api("GET", "/program", nil, &prog)
	if prog["default_commission_bps"] != float64(1500) {
		t.Errorf("program default_commission_bps = %v, want 1500", prog["default_commission_bps"])
	}
	var srcs struct {
		Data []any `json:"data"`
	}
	h.api("GET", "/sources", nil, &srcs)
	if len(srcs.Data) != 2 {
		t.Errorf("sources = %d, want 2", len(srcs.Data))
	}
	var clicks struct {
		Data []any `json:"data"`
	}
	h.api("GET", "/clicks", nil, &clicks)
	if len(clicks.Data) != 0 {
		t.Errorf("clicks = %d, want none", len(clicks.Data))
	}

	res, err := http.Get(h.base + "/healthz")
	if err != nil {
		t.Fatalf("the server stopped answering: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d after the hostile requests, want 200", res.StatusCode)
	}
}
