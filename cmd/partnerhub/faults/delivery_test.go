//go:build faults

package faults

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestFlakyReceivers delivers to two endpoints that misbehave:
//
//   - a flaky one (timeout_ms 1000, an operations endpoint) that answers a
//     third of first attempts with a 500, a 429 with Retry-After or a
//     response slower than its timeout, and accepts every later attempt;
//   - a gone one that answers 410 to everything.
//
// The hub's retry schedule is fixed (outbound.DefaultSchedule: the second
// attempt about 5 s after the first, the third 5 minutes later; the
// serve command has no setting for it), so every event fails at most once
// here and the test ends within a minute, or about two when a burst of
// timeouts opens the breaker. It checks that every delivery to
// the flaky endpoint succeeds, that each failed request is recorded as an
// attempt with its error class, that Retry-After is honoured (1 s, and
// 9 s, longer than the schedule's 5 s), and that the 410 disables the gone
// endpoint and produces one endpoint.disabled event, delivered to the
// flaky one.
func TestFlakyReceivers(t *testing.T) {
	pg, rd := startPostgres(t), startRedis(t)
	// The flaky endpoint's timeout fits in half the sweep interval: the
	// hub makes its first attempts itself, without queue tasks.
	h := newHub(t, "hub", pg.URL(), rd.URL(), "PARTNERHUB_SWEEP_INTERVAL=4s")
	h.Start()
	prog := setupProgram(t, h)

	const longRetryAfter = 9 * time.Second
	var (
		mu      sync.Mutex
		firsts  int
		answers = map[string]int{}           // error class → requests answered so
		waits   = map[string]time.Duration{} // event id → Retry-After sent
	)
	flaky := newReceiver(t)
	flaky.fault = func(w http.ResponseWriter, id string, earlier int) bool {
		if earlier > 0 {
			return false
		}
		mu.Lock()
		k := firsts
		firsts++
		mu.Unlock()
		switch k % 9 {
		case 1:
			mu.Lock()
			answers["http_500"]++
			mu.Unlock()
			http.Error(w, "flaky", http.StatusInternalServerError)
		case 4:
			wait := time.Second
			if k == 4 {
				wait = longRetryAfter
			}
			mu.Lock()
			answers["http_429"]++
			waits[id] = wait
			mu.Unlock()
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case 7:
			mu.Lock()
			answers["timeout"]++
			mu.Unlock()
			time.Sleep(2500 * time.Millisecond) // past the endpoint's 1000 ms
			http.Error(w, "too late", http.StatusInternalServerError)
		default:
			return false
		}
		return true
	}
	flakyID, secret := addEndpoint(t, h, flaky.URL(), map[string]any{"timeout_ms": 1000, "operations": true})
	flaky.SetSecret(secret)
	gone := newReceiver(t)
	gone.fault = func(w http.ResponseWriter, _ string, _ int) bool {
		http.Error(w, "gone", http.StatusGone)
		return true
	}
	goneID, _ := addEndpoint(t, h, gone.URL(), nil)

	l := newLoad(t, prog, "flaky", 60, 20, h)
	l.Start(30 * time.Second)
	l.Wait(60 * time.Second)
	db := pg.DB()
	// Processing applies a batch of sales together, so their deliveries
	// reach the flaky endpoint in bursts, and the timeouts of a burst can
	// complete one after another: five in a row open the endpoint's
	// breaker, which holds its retries back for its 30 s cool-down plus up
	// to as much again. Everything must still arrive, within two holds.
	settle(t, db, flakyID, 150*time.Second)
	settle(t, db, goneID, 30*time.Second)
	checkOutcome(t, db, l, flaky, flakyID)
	if n := h.metric(`partnerhub_direct_first_attempts_total{outcome="handled"}`); n == 0 {
		t.Error("no first attempt was made in process")
	}

	// Every failure the receiver answered is an attempt with its class.
	mu.Lock()
	defer mu.Unlock()
	for _, class := range []string{"http_500", "http_429", "timeout"} {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
			WHERE d.endpoint_id = $1 AND a.error LIKE $2`, flakyID, class+"%").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != answers[class] || n == 0 {
			t.Errorf("%d attempts recorded with error class %s, want the %d the receiver answered", n, class, answers[class])
		}
	}
	// Retry-After: the receiver saw the next request no sooner than it
	// asked. asynq keeps a scheduled task's time in whole seconds
	// (ProcessAt is stored as a Unix second), so a retry the hub schedules
	// at t runs from floor(t): up to 1 s early. The 1 s answers are covered
	// by the schedule's 4-6 s second delay; the 9 s answer, longer than the
	// schedule, is held to 9 s minus that granularity.
	for id, wait := range waits {
		reqs := flaky.Requests(id)
		if len(reqs) < 2 {
			t.Errorf("event %s: %d requests after a 429", id, len(reqs))
			continue
		}
		gap := reqs[1].Sub(reqs[0])
		floor := wait
		if wait == longRetryAfter {
			floor = wait - time.Second
			t.Logf("Retry-After: %d: retried after %s", int(wait/time.Second), gap.Round(time.Millisecond))
		}
		if gap < floor {
			t.Errorf("event %s: retried %s after a 429 with Retry-After: %d", id, gap.Round(time.Millisecond), int(wait/time.Second))
		}
	}

	// The gone endpoint: disabled by its first 410, with one
	// endpoint.disabled event that the operations endpoint received.
	var enabled bool
	var reason string
	if err := db.QueryRow(`SELECT enabled, disabled_reason FROM endpoints WHERE id = $1`, goneID).Scan(&enabled, &reason); err != nil {
		t.Fatal(err)
	}
	if enabled || reason != "410 Gone" {
		t.Errorf("gone endpoint: enabled=%t disabled_reason=%q, want disabled for 410 Gone", enabled, reason)
	}
	var gone410, disabledEvents, notFailed int
	if err := db.QueryRow(`SELECT
		(SELECT count(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $1 AND a.status_code = 410),
		(SELECT count(*) FROM events WHERE type = 'endpoint.disabled'),
		(SELECT count(*) FROM deliveries WHERE endpoint_id = $1 AND status <> 'failed')`, goneID).Scan(&gone410, &disabledEvents, &notFailed); err != nil {
		t.Fatal(err)
	}
	if gone410 == 0 || disabledEvents != 1 || notFailed != 0 {
		t.Errorf("gone endpoint: %d attempts answered 410, %d endpoint.disabled events, %d deliveries not failed; want at least 1, 1 and 0",
			gone410, disabledEvents, notFailed)
	}
	got := 0
	for _, typ := range flaky.Accepted() {
		if typ == "endpoint.disabled" {
			got++
		}
	}
	if got != 1 {
		t.Errorf("the operations endpoint received %d endpoint.disabled events, want 1", got)
	}
	t.Logf("flaky endpoint answered %v on first attempts; gone endpoint answered 410 to %d attempts", answers, gone410)
}
