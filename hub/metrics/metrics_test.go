package metrics

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, depth func() (QueueDepth, error), states map[string]int) string {
	t.Helper()
	reg, err := NewRegistry(NewQueueCollector("q1", depth), NewBreakerCollector(func() map[string]int { return states }))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestCollectors(t *testing.T) {
	t.Run("queue and breakers", func(t *testing.T) {
		out := scrape(t, func() (QueueDepth, error) {
			return QueueDepth{Pending: 3, Active: 1, Scheduled: 2, Retry: 4, Archived: 5, Latency: 1500 * time.Millisecond}, nil
		}, map[string]int{"ep_a": BreakerClosed, "ep_b": BreakerHalfOpen, "ep_c": BreakerOpen})
		for _, want := range []string{
			`partnerhub_queue_up{queue="q1"} 1`,
			`partnerhub_queue_tasks{queue="q1",state="pending"} 3`,
			`partnerhub_queue_tasks{queue="q1",state="active"} 1`,
			`partnerhub_queue_tasks{queue="q1",state="scheduled"} 2`,
			`partnerhub_queue_tasks{queue="q1",state="retry"} 4`,
			`partnerhub_queue_tasks{queue="q1",state="archived"} 5`,
			`partnerhub_queue_latency_seconds{queue="q1"} 1.5`,
			`partnerhub_breaker_state{endpoint_id="ep_a"} 0`,
			`partnerhub_breaker_state{endpoint_id="ep_b"} 1`,
			`partnerhub_breaker_state{endpoint_id="ep_c"} 2`,
			`partnerhub_process_jobs_total{outcome="error"} `,
			`partnerhub_deliveries_total{outcome="held_by_breaker"} `,
			"go_goroutines ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("scrape lacks %q", want)
			}
		}
	})
	t.Run("redis down", func(t *testing.T) {
		out := scrape(t, func() (QueueDepth, error) { return QueueDepth{}, errors.New("connection refused") }, nil)
		if !strings.Contains(out, `partnerhub_queue_up{queue="q1"} 0`) || strings.Contains(out, "partnerhub_queue_tasks{") {
			t.Errorf("with Redis down: want queue_up 0 and no depth, got:\n%s", out)
		}
	})
}

func TestObserveProcess(t *testing.T) {
	var err error
	func() { defer ObserveProcess(time.Now(), &err); err = errors.New("transient") }()
	reg, rerr := NewRegistry()
	if rerr != nil {
		t.Fatal(rerr)
	}
	rec := httptest.NewRecorder()
	Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `partnerhub_process_jobs_total{outcome="error"} 1`) {
		t.Errorf("a failed run is not counted as an error:\n%s", rec.Body)
	}
}
