package contexts

import (
	"context"
	"time"
)

// cull removes the contexts idle for longer than IdleTTL, and stops the
// sandboxes idle for longer than their own timeouts, until the manager
// closes.
func (m *Manager) cull() {
	defer m.watchers.Done()
	// Each second: a sandbox's own timeout may be as short as that, and a
	// look at every context costs microseconds.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-m.watchCtx.Done():
			return
		}
		now := time.Now()
		for _, b := range m.idleSandboxes(now) {
			m.log.Info("stopping an idle sandbox", "sandbox_id", b.id, "idle_timeout", b.idleTimeout)
			m.end(context.Background(), b)
		}
		m.forgetStopped()
		if m.cfg.IdleTTL <= 0 {
			continue
		}
		for _, c := range idle(m.List(), m.cfg.IdleTTL, now) {
			m.log.Info("removing an idle context", "context_id", c.ID, "idle", now.Sub(c.LastActivity).Round(time.Second))
			m.Delete(context.Background(), c.ID)
		}
	}
}

// idle returns those of all that are idle past ttl at now: without
// activity for longer than ttl, and not busy, since code that runs for
// long is no sign of a context forgotten. Contexts in sandboxes go with
// their sandbox.
func idle(all []Info, ttl time.Duration, now time.Time) []Info {
	var found []Info
	for _, c := range all {
		if c.SandboxID == "" && c.Status != StatusBusy && now.Sub(c.LastActivity) > ttl {
			found = append(found, c)
		}
	}
	return found
}
