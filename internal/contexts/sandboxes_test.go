package contexts

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// mustCreateSandbox creates a sandbox of the python template.
func mustCreateSandbox(t *testing.T, m *Manager) SandboxInfo {
	t.Helper()
	b, err := m.CreateSandbox(t.Context(), SandboxRequest{Template: "python-sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// inSandbox creates a context in the sandbox id.
func inSandbox(t *testing.T, m *Manager, id string) Info {
	t.Helper()
	c, err := m.Create(t.Context(), CreateRequest{SandboxID: id})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kernelIn returns the fake kernel of the context id.
func kernelIn(t *testing.T, m *Manager, id string) *fakeKernel {
	t.Helper()
	s, err := m.get(id)
	if err != nil {
		t.Fatal(err)
	}
	return s.kernel.(*fakeKernel)
}

// A sandbox is one container, counted once against MaxContexts, whose
// contexts are kernels on its server: deleting one shuts down only its
// kernel, stopping the sandbox removes the container and all of them.
func TestSandboxLifecycle(t *testing.T) {
	rt := newFakeRuntime(nil)
	cfg := testConfig()
	cfg.MaxContexts = 1
	m, _ := newTestManager(t, rt, cfg)

	b := mustCreateSandbox(t, m)
	if b.Template != "python" || b.Status != SandboxReady {
		t.Errorf("created %+v", b)
	}
	a, c := inSandbox(t, m, b.ID), inSandbox(t, m, b.ID)
	if a.SandboxID != b.ID || a.ID == c.ID {
		t.Errorf("contexts %+v and %+v", a, c)
	}
	if got := rt.startedIDs(); !slices.Equal(got, []string{b.ID}) {
		t.Errorf("containers started: %v, want only the sandbox's", got)
	}
	// The sandbox is the one container MaxContexts allows.
	if _, err := m.Create(t.Context(), CreateRequest{}); Code(err) != CodeTooManyContexts {
		t.Errorf("a plain context past MaxContexts: %v", err)
	}
	if _, err := m.CreateSandbox(t.Context(), SandboxRequest{Template: "python"}); Code(err) != CodeTooManyContexts {
		t.Errorf("a second sandbox past MaxContexts: %v", err)
	}
	if in, err := m.SandboxContexts(b.ID); err != nil || len(in) != 2 {
		t.Errorf("contexts of the sandbox: %+v, %v", in, err)
	}
	if _, err := m.SandboxContext(b.ID, "ctx-elsewhere"); Code(err) != CodeNotFound {
		t.Errorf("a context not in the sandbox: %v", err)
	}
	if _, err := m.SandboxContexts("sbx-none"); Code(err) != CodeSandboxNotFound {
		t.Errorf("an unknown sandbox: %v", err)
	}
	// Files and commands of a context act on the sandbox's container.
	if tgt, err := m.running(a.ID); err != nil || tgt.inst.ID != tgtOf(t, m, b.ID).inst.ID {
		t.Errorf("a context's files: %+v, %v", tgt, err)
	}

	ka := kernelIn(t, m, a.ID)
	if err := m.Delete(t.Context(), a.ID); err != nil {
		t.Fatal(err)
	}
	if !ka.shutdown || len(rt.removedIDs()) != 0 {
		t.Errorf("deleting a context: its kernel shut down %v, containers removed %v", ka.shutdown, rt.removedIDs())
	}
	if r, err := m.Execute(t.Context(), c.ID, ExecuteRequest{Code: "1"}); err != nil || r.Stdout != "1" {
		t.Errorf("the other context after the delete: %+v, %v", r, err)
	}

	stopped, err := m.StopSandbox(t.Context(), b.ID)
	if err != nil || stopped.Status != SandboxStopped || stopped.EndedAt.IsZero() || stopped.Contexts != 0 {
		t.Fatalf("stop: %+v, %v", stopped, err)
	}
	if !rt.wasRemoved(b.ID) {
		t.Error("stopping left the container")
	}
	if _, err := m.Get(c.ID); Code(err) != CodeNotFound {
		t.Errorf("a context of a stopped sandbox: %v", err)
	}
	if _, err := m.Create(t.Context(), CreateRequest{SandboxID: b.ID}); Code(err) != CodeSandboxStopped {
		t.Errorf("a context in a stopped sandbox: %v", err)
	}
	if _, err := m.running(b.ID); Code(err) != CodeSandboxStopped {
		t.Errorf("files of a stopped sandbox: %v", err)
	}
	if again, err := m.StopSandbox(t.Context(), b.ID); err != nil || again.Status != SandboxStopped {
		t.Errorf("stopping again: %+v, %v", again, err)
	}
	// Its container is gone: there is room again.
	plain := mustCreate(t, m)
	if err := m.DeleteSandbox(t.Context(), b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetSandbox(b.ID); Code(err) != CodeSandboxNotFound {
		t.Errorf("a deleted sandbox: %v", err)
	}
	if plain.SandboxID != "" {
		t.Errorf("a plain context has sandbox %q", plain.SandboxID)
	}
}

func tgtOf(t *testing.T, m *Manager, id string) *target {
	t.Helper()
	tgt, err := m.running(id)
	if err != nil {
		t.Fatal(err)
	}
	tgt.done()
	return tgt
}

// Its container stopping marks the sandbox and all its contexts dead.
func TestSandboxContainerDies(t *testing.T) {
	rt := newFakeRuntime(nil)
	m, _ := newTestManager(t, rt, testConfig())
	b := mustCreateSandbox(t, m)
	a, c := inSandbox(t, m, b.ID), inSandbox(t, m, b.ID)
	if _, err := m.DefaultContext(t.Context(), b.ID, ""); err != nil {
		t.Fatal(err)
	}
	rt.end(b.ID, "killed")
	for _, id := range []string{a.ID, c.ID} {
		if st := status(t, m, id); st != StatusDead {
			t.Errorf("context %s: %s, want dead", id, st)
		}
	}
	if got, _ := m.GetSandbox(b.ID); got.Status != SandboxDead || got.EndedAt.IsZero() {
		t.Errorf("sandbox %+v, want dead", got)
	}
	if _, err := m.Execute(t.Context(), a.ID, ExecuteRequest{Code: "1"}); Code(err) != CodeContextDead {
		t.Errorf("execute in a dead sandbox: %v", err)
	}
	if _, err := m.Create(t.Context(), CreateRequest{SandboxID: b.ID}); Code(err) != CodeSandboxStopped {
		t.Errorf("create in a dead sandbox: %v", err)
	}
	// What runs in the sandbox's default context is told the sandbox stopped.
	if _, err := m.DefaultContext(t.Context(), b.ID, ""); Code(err) != CodeSandboxStopped {
		t.Errorf("the default context of a dead sandbox: %v", err)
	}
}

// A sandbox's contexts are of the languages its server has kernelspecs
// of, at most MaxSandboxContexts of them; its idle timeout is cut to
// IdleTTL; the default context of a language is made once.
func TestSandboxBounds(t *testing.T) {
	rt := newFakeRuntime(nil)
	cfg := testConfig()
	cfg.Languages = append(cfg.Languages, Bash("bash-img"))
	cfg.IdleTTL = 10 * time.Minute
	m, ks := newTestManager(t, rt, cfg)

	if _, err := m.CreateSandbox(t.Context(), SandboxRequest{Template: "ruby"}); Code(err) != CodeTemplateNotFound {
		t.Errorf("unknown template: %v", err)
	}
	long, err := m.CreateSandbox(t.Context(), SandboxRequest{Template: "python", IdleTimeout: time.Hour})
	if err != nil || long.IdleTimeout != cfg.IdleTTL {
		t.Errorf("idle timeout past IdleTTL: %+v, %v", long, err)
	}
	short, _ := m.CreateSandbox(t.Context(), SandboxRequest{Template: "python", IdleTimeout: time.Minute})
	if short.IdleTimeout != time.Minute {
		t.Errorf("idle timeout within IdleTTL: %v", short.IdleTimeout)
	}
	if none, _ := m.CreateSandbox(t.Context(), SandboxRequest{Template: "python"}); none.IdleTimeout != cfg.IdleTTL {
		t.Errorf("no idle timeout: %v, want IdleTTL", none.IdleTimeout)
	}

	// Its server is asked for its kernelspecs once, and only for a
	// language other than the template's.
	inSandbox(t, m, long.ID)
	if ks.specsAsked != 0 {
		t.Errorf("kernelspecs asked %d times for the template's own language", ks.specsAsked)
	}
	for range 2 {
		if _, err := m.Create(t.Context(), CreateRequest{SandboxID: long.ID, Language: "bash"}); Code(err) != CodeUnsupportedLanguage {
			t.Errorf("a language whose kernelspec the image lacks: %v", err)
		}
	}
	ks.specs = []string{"bash", "python3"}
	if _, err := m.Create(t.Context(), CreateRequest{SandboxID: short.ID, Language: "bash"}); err != nil {
		t.Errorf("a language whose kernelspec the image has: %v", err)
	}
	if ks.specsAsked != 2 {
		t.Errorf("kernelspecs asked %d times for two sandboxes", ks.specsAsked)
	}
	if _, err := m.Create(t.Context(), CreateRequest{SandboxID: long.ID, Network: true}); Code(err) != CodeInvalid {
		t.Errorf("network in a sandbox: %v", err)
	}

	d1, err := m.DefaultContext(t.Context(), long.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := m.DefaultContext(t.Context(), long.ID, "python"); d2.ID != d1.ID {
		t.Errorf("default context made twice: %s, %s", d1.ID, d2.ID)
	}
	if err := m.Delete(t.Context(), d1.ID); err != nil {
		t.Fatal(err)
	}
	d3, err := m.DefaultContext(t.Context(), long.ID, "python")
	if err != nil || d3.ID == d1.ID {
		t.Errorf("default context after its delete: %+v, %v", d3, err)
	}

	for range MaxSandboxContexts - 2 {
		inSandbox(t, m, long.ID)
	}
	if _, err := m.Create(t.Context(), CreateRequest{SandboxID: long.ID}); Code(err) != CodeTooManyContexts {
		t.Errorf("past MaxSandboxContexts: %v", err)
	}
}

// Stopped sandboxes are told of up to keepStopped, the oldest forgotten.
func TestKeepStopped(t *testing.T) {
	defer func(n int) { keepStopped = n }(keepStopped)
	keepStopped = 2
	synctest.Test(t, func(t *testing.T) {
		m, _ := newTestManager(t, newFakeRuntime(nil), testConfig())
		var ids []string
		for range 3 {
			b := mustCreateSandbox(t, m)
			if _, err := m.StopSandbox(t.Context(), b.ID); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, b.ID)
			time.Sleep(time.Second) // the bubble's clock: ended one after the other
		}
		if _, err := m.GetSandbox(ids[0]); Code(err) != CodeSandboxNotFound {
			t.Errorf("the oldest stopped sandbox past keepStopped: %v", err)
		}
		for _, id := range ids[1:] {
			if b, err := m.GetSandbox(id); err != nil || b.Status != SandboxStopped {
				t.Errorf("a recent stopped sandbox: %+v, %v", b, err)
			}
		}
	})
}

// A sandbox unused past its idle timeout is stopped, whatever IdleTTL is;
// code running in one of its contexts keeps it, and so does using its
// files.
func TestSandboxCull(t *testing.T) {
	bubble(t, "idle sandboxes stop", func(t *testing.T) {
		rt := newFakeRuntime(nil)
		m, _ := newTestManager(t, rt, testConfig()) // IdleTTL 0
		m.Start()
		b, err := m.CreateSandbox(t.Context(), SandboxRequest{Template: "python", IdleTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		c := inSandbox(t, m, b.ID)
		k := kernelIn(t, m, c.ID)
		k.holdExecutions()
		running := executeAsync(m, c.ID, "loop()")
		synctest.Wait()
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		if got, _ := m.GetSandbox(b.ID); got.Status != SandboxReady {
			t.Fatalf("a sandbox whose code runs: %s", got.Status)
		}
		k.release <- struct{}{}
		<-running

		// Its files are activity too.
		time.Sleep(40 * time.Second)
		if tgt, err := m.running(b.ID); err != nil {
			t.Fatal(err)
		} else {
			tgt.done()
		}
		time.Sleep(40 * time.Second)
		synctest.Wait()
		if got, _ := m.GetSandbox(b.ID); got.Status != SandboxReady {
			t.Fatalf("a sandbox whose files were used within its timeout: %s", got.Status)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got, _ := m.GetSandbox(b.ID); got.Status != SandboxStopped || !rt.wasRemoved(b.ID) {
			t.Errorf("a sandbox idle past its timeout: %s, removed %v", got.Status, rt.removedIDs())
		}
		if _, err := m.Get(c.ID); Code(err) != CodeNotFound {
			t.Errorf("a context of an idle sandbox: %v", err)
		}
	})
}

// A command, upload or download under way keeps its sandbox from the
// cull, however long it lasts; the sandbox goes once it ends and the
// timeout passes.
func TestSandboxCullSparesCommands(t *testing.T) {
	for _, viaContext := range []bool{false, true} {
		bubble(t, map[bool]string{false: "sandbox", true: "context"}[viaContext], func(t *testing.T) {
			rt := newFakeRuntime(nil)
			rt.execOut = "done"
			rt.execGate = make(chan struct{})
			m, _ := newTestManager(t, rt, testConfig())
			m.Start()
			b, err := m.CreateSandbox(t.Context(), SandboxRequest{Template: "python", IdleTimeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			id := b.ID
			if viaContext {
				id = inSandbox(t, m, b.ID).ID
			}
			ran := make(chan struct{})
			go func() {
				// Its result is the fake's, of no matter here.
				m.RunCommand(t.Context(), id, CommandRequest{Command: "sleep 600", Timeout: time.Hour})
				close(ran)
			}()
			synctest.Wait()
			time.Sleep(3 * time.Minute)
			synctest.Wait()
			if got, _ := m.GetSandbox(b.ID); got.Status != SandboxReady {
				t.Errorf("a sandbox running a command: %s", got.Status)
			}
			close(rt.execGate)
			<-ran
			time.Sleep(2 * time.Minute)
			synctest.Wait()
			if got, _ := m.GetSandbox(b.ID); got.Status != SandboxStopped {
				t.Errorf("a sandbox idle past its timeout after its command: %s", got.Status)
			}
		})
	}
}

// A restart takes a sandbox over with its contexts, each with its own
// kernel; a context whose kernel is gone goes alone.
func TestRecoverSandbox(t *testing.T) {
	bubble(t, "taken over", func(t *testing.T) {
		store := DirStore(t.TempDir())
		rt := newFakeRuntime(store)
		m1, ks := newTestManager(t, rt, testConfig())
		b := mustCreateSandbox(t, m1)
		a, c, gone := inSandbox(t, m1, b.ID), inSandbox(t, m1, b.ID), inSandbox(t, m1, b.ID)
		if _, err := m1.Execute(t.Context(), a.ID, ExecuteRequest{Code: "x = 1"}); err != nil {
			t.Fatal(err)
		}
		goneKernel := kernelIn(t, m1, gone.ID).id
		m1.Detach()
		ks.mu.Lock()
		delete(ks.byID, goneKernel)
		ks.mu.Unlock()

		m2, _ := newTestManager(t, rt, testConfig())
		m2.kernels = ks
		rt.dialGate = make(chan struct{}) // holds the takeover
		if err := m2.Recover(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got, _ := m2.GetSandbox(b.ID); got.Status != SandboxRecovering || got.Contexts != 3 {
			t.Errorf("while taken over: %+v", got)
		}
		if _, err := m2.Create(t.Context(), CreateRequest{SandboxID: b.ID}); Code(err) != CodeContextRecovering {
			t.Errorf("a context in a sandbox being taken over: %v", err)
		}
		close(rt.dialGate)
		time.Sleep(recoverTimeout)
		synctest.Wait()
		got, err := m2.GetSandbox(b.ID)
		if err != nil || got.Status != SandboxReady || got.Contexts != 2 {
			t.Fatalf("taken over: %+v, %v", got, err)
		}
		for _, id := range []string{a.ID, c.ID} {
			if st := status(t, m2, id); st != StatusActive {
				t.Errorf("context %s: %s", id, st)
			}
		}
		if _, err := m2.Get(gone.ID); Code(err) != CodeNotFound {
			t.Errorf("a context whose kernel is gone: %v", err)
		}
		if page, _ := m2.History(a.ID, 0, 10); len(page.Entries) != 1 || page.Entries[0].Code != "x = 1" {
			t.Errorf("history: %+v", page.Entries)
		}
		if k := kernelIn(t, m2, c.ID); k == kernelIn(t, m2, a.ID) {
			t.Error("two contexts took the same kernel over")
		}
		if rt.wasRemoved(b.ID) {
			t.Error("the container was removed")
		}
		// It is watched again.
		rt.end(b.ID, "killed")
		if st := status(t, m2, a.ID); st != StatusDead {
			t.Errorf("after its container ended: %s", st)
		}
	})
}

// A context being made in a sandbox that is stopped meanwhile fails at
// once with the sandbox's error, rather than wait for a kernel that went
// with the container.
func TestSandboxStoppedDuringCreate(t *testing.T) {
	bubble(t, "stopped during a create", func(t *testing.T) {
		rt := newFakeRuntime(nil)
		m, _ := newTestManager(t, rt, testConfig())
		b := mustCreateSandbox(t, m)
		rt.dialGate = make(chan struct{}) // the kernel's start waits
		defer close(rt.dialGate)
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			_, err := m.Create(t.Context(), CreateRequest{SandboxID: b.ID})
			done <- err
		}()
		synctest.Wait()
		if _, err := m.StopSandbox(t.Context(), b.ID); err != nil {
			t.Fatal(err)
		}
		if err := <-done; Code(err) != CodeSandboxStopped {
			t.Errorf("create in a sandbox stopped meanwhile: %v", err)
		}
		if took := time.Since(start); took >= testConfig().CreateTimeout {
			t.Errorf("the create took %v, its whole timeout", took)
		}
		if in, _ := m.SandboxContexts(b.ID); len(in) != 0 {
			t.Errorf("contexts of the stopped sandbox: %+v", in)
		}
	})
}

// Contexts made and deleted in a sandbox while the stopped sandboxes are
// looked over, as the cull does each second, deadlock nothing: the two
// take the manager's lock and a sandbox's in the one order.
func TestSandboxLockOrder(t *testing.T) {
	m, _ := newTestManager(t, newFakeRuntime(nil), testConfig())
	b := mustCreateSandbox(t, m)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 500 {
			c, err := m.Create(t.Context(), CreateRequest{SandboxID: b.ID})
			if err != nil {
				t.Error(err)
				return
			}
			if err := m.Delete(t.Context(), c.ID); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
			m.forgetStopped()
		}
	}
}

// dropGate is a Store whose first Drop of id waits for release, after
// closing reached.
type dropGate struct {
	memoryStore
	id               string
	reached, release chan struct{}

	mu     sync.Mutex
	passed bool
}

func (g *dropGate) Drop(id string) {
	g.mu.Lock()
	first := id == g.id && !g.passed
	g.passed = g.passed || first
	g.mu.Unlock()
	if first {
		close(g.reached)
		<-g.release
	}
}

// A context deleted while its sandbox stops goes once: one context.deleted
// event, and the active count down by one.
func TestDeleteRacesSandboxStop(t *testing.T) {
	store := &dropGate{reached: make(chan struct{}), release: make(chan struct{})}
	m, _ := newTestManager(t, newFakeRuntime(store), testConfig())
	b := mustCreateSandbox(t, m)
	c := inSandbox(t, m, b.ID)
	events, end := m.Subscribe()
	defer end()
	store.id = c.ID
	deleted := make(chan error, 1)
	go func() { deleted <- m.Delete(t.Context(), c.ID) }()
	<-store.reached // Delete is under way
	if _, err := m.StopSandbox(t.Context(), b.ID); err != nil {
		t.Fatal(err)
	}
	close(store.release)
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	n := 0
	for len(events) > 0 {
		if e := <-events; e.Type == EventContextDeleted && e.ContextID == c.ID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d context.deleted events, want 1", n)
	}
	var g dto.Metric
	if err := m.metrics.active.Write(&g); err != nil {
		t.Fatal(err)
	}
	if v := g.GetGauge().GetValue(); v != 0 {
		t.Errorf("active contexts: %v, want 0", v)
	}
}

// A template is named as a language is, by its name or an alias, with or
// without -sandbox after it.
func TestTemplateAliases(t *testing.T) {
	cfg := testConfig()
	cfg.Languages = append(cfg.Languages, JavaScript("js-img"))
	m, _ := newTestManager(t, newFakeRuntime(nil), cfg)
	for _, name := range []string{"javascript", "javascript-sandbox", "nodejs", "js-sandbox"} {
		if l, err := m.templateLanguage(name); err != nil || l.Name != "javascript" {
			t.Errorf("template %q: %q, %v", name, l.Name, err)
		}
	}
	for _, name := range []string{"", "-sandbox", "ruby-sandbox", "python-sandbox-sandbox"} {
		if _, err := m.templateLanguage(name); Code(err) != CodeTemplateNotFound {
			t.Errorf("template %q: %v, want %s", name, err, CodeTemplateNotFound)
		}
	}
}

// saveGate is a DirStore whose Saves of id wait for release, once id is
// set, after telling reached.
type saveGate struct {
	DirStore
	reached, release chan struct{}

	mu sync.Mutex
	id string
}

func (g *saveGate) Save(r Record) error {
	g.mu.Lock()
	held := r.ID == g.id
	g.mu.Unlock()
	if held {
		g.reached <- struct{}{}
		<-g.release
	}
	return g.DirStore.Save(r)
}

// A save of a sandbox's record under way as the sandbox stops does not
// bring the record back after the stop dropped it: a restart would take
// a stopped sandbox for one to recover.
func TestSaveRacesSandboxStop(t *testing.T) {
	store := &saveGate{DirStore: DirStore(t.TempDir()), reached: make(chan struct{}), release: make(chan struct{})}
	rt := newFakeRuntime(store)
	m, _ := newTestManager(t, rt, testConfig())
	b := mustCreateSandbox(t, m)
	sb, err := m.getSandbox(b.ID)
	if err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.id = b.ID
	store.mu.Unlock()
	saved := make(chan struct{})
	go func() { m.saveSandbox(sb); close(saved) }()
	<-store.reached // it read the sandbox as ready
	stopped := make(chan error, 1)
	go func() { _, err := m.StopSandbox(context.Background(), b.ID); stopped <- err }()
	// The stop goes as far as it may while the save is held: without
	// waiting for it, up to the container's removal.
	for got, _ := m.GetSandbox(b.ID); got.Status != SandboxStopped; got, _ = m.GetSandbox(b.ID) {
		time.Sleep(time.Millisecond)
	}
	for deadline := time.Now().Add(time.Second); !rt.wasRemoved(b.ID) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	close(store.release)
	<-saved
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if r, err := store.Load(b.ID); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the record of a stopped sandbox: %+v, %v", r, err)
	}
}

// A stop whose removal of the container fails says so, and so does each
// stop or delete after, which tries again, until one removes it.
func TestSandboxRemoveFails(t *testing.T) {
	rt := newFakeRuntime(nil)
	m, _ := newTestManager(t, rt, testConfig())
	b := mustCreateSandbox(t, m)
	rt.mu.Lock()
	rt.failRemove = map[string]bool{b.ID: true}
	rt.mu.Unlock()
	for range 2 {
		if _, err := m.StopSandbox(t.Context(), b.ID); err == nil {
			t.Error("a stop whose removal failed succeeded")
		}
	}
	if err := m.DeleteSandbox(t.Context(), b.ID); err == nil {
		t.Error("a delete whose removal failed succeeded")
	}
	rt.mu.Lock()
	rt.failRemove = nil
	rt.mu.Unlock()
	if err := m.DeleteSandbox(t.Context(), b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetSandbox(b.ID); Code(err) != CodeSandboxNotFound {
		t.Errorf("a deleted sandbox: %v", err)
	}
	if n := len(rt.removedIDs()); n != 4 {
		t.Errorf("%d removals asked, want 4", n)
	}
}

// Each context of a sandbox is taken over within a timeout of its own: a
// kernel busy with a cell that ignores the interrupt, or one that does not
// answer, costs the others nothing. The one that does not answer goes, and
// its kernel is shut down, since the sandbox's server goes on.
func TestRecoverSandboxSlowKernels(t *testing.T) {
	bubble(t, "slow kernels", func(t *testing.T) {
		store := DirStore(t.TempDir())
		rt := newFakeRuntime(store)
		m1, ks := newTestManager(t, rt, testConfig())
		b := mustCreateSandbox(t, m1)
		busy, mute := inSandbox(t, m1, b.ID), inSandbox(t, m1, b.ID)
		var good []Info
		for range 3 {
			good = append(good, inSandbox(t, m1, b.ID))
		}
		busyKernel, muteKernel := kernelIn(t, m1, busy.ID), kernelIn(t, m1, mute.ID)
		m1.Detach()
		busyKernel.busy = true
		busyKernel.hangReady(true)
		muteKernel.hangReady(true)

		m2, _ := newTestManager(t, rt, testConfig())
		m2.kernels = ks
		if err := m2.Recover(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * recoverTimeout)
		synctest.Wait()
		if got, err := m2.GetSandbox(b.ID); err != nil || got.Status != SandboxReady || got.Contexts != 4 {
			t.Fatalf("taken over: %+v, %v", got, err)
		}
		for _, c := range append(good, busy) {
			if st := status(t, m2, c.ID); st != StatusActive {
				t.Errorf("context %s: %s", c.ID, st)
			}
		}
		if _, err := m2.Get(mute.ID); Code(err) != CodeNotFound {
			t.Errorf("a context whose kernel does not answer: %v", err)
		}
		muteKernel.mu.Lock()
		shut := muteKernel.shutdown
		muteKernel.mu.Unlock()
		if !shut {
			t.Error("the kernel that does not answer was not shut down")
		}
	})
}
