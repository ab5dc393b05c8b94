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

// configGen is what transactions that read config_epoch = epoch read (or,
// with epoch 0, what one transaction outside processing read).
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
		cc.cur = newConfigGen(epoch)
	}
	return cc.cur
}

func newConfigGen(epoch int64) *configGen {
	return &configGen{
		epoch:     epoch,
		programs:  map[string]*hub.Program{},
		sources:   map[string]*hub.Source{},
		endpoints: map[string][]*hub.Endpoint{},
		rules:     map[string][]*hub.Rule{},
		partners:  map[string]*hub.Partner{},
		byCode:    map[string]*hub.Partner{},
	}
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

// configGen returns the transaction's generation: of the shared cache
// (reading config_epoch on first use) when the transaction has one, else
// a generation of its own, so that what it reads of the configuration is
// read once per transaction.
func (tx *Tx) configGen(ctx context.Context) (*configGen, error) {
	switch {
	case tx.gen != nil:
	case tx.cache == nil:
		tx.gen = newConfigGen(0)
	default:
		var epoch int64
		if err := tx.c.get(ctx, `SELECT n FROM config_epoch WHERE id = 1`, nil, &epoch); err != nil {
			return nil, fmt.Errorf("reading the configuration epoch: %w", err)
		}
		tx.gen = tx.cache.gen(epoch)
	}
	return tx.gen, nil
}

// fromGen returns what the transaction's generation holds under key in
// the map pick selects, loading and keeping it on a miss.
func fromGen[V any](ctx context.Context, tx *Tx, pick func(*configGen) map[string]V, key string, load func() (V, error)) (V, error) {
	var zero V
	g, err := tx.configGen(ctx)
	if err != nil {
		return zero, err
	}
	if v, ok := cached(g, pick(g), key); ok {
		return v, nil
	}
	v, err := load()
	if err != nil {
		return zero, err
	}
	keep(g, pick(g), key, v)
	return v, nil
}
