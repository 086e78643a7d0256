package contexts

import (
	"context"
	"time"
)

// cull removes the contexts idle for longer than IdleTTL until the manager
// closes.
func (m *Manager) cull() {
	defer m.watchers.Done()
	tick := time.NewTicker(min(max(m.cfg.IdleTTL/4, time.Second), 30*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-m.watchCtx.Done():
			return
		}
		now := time.Now()
		for _, c := range idle(m.List(), m.cfg.IdleTTL, now) {
			m.log.Info("removing an idle context", "context_id", c.ID, "idle", now.Sub(c.LastActivity).Round(time.Second))
			m.Delete(context.Background(), c.ID)
		}
	}
}

// idle returns those of all that are idle past ttl at now: without
// activity for longer than ttl, and not busy, since code that runs for
// long is no sign of a context forgotten.
func idle(all []Info, ttl time.Duration, now time.Time) []Info {
	var found []Info
	for _, c := range all {
		if c.Status != StatusBusy && now.Sub(c.LastActivity) > ttl {
			found = append(found, c)
		}
	}
	return found
}
