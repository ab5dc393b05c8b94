package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// testSecret is a Standard Webhooks secret: whsec_ and base64 key bytes.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// syncBuffer is a log sink the handler and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// signed returns a delivery as partnerhub sends it: the envelope and the
// Standard Webhooks headers signed with secret at ts.
func signed(t *testing.T, secret, id string, ts time.Time, body string) *http.Request {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("webhook-id", id)
	r.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set("webhook-signature", sig)
	return r
}

func envelope(id string) string {
	return `{"id":"` + id + `","type":"commission.created","api_version":"2026-11-01","created_at":"2026-11-24T08:00:00Z","program_id":"prg_default","data":{"net_minor":735}}`
}

// TestReceiver: a signed delivery is accepted and printed, a tampered or
// stale one is refused with 400, and a replayed id is answered 200 and
// logged as a duplicate once, never handled twice.
func TestReceiver(t *testing.T) {
	var logs syncBuffer
	h, err := newReceiver(testSecret, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	serve := func(r *http.Request) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	now := time.Now()

	if code := serve(signed(t, testSecret, "evt_1", now, envelope("evt_1"))); code != http.StatusOK {
		t.Fatalf("signed delivery: %d, want 200", code)
	}
	if !strings.Contains(logs.String(), `msg="webhook received" type=commission.created id=evt_1`) {
		t.Errorf("the delivery is not printed:\n%s", logs.String())
	}

	t.Run("tampered body", func(t *testing.T) {
		r := signed(t, testSecret, "evt_2", now, envelope("evt_2"))
		r.Body = io.NopCloser(strings.NewReader(strings.Replace(envelope("evt_2"), "735", "99999", 1)))
		if code := serve(r); code != http.StatusBadRequest {
			t.Fatalf("tampered delivery: %d, want 400", code)
		}
	})
	t.Run("another secret", func(t *testing.T) {
		if code := serve(signed(t, "whsec_"+strings.Repeat("QUJD", 8), "evt_3", now, envelope("evt_3"))); code != http.StatusBadRequest {
			t.Fatalf("delivery signed with another secret: %d, want 400", code)
		}
	})
	t.Run("stale timestamp", func(t *testing.T) {
		if code := serve(signed(t, testSecret, "evt_4", now.Add(-time.Hour), envelope("evt_4"))); code != http.StatusBadRequest {
			t.Fatalf("delivery signed an hour ago: %d, want 400", code)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(envelope("evt_5")))
		if code := serve(r); code != http.StatusBadRequest {
			t.Fatalf("unsigned delivery: %d, want 400", code)
		}
	})

	// partnerhub retries with the same webhook-id and a fresh signature.
	if code := serve(signed(t, testSecret, "evt_1", now.Add(time.Second), envelope("evt_1"))); code != http.StatusOK {
		t.Fatalf("replayed delivery: %d, want 200", code)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="duplicate webhook ignored" type=commission.created id=evt_1`); n != 1 {
		t.Errorf("duplicate logged %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, `msg="webhook received"`); n != 1 {
		t.Errorf("%d deliveries handled, want 1 (refused and duplicate ones are not):\n%s", n, out)
	}
	if strings.Contains(out, testSecret) || strings.Contains(out, "net_minor") {
		t.Errorf("the log shows the secret or a body:\n%s", out)
	}
}

func TestReceiverNeedsSecret(t *testing.T) {
	for _, s := range []string{"", "whsec_not base64!"} {
		if _, err := newReceiver(s, slog.Default()); err == nil {
			t.Errorf("secret %q accepted", s)
		}
	}
}

func TestSeenIDsForgetsOldest(t *testing.T) {
	s := newSeenIDs(2)
	for _, id := range []string{"a", "b", "c"} {
		if !s.add(id) {
			t.Fatalf("%s reported as seen", id)
		}
	}
	if !s.add("a") || s.add("c") {
		t.Fatal("want a forgotten and c remembered")
	}
}
