//go:build faults

package faults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// post is one HTTP request of the load: when it was sent and answered, and
// the status (0 on a connection error).
type post struct {
	Webhook    int
	Hub        int
	Start, End time.Time
	Status     int
	Err        string
}

// load sends n signed Stripe checkout.session.completed webhooks, each a
// new sale attributed to the partner "alice", the way a provider does: a
// webhook not acknowledged with a 2xx (connection error, 5xx) is sent
// again, here at once to the next hub.
type load struct {
	t      testing.TB
	prog   program
	hubs   []*hubProcess
	prefix string
	n      int
	rate   float64 // new webhooks per second

	mu       sync.Mutex
	posts    []post
	accepted atomic.Int64
	done     chan struct{}
	failures []string
}

func newLoad(t testing.TB, prog program, prefix string, n int, rate float64, hubs ...*hubProcess) *load {
	return &load{t: t, prog: prog, hubs: hubs, prefix: prefix, n: n, rate: rate, done: make(chan struct{})}
}

// SessionID is the Stripe checkout session of webhook i.
func (l *load) SessionID(i int) string { return fmt.Sprintf("cs_%s_%04d", l.prefix, i) }

func (l *load) body(i int) []byte {
	id := fmt.Sprintf("%s_%04d", l.prefix, i)
	return checkoutCompleted("evt_"+id, l.SessionID(i), "pi_"+id, "alice", 10000+int64(i), 0)
}

// Start sends the webhooks in the background, at l.rate, with at most 16
// requests in flight, and gives each up to budget to be acknowledged.
func (l *load) Start(budget time.Duration) {
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		tick := time.NewTicker(time.Duration(float64(time.Second) / l.rate))
		defer tick.Stop()
		for i := range l.n {
			<-tick.C
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				l.deliver(client, i, time.Now().Add(budget))
			}()
		}
		wg.Wait()
	}()
}

// deliver sends webhook i until a hub acknowledges it, re-signing each
// time as a provider does.
func (l *load) deliver(client *http.Client, i int, deadline time.Time) {
	body := l.body(i)
	for try := 0; ; try++ {
		hub := (i + try) % len(l.hubs)
		p := l.send(client, hub, i, body)
		l.mu.Lock()
		l.posts = append(l.posts, p)
		l.mu.Unlock()
		switch {
		case p.Status >= 200 && p.Status < 300:
			l.accepted.Add(1)
			return
		case p.Status != 0 && p.Status != http.StatusServiceUnavailable:
			l.fail("webhook %d: unexpected status %d", i, p.Status)
			return
		case time.Now().After(deadline):
			l.fail("webhook %d: not acknowledged in time; last answer %d %s", i, p.Status, p.Err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (l *load) send(client *http.Client, hub, i int, body []byte) post {
	sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: l.prog.Secret, Timestamp: time.Now()})
	p := post{Webhook: i, Hub: hub, Start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.hubs[hub].Base+"/in/"+l.prog.SourceID, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", sp.Header)
	res, err := client.Do(req)
	if err != nil {
		p.End, p.Err = time.Now(), err.Error()
		return p
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	p.End, p.Status = time.Now(), res.StatusCode
	return p
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, fmt.Sprintf(format, args...))
}

// Accepted is how many webhooks were acknowledged so far.
func (l *load) Accepted() int { return int(l.accepted.Load()) }

// Wait waits for the load to end and fails the test unless every webhook
// was acknowledged.
func (l *load) Wait(timeout time.Duration) {
	l.t.Helper()
	select {
	case <-l.done:
	case <-time.After(timeout):
		l.t.Fatalf("the load did not end within %s (%d of %d acknowledged)", timeout, l.Accepted(), l.n)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) > 0 {
		l.t.Fatalf("%d webhooks failed, first: %v", len(l.failures), l.failures[:min(5, len(l.failures))])
	}
	if l.Accepted() != l.n {
		l.t.Fatalf("%d of %d webhooks acknowledged", l.Accepted(), l.n)
	}
}

// Posts returns every request sent so far.
func (l *load) Posts() []post {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]post(nil), l.posts...)
}

// count returns how many requests so far match f.
func (l *load) count(f func(post) bool) int {
	n := 0
	for _, p := range l.Posts() {
		if f(p) {
			n++
		}
	}
	return n
}

// checkoutCompleted is a checkout.session.completed event in Stripe's
// documented shape; ref goes in client_reference_id.
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
