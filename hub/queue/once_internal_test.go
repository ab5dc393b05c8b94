package queue

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestOncePerPeriod: a periodic job enqueued by several schedulers runs
// once per period.
func TestOncePerPeriod(t *testing.T) {
	q, err := Open(Config{Name: "once_test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	var runs atomic.Int32
	const period = time.Hour
	h := q.oncePer("hub:sweep", period, func(context.Context) error { runs.Add(1); return nil })
	for range 3 { // three replicas' schedulers in the same period
		if err := h(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("ran %d times in one period, want 1", n)
	}
	// Another job is claimed on its own.
	other := q.oncePer("hub:approve", period, func(context.Context) error { runs.Add(1); return nil })
	if err := other(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("runs = %d after another job, want 2", n)
	}
}
