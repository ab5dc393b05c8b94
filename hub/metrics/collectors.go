package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// QueueDepth is the number of tasks of a queue in each state.
type QueueDepth struct {
	Pending, Active, Scheduled, Retry, Archived, Completed int
	// Latency is how long the oldest pending task has waited.
	Latency time.Duration
}

// QueueCollector reports the depth of one queue, read when Prometheus
// scrapes: partnerhub_queue_tasks{queue,state},
// partnerhub_queue_latency_seconds{queue} and partnerhub_queue_up{queue}
// (0 when the queue could not be read; the depth is then left out).
type QueueCollector struct {
	queue   string
	depth   func() (QueueDepth, error)
	tasks   *prometheus.Desc
	latency *prometheus.Desc
	up      *prometheus.Desc
}

var _ prometheus.Collector = (*QueueCollector)(nil)

// NewQueueCollector returns a collector that calls depth at every scrape
// for the depth of queue.
func NewQueueCollector(queue string, depth func() (QueueDepth, error)) *QueueCollector {
	return &QueueCollector{
		queue: queue,
		depth: depth,
		tasks: prometheus.NewDesc("partnerhub_queue_tasks",
			"Tasks in the queue, by state (pending, active, scheduled, retry, archived, completed).",
			[]string{"queue", "state"}, nil),
		latency: prometheus.NewDesc("partnerhub_queue_latency_seconds",
			"How long the oldest pending task of the queue has waited.", []string{"queue"}, nil),
		up: prometheus.NewDesc("partnerhub_queue_up",
			"Whether the queue's Redis answered the last scrape (1) or not (0).", []string{"queue"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tasks
	ch <- c.latency
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	d, err := c.depth()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0, c.queue)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1, c.queue)
	for _, s := range []struct {
		state string
		n     int
	}{
		{"pending", d.Pending}, {"active", d.Active}, {"scheduled", d.Scheduled},
		{"retry", d.Retry}, {"archived", d.Archived}, {"completed", d.Completed},
	} {
		ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(s.n), c.queue, s.state)
	}
	ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, d.Latency.Seconds(), c.queue)
}

// BreakerCollector reports the circuit breaker state of every endpoint a
// dispatcher has sent to, read when Prometheus scrapes:
// partnerhub_breaker_state{endpoint_id} is BreakerClosed (0),
// BreakerHalfOpen (1) or BreakerOpen (2).
type BreakerCollector struct {
	states func() map[string]int
	desc   *prometheus.Desc
}

var _ prometheus.Collector = (*BreakerCollector)(nil)

// NewBreakerCollector returns a collector that calls states at every
// scrape for the state of each endpoint's breaker, by endpoint id.
func NewBreakerCollector(states func() map[string]int) *BreakerCollector {
	return &BreakerCollector{
		states: states,
		desc: prometheus.NewDesc("partnerhub_breaker_state",
			"Circuit breaker state of an endpoint: 0 closed, 1 half-open, 2 open.", []string{"endpoint_id"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *BreakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *BreakerCollector) Collect(ch chan<- prometheus.Metric) {
	for id, st := range c.states() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(st), id)
	}
}
