package contexts

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeRuntime is a Runtime that owns the containers it is given. Dial
// waits for unseal and then fails, to hold a takeover in the middle.
type fakeRuntime struct {
	Runtime // the methods a test does not expect panic
	store   Store
	insts   []Instance
	unseal  chan struct{}
	failing map[string]bool // context ids whose removal fails

	mu      sync.Mutex
	removed []string
}

var _ Runtime = (*fakeRuntime)(nil)

func (f *fakeRuntime) List(context.Context) ([]Instance, error) { return f.insts, nil }

func (f *fakeRuntime) Store() Store { return f.store }

func (f *fakeRuntime) Dial(context.Context, Instance) (net.Conn, error) {
	<-f.unseal
	return nil, errors.New("dialling failed")
}

func (f *fakeRuntime) Remove(_ context.Context, inst Instance) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, inst.ContextID)
	if f.failing[inst.ContextID] {
		return errors.New("engine said no")
	}
	return nil
}

// Recover returns before any context is taken over, lists those it takes
// over as recovering (refusing what needs their kernel, counting them
// against MaxContexts), removes what it cannot take over, and drops a
// record only once its container is gone.
func TestRecoverDecisions(t *testing.T) {
	dir := t.TempDir()
	store := DirStore(dir)
	rt := &fakeRuntime{
		store: store,
		insts: []Instance{
			{ContextID: "ctx-held", ID: "c1", Running: true},     // taken over, then its removal fails
			{ContextID: "ctx-stopped", ID: "c2", Running: false}, // removed
			{ContextID: "ctx-norecord", ID: "c3", Running: true}, // removed
		},
		unseal:  make(chan struct{}),
		failing: map[string]bool{"ctx-held": true},
	}
	m := NewManager(rt, Config{Languages: []Language{Python("img")}, MaxContexts: 1, DefaultTimeout: time.Second, MaxTimeout: time.Second}, slog.New(slog.DiscardHandler), nil)
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

	close(rt.unseal)
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
	slices.Sort(rt.removed)
	if want := []string{"ctx-held", "ctx-norecord", "ctx-stopped"}; !slices.Equal(rt.removed, want) {
		t.Errorf("removed %v, want %v", rt.removed, want)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 1 || filepath.Base(files[0]) != "ctx-held.json" {
		t.Errorf("records left: %v; want only that of the container whose removal failed", files)
	}
}
