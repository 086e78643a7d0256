package contexts

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestStatus(t *testing.T) {
	bubble(t, "busy while executing, active after", func(t *testing.T) {
		m, ks := newTestManager(t, newFakeRuntime(nil), testConfig())
		id := mustCreate(t, m).ID
		if st := status(t, m, id); st != StatusActive {
			t.Fatalf("a new context is %s", st)
		}
		k := kernelOf(t, ks, id)
		k.holdExecutions()
		running := executeAsync(m, id, "work()")
		synctest.Wait()
		if st := status(t, m, id); st != StatusBusy {
			t.Errorf("executing: %s, want %s", st, StatusBusy)
		}
		k.release <- struct{}{}
		if r := <-running; r.err != nil {
			t.Fatal(r.err)
		}
		info, _ := m.Get(id)
		if info.Status != StatusActive || info.ExecutionCount != 1 {
			t.Errorf("after the execution: %s with %d executions, want %s with 1", info.Status, info.ExecutionCount, StatusActive)
		}
	})

	bubble(t, "restarting until the kernel is back, active after", func(t *testing.T) {
		m, ks := newTestManager(t, newFakeRuntime(nil), testConfig())
		id := mustCreate(t, m).ID
		k := kernelOf(t, ks, id)
		gate := k.holdRestarts()
		type restarted struct {
			Info
			err error
		}
		done := make(chan restarted, 1)
		go func() {
			info, err := m.Restart(context.Background(), id)
			done <- restarted{info, err}
		}()
		synctest.Wait()
		if st := status(t, m, id); st != StatusRestarting {
			t.Errorf("restarting: %s, want %s", st, StatusRestarting)
		}
		close(gate)
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.Status != StatusActive || r.Restarts != 1 {
			t.Errorf("after the restart: %s with %d restarts, want %s with 1", r.Status, r.Restarts, StatusActive)
		}
		if _, setups, _, _ := k.stats(); setups != 1 {
			t.Errorf("the kernel was set up %d times after its restart, want once", setups)
		}
	})

	bubble(t, "dead once the instance ends, refusing executions", func(t *testing.T) {
		rt := newFakeRuntime(nil)
		m, _ := newTestManager(t, rt, testConfig())
		id := mustCreate(t, m).ID
		rt.end(id, "OOMKilled")
		if st := status(t, m, id); st != StatusDead {
			t.Errorf("instance ended: %s, want %s", st, StatusDead)
		}
		if _, err := m.Execute(t.Context(), id, ExecuteRequest{Code: "1"}); Code(err) != CodeContextDead {
			t.Errorf("execute in a dead context: %v, want %s", err, CodeContextDead)
		}
	})

	bubble(t, "an execution whose instance ends fails with ContainerDied", func(t *testing.T) {
		rt := newFakeRuntime(nil)
		m, ks := newTestManager(t, rt, testConfig())
		id := mustCreate(t, m).ID
		k := kernelOf(t, ks, id)
		k.holdExecutions()
		running := executeAsync(m, id, "work()")
		synctest.Wait()
		start := time.Now()
		rt.end(id, "killed")
		k.lose()
		r := <-running
		if r.err != nil || r.Error == nil || r.Error.Name != ErrContainerDied {
			t.Errorf("execution whose instance ended: error %+v, %v; want %s", r.Error, r.err, ErrContainerDied)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("the execution took %v to tell its instance ended", waited)
		}
		if st := status(t, m, id); st != StatusDead {
			t.Errorf("after: %s, want %s", st, StatusDead)
		}
	})

	bubble(t, "an execution whose context is deleted fails with ContextDeleted", func(t *testing.T) {
		m, ks := newTestManager(t, newFakeRuntime(nil), testConfig())
		id := mustCreate(t, m).ID
		kernelOf(t, ks, id).holdExecutions()
		running := executeAsync(m, id, "work()")
		synctest.Wait()
		if err := m.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		r := <-running
		if r.err != nil || r.Error == nil || r.Error.Name != ErrContextDeleted {
			t.Errorf("execution whose context was deleted: error %+v, %v; want %s", r.Error, r.err, ErrContextDeleted)
		}
	})

	bubble(t, "recovering refuses what needs the kernel", func(t *testing.T) {
		store := DirStore(t.TempDir())
		rt := newFakeRuntime(store)
		rt.insts = []Instance{{ContextID: "ctx-old", ID: "c1", Running: true}}
		rt.dialGate = make(chan struct{}) // holds the takeover
		m, ks := newTestManager(t, rt, testConfig())
		ks.leave("ctx-old", false)
		if err := store.Save(Record{ID: "ctx-old", Language: "python", WorkingDir: DefaultWorkingDir, Token: "t"}); err != nil {
			t.Fatal(err)
		}
		if err := m.Recover(t.Context()); err != nil {
			t.Fatal(err)
		}
		if st := status(t, m, "ctx-old"); st != StatusRecovering {
			t.Fatalf("being taken over: %s, want %s", st, StatusRecovering)
		}
		ops := []struct {
			name string
			do   func() error
		}{
			{"execute", func() error {
				_, err := m.Execute(t.Context(), "ctx-old", ExecuteRequest{Code: "1"})
				return err
			}},
			{"interrupt", func() error { return m.Interrupt(t.Context(), "ctx-old") }},
			{"restart", func() error {
				_, err := m.Restart(t.Context(), "ctx-old")
				return err
			}},
			{"history", func() error {
				_, err := m.History("ctx-old", 0, 10)
				return err
			}},
		}
		for _, op := range ops {
			if err := op.do(); Code(err) != CodeContextRecovering {
				t.Errorf("%s while recovering: %v, want %s", op.name, err, CodeContextRecovering)
			}
		}
		close(rt.dialGate)
		synctest.Wait()
		if st := status(t, m, "ctx-old"); st != StatusActive {
			t.Fatalf("taken over: %s, want %s", st, StatusActive)
		}
		if _, err := m.Execute(t.Context(), "ctx-old", ExecuteRequest{Code: "1"}); err != nil {
			t.Errorf("execute once taken over: %v", err)
		}
	})
}
