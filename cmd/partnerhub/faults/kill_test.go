//go:build faults

package faults

import (
	"testing"
	"time"
)

// TestHubKilledMidLoad kills the hub (SIGKILL) while webhooks arrive and
// are processed and delivered, then restarts it. Webhooks sent while it is
// down meet connection errors and are sent again, as a provider would; in
// the end every one is acknowledged and becomes exactly one conversion and
// commission, and every event reaches the receiver. Work the killed worker
// held is recovered by asynq once its lease expires, the rest by the
// sweeper, first attempts made in process included: the endpoint's
// timeout fits in half the sweep interval, so the hub makes new
// deliveries' first attempts itself.
func TestHubKilledMidLoad(t *testing.T) {
	t.Parallel()
	pg, rd := startPostgres(t), startRedis(t)
	h := newHub(t, "hub", pg.URL(), rd.URL(), "PARTNERHUB_SWEEP_INTERVAL=2s")
	h.Start()
	prog := setupProgram(t, h)
	rcv := newReceiver(t)
	rcv.delay = 20 * time.Millisecond
	epID, secret := addEndpoint(t, h, rcv.URL(), map[string]any{"timeout_ms": 500})
	rcv.SetSecret(secret)

	l := newLoad(t, prog, "kill", 400, 40, h)
	l.Start(90 * time.Second)
	waitFor(t, 60*time.Second, "a third of the webhooks acknowledged", func() bool { return l.Accepted() >= l.n/3 })
	waitFor(t, 30*time.Second, "first attempts made in process", func() bool {
		return h.metric(`partnerhub_direct_first_attempts_total{outcome="handled"}`) > 0
	})
	h.Kill()
	killedAt := l.Accepted()
	time.Sleep(2 * time.Second)
	h.Start()
	t.Logf("killed with %d of %d webhooks acknowledged; restarted", killedAt, l.n)

	l.Wait(120 * time.Second)
	refused := l.count(func(p post) bool { return p.Status == 0 })
	if refused == 0 {
		t.Error("no webhook met the dead hub: the kill interrupted nothing")
	}
	settle(t, pg.DB(), epID, 150*time.Second)
	checkOutcome(t, pg.DB(), l, rcv, epID)
	t.Logf("%d requests met connection errors and were sent again", refused)
}
