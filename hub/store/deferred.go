package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// A transaction's write-only rows (outbound events and their deliveries,
// the results of inbound events) and the final state of the inbound events
// it claimed are not read again before it commits, so the Tx keeps them and
// writes them just before COMMIT (Tx.flush: one statement on PostgreSQL,
// one per kind on SQLite): a batch of inbound events applied in one
// transaction costs a handful of statements for all of them instead of
// several each.
type deferred struct {
	events     []*hub.Event
	deliveries []*hub.Delivery
	results    []inboundResult
	// claimed holds the inbound events ClaimInbound returned, by id; their
	// tags and final states are written by flush.
	claimed map[string]*claim
	order   []string
	// pend is the conversions and commissions not written yet.
	pend pending
}

type inboundResult struct{ inbound, kind, id string }

// claim is what a transaction decided for an inbound event it claimed.
type claim struct {
	tagged            bool
	subject, customer string
	finished          bool
	status, lastErr   string
	processedAt       time.Time
}

// maxRowsPerInsert bounds the rows of one multi-row INSERT, well inside
// PostgreSQL's 65,535 parameters and SQLite's 32,766.
const maxRowsPerInsert = 1000

// GetSource returns a source, read once per transaction (a copy). In a
// transaction that applies inbound events it may come from the shared
// cache (configCache): its name, secrets, options and credentials are
// current, its health and last verification may be older.
func (tx *Tx) GetSource(ctx context.Context, id string) (*hub.Source, error) {
	s, err := fromGen(ctx, tx, func(g *configGen) map[string]*hub.Source { return g.sources }, id,
		func() (*hub.Source, error) { return tx.c.getSource(ctx, id) })
	if err != nil {
		return nil, err
	}
	cp := *s
	return &cp, nil
}

// claimSQL selects the received events among those where names. The
// status is compared through coalesce so that it is checked on each row
// found by primary key: as a plain equality, PostgreSQL may walk every
// received event through inbound_events_due instead, a growing cost
// under a backlog.
func claimSQL(where, forUpdate string) string {
	return `SELECT ` + inboundCols + ` FROM inbound_events WHERE ` + where + ` AND coalesce(status, '') = ?
		ORDER BY id` + forUpdate
}

// ClaimInbound returns those of ids that are still received, with their
// bodies, in id order, and locks their rows until the transaction ends (on
// PostgreSQL; SQLite's single writer serializes already): a concurrent
// claim of the same event waits, then finds it finished. The transaction
// must finish every event it claims with FinishInbound, or fail.
func (tx *Tx) ClaimInbound(ctx context.Context, ids []string) ([]*hub.InboundEvent, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	where, args := tx.c.idIn("id", ids)
	evs, err := list(ctx, tx.c, claimSQL(where, tx.c.forUpdate()), append(args, hub.InboundReceived), scanInbound)
	if err != nil {
		return nil, fmt.Errorf("claiming %d inbound events: %w", len(ids), err)
	}
	if tx.later.claimed == nil {
		tx.later.claimed = make(map[string]*claim, len(evs))
	}
	for _, ev := range evs {
		if _, ok := tx.later.claimed[ev.ID]; !ok {
			tx.later.claimed[ev.ID] = &claim{}
			tx.later.order = append(tx.later.order, ev.ID)
		}
	}
	return evs, nil
}

// idIn is the condition "col is one of ids" with its arguments: one array
// parameter on PostgreSQL (one statement text for any count), a list of
// placeholders on SQLite.
func (c *conn) idIn(col string, ids []string) (string, []any) {
	if c.pg {
		return col + " = ANY(?::text[])", []any{ids}
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return col + " IN (" + placeholders(len(ids)) + ")", args
}

// flush writes what the transaction deferred. inTx calls it before COMMIT.
// On PostgreSQL it is one statement (flushSQL), on SQLite one per kind.
func (tx *Tx) flush(ctx context.Context) error {
	l := &tx.later
	for _, id := range l.order {
		if !l.claimed[id].finished {
			return fmt.Errorf("inbound event %s was claimed but not finished", id)
		}
	}
	if len(l.events) == 0 && len(l.deliveries) == 0 && len(l.results) == 0 && len(l.order) == 0 {
		// Pending rows, if any, are written alone.
		return tx.c.beforeStatement(ctx)
	}
	if tx.c.pg {
		tx.c.before = nil // the pending rows are written with the others
		args := slices.Concat(tx.pendingArrays(), eventArrays(l.events), deliveryArrays(l.deliveries), resultArrays(l.results), tx.claimArrays())
		if _, err := tx.c.exec(ctx, flushSQL, args...); err != nil {
			if !l.pend.empty() && isConflict(err) {
				err = tx.pendingError(err)
			}
			return fmt.Errorf("writing %d outbound events, %d deliveries, %d results and %d finished inbound events: %w",
				len(l.events), len(l.deliveries), len(l.results), len(l.order), err)
		}
		*l = deferred{}
		return nil
	}
	if err := tx.flushEvents(ctx, l.events); err != nil {
		return err
	}
	if err := tx.flushDeliveries(ctx, l.deliveries); err != nil {
		return err
	}
	if err := tx.flushResults(ctx, l.results); err != nil {
		return err
	}
	if err := tx.flushClaims(ctx); err != nil {
		return err
	}
	*l = deferred{}
	return nil
}

// flushSQL writes what a transaction deferred in one statement
// (PostgreSQL): its pending conversions and commissions (pendingCTEs), its
// outbound events, their deliveries, the results of its inbound events,
// and those events' final states and tags. The rows travel
// as arrays, so the statement's text is the same for any number of rows
// (one prepared statement per connection, where a VALUES list would
// prepare and cache one per row count); empty arrays write nothing. The
// foreign keys are checked at the end of the statement, when the events
// the deliveries name are in.
const flushSQL = `WITH ` + pendingCTEs + `, ev AS (
		INSERT INTO events (` + eventCols + `)
		SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::timestamptz[])
	), dl AS (
		INSERT INTO deliveries (` + deliveryCols + `)
		SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::int[],
			?::timestamptz[], ?::text[], ?::timestamptz[], ?::timestamptz[])
	), rs AS (
		INSERT INTO inbound_results (inbound_event_id, kind, result_id)
		SELECT * FROM unnest(?::text[], ?::text[], ?::text[])
		ON CONFLICT (inbound_event_id, kind, result_id) DO NOTHING
	)
	UPDATE inbound_events AS i SET status = v.status, last_error = v.last_error,
		processed_at = v.processed_at, subject = CASE WHEN v.tagged THEN v.subject ELSE i.subject END,
		customer_ref = CASE WHEN v.tagged THEN v.customer_ref ELSE i.customer_ref END
		FROM (SELECT *, subject IS NOT NULL AS tagged FROM unnest(?::text[], ?::text[], ?::text[], ?::timestamptz[], ?::text[], ?::text[])
			AS u (id, status, last_error, processed_at, subject, customer_ref)) AS v
		WHERE i.id = v.id`

// eventArrays is the events' columns as arrays, in eventCols order.
func eventArrays(es []*hub.Event) []any {
	n := len(es)
	ids, programs, types, data := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	partners, created := make([]*string, n), make([]time.Time, n)
	for i, e := range es {
		ids[i], programs[i], types[i], data[i], created[i] = e.ID, e.ProgramID, e.Type, string(e.Data), normTime(e.CreatedAt)
		if e.PartnerID != "" {
			partners[i] = &e.PartnerID
		}
	}
	return []any{ids, programs, types, partners, data, created}
}

// deliveryArrays is the deliveries' columns as arrays, in deliveryCols
// order.
func deliveryArrays(ds []*hub.Delivery) []any {
	n := len(ds)
	ids, programs, events, endpoints, types, statuses, lastErrors :=
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attempts := make([]int32, n)
	nexts := make([]*time.Time, n)
	created, updated := make([]time.Time, n), make([]time.Time, n)
	for i, d := range ds {
		ids[i], programs[i], events[i], endpoints[i], types[i], statuses[i], lastErrors[i] =
			d.ID, d.ProgramID, d.EventID, d.EndpointID, d.EventType, d.Status, d.LastError
		attempts[i], nexts[i], created[i], updated[i] = int32(d.Attempts), normTimePtr(d.NextAttemptAt), normTime(d.CreatedAt), normTime(d.UpdatedAt)
	}
	return []any{ids, programs, events, endpoints, types, statuses, attempts, nexts, lastErrors, created, updated}
}

// resultArrays is the inbound results as arrays.
func resultArrays(rs []inboundResult) []any {
	n := len(rs)
	inbound, kinds, ids := make([]string, n), make([]string, n), make([]string, n)
	for i, r := range rs {
		inbound[i], kinds[i], ids[i] = r.inbound, r.kind, r.id
	}
	return []any{inbound, kinds, ids}
}

// claimArrays is the claimed events' final states and tags as arrays.
func (tx *Tx) claimArrays() []any {
	l := &tx.later
	n := len(l.order)
	ids, statuses, errs := make([]string, n), make([]string, n), make([]string, n)
	subjects, customers := make([]*string, n), make([]*string, n)
	ats := make([]time.Time, n)
	for i, id := range l.order {
		c := l.claimed[id]
		ids[i], statuses[i], errs[i], ats[i] = id, c.status, c.lastErr, normTime(c.processedAt)
		if c.tagged {
			subjects[i], customers[i] = &c.subject, &c.customer
		}
	}
	return []any{ids, statuses, errs, ats, subjects, customers}
}

// insertRows runs INSERT head VALUES (…), (…) … tail over n rows (on
// SQLite), at most maxRowsPerInsert rows a statement; row i's values are
// args(i).
func (tx *Tx) insertRows(ctx context.Context, head, tail string, n, cols int, args func(i int) []any) error {
	for start := 0; start < n; start += maxRowsPerInsert {
		end := min(start+maxRowsPerInsert, n)
		vals := make([]any, 0, (end-start)*cols)
		for i := start; i < end; i++ {
			vals = append(vals, args(i)...)
		}
		if _, err := tx.c.exec(ctx, head+" VALUES "+valueRows(end-start, cols)+tail, vals...); err != nil {
			return err
		}
	}
	return nil
}

// flushEvents inserts the transaction's outbound events (SQLite).
func (tx *Tx) flushEvents(ctx context.Context, es []*hub.Event) error {
	if len(es) == 0 {
		return nil
	}
	err := tx.insertRows(ctx, `INSERT INTO events (`+eventCols+`)`, "", len(es), 6, func(i int) []any {
		e := es[i]
		return []any{e.ID, e.ProgramID, e.Type, nullStr(e.PartnerID), string(e.Data), tx.c.ts(e.CreatedAt)}
	})
	if err != nil {
		return fmt.Errorf("inserting %d outbound events: %w", len(es), err)
	}
	return nil
}

// flushDeliveries inserts the transaction's deliveries (SQLite).
func (tx *Tx) flushDeliveries(ctx context.Context, ds []*hub.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	err := tx.insertRows(ctx, `INSERT INTO deliveries (`+deliveryCols+`)`, "", len(ds), 11, func(i int) []any {
		d := ds[i]
		return []any{d.ID, d.ProgramID, d.EventID, d.EndpointID, d.EventType, d.Status, d.Attempts,
			tx.c.nullTS(d.NextAttemptAt), d.LastError, tx.c.ts(d.CreatedAt), tx.c.ts(d.UpdatedAt)}
	})
	if err != nil {
		return fmt.Errorf("inserting %d deliveries: %w", len(ds), err)
	}
	return nil
}

// flushResults records the results of the inbound events (SQLite).
func (tx *Tx) flushResults(ctx context.Context, rs []inboundResult) error {
	if len(rs) == 0 {
		return nil
	}
	err := tx.insertRows(ctx, `INSERT INTO inbound_results (inbound_event_id, kind, result_id)`,
		` ON CONFLICT (inbound_event_id, kind, result_id) DO NOTHING`, len(rs), 3, func(i int) []any {
			return []any{rs[i].inbound, rs[i].kind, rs[i].id}
		})
	if err != nil {
		return fmt.Errorf("recording results of inbound events: %w", err)
	}
	return nil
}

// flushClaims writes the claimed events' final states and tags (SQLite).
func (tx *Tx) flushClaims(ctx context.Context) error {
	l := &tx.later
	for _, id := range l.order {
		c := l.claimed[id]
		q := "UPDATE inbound_events SET status = ?, last_error = ?, processed_at = ?"
		args := []any{c.status, c.lastErr, tx.c.ts(c.processedAt)}
		if c.tagged {
			q += ", subject = ?, customer_ref = ?"
			args = append(args, c.subject, c.customer)
		}
		if _, err := tx.c.exec(ctx, q+" WHERE id = ?", append(args, id)...); err != nil {
			return fmt.Errorf("finishing inbound event %s: %w", id, err)
		}
	}
	return nil
}

// writeTags writes the tags of the claimed events now, for a statement of
// the transaction that finds inbound events by their tags (a customer's
// redaction); flush writes them again with the final states.
func (tx *Tx) writeTags(ctx context.Context) error {
	for _, id := range tx.later.order {
		c := tx.later.claimed[id]
		if !c.tagged {
			continue
		}
		if _, err := tx.c.exec(ctx, "UPDATE inbound_events SET subject = ?, customer_ref = ? WHERE id = ?", c.subject, c.customer, id); err != nil {
			return fmt.Errorf("tagging inbound event %s: %w", id, err)
		}
	}
	return nil
}

// claimOf returns the claim of an inbound event this transaction claimed,
// or nil.
func (tx *Tx) claimOf(id string) *claim {
	return tx.later.claimed[id]
}
