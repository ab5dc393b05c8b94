// Package bounded runs background work in a bounded number of goroutines
// that can be stopped and waited for: work handed over when every slot is
// taken, or after Close, is refused, so that the caller can take another
// way (a queue) instead of piling up goroutines.
package bounded

import (
	"sync"
	"time"
)

// Group runs at most its size of functions at once.
type Group struct {
	slots  chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
}

// New returns a Group of n slots.
func New(n int) *Group {
	return &Group{slots: make(chan struct{}, n)}
}

// TryGo runs f in a goroutine if a slot is free and Close has not begun,
// and reports whether it did.
func (g *Group) TryGo(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	select {
	case g.slots <- struct{}{}:
	default:
		return false
	}
	g.wg.Add(1)
	go func() {
		defer func() {
			<-g.slots
			g.wg.Done()
		}()
		f()
	}()
	return true
}

// Close makes TryGo refuse work and waits up to wait for the functions
// running; it reports whether they all returned. Wait waits for the rest.
func (g *Group) Close(wait time.Duration) bool {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Wait waits until every function started has returned.
func (g *Group) Wait() { g.wg.Wait() }
