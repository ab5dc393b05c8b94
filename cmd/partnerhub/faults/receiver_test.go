//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// receiver is a partner's automation on 127.0.0.1: it verifies every
// delivery with the Standard Webhooks reference library and records the
// event ids it accepted. fault, when set, may answer a request itself
// (returning true) instead of accepting it; it sees how many requests
// for the event came before this one.
type receiver struct {
	t     testing.TB
	srv   *httptest.Server
	mu    sync.Mutex
	wh    *standardwebhooks.Webhook
	fault func(w http.ResponseWriter, eventID string, earlier int) bool
	delay time.Duration

	requests map[string][]time.Time // event id → arrival of each request
	accepted map[string]string      // event id → type, once accepted
	bad      []string
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t, requests: map[string][]time.Time{}, accepted: map[string]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the endpoint URL to register.
func (r *receiver) URL() string { return r.srv.URL + "/hooks" }

// SetSecret sets the endpoint's whsec_ secret.
func (r *receiver) SetSecret(secret string) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		r.t.Fatalf("endpoint secret: %v", err)
	}
	r.mu.Lock()
	r.wh = wh
	r.mu.Unlock()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	earlier := len(r.requests[id])
	r.requests[id] = append(r.requests[id], time.Now())
	wh, fault := r.wh, r.fault
	r.mu.Unlock()
	if fault != nil && fault(w, id, earlier) {
		return
	}
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	if wh == nil {
		http.Error(w, "no secret yet", http.StatusServiceUnavailable)
		return
	}
	if err := wh.Verify(body, req.Header); err != nil {
		r.problem("event %s: signature: %v", id, err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var env struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.ID != id || env.Type == "" {
		r.problem("event %s: envelope %.200s: %v", id, body, err)
		http.Error(w, "bad envelope", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.accepted[id] = env.Type
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bad = append(r.bad, fmt.Sprintf(format, args...))
}

// Accepted returns a copy of the accepted event ids and their types.
func (r *receiver) Accepted() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.accepted))
	for k, v := range r.accepted {
		out[k] = v
	}
	return out
}

// Requests returns the arrival times of the requests for an event.
func (r *receiver) Requests(id string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.requests[id]...)
}

// Problems returns deliveries the receiver rejected as malformed.
func (r *receiver) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}
