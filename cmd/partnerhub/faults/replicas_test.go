//go:build faults

package faults

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/partnerhub/partnerhub/hub"
)

// TestReplicaKilled runs three hubs against one PostgreSQL and one Redis,
// sends webhooks to them in turn and kills one (SIGKILL) in the middle of
// the load. A webhook that meets the dead hub is sent to the next one.
// The two others go on: every webhook is processed once and every event
// delivered, including the work the dead hub held (asynq hands it back
// when its lease expires).
//
// It also checks that the three schedulers do not multiply the periodic
// jobs. Each hub's asynq scheduler enqueues hub:sweep every period with
// Unique(period); asynq records every enqueue it made in Redis (the
// scheduler's enqueue history). Over the load the enqueues of the three
// schedulers together must stay near one per period, where three
// schedulers without Unique would make three.
func TestReplicaKilled(t *testing.T) {
	t.Parallel()
	const period = time.Second
	pg, rd := startPostgres(t), startRedis(t)
	hubs := make([]*hubProcess, 3)
	for i := range hubs {
		hubs[i] = newHub(t, fmt.Sprintf("hub%d", i+1), pg.URL(), rd.URL(), "PARTNERHUB_SWEEP_INTERVAL="+period.String())
		hubs[i].Start()
	}
	prog := setupProgram(t, hubs[0])
	rcv := newReceiver(t)
	rcv.delay = 20 * time.Millisecond
	epID, secret := addEndpoint(t, hubs[0], rcv.URL(), nil)
	rcv.SetSecret(secret)

	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: fmt.Sprintf("127.0.0.1:%d", rd.Port)})
	defer insp.Close()
	var sweeps []string // scheduler entry ids of hub:sweep
	waitFor(t, 20*time.Second, "three schedulers registering hub:sweep", func() bool {
		entries, err := insp.SchedulerEntries()
		if err != nil {
			return false
		}
		sweeps = sweeps[:0]
		for _, e := range entries {
			if e.Task.Type() == hub.TaskSweep {
				sweeps = append(sweeps, e.ID)
			}
		}
		return len(sweeps) == 3
	})
	from := time.Now()

	l := newLoad(t, prog, "replica", 450, 45, hubs...)
	l.Start(90 * time.Second)
	waitFor(t, 60*time.Second, "a third of the webhooks acknowledged", func() bool { return l.Accepted() >= l.n/3 })
	hubs[1].Kill()
	t.Logf("killed hub2 with %d of %d webhooks acknowledged", l.Accepted(), l.n)

	l.Wait(120 * time.Second)
	if l.count(func(p post) bool { return p.Hub == 1 && p.Status == 0 }) == 0 {
		t.Error("no webhook met the dead hub")
	}
	settle(t, pg.DB(), epID, 150*time.Second)
	to := time.Now()
	checkOutcome(t, pg.DB(), l, rcv, epID)

	var runs []time.Time
	for _, id := range sweeps {
		evs, err := insp.ListSchedulerEnqueueEvents(id, asynq.PageSize(10000))
		if err != nil {
			t.Fatalf("reading the enqueue history of %s: %v", id, err)
		}
		for _, e := range evs {
			if !e.EnqueuedAt.Before(from) && !e.EnqueuedAt.After(to) {
				runs = append(runs, e.EnqueuedAt)
			}
		}
	}
	slices.SortFunc(runs, func(a, b time.Time) int { return a.Compare(b) })
	twice := 0
	for i := 1; i < len(runs); i++ {
		if runs[i].Sub(runs[i-1]) < period/2 {
			twice++
		}
	}
	periods := to.Sub(from).Seconds() / period.Seconds()
	t.Logf("hub:sweep enqueued %d times by 3 schedulers over %.0f periods; %d enqueues less than half a period after the previous one", len(runs), periods, twice)
	if float64(len(runs)) > 1.5*periods+2 {
		t.Errorf("hub:sweep ran %d times in %.0f periods: the schedulers do not share the periodic job", len(runs), periods)
	}
	if float64(len(runs)) < periods/2 {
		t.Errorf("hub:sweep ran %d times in %.0f periods: the periodic job stalled", len(runs), periods)
	}
}
