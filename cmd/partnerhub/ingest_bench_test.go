package main

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// BenchmarkIngest measures the ingest path alone — verify the Stripe
// signature, store the raw webhook durably, queue its processing, answer
// 200 — on a hub serving only the api and ingest roles (no worker competes
// for the CPU), with 64 concurrent senders on keep-alive connections.
// Embedded defaults, or PostgreSQL and Redis when DATABASE_URL and
// REDIS_URL are set:
//
//	go test -run '^$' -bench BenchmarkIngest -benchtime 20000x ./cmd/partnerhub/
//	DATABASE_URL=postgres://… REDIS_URL=redis://… go test -run '^$' -bench BenchmarkIngest -benchtime 50000x ./cmd/partnerhub/
//
// Reported: webhooks/s and the latency percentiles of the answers.
func BenchmarkIngest(b *testing.B) {
	env := testEnv(b)
	env["PARTNERHUB_ROLES"] = "api,ingest"
	env["PARTNERHUB_LOG_LEVEL"] = "warn"
	h := startHub(b, env, Options{})
	secret := "whsec_bench_" + randHex(8)
	var src map[string]any
	if st := h.api("POST", "/sources", map[string]any{"provider": "stripe", "secret": secret}, &src); st != 201 {
		b.Fatalf("creating source: %d", st)
	}
	url := h.base + "/in/" + src["id"].(string)
	tr := &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	b.Cleanup(tr.CloseIdleConnections)
	run := randHex(4)
	const senders = 64
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < b.N; i = int(next.Add(1)) - 1 {
				id := run + strconv.Itoa(i)
				body := checkoutCompleted("evt_"+id, "cs_"+id, "pi_"+id, "alice", 4900, 0)
				now := time.Now()
				sig := "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=" + hex.EncodeToString(webhook.ComputeSignature(now, body, secret))
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Stripe-Signature", sig)
				t0 := time.Now()
				res, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				lat[i] = time.Since(t0)
				if res.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d webhooks were not answered 200", n, b.N)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "webhooks/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(pct(0.999), "p999_ms")
	var list struct {
		Data []map[string]any `json:"data"`
	}
	h.api("GET", "/inbound-events?limit=1", nil, &list)
	if len(list.Data) != 1 {
		b.Fatalf("no inbound event stored: %v", list)
	}
}
