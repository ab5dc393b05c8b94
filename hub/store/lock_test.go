package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
)

// testLockKeys proves that a transaction locking a key already locked by
// another waits until that one commits: the second transaction is seen
// waiting in pg_locks, and it only gets its lock after the first has
// recorded that it commits.
func testLockKeys(t *testing.T, db *store.DB) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	shared := "pi_" + hex.EncodeToString(b)

	var mu sync.Mutex
	var order []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, s)
	}

	locked1, release1 := make(chan struct{}), make(chan struct{})
	done1, done2 := make(chan error, 1), make(chan error, 1)
	go func() {
		done1 <- db.InTx(ctx, func(tx hub.Tx) error {
			if err := tx.LockKeys(ctx, hub.DefaultProgramID, "stripe", []string{"cs_a", shared, shared}); err != nil {
				return err
			}
			close(locked1)
			<-release1
			record("tx1 commits")
			return nil
		})
	}()
	select {
	case <-locked1:
	case err := <-done1:
		t.Fatalf("first transaction: %v", err)
	}

	// A transaction on other keys does not wait.
	err := db.InTx(ctx, func(tx hub.Tx) error {
		return tx.LockKeys(ctx, hub.DefaultProgramID, "stripe", []string{"cs_b", "pi_other"})
	})
	if err != nil {
		t.Fatalf("transaction on other keys: %v", err)
	}

	go func() {
		done2 <- db.InTx(ctx, func(tx hub.Tx) error {
			if err := tx.LockKeys(ctx, hub.DefaultProgramID, "stripe", []string{shared, "in_z"}); err != nil {
				return err
			}
			record("tx2 locked")
			return nil
		})
	}()

	id := store.LockID(hub.DefaultProgramID, "stripe", shared)
	classID, objID := int64(uint64(id)>>32), int64(uint64(id)&0xffffffff)
	for {
		var waiting int
		err := db.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1`,
			classID, objID).Scan(&waiting)
		if err != nil {
			t.Fatalf("reading pg_locks: %v", err)
		}
		if waiting == 1 {
			break
		}
		select {
		case err := <-done2:
			t.Fatalf("second transaction finished while the first held the key: %v", err)
		case <-ctx.Done():
			t.Fatal("the second transaction never waited for the lock")
		case <-time.After(10 * time.Millisecond):
		}
	}
	mu.Lock()
	early := len(order)
	mu.Unlock()
	if early != 0 {
		t.Fatalf("events before release: %v", order)
	}

	close(release1)
	for i, done := range []chan error{done1, done2} {
		if err := <-done; err != nil {
			t.Fatalf("transaction %d: %v", i+1, err)
		}
	}
	if diff := cmp.Diff([]string{"tx1 commits", "tx2 locked"}, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// testHotPlans: the dispatcher's and the processing transactions' batch
// statements, planned once per connection while the tables are empty
// (when a scan of the whole table looks cheapest), still look rows up by
// primary key: their plans stay right as the tables grow.
func testHotPlans(t *testing.T, db *store.DB) {
	plans, err := store.HotPlans(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 5 {
		t.Fatalf("plans for %d statements, want 5", len(plans))
	}
	for name, plan := range plans {
		for _, bad := range []string{"Seq Scan on deliveries", "Seq Scan on events", "Seq Scan on endpoints",
			"Seq Scan on inbound_events", "Hash Join", "Merge Join", "inbound_events_due", "deliveries_due"} {
			if strings.Contains(plan, bad) {
				t.Errorf("%s: the plan has %q:\n%s", name, bad, plan)
			}
		}
		if !strings.Contains(plan, "deliveries_pkey") && !strings.Contains(plan, "inbound_events_pkey") {
			t.Errorf("%s: the plan does not look rows up by primary key:\n%s", name, plan)
		}
		if testing.Verbose() {
			t.Logf("%s:\n%s", name, plan)
		}
	}
}
