// Package contexts keeps the registry of execution contexts: each one a
// container with a Jupyter server and a kernel, created, found, executed in
// and removed through a Manager.
package contexts

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Config tunes a Manager.
type Config struct {
	Languages []Language
	// CreateTimeout bounds making a context, from container creation to a
	// kernel that answers. Starting several containers at once on a small
	// machine is slow, so it is generous.
	CreateTimeout time.Duration
	// DefaultTimeout and MaxTimeout bound executions.
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	// MaxOutput caps all the output of one execution together (stdout,
	// stderr, rich results, the traceback), and each of stdout and stderr
	// of one command, in bytes.
	MaxOutput int
	// InterruptGrace is how long a timed-out execution may take to stop after
	// its interrupt before the kernel is restarted.
	InterruptGrace time.Duration
	// MaxContexts caps the contexts that may exist at once; 0 is no cap.
	// Kernels waiting in the pool do not count.
	MaxContexts int
	// FullWait is how long a create waits for room when MaxContexts
	// contexts exist; 0 refuses it at once.
	FullWait time.Duration
	// PoolSizes is how many ready kernels to keep per language name.
	PoolSizes map[string]int
	// PoolMaxAge is how long a kernel may wait in the pool before it is
	// replaced by a fresh one; 0 keeps it until it is taken.
	PoolMaxAge time.Duration
	// IdleTTL removes a context after this long without an execution; 0
	// keeps contexts until they are deleted.
	IdleTTL time.Duration
	// AllowEgress lets contexts ask for networking: HTTP and HTTPS to
	// public addresses through Runtime.OpenEgress.
	AllowEgress bool
	// HistoryEntries and HistoryBytes bound each context's history: its
	// number of entries, and their texts and results together. 0 takes
	// the defaults.
	HistoryEntries int
	HistoryBytes   int
}

// Defaults of Config.HistoryEntries and HistoryBytes.
const (
	DefaultHistoryEntries = 200
	DefaultHistoryBytes   = 4 << 20
)

// Manager creates, finds, runs code in and removes contexts.
type Manager struct {
	rt      Runtime
	kernels Kernels
	store   Store // rt's, or one that keeps nothing
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// The manager's own goroutines (culling, taking contexts over) end
	// when watchCtx does, at Close or Detach.
	watchCtx  context.Context
	stopWatch context.CancelFunc
	watchers  sync.WaitGroup

	pools map[string]*pool // by language; a language without one has a nil pool

	events    broker
	admission *admission

	mu        sync.RWMutex
	contexts  map[string]*liveContext // all of them, those in sandboxes too
	sandboxes map[string]*sandbox
}

// NewManager returns a Manager that runs contexts on rt. metrics may be nil.
func NewManager(rt Runtime, cfg Config, log *slog.Logger, m *Metrics) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	if m == nil {
		m = NewMetrics(nil)
	}
	if cfg.HistoryEntries == 0 {
		cfg.HistoryEntries = DefaultHistoryEntries
	}
	if cfg.HistoryBytes == 0 {
		cfg.HistoryBytes = DefaultHistoryBytes
	}
	store := rt.Store()
	if store == nil {
		store = memoryStore{}
	}
	mgr := &Manager{
		rt:        rt,
		kernels:   jupyter{},
		store:     store,
		cfg:       cfg,
		log:       log,
		metrics:   m.m,
		watchCtx:  ctx,
		stopWatch: cancel,
		contexts:  map[string]*liveContext{},
		sandboxes: map[string]*sandbox{},
		pools:     map[string]*pool{},
		admission: newAdmission(cfg.MaxContexts, cfg.FullWait),
	}
	for _, l := range cfg.Languages {
		if n := cfg.PoolSizes[l.Name]; n > 0 {
			mgr.pools[l.Name] = newPool(mgr, l, n)
		}
	}
	return mgr
}

// Start starts the background work: filling the warm pools and removing
// idle contexts. Close stops it.
func (m *Manager) Start() {
	for _, p := range m.pools {
		p.start()
	}
	// Sandboxes have idle timeouts of their own, even when IdleTTL is 0.
	m.watchers.Add(1)
	go m.cull()
}

// Ping checks that the container engine answers.
func (m *Manager) Ping(ctx context.Context) error { return m.rt.Ping(ctx) }

func (m *Manager) get(id string) (*liveContext, error) {
	m.mu.RLock()
	s := m.contexts[id]
	m.mu.RUnlock()
	if s == nil {
		return nil, Errorf(CodeNotFound, "Context not found")
	}
	return s, nil
}

// Get returns the context with id. Errors: CodeNotFound.
func (m *Manager) Get(id string) (Info, error) {
	s, err := m.get(id)
	if err != nil {
		return Info{}, err
	}
	return s.snapshot(), nil
}

// List returns all contexts, oldest first.
func (m *Manager) List() []Info {
	m.mu.RLock()
	infos := make([]Info, 0, len(m.contexts))
	for _, s := range m.contexts {
		infos = append(infos, s.snapshot())
	}
	m.mu.RUnlock()
	sort.Slice(infos, func(i, j int) bool {
		if !infos[i].CreatedAt.Equal(infos[j].CreatedAt) {
			return infos[i].CreatedAt.Before(infos[j].CreatedAt)
		}
		return infos[i].ID < infos[j].ID
	})
	return infos
}

// Delete removes the context with id and its container. An execution still
// running in it ends with the error ErrContextDeleted. A context being
// taken over after a restart is removed once that has ended. Errors:
// CodeNotFound, and ctx's error when ctx ended while it waited.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if s, err := m.get(id); err == nil && s.recovered != nil {
		// Removing it while it is taken over would race with that.
		select {
		case <-s.recovered:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s, err := m.get(id)
	if err != nil {
		return err
	}
	if _, listed := m.unlist(s); !listed {
		return Errorf(CodeNotFound, "Context not found")
	}
	if s.sb == nil {
		m.admission.release() // its container goes
	}
	return m.remove(s)
}

// unlist takes s out of the contexts, marks it removed, counts it gone and
// tells of it, once: it does nothing, and returns false, when s is no
// longer listed, so that of two removals racing (a Delete and the end of
// its sandbox) only one goes on. It returns s's kernel for the caller to
// close or shut down; the caller drops s's record when it should go.
func (m *Manager) unlist(s *liveContext) (k Kernel, listed bool) {
	m.mu.Lock()
	listed = m.contexts[s.info.ID] == s
	if listed {
		delete(m.contexts, s.info.ID)
	}
	m.mu.Unlock()
	if !listed {
		return nil, false
	}
	k = s.markRemoved()
	m.metrics.active.Dec()
	m.events.publish(Event{Type: EventContextDeleted, ContextID: s.info.ID})
	return k, true
}

// remove closes the kernel connection and removes the container, or, for
// a context in a sandbox, shuts its kernel down. It keeps going when ctx
// is cancelled: a half-removed context would leak.
func (m *Manager) remove(s *liveContext) error {
	k := s.markRemoved()
	m.store.Drop(s.info.ID)
	if s.sb != nil {
		s.sb.forget(s)
		m.saveSandbox(s.sb)
		if k != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := k.Shutdown(ctx); err != nil {
				// A container that stopped took the kernel with it.
				m.log.Warn("could not shut down a kernel of a sandbox", "context_id", s.info.ID, "sandbox_id", s.sb.id, "error", err)
			}
		}
		m.log.Info("context removed", "context_id", s.info.ID, "sandbox_id", s.sb.id)
		return nil
	}
	if k != nil {
		k.Close()
	}
	if err := m.removeInstance(s.info.ID, s.inst); err != nil {
		return err
	}
	m.log.Info("context removed", "context_id", s.info.ID)
	return nil
}

// Close removes every context and pooled kernel, and stops the watchers.
func (m *Manager) Close() error {
	for _, p := range m.pools {
		p.close()
	}
	m.mu.Lock()
	all := make([]*liveContext, 0, len(m.contexts))
	for id, s := range m.contexts {
		if s.sb == nil { // those in sandboxes go with them
			all = append(all, s)
			delete(m.contexts, id)
		}
	}
	boxes := make([]*sandbox, 0, len(m.sandboxes))
	for _, b := range m.sandboxes {
		boxes = append(boxes, b)
	}
	clear(m.sandboxes)
	m.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(all)+len(boxes))
	for i, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.remove(s)
			m.metrics.active.Dec()
		}()
	}
	for i, b := range boxes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[len(all)+i] = m.end(context.Background(), b)
		}()
	}
	wg.Wait()
	m.stopWatch()
	m.watchers.Wait()
	return errors.Join(errs...)
}

// Detach lets go of every context without removing it, for a daemon that
// stops so that its next run takes them over; pooled kernels are removed.
func (m *Manager) Detach() {
	for _, p := range m.pools {
		p.close()
	}
	m.mu.Lock()
	all := m.contexts
	m.contexts = map[string]*liveContext{}
	m.sandboxes = map[string]*sandbox{}
	m.mu.Unlock()
	m.stopWatch()
	for _, s := range all {
		if k := s.markRemoved(); k != nil { // nil while it is being taken over
			k.Close()
		}
	}
	m.watchers.Wait()
}
