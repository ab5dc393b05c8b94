package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/partnerhub/partnerhub/hub"
)

// configCache keeps what transactions that apply inbound events read of
// programs, sources, partners, rules and endpoints, across transactions,
// for as long as config_epoch is unchanged. Every change to those tables
// bumps config_epoch in its own transaction (triggers, migration 00014),
// so a transaction that reads the epoch first and finds the cache's
// generation at least as new sees everything committed before it began,
// in any process sharing the database.
//
// A generation holds only what transactions that read its epoch read
// after it, so it is right for that epoch under any isolation level; a
// transaction that reads another epoch replaces the generation (the
// counter may also go back, after a restore or a failover), so around a
// change two transactions may replace it in turn, which costs reads, not
// correctness.
type configCache struct {
	mu  sync.Mutex
	cur *configGen
}

// configGen is what transactions that read config_epoch = epoch read.
// Its values are shared by concurrent transactions and never modified:
// readers get shallow copies, and nothing in processing writes to the
// maps and slices those share (source options, partner tags, rules,
// endpoints). Decrypted source secrets stay in memory as long as the
// generation.
type configGen struct {
	epoch int64

	mu        sync.Mutex
	programs  map[string]*hub.Program
	sources   map[string]*hub.Source
	endpoints map[string][]*hub.Endpoint
	rules     map[string][]*hub.Rule
	partners  map[string]*hub.Partner // by program|id
	// byCode holds found partners by program|lower-cased code. Codes
	// that match no partner are not kept here (they come from webhooks,
	// so there is no bound on them), only in the transaction.
	byCode map[string]*hub.Partner
}

// gen returns the generation for a transaction that read epoch: the
// current one, replaced first when it is of another epoch.
func (cc *configCache) gen(epoch int64) *configGen {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.cur == nil || cc.cur.epoch != epoch {
		cc.cur = &configGen{
			epoch:     epoch,
			programs:  map[string]*hub.Program{},
			sources:   map[string]*hub.Source{},
			endpoints: map[string][]*hub.Endpoint{},
			rules:     map[string][]*hub.Rule{},
			partners:  map[string]*hub.Partner{},
			byCode:    map[string]*hub.Partner{},
		}
	}
	return cc.cur
}

// cached looks key up in one of g's maps.
func cached[V any](g *configGen, m map[string]V, key string) (V, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := m[key]
	return v, ok
}

// keep stores v under key in one of g's maps.
func keep[V any](g *configGen, m map[string]V, key string, v V) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m[key] = v
}

// configGen returns the transaction's generation of the shared cache,
// reading config_epoch on first use; nil when the transaction does not
// use the cache.
func (tx *Tx) configGen(ctx context.Context) (*configGen, error) {
	if tx.cache == nil || tx.gen != nil {
		return tx.gen, nil
	}
	var epoch int64
	if err := tx.c.get(ctx, `SELECT n FROM config_epoch WHERE id = 1`, nil, &epoch); err != nil {
		return nil, fmt.Errorf("reading the configuration epoch: %w", err)
	}
	tx.gen = tx.cache.gen(epoch)
	return tx.gen, nil
}
