//go:build faults

package faults

import (
	"net/http"
	"testing"
	"time"
)

// TestPostgresStopped stops PostgreSQL for 10 s in the middle of a load.
// While it is down the hub must never acknowledge a webhook it could not
// store: every request sent and answered within the outage gets 503, and
// the provider (the test) sends it again. After the restart every webhook
// is acknowledged, stored once and processed, and every event delivered.
func TestPostgresStopped(t *testing.T) {
	pg, rd := startPostgres(t), startRedis(t)
	h := newHub(t, "hub", pg.URL(), rd.URL(), "PARTNERHUB_SWEEP_INTERVAL=1s")
	h.Start()
	prog := setupProgram(t, h)
	rcv := newReceiver(t)
	epID, secret := addEndpoint(t, h, rcv.URL(), nil)
	rcv.SetSecret(secret)

	l := newLoad(t, prog, "pgdown", 500, 25, h)
	l.Start(90 * time.Second)
	waitFor(t, 60*time.Second, "a fifth of the webhooks acknowledged", func() bool { return l.Accepted() >= l.n/5 })
	pg.Stop("fast")
	down := time.Now() // from here no connection can reach PostgreSQL
	time.Sleep(10 * time.Second)
	up := time.Now() // until here
	pg.Start()
	t.Logf("PostgreSQL was down for %s; %d of %d webhooks acknowledged before", up.Sub(down).Round(time.Millisecond), l.Accepted(), l.n)

	l.Wait(120 * time.Second)
	inOutage, unavailable := 0, 0
	for _, p := range l.Posts() {
		if p.Start.Before(down) || p.End.After(up) {
			continue
		}
		inOutage++
		switch {
		case p.Status >= 200 && p.Status < 300:
			t.Errorf("webhook %d acknowledged with %d while PostgreSQL was down (sent %s after the stop)",
				p.Webhook, p.Status, p.Start.Sub(down).Round(time.Millisecond))
		case p.Status == http.StatusServiceUnavailable:
			unavailable++
		default:
			t.Errorf("webhook %d answered %d %s while PostgreSQL was down, want 503", p.Webhook, p.Status, p.Err)
		}
	}
	if inOutage < 50 {
		t.Errorf("only %d requests were sent and answered during the outage", inOutage)
	}
	t.Logf("%d requests during the outage, %d answered 503", inOutage, unavailable)
	settle(t, pg.DB(), epID, 150*time.Second)
	checkOutcome(t, pg.DB(), l, rcv, epID)
}
