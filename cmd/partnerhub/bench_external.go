package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/partnerhub/partnerhub/connectors"
)

// benchWrkScript is the wrk script written beside --requests-out: it
// sends each request of the file once.
//
//go:embed bench_wrk.lua
var benchWrkScript []byte

// benchQuiet is how long the hub must accept nothing new, with every
// accepted sale delivered, before a run sent by another tool is over.
const benchQuiet = 3 * time.Second

// benchTarget is what a run needs to build its webhooks and read the hub.
type benchTarget struct {
	base  string
	httpc *http.Client
	setup *benchSetup
	event string
}

// vegetaTarget is one request in vegeta's JSON target format, which other
// load generators can read too: the body is base64.
type vegetaTarget struct {
	Method string      `json:"method"`
	URL    string      `json:"url"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
}

// writeBenchRequests writes n new sales, signed now, to path as vegeta
// targets, to path+".wrk" as raw HTTP/1.1 requests for the wrk script
// written to path+".wrk.lua", and registers them with tr. Each file
// appears whole or not at all.
func writeBenchRequests(path string, t benchTarget, tr *benchTracker, n int) error {
	in, err := url.Parse(t.base + "/in/" + url.PathEscape(t.setup.source.ID))
	if err != nil {
		return err
	}
	files := []string{path, path + ".wrk"}
	tmps := make([]*os.File, len(files))
	ws := make([]*bufio.Writer, len(files))
	for i, name := range files {
		f, err := os.Create(name + ".tmp")
		if err != nil {
			return fmt.Errorf("--requests-out: %w", err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		tmps[i], ws[i] = f, bufio.NewWriterSize(f, 1<<20)
	}
	enc := json.NewEncoder(ws[0])
	enc.SetEscapeHTML(false)
	var raw bytes.Buffer
	now := time.Now()
	for i := range n {
		sample, err := connectors.NewSample(t.setup.source, connectors.SampleRequest{Event: t.event, PartnerCode: t.setup.codes[i%len(t.setup.codes)]}, now)
		if err != nil {
			return fmt.Errorf("building sale %d: %w", i, err)
		}
		tr.register(i, sample.PaymentID, 0)
		if err := enc.Encode(vegetaTarget{Method: http.MethodPost, URL: in.String(), Header: sample.Header, Body: sample.Body}); err != nil {
			return fmt.Errorf("--requests-out: %w", err)
		}
		raw.Reset()
		fmt.Fprintf(&raw, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", in.RequestURI(), in.Host, len(sample.Body))
		for _, k := range slices.Sorted(maps.Keys(sample.Header)) {
			for _, v := range sample.Header[k] {
				fmt.Fprintf(&raw, "%s: %s\r\n", k, v)
			}
		}
		raw.WriteString("\r\n")
		raw.Write(sample.Body)
		fmt.Fprintf(ws[1], "%d\n", raw.Len())
		if _, err := ws[1].Write(raw.Bytes()); err != nil {
			return fmt.Errorf("--requests-out: %w", err)
		}
	}
	for i, f := range tmps {
		if err := ws[i].Flush(); err != nil {
			return fmt.Errorf("--requests-out: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("--requests-out: %w", err)
		}
	}
	if err := os.WriteFile(path+".wrk.lua", benchWrkScript, 0o644); err != nil {
		return fmt.Errorf("--requests-out: %w", err)
	}
	// The vegeta file last: its name is what a script waits for.
	for _, i := range []int{1, 0} {
		if err := os.Rename(tmps[i].Name(), files[i]); err != nil {
			return fmt.Errorf("--requests-out: %w", err)
		}
	}
	return nil
}

// removeBenchRequests removes the files of an earlier --requests-out run
// at path, so that nothing sends them while this run sets up.
func removeBenchRequests(path string) error {
	for _, name := range []string{path, path + ".wrk", path + ".wrk.lua"} {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--requests-out: %w", err)
		}
	}
	return nil
}

// runBenchExternal writes the run's webhooks for another load generator
// and measures the hub while that tool sends them: the hub's own count of
// accepted webhooks says which sales to expect at the receiver.
func runBenchExternal(ctx context.Context, c *apiClient, cfg benchConfig, t benchTarget, tr *benchTracker, rep *benchReport, stderr io.Writer) error {
	n := cfg.events
	// The first readings come before the files exist: a tool that starts
	// when they appear sends nothing the readings miss.
	m, err := startBenchMeasure(ctx, t.httpc, t.base, &cfg, stderr)
	if err != nil {
		return err
	}
	tr.start = time.Now()
	if err := writeBenchRequests(cfg.requestsOut, t, tr, n); err != nil {
		return err
	}
	written := time.Now() // the wait for the sender starts here
	rep.Mode, rep.Written, rep.Concurrency = "external", int64(n), 0
	u, _ := url.Parse(t.base)
	fmt.Fprintf(stderr, "bench: wrote %d signed %s webhooks to %s; send each once, for example\n"+
		"  wrk -t2 -c64 -d20s -s %s.wrk.lua %s -- %s.wrk 2\n"+
		"  vegeta attack -format=json -lazy -rate=2000 -duration=10s -targets=%s | vegeta report\n",
		n, cfg.provider, cfg.requestsOut, cfg.requestsOut, u.Scheme+"://"+u.Host, cfg.requestsOut, cfg.requestsOut)
	if cfg.provider == "stripe" {
		fmt.Fprintln(stderr, "bench: Stripe signatures are valid for 5 minutes from now")
	}
	fmt.Fprintf(stderr, "bench: waiting for them; the run ends %s after the hub accepts its last one and every accepted sale is delivered, or after %s without progress\n",
		benchQuiet, cfg.drainTimeout)

	var (
		accepted, seen  int64 // accepted webhooks: now, and at the first reading that had any
		firstAt, lastAt time.Time
		got             int64
		per             = int64(2 * cfg.endpoints)
		progressAt      = written
		changedAt       = written
		readErrors      = 0
	)
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	for done := false; !done && ctx.Err() == nil; {
		select {
		case <-ctx.Done():
			continue
		case <-poll.C:
		}
		now := time.Now()
		cur, err := scrapeMetrics(ctx, t.httpc, t.base)
		if err != nil {
			// A hub under load may answer late: give up only after 25
			// failed readings in a row.
			if readErrors++; readErrors >= 25 {
				return err
			}
			continue
		}
		readErrors = 0
		a := int64(cur.inbound["accepted"] - m.before.inbound["accepted"])
		_, _, g := tr.progress()
		if a != accepted || g != got {
			changedAt = now
		}
		if a > accepted {
			if seen == 0 {
				seen, firstAt = a, now
			}
			lastAt = now
		}
		accepted, got = a, g
		if now.Sub(progressAt) >= time.Second {
			progressAt = now
			fmt.Fprintf(stderr, "bench: accepted %d/%d  delivered %d/%d  elapsed %s\n",
				accepted, n, got, accepted*per, now.Sub(tr.start).Truncate(time.Second))
		}
		allDelivered := accepted > 0 && got >= accepted*per
		done = allDelivered && (accepted >= int64(n) || now.Sub(lastAt) >= benchQuiet) ||
			now.Sub(changedAt) >= cfg.drainTimeout
	}
	end, err := m.finish(ctx, rep)
	if err != nil {
		return err
	}
	rep.Inbound = map[string]int64{}
	for o, v := range end.inbound {
		if d := int64(v - m.before.inbound[o]); d > 0 {
			rep.Inbound[o] = d
		}
	}
	tr.mu.Lock()
	rep.DeliveriesReceived, rep.Duplicates, rep.Unmatched, rep.BadSignatures = tr.received, tr.duplicates, tr.unmatched, tr.badSignature
	firstDelivery, lastDelivery := tr.firstDelivery, tr.lastDelivery
	tr.mu.Unlock()
	rep.Accepted = rep.Inbound["accepted"]
	for _, v := range rep.Inbound {
		rep.Sent += v
	}
	if !firstAt.IsZero() {
		rep.WaitedSeconds = round3(firstAt.Sub(written).Seconds())
	}
	if lastAt.After(firstAt) {
		// Between the first and the last reading that saw new webhooks:
		// the webhooks accepted in that window over its length.
		rep.SendSeconds = round3(lastAt.Sub(firstAt).Seconds())
		rep.AcceptedPerSec = round3(float64(accepted-seen) / lastAt.Sub(firstAt).Seconds())
	}
	rep.Completed = int64(tr.e2e.Count())
	rep.DeliveriesExpected = rep.Accepted * per
	if lastDelivery > firstDelivery {
		rep.DeliveriesPerSec = round3(float64(rep.DeliveriesReceived) / (lastDelivery - firstDelivery).Seconds())
	}
	rep.Missing = max(rep.DeliveriesExpected-rep.DeliveriesReceived, 0)
	rep.IncompleteSales = max(rep.Accepted-rep.Completed, 0)
	return endBench(c, cfg, rep)
}
