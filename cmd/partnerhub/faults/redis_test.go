//go:build faults

package faults

import (
	"context"
	"testing"
	"time"
)

// TestRedisFlushedAndRestarted flushes Redis (FLUSHALL) and restarts the
// redis-server in the middle of a load: every queued, scheduled and
// retrying task is gone. The database rows are the truth: the sweeper
// (every second here) enqueues what they say is due, and every webhook
// still ends as one conversion with its events delivered.
func TestRedisFlushedAndRestarted(t *testing.T) {
	t.Parallel()
	pg, rd := startPostgres(t), startRedis(t)
	h := newHub(t, "hub", pg.URL(), rd.URL(), "PARTNERHUB_SWEEP_INTERVAL=1s")
	h.Start()
	prog := setupProgram(t, h)
	rcv := newReceiver(t)
	// A slow receiver keeps deliveries queued when Redis is flushed.
	rcv.delay = 50 * time.Millisecond
	epID, secret := addEndpoint(t, h, rcv.URL(), map[string]any{"max_in_flight": 4})
	rcv.SetSecret(secret)

	l := newLoad(t, prog, "flush", 400, 40, h)
	l.Start(90 * time.Second)
	waitFor(t, 60*time.Second, "a third of the webhooks acknowledged", func() bool { return l.Accepted() >= l.n/3 })
	queued, _ := rd.Client().DBSize(context.Background()).Result()
	if err := rd.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	rd.Kill()
	time.Sleep(time.Second)
	rd.Start()
	t.Logf("flushed %d Redis keys and restarted Redis with %d of %d webhooks acknowledged, %d events delivered",
		queued, l.Accepted(), l.n, len(rcv.Accepted()))

	l.Wait(120 * time.Second)
	settle(t, pg.DB(), epID, 150*time.Second)
	checkOutcome(t, pg.DB(), l, rcv, epID)
}
