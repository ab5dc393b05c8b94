package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/bits"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// maxBenchEndpoints is how many endpoints the bench may subscribe
// (--endpoints): every sale is expected at each of them twice, as
// conversion.created and as commission.created.
const maxBenchEndpoints = 2

// Delivery bits of a sale: event type × endpoint.
const (
	bitConversion = 1 << 0                 // conversion.created at endpoint 0; << 1 for endpoint 1
	bitCommission = 1 << maxBenchEndpoints // commission.created at endpoint 0; << 1 for endpoint 1
)

// saleBits is the delivery bits of a complete sale with n endpoints.
func saleBits(n int) uint8 {
	ep := uint8(1)<<n - 1
	return ep*bitConversion | ep*bitCommission
}

// benchSale is one sale the bench sends.
type benchSale struct {
	sent   time.Duration // since the run started: the scheduled send time
	status int16         // the /in answer; 0 none yet, -1 the request failed
	got    uint8         // delivery bits received
}

// benchTracker matches the deliveries received to the sales sent. A
// conversion.created names its payment among its keys; a
// commission.created names its conversion. Ids are kept as 64-bit hashes,
// so a million sales cost tens of megabytes.
type benchTracker struct {
	start     time.Time
	seed      maphash.Seed
	e2e       latencyHist
	endpoints int   // endpoints subscribed
	all       uint8 // the delivery bits of a complete sale

	mu            sync.Mutex
	sales         []benchSale
	byPayment     map[uint64]int32
	byConversion  map[uint64]int32
	parked        map[uint64]uint8 // commission bits of conversions not known yet
	sent          int64
	answered      int64
	accepted      int64
	statuses      map[string]int64 // non-2xx answers by status, "error" for failed requests
	received      int64            // distinct deliveries of sales
	duplicates    int64
	unmatched     int64 // deliveries of no sale the bench sent
	pings         int64
	other         int64 // other event types
	badSignature  int64
	firstDelivery time.Duration
	lastDelivery  time.Duration
	// outstanding is the deliveries accepted sales still lack.
	outstanding int64
}

func newBenchTracker(n, endpoints int, start time.Time) *benchTracker {
	return &benchTracker{
		start:        start,
		endpoints:    endpoints,
		all:          saleBits(endpoints),
		seed:         maphash.MakeSeed(),
		sales:        make([]benchSale, n),
		byPayment:    make(map[uint64]int32, min(n, 1<<16)),
		byConversion: make(map[uint64]int32, min(n, 1<<16)),
		parked:       map[uint64]uint8{},
		statuses:     map[string]int64{},
	}
}

func (t *benchTracker) hash(s string) uint64 { return maphash.String(t.seed, s) }

// register notes sale i, scheduled at sent, before its webhook goes out.
func (t *benchTracker) register(i int, paymentID string, sent time.Duration) {
	h := t.hash(paymentID)
	t.mu.Lock()
	t.sales[i].sent = sent
	t.byPayment[h] = int32(i)
	t.sent++
	t.mu.Unlock()
}

// answered records the /in answer of sale i: an HTTP status, or -1.
func (t *benchTracker) answer(i, status int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sales[i].status = int16(status)
	t.answered++
	switch {
	case status >= 200 && status <= 299:
		t.accepted++
		t.outstanding += int64(2*t.endpoints - bits.OnesCount8(t.sales[i].got))
	case status < 0:
		t.statuses["error"]++
	default:
		t.statuses[strconv.Itoa(status)]++
	}
}

// delivered records one verified delivery at endpoint ep, received at
// at (since the start).
func (t *benchTracker) delivered(ep int, typ string, data benchEventData, at time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch typ {
	case "ping":
		t.pings++
		return
	case "conversion.created":
		ch := t.hash(data.ID)
		i, ok := t.byConversion[ch]
		if !ok {
			i, ok = t.findPayment(data.Keys)
			if !ok {
				t.unmatched++
				return
			}
			t.byConversion[ch] = i
			if p, ok := t.parked[ch]; ok {
				delete(t.parked, ch)
				for b := uint8(bitCommission); b&t.all != 0; b <<= 1 {
					if p&b != 0 {
						t.mark(i, b, at)
					}
				}
			}
		}
		t.mark(i, bitConversion<<ep, at)
	case "commission.created":
		ch := t.hash(data.ConversionID)
		b := uint8(bitCommission << ep)
		i, ok := t.byConversion[ch]
		if !ok {
			// The conversion.created of the sale is still on its way.
			if t.parked[ch]&b != 0 {
				t.duplicates++
				return
			}
			t.parked[ch] |= b
			return
		}
		t.mark(i, b, at)
	default:
		t.other++
	}
}

// findPayment finds the sale whose payment id is among keys, and forgets
// the payment: the conversion id names the sale from now on.
func (t *benchTracker) findPayment(keys []string) (int32, bool) {
	for _, k := range keys {
		for _, cand := range []string{k, k[strings.LastIndexByte(k, ':')+1:]} {
			h := t.hash(cand)
			if i, ok := t.byPayment[h]; ok {
				delete(t.byPayment, h)
				return i, true
			}
		}
	}
	return 0, false
}

func (t *benchTracker) mark(i int32, b uint8, at time.Duration) {
	s := &t.sales[i]
	if s.got&b != 0 {
		t.duplicates++
		return
	}
	s.got |= b
	t.received++
	if s.status >= 200 && s.status <= 299 {
		t.outstanding--
	}
	t.lastDelivery = max(t.lastDelivery, at)
	if t.firstDelivery == 0 || at < t.firstDelivery {
		t.firstDelivery = at
	}
	if s.got == t.all {
		t.e2e.Record(at - s.sent)
	}
}

// missing counts the deliveries that accepted sales still lack, and those
// sales.
func (t *benchTracker) missing() (deliveries, sales int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.sales {
		s := &t.sales[i]
		if s.status >= 200 && s.status <= 299 && s.got != t.all {
			deliveries += int64(2*t.endpoints - bits.OnesCount8(s.got))
			sales++
		}
	}
	return deliveries, sales
}

// pending is the number of deliveries accepted sales still lack.
func (t *benchTracker) pending() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.outstanding
}

// progress returns the counters the progress line shows.
func (t *benchTracker) progress() (sent, accepted, delivered int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sent, t.accepted, t.received
}

// benchEventData is what the bench reads of an event's data.
type benchEventData struct {
	ID           string   `json:"id"`
	Keys         []string `json:"keys"`
	ConversionID string   `json:"conversion_id"`
}

// benchReceiver is the endpoints' server: POST /ep/{n} verifies the
// Standard Webhooks signature with endpoint n's secret and hands the
// event to the tracker.
type benchReceiver struct {
	t   *benchTracker
	ln  net.Listener
	srv *http.Server
	wh  [maxBenchEndpoints]*standardwebhooks.Webhook
}

func startBenchReceiver(addr string, t *benchTracker) (*benchReceiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("starting the receiver: %w", err)
	}
	r := &benchReceiver{t: t, ln: ln}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL is the address endpoint n is to be created with.
func (r *benchReceiver) URL(n int) string {
	return fmt.Sprintf("http://%s/ep/%d", r.ln.Addr(), n)
}

// setSecret sets endpoint n's signing secret, before any delivery.
func (r *benchReceiver) setSecret(n int, secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("reading endpoint secret: %w", err)
	}
	r.wh[n] = wh
	return nil
}

func (r *benchReceiver) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return r.srv.Shutdown(ctx)
}

func (r *benchReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Since(r.t.start)
	n, err := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/ep/"))
	if req.Method != http.MethodPost || err != nil || n < 0 || n >= maxBenchEndpoints || r.wh[n] == nil {
		http.NotFound(w, req)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 1<<20))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	if err := r.wh[n].Verify(body, req.Header); err != nil {
		r.t.mu.Lock()
		r.t.badSignature++
		r.t.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var env struct {
		ID   string         `json:"id"`
		Type string         `json:"type"`
		Data benchEventData `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.ID != req.Header.Get("webhook-id") {
		http.Error(w, "bad envelope", http.StatusBadRequest)
		return
	}
	r.t.delivered(n, env.Type, env.Data, at)
	w.WriteHeader(http.StatusNoContent)
}

var errBenchMissing = errors.New("deliveries are missing")
