package contexts

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// poolReady returns how many kernels wait in m's one pool.
func poolReady(t *testing.T, m *Manager) int {
	t.Helper()
	pools := m.Pools()
	if len(pools) != 1 {
		t.Fatalf("pools %+v, want one", pools)
	}
	return pools[0].Ready
}

// startPool starts a Manager with a pool of size python kernels, and
// returns once the pool is full.
func startPool(t *testing.T, size int, cfg Config) (*Manager, *fakeRuntime, *fakeKernels) {
	t.Helper()
	rt := newFakeRuntime(nil)
	cfg.PoolSizes = map[string]int{"python": size}
	m, ks := newTestManager(t, rt, cfg)
	m.Start()
	synctest.Wait()
	if n := poolReady(t, m); n != size {
		t.Fatalf("%d kernels ready, want %d", n, size)
	}
	return m, rt, ks
}

func TestPool(t *testing.T) {
	bubble(t, "take hits a ready kernel and the pool refills", func(t *testing.T) {
		m, rt, _ := startPool(t, 1, testConfig())
		pooled := rt.startedIDs()[0]
		info := mustCreate(t, m)
		if !info.Pooled || info.ID != pooled {
			t.Errorf("created %s (pooled %v), want the pooled %s", info.ID, info.Pooled, pooled)
		}
		synctest.Wait()
		if n, started := poolReady(t, m), rt.startedIDs(); n != 1 || len(started) != 2 {
			t.Errorf("%d ready after %d starts, want 1 after 2", n, len(started))
		}
	})

	bubble(t, "a kernel whose instance ended is discarded", func(t *testing.T) {
		m, rt, _ := startPool(t, 1, testConfig())
		pooled := rt.startedIDs()[0]
		rt.end(pooled, "killed")
		info := mustCreate(t, m)
		if info.Pooled || info.ID == pooled {
			t.Errorf("created %s (pooled %v) from a pool whose kernel ended", info.ID, info.Pooled)
		}
		synctest.Wait()
		if !rt.wasRemoved(pooled) {
			t.Errorf("the ended kernel's instance was not removed: removed %v", rt.removedIDs())
		}
		if n := poolReady(t, m); n != 1 {
			t.Errorf("%d ready, want the pool refilled", n)
		}
	})

	bubble(t, "a kernel slow once is kept, slow twice discarded", func(t *testing.T) {
		m, rt, ks := startPool(t, 1, testConfig())
		slow := rt.startedIDs()[0]
		kernelOf(t, ks, slow).hangReady(true)

		first := mustCreate(t, m)
		synctest.Wait()
		if first.Pooled || first.ID == slow {
			t.Errorf("created %s (pooled %v) from a kernel that did not answer", first.ID, first.Pooled)
		}
		if rt.wasRemoved(slow) || poolReady(t, m) != 1 {
			t.Fatalf("a kernel slow once was not kept: removed %v, %d ready", rt.removedIDs(), poolReady(t, m))
		}

		second := mustCreate(t, m)
		synctest.Wait()
		if second.Pooled || second.ID == slow {
			t.Errorf("created %s (pooled %v) from a kernel that did not answer", second.ID, second.Pooled)
		}
		if !rt.wasRemoved(slow) {
			t.Errorf("a kernel slow twice was kept: removed %v", rt.removedIDs())
		}
		if n := poolReady(t, m); n != 1 {
			t.Errorf("%d ready, want the pool refilled", n)
		}
	})

	bubble(t, "a kernel past PoolMaxAge is replaced", func(t *testing.T) {
		cfg := testConfig()
		cfg.PoolMaxAge = time.Minute
		m, rt, _ := startPool(t, 1, cfg)
		old := rt.startedIDs()[0]
		time.Sleep(cfg.PoolMaxAge + cfg.PoolMaxAge/2) // the bubble's clock: no wait
		synctest.Wait()
		if !rt.wasRemoved(old) {
			t.Errorf("the kernel past its age was not removed: removed %v", rt.removedIDs())
		}
		if info := mustCreate(t, m); !info.Pooled || info.ID == old {
			t.Errorf("created %s (pooled %v), want a fresh pooled kernel", info.ID, info.Pooled)
		}
	})

	bubble(t, "Close removes the pooled kernels", func(t *testing.T) {
		m, rt, ks := startPool(t, 2, testConfig())
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		started, removed := rt.startedIDs(), rt.removedIDs()
		slices.Sort(started)
		slices.Sort(removed)
		if !slices.Equal(started, removed) {
			t.Errorf("removed %v, want all of %v", removed, started)
		}
		for _, id := range started {
			if _, _, _, closed := kernelOf(t, ks, id).stats(); !closed {
				t.Errorf("the kernel of %s was not closed", id)
			}
		}
	})
}
