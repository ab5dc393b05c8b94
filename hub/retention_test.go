package hub_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// TestRetention: the retention job erases, in bounded batches, the raw
// bodies and headers of events older than the period, and nothing else:
// conversions, refunds and the ledger stay, the event keeps its metadata
// and results and shows when its body was purged, events waiting to be
// processed and recent ones keep their bodies, and a purged event cannot
// be reprocessed.
func TestRetention(t *testing.T) {
	h := newInboundHub(t)
	day := 24 * time.Hour
	headers := map[string]string{"X-Shopify-Topic": "orders/paid"}
	at := func(d time.Duration) { h.now = t0.Add(d) }

	at(-100 * day)
	saleID := h.ingest(h.src, sale([]string{"pay_1"}, 10000, 12000, hub.Hints{PartnerCode: "alice"}), headers)
	at(-95 * day)
	refundID := h.ingest(h.src, refund([]string{"pay_1"}, "re_1", 6000, hub.RefundSucceeded, t0.Add(-95*day)), headers)
	h.drain()
	at(-92 * day)
	h.broken.Store(true)
	failedID := h.ingest(h.src, sale([]string{"pay_2"}, 500, 500, hub.Hints{}), headers)
	h.drain()
	h.broken.Store(false)
	at(-10 * day)
	recentID := h.ingest(h.src, sale([]string{"pay_3"}, 700, 700, hub.Hints{}), headers)
	h.drain()
	at(-91 * day)
	waitingID := h.ingest(h.src, sale([]string{"pay_4"}, 900, 900, hub.Hints{}), headers)
	h.q.mu.Lock()
	h.q.process = nil // its task is lost: it stays received
	h.q.mu.Unlock()
	at(0)
	before := h.money()
	saleBefore := h.detail(saleID, adminKey)

	r, err := hub.NewRetention(hub.RetentionConfig{Store: h.st, BatchSize: 1, MaxPerRun: 2, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	var runs []int64
	for range 3 {
		n, err := r.Run(context.Background())
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		runs = append(runs, n)
	}
	if runs[0] != 2 || runs[1] != 1 || runs[2] != 0 {
		t.Errorf("purged per run %v, want [2 1 0] (at most 2 per run, 3 in all)", runs)
	}

	for _, id := range []string{saleID, refundID, failedID} {
		d := h.detail(id, adminKey)
		if d.BodyPurgedAt == nil || !d.BodyPurgedAt.Equal(t0) || d.Body != nil || len(d.Headers) != 0 {
			t.Errorf("%s after retention: purged %v body %v headers %v", id, d.BodyPurgedAt, d.Body, d.Headers)
		}
	}
	d := h.detail(saleID, adminKey)
	if d.Status != saleBefore.Status || d.ProcessedAt == nil || len(d.Results.ConversionIDs) != 1 || d.Results.ConversionIDs[0] != saleBefore.Results.ConversionIDs[0] {
		t.Errorf("the purged sale lost its metadata or results: %+v, was %+v", d, saleBefore)
	}
	for _, id := range []string{recentID, waitingID} {
		if d := h.detail(id, adminKey); d.Body == nil || d.BodyPurgedAt != nil || d.Headers["X-Shopify-Topic"] != "orders/paid" {
			t.Errorf("%s lost its body: %+v", id, d)
		}
	}
	if after := h.money(); after != before {
		t.Errorf("retention changed money:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	var p hub.Problem
	if st := h.call("POST", "/api/v1/inbound-events/"+failedID+"/reprocess", adminKey, nil, &p); st != http.StatusConflict {
		t.Errorf("reprocessing a purged event: %d %+v, want 409", st, p)
	}
	var a reprocessAnswer
	if st := h.call("POST", "/api/v1/inbound-events/reprocess", opsKey, map[string]any{"status": "failed"}, &a); st != http.StatusOK || a.Requeued != 0 {
		t.Errorf("bulk reprocess of purged failed events: %d %+v, want nothing requeued", st, a)
	}
	// The waiting event is still processed normally.
	if err := h.svc.Process(context.Background(), waitingID); err != nil {
		t.Fatal(err)
	}
	if d := h.detail(waitingID, viewerKey); d.Status != hub.InboundProcessed {
		t.Errorf("the waiting event is %s after processing", d.Status)
	}
}

func TestNewRetention(t *testing.T) {
	if _, err := hub.NewRetention(hub.RetentionConfig{}); err == nil {
		t.Error("NewRetention without a store succeeded")
	}
	h := newInboundHub(t)
	if _, err := hub.NewRetention(hub.RetentionConfig{Store: h.st, Period: -time.Hour}); err == nil {
		t.Error("NewRetention with a negative period succeeded")
	}
}
