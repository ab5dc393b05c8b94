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
// in any process sharing the database. A transaction reads the tables
// only after it has its generation, so what it stores there is at least
// as new as the generation's epoch.
type configCache struct {
	mu  sync.Mutex
	cur *configGen
}

// configGen is what was read while config_epoch was epoch (or later).
// Its values are shared by concurrent transactions and never modified:
// readers get copies.
type configGen struct {
	epoch int64

	mu        sync.Mutex
	programs  map[string]*hub.Program
	sources   map[string]*hub.Source
	endpoints map[string][]*hub.Endpoint
	rules     map[string][]*hub.Rule
	partners  map[string]*hub.Partner // by program|id
	byCode    map[string]*hub.Partner // by program|code; nil: no partner
}

// gen returns the generation for a transaction that read epoch: the
// current one, replaced first when epoch is newer.
func (cc *configCache) gen(epoch int64) *configGen {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.cur == nil || cc.cur.epoch < epoch {
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
