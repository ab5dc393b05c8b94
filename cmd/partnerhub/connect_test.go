package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/partnerhub/partnerhub/connectors"
	"github.com/partnerhub/partnerhub/hub"
)

// stripeMockVersion is the stripe-mock .ci/run installs.
const stripeMockVersion = "v0.203.0"

// findStripeMock returns the stripe-mock binary from $PATH, $GOBIN or
// $(go env GOPATH)/bin; without it the test skips, or fails with CI=true.
func findStripeMock(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p
	}
	var dirs []string
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) == 2 {
			if lines[0] != "" {
				dirs = append(dirs, lines[0])
			}
			for _, p := range filepath.SplitList(lines[1]) {
				dirs = append(dirs, filepath.Join(p, "bin"))
			}
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "stripe-mock")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	msg := "stripe-mock not found in $PATH or " + strings.Join(dirs, ", ") +
		": install it with `go install github.com/stripe/stripe-mock@" + stripeMockVersion + "`"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true requires it)")
	}
	t.Skip(msg + "; with CI=true this is a failure")
	return ""
}

func freeLocalAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startStripeMock runs stripe-mock on 127.0.0.1 until the test ends. Its
// webhook endpoint fixture carries secret, the signing secret Stripe
// returns when it creates an endpoint (the bundled fixture has none).
func startStripeMock(t *testing.T, secret string) string {
	t.Helper()
	bin := findStripeMock(t)
	fixture := map[string]any{"resources": map[string]any{"webhook_endpoint": map[string]any{
		"id": "we_1Pgc6yB7WZ01zgkWzAudq4eU", "object": "webhook_endpoint", "api_version": nil, "application": nil,
		"created": 1234567890, "description": nil, "enabled_events": []string{"charge.succeeded"}, "livemode": false,
		"metadata": map[string]string{}, "secret": secret, "status": "enabled", "url": "https://example.com/webhooks",
	}}}
	path := filepath.Join(t.TempDir(), "fixtures.json")
	b, _ := json.Marshal(fixture)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 3 { // a free port can be taken between choosing and binding it
		addr := freeLocalAddr(t)
		cmd := exec.Command(bin, "-http-addr", addr, "-https-addr", freeLocalAddr(t), "-fixtures", path)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting stripe-mock: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case err := <-exited:
				lastErr = fmt.Errorf("stripe-mock exited: %v\n%s", err, logs.String())
			default:
				if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
					c.Close()
					t.Cleanup(func() {
						_ = cmd.Process.Kill()
						<-exited
					})
					return "http://" + addr
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			break
		}
		if lastErr == nil {
			_ = cmd.Process.Kill()
			<-exited
			lastErr = fmt.Errorf("stripe-mock did not answer on %s within 15s\n%s", addr, logs.String())
		}
	}
	t.Fatal(lastErr)
	return ""
}

// stripeRecorder sits in front of the Stripe API and records the requests
// stripe-go sends.
type stripeRecorder struct {
	mu   sync.Mutex
	reqs []recordedStripeRequest
}

type recordedStripeRequest struct {
	Method, Path, Version, Auth string
	Form                        url.Values
}

func (r *stripeRecorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		form, _ := url.ParseQuery(string(body))
		r.mu.Lock()
		r.reqs = append(r.reqs, recordedStripeRequest{req.Method, req.URL.Path, req.Header.Get("Stripe-Version"), req.Header.Get("Authorization"), form})
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, req)
	})
}

// TestSourcesConnectStripe: one command creates the source, registers its
// webhook URL with Stripe (stripe-mock) for the events the connector reads
// at the pinned API version, and stores the secret Stripe returns, so a
// webhook signed with it is accepted.
func TestSourcesConnectStripe(t *testing.T) {
	secret := "whsec_" + randHex(16)
	mock := startStripeMock(t, secret)
	base, _ := url.Parse(mock)
	rec := &stripeRecorder{}
	front := httptest.NewServer(rec.wrap(httputil.NewSingleHostReverseProxy(base)))
	t.Cleanup(front.Close)

	h := startHub(t, testEnv(t), Options{})
	env := map[string]string{"PARTNERHUB_URL": h.base, "PARTNERHUB_KEY": testAdminKey}
	out, err := runCLI(t, env, "sources", "connect", "stripe", "--api-key", "sk_test_123", "--name", "Stripe test",
		"--stripe-api-base", front.URL)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}

	var srcs struct {
		Data []struct {
			ID, Name, Provider string
			WebhookURL         string `json:"webhook_url"`
		} `json:"data"`
	}
	h.api("GET", "/sources", nil, &srcs)
	if len(srcs.Data) != 1 || srcs.Data[0].Name != "Stripe test" || srcs.Data[0].Provider != "stripe" {
		t.Fatalf("sources = %+v, want one Stripe source named Stripe test", srcs.Data)
	}
	src := srcs.Data[0]
	for _, want := range []string{"source:          " + src.ID, "webhook URL:     " + src.WebhookURL, "Stripe endpoint: we_",
		"API version " + stripe.APIVersion, "checkout.session.completed, checkout.session.async_payment_succeeded, invoice.paid",
		"secret stored"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, secret) {
		t.Error("the output shows the signing secret")
	}

	rec.mu.Lock()
	reqs := rec.reqs
	rec.mu.Unlock()
	if len(reqs) != 1 || reqs[0].Method != http.MethodPost || reqs[0].Path != "/v1/webhook_endpoints" {
		t.Fatalf("Stripe requests = %+v, want one POST /v1/webhook_endpoints", reqs)
	}
	r := reqs[0]
	if r.Auth != "Bearer sk_test_123" || r.Version != stripe.APIVersion || r.Form.Get("api_version") != stripe.APIVersion {
		t.Errorf("request auth %q, Stripe-Version %q, api_version %q; want the key and %s", r.Auth, r.Version, r.Form.Get("api_version"), stripe.APIVersion)
	}
	if r.Form.Get("url") != src.WebhookURL || r.Form.Get("metadata[partnerhub_source_id]") != src.ID {
		t.Errorf("request url %q metadata %q, want %s and %s", r.Form.Get("url"), r.Form.Get("metadata[partnerhub_source_id]"), src.WebhookURL, src.ID)
	}
	var events []string
	for i := 0; ; i++ {
		v, ok := r.Form[fmt.Sprintf("enabled_events[%d]", i)]
		if !ok {
			break
		}
		events = append(events, v...)
	}
	if !slices.Equal(events, stripeConnectEvents) {
		t.Errorf("enabled_events = %v, want %v", events, stripeConnectEvents)
	}

	body := checkoutCompleted("evt_connect_1", "cs_test_connect_1", "pi_connect_1", "alice", 5000, 0)
	if st, ack := h.postStripe(src.ID, secret, body); st != http.StatusOK {
		t.Fatalf("webhook signed with Stripe's secret: %d %v, want 200", st, ack)
	}
	if st, _ := h.postStripe(src.ID, "whsec_"+randHex(16), body); st != http.StatusUnauthorized {
		t.Fatalf("webhook signed with another secret: %d, want 401", st)
	}
}

// TestSourcesConnectStripeFailures: when Stripe refuses or cannot be
// reached, the command fails naming the source left without an endpoint,
// deletes nothing, and the source accepts no webhook.
func TestSourcesConnectStripeFailures(t *testing.T) {
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"type":"invalid_request_error","code":"url_invalid","message":"Invalid URL: URL must be publicly accessible.","param":"url"}}`)
	}))
	t.Cleanup(refusing.Close)
	down := "http://" + freeLocalAddr(t)

	h := startHub(t, testEnv(t), Options{})
	env := map[string]string{"PARTNERHUB_URL": h.base, "PARTNERHUB_KEY": testAdminKey}
	cases := []struct {
		name, base, want string
	}{
		{"Stripe refuses", refusing.URL, "Invalid URL: URL must be publicly accessible. (url_invalid), HTTP 400"},
		{"Stripe unreachable", down, "registering the webhook endpoint with Stripe"},
	}
	sourceIDs := func() []string {
		var srcs hub.List[struct {
			ID string `json:"id"`
		}]
		h.api("GET", "/sources", nil, &srcs)
		var ids []string
		for _, s := range srcs.Data {
			ids = append(ids, s.ID)
		}
		return ids
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := sourceIDs()
			out, err := runCLI(t, env, "sources", "connect", "stripe", "--api-key", "sk_test_123", "--stripe-api-base", c.base)
			if err == nil {
				t.Fatalf("connect succeeded:\n%s", out)
			}
			var id string
			for _, s := range sourceIDs() {
				if !slices.Contains(before, s) {
					id = s
				}
			}
			if id == "" {
				t.Fatal("no source was created, or it was deleted")
			}
			msg := err.Error()
			for _, want := range []string{c.want, "source " + id + " was created without a Stripe endpoint", "partnerhub sources update " + id} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q:\n%s", want, msg)
				}
			}
			if strings.Contains(msg, "sk_test_123") {
				t.Error("the error shows the API key")
			}
			body := checkoutCompleted("evt_fail_"+randHex(4), "cs_fail", "pi_fail", "alice", 5000, 0)
			if st, _ := h.postStripe(id, "whsec_pending_", body); st != http.StatusUnauthorized {
				t.Errorf("a webhook to the unconnected source answered %d, want 401", st)
			}
		})
	}
	t.Run("storing the secret fails", func(t *testing.T) {
		stripeAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"we_123","object":"webhook_endpoint","api_version":"2023-10-16","enabled_events":["invoice.paid"],"secret":"whsec_from_stripe","status":"enabled","url":"https://hub.example.com/in/src_1"}`)
		}))
		t.Cleanup(stripeAPI.Close)
		// A hub that creates sources but cannot update them.
		oldHub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if r.Method == http.MethodPost {
				w.WriteHeader(http.StatusCreated)
				_, _ = io.WriteString(w, `{"id":"src_1","provider":"stripe","webhook_url":"https://hub.example.com/in/src_1"}`)
				return
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = io.WriteString(w, `{"type":"about:blank","title":"Method Not Allowed","status":405}`)
		}))
		t.Cleanup(oldHub.Close)
		_, err := runCLI(t, map[string]string{"PARTNERHUB_URL": oldHub.URL, "PARTNERHUB_KEY": testAdminKey},
			"sources", "connect", "stripe", "--api-key", "sk_test_123", "--stripe-api-base", stripeAPI.URL)
		if err == nil {
			t.Fatal("connect succeeded")
		}
		for _, want := range []string{"Stripe endpoint we_123 in source src_1", "Method Not Allowed", "partnerhub sources update src_1 --secret"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		if strings.Contains(err.Error(), "whsec_from_stripe") {
			t.Error("the error shows the signing secret")
		}
	})
	t.Run("not a secret key", func(t *testing.T) {
		_, err := runCLI(t, env, "sources", "connect", "stripe", "--api-key", "pk_test_123")
		if err == nil || !strings.Contains(err.Error(), "sk_") {
			t.Fatalf("error %v, want one asking for a secret key", err)
		}
	})
}

// TestStripeConnectEvents: every event the endpoint subscribes to is one
// the Stripe connector reads.
func TestStripeConnectEvents(t *testing.T) {
	conn, _ := connectors.Default().Get("stripe")
	src := &hub.Source{Provider: "stripe"}
	for _, ev := range append(slices.Clone(stripeConnectEvents), "payment_intent.succeeded") {
		body := fmt.Sprintf(`{"id":"evt_1","object":"event","type":%q,"created":1700000000,"livemode":true,"data":{"object":{}}}`, ev)
		n, err := conn.Normalize(src, &hub.InboundEvent{Provider: "stripe", EventType: ev, Body: []byte(body)})
		if err == nil && strings.HasPrefix(n.Ignored, "unsupported event type") {
			t.Errorf("the Stripe connector does not read %s", ev)
		}
	}
}
