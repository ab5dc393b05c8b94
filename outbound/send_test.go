package outbound_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/outbound"
)

func TestEndpointTimeout(t *testing.T) {
	hang := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	tests := []struct {
		name      string
		timeoutMS int
		maxTime   time.Duration
	}{
		{name: "endpoint's own timeout", timeoutMS: 150, maxTime: time.Second},
		{name: "dispatcher default", maxTime: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, hang)
			ep := &hub.Endpoint{URL: rc.URL, Enabled: true, EndpointSettings: hub.EndpointSettings{TimeoutMS: tt.timeoutMS}}
			w := newWorld(t, outbound.Config{Timeout: 400 * time.Millisecond}, ep)
			id := w.event(t, "commission.created")[ep.ID].ID
			start := time.Now()
			w.deliver(t, id, 1)
			el := time.Since(start)
			d := w.get(t, id)
			if len(d.AttemptLog) != 1 || errorClass(d.AttemptLog[0].Error) != "timeout" {
				t.Fatalf("attempts %+v, want one timeout", d.AttemptLog)
			}
			want := 400 * time.Millisecond
			if tt.timeoutMS > 0 {
				want = time.Duration(tt.timeoutMS) * time.Millisecond
			}
			if el < want || el > tt.maxTime {
				t.Errorf("attempt took %v, want about %v", el, want)
			}
		})
	}
}

func TestCustomHeaders(t *testing.T) {
	rc := newReceiver(t, reply(204, ""))
	ep := &hub.Endpoint{URL: rc.URL, Enabled: true, EndpointSettings: hub.EndpointSettings{Headers: map[string]string{
		"Authorization":     "Bearer partner-token",
		"X-Tenant":          "acme",
		"webhook-signature": "v1,forged",
		"Webhook-Id":        "evt_forged",
		"webhook-other":     "x",
		"Content-Type":      "text/plain",
		"User-Agent":        "not-partnerhub",
		"Host":              "evil.example",
		"Content-Length":    "1",
		"Transfer-Encoding": "chunked",
		"X-Split":           "a\r\nX-Injected: 1",
		"Bad Name":          "x",
	}}}
	w := newWorld(t, outbound.Config{}, ep)
	id := w.event(t, "commission.created")[ep.ID].ID
	w.deliver(t, id, 1)
	if d := w.get(t, id); d.Status != hub.DeliverySucceeded {
		t.Fatalf("delivery %q (%s), want succeeded", d.Status, d.LastError)
	}
	reqs := rc.Requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(reqs))
	}
	h := reqs[0].Header
	for name, want := range map[string]string{
		"Authorization": "Bearer partner-token",
		"X-Tenant":      "acme",
		"Content-Type":  "application/json",
		"User-Agent":    "partnerhub-webhooks/1",
		"Webhook-Other": "",
		"X-Split":       "",
		"X-Injected":    "",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := h.Values("Webhook-Id"); len(got) != 1 || !strings.HasPrefix(got[0], "evt_") || got[0] == "evt_forged" {
		t.Errorf("webhook-id = %q, want the event id once", got)
	}
	if got := h.Values("Webhook-Signature"); len(got) != 1 || strings.Contains(got[0], "forged") {
		t.Errorf("webhook-signature = %q, want partnerhub's only", got)
	}
	wh, _ := standardwebhooks.NewWebhook(ep.Secret)
	if err := wh.VerifyIgnoringTimestamp(reqs[0].Body, h); err != nil {
		t.Errorf("reference library: %v", err)
	}
}

func TestRotationSignsWithBothSecrets(t *testing.T) {
	oldSecret, newSecret := outbound.NewSecret(), outbound.NewSecret()
	until := base.Add(24 * time.Hour)
	tests := []struct {
		name     string
		at       time.Time
		wantSigs int
		oldValid bool
	}{
		{name: "during the grace period", at: base.Add(time.Hour), wantSigs: 2, oldValid: true},
		{name: "after the grace period", at: until.Add(time.Second), wantSigs: 1, oldValid: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, reply(204, ""))
			ep := &hub.Endpoint{URL: rc.URL, Enabled: true, Secret: newSecret, PreviousSecret: oldSecret, PreviousSecretUntil: &until}
			w := newWorld(t, outbound.Config{}, ep)
			w.clk.t = tt.at
			w.deliver(t, w.event(t, "commission.created")[ep.ID].ID, 1)
			reqs := rc.Requests()
			if len(reqs) != 1 {
				t.Fatalf("receiver got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if n := len(strings.Fields(r.Header.Get("webhook-signature"))); n != tt.wantSigs {
				t.Errorf("%d signatures, want %d: %q", n, tt.wantSigs, r.Header.Get("webhook-signature"))
			}
			for _, c := range []struct {
				name   string
				secret string
				valid  bool
			}{{"new secret", newSecret, true}, {"previous secret", oldSecret, tt.oldValid}} {
				wh, err := standardwebhooks.NewWebhook(c.secret)
				if err != nil {
					t.Fatal(err)
				}
				if err := wh.VerifyIgnoringTimestamp(r.Body, r.Header); (err == nil) != c.valid {
					t.Errorf("%s: reference library verify error = %v, want valid %v", c.name, err, c.valid)
				}
			}
		})
	}
}

func TestResponseHeadersRecorded(t *testing.T) {
	rc := newReceiver(t, reply(429, "slow down",
		"Content-Type", "text/plain; charset=utf-8",
		"Retry-After", "120",
		"X-Request-ID", "req_123",
		"Set-Cookie", "session=abc",
		"X-Internal-Token", "t0ken",
		"Server", "receiver/1.0 "+strings.Repeat("x", 400),
	))
	ep := &hub.Endpoint{URL: rc.URL, Enabled: true}
	w := newWorld(t, outbound.Config{}, ep)
	id := w.event(t, "commission.created")[ep.ID].ID
	w.deliver(t, id, 1)
	d := w.get(t, id)
	if len(d.AttemptLog) != 1 {
		t.Fatalf("%d attempts, want 1", len(d.AttemptLog))
	}
	got := d.AttemptLog[0].ResponseHeaders
	want := map[string]string{
		"Content-Type":   "text/plain; charset=utf-8",
		"Content-Length": "9",
		"Retry-After":    "120",
		"X-Request-Id":   "req_123",
		"Server":         ("receiver/1.0 " + strings.Repeat("x", 400))[:256],
		"Date":           got["Date"],
	}
	if got["Date"] == "" {
		t.Error("Date not recorded")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recorded response headers (-want +got):\n%s", diff)
	}
}

func TestOnlyHTTPURLs(t *testing.T) {
	for _, u := range []string{"ftp://127.0.0.1/hook", "file:///etc/passwd", "gopher://127.0.0.1:70/x", "http:///nohost"} {
		t.Run(u, func(t *testing.T) {
			ep := &hub.Endpoint{URL: u, Enabled: true}
			w := newWorld(t, outbound.Config{}, ep)
			id := w.event(t, "commission.created")[ep.ID].ID
			w.deliver(t, id, 1)
			d := w.get(t, id)
			if len(d.AttemptLog) != 1 || errorClass(d.AttemptLog[0].Error) != "invalid_url" {
				t.Errorf("attempts %+v, want one invalid_url", d.AttemptLog)
			}
		})
	}
}
