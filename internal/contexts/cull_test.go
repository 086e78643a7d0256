package contexts

import (
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
