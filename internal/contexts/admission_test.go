package contexts

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// created is the outcome of a Create run in the background.
type created struct {
	Info
	err error
}

func createAsync(ctx context.Context, m *Manager) <-chan created {
	done := make(chan created, 1)
	go func() {
		info, err := m.Create(ctx, CreateRequest{})
		done <- created{info, err}
	}()
	return done
}

func TestAdmission(t *testing.T) {
	bubble(t, "full without FullWait refuses at once", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxContexts = 1
		m, _ := newTestManager(t, newFakeRuntime(nil), cfg)
		mustCreate(t, m)
		if _, err := m.Create(t.Context(), CreateRequest{}); Code(err) != CodeTooManyContexts {
			t.Errorf("create past MaxContexts: %v, want %s", err, CodeTooManyContexts)
		}
	})

	bubble(t, "full with FullWait waits for a delete", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxContexts = 1
		cfg.FullWait = time.Minute
		rt := newFakeRuntime(nil)
		m, _ := newTestManager(t, rt, cfg)
		first := mustCreate(t, m)
		waiting := createAsync(t.Context(), m)
		synctest.Wait()
		select {
		case c := <-waiting:
			t.Fatalf("create past MaxContexts did not wait: %+v, %v", c.Info, c.err)
		default:
		}
		if n := len(rt.startedIDs()); n != 1 {
			t.Fatalf("%d instances started, want only the first's", n)
		}
		start := time.Now()
		if err := m.Delete(t.Context(), first.ID); err != nil {
			t.Fatal(err)
		}
		c := <-waiting
		if c.err != nil {
			t.Fatalf("create after a delete: %v", c.err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("the create took %v after the delete, want it woken at once", waited)
		}
	})

	bubble(t, "a create whose ctx ends stops waiting", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxContexts = 1
		cfg.FullWait = time.Minute
		m, _ := newTestManager(t, newFakeRuntime(nil), cfg)
		mustCreate(t, m)
		ctx, cancel := context.WithCancel(t.Context())
		waiting := createAsync(ctx, m)
		synctest.Wait()
		start := time.Now()
		cancel()
		c := <-waiting
		if Code(c.err) != CodeTooManyContexts {
			t.Errorf("create whose ctx ended: %v, want %s", c.err, CodeTooManyContexts)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("the create waited %v after its ctx ended", waited)
		}
	})

	bubble(t, "pooled kernels do not count", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxContexts = 1
		m, _, _ := startPool(t, 1, cfg)
		if info := mustCreate(t, m); !info.Pooled {
			t.Errorf("created %s without the pooled kernel", info.ID)
		}
		synctest.Wait()
		if n := poolReady(t, m); n != 1 {
			t.Errorf("%d ready, want the pool refilled past MaxContexts", n)
		}
		if _, err := m.Create(t.Context(), CreateRequest{}); Code(err) != CodeTooManyContexts {
			t.Errorf("create past MaxContexts with a pooled kernel ready: %v, want %s", err, CodeTooManyContexts)
		}
	})
}

// Past the cap, reserve waits for a release, and fails once the wait is
// over; contexts taken over count even past the cap.
func TestAdmissionCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdmission(1, time.Minute)
		if err := a.reserve(context.Background()); err != nil {
			t.Fatalf("first reserve: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- a.reserve(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("reserve past the cap returned %v without waiting", err)
		default:
		}
		a.release()
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("reserve after a release: %v", err)
			}
		default:
			t.Fatal("reserve still waits after a release")
		}

		a.add()
		a.release()
		start := time.Now()
		if err := a.reserve(context.Background()); Code(err) != CodeTooManyContexts {
			t.Fatalf("reserve with a taken-over context counted: %v, want %s", err, CodeTooManyContexts)
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Errorf("reserve waited %v, want %v", waited, time.Minute)
		}
	})
}

// Without a cap, reserve never waits.
func TestAdmissionNoCap(t *testing.T) {
	a := newAdmission(0, 0)
	for range 3 {
		if err := a.reserve(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
