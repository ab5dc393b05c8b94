// Package metrics owns partnerhub's Prometheus metrics: the counters and
// histograms the connectors, the hub and the dispatcher update, the
// collectors that read queue depth and breaker states at scrape time, and
// the registry that /metrics serves. It imports only the Prometheus client
// and the standard library, so every package may use it.
package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ProviderUnknown labels inbound webhooks whose source is not known (yet):
// unknown source ids, bodies rejected before the source was loaded.
const ProviderUnknown = "unknown"

// Outcomes of an inbound webhook (label outcome of
// partnerhub_inbound_webhooks_total).
const (
	InboundAccepted      = "accepted"       // stored and queued: 200
	InboundDuplicate     = "duplicate"      // already stored: 200
	InboundIgnored       = "ignored"        // a provider's setup ping: 200, nothing stored
	InboundBadSignature  = "bad_signature"  // 401
	InboundUnreadable    = "unreadable"     // signed but not readable: 422
	InboundTooLarge      = "too_large"      // 413
	InboundBadRequest    = "bad_request"    // the body could not be read: 400
	InboundUnknownSource = "unknown_source" // 404
	InboundUnavailable   = "unavailable"    // the database is down: 503
	InboundCanceled      = "canceled"       // the request ended before the answer (sender gone, read deadline): 499, nothing acknowledged
	InboundError         = "error"          // any other failure: 500
)

// Outcomes of a hub:process run (label outcome of
// partnerhub_process_jobs_total).
const (
	ProcessOK    = "ok"    // the event was processed, ignored or failed for good
	ProcessError = "error" // the run returned an error: the queue runs it again
)

// Outcomes of a delivery task (label outcome of
// partnerhub_deliveries_total).
const (
	DeliverySucceeded        = "succeeded"
	DeliveryFailedRetrying   = "failed_retrying"   // the attempt failed, another is scheduled
	DeliveryFailed           = "failed"            // the last attempt failed, or the endpoint was disabled for failing
	DeliveryEndpointDisabled = "endpoint_disabled" // the endpoint was disabled before the attempt
	DeliveryHeldByBreaker    = "held_by_breaker"   // the endpoint's open breaker held it back
	DeliveryHeldBusy         = "held_endpoint_busy"
	DeliveryHeldRateLimited  = "held_rate_limited"
)

// What became of new deliveries offered for a direct first attempt (label
// outcome of partnerhub_direct_first_attempts_total).
const (
	DirectHandled  = "handled"  // attempted (or held back by the endpoint's limits) in process, without a queue task
	DirectQueued   = "queued"   // taken, but it could not go at once: queued as a task
	DirectDeclined = "declined" // not taken (every direct slot busy and the line full): queued as a task; or dropped from the line at shutdown: left to the sweeper
)

// Breaker states, the values of partnerhub_breaker_state.
const (
	BreakerClosed   = 0
	BreakerHalfOpen = 1
	BreakerOpen     = 2
)

var (
	inboundWebhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "partnerhub_inbound_webhooks_total",
		Help: "Inbound provider webhooks received at /in, by provider and outcome.",
	}, []string{"provider", "outcome"})

	processJobs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "partnerhub_process_jobs_total",
		Help: "Runs of the hub:process job, by outcome (ok, error).",
	}, []string{"outcome"})

	processDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "partnerhub_process_duration_seconds",
		Help:    "Duration of hub:process runs: normalizing an inbound event and applying it.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})

	deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "partnerhub_deliveries_total",
		Help: "Outbound delivery tasks, by outcome: attempts concluded and deliveries held back.",
	}, []string{"outcome"})

	sqlStatements = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "partnerhub_sql_statements_total",
		Help: "SQL statements sent to the database, by dialect (sqlite, postgres): queries and commands, BEGIN, COMMIT and ROLLBACK included.",
	}, []string{"dialect"})

	directFirstAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "partnerhub_direct_first_attempts_total",
		Help: "New deliveries offered for a first attempt in the process that wrote them, by outcome (handled, queued, declined).",
	}, []string{"outcome"})

	attemptDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "partnerhub_delivery_attempt_duration_seconds",
		Help:    "Duration of outbound delivery requests, by result (success, failure).",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"result"})
)

func init() {
	// Known label values start at zero, so rates work from the first
	// scrape.
	for _, o := range []string{ProcessOK, ProcessError} {
		processJobs.WithLabelValues(o)
	}
	for _, o := range []string{DeliverySucceeded, DeliveryFailedRetrying, DeliveryFailed, DeliveryEndpointDisabled,
		DeliveryHeldByBreaker, DeliveryHeldBusy, DeliveryHeldRateLimited} {
		deliveries.WithLabelValues(o)
	}
	for _, d := range []string{"sqlite", "postgres"} {
		sqlStatements.WithLabelValues(d)
	}
	for _, o := range []string{DirectHandled, DirectQueued, DirectDeclined} {
		directFirstAttempts.WithLabelValues(o)
	}
}

// InboundWebhook counts one inbound webhook. provider must be a provider
// name from the connector registry or ProviderUnknown, never request data.
func InboundWebhook(provider, outcome string) {
	inboundWebhooks.WithLabelValues(provider, outcome).Inc()
}

// ObserveProcess records a hub:process run that started at start and
// returned *err. It is meant to be deferred at the top of the job:
//
//	defer metrics.ObserveProcess(time.Now(), &err)
func ObserveProcess(start time.Time, err *error) {
	processDuration.Observe(time.Since(start).Seconds())
	outcome := ProcessOK
	if err != nil && *err != nil {
		outcome = ProcessError
	}
	processJobs.WithLabelValues(outcome).Inc()
}

// Delivery counts one delivery task by outcome.
func Delivery(outcome string) {
	deliveries.WithLabelValues(outcome).Inc()
}

// DirectFirstAttempts counts n new deliveries offered for a direct first
// attempt, by outcome.
func DirectFirstAttempts(outcome string, n int) {
	if n > 0 {
		directFirstAttempts.WithLabelValues(outcome).Add(float64(n))
	}
}

// DeliveryAttempt records the duration of one request sent to an
// endpoint.
func DeliveryAttempt(d time.Duration, success bool) {
	result := "failure"
	if success {
		result = "success"
	}
	attemptDuration.WithLabelValues(result).Observe(d.Seconds())
}

// SQLStatements returns the counter of statements sent to a database of
// dialect ("sqlite" or "postgres"). Resolve it once per database: its Inc
// is an atomic add that does not allocate.
func SQLStatements(dialect string) prometheus.Counter {
	return sqlStatements.WithLabelValues(dialect)
}

// NewRegistry returns a registry holding the Go and process collectors,
// partnerhub's counters and histograms (shared by every registry of the
// process) and the extra collectors of one process, such as a
// QueueCollector and a BreakerCollector.
func NewRegistry(extra ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		inboundWebhooks, processJobs, processDuration, deliveries, attemptDuration, sqlStatements, directFirstAttempts,
	}
	var errs []error
	for _, c := range append(cs, extra...) {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	return reg, nil
}

// Handler serves the metrics of reg in the Prometheus exposition format.
// A collector that fails is reported in the handler's own error counter
// and left out; the other metrics are still served.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:      reg,
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       10 * time.Second,
	})
}
