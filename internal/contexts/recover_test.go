package contexts

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Recover returns before any context is taken over, lists those it takes
// over as recovering (refusing what needs their kernel, counting them
// against MaxContexts), removes what it cannot take over, and drops a
// record only once its container is gone.
func TestRecoverDecisions(t *testing.T) {
	dir := t.TempDir()
	store := DirStore(dir)
	rt := newFakeRuntime(store)
	rt.insts = []Instance{
		{ContextID: "ctx-held", ID: "c1", Running: true},     // taken over, then its removal fails
		{ContextID: "ctx-stopped", ID: "c2", Running: false}, // removed
		{ContextID: "ctx-norecord", ID: "c3", Running: true}, // removed
	}
	// Dialling waits, to hold the takeover in the middle, and then fails.
	rt.dialGate = make(chan struct{})
	rt.dialErr = errors.New("dialling failed")
	rt.failRemove = map[string]bool{"ctx-held": true}
	cfg := testConfig()
	cfg.MaxContexts = 1
	m, _ := newTestManager(t, rt, cfg)
	for _, id := range []string{"ctx-held", "ctx-stopped", "ctx-gone"} {
		if err := os.WriteFile(store.recordFile(id), []byte(`{"id":"`+id+`","language":"python","token":"t"}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	events, stop := m.Subscribe()
	defer stop()
	if err := m.Recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	if l := m.List(); len(l) != 1 || l[0].ID != "ctx-held" || l[0].Status != StatusRecovering {
		t.Fatalf("listed while recovering: %+v", l)
	}
	if _, err := m.Execute(t.Context(), "ctx-held", ExecuteRequest{Code: "1"}); Code(err) != CodeContextRecovering {
		t.Errorf("execute while recovering: %v", err)
	}
	if err := m.Interrupt(t.Context(), "ctx-held"); Code(err) != CodeContextRecovering {
		t.Errorf("interrupt while recovering: %v", err)
	}
	if _, err := m.Create(t.Context(), CreateRequest{}); Code(err) != CodeTooManyContexts {
		t.Errorf("create past MaxContexts while recovering: %v", err)
	}
	if _, err := os.Stat(store.recordFile("ctx-gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record without a container: %v", err)
	}

	close(rt.dialGate)
	// Delete waits for the takeover to end, and the context is gone by then.
	if err := m.Delete(t.Context(), "ctx-held"); Code(err) != CodeNotFound {
		t.Errorf("delete after a failed takeover: %v", err)
	}
	// It was listed, so its going is told as any context's is.
	select {
	case e := <-events:
		if e.Type != EventContextDeleted || e.ContextID != "ctx-held" {
			t.Errorf("event %+v, want context.deleted of ctx-held", e)
		}
	case <-time.After(10 * time.Second):
		t.Error("no event for the context whose takeover failed")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	removed := rt.removedIDs()
	slices.Sort(removed)
	if want := []string{"ctx-held", "ctx-norecord", "ctx-stopped"}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 1 || filepath.Base(files[0]) != "ctx-held.json" {
		t.Errorf("records left: %v; want only that of the container whose removal failed", files)
	}
}

// Recover takes over a running instance it has a record of, whose kernel
// answers or is busy with a cell; it removes every other instance, and
// drops every record it cannot use.
func TestRecover(t *testing.T) {
	tests := []struct {
		name     string
		instance bool // a previous run left an instance
		running  bool // and it runs
		record   bool // and a record, with a history
		kernel   bool // and a kernel on the instance
		busy     bool // running a cell
		stuck    bool // that does not answer
		adopted  bool
	}{
		{name: "busy: interrupted and taken over", instance: true, running: true, record: true, kernel: true, busy: true, adopted: true},
		{name: "busy, ignoring the interrupt: taken over", instance: true, running: true, record: true, kernel: true, busy: true, stuck: true, adopted: true},
		{name: "idle: taken over", instance: true, running: true, record: true, kernel: true, adopted: true},
		{name: "idle, not answering: removed", instance: true, running: true, record: true, kernel: true, stuck: true},
		{name: "no kernel: removed", instance: true, running: true, record: true},
		{name: "dead: removed", instance: true, record: true, kernel: true},
		{name: "unknown: removed", instance: true, running: true, kernel: true},
		{name: "record without an instance: dropped", record: true},
	}
	for _, tt := range tests {
		bubble(t, tt.name, func(t *testing.T) {
			const id = "ctx-1"
			store := DirStore(t.TempDir())
			rt := newFakeRuntime(store)
			if tt.instance {
				rt.insts = []Instance{{ContextID: id, ID: "c1", Running: tt.running}}
			}
			m, ks := newTestManager(t, rt, testConfig())
			var k *fakeKernel
			if tt.kernel {
				k = ks.leave(id, tt.busy)
				if tt.stuck {
					k.hangReady(true)
				}
			}
			if tt.record {
				if err := store.Save(Record{ID: id, Language: "python", SessionName: "s", WorkingDir: DefaultWorkingDir, Token: "t"}); err != nil {
					t.Fatal(err)
				}
				line, _ := json.Marshal(Entry{ID: 1, Kind: KindExecution, Code: "x = 1", Success: true})
				if err := os.WriteFile(store.HistoryFile(id), append(line, '\n'), 0o600); err != nil {
					t.Fatal(err)
				}
			}

			if err := m.Recover(t.Context()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(recoverTimeout) // the bubble's clock: no wait
			synctest.Wait()

			_, recordErr := store.Load(id)
			_, historyErr := os.Stat(store.HistoryFile(id))
			if !tt.adopted {
				if _, err := m.Get(id); Code(err) != CodeNotFound {
					t.Errorf("get: %v, want %s", err, CodeNotFound)
				}
				if tt.instance != rt.wasRemoved(id) {
					t.Errorf("removed %v, want the instance removed: %v", rt.removedIDs(), tt.instance)
				}
				if !errors.Is(recordErr, os.ErrNotExist) || !errors.Is(historyErr, os.ErrNotExist) {
					t.Errorf("record: %v, history: %v; want both dropped", recordErr, historyErr)
				}
				if k != nil {
					interrupts, _, _, closed := k.stats()
					if interrupts != 0 {
						t.Errorf("a kernel not taken over was interrupted %d times", interrupts)
					}
					if tt.stuck && !closed {
						t.Error("the connection to a kernel found but not taken over was left open")
					}
				}
				return
			}

			if st := status(t, m, id); st != StatusActive {
				t.Fatalf("taken over: %s, want %s", st, StatusActive)
			}
			if rt.wasRemoved(id) || recordErr != nil || historyErr != nil {
				t.Errorf("removed %v, record: %v, history: %v; want all kept", rt.removedIDs(), recordErr, historyErr)
			}
			wantInterrupts := 0
			if tt.busy {
				wantInterrupts = 1
			}
			if interrupts, _, _, _ := k.stats(); interrupts != wantInterrupts {
				t.Errorf("interrupted %d times, want %d", interrupts, wantInterrupts)
			}
			if tt.stuck {
				// The cell still runs: the next execution waits for it.
				k.hangReady(false)
			}
			if r, err := m.Execute(t.Context(), id, ExecuteRequest{Code: "y = 2"}); err != nil || r.Stdout != "y = 2" {
				t.Fatalf("execute once taken over: %+v, %v", r, err)
			}
			page, err := m.History(id, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Entries) != 2 || page.Entries[0].Code != "x = 1" || page.Entries[1].ID != 2 {
				t.Errorf("history %+v, want the previous run's entry, then the new one as 2", page.Entries)
			}
			// It is watched as any context is.
			rt.end(id, "killed")
			if st := status(t, m, id); st != StatusDead {
				t.Errorf("instance ended: %s, want %s", st, StatusDead)
			}
		})
	}
}

// Adopt takes over one context another replica drove, once however often
// it is asked, and leaves the contexts the Manager holds alone.
func TestAdopt(t *testing.T) {
	store := DirStore(t.TempDir())
	rt := newFakeRuntime(store)
	m, ks := newTestManager(t, rt, testConfig())
	m.Start()
	mine, err := m.Create(t.Context(), CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	const id = "ctx-theirs"
	ks.leave(id, false)
	if err := store.Save(Record{ID: id, Language: "python", SessionName: "s", WorkingDir: DefaultWorkingDir, Token: "t"}); err != nil {
		t.Fatal(err)
	}
	inst := Instance{ContextID: id, ID: "c1", Running: true}
	rt.mu.Lock()
	rt.insts = append(rt.insts, inst) // another replica started it
	rt.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() { errs <- m.Adopt(t.Context(), inst) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := status(t, m, id); st != StatusActive {
		t.Fatalf("adopted: %s, want %s", st, StatusActive)
	}
	if n := len(m.List()); n != 2 {
		t.Errorf("%d contexts listed, want 2", n)
	}
	if r, err := m.Execute(t.Context(), id, ExecuteRequest{Code: "y = 2"}); err != nil || r.Stdout != "y = 2" {
		t.Fatalf("execute once adopted: %+v, %v", r, err)
	}
	// One the Manager made itself is held: adopting it changes nothing.
	if err := m.Adopt(t.Context(), Instance{ContextID: mine.ID, ID: "other", Running: false}); err != nil {
		t.Fatal(err)
	}
	if rt.wasRemoved(mine.ID) {
		t.Error("adopting a context held already removed it")
	}
	// One that cannot be taken over is removed, and says so.
	if err := m.Adopt(t.Context(), Instance{ContextID: "ctx-gone", ID: "c2", Running: false}); Code(err) != CodeContextDead {
		t.Errorf("adopt a dead instance: %v, want %s", err, CodeContextDead)
	}
	if !rt.wasRemoved("ctx-gone") {
		t.Error("a dead instance adopted was not removed")
	}
}
