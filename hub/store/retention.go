package store

import (
	"context"
	"fmt"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// PurgeInboundBodies erases the raw body and headers of up to limit
// inbound events received before before, oldest first, and marks them
// purged at at. Events still waiting to be processed (received) keep
// theirs. Their metadata, and the conversions, refunds and ledger entries
// they produced, stay. It returns how many events it purged; limit 0
// means 500.
func (db *DB) PurgeInboundBodies(ctx context.Context, before, at time.Time, limit int) (int64, error) {
	if limit <= 0 {
		limit = 500
	}
	q := fmt.Sprintf(`UPDATE inbound_events SET body = ?, headers = '{}', body_purged_at = ?
		WHERE id IN (SELECT id FROM inbound_events
			WHERE body_purged_at IS NULL AND received_at < ? AND status <> ?
			ORDER BY received_at, id LIMIT %d)
		AND body_purged_at IS NULL`, limit)
	n, err := db.c.execN(ctx, q, []byte{}, db.c.ts(at), db.c.ts(before), hub.InboundReceived)
	if err != nil {
		return 0, fmt.Errorf("purging inbound bodies: %w", err)
	}
	return n, nil
}
