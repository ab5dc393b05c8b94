// Package queue runs partnerhub's jobs on asynq: it implements hub.Queue,
// the worker that dispatches tasks to their handlers and the scheduler of
// periodic jobs. Without a Redis URL it starts an in-process miniredis, so
// the embedded default needs no Redis.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/partnerhub/partnerhub/hub"
)

// Config configures a Queue.
type Config struct {
	// RedisURL is redis://, rediss://, redis-socket:// or
	// redis-sentinel://. Empty: an in-process miniredis on 127.0.0.1.
	RedisURL string
	// Concurrency is the number of tasks a worker runs at once. Zero: 20.
	Concurrency int
	// PollInterval is how often an idle worker checks for new tasks, and
	// (at least every 50 ms) how often due scheduled tasks are moved to
	// the queue. Zero: 10 ms.
	PollInterval time.Duration
	// SweepEvery is the period of hub:sweep. Zero: 30 s.
	SweepEvery time.Duration
	// ReconcileEvery is the period of hub:reconcile. Zero: 5 min.
	ReconcileEvery time.Duration
	// ApproveEvery is the period of hub:approve. Zero: 10 min.
	ApproveEvery time.Duration
	// Name is the asynq queue the tasks go to, so that several
	// deployments (or tests) can share one Redis. Zero: "partnerhub".
	Name string
	// Logger zero value: slog.Default().
	Logger *slog.Logger
}

// Queue is the asynq-backed hub.Queue.
type Queue struct {
	cfg  Config
	rc   redis.UniversalClient
	opt  asynq.RedisConnOpt
	mini *miniredis.Miniredis
	// stopClock ends advanceTTLs.
	stopClock chan struct{}
	client    *asynq.Client
	insp      *asynq.Inspector
	srv       *asynq.Server
	sched     *asynq.Scheduler
}

var _ hub.Queue = (*Queue)(nil)

// ttlTick is how often the in-process Redis's TTLs advance.
const ttlTick = 250 * time.Millisecond

// advanceTTLs makes the in-process Redis's TTLs (asynq's leases, unique
// locks) run with the clock, as a real Redis's do, until stop closes.
// miniredis's ClockTTL does the same on every command, but walks and sorts
// every key each time, which grows with the tasks queued; advancing a few
// times a second costs the same once per tick.
func advanceTTLs(m *miniredis.Miniredis, stop <-chan struct{}) {
	t := time.NewTicker(ttlTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			m.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Open connects to Redis, or starts the in-process miniredis.
func Open(cfg Config) (*Queue, error) {
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 20
	}
	if cfg.PollInterval == 0 {
		// An idle worker asks Redis for work every 10 ms: that is the
		// latency floor of each job hop (ingest → process → deliver),
		// for about 100 cheap calls a second per worker process.
		cfg.PollInterval = 10 * time.Millisecond
	}
	if cfg.SweepEvery == 0 {
		cfg.SweepEvery = 30 * time.Second
	}
	if cfg.ReconcileEvery == 0 {
		cfg.ReconcileEvery = 5 * time.Minute
	}
	if cfg.ApproveEvery == 0 {
		cfg.ApproveEvery = 10 * time.Minute
	}
	if cfg.Name == "" {
		cfg.Name = "partnerhub"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	q := &Queue{cfg: cfg}
	url := cfg.RedisURL
	if url == "" {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("starting in-process redis: %w", err)
		}
		q.mini = m
		q.stopClock = make(chan struct{})
		go advanceTTLs(m, q.stopClock)
		url = "redis://" + m.Addr()
	}
	rc, err := newRedisClient(url)
	if err != nil {
		q.Close()
		return nil, err
	}
	// The worker and the scheduler own their connections (asynq closes
	// them at shutdown); the client and readiness checks share rc.
	if q.opt, err = asynq.ParseRedisURI(url); err != nil {
		q.Close()
		return nil, fmt.Errorf("parsing REDIS_URL: %w", err)
	}
	q.rc = rc
	q.client = asynq.NewClientFromRedisClient(rc)
	q.insp = asynq.NewInspectorFromRedisClient(rc)
	return q, nil
}

func newRedisClient(url string) (redis.UniversalClient, error) {
	if strings.HasPrefix(url, "redis://") || strings.HasPrefix(url, "rediss://") {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("parsing REDIS_URL: %w", err)
		}
		opt.DialTimeout = time.Second
		opt.ReadTimeout = 3 * time.Second
		opt.WriteTimeout = 3 * time.Second
		opt.MaxRetries = 1
		return redis.NewClient(opt), nil
	}
	opt, err := asynq.ParseRedisURI(url)
	if err != nil {
		return nil, fmt.Errorf("parsing REDIS_URL: %w", err)
	}
	rc, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, errors.New("parsing REDIS_URL: unsupported client")
	}
	return rc, nil
}

// Embedded reports whether the queue runs on the in-process miniredis.
func (q *Queue) Embedded() bool { return q.mini != nil }

// Redis returns the Redis client, for readiness checks and tests.
func (q *Queue) Redis() redis.UniversalClient { return q.rc }

// Name is the asynq queue the tasks go to.
func (q *Queue) Name() string { return q.cfg.Name }

// Ping checks that Redis answers.
func (q *Queue) Ping(ctx context.Context) error {
	return q.rc.Ping(ctx).Err()
}

type idPayload struct {
	ID      string `json:"id"`
	Attempt int    `json:"attempt,omitempty"`
}

// EnqueueProcess queues hub:process for an inbound event.
func (q *Queue) EnqueueProcess(ctx context.Context, inboundID string) error {
	b, _ := json.Marshal(idPayload{ID: inboundID})
	return q.enqueue(ctx, asynq.NewTask(hub.TaskProcess, b), "process:"+inboundID,
		asynq.MaxRetry(20), asynq.Timeout(processTimeout))
}

// processTimeout bounds a hub:process or hub:process-batch task: a
// single event's task may wait for the batch it joined.
const processTimeout = 2 * time.Minute

// EnqueueProcessAgain queues hub:process for an inbound event made due
// again (reprocessing), under a fresh task id: the task that processed it
// before may still be finishing under "process:<id>", and an enqueue that
// collided with it would be taken as done.
func (q *Queue) EnqueueProcessAgain(ctx context.Context, inboundID string) error {
	b, _ := json.Marshal(idPayload{ID: inboundID})
	return q.enqueue(ctx, asynq.NewTask(hub.TaskProcess, b), "process:"+inboundID+":"+hub.NewID("again"),
		asynq.MaxRetry(20), asynq.Timeout(processTimeout))
}

// batchPayload is the payload of hub:process-batch.
type batchPayload struct {
	IDs []string `json:"ids"`
}

// EnqueueProcessBatch queues hub:process for several inbound events as one
// task, which applies them together (Handlers.ProcessBatch). A task that
// fails is retried whole, and events already processed are skipped.
func (q *Queue) EnqueueProcessBatch(ctx context.Context, ids []string) error {
	if len(ids) == 1 {
		return q.EnqueueProcess(ctx, ids[0])
	}
	b, _ := json.Marshal(batchPayload{IDs: ids})
	return q.enqueue(ctx, asynq.NewTask(hub.TaskProcessBatch, b), "process-batch:"+ids[0]+":"+strconv.Itoa(len(ids)),
		asynq.MaxRetry(20), asynq.Timeout(processTimeout))
}

// oncePer runs a periodic job at most once per period, however many
// schedulers (one per replica) enqueue it: asynq's Unique only stops two
// copies from being queued at once, and frees its lock when the first one
// finishes. The first task of each period claims it in Redis; later ones
// in the same period do nothing.
func (q *Queue) oncePer(task string, period time.Duration, run func(context.Context) error) func(context.Context, *asynq.Task) error {
	return func(ctx context.Context, _ *asynq.Task) error {
		slot := time.Now().UnixNano() / int64(period)
		key := fmt.Sprintf("partnerhub:%s:once:%s:%d", q.cfg.Name, task, slot)
		ok, err := q.rc.SetNX(ctx, key, "1", 2*period).Result()
		if err != nil {
			return fmt.Errorf("claiming %s for this period: %w", task, err)
		}
		if !ok {
			return nil
		}
		return run(ctx)
	}
}

// A hub:process-batch task is applied in chunks of at most batchChunk
// events (one transaction each), batchWorkers chunks at once.
const (
	batchChunk   = 32
	batchWorkers = 4
)

// processBatch runs apply over ids in chunks, batchWorkers at a time, and
// reports the failures.
func processBatch(ctx context.Context, ids []string, apply func(context.Context, []string) error) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, batchWorkers)
	for chunk := range slices.Chunk(ids, batchChunk) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := apply(ctx, chunk); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// enqueue queues t under id. An id already queued, scheduled, retrying or
// running is success: that task covers the work. An archived or completed
// task under the id (asynq gave up on it after its retries) would block
// the id, so it is deleted and the task enqueued afresh: the row says the
// work is due, and the row is the truth.
func (q *Queue) enqueue(ctx context.Context, t *asynq.Task, id string, opts ...asynq.Option) error {
	opts = append(opts, asynq.Queue(q.cfg.Name), asynq.TaskID(id))
	for try := 0; ; try++ {
		_, err := q.client.EnqueueContext(ctx, t, opts...)
		if err == nil {
			return nil
		}
		if !errors.Is(err, asynq.ErrTaskIDConflict) {
			return fmt.Errorf("enqueueing %s: %w", t.Type(), err)
		}
		info, ierr := q.insp.GetTaskInfo(q.cfg.Name, id)
		if ierr != nil || try > 0 || (info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted) {
			return nil
		}
		if err := q.insp.DeleteTask(q.cfg.Name, id); err != nil {
			return fmt.Errorf("clearing finished task %s: %w", id, err)
		}
	}
}

// EnqueueDelivery queues one delivery attempt at at.
func (q *Queue) EnqueueDelivery(ctx context.Context, deliveryID string, attempt int, at time.Time) error {
	b, _ := json.Marshal(idPayload{ID: deliveryID, Attempt: attempt})
	opts := []asynq.Option{asynq.MaxRetry(10), asynq.Timeout(2 * time.Minute)}
	if time.Until(at) > 0 {
		// asynq keeps due times in whole seconds: round up, so that an
		// attempt never runs before its time (a Retry-After, a backoff).
		if frac := at.Sub(at.Truncate(time.Second)); frac > 0 {
			at = at.Add(time.Second - frac)
		}
		opts = append(opts, asynq.ProcessAt(at))
	}
	return q.enqueue(ctx, asynq.NewTask(hub.TaskDeliver, b), "deliver:"+deliveryID+":"+strconv.Itoa(attempt), opts...)
}

// Handlers are the functions the worker runs.
type Handlers struct {
	Process func(ctx context.Context, inboundID string) error
	// ProcessBatch applies several inbound events together; optional (by
	// default each is given to Process). When set, it also runs the first
	// try of hub:process tasks, with one id each.
	ProcessBatch func(ctx context.Context, ids []string) error
	Deliver      func(ctx context.Context, deliveryID string, attempt int) error
	Sweep        func(ctx context.Context) error
	// Reconcile is optional.
	Reconcile func(ctx context.Context) error
	// Approve is the hub:approve job; optional.
	Approve func(ctx context.Context) error
	// Retention is the hub:retention job that purges raw inbound bodies
	// past their retention period; optional.
	Retention func(ctx context.Context) error
}

// StartWorker starts processing tasks in the background.
func (q *Queue) StartWorker(h Handlers) error {
	mux := asynq.NewServeMux()
	mux.HandleFunc(hub.TaskProcess, func(ctx context.Context, t *asynq.Task) error {
		var p idPayload
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("decoding task: %v: %w", err, asynq.SkipRetry)
		}
		if n, _ := asynq.GetRetryCount(ctx); h.ProcessBatch != nil && n == 0 {
			// A first try goes the batch way, so that concurrent tasks
			// can share a transaction; a retry runs alone and cannot
			// fail other tasks' batch again.
			return h.ProcessBatch(ctx, []string{p.ID})
		}
		return h.Process(ctx, p.ID)
	})
	mux.HandleFunc(hub.TaskProcessBatch, func(ctx context.Context, t *asynq.Task) error {
		var p batchPayload
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("decoding task: %v: %w", err, asynq.SkipRetry)
		}
		apply := h.ProcessBatch
		if apply == nil {
			apply = func(ctx context.Context, ids []string) error {
				var errs []error
				for _, id := range ids {
					if err := h.Process(ctx, id); err != nil {
						errs = append(errs, fmt.Errorf("%s: %w", id, err))
					}
				}
				return errors.Join(errs...)
			}
		}
		return processBatch(ctx, p.IDs, apply)
	})
	mux.HandleFunc(hub.TaskDeliver, func(ctx context.Context, t *asynq.Task) error {
		var p idPayload
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("decoding task: %v: %w", err, asynq.SkipRetry)
		}
		return h.Deliver(ctx, p.ID, p.Attempt)
	})
	mux.HandleFunc(hub.TaskSweep, q.oncePer(hub.TaskSweep, q.cfg.SweepEvery, h.Sweep))
	if h.Reconcile != nil {
		mux.HandleFunc(hub.TaskReconcile, q.oncePer(hub.TaskReconcile, q.cfg.ReconcileEvery, h.Reconcile))
	}
	if h.Approve != nil {
		mux.HandleFunc(hub.TaskApprove, q.oncePer(hub.TaskApprove, q.cfg.ApproveEvery, h.Approve))
	}
	if h.Retention != nil {
		mux.HandleFunc(hub.TaskRetention, q.oncePer(hub.TaskRetention, retentionEvery, h.Retention))
	}
	q.srv = asynq.NewServer(q.opt, asynq.Config{
		Concurrency:       q.cfg.Concurrency,
		Queues:            map[string]int{q.cfg.Name: 1},
		TaskCheckInterval: q.cfg.PollInterval,
		// Scheduled tasks (retries, rate-limited deliveries) need no
		// finer timing than this.
		DelayedTaskCheckInterval: max(q.cfg.PollInterval, 50*time.Millisecond),
		ShutdownTimeout:          10 * time.Second,
		Logger:                   slogAdapter{q.cfg.Logger},
		LogLevel:                 asynq.WarnLevel,
		RetryDelayFunc: func(n int, _ error, _ *asynq.Task) time.Duration {
			return min(time.Duration(1<<min(n, 8))*time.Second, 5*time.Minute)
		},
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			q.cfg.Logger.WarnContext(ctx, "task failed; asynq retries it, and the sweeper once asynq gives up", "task", t.Type(), "error", err)
		}),
	})
	return q.srv.Start(mux)
}

// retentionEvery is the period of hub:retention: each run purges a
// bounded number of raw bodies, so hourly runs keep up with any volume.
const retentionEvery = time.Hour

// StartScheduler registers the periodic jobs and starts enqueuing them.
// Each is enqueued with Unique, so replicas do not run it twice.
func (q *Queue) StartScheduler() error {
	q.sched = asynq.NewScheduler(q.opt, &asynq.SchedulerOpts{
		Logger:   slogAdapter{q.cfg.Logger},
		LogLevel: asynq.WarnLevel,
		EnqueueErrorHandler: func(t *asynq.Task, _ []asynq.Option, err error) {
			if !errors.Is(err, asynq.ErrDuplicateTask) {
				q.cfg.Logger.Warn("scheduling periodic job", "task", t.Type(), "error", err)
			}
		},
	})
	every := fmt.Sprintf("@every %s", q.cfg.SweepEvery)
	if _, err := q.sched.Register(every, asynq.NewTask(hub.TaskSweep, nil), asynq.Queue(q.cfg.Name), asynq.Unique(q.cfg.SweepEvery), asynq.MaxRetry(0)); err != nil {
		return fmt.Errorf("registering %s: %w", hub.TaskSweep, err)
	}
	every = fmt.Sprintf("@every %s", q.cfg.ReconcileEvery)
	if _, err := q.sched.Register(every, asynq.NewTask(hub.TaskReconcile, nil), asynq.Queue(q.cfg.Name), asynq.Unique(q.cfg.ReconcileEvery), asynq.MaxRetry(0), asynq.Timeout(q.cfg.ReconcileEvery)); err != nil {
		return fmt.Errorf("registering %s: %w", hub.TaskReconcile, err)
	}
	every = fmt.Sprintf("@every %s", q.cfg.ApproveEvery)
	if _, err := q.sched.Register(every, asynq.NewTask(hub.TaskApprove, nil), asynq.Queue(q.cfg.Name), asynq.Unique(q.cfg.ApproveEvery), asynq.MaxRetry(0), asynq.Timeout(q.cfg.ApproveEvery)); err != nil {
		return fmt.Errorf("registering %s: %w", hub.TaskApprove, err)
	}
	if _, err := q.sched.Register(fmt.Sprintf("@every %s", retentionEvery), asynq.NewTask(hub.TaskRetention, nil), asynq.Queue(q.cfg.Name), asynq.Unique(retentionEvery), asynq.MaxRetry(0), asynq.Timeout(retentionEvery)); err != nil {
		return fmt.Errorf("registering %s: %w", hub.TaskRetention, err)
	}
	return q.sched.Start()
}

// StopWorker stops the scheduler and the worker, waiting for running
// tasks; the queue still takes tasks until Close.
func (q *Queue) StopWorker() {
	if q.sched != nil {
		q.sched.Shutdown()
		q.sched = nil
	}
	if q.srv != nil {
		q.srv.Shutdown()
		q.srv = nil
	}
}

// Close stops the worker (waiting for running tasks), the scheduler, and
// the in-process Redis.
func (q *Queue) Close() {
	q.StopWorker()
	if q.insp != nil {
		_ = q.insp.Close()
	}
	if q.client != nil {
		_ = q.client.Close()
	}
	if q.rc != nil {
		_ = q.rc.Close()
	}
	if q.stopClock != nil {
		close(q.stopClock)
		q.stopClock = nil
	}
	if q.mini != nil {
		q.mini.Close()
	}
}

// slogAdapter routes asynq's logs to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a slogAdapter) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a slogAdapter) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a slogAdapter) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
func (a slogAdapter) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), "component", "asynq", "fatal", true)
}
