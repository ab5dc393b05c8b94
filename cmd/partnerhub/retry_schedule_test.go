package main

import (
	"testing"
	"time"
)

// TestRetrySchedule: PARTNERHUB_RETRY_SCHEDULE sets the delays between
// delivery attempts. With 0,1s,1s,1s a receiver that fails four times
// gets the events on their third attempts, about a second apart.
func TestRetrySchedule(t *testing.T) {
	env := testEnv(t)
	env["PARTNERHUB_RETRY_SCHEDULE"] = "0,1s,1s,1s"
	h := startHub(t, env, Options{})
	rcv := newReceiver(t)
	rcv.failEach = 2 // each event's first attempt and first retry
	src, secret := setupProgram(t, h, rcv)
	id := randHex(6)
	if st, out := h.postStripe(src, secret, checkoutCompleted("evt_"+id, "cs_"+id, "pi_"+id, "alice", 11000, 1000)); st != 200 {
		t.Fatalf("webhook: %d %v", st, out)
	}
	// Each event fails twice (0 s and 1 s) and arrives on its third
	// attempt, two seconds later: well inside the default schedule's
	// second delay of 5 minutes.
	waitFor(t, 20*time.Second, "both events after their retries", func() bool {
		return len(rcv.ofType("conversion.created")) == 1 && len(rcv.ofType("commission.created")) == 1
	})
	var list struct {
		Data []struct {
			ID       string `json:"id"`
			Status   string `json:"status"`
			Attempts int    `json:"attempts"`
		} `json:"data"`
	}
	// The hub records an attempt after the receiver has answered it.
	waitFor(t, 10*time.Second, "both deliveries recorded as succeeded", func() bool {
		list.Data = nil
		h.api("GET", "/deliveries", nil, &list)
		done := 0
		for _, d := range list.Data {
			if d.Status == "succeeded" {
				done++
			}
		}
		return done == 2
	})
	if len(list.Data) != 2 {
		t.Fatalf("%d deliveries, want 2", len(list.Data))
	}
	for _, d := range list.Data {
		if d.Status != "succeeded" || d.Attempts != 3 {
			t.Errorf("delivery %+v, want succeeded on attempt 3", d)
		}
		// The attempts are about a second apart (1 s ±20 %, rounded up
		// to the queue's whole seconds), not the default 5 s and 5 min.
		var full struct {
			Attempts []struct {
				Number    int       `json:"number"`
				CreatedAt time.Time `json:"created_at"`
			} `json:"attempts_log"`
		}
		h.api("GET", "/deliveries/"+d.ID, nil, &full)
		if len(full.Attempts) != 3 {
			t.Fatalf("delivery %s has %d attempts recorded, want 3", d.ID, len(full.Attempts))
		}
		for i := 1; i < len(full.Attempts); i++ {
			a, b := full.Attempts[i-1].CreatedAt, full.Attempts[i].CreatedAt
			if b.Before(a) {
				a, b = b, a
			}
			if gap := b.Sub(a); gap < 700*time.Millisecond || gap > 4*time.Second {
				t.Errorf("delivery %s: %v between attempts, want about 1 s", d.ID, gap)
			}
		}
	}
	if p := rcv.problems(); len(p) > 0 {
		t.Errorf("receiver problems: %v", p)
	}
}
