package contexts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sandboxd/sandboxd/internal/kernel"
)

var (
	_ Runtime = (*fakeRuntime)(nil)
	_ Kernels = (*fakeKernels)(nil)
	_ Kernel  = (*fakeKernel)(nil)
)

// fakeRuntime is a Runtime whose instances run nothing. Dial returns a
// fakeConn, which tells a fakeKernels which instance it reached. Removing
// an instance ends it, as Runtime says, and end ends one as if it had been
// killed.
type fakeRuntime struct {
	store Store
	// dialGate, when set, holds every Dial until it is closed; dialErr,
	// when set, then fails it.
	dialGate chan struct{}
	dialErr  error
	// failRemove lists the context ids whose removal fails.
	failRemove map[string]bool
	// execOut, when set, is what every Exec prints, and 0 its exit code.
	execOut string
	// execGate, when set, holds every Exec until it is closed.
	execGate chan struct{}
	// exec, when set, runs every Exec in place of execOut.
	exec func(spec ExecSpec) (int, error)

	mu      sync.Mutex
	insts   []Instance                   // what List returns: a previous run's, then Start's
	watches map[string]func(exit string) // by instance id, the ends not yet told
	n       int
	started []string // context ids, in the order Start made them
	removed []string // context ids, in the order their removal was asked
}

func newFakeRuntime(store Store) *fakeRuntime {
	return &fakeRuntime{store: store, watches: map[string]func(string){}}
}

func (f *fakeRuntime) Start(_ context.Context, spec Spec) (Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	inst := Instance{ContextID: spec.ContextID, ID: fmt.Sprintf("inst-%d", f.n), Labels: spec.Labels, Running: true}
	f.insts = append(f.insts, inst)
	f.started = append(f.started, spec.ContextID)
	return inst, nil
}

// fakeConn is what Dial returns: no connection, only the instance it
// leads to.
type fakeConn struct {
	net.Conn // nil: nothing is ever sent
	inst     Instance
}

func (*fakeConn) Close() error { return nil }

func (f *fakeRuntime) Dial(ctx context.Context, inst Instance) (net.Conn, error) {
	if f.dialGate != nil {
		select {
		case <-f.dialGate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.dialErr != nil {
		return nil, f.dialErr
	}
	return &fakeConn{inst: inst}, nil
}

func (f *fakeRuntime) Watch(inst Instance, ended func(exit string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range f.insts {
		if i.ID == inst.ID && i.Running {
			f.watches[inst.ID] = ended
			return
		}
	}
	go ended("not running")
}

func (f *fakeRuntime) OpenEgress(context.Context, Instance) (map[string]string, error) {
	return map[string]string{"HTTPS_PROXY": "http://proxy"}, nil
}

func (f *fakeRuntime) Exec(_ context.Context, _ Instance, spec ExecSpec) (int, error) {
	if f.exec != nil {
		return f.exec(spec)
	}
	if f.execOut == "" {
		return 0, errors.New("fakeRuntime runs no processes")
	}
	if f.execGate != nil {
		<-f.execGate
	}
	if spec.Stdout != nil {
		io.WriteString(spec.Stdout, f.execOut)
	}
	return 0, nil
}

func (f *fakeRuntime) Remove(_ context.Context, inst Instance) error {
	f.mu.Lock()
	f.removed = append(f.removed, inst.ContextID)
	failed := f.failRemove[inst.ContextID]
	f.mu.Unlock()
	if failed {
		return errors.New("engine said no")
	}
	f.stop(inst.ContextID, "removed", true)
	return nil
}

// end stops the instance of contextID, as a kill from outside would.
func (f *fakeRuntime) end(contextID, exit string) { f.stop(contextID, exit, false) }

// stop stops the instance of contextID, and forgets it when it is removed.
func (f *fakeRuntime) stop(contextID, exit string, remove bool) {
	f.mu.Lock()
	var ended []func(string)
	f.insts = slices.DeleteFunc(f.insts, func(i Instance) bool {
		if i.ContextID != contextID {
			return false
		}
		if e := f.watches[i.ID]; e != nil {
			ended = append(ended, e)
			delete(f.watches, i.ID)
		}
		return remove
	})
	for i := range f.insts {
		if f.insts[i].ContextID == contextID {
			f.insts[i].Running = false
		}
	}
	f.mu.Unlock()
	for _, e := range ended {
		e(exit)
	}
}

func (f *fakeRuntime) List(context.Context) ([]Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.insts), nil
}

func (f *fakeRuntime) HasImage(context.Context, string) (bool, error) { return true, nil }
func (f *fakeRuntime) Ping(context.Context) error                     { return nil }
func (f *fakeRuntime) Store() Store                                   { return f.store }

// startedIDs returns the context ids of the instances Start made, in order.
func (f *fakeRuntime) startedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.started)
}

// removedIDs returns the context ids whose removal was asked, in order.
func (f *fakeRuntime) removedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.removed)
}

func (f *fakeRuntime) wasRemoved(contextID string) bool {
	return slices.Contains(f.removedIDs(), contextID)
}

// fakeKernels is Kernels of fakeKernel: Start makes one for the instance
// its dial reaches, and Find finds the one leave left on it.
type fakeKernels struct {
	mu         sync.Mutex
	byCtx      map[string]*fakeKernel // the first kernel on each instance
	byID       map[string]*fakeKernel
	specs      []string // what Specs says its servers have; nil is python3
	specsAsked int
}

func (ks *fakeKernels) Start(ctx context.Context, dial kernel.DialFunc, _, _ string, _ <-chan struct{}, opts kernel.Options) (Kernel, error) {
	inst, err := reached(ctx, dial)
	if err != nil {
		return nil, err
	}
	k := ks.add(inst.ContextID, false)
	k.mu.Lock()
	k.opts = opts
	k.mu.Unlock()
	return k, nil
}

func (ks *fakeKernels) Find(ctx context.Context, dial kernel.DialFunc, _, id string, opts kernel.Options) (Kernel, bool, error) {
	inst, err := reached(ctx, dial)
	if err != nil {
		return nil, false, err
	}
	ks.mu.Lock()
	k := ks.byCtx[inst.ContextID]
	if id != "" {
		k = ks.byID[id]
	}
	ks.mu.Unlock()
	if k == nil {
		return nil, false, errors.New("no such kernel on its server")
	}
	k.mu.Lock()
	k.opts = opts
	k.mu.Unlock()
	return k, k.busy, nil
}

func (ks *fakeKernels) Serve(ctx context.Context, dial kernel.DialFunc, _ string, _ <-chan struct{}) error {
	_, err := reached(ctx, dial)
	return err
}

func (ks *fakeKernels) Specs(ctx context.Context, dial kernel.DialFunc, _ string) ([]string, error) {
	if _, err := reached(ctx, dial); err != nil {
		return nil, err
	}
	ks.mu.Lock()
	ks.specsAsked++
	defer ks.mu.Unlock()
	if ks.specs == nil {
		return []string{"python3"}, nil
	}
	return slices.Clone(ks.specs), nil
}

// reached dials and returns the instance dial leads to.
func reached(ctx context.Context, dial kernel.DialFunc) (Instance, error) {
	conn, err := dial(ctx)
	if err != nil {
		return Instance{}, err
	}
	defer conn.Close()
	return conn.(*fakeConn).inst, nil
}

// leave puts a kernel on the instance of contextID, as a previous run of
// the daemon left it: busy with a cell, or idle.
func (ks *fakeKernels) leave(contextID string, busy bool) *fakeKernel {
	return ks.add(contextID, busy)
}

func (ks *fakeKernels) add(contextID string, busy bool) *fakeKernel {
	k := &fakeKernel{contextID: contextID, busy: busy, release: make(chan struct{}), gone: make(chan struct{})}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.byCtx == nil {
		ks.byCtx, ks.byID = map[string]*fakeKernel{}, map[string]*fakeKernel{}
	}
	k.id = "kernel-" + contextID
	if ks.byCtx[contextID] == nil {
		ks.byCtx[contextID] = k
	} else {
		k.id = fmt.Sprintf("kernel-%s-%d", contextID, len(ks.byID))
	}
	ks.byID[k.id] = k
	return k
}

// get returns the kernel of contextID, or nil.
func (ks *fakeKernels) get(contextID string) *fakeKernel {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.byCtx[contextID]
}

// fakeKernel runs no code: an execution returns its code as its stdout,
// at once or, once hold is called, when release lets it go.
type fakeKernel struct {
	contextID string // of the instance it runs on
	id        string
	busy      bool          // what Find says of it
	release   chan struct{} // a held execution ends when it receives from it
	gone      chan struct{} // closed when the connection is lost or closed
	goneOnce  sync.Once

	mu         sync.Mutex
	opts       kernel.Options
	hold       bool          // executions of user code wait for release
	hang       bool          // Ready waits for its ctx to end
	restart    chan struct{} // when set, Restart waits for it to close
	codes      []string      // the user code run, in the order it started
	setup      []string      // the silent code run
	running    int
	maxRunning int
	interrupts int
	restarts   int
	closed     bool
	shutdown   bool
}

func (k *fakeKernel) ID() string { return k.id }

// Shutdown stops the kernel, as the server's DELETE does.
func (k *fakeKernel) Shutdown(context.Context) error {
	k.mu.Lock()
	k.shutdown = true
	k.mu.Unlock()
	return k.Close()
}

func (k *fakeKernel) Execute(ctx context.Context, r kernel.Request) (kernel.Result, error) {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return kernel.Result{}, kernel.ErrClosed
	}
	if r.Silent {
		k.setup = append(k.setup, r.Code)
		k.mu.Unlock()
		return kernel.Result{Status: "ok"}, nil
	}
	k.codes = append(k.codes, r.Code)
	k.running++
	k.maxRunning = max(k.maxRunning, k.running)
	hold := k.hold
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.running--
		k.mu.Unlock()
	}()
	if hold {
		select {
		case <-k.release:
		case <-k.gone:
			return kernel.Result{Error: &kernel.Error{Name: kernel.ErrKernelDied, Value: "lost the connection to the kernel"}}, nil
		case <-ctx.Done():
			return kernel.Result{Error: &kernel.Error{Name: kernel.ErrTimeout, Value: ctx.Err().Error()}}, nil
		}
	}
	return kernel.Result{Stdout: r.Code, Status: "ok"}, nil
}

func (k *fakeKernel) Interrupt(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.interrupts++
	return nil
}

func (k *fakeKernel) Restart(ctx context.Context) error {
	k.mu.Lock()
	k.restarts++
	gate := k.restart
	k.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (k *fakeKernel) Ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil { // as a real one, which asks it
		return err
	}
	k.mu.Lock()
	hang := k.hang
	k.mu.Unlock()
	if hang {
		<-ctx.Done()
		return fmt.Errorf("kernel not ready: %w", ctx.Err())
	}
	return nil
}

func (k *fakeKernel) Close() error {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
	k.lose()
	return nil
}

// lose drops the connection to the kernel: what runs ends with KernelDied,
// as when its instance stops.
func (k *fakeKernel) lose() { k.goneOnce.Do(func() { close(k.gone) }) }

// holdExecutions makes executions of user code wait for release.
func (k *fakeKernel) holdExecutions() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hold = true
}

// hangReady makes Ready wait until its ctx ends, as a stuck kernel would,
// or, with false, answer again.
func (k *fakeKernel) hangReady(hang bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hang = hang
}

// holdRestarts makes Restart wait until the returned channel is closed.
func (k *fakeKernel) holdRestarts() chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.restart = make(chan struct{})
	return k.restart
}

// executed returns the user code run so far, in the order it started.
func (k *fakeKernel) executed() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.codes)
}

func (k *fakeKernel) stats() (interrupts, setups, maxRunning int, closed bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.interrupts, len(k.setup), k.maxRunning, k.closed
}

// testConfig returns a Config of python contexts whose bounds the tests
// reach only when they mean to.
func testConfig() Config {
	return Config{
		Languages:      []Language{Python("img")},
		CreateTimeout:  time.Minute,
		DefaultTimeout: time.Minute,
		MaxTimeout:     time.Minute,
	}
}

// newTestManager returns a Manager on rt whose kernels are fakes; it is
// closed when the test ends.
func newTestManager(t *testing.T, rt *fakeRuntime, cfg Config) (*Manager, *fakeKernels) {
	t.Helper()
	m := NewManager(rt, cfg, slog.New(slog.DiscardHandler), nil)
	ks := &fakeKernels{}
	m.kernels = ks
	t.Cleanup(func() { m.Close() })
	return m, ks
}

// bubble runs f as the subtest name in a synctest bubble: its clock moves
// only when every goroutine of the test waits, so timeouts and tickers
// pass at once, and synctest.Wait returns once all the Manager's
// goroutines wait.
func bubble(t *testing.T, name string, f func(t *testing.T)) {
	t.Run(name, func(t *testing.T) { synctest.Test(t, f) })
}

// mustCreate creates a context with the defaults.
func mustCreate(t *testing.T, m *Manager) Info {
	t.Helper()
	info, err := m.Create(t.Context(), CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// kernelOf returns the kernel of the context id.
func kernelOf(t *testing.T, ks *fakeKernels, id string) *fakeKernel {
	t.Helper()
	k := ks.get(id)
	if k == nil {
		t.Fatalf("no kernel for %s", id)
	}
	return k
}

// outcome of an Execute run in the background.
type executed struct {
	Execution
	err error
}

// executeAsync runs code in the context id in the background.
func executeAsync(m *Manager, id, code string) <-chan executed {
	done := make(chan executed, 1)
	go func() {
		e, err := m.Execute(context.Background(), id, ExecuteRequest{Code: code})
		done <- executed{e, err}
	}()
	return done
}

// status returns the status of the context id.
func status(t *testing.T, m *Manager, id string) Status {
	t.Helper()
	info, err := m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return info.Status
}
