package connectors

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// sourceCache keeps the sources /in looked up for a moment, so that a
// stream of webhooks costs no database read each; unknown ids are
// remembered too, so a flood of them costs none either. A webhook that
// fails verification against a cached source is verified again against
// the stored one, so a new secret applies at once; a secret removed
// (keep_previous false) stops verifying within sourceTTL.
type sourceCache struct {
	get func(ctx context.Context, id string) (*hub.Source, error)
	now func() time.Time
	mu  sync.Mutex
	m   map[string]sourceEntry
}

type sourceEntry struct {
	src     *hub.Source // nil: not found
	expires time.Time
}

const (
	sourceTTL      = 2 * time.Second
	sourceCacheMax = 10000
)

// lookup returns the source, hub.ErrNotFound, or another error (never
// cached), and whether the answer came from the cache.
func (c *sourceCache) lookup(ctx context.Context, id string) (*hub.Source, bool, error) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && c.now().Before(e.expires) {
		if e.src == nil {
			return nil, true, hub.ErrNotFound
		}
		return e.src, true, nil
	}
	src, err := c.refresh(ctx, id)
	return src, false, err
}

// refresh reads the source from the store and caches the answer.
func (c *sourceCache) refresh(ctx context.Context, id string) (*hub.Source, error) {
	now := c.now()
	src, err := c.get(ctx, id)
	if err != nil && !errors.Is(err, hub.ErrNotFound) {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= sourceCacheMax {
		c.m = make(map[string]sourceEntry)
	}
	c.m[id] = sourceEntry{src: src, expires: now.Add(sourceTTL)}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return src, nil
}
