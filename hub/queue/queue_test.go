package queue_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/partnerhub/partnerhub/hub/queue"
)

func openQueue(t *testing.T, url string) *queue.Queue {
	q, _ := openNamedQueue(t, url)
	return q
}

func openNamedQueue(t *testing.T, url string) (*queue.Queue, string) {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "qtest_" + hex.EncodeToString(b)
	q, err := queue.Open(queue.Config{RedisURL: url, Name: name, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("opening queue: %v", err)
	}
	t.Cleanup(q.Close)
	return q, name
}

// TestTasksRunOnce: a task id is queued once however often it is
// enqueued, and the worker hands each task's id to its handler.
func TestTasksRunOnce(t *testing.T) {
	q := openQueue(t, os.Getenv("REDIS_URL"))
	if q.Embedded() == (os.Getenv("REDIS_URL") != "") {
		t.Fatalf("Embedded() = %v with REDIS_URL %q", q.Embedded(), os.Getenv("REDIS_URL"))
	}
	ctx := context.Background()
	for range 3 {
		if err := q.EnqueueProcess(ctx, "inb_1"); err != nil {
			t.Fatal(err)
		}
		if err := q.EnqueueDelivery(ctx, "dlv_1", 2, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.EnqueueDelivery(ctx, "dlv_1", 3, time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	done := make(chan struct{}, 8)
	record := func(s string) {
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
		done <- struct{}{}
	}
	err := q.StartWorker(queue.Handlers{
		Process: func(_ context.Context, id string) error { record("process " + id); return nil },
		Deliver: func(_ context.Context, id string, attempt int) error {
			record("deliver " + id + " " + string(rune('0'+attempt)))
			return nil
		},
		Sweep: func(context.Context) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("tasks run so far: %v", got)
		}
	}
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show up
	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{"process inb_1": true, "deliver dlv_1 2": true, "deliver dlv_1 3": true}
	if len(got) != 3 {
		t.Fatalf("ran %v, want each of %v once", got, want)
	}
	for _, g := range got {
		if !want[g] {
			t.Fatalf("ran %v, want each of %v once", got, want)
		}
	}
}

// TestEnqueueFailsFastWhenRedisIsDown: ingest relies on a prompt error so
// it can acknowledge and leave the row to the sweeper.
func TestEnqueueFailsFastWhenRedisIsDown(t *testing.T) {
	q := openQueue(t, "redis://127.0.0.1:1/0")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := q.EnqueueProcess(ctx, "inb_1"); err == nil {
		t.Fatal("enqueue succeeded with Redis down")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("enqueue took %s to fail", d)
	}
	if err := q.Ping(ctx); err == nil {
		t.Fatal("ping succeeded with Redis down")
	}
}

// TestArchivedTaskDoesNotBlockItsID: once asynq gives up on a task and
// archives it, enqueueing the same work again (the sweeper does) queues it
// afresh instead of being refused for the archived id.
func TestArchivedTaskDoesNotBlockItsID(t *testing.T) {
	q, name := openNamedQueue(t, os.Getenv("REDIS_URL"))
	ctx := context.Background()
	if err := q.EnqueueProcess(ctx, "inb_arch"); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(q.Redis())
	if err := insp.ArchiveTask(name, "process:inb_arch"); err != nil {
		t.Fatalf("archiving: %v", err)
	}
	if err := q.EnqueueProcess(ctx, "inb_arch"); err != nil {
		t.Fatal(err)
	}
	info, err := insp.GetTaskInfo(name, "process:inb_arch")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStatePending {
		t.Fatalf("task state after re-enqueue = %v, want pending", info.State)
	}
}

// TestProcessBatch: a batch task hands every id to Process; a failing id
// makes the task retry, and the retry runs the ids again (Process skips
// what it finished), until each has succeeded.
func TestProcessBatch(t *testing.T) {
	q := openQueue(t, os.Getenv("REDIS_URL"))
	ctx := context.Background()
	ids := []string{"inb_a", "inb_b", "inb_c", "inb_d"}
	if err := q.EnqueueProcessBatch(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if err := q.EnqueueProcessBatch(ctx, ids); err != nil { // the same batch again: one task
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := map[string]int{}
	ok := map[string]bool{}
	failedOnce := false
	all := make(chan struct{})
	err := q.StartWorker(queue.Handlers{
		Process: func(_ context.Context, id string) error {
			mu.Lock()
			defer mu.Unlock()
			calls[id]++
			if id == "inb_c" && !failedOnce {
				failedOnce = true
				return errors.New("database unavailable")
			}
			was := len(ok)
			ok[id] = true
			if len(ok) == len(ids) && was < len(ids) {
				close(all)
			}
			return nil
		},
		Deliver: func(context.Context, string, int) error { return nil },
		Sweep:   func(context.Context) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-all:
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("after 20 s: calls %v, succeeded %v", calls, ok)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["inb_c"] != 2 || calls["inb_a"] != 2 {
		t.Errorf("calls %v: want each id run twice (the first run and the retry of the one task)", calls)
	}
}

// TestProcessTaskJoinsBatches: with a ProcessBatch handler, the first
// try of a single event's hub:process task is handed to it (where
// concurrent tasks share a transaction); when that fails, the retry goes
// to Process, on its own.
func TestProcessTaskJoinsBatches(t *testing.T) {
	q := openQueue(t, os.Getenv("REDIS_URL"))
	ctx := context.Background()
	if err := q.EnqueueProcess(ctx, "inb_single"); err != nil {
		t.Fatal(err)
	}
	got := make(chan []string, 1)
	retried := make(chan string, 1)
	err := q.StartWorker(queue.Handlers{
		Process: func(_ context.Context, id string) error {
			retried <- id
			return nil
		},
		ProcessBatch: func(_ context.Context, ids []string) error {
			got <- ids
			return errors.New("the batch failed")
		},
		Deliver: func(context.Context, string, int) error { return nil },
		Sweep:   func(context.Context) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ids := <-got:
		if len(ids) != 1 || ids[0] != "inb_single" {
			t.Errorf("ProcessBatch(%v), want [inb_single]", ids)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the hub:process task did not run within 20 s")
	}
	select {
	case id := <-retried:
		if id != "inb_single" {
			t.Errorf("retry: Process(%s), want inb_single", id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the failed task was not retried through Process within 20 s")
	}
	select {
	case ids := <-got:
		t.Errorf("the retry went to ProcessBatch(%v) again", ids)
	default:
	}
}

// TestEmbeddedTTLsRunWithTheClock: keys with a TTL in the in-process
// Redis (asynq's leases and unique locks) expire as time passes, as they
// do on a real Redis.
func TestEmbeddedTTLsRunWithTheClock(t *testing.T) {
	q := openQueue(t, "")
	ctx := context.Background()
	if err := q.Redis().Set(ctx, "lease", "1", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _ := q.Redis().Exists(ctx, "lease").Result(); n != 1 {
		t.Fatal("the key is gone at once")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		n, err := q.Redis().Exists(ctx, "lease").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a key with a 300 ms TTL still exists after 3 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProcessAgainIsItsOwnTask: queueing an event again for reprocessing
// is not swallowed by a task of the same event still queued or running.
func TestProcessAgainIsItsOwnTask(t *testing.T) {
	q := openQueue(t, os.Getenv("REDIS_URL"))
	ctx := context.Background()
	if err := q.EnqueueProcess(ctx, "inb_r"); err != nil {
		t.Fatal(err)
	}
	if err := q.EnqueueProcessAgain(ctx, "inb_r"); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	err := q.StartWorker(queue.Handlers{
		Process: func(context.Context, string) error { runs.Add(1); return nil },
		Deliver: func(context.Context, string, int) error { return nil },
		Sweep:   func(context.Context) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runs.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("Process ran %d times, want 2 (the first task and the requeue)", n)
	}
}
