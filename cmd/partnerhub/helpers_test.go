package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/partnerhub/partnerhub/config"
)

const testAdminKey = "test-admin-key-0123456789abcdef"

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freshDatabaseURL returns DATABASE_URL pointed at a new schema dropped
// after the test, or "" for the embedded SQLite database.
func freshDatabaseURL(t testing.TB) string {
	base := os.Getenv("DATABASE_URL")
	if base == "" {
		return ""
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	schema := "e2e_" + randHex(6)
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("creating schema: %v", err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// testEnv is the environment of a hub under test: embedded defaults, or
// the real PostgreSQL and Redis when their variables are set.
func testEnv(t testing.TB) map[string]string {
	return map[string]string{
		"PARTNERHUB_ADDR":                "127.0.0.1:0",
		"PARTNERHUB_DATA_DIR":            t.TempDir(),
		"PARTNERHUB_ADMIN_KEY":           testAdminKey,
		"PARTNERHUB_OUTBOUND_ALLOW_NETS": "127.0.0.0/8",
		"PARTNERHUB_PUBLIC_URL":          "https://hub.example.com",
		"DATABASE_URL":                   freshDatabaseURL(t),
		"REDIS_URL":                      os.Getenv("REDIS_URL"),
	}
}

type hubUnderTest struct {
	t    testing.TB
	app  *App
	base string
	stop func()
}

// startHub runs an App in-process on a free port until the test ends.
func startHub(t testing.TB, env map[string]string, opts Options) *hubUnderTest {
	t.Helper()
	cfg, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("loading config: %v", err)
	}
	if opts.QueueName == "" {
		opts.QueueName = "test_" + randHex(6)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	app, err := NewApp(ctx, cfg, log, io.Discard, opts)
	if err != nil {
		cancel()
		t.Fatalf("starting hub: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	h := &hubUnderTest{t: t, app: app, base: "http://" + app.Addr()}
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("hub stopped with: %v", err)
			}
			app.Close()
		})
	}
	t.Cleanup(h.stop)
	return h
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// api calls the JSON API as the admin and decodes the response into out.
func (h *hubUnderTest) api(method, path string, in, out any) int {
	h.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.base+"/api/v1"+path, body)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("%s %s: decoding %q: %v", method, path, b, err)
		}
	}
	return res.StatusCode
}

// postStripe signs body as Stripe does (with stripe-go) and posts it.
func (h *hubUnderTest) postStripe(sourceID, secret string, body []byte) (int, map[string]any) {
	h.t.Helper()
	sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: time.Now()})
	req, _ := http.NewRequest(http.MethodPost, h.base+"/in/"+sourceID, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", sp.Header)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("posting webhook: %v", err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// receiver is a partner's automation: it verifies every delivery with the
// Standard Webhooks reference library and records it.
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	got    []delivered
	ids    map[string]int
	fail   int // answer 500 to this many requests first
	// failEach answers 500 to the first failEach requests of every event
	// (by webhook-id), however the requests of events interleave.
	failEach int
	tries    map[string]int
	delay    time.Duration
	bad      []string
}

type delivered struct {
	ID   string
	Type string
	Data map[string]any
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t, ids: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		http.Error(w, "temporarily down", http.StatusInternalServerError)
		return
	}
	if r.failEach > 0 {
		if r.tries == nil {
			r.tries = map[string]int{}
		}
		id := req.Header.Get("webhook-id")
		if r.tries[id]++; r.tries[id] <= r.failEach {
			http.Error(w, "temporarily down", http.StatusInternalServerError)
			return
		}
	}
	wh, err := standardwebhooks.NewWebhook(r.secret)
	if err != nil {
		r.bad = append(r.bad, "bad secret: "+err.Error())
		http.Error(w, "bad secret", http.StatusBadRequest)
		return
	}
	if err := wh.Verify(body, req.Header); err != nil {
		r.bad = append(r.bad, fmt.Sprintf("signature: %v", err))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var env struct {
		ID         string         `json:"id"`
		Type       string         `json:"type"`
		APIVersion string         `json:"api_version"`
		Data       map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.ID != req.Header.Get("webhook-id") || env.APIVersion == "" {
		r.bad = append(r.bad, fmt.Sprintf("envelope %s: %v", body, err))
		http.Error(w, "bad envelope", http.StatusBadRequest)
		return
	}
	r.ids[env.ID]++
	if r.ids[env.ID] == 1 {
		r.got = append(r.got, delivered{ID: env.ID, Type: env.Type, Data: env.Data})
	}
	w.WriteHeader(http.StatusNoContent)
}

// ofType returns the distinct events of a type received so far.
func (r *receiver) ofType(typ string) []delivered {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivered
	for _, d := range r.got {
		if d.Type == typ {
			out = append(out, d)
		}
	}
	return out
}

func (r *receiver) problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setupProgram creates a partner, a Stripe source and an endpoint on rcv
// through the API, and returns the source id and its secret.
func setupProgram(t testing.TB, h *hubUnderTest, rcv *receiver) (sourceID, secret string) {
	t.Helper()
	var partner map[string]any
	if st := h.api("POST", "/partners", map[string]any{"name": "Alice Example", "code": "alice"}, &partner); st != 201 {
		t.Fatalf("creating partner: %d %v", st, partner)
	}
	if st := h.api("PATCH", "/program", map[string]any{"default_commission_bps": 1500}, nil); st != 200 {
		t.Fatalf("patching program: %d", st)
	}
	secret = "whsec_test_" + randHex(8)
	var src map[string]any
	if st := h.api("POST", "/sources", map[string]any{"provider": "stripe", "name": "Stripe live", "secret": secret}, &src); st != 201 {
		t.Fatalf("creating source: %d %v", st, src)
	}
	if rcv != nil {
		var ep map[string]any
		if st := h.api("POST", "/endpoints", map[string]any{"url": rcv.srv.URL + "/hooks", "description": "automation"}, &ep); st != 201 {
			t.Fatalf("creating endpoint: %d %v", st, ep)
		}
		rcv.mu.Lock()
		rcv.secret, _ = ep["secret"].(string)
		rcv.mu.Unlock()
	}
	return src["id"].(string), secret
}

// checkoutCompleted is a checkout.session.completed event in Stripe's
// documented shape: amountTotal includes tax; ref goes in
// client_reference_id.
func checkoutCompleted(evtID, sessionID, paymentIntent, ref string, amountTotal, tax int64) []byte {
	return []byte(fmt.Sprintf(`{
  "id": %q,
  "object": "event",
  "api_version": "2024-06-20",
  "created": %d,
  "livemode": true,
  "pending_webhooks": 1,
  "request": {"id": null, "idempotency_key": null},
  "type": "checkout.session.completed",
  "data": {"object": {
    "id": %q,
    "object": "checkout.session",
    "mode": "payment",
    "status": "complete",
    "payment_status": "paid",
    "amount_subtotal": %d,
    "amount_total": %d,
    "currency": "usd",
    "client_reference_id": %q,
    "customer": "cus_%s",
    "customer_details": {"email": "buyer@example.com"},
    "invoice": null,
    "livemode": true,
    "metadata": {},
    "payment_intent": %q,
    "subscription": null,
    "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": %d}
  }}
}`, evtID, time.Now().Unix(), sessionID, amountTotal-tax, amountTotal, ref, sessionID, paymentIntent, tax))
}

// chargeRefunded is a charge.refunded event with a cumulative
// amount_refunded.
func chargeRefunded(evtID, chargeID, paymentIntent string, amount, refunded int64) []byte {
	return []byte(fmt.Sprintf(`{
  "id": %q,
  "object": "event",
  "api_version": "2024-06-20",
  "created": %d,
  "livemode": true,
  "type": "charge.refunded",
  "data": {"object": {
    "id": %q,
    "object": "charge",
    "amount": %d,
    "amount_captured": %d,
    "amount_refunded": %d,
    "currency": "usd",
    "customer": null,
    "livemode": true,
    "paid": true,
    "payment_intent": %q,
    "refunded": %t,
    "status": "succeeded"
  }}
}`, evtID, time.Now().Unix(), chargeID, amount, amount, refunded, paymentIntent, refunded == amount))
}
