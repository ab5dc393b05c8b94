package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

// batchQueue records single and batched process tasks.
type batchQueue struct {
	fakeQueue
	batches [][]string
}

func (q *batchQueue) EnqueueProcessBatch(_ context.Context, ids []string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.batches = append(q.batches, slices.Clone(ids))
	return nil
}

// queued is every id queued, alone or in a batch.
func (q *batchQueue) queued() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := slices.Clone(q.process)
	for _, b := range q.batches {
		ids = append(ids, b...)
	}
	return ids
}

// TestIngestGroupCommit: many concurrent webhooks, some of them repeated,
// are each answered with their own stored row and duplicate flag, every
// new event is stored once and queued once, and concurrent requests share
// commits and tasks.
func TestIngestGroupCommit(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	src := &hub.Source{ID: hub.NewID("src"), ProgramID: hub.DefaultProgramID, Provider: "test", Name: "test", Secret: "s3cret"}
	if err := st.CreateSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	q := &batchQueue{}
	svc, err := hub.NewService(hub.ServiceConfig{Store: st, Queue: q, Normalizer: func(string) (hub.Normalizer, bool) { return jsonNormalizer, true }})
	if err != nil {
		t.Fatal(err)
	}
	const n, senders = 600, 48
	type answer struct {
		id  string
		dup bool
	}
	answers := make([][]answer, senders)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each sender sends its share, and every sender also sends
			// event 0 (a provider retrying while the first is in flight).
			keys := []int{0}
			for i := s + 1; i < n; i += senders {
				keys = append(keys, i)
			}
			for _, k := range keys {
				b, _ := json.Marshal(sale([]string{fmt.Sprintf("cs_%d", k)}, 100, 100, hub.Hints{}))
				ev, dup, err := svc.Ingest(ctx, src, hub.Receipt{DedupeKey: fmt.Sprintf("evt_%d", k), EventType: "test"}, b)
				if err != nil {
					t.Errorf("ingest %d: %v", k, err)
					return
				}
				if ev.DedupeKey != fmt.Sprintf("evt_%d", k) {
					t.Errorf("ingest %d answered with the row of %s", k, ev.DedupeKey)
				}
				answers[s] = append(answers[s], answer{ev.ID, dup})
			}
		}()
	}
	wg.Wait()
	firsts, ids := 0, map[string]bool{}
	for _, as := range answers {
		for _, a := range as {
			ids[a.id] = true
		}
		if len(as) > 0 && !as[0].dup {
			firsts++
		}
	}
	if firsts != 1 {
		t.Errorf("event 0 was new for %d senders, want exactly 1", firsts)
	}
	if len(ids) != n {
		t.Errorf("%d distinct stored rows answered, want %d", len(ids), n)
	}
	queued := q.queued()
	set := map[string]int{}
	for _, id := range queued {
		set[id]++
	}
	for id := range ids {
		if set[id] == 0 {
			t.Errorf("event %s was stored but never queued", id)
		}
	}
	t.Logf("%d webhooks: %d queued alone, %d batches", n+senders-1, len(q.process), len(q.batches))
	// Every stored event can be processed once, from whichever task.
	for id := range ids {
		if err := svc.Process(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	convs, err := st.ListConversions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	if len(convs) != 200 { // a full first page of the 600
		t.Errorf("first page of conversions has %d, want 200", len(convs))
	}
}

// stuckQueue is a queue whose process tasks wait until release is closed
// (or the enqueue's context ends), like a Redis that stopped answering.
type stuckQueue struct {
	fakeQueue
	release       chan struct{}
	once          sync.Once
	waiting, most atomic.Int32
}

func newStuckQueue(t *testing.T) *stuckQueue {
	q := &stuckQueue{release: make(chan struct{})}
	t.Cleanup(q.free)
	return q
}

// free lets the waiting and later enqueues through.
func (q *stuckQueue) free() { q.once.Do(func() { close(q.release) }) }

func (q *stuckQueue) EnqueueProcess(ctx context.Context, id string) error {
	n := q.waiting.Add(1)
	defer q.waiting.Add(-1)
	for m := q.most.Load(); n > m && !q.most.CompareAndSwap(m, n); m = q.most.Load() {
	}
	select {
	case <-q.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.fakeQueue.EnqueueProcess(ctx, id)
}

// ingestWorld is a service over a fresh store with one source.
type ingestWorld struct {
	st  hub.Store
	svc *hub.Service
	src *hub.Source
}

func newIngestWorld(t *testing.T, st hub.Store, q hub.Queue) *ingestWorld {
	t.Helper()
	src := &hub.Source{ID: hub.NewID("src"), ProgramID: hub.DefaultProgramID, Provider: "test", Name: "test", Secret: "s3cret"}
	if err := st.CreateSource(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	svc, err := hub.NewService(hub.ServiceConfig{Store: st, Queue: q, EnqueueTimeout: time.Minute,
		Normalizer: func(string) (hub.Normalizer, bool) { return jsonNormalizer, true }})
	if err != nil {
		t.Fatal(err)
	}
	return &ingestWorld{st: st, svc: svc, src: src}
}

// ingest sends sale k in the background and returns its answer's error.
func (w *ingestWorld) ingest(k int) <-chan error {
	errc := make(chan error, 1)
	go func() {
		b, _ := json.Marshal(sale([]string{fmt.Sprintf("cs_%d", k)}, 100, 100, hub.Hints{}))
		_, _, err := w.svc.Ingest(context.Background(), w.src, hub.Receipt{DedupeKey: fmt.Sprintf("evt_%d", k), EventType: "test"}, b)
		errc <- err
	}()
	return errc
}

// stored reports whether at least n inbound events are stored.
func (w *ingestWorld) stored(n int) bool {
	evs, err := w.st.ListInboundEvents(context.Background(), hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 100})
	return err == nil && len(evs) >= n
}

// within reports whether ok becomes true within d.
func within(d time.Duration, ok func() bool) bool {
	for deadline := time.Now().Add(d); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// TestIngestSlowQueue: while the queue holds the tasks of earlier batches,
// later webhooks are stored all the same (their commit does not wait for
// the queue), up to four batches waiting for the queue; then the next
// commit waits too, and the waiting webhooks go together once the queue
// answers. Every webhook is answered after its task is queued.
func TestIngestSlowQueue(t *testing.T) {
	q := newStuckQueue(t)
	w := newIngestWorld(t, storetest.Open(t), q)
	var answers []<-chan error
	for k := 1; k <= 5; k++ {
		answers = append(answers, w.ingest(k))
		if !within(5*time.Second, func() bool { return w.stored(k) }) {
			t.Fatalf("webhook %d was not stored while the queue held %d batches' tasks", k, k-1)
		}
	}
	// Four batches wait for the queue after passing the turn on; the fifth
	// waits for it holding the turn: the sixth and seventh are not stored
	// meanwhile.
	answers = append(answers, w.ingest(6), w.ingest(7))
	if !within(5*time.Second, func() bool { return q.waiting.Load() == 5 }) {
		t.Fatalf("%d enqueues wait, want 5", q.waiting.Load())
	}
	if within(200*time.Millisecond, func() bool { return w.stored(6) }) {
		t.Errorf("a sixth webhook was stored while five batches waited for the queue")
	}
	if n := q.most.Load(); n != 5 {
		t.Errorf("%d enqueues waited at once, want 5", n)
	}
	for _, errc := range answers {
		select {
		case err := <-errc:
			t.Fatalf("a webhook was answered (%v) before its task was queued", err)
		default:
		}
	}
	q.free()
	for _, errc := range answers {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a webhook was not answered once the queue answered")
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.process) != 7 {
		t.Errorf("queued %v, want all 7 events", q.process)
	}
}

// panicStore panics in the first insert of an inbound event.
type panicStore struct {
	hub.Store
	panicked atomic.Bool
}

func (s *panicStore) InsertInboundEvent(ctx context.Context, ev *hub.InboundEvent) (*hub.InboundEvent, bool, error) {
	if s.panicked.CompareAndSwap(false, true) {
		panic("insert went wrong")
	}
	return s.Store.InsertInboundEvent(ctx, ev)
}

// TestIngestPanic: a batch whose insert panics fails its webhooks with an
// error (the provider sends them again) and the next webhook is stored and
// answered: ingest goes on.
func TestIngestPanic(t *testing.T) {
	w := newIngestWorld(t, &panicStore{Store: storetest.Open(t)}, &fakeQueue{})
	if err := <-w.ingest(1); err == nil {
		t.Fatal("the webhook whose insert panicked was answered without an error")
	}
	select {
	case err := <-w.ingest(2):
		if err != nil {
			t.Fatalf("the next webhook: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the next webhook was not answered: ingest stopped after a panic")
	}
	if !w.stored(1) {
		t.Error("the next webhook was not stored")
	}
}

// panicQueue panics in the first process task it is given.
type panicQueue struct {
	fakeQueue
	panicked atomic.Bool
}

func (q *panicQueue) EnqueueProcess(ctx context.Context, id string) error {
	if q.panicked.CompareAndSwap(false, true) {
		panic("enqueue went wrong")
	}
	return q.fakeQueue.EnqueueProcess(ctx, id)
}

// TestIngestQueuePanic: a panic while a batch queues its events, after its
// rows are durable, still answers the webhook (its row waits for the
// sweeper) and ingest goes on.
func TestIngestQueuePanic(t *testing.T) {
	q := &panicQueue{}
	w := newIngestWorld(t, storetest.Open(t), q)
	for k := 1; k <= 3; k++ {
		select {
		case err := <-w.ingest(k):
			if err != nil {
				t.Fatalf("webhook %d: %v", k, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("webhook %d was not answered: ingest stopped after a panic", k)
		}
	}
	if !w.stored(3) {
		t.Error("not every webhook was stored")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.process) != 2 {
		t.Errorf("queued %v, want the two webhooks after the panic", q.process)
	}
}

// TestIngestWaitsForCompany: while webhooks keep coming, a commit waits
// for a few more (up to the gather count) instead of committing each
// alone; webhooks that come slower than the pace are committed at once,
// each alone.
func TestIngestWaitsForCompany(t *testing.T) {
	// send sends n webhooks, one every gap, and waits for their answers.
	send := func(t *testing.T, w *ingestWorld, n int, gap time.Duration) {
		t.Helper()
		errs := make([]<-chan error, n)
		for k := range n {
			errs[k] = w.ingest(k)
			time.Sleep(gap)
		}
		for k, errc := range errs {
			if err := <-errc; err != nil {
				t.Fatalf("ingest %d: %v", k, err)
			}
		}
	}

	// world is an ingest world whose commits wait for company as
	// SetIngestLinger says.
	world := func(t *testing.T, linger, pace time.Duration, gather int) (*batchQueue, *ingestWorld) {
		t.Helper()
		q := &batchQueue{}
		w := newIngestWorld(t, storetest.Open(t), q)
		hub.SetIngestLinger(w.svc, linger, pace, gather)
		return q, w
	}

	t.Run("steady webhooks go together", func(t *testing.T) {
		// A long linger: only the gather count starts a commit.
		q, w := world(t, time.Second, 100*time.Millisecond, 4)
		const n = 60
		send(t, w, n, 5*time.Millisecond)
		if got := len(q.queued()); got != n {
			t.Fatalf("%d events queued, want %d", got, n)
		}
		// The pace is learnt over the first webhooks; after it, commits
		// hold about four.
		together := n - len(q.process)
		for _, b := range q.batches {
			// Waiting the whole linger, a commit would hold about 200.
			if len(b) > 16 {
				t.Errorf("a commit held %d webhooks: it did not start when 4 were pending", len(b))
			}
		}
		if together < n/2 {
			t.Errorf("%d of %d webhooks went with others (%d alone, batches %d), want most", together, n, len(q.process), len(q.batches))
		}
	})

	t.Run("slower webhooks go alone, at once", func(t *testing.T) {
		// Waiting for company, every commit would hold four.
		q, w := world(t, time.Second, 20*time.Millisecond, 4)
		const n = 15
		send(t, w, n, 60*time.Millisecond)
		// Two may go together when a commit takes longer than the gap.
		for _, b := range q.batches {
			if len(b) > 2 {
				t.Errorf("a commit held %d webhooks, want each alone: %d alone, batches %v", len(b), len(q.process), q.batches)
			}
		}
	})

	t.Run("the linger bounds the wait", func(t *testing.T) {
		_, w := world(t, 30*time.Millisecond, 500*time.Millisecond, 1000)
		send(t, w, 40, 5*time.Millisecond) // steady
		// A last webhook right after: it waits for company that does not
		// come, then is committed.
		start := time.Now()
		select {
		case err := <-w.ingest(1000):
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("not answered within 5 s: the wait for company has no end")
		}
		if el := time.Since(start); el < 30*time.Millisecond {
			t.Errorf("answered after %v, want after waiting 30 ms for company", el)
		}
	})
}
