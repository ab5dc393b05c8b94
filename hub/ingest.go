package hub

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/partnerhub/partnerhub/hub/groupcommit"
)

// Group commit for ingest. Webhooks arriving together share one insert
// statement (one commit) and one queue task, so the database's commit
// latency and the queue's per-task cost are paid per batch rather than per
// webhook. Nothing is answered before its row is durable: a request waits
// for the commit of the batch that holds it.
//
// There is no background goroutine: a request finding no commit running
// becomes the committer and commits everything pending, its own event
// included; requests arriving meanwhile wait and are taken by the next
// commit. At low load every webhook is its own batch, with no added wait
// (under a steady load the committer first waits for company: below).
//
// One commit runs at a time. With four, concurrent commits split the
// load into batches of one or two webhooks: more inserts, more commits and
// more (smaller) processing transactions behind them. At 1,200 sales/s
// offered, one commit at a time cut the CPU of the whole stack by 12-24 %
// and kept up where four fell behind; ingest alone went from 11,100 to
// 12,900-13,400 webhooks/s on PostgreSQL, and its p99 at 2,000/s offered
// from 9.4-9.6 ms to 7.8-8.3 ms.
//
// Under a steady moderate load a commit waits for company: when webhooks
// come at least one per ingestPace (groupcommit.Pacer) and no commit is
// under way, the first one waits until ingestGather are pending or
// ingestLinger has passed. Without it, at 500 webhooks/s nearly every
// commit held one: at 500 sales/s offered, gathering eight cut the
// statements per sale from about 5 to 2.0 and the CPU of the whole stack
// by 29 % (with first attempts waiting in their endpoint's line for the
// bursts this makes), for about 8 ms of ingest latency. Slower webhooks
// never wait; faster ones gather within a few milliseconds.
//
// After its insert, a batch passes the turn to the next one while it
// queues (or applies inline) its own events, as long as fewer than
// maxFollowing batches are doing so: a slow queue delays only its own
// batch's answers. Beyond that the next commit waits, and batches grow.

// BatchInserter is a Store that inserts several inbound events in one
// statement (see store.DB.InsertInboundEvents).
type BatchInserter interface {
	InsertInboundEvents(ctx context.Context, evs []*InboundEvent) ([]*InboundEvent, []bool, error)
}

// Requeuer is a Queue that can queue an event processed before for
// processing again: under a task id of its own, since the task that
// processed it may still be finishing under the usual one.
type Requeuer interface {
	EnqueueProcessAgain(ctx context.Context, id string) error
}

// BatchEnqueuer is a Queue that queues the processing of several inbound
// events as one task.
type BatchEnqueuer interface {
	EnqueueProcessBatch(ctx context.Context, ids []string) error
}

const (
	// maxFollowing bounds the batches that queue their events after
	// passing the turn on.
	maxFollowing   = 4
	maxIngestBatch = 256
	// A commit waits for company while webhooks come at least one per
	// ingestPace: until ingestGather are pending, ingestLinger at most.
	ingestPace   = 5 * time.Millisecond
	ingestLinger = 16 * time.Millisecond
	ingestGather = 8
	// maxInline bounds the chunks of inlineChunk events applied inline at
	// once (see processInline); more are queued as tasks.
	maxInline   = 32
	inlineChunk = 32
	// closeWait bounds how long Close waits for chunks applied inline.
	closeWait = 10 * time.Second
	// commitTimeout bounds a batch's insert; requests of a client that
	// went away do not cancel the batch others share.
	commitTimeout = 15 * time.Second
)

type ingestReq struct {
	ctx      context.Context
	ev       *InboundEvent
	stored   *InboundEvent
	inserted bool
	err      error
	done     chan struct{}
}

type ingestGroup struct {
	s       *Service
	mu      sync.Mutex
	pending []*ingestReq
	// committing is set while a batch holds the turn to commit.
	committing bool
	// following holds a slot per batch queueing its events after passing
	// the turn on.
	following chan struct{}
	// A commit waits for company while webhooks come at least one per
	// pace: until gather are pending, linger at most (none when zero).
	linger, pace time.Duration
	gather       int
	pacer        groupcommit.Pacer
	// company, while a commit waits for it, is filled when gather are
	// pending.
	company groupcommit.Company
}

// submit stores req.ev, batched with concurrent requests, and queues its
// processing; it returns when req is settled.
func (g *ingestGroup) submit(ctx context.Context, req *ingestReq) {
	if ctx == nil {
		ctx = context.Background() // take asks it for its error under the lock
	}
	req.ctx = ctx
	g.mu.Lock()
	now := time.Now()
	if g.linger > 0 {
		g.pacer.Arrived(now, g.pace)
	}
	g.pending = append(g.pending, req)
	if len(g.pending) >= g.gather {
		g.company.Fill()
	}
	if !g.committing {
		g.committing = true
		if g.linger > 0 && len(g.pending) < g.gather && g.pacer.Steady(now, g.pace) {
			g.waitForCompany()
		}
		batch := g.take()
		g.mu.Unlock()
		g.run(ctx, batch)
	} else {
		g.mu.Unlock()
	}
	<-req.done
}

// waitForCompany waits until gather requests are pending or linger has
// passed; mu is held, and released meanwhile.
func (g *ingestGroup) waitForCompany() {
	full := g.company.Start()
	linger := g.linger
	g.mu.Unlock()
	groupcommit.WaitForCompany(full, linger)
	g.mu.Lock()
	g.company.End(full)
}

// take removes up to maxIngestBatch pending requests; mu is held.
// Requests whose client has gone are answered with its error instead: they
// were never stored.
func (g *ingestGroup) take() []*ingestReq {
	var batch []*ingestReq
	n := 0
	for _, r := range g.pending {
		if len(batch) == maxIngestBatch {
			break
		}
		n++
		if err := r.ctx.Err(); err != nil {
			r.err = fmt.Errorf("storing inbound event: %w", err)
			close(r.done)
			continue
		}
		batch = append(batch, r)
	}
	rest := copy(g.pending, g.pending[n:])
	clear(g.pending[rest:])
	g.pending = g.pending[:rest]
	return batch
}

// run commits a batch, passes the turn on (see next), queues the
// processing of the batch's events and answers its requests. A panic
// fails the batch's requests that are not settled yet, is logged, and
// passes the turn on all the same.
func (g *ingestGroup) run(ctx context.Context, batch []*ingestReq) {
	passed := false
	following := false
	defer func() {
		if p := recover(); p != nil {
			g.s.log.ErrorContext(ctx, "ingest batch panicked", "webhooks", len(batch), "panic", p, "stack", string(debug.Stack()))
			for _, r := range batch {
				if r.err == nil && r.stored == nil {
					r.err = fmt.Errorf("storing inbound event: internal error")
				}
			}
		}
		if following {
			<-g.following
		}
		if !passed {
			g.next(ctx)
		}
		for _, r := range batch {
			close(r.done)
		}
	}()
	due, redue := g.commit(ctx, batch)
	select {
	case g.following <- struct{}{}:
		following, passed = true, true
		g.next(ctx)
	default:
	}
	s := g.s
	if len(due) > 0 {
		due = s.processInline(due)
	}
	if len(redue)+len(due) > 0 {
		s.enqueueProcessing(ctx, append(redue, due...))
	}
}

// next starts the commit of what arrived meanwhile, in the background, or
// ends the committer.
func (g *ingestGroup) next(ctx context.Context) {
	g.mu.Lock()
	if len(g.pending) == 0 {
		g.committing = false
		g.mu.Unlock()
		return
	}
	batch := g.take()
	g.mu.Unlock()
	go g.run(ctx, batch)
}

// commit stores a batch and returns the ids of its events to process:
// those never tried (due) and those tried before that still wait
// (redue).
func (g *ingestGroup) commit(ctx context.Context, batch []*ingestReq) (due, redue []string) {
	s := g.s
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	evs := make([]*InboundEvent, len(batch))
	for i, r := range batch {
		evs[i] = r.ev
	}
	var stored []*InboundEvent
	var inserted []bool
	if bi, ok := s.st.(BatchInserter); ok && len(batch) > 1 {
		var err error
		if stored, inserted, err = bi.InsertInboundEvents(cctx, evs); err != nil {
			for _, r := range batch {
				r.err = fmt.Errorf("storing inbound event: %w", err)
			}
			return nil, nil
		}
	} else {
		stored, inserted = make([]*InboundEvent, len(batch)), make([]bool, len(batch))
		for i, ev := range evs {
			var err error
			if stored[i], inserted[i], err = s.st.InsertInboundEvent(cctx, ev); err != nil {
				batch[i].err = fmt.Errorf("storing inbound event: %w", err)
			}
		}
	}
	seen := map[string]bool{}
	for i, r := range batch {
		if r.err != nil {
			continue
		}
		r.stored, r.inserted = stored[i], inserted[i]
		// An event stored earlier but still waiting is queued again: its
		// first task may have been lost with the queue.
		if r.stored.Status == InboundReceived && !seen[r.stored.ID] {
			seen[r.stored.ID] = true
			if r.stored.Attempts > 0 {
				// Tried before: the queue retries it, with its backoff.
				redue = append(redue, r.stored.ID)
			} else {
				due = append(due, r.stored.ID)
			}
		}
	}
	return due, redue
}

// enqueueProcessing queues the processing of stored events: one task for
// them all when the queue can.
func (s *Service) enqueueProcessing(ctx context.Context, ids []string) {
	qctx, qcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.EnqueueTimeout)
	defer qcancel()
	var err error
	if be, ok := s.q.(BatchEnqueuer); ok && len(ids) > 1 {
		err = be.EnqueueProcessBatch(qctx, ids)
	} else {
		for _, id := range ids {
			if e := s.q.EnqueueProcess(qctx, id); e != nil {
				err = e
			}
		}
	}
	if err != nil {
		s.log.WarnContext(ctx, "queue unavailable; the sweeper will enqueue the events", "events", len(ids), "error", err)
	}
}

// processInline applies the events one group commit stored in this
// process, without a queue task, when ServiceConfig.ProcessInline is set:
// in chunks of at most inlineChunk events, each while fewer than
// maxInline chunks are being applied so. It returns the ids it did not
// take, for the caller to queue. A chunk that fails (or panics) is queued
// as a task, which the queue retries; if the process dies first, the rows
// are received and due, and the sweeper queues them.
func (s *Service) processInline(ids []string) (rest []string) {
	if !s.cfg.ProcessInline {
		return ids
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), inlineChunk)]
		if !s.inline.TryGo(func() { s.applyInline(chunk) }) {
			break
		}
		ids = ids[len(chunk):]
	}
	return ids
}

// applyInline applies a chunk taken by processInline, or queues it.
func (s *Service) applyInline(ids []string) {
	ctx := context.Background()
	defer func() {
		if p := recover(); p != nil {
			s.log.ErrorContext(ctx, "applying events inline panicked; queueing them", "events", len(ids), "panic", fmt.Sprint(p))
			s.enqueueProcessing(ctx, ids)
		}
	}()
	if err := s.ProcessBatch(ctx, ids); err != nil {
		s.log.DebugContext(ctx, "events not applied inline; queueing them", "events", len(ids), "error", err)
		s.enqueueProcessing(ctx, ids)
	}
}
