// Command receiver-go receives partnerhub's webhooks: it verifies each
// delivery's Standard Webhooks signature with the reference library,
// refuses bad ones with 400, skips deliveries it has already seen (same
// webhook-id) and answers 200 at once, leaving the work to a queue.
//
//	WEBHOOK_SECRET=whsec_… ADDR=:4000 go run ./examples/receiver-go
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// maxBody caps request bodies; partnerhub's events are a few kilobytes.
const maxBody = 1 << 20

func main() {
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	secret := os.Getenv("WEBHOOK_SECRET")
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":4000"
	}
	h, err := newReceiver(secret, log)
	if err != nil {
		log.Error("WEBHOOK_SECRET must be the endpoint's whsec_… signing secret", "error", err)
		os.Exit(2)
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("listening for partnerhub webhooks", "addr", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serving", "error", err)
		os.Exit(1)
	}
}

// receiver verifies and dedupes deliveries.
type receiver struct {
	wh   *standardwebhooks.Webhook
	log  *slog.Logger
	seen *seenIDs
}

// newReceiver returns the webhook handler for the endpoint secret
// ("whsec_…").
func newReceiver(secret string, log *slog.Logger) (http.Handler, error) {
	if secret == "" {
		return nil, errors.New("no secret")
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	return &receiver{wh: wh, log: log, seen: newSeenIDs(100_000)}, nil
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large or unreadable", http.StatusBadRequest)
		return
	}
	// Verify checks the signature over webhook-id, webhook-timestamp and
	// the raw body, and that the timestamp is within five minutes.
	if err := rc.wh.Verify(body, r.Header); err != nil {
		rc.log.Warn("webhook refused", "reason", err.Error())
		http.Error(w, "invalid signature", http.StatusBadRequest)
		return
	}
	var ev struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" {
		http.Error(w, "not a partnerhub event", http.StatusBadRequest)
		return
	}
	// webhook-id is the event id, the same on every retry: a delivery
	// seen before was handled already.
	if !rc.seen.add(r.Header.Get("webhook-id")) {
		rc.log.Info("duplicate webhook ignored", "type", ev.Type, "id", ev.ID)
		w.WriteHeader(http.StatusOK)
		return
	}
	rc.log.Info("webhook received", "type", ev.Type, "id", ev.ID)
	// Answer now; real work (updating a CRM, paying a partner) belongs in
	// a queue fed from here, so partnerhub never waits on it.
	w.WriteHeader(http.StatusOK)
}

// seenIDs remembers the last max webhook ids. A production receiver keeps
// them in its database (a unique index on the event id) so restarts and
// several replicas agree: partnerhub retries a delivery for more than a
// day, and an operator may replay an event, with the same id, any time.
type seenIDs struct {
	mu    sync.Mutex
	max   int
	ids   map[string]struct{}
	order []string
}

func newSeenIDs(max int) *seenIDs {
	return &seenIDs{max: max, ids: map[string]struct{}{}}
}

// add records id and reports whether it is new.
func (s *seenIDs) add(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		return false
	}
	s.ids[id] = struct{}{}
	s.order = append(s.order, id)
	if len(s.order) > s.max {
		delete(s.ids, s.order[0])
		s.order = s.order[1:]
	}
	return true
}
