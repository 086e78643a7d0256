package contexts

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func TestCull(t *testing.T) {
	bubble(t, "an idle context goes after IdleTTL, a busy one stays", func(t *testing.T) {
		cfg := testConfig()
		cfg.IdleTTL = time.Minute
		rt := newFakeRuntime(nil)
		m, ks := newTestManager(t, rt, cfg)
		m.Start()
		idle, busy := mustCreate(t, m), mustCreate(t, m)
		k := kernelOf(t, ks, busy.ID)
		k.holdExecutions()
		running := executeAsync(m, busy.ID, "loop()")
		synctest.Wait()

		time.Sleep(cfg.IdleTTL / 2) // the bubble's clock: no wait
		synctest.Wait()
		if _, err := m.Get(idle.ID); err != nil {
			t.Fatalf("a context idle for less than IdleTTL: %v", err)
		}

		time.Sleep(cfg.IdleTTL)
		synctest.Wait()
		if _, err := m.Get(idle.ID); Code(err) != CodeNotFound || !rt.wasRemoved(idle.ID) {
			t.Errorf("a context idle past IdleTTL: %v, removed %v", err, rt.removedIDs())
		}
		if st := status(t, m, busy.ID); st != StatusBusy {
			t.Errorf("the busy context is %s", st)
		}

		// Its idle time counts from the end of its execution.
		k.release <- struct{}{}
		if r := <-running; r.err != nil {
			t.Fatal(r.err)
		}
		time.Sleep(cfg.IdleTTL / 2)
		synctest.Wait()
		if _, err := m.Get(busy.ID); err != nil {
			t.Fatalf("a context idle for less than IdleTTL since its execution: %v", err)
		}
		time.Sleep(cfg.IdleTTL)
		synctest.Wait()
		if _, err := m.Get(busy.ID); Code(err) != CodeNotFound {
			t.Errorf("a context idle past IdleTTL since its execution: %v", err)
		}
	})
}

// A context is idle once it has gone without activity for longer than
// the TTL, unless its code is running.
func TestIdle(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	ttl := 10 * time.Minute
	all := []Info{
		{ID: "old", Status: StatusActive, LastActivity: now.Add(-11 * time.Minute)},
		{ID: "old-busy", Status: StatusBusy, LastActivity: now.Add(-time.Hour)},
		{ID: "recent", Status: StatusActive, LastActivity: now.Add(-9 * time.Minute)},
		{ID: "at-ttl", Status: StatusActive, LastActivity: now.Add(-ttl)},
		{ID: "old-dead", Status: StatusDead, LastActivity: now.Add(-11 * time.Minute)},
		{ID: "old-restarting", Status: StatusRestarting, LastActivity: now.Add(-11 * time.Minute)},
	}
	var ids []string
	for _, c := range idle(all, ttl, now) {
		ids = append(ids, c.ID)
	}
	if want := []string{"old", "old-dead", "old-restarting"}; !slices.Equal(ids, want) {
		t.Errorf("idle: %v, want %v", ids, want)
	}
}
