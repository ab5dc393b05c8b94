package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/partnerhub/partnerhub/connectors"
	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/metrics"
)

// benchConfig is what the flags of `partnerhub bench` set.
type benchConfig struct {
	provider     string
	rate         float64
	duration     time.Duration
	events       int
	concurrency  int
	drainTimeout time.Duration
	hubPID       int
	listen       string
	maxInFlight  int
	endpoints    int
	pgDSN        string
	requestsOut  string
}

// newBenchCmd is `partnerhub bench`, the load tool.
func newBenchCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var cfg benchConfig
	var client *apiClient
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a running hub with signed provider webhooks and measure it end to end",
		Long: `Load a running hub and measure it from the provider's webhook to the partner's
delivery. The bench creates a fresh program (when the key may) with a source
of --provider, two partners and --endpoints endpoints (one by default)
subscribed to conversion.created and commission.created on a receiver it
runs on 127.0.0.1, then sends one new signed sale per webhook: as fast as
--concurrency allows for --events, or open loop at --rate per second for
--duration (latency counted from each send's scheduled time).

With --requests-out FILE the bench sends nothing: it writes --events
signed sales to FILE, one request per line in vegeta's JSON target format,
the same requests raw to FILE.wrk, and FILE.wrk.lua, a wrk script that
sends each request of FILE.wrk once; then it measures the hub while
another load generator sends them. The sales it expects are the ones the
hub counts as accepted in /metrics; ingest latency is the sender's to
report. The run ends 3 s after the last accepted webhook once every
accepted sale is delivered, or after --drain-timeout without progress
(from the moment the files are written).

A sale is complete when both its conversion.created and its
commission.created events have reached every endpoint with a valid
Standard Webhooks signature (two deliveries per sale, four with
--endpoints 2); end-to-end latency runs from the scheduled send to the
last of those deliveries. The bench waits up to
--drain-timeout for every accepted sale, then reports ingest and
end-to-end latency, deliveries per second, duplicates, missing deliveries,
CPU seconds per conversion of the hub, postgres and redis-server processes
of this machine, the hub's peak RSS and SQL statements per conversion
(from /metrics: the hub must carry no other load). It exits non-zero when
a delivery is missing.

The hub must be allowed to deliver to 127.0.0.0/8:
PARTNERHUB_OUTBOUND_ALLOW_NETS=127.0.0.0/8. Stripe and Shopify sales are
test-mode events; WooCommerce and Paddle sources are created with
sandbox=true: no commission of the bench is ever payable.`,
		Example: `  partnerhub bench --url http://127.0.0.1:8080 --key $KEY --events 20000 --concurrency 64
  partnerhub bench --rate 500 --duration 20s --provider shopify -o json
  partnerhub bench --events 150000 --requests-out /tmp/sales.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd.Context(), client, cfg, stderr)
		},
	}
	cmd.SetOut(stdout)
	client = newAPIClient(cmd, getenv, stdout)
	f := cmd.Flags()
	f.StringVar(&cfg.provider, "provider", "stripe", "provider of the webhooks: "+strings.Join(connectors.SampleProviders(), ", "))
	f.Float64Var(&cfg.rate, "rate", 0, "open loop: webhooks per second, sent on schedule whatever the answers (with --duration)")
	f.DurationVar(&cfg.duration, "duration", 0, "open loop: how long to send at --rate")
	f.IntVar(&cfg.events, "events", 1000, "closed loop: webhooks to send as fast as --concurrency allows (ignored with --rate)")
	f.IntVar(&cfg.concurrency, "concurrency", 0, "requests in flight at most: the senders of the closed loop (default 16), the cap of the open loop (default 1024)")
	f.DurationVar(&cfg.drainTimeout, "drain-timeout", 60*time.Second, "how long to wait for the deliveries after the last webhook")
	f.IntVar(&cfg.hubPID, "hub-pid", 0, "process id of the hub, for its CPU time and RSS (default: the process listening on --url's port)")
	f.StringVar(&cfg.listen, "listen", "127.0.0.1:0", "address of the receiver the endpoints point at")
	f.IntVar(&cfg.endpoints, "endpoints", 1, "endpoints receiving each sale's two events, 1 or 2")
	f.IntVar(&cfg.maxInFlight, "endpoint-max-in-flight", 0, "max_in_flight of the endpoints, 1 to 1000 (default: the hub's)")
	f.StringVar(&cfg.pgDSN, "pg-stat-statements", "", "PostgreSQL URL of the hub's database: also count statements with pg_stat_statements")
	f.StringVar(&cfg.requestsOut, "requests-out", "", "write --events signed webhooks to this file (vegeta's JSON targets, and a wrk script beside it) for another load generator to send, and measure the hub while it does")
	return cmd
}

// benchSetup is what the bench created in the hub.
type benchSetup struct {
	programID string
	source    *hub.Source
	codes     []string
}

// benchReport is the result, printed as a table or as JSON.
type benchReport struct {
	Mode        string  `json:"mode"` // closed or open
	Provider    string  `json:"provider"`
	Event       string  `json:"event"`
	Rate        float64 `json:"rate,omitempty"`
	Duration    float64 `json:"duration_seconds,omitempty"`
	Concurrency int     `json:"concurrency"`
	Endpoints   int     `json:"endpoints"`
	ProgramID   string  `json:"program_id"`

	Written        int64            `json:"written,omitempty"` // --requests-out: webhooks written for another tool
	WaitedSeconds  float64          `json:"waited_seconds,omitempty"`
	Inbound        map[string]int64 `json:"inbound_outcomes,omitempty"` // --requests-out: the hub's answers, by outcome
	Sent           int64            `json:"sent"`
	Accepted       int64            `json:"accepted"`
	Non2xx         map[string]int64 `json:"non_2xx"`
	SendSeconds    float64          `json:"send_seconds"`
	OfferedPerSec  float64          `json:"sent_per_second"`
	AcceptedPerSec float64          `json:"ingest_accepted_per_second"`
	Ingest         latencySummary   `json:"ingest_latency"`

	Completed          int64          `json:"conversions_completed"`
	EndToEnd           latencySummary `json:"end_to_end_latency"`
	DeliveriesExpected int64          `json:"deliveries_expected"`
	DeliveriesReceived int64          `json:"deliveries_received"`
	DeliveriesPerSec   float64        `json:"deliveries_per_second"`
	Duplicates         int64          `json:"duplicates"`
	Missing            int64          `json:"missing"`
	IncompleteSales    int64          `json:"incomplete_sales"`
	Unmatched          int64          `json:"unmatched_deliveries"`
	BadSignatures      int64          `json:"bad_signatures"`
	DrainSeconds       float64        `json:"drain_seconds"`

	HubPID              int     `json:"hub_pid,omitempty"`
	CPUHub              float64 `json:"cpu_seconds_hub"`
	CPUPostgres         float64 `json:"cpu_seconds_postgres"`
	CPURedis            float64 `json:"cpu_seconds_redis"`
	CPUTotal            float64 `json:"cpu_seconds_total"`
	CPUPerConversion    float64 `json:"cpu_seconds_per_conversion"`
	HubPeakRSSBytes     int64   `json:"hub_peak_rss_bytes,omitempty"`
	SQLDialect          string  `json:"sql_dialect"`
	SQLStatements       float64 `json:"sql_statements"`
	SQLPerConversion    float64 `json:"sql_statements_per_conversion"`
	PGCalls             int64   `json:"pg_stat_statements_calls,omitempty"`
	PGCallsPerConverion float64 `json:"pg_stat_statements_calls_per_conversion,omitempty"`
	Pass                bool    `json:"pass"`
}

func runBench(ctx context.Context, c *apiClient, cfg benchConfig, stderr io.Writer) error {
	if !slices.Contains(connectors.SampleProviders(), cfg.provider) {
		return fmt.Errorf("--provider: %q has no test events; use one of %s", cfg.provider, strings.Join(connectors.SampleProviders(), ", "))
	}
	open := cfg.rate > 0
	n := cfg.events
	switch {
	case open && cfg.requestsOut != "":
		return errors.New("--requests-out writes --events webhooks for another tool to send: it takes no --rate")
	case open && cfg.duration <= 0:
		return errors.New("--rate needs --duration")
	case open:
		n = int(cfg.rate * cfg.duration.Seconds())
	case cfg.duration > 0:
		return errors.New("--duration needs --rate")
	}
	if cfg.endpoints < 1 || cfg.endpoints > maxBenchEndpoints {
		return fmt.Errorf("--endpoints: %d; want 1 to %d", cfg.endpoints, maxBenchEndpoints)
	}
	if n < 1 || n > 100_000_000 {
		return fmt.Errorf("the run would send %d webhooks: want 1 to 10^8", n)
	}
	switch {
	case cfg.concurrency < 0:
		return errors.New("--concurrency must be at least 1")
	case cfg.concurrency == 0 && open:
		cfg.concurrency = 1024
	case cfg.concurrency == 0:
		cfg.concurrency = 16
	}
	base := benchBaseURL(c)
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--url: %q is not a URL", base)
	}
	if cfg.hubPID == 0 {
		cfg.hubPID = localListener(u)
	}
	if cfg.hubPID == 0 {
		fmt.Fprintln(stderr, "bench: the hub's process is not visible: hub CPU comes from /metrics, peak RSS is not measured (pass --hub-pid)")
	}

	if cfg.requestsOut != "" {
		if err := removeBenchRequests(cfg.requestsOut); err != nil {
			return err
		}
	}
	tr := newBenchTracker(n, cfg.endpoints, time.Now())
	rcv, err := startBenchReceiver(cfg.listen, tr)
	if err != nil {
		return err
	}
	defer rcv.Close()
	setup, err := benchCreate(ctx, c, cfg, rcv)
	if err != nil {
		return err
	}
	payEvent := connectors.SampleEvents(cfg.provider)[0] // each provider's sale
	rep := &benchReport{Mode: "closed", Provider: cfg.provider, Event: payEvent, Concurrency: cfg.concurrency, Endpoints: cfg.endpoints, ProgramID: setup.programID}
	if open {
		rep.Mode, rep.Rate, rep.Duration = "open", cfg.rate, cfg.duration.Seconds()
	}

	httpc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.concurrency + 16,
		MaxIdleConnsPerHost: cfg.concurrency + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
	defer httpc.CloseIdleConnections()
	if cfg.requestsOut != "" {
		return runBenchExternal(ctx, c, cfg, benchTarget{base: base, httpc: httpc, setup: setup, event: payEvent}, tr, rep, stderr)
	}
	m, err := startBenchMeasure(ctx, httpc, base, &cfg, stderr)
	if err != nil {
		return err
	}

	// The run: send, then drain, with a progress line every second.
	tr.start = time.Now()
	stopProgress := benchProgress(stderr, tr, n)
	var ingest latencyHist
	s := &benchSender{c: httpc, url: base + "/in/" + url.PathEscape(setup.source.ID), src: setup.source,
		event: payEvent, codes: setup.codes, tr: tr, hist: &ingest}
	if open {
		s.open(ctx, n, cfg.rate, cfg.concurrency)
	} else {
		s.closed(ctx, n, cfg.concurrency)
	}
	sendDone := time.Since(tr.start)
	drainStart := time.Now()
	for ctx.Err() == nil && time.Since(drainStart) < cfg.drainTimeout {
		if tr.pending() == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep.DrainSeconds = time.Since(drainStart).Seconds()
	stopProgress()

	if _, err := m.finish(ctx, rep); err != nil {
		return err
	}

	missing, incomplete := tr.missing()
	tr.mu.Lock()
	rep.Sent, rep.Accepted, rep.Non2xx = tr.sent, tr.accepted, maps.Clone(tr.statuses)
	rep.DeliveriesReceived, rep.Duplicates, rep.Unmatched, rep.BadSignatures = tr.received, tr.duplicates, tr.unmatched, tr.badSignature
	lastDelivery := tr.lastDelivery
	tr.mu.Unlock()
	rep.SendSeconds = round3(sendDone.Seconds())
	rep.OfferedPerSec = round3(float64(rep.Sent) / sendDone.Seconds())
	rep.AcceptedPerSec = round3(float64(rep.Accepted) / sendDone.Seconds())
	rep.Ingest = ingest.Summary()
	rep.EndToEnd = tr.e2e.Summary()
	rep.Completed = int64(tr.e2e.Count())
	rep.DeliveriesExpected = rep.Accepted * 2 * int64(cfg.endpoints)
	if lastDelivery > 0 {
		rep.DeliveriesPerSec = round3(float64(rep.DeliveriesReceived) / lastDelivery.Seconds())
	}
	rep.Missing, rep.IncompleteSales = missing, incomplete
	return endBench(c, cfg, rep)
}

// endBench prints the report and says whether the run passed.
func endBench(c *apiClient, cfg benchConfig, rep *benchReport) error {
	if rep.Accepted > 0 {
		conv := float64(rep.Accepted)
		rep.CPUPerConversion = round6(rep.CPUTotal / conv)
		rep.SQLPerConversion = round3(rep.SQLStatements / conv)
		if rep.PGCalls > 0 {
			rep.PGCallsPerConverion = round3(float64(rep.PGCalls) / conv)
		}
	}
	rep.Pass = rep.Missing == 0 && rep.BadSignatures == 0 && rep.Accepted > 0
	if err := printBenchReport(c, rep); err != nil {
		return err
	}
	switch {
	case rep.Accepted == 0:
		return errors.New("the hub accepted no webhook")
	case rep.BadSignatures > 0:
		return fmt.Errorf("%d deliveries had an invalid signature", rep.BadSignatures)
	case rep.Missing > 0:
		return fmt.Errorf("%w: %d deliveries of %d sales after %s", errBenchMissing, rep.Missing, rep.IncompleteSales, cfg.drainTimeout)
	}
	return nil
}

// benchMeasure holds the readings taken when a run starts: the hub's
// metrics, pg_stat_statements, CPU times, and the RSS sampler.
type benchMeasure struct {
	httpc     *http.Client
	base      string
	pgDSN     string
	hubPID    int
	before    hubMetrics
	pgBefore  int64
	cpuBefore cpuSnapshot
	rss       *rssSampler
}

// startBenchMeasure takes the first readings. An unreadable
// pg_stat_statements is reported and left out (cfg.pgDSN is cleared).
func startBenchMeasure(ctx context.Context, httpc *http.Client, base string, cfg *benchConfig, stderr io.Writer) (*benchMeasure, error) {
	m := &benchMeasure{httpc: httpc, base: base, hubPID: cfg.hubPID}
	var err error
	if m.before, err = scrapeMetrics(ctx, httpc, base); err != nil {
		return nil, err
	}
	if cfg.pgDSN != "" {
		if m.pgBefore, err = pgCalls(ctx, cfg.pgDSN); err != nil {
			fmt.Fprintf(stderr, "bench: --pg-stat-statements skipped: %v\n", err)
			cfg.pgDSN = ""
		}
	}
	m.pgDSN = cfg.pgDSN
	m.cpuBefore = takeCPU(cfg.hubPID)
	if cfg.hubPID > 0 {
		m.rss = sampleRSS(cfg.hubPID)
	}
	return m, nil
}

// finish takes the last readings and fills the report's CPU, RSS and SQL
// figures; it returns the hub's metrics at the end.
func (m *benchMeasure) finish(ctx context.Context, rep *benchReport) (hubMetrics, error) {
	cpuAfter := takeCPU(m.hubPID)
	if m.rss != nil {
		rep.HubPeakRSSBytes = m.rss.Stop()
	}
	after, err := scrapeMetrics(context.WithoutCancel(ctx), m.httpc, m.base)
	if err != nil {
		return after, err
	}
	if m.pgDSN != "" {
		if pgAfter, err := pgCalls(context.WithoutCancel(ctx), m.pgDSN); err == nil {
			rep.PGCalls = pgAfter - m.pgBefore - 1 // the first reading's own call
		}
	}
	rep.HubPID = m.hubPID
	rep.CPUHub = float64(cpuAfter.hub-m.cpuBefore.hub) / clockTicks
	if m.hubPID == 0 {
		rep.CPUHub = after.cpuSeconds - m.before.cpuSeconds
	}
	rep.CPUPostgres = float64(cpuAfter.postgres-m.cpuBefore.postgres) / clockTicks
	rep.CPURedis = float64(cpuAfter.redis-m.cpuBefore.redis) / clockTicks
	rep.CPUTotal = round3(rep.CPUHub + rep.CPUPostgres + rep.CPURedis)
	rep.SQLDialect = after.sqlDialect
	rep.SQLStatements = after.sqlStatements - m.before.sqlStatements
	return after, nil
}

// benchBaseURL is the hub's base URL, as the operator commands find it.
func benchBaseURL(c *apiClient) string {
	base := c.url
	if base == "" {
		base = c.getenv("PARTNERHUB_URL")
	}
	if base == "" {
		base = defaultAPIURL
	}
	return strings.TrimSuffix(strings.TrimRight(base, "/"), "/api/v1")
}

// localListener is the process listening on u's port when u is on this
// machine; 0 otherwise.
func localListener(u *url.URL) int {
	ip := net.ParseIP(u.Hostname())
	if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return 0
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		port = 80
	}
	return listenerPID(port)
}

// benchCreate creates the bench's program, partners, source and
// endpoints (with the new program's key when one was created).
func benchCreate(ctx context.Context, c *apiClient, cfg benchConfig, rcv *benchReceiver) (*benchSetup, error) {
	tag := benchRandHex(4)
	pc := *c
	var created struct {
		Program  hub.Program `json:"program"`
		AdminKey struct {
			Key string `json:"key"`
		} `json:"admin_key"`
	}
	st, _, err := c.call(ctx, http.MethodPost, "/programs", nil, map[string]any{"name": "bench " + tag}, &created)
	switch {
	case err == nil:
		pc.key = created.AdminKey.Key
	case st == http.StatusForbidden:
		// A program's own admin key: the program's other endpoints get the
		// bench's events too.
		var p hub.Program
		if _, _, err := c.call(ctx, http.MethodGet, "/program", nil, nil, &p); err != nil {
			return nil, fmt.Errorf("reading the program: %w", err)
		}
		created.Program = p
	default:
		return nil, fmt.Errorf("creating the bench program: %w", err)
	}
	setup := &benchSetup{programID: created.Program.ID}
	for _, who := range []string{"a", "b"} {
		code := "bench-" + who + "-" + tag
		if _, _, err := pc.call(ctx, http.MethodPost, "/partners", nil, map[string]any{"name": "Bench partner " + strings.ToUpper(who), "code": code}, nil); err != nil {
			return nil, fmt.Errorf("creating a partner: %w", err)
		}
		setup.codes = append(setup.codes, code)
	}
	src := &hub.Source{Provider: cfg.provider, Secret: benchSecret(cfg.provider)}
	if cfg.provider == "woocommerce" || cfg.provider == "paddle" {
		src.Options = map[string]string{"sandbox": "true"}
	}
	body := map[string]any{"provider": src.Provider, "name": "bench " + tag, "secret": src.Secret}
	if src.Options != nil {
		body["options"] = src.Options
	}
	var out hub.Source
	if _, _, err := pc.call(ctx, http.MethodPost, "/sources", nil, body, &out); err != nil {
		return nil, fmt.Errorf("creating the %s source: %w", cfg.provider, err)
	}
	src.ID, src.ProgramID = out.ID, out.ProgramID
	setup.source = src
	const hint = "the hub must allow the bench's receiver: set PARTNERHUB_OUTBOUND_ALLOW_NETS=127.0.0.0/8 on the hub"
	for i := range cfg.endpoints {
		in := map[string]any{"url": rcv.URL(i), "description": "partnerhub bench " + tag,
			"event_types": []string{hub.EventConversionCreated, hub.EventCommissionCreated}}
		if cfg.maxInFlight > 0 {
			in["max_in_flight"] = cfg.maxInFlight
		}
		var ep struct {
			ID     string `json:"id"`
			Secret string `json:"secret"`
		}
		if _, _, err := pc.call(ctx, http.MethodPost, "/endpoints", nil, in, &ep); err != nil {
			return nil, fmt.Errorf("creating an endpoint at %s: %w (%s)", rcv.URL(i), err, hint)
		}
		if err := rcv.setSecret(i, ep.Secret); err != nil {
			return nil, err
		}
		var pinged struct {
			Delivery struct {
				Status    string `json:"status"`
				LastError string `json:"last_error"`
			} `json:"delivery"`
		}
		if _, _, err := pc.call(ctx, http.MethodPost, "/endpoints/"+url.PathEscape(ep.ID)+"/ping", nil, nil, &pinged); err != nil {
			return nil, fmt.Errorf("pinging the bench endpoint: %w", err)
		}
		if pinged.Delivery.Status != hub.DeliverySucceeded {
			return nil, fmt.Errorf("the hub could not deliver to the bench receiver at %s (%s): %s", rcv.URL(i), oneLine(pinged.Delivery.LastError, 200), hint)
		}
	}
	return setup, nil
}

// benchSecret is a fresh signing secret in the form the provider issues.
func benchSecret(provider string) string {
	switch provider {
	case "stripe":
		return "whsec_" + benchRandHex(16)
	case "paddle":
		return "pdl_ntfset_" + benchRandHex(16)
	}
	return benchRandHex(24)
}

func benchRandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// benchSender sends the sales.
type benchSender struct {
	c     *http.Client
	url   string
	src   *hub.Source
	event string
	codes []string
	tr    *benchTracker
	hist  *latencyHist
}

// closed sends n sales from conc senders, each waiting for its answer.
func (s *benchSender) closed(ctx context.Context, n, conc int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				s.send(ctx, i, time.Since(s.tr.start))
			}
		}()
	}
	wg.Wait()
}

// open sends n sales at rate per second on a fixed schedule, with at most
// conc requests in flight; a send that waits for a free slot still counts
// its latency from its scheduled time.
func (s *benchSender) open(ctx context.Context, n int, rate float64, conc int) {
	slots := make(chan struct{}, conc)
	backlog := make(chan struct{}, max(100_000, conc)) // bounds the goroutines waiting for a slot
	var wg sync.WaitGroup
	interval := float64(time.Second) / rate
	for i := 0; i < n && ctx.Err() == nil; i++ {
		at := time.Duration(float64(i) * interval)
		if d := at - time.Since(s.tr.start); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		backlog <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-backlog }()
			slots <- struct{}{}
			defer func() { <-slots }()
			s.send(ctx, i, at)
		}()
	}
	wg.Wait()
}

// send builds sale i, signed now, posts it and records its answer and its
// latency from at.
func (s *benchSender) send(ctx context.Context, i int, at time.Duration) {
	sample, err := connectors.NewSample(s.src, connectors.SampleRequest{Event: s.event, PartnerCode: s.codes[i%len(s.codes)]}, time.Now())
	if err != nil {
		s.tr.register(i, "", at)
		s.tr.answer(i, -1)
		return
	}
	s.tr.register(i, sample.PaymentID, at)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(sample.Body))
	if err != nil {
		s.tr.answer(i, -1)
		return
	}
	req.Header = sample.Header
	resp, err := s.c.Do(req)
	if err != nil {
		s.hist.Record(time.Since(s.tr.start) - at)
		s.tr.answer(i, -1)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	s.hist.Record(time.Since(s.tr.start) - at)
	s.tr.answer(i, resp.StatusCode)
}

// benchProgress prints a progress line on w every second until the
// returned function is called.
func benchProgress(w io.Writer, tr *benchTracker, n int) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		line := func() {
			sent, acc, got := tr.progress()
			fmt.Fprintf(w, "bench: sent %d/%d  accepted %d  delivered %d/%d  elapsed %s\n",
				sent, n, acc, got, acc*2*int64(tr.endpoints), time.Since(tr.start).Truncate(time.Second))
		}
		for {
			select {
			case <-stop:
				line() // the final state, also of a run shorter than a second
				return
			case <-t.C:
				line()
			}
		}
	}()
	return func() { close(stop); <-done }
}

func printBenchReport(c *apiClient, r *benchReport) error {
	if c.isJSON() {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(c.out, string(b))
		return nil
	}
	lat := func(s latencySummary) string {
		return fmt.Sprintf("p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms", s.P50, s.P99, s.P999, s.Max)
	}
	counts := func(m map[string]int64, skip string) string {
		var parts []string
		for k, v := range m {
			if k != skip {
				parts = append(parts, fmt.Sprintf("%s: %d", k, v))
			}
		}
		if len(parts) == 0 {
			return "0"
		}
		slices.Sort(parts)
		return strings.Join(parts, ", ")
	}
	mode := fmt.Sprintf("closed loop, %d in flight", r.Concurrency)
	sent := fmt.Sprintf("%d in %.2fs (%.1f/s)", r.Sent, r.SendSeconds, r.OfferedPerSec)
	notAccepted := []string{"ingest non-2xx", counts(r.Non2xx, "")}
	ingestLat, e2eLat := lat(r.Ingest), lat(r.EndToEnd)
	switch r.Mode {
	case "open":
		mode = fmt.Sprintf("open loop, %g/s for %gs (at most %d in flight)", r.Rate, r.Duration, r.Concurrency)
	case "external":
		mode = "sent by another tool"
		sent = fmt.Sprintf("%d written, %d received by the hub (the first after %.2fs)", r.Written, r.Sent, r.WaitedSeconds)
		notAccepted = []string{"ingest not accepted", counts(r.Inbound, metrics.InboundAccepted)}
		ingestLat, e2eLat = "reported by the sender", "not measured (the sender is another tool)"
	}
	rss := "not measured"
	if r.HubPeakRSSBytes > 0 {
		rss = fmt.Sprintf("%.1f MiB", float64(r.HubPeakRSSBytes)/(1<<20))
	}
	result := "PASS"
	if !r.Pass {
		result = "FAIL"
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"run", fmt.Sprintf("%s %s, %s, %d deliveries per sale", r.Provider, r.Event, mode, 2*r.Endpoints)},
		{"sent", sent},
		{"ingest accepted", fmt.Sprintf("%d (%.1f/s over %.2fs)", r.Accepted, r.AcceptedPerSec, r.SendSeconds)},
		{notAccepted[0], notAccepted[1]},
		{"ingest latency", ingestLat},
		{"end-to-end latency", e2eLat},
		{"conversions completed", strconv.FormatInt(r.Completed, 10)},
		{"deliveries", fmt.Sprintf("%d of %d (%.1f/s)", r.DeliveriesReceived, r.DeliveriesExpected, r.DeliveriesPerSec)},
		{"duplicates", strconv.FormatInt(r.Duplicates, 10)},
		{"missing", fmt.Sprintf("%d (of %d sales)", r.Missing, r.IncompleteSales)},
		{"bad signatures", strconv.FormatInt(r.BadSignatures, 10)},
		{"CPU seconds", fmt.Sprintf("%.2f (hub %.2f, postgres %.2f, redis %.2f)", r.CPUTotal, r.CPUHub, r.CPUPostgres, r.CPURedis)},
		{"CPU per conversion", fmt.Sprintf("%.3f ms", r.CPUPerConversion*1e3)},
		{"hub peak RSS", rss},
		{"SQL statements per conversion", fmt.Sprintf("%.1f (%s, %.0f in all)", r.SQLPerConversion, r.SQLDialect, r.SQLStatements)},
		{"result", result},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	if r.PGCalls > 0 {
		fmt.Fprintf(tw, "pg_stat_statements calls per conversion\t%.1f\n", r.PGCallsPerConverion)
	}
	return tw.Flush()
}

func round3(v float64) float64 { return float64(int64(v*1e3+0.5)) / 1e3 }
func round6(v float64) float64 { return float64(int64(v*1e6+0.5)) / 1e6 }
