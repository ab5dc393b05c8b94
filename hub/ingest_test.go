package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
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
	release chan struct{}
}

func (q *stuckQueue) EnqueueProcess(ctx context.Context, id string) error {
	select {
	case <-q.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.fakeQueue.EnqueueProcess(ctx, id)
}

// TestIngestSlowQueue: while the queue holds one batch's task, the next
// webhook is stored all the same (its commit does not wait for the queue),
// and both are answered once the queue takes their tasks.
func TestIngestSlowQueue(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	src := &hub.Source{ID: hub.NewID("src"), ProgramID: hub.DefaultProgramID, Provider: "test", Name: "test", Secret: "s3cret"}
	if err := st.CreateSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	q := &stuckQueue{release: make(chan struct{})}
	svc, err := hub.NewService(hub.ServiceConfig{Store: st, Queue: q, EnqueueTimeout: time.Minute,
		Normalizer: func(string) (hub.Normalizer, bool) { return jsonNormalizer, true }})
	if err != nil {
		t.Fatal(err)
	}
	ingest := func(k int) <-chan error {
		errc := make(chan error, 1)
		go func() {
			b, _ := json.Marshal(sale([]string{fmt.Sprintf("cs_%d", k)}, 100, 100, hub.Hints{}))
			_, _, err := svc.Ingest(ctx, src, hub.Receipt{DedupeKey: fmt.Sprintf("evt_%d", k), EventType: "test"}, b)
			errc <- err
		}()
		return errc
	}
	stored := func(n int) bool {
		evs, err := st.ListInboundEvents(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
		return err == nil && len(evs) == n
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				close(q.release)
				t.Fatalf("timed out waiting until %s", what)
			}
		}
	}
	first := ingest(1)
	waitFor("the first webhook is stored", func() bool { return stored(1) })
	second := ingest(2)
	waitFor("the second webhook is stored while the first one's task waits", func() bool { return stored(2) })
	select {
	case err := <-first:
		t.Fatalf("first webhook answered (%v) before its task was queued", err)
	default:
	}
	close(q.release)
	for _, errc := range []<-chan error{first, second} {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.process) != 2 {
		t.Errorf("queued %v, want both events", q.process)
	}
}
