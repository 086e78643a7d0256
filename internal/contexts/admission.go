package contexts

import (
	"context"
	"sync"
	"time"
)

// admission counts the contexts that exist or are being made against
// Config.MaxContexts, and makes a create wait up to Config.FullWait for
// room.
type admission struct {
	max  int           // 0 is no cap
	wait time.Duration // how long reserve waits for room

	mu       sync.Mutex
	reserved int
	// freed is closed, and replaced, when a context goes.
	freed chan struct{}
}

func newAdmission(max int, wait time.Duration) *admission {
	return &admission{max: max, wait: wait, freed: make(chan struct{})}
}

// reserve counts a context about to be made against MaxContexts. When
// there is no room it waits up to FullWait for a context to go, then fails
// with CodeTooManyContexts.
func (a *admission) reserve(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.wait)
	defer cancel()
	for {
		a.mu.Lock()
		if a.max <= 0 || a.reserved < a.max {
			a.reserved++
			a.mu.Unlock()
			return nil
		}
		freed := a.freed
		a.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return Errorf(CodeTooManyContexts, "there are %d contexts, the most this daemon allows; delete some first", a.max)
		}
	}
}

// add counts a context that exists whether there is room or not: one a
// previous run of the daemon left, being taken over.
func (a *admission) add() {
	a.mu.Lock()
	a.reserved++
	a.mu.Unlock()
}

// release gives back what reserve or add took, and wakes the creates
// waiting for room.
func (a *admission) release() {
	a.mu.Lock()
	a.reserved--
	close(a.freed)
	a.freed = make(chan struct{})
	a.mu.Unlock()
}
