package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/config"
	"github.com/partnerhub/partnerhub/hub"
)

// scrape reads /metrics into series keyed as the text format prints them:
// name{label="value",…} with labels sorted by name.
func (h *hubUnderTest) scrape() map[string]float64 {
	h.t.Helper()
	res, err := http.Get(h.base + "/metrics")
	if err != nil {
		h.t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		h.t.Fatalf("GET /metrics: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			h.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// series names a series as scrape keys it; labels alternate name, value.
// The text format sorts labels by name, but puts a bucket's le last.
func series(name string, labels ...string) string {
	var ls []string
	le := ""
	for i := 0; i+1 < len(labels); i += 2 {
		if labels[i] == "le" {
			le = `le="` + labels[i+1] + `"`
			continue
		}
		ls = append(ls, labels[i]+`="`+labels[i+1]+`"`)
	}
	sort.Strings(ls)
	if le != "" {
		ls = append(ls, le)
	}
	if len(ls) == 0 {
		return name
	}
	return name + "{" + strings.Join(ls, ",") + "}"
}

// TestMetrics drives webhooks and deliveries through a real hub and checks
// that /metrics counts them with the right labels, and reports the queue
// depth and the endpoint's breaker.
func TestMetrics(t *testing.T) {
	h := startHub(t, testEnv(t), Options{})
	rcv := newReceiver(t)
	src, secret := setupProgram(t, h, rcv)
	var eps struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if st := h.api("GET", "/endpoints", nil, &eps); st != 200 || len(eps.Data) != 1 {
		t.Fatalf("listing endpoints: %d %+v", st, eps)
	}
	endpointID := eps.Data[0].ID
	before := h.scrape()
	rcv.mu.Lock()
	rcv.fail = 1 // the first delivery attempt fails and is retried
	rcv.mu.Unlock()

	body := checkoutCompleted("evt_metrics_1", "cs_metrics_1", "pi_metrics_1", "alice", 11000, 1000)
	if st, _ := h.postStripe(src, secret, body); st != http.StatusOK {
		t.Fatalf("signed webhook: %d", st)
	}
	if st, _ := h.postStripe(src, secret, body); st != http.StatusOK {
		t.Fatalf("redelivered webhook: %d", st)
	}
	if st, _ := h.postStripe(src, "whsec_wrong_secret", body); st != http.StatusUnauthorized {
		t.Fatalf("badly signed webhook: %d, want 401", st)
	}
	const strangerSource = "src_attacker_chosen_id"
	if st, _ := h.postStripe(strangerSource, secret, body); st != http.StatusNotFound {
		t.Fatalf("unknown source: %d, want 404", st)
	}
	waitFor(t, 30*time.Second, "both events delivered", func() bool {
		return len(rcv.ofType("conversion.created")) == 1 && len(rcv.ofType("commission.created")) == 1
	})

	delta := func(m map[string]float64, key string) float64 { return m[key] - before[key] }
	var after map[string]float64
	// The dispatcher counts a delivery once its attempt is recorded,
	// just after the receiver answered.
	waitFor(t, 10*time.Second, "deliveries counted", func() bool {
		after = h.scrape()
		return delta(after, series("partnerhub_deliveries_total", "outcome", "succeeded")) >= 2
	})
	for _, c := range []struct {
		key string
		min float64
	}{
		{series("partnerhub_inbound_webhooks_total", "provider", "stripe", "outcome", "accepted"), 1},
		{series("partnerhub_inbound_webhooks_total", "provider", "stripe", "outcome", "duplicate"), 1},
		{series("partnerhub_inbound_webhooks_total", "provider", "stripe", "outcome", "bad_signature"), 1},
		{series("partnerhub_inbound_webhooks_total", "provider", "unknown", "outcome", "unknown_source"), 1},
		{series("partnerhub_process_jobs_total", "outcome", "ok"), 1},
		{series("partnerhub_process_duration_seconds_count"), 1},
		{series("partnerhub_deliveries_total", "outcome", "succeeded"), 2},
		{series("partnerhub_deliveries_total", "outcome", "failed_retrying"), 1},
		{series("partnerhub_delivery_attempt_duration_seconds_count", "result", "success"), 2},
		{series("partnerhub_delivery_attempt_duration_seconds_count", "result", "failure"), 1},
		{series("partnerhub_delivery_attempt_duration_seconds_bucket", "result", "success", "le", "+Inf"), 2},
	} {
		if d := delta(after, c.key); d < c.min {
			t.Errorf("%s grew by %v, want at least %v", c.key, d, c.min)
		}
	}
	if d := delta(after, series("partnerhub_process_duration_seconds_sum")); d <= 0 {
		t.Errorf("partnerhub_process_duration_seconds_sum grew by %v, want > 0", d)
	}

	q := h.app.Queue.Name()
	if after[series("partnerhub_queue_up", "queue", q)] != 1 {
		t.Errorf("partnerhub_queue_up for %s = %v, want 1", q, after[series("partnerhub_queue_up", "queue", q)])
	}
	for _, state := range []string{"pending", "active", "scheduled", "retry", "archived"} {
		if _, ok := after[series("partnerhub_queue_tasks", "queue", q, "state", state)]; !ok {
			t.Errorf("no partnerhub_queue_tasks for queue %s state %s", q, state)
		}
	}
	if v, ok := after[series("partnerhub_breaker_state", "endpoint_id", endpointID)]; !ok || v != 0 {
		t.Errorf("partnerhub_breaker_state for %s = %v (present %v), want 0 (closed)", endpointID, v, ok)
	}
	if _, ok := after["go_goroutines"]; !ok {
		t.Error("the Go collector is missing")
	}
	for k := range after {
		if strings.Contains(k, strangerSource) {
			t.Errorf("a request's source id became a label: %s", k)
		}
	}
}

// createKey stores an API key of role and returns its secret.
func createKey(t *testing.T, h *hubUnderTest, role string) string {
	t.Helper()
	key := "phk_" + role + "_" + randHex(12)
	if err := h.app.DB.CreateAPIKey(context.Background(), &hub.APIKey{
		Name: role + " key", Role: role, Hash: hub.HashKey(key), Prefix: key[:8],
	}); err != nil {
		t.Fatalf("creating %s key: %v", role, err)
	}
	return key
}

func TestQueueUI(t *testing.T) {
	h := startHub(t, testEnv(t), Options{})
	opsKey, viewerKey := createKey(t, h, hub.RoleOps), createKey(t, h, hub.RoleViewer)
	missingQueue := "missing_" + randHex(4)

	type auth struct{ bearer, basic string }
	do := func(method, path string, a auth, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, h.base+path, nil)
		if a.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+a.bearer)
		}
		if a.basic != "" {
			req.SetBasicAuth("anyone", a.basic)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}

	for _, c := range []struct {
		name     string
		method   string
		path     string
		auth     auth
		header   map[string]string
		want     int
		contains string
		html     bool
	}{
		{name: "no key", method: "GET", path: "/ops/queues", want: 401},
		{name: "wrong key", method: "GET", path: "/ops/queues", auth: auth{basic: "phk_wrong_key_0123456789"}, want: 401},
		{name: "viewer", method: "GET", path: "/ops/queues", auth: auth{bearer: viewerKey}, want: 403},
		{name: "admin bearer", method: "GET", path: "/ops/queues", auth: auth{bearer: testAdminKey}, want: 200,
			contains: `window.FLAG_READ_ONLY="false"`, html: true},
		{name: "admin basic", method: "GET", path: "/ops/queues/", auth: auth{basic: testAdminKey}, want: 200,
			contains: `window.FLAG_READ_ONLY="false"`, html: true},
		{name: "ops", method: "GET", path: "/ops/queues", auth: auth{basic: opsKey}, want: 200,
			contains: `window.FLAG_READ_ONLY="true"`, html: true},
		{name: "ops reads the API", method: "GET", path: "/ops/queues/api/queues", auth: auth{bearer: opsKey}, want: 200,
			contains: `"queues"`},
		{name: "ops may not delete", method: "DELETE", path: "/ops/queues/api/queues/" + missingQueue, auth: auth{bearer: opsKey},
			want: 405, contains: "read-only"},
		{name: "ops may not pause", method: "POST", path: "/ops/queues/api/queues/" + missingQueue + ":pause", auth: auth{basic: opsKey},
			want: 405},
		// The admin's DELETE reaches asynq, which finds no such queue.
		{name: "admin may delete", method: "DELETE", path: "/ops/queues/api/queues/" + missingQueue, auth: auth{bearer: testAdminKey},
			want: 404},
		{name: "cross-site change", method: "DELETE", path: "/ops/queues/api/queues/" + missingQueue, auth: auth{basic: testAdminKey},
			header: map[string]string{"Sec-Fetch-Site": "cross-site"}, want: 403},
		{name: "foreign origin", method: "DELETE", path: "/ops/queues/api/queues/" + missingQueue, auth: auth{basic: testAdminKey},
			header: map[string]string{"Origin": "https://evil.example"}, want: 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, body := do(c.method, c.path, c.auth, c.header)
			if res.StatusCode != c.want {
				t.Fatalf("%s %s: %d, want %d: %.200s", c.method, c.path, res.StatusCode, c.want, body)
			}
			if c.contains != "" && !strings.Contains(body, c.contains) {
				t.Errorf("%s %s: body lacks %q: %.300s", c.method, c.path, c.contains, body)
			}
			if c.html && !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
				t.Errorf("content type %q, want HTML", res.Header.Get("Content-Type"))
			}
			if c.want == 401 && !strings.Contains(strings.Join(res.Header.Values("WWW-Authenticate"), ", "), "Basic") {
				t.Errorf("401 without a Basic challenge: %q", res.Header.Values("WWW-Authenticate"))
			}
		})
	}
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines decodes the JSON log lines written so far.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(s.b.Bytes(), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLoggedHub runs an App in-process until the test ends, its JSON log
// at level kept in the returned buffer.
func startLoggedHub(t *testing.T, env map[string]string, level string) (*App, *syncBuffer) {
	t.Helper()
	cfg, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	app, err := NewApp(context.Background(), cfg, newLogger(logs, level), io.Discard, Options{QueueName: "test_" + randHex(6)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		app.Close()
	})
	return app, logs
}

func TestRequestIDs(t *testing.T) {
	app, logs := startLoggedHub(t, testEnv(t), "debug")
	h := &hubUnderTest{t: t, app: app, base: "http://" + app.Addr()}
	src, secret := setupProgram(t, h, nil)

	get := func(path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", h.base+path, strings.NewReader(`{"id":"body-marker-7f3a"}`))
		if !strings.HasPrefix(path, "/in/") {
			req.Method = "GET"
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	accessLine := func(id string) map[string]any {
		t.Helper()
		for _, l := range logs.lines(t) {
			if l["msg"] == "http request" && l["request_id"] == id {
				return l
			}
		}
		t.Fatalf("no access log line with request_id %q in:\n%s", id, logs.String())
		return nil
	}

	t.Run("incoming id kept", func(t *testing.T) {
		res := get("/api/v1/schemas", map[string]string{"X-Request-Id": "trace.abc-123_X"})
		if got := res.Header.Get("X-Request-Id"); got != "trace.abc-123_X" {
			t.Fatalf("X-Request-Id = %q, want the client's", got)
		}
		l := accessLine("trace.abc-123_X")
		if l["level"] != "INFO" || l["method"] != "GET" || l["route"] != "/api/v1/schemas" || l["status"] != float64(200) {
			t.Errorf("access log line = %v", l)
		}
		// Health probes are logged at debug.
		get("/healthz", map[string]string{"X-Request-Id": "probe-1"})
		if l := accessLine("probe-1"); l["level"] != "DEBUG" || l["route"] != "/healthz" {
			t.Errorf("health probe access line = %v, want DEBUG", l)
		}
		if _, ok := l["duration_ms"].(float64); !ok {
			t.Errorf("access log line has no duration_ms: %v", l)
		}
	})

	t.Run("generated when absent or not sane", func(t *testing.T) {
		var ids []string
		for _, in := range []string{"", "has space", strings.Repeat("a", 65), "quote\"", "semi;colon"} {
			res := get("/healthz", map[string]string{"X-Request-Id": in})
			id := res.Header.Get("X-Request-Id")
			if id == "" || id == in || !requestIDRE.MatchString(id) || slices.Contains(ids, id) {
				t.Errorf("X-Request-Id for %q = %q, want a fresh sane id", in, id)
			}
			ids = append(ids, id)
			accessLine(id)
		}
	})

	t.Run("context logs carry it; secrets and ids stay out", func(t *testing.T) {
		// A badly signed webhook: the inbound handler logs its rejection
		// with the request's context.
		res := get("/in/"+src+"?token=query-secret", map[string]string{
			"Stripe-Signature": "t=1,v1=00", "Authorization": "Bearer header-secret",
		})
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("badly signed webhook: %d", res.StatusCode)
		}
		id := res.Header.Get("X-Request-Id")
		if l := accessLine(id); l["route"] != "/in/:source_id" || l["status"] != float64(401) || l["method"] != "POST" {
			t.Errorf("access log line = %v", l)
		}
		var rejected bool
		for _, l := range logs.lines(t) {
			if l["msg"] == "inbound webhook rejected" && l["request_id"] == id {
				rejected = true
			}
		}
		if !rejected {
			t.Errorf("the inbound handler's log line does not carry request_id %s:\n%s", id, logs.String())
		}
		for _, secretText := range []string{"query-secret", "header-secret", secret, "body-marker-7f3a"} {
			if strings.Contains(logs.String(), secretText) {
				t.Errorf("the log contains %q", secretText)
			}
		}
	})
}

// The start line says how the Go runtime was tuned: an operator who set
// GODEBUG (see "Configuration") sees it took effect.
func TestListeningLineNamesGodebug(t *testing.T) {
	// schedtrace is read only at the process's start, so setting it here
	// changes nothing in this test process's runtime.
	t.Setenv("GODEBUG", "schedtrace=2147483647")
	env := testEnv(t)
	env["REDIS_URL"] = ""
	app, logs := startLoggedHub(t, env, "info")
	var line map[string]any
	waitFor(t, 10*time.Second, "the listening line", func() bool {
		for _, l := range logs.lines(t) {
			if l["msg"] == "partnerhub listening" {
				line = l
				return true
			}
		}
		return false
	})
	if line["godebug"] != "schedtrace=2147483647" || line["addr"] != app.Addr() {
		t.Fatalf("listening line %v: want godebug %q and addr %q", line, "schedtrace=2147483647", app.Addr())
	}
}
