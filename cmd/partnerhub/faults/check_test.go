//go:build faults

package faults

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"
)

// settle waits until the hub has finished the load's work: every inbound
// event processed and every delivery to endpointID concluded.
func settle(t testing.TB, db *sql.DB, endpointID string, timeout time.Duration) {
	t.Helper()
	var last string
	deadline := time.Now().Add(timeout)
	for {
		var unprocessed, open int
		err := db.QueryRow(`SELECT
			(SELECT count(*) FROM inbound_events WHERE status <> 'processed'),
			(SELECT count(*) FROM deliveries WHERE endpoint_id = $1 AND status = 'pending')`, endpointID).Scan(&unprocessed, &open)
		if err == nil && unprocessed == 0 && open == 0 {
			return
		}
		last = fmt.Sprintf("%d inbound events not processed, %d deliveries pending (%v)", unprocessed, open, err)
		if time.Now().After(deadline) {
			t.Fatalf("the hub did not settle within %s: %s; pending: %s", timeout, last, pendingDeliveries(db, endpointID))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkOutcome asserts what the fault suite promises, from the database
// and the receiver: every acknowledged webhook has exactly one inbound
// event, one conversion and one commission with one earned entry; and
// every event meant for endpointID was delivered and seen by rcv.
func checkOutcome(t testing.TB, db *sql.DB, l *load, rcv *receiver, endpointID string) {
	t.Helper()
	count := func(query string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(query, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	n := l.n

	if got := count(`SELECT count(*) FROM inbound_events`); got != n {
		t.Errorf("%d inbound events stored, want %d (one per webhook)", got, n)
	}

	// Lost: a webhook whose session names no conversion.
	owner := map[string]string{}
	rows, err := db.Query(`SELECT key, conversion_id FROM conversion_keys`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, c string
		if err := rows.Scan(&k, &c); err != nil {
			t.Fatal(err)
		}
		owner[k] = c
	}
	rows.Close()
	var lost []string
	distinct := map[string]bool{}
	for i := range n {
		c, ok := owner[l.SessionID(i)]
		if !ok {
			lost = append(lost, l.SessionID(i))
			continue
		}
		distinct[c] = true
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged webhooks have no conversion, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
	// Duplicates: more conversions, commissions or entries than sales.
	if got := count(`SELECT count(*) FROM conversions`); got != n || len(distinct) != n {
		t.Errorf("%d conversions (%d distinct for the sessions), want %d", got, len(distinct), n)
	}
	if got := count(`SELECT count(*) FROM commissions WHERE status <> 'void'`); got != n {
		t.Errorf("%d commissions, want %d", got, n)
	}
	if got := count(`SELECT count(*) FROM (SELECT conversion_id FROM commissions GROUP BY conversion_id HAVING count(*) > 1) d`); got != 0 {
		t.Errorf("%d conversions have more than one commission", got)
	}
	if got := count(`SELECT count(*) FROM ledger_entries WHERE type = 'earned'`); got != n {
		t.Errorf("%d earned ledger entries, want %d", got, n)
	}
	if got := count(`SELECT count(*) FROM (SELECT commission_id FROM ledger_entries WHERE type = 'earned' GROUP BY commission_id HAVING count(*) > 1) d`); got != 0 {
		t.Errorf("%d commissions have more than one earned entry", got)
	}
	for _, typ := range []string{"conversion.created", "commission.created"} {
		if got := count(`SELECT count(*) FROM events WHERE type = $1`, typ); got != n {
			t.Errorf("%d %s events, want %d", got, typ, n)
		}
	}

	// Delivered: every event meant for the endpoint succeeded and the
	// receiver verified it.
	if got := count(`SELECT count(*) FROM deliveries WHERE endpoint_id = $1 AND status <> 'succeeded'`, endpointID); got != 0 {
		t.Errorf("%d deliveries to the receiver did not succeed", got)
	}
	if got, want := count(`SELECT count(*) FROM deliveries WHERE endpoint_id = $1`, endpointID), count(`SELECT count(*) FROM events WHERE type <> 'endpoint.disabled'`); got < want {
		t.Errorf("%d deliveries to the receiver for %d events", got, want)
	}
	seen := rcv.Accepted()
	rows, err = db.Query(`SELECT event_id FROM deliveries WHERE endpoint_id = $1`, endpointID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var missing []string
	events := 0
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		events++
		if _, ok := seen[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the receiver never accepted %d of %d events, e.g. %v", len(missing), events, missing[:min(5, len(missing))])
	}
	if p := rcv.Problems(); len(p) > 0 {
		t.Errorf("the receiver rejected %d deliveries: %s", len(p), strings.Join(p[:min(5, len(p))], "; "))
	}
	t.Logf("outcome: %d webhooks, %d conversions and commissions, %d events delivered to the receiver", n, len(distinct), events)
}

// pendingDeliveries describes a few deliveries still pending, with their
// attempts, for a failure message.
func pendingDeliveries(db *sql.DB, endpointID string) string {
	rows, err := db.Query(`SELECT d.id, d.event_type, d.attempts, d.last_error, d.next_attempt_at,
			coalesce((SELECT string_agg(a.number || ':' || a.error, ' | ' ORDER BY a.number) FROM attempts a WHERE a.delivery_id = d.id), '')
		FROM deliveries d WHERE d.endpoint_id = $1 AND d.status = 'pending' ORDER BY d.id LIMIT 5`, endpointID)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, typ, lastErr, attempts string
		var n int
		var next sql.NullTime
		if err := rows.Scan(&id, &typ, &n, &lastErr, &next, &attempts); err != nil {
			return err.Error()
		}
		out = append(out, fmt.Sprintf("%s %s attempts=%d next=%v last_error=%q attempts=[%s]", id, typ, n, next.Time, lastErr, attempts))
	}
	return strings.Join(out, "; ")
}
