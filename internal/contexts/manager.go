// Package contexts keeps the registry of execution contexts: each one a
// container with a Jupyter server and a kernel, created, found, executed in
// and removed through a Manager.
package contexts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/sandboxd/sandboxd/internal/kernel"
)

// Status is a context's state.
type Status string

// The states a context can be in.
const (
	StatusActive     Status = "active"     // ready to execute
	StatusBusy       Status = "busy"       // executing
	StatusRestarting Status = "restarting" // its kernel is restarting; executions wait
	StatusDead       Status = "dead"       // its container stopped
	// StatusRecovering is a context of a previous run of the daemon that
	// is being taken over: what needs its kernel answers CodeContextRecovering.
	StatusRecovering Status = "recovering"
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
	// StateDir, when set, keeps a record of each context, so that Recover
	// can take its container over after the daemon restarts.
	StateDir string
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

// DefaultWorkingDir is where code runs unless the context says otherwise.
const DefaultWorkingDir = "/workspace"

// CreateRequest asks for a new context. Empty fields take defaults.
// Create checks Type, Language and Network, which depend on what it makes
// and is configured for; the rest the caller checks, as the HTTP API does
// before any call.
type CreateRequest struct {
	Type        string
	Language    string
	SessionName string
	// WorkingDir is one CheckWorkingDir accepts.
	WorkingDir string
	// Env is added to the kernel's environment, and kept across restarts.
	// Its names are ones ValidateEnv accepts: they go into code unquoted.
	Env map[string]string
	// Network asks for egress to the public internet (Config.AllowEgress).
	Network bool
}

// Info is a snapshot of a context.
type Info struct {
	ID             string
	Type           string
	Language       string
	SessionName    string
	WorkingDir     string
	Status         Status
	CreatedAt      time.Time
	LastActivity   time.Time
	ExecutionCount int
	// Restarts counts the times the kernel was restarted, losing its state.
	Restarts int
	// Pooled is true when the context's kernel came from the warm pool.
	Pooled bool
	// Network is true when the context can reach the public internet.
	Network bool
}

// ExecuteRequest asks to run code in a context. A zero Timeout takes the
// default; any other is one Timeout accepts.
type ExecuteRequest struct {
	Code    string
	Timeout time.Duration
	// Env overrides environment variables for this execution only. Its
	// names are ones ValidateEnv accepts.
	Env map[string]string
	// OnEvent, when set, receives output as it arrives; it must not block.
	OnEvent func(kernel.Event)
}

// ErrContainerDied names the error of an execution whose container stopped
// under it, as kernel.ErrKernelDied names one whose kernel died.
const ErrContainerDied = "ContainerDied"

// ErrContextDeleted names the error of an execution whose context was
// deleted while its code ran.
const ErrContextDeleted = "ContextDeleted"

// Execution is the outcome of one ExecuteRequest.
type Execution struct {
	kernel.Result
	// Duration is how long the code ran, from the moment it started (not
	// from when it was queued).
	Duration time.Duration
}

// Success reports whether the code ran to its end without error.
func (e Execution) Success() bool { return e.Error == nil && e.Status == "ok" }

// Manager creates, finds, runs code in and removes contexts.
type Manager struct {
	rt      Runtime
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// watchers end when their container stops or the manager closes.
	watchCtx  context.Context
	stopWatch context.CancelFunc
	watchers  sync.WaitGroup

	pools map[string]*pool // by language; a language without one has a nil pool

	events broker

	mu       sync.RWMutex
	contexts map[string]*sandbox
	// reserved counts the contexts that exist or are being made; freed is
	// closed, and replaced, when one goes.
	reserved int
	freed    chan struct{}
}

// sandbox is one live context.
type sandbox struct {
	info   Info // the fields that never change
	lang   Language
	env    map[string]string
	inst   Instance
	token  string // its Jupyter server's
	kernel *kernel.Kernel
	hist   *history // set before the context is listed
	// turn admits one execution at a time; blocked senders on a channel are
	// served in arrival order.
	turn chan struct{}
	// stopped is closed when the container is no longer running.
	stopped chan struct{}
	// recovered, for a context of a previous run, is closed once it has
	// been taken over or given up (Recover); nil for the others.
	recovered chan struct{}
	booted    time.Time // when its container was started

	mu           sync.Mutex
	status       Status
	lastActivity time.Time
	executions   int
	restarts     int
	removed      bool
	// unprepared is set when the kernel restarted and has not yet been given
	// its working dir and env again; whoever next holds the turn does it.
	unprepared bool
}

func (s *sandbox) snapshot() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.info
	i.Status = s.status
	i.LastActivity = s.lastActivity
	i.ExecutionCount = s.executions
	i.Restarts = s.restarts
	return i
}

// kernelRestarted records a restart: the kernel lost its state and needs
// preparing again.
func (s *sandbox) kernelRestarted() {
	s.mu.Lock()
	s.restarts++
	s.unprepared = true
	if s.status != StatusDead {
		s.status = StatusRestarting
	}
	s.mu.Unlock()
}

// prepare gives the kernel its working dir and env, when a restart took
// them. The caller holds the turn.
func (s *sandbox) prepare(ctx context.Context) error {
	s.mu.Lock()
	needed := s.unprepared
	s.mu.Unlock()
	if !needed {
		return nil
	}
	if err := s.kernel.Ready(ctx); err != nil {
		return err
	}
	if err := s.run(ctx, s.lang.Prepare(s.info.WorkingDir, s.env)); err != nil {
		return err
	}
	s.mu.Lock()
	s.unprepared = false
	if s.status == StatusRestarting {
		s.status = StatusActive
	}
	s.mu.Unlock()
	return nil
}

// run executes sandboxd's own code silently and fails if it did not succeed.
func (s *sandbox) run(ctx context.Context, code string) error {
	res, err := s.kernel.Execute(ctx, kernel.Request{Code: code, Timeout: 30 * time.Second, Silent: true})
	if err != nil {
		return err
	}
	if res.Error != nil || res.Status != "ok" {
		return fmt.Errorf("set-up code failed: %s", strings.TrimSpace(res.Stderr))
	}
	return nil
}

func (s *sandbox) setStatus(st Status) {
	s.mu.Lock()
	if s.status != StatusDead {
		s.status = st
	}
	s.mu.Unlock()
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
	mgr := &Manager{
		rt:        rt,
		cfg:       cfg,
		log:       log,
		metrics:   m.m,
		watchCtx:  ctx,
		stopWatch: cancel,
		contexts:  map[string]*sandbox{},
		pools:     map[string]*pool{},
		freed:     make(chan struct{}),
	}
	for _, l := range cfg.Languages {
		if n := cfg.PoolSizes[l.Name]; n > 0 {
			mgr.pools[l.Name] = newPool(mgr, l, n)
		}
	}
	return mgr
}

// Pools tells how full each language's warm pool is.
func (m *Manager) Pools() []PoolStatus {
	var all []PoolStatus
	for _, l := range m.cfg.Languages {
		if p := m.pools[l.Name]; p != nil {
			all = append(all, p.status())
		}
	}
	return all
}

// Start starts the background work: filling the warm pools and removing
// idle contexts. Close stops it.
func (m *Manager) Start() {
	for _, p := range m.pools {
		p.start()
	}
	if m.cfg.IdleTTL > 0 {
		m.watchers.Add(1)
		go m.cull()
	}
}

// cull removes the contexts idle for longer than IdleTTL until the manager
// closes.
func (m *Manager) cull() {
	defer m.watchers.Done()
	tick := time.NewTicker(min(max(m.cfg.IdleTTL/4, time.Second), 30*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-m.watchCtx.Done():
			return
		}
		for _, c := range m.List() {
			if c.Status != StatusBusy && time.Since(c.LastActivity) > m.cfg.IdleTTL {
				m.log.Info("removing an idle context", "context_id", c.ID, "idle", time.Since(c.LastActivity).Round(time.Second))
				m.Delete(context.Background(), c.ID)
			}
		}
	}
}

// languageNames lists the names of the languages contexts can be made for.
func (m *Manager) languageNames() string {
	names := make([]string, len(m.cfg.Languages))
	for i, l := range m.cfg.Languages {
		names[i] = l.Name
	}
	return strings.Join(names, ", ")
}

// LanguageStatus is a language and whether its kernel image is installed.
type LanguageStatus struct {
	Name      string
	Image     string
	Installed bool
}

// Languages lists the languages contexts can be made for, the default
// first, and whether each one's image is in the engine. Errors:
// CodeDockerUnavailable.
func (m *Manager) Languages(ctx context.Context) ([]LanguageStatus, error) {
	all := make([]LanguageStatus, len(m.cfg.Languages))
	for i, l := range m.cfg.Languages {
		ok, err := m.rt.HasImage(ctx, l.Image)
		if err != nil {
			return nil, err
		}
		all[i] = LanguageStatus{Name: l.Name, Image: l.Image, Installed: ok}
	}
	return all, nil
}

// Ping checks that the container engine answers.
func (m *Manager) Ping(ctx context.Context) error { return m.rt.Ping(ctx) }

func (m *Manager) language(name string) (Language, bool) {
	if name == "" && len(m.cfg.Languages) > 0 {
		return m.cfg.Languages[0], true
	}
	for _, l := range m.cfg.Languages {
		if l.Name == name {
			return l, true
		}
	}
	return Language{}, false
}

// Create makes a context and returns once its kernel is ready to execute.
// It takes a ready kernel from the warm pool when there is one, and starts
// a container otherwise. Errors: CodeInvalid (for the type),
// CodeUnsupportedLanguage, CodeEgressDisabled, CodeTooManyContexts,
// CodeDockerUnavailable, CodeKernelUnavailable.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Info, error) {
	start := time.Now()
	lang, ok := m.language(req.Language)
	if !ok {
		return Info{}, Errorf(CodeUnsupportedLanguage, "unsupported language %q; available: %s", req.Language, m.languageNames())
	}
	if req.Type != "" && req.Type != "jupyter" {
		return Info{}, Errorf(CodeInvalid, "unsupported type %q; available: jupyter", req.Type)
	}
	workDir := DefaultWorkingDir
	if req.WorkingDir != "" {
		workDir = path.Clean(req.WorkingDir)
	}
	if req.Network && !m.cfg.AllowEgress {
		return Info{}, ErrEgressDisabled
	}
	if err := m.reserve(ctx); err != nil {
		m.metrics.creates.WithLabelValues("error").Inc()
		return Info{}, err
	}
	registered := false
	defer func() {
		if !registered {
			m.release()
		}
	}()

	ctx, cancel := context.WithTimeout(ctx, m.cfg.CreateTimeout)
	defer cancel()
	var err error
	s := m.pools[lang.Name].take(ctx)
	if s == nil {
		if s, err = m.boot(ctx, lang); err != nil {
			m.metrics.creates.WithLabelValues("error").Inc()
			return Info{}, err
		}
	}

	env := req.Env
	if req.Network {
		if env, err = m.openEgress(ctx, s, req.Env); err != nil {
			m.metrics.creates.WithLabelValues("error").Inc()
			m.remove(s)
			return Info{}, err
		}
	}

	now := time.Now().UTC().Truncate(time.Second)
	s.mu.Lock()
	s.info.SessionName = req.SessionName
	if s.info.SessionName == "" {
		s.info.SessionName = "session-" + s.info.ID[4:12]
	}
	s.info.WorkingDir = workDir
	s.info.CreatedAt = now
	s.info.Network = req.Network
	s.lastActivity = now
	s.env = env
	// A kernel starts in the default working dir with the image's env: a
	// context that asks for nothing else needs no set-up.
	s.unprepared = s.unprepared || workDir != DefaultWorkingDir || len(env) > 0
	s.mu.Unlock()
	if err := s.prepare(ctx); err != nil {
		m.metrics.creates.WithLabelValues("error").Inc()
		m.remove(s)
		return Info{}, &Error{Code: CodeKernelUnavailable, Message: "could not set the working dir and env", Err: err}
	}

	s.hist = m.newHistory(s.info.ID)
	if err := m.saveRecord(s); err != nil {
		m.log.Warn("the context will not survive a restart of the daemon", "context_id", s.info.ID, "error", err)
	}
	m.mu.Lock()
	m.contexts[s.info.ID] = s
	m.mu.Unlock()
	registered = true
	info := s.snapshot()
	m.events.publish(Event{Type: EventContextCreated, ContextID: info.ID, Info: &info})
	m.metrics.active.Inc()
	m.metrics.creates.WithLabelValues("ok").Inc()
	m.metrics.createSeconds.Observe(time.Since(start).Seconds())
	m.log.Info("context created", "context_id", s.info.ID, "container_id", s.inst.ContainerID, "pooled", s.info.Pooled, "duration", time.Since(start))
	return s.snapshot(), nil
}

// openEgress gives s's container its way out, and returns env with the
// proxy's variables added; the request's own env wins where both set one.
func (m *Manager) openEgress(ctx context.Context, s *sandbox, env map[string]string) (map[string]string, error) {
	proxyEnv, err := m.rt.OpenEgress(ctx, s.inst)
	if err != nil {
		return nil, err
	}
	merged := map[string]string{}
	maps.Copy(merged, proxyEnv)
	maps.Copy(merged, env)
	return merged, nil
}

// boot starts a container for lang and its kernel, and returns once the
// kernel answers. The kernel has neither working dir nor env yet.
func (m *Manager) boot(ctx context.Context, lang Language) (*sandbox, error) {
	start := time.Now()
	id := "ctx-" + uuid.NewString()
	s := &sandbox{
		info:    Info{ID: id, Type: "jupyter", Language: lang.Name, WorkingDir: DefaultWorkingDir},
		lang:    lang,
		turn:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
		status:  StatusActive,
		booted:  start,
		token:   randomToken(),
	}
	token := s.token
	inst, err := m.rt.Start(ctx, Spec{
		ContextID: id,
		Image:     lang.Image,
		Token:     token,
		Labels:    map[string]string{"sandboxd.language": lang.Name},
	})
	if err != nil {
		return nil, err
	}
	s.inst = inst
	m.watch(s)
	started := time.Now()

	server := kernel.NewServer(inst.Socket, token)
	err = server.WaitReady(ctx, s.stopped)
	serverReady := time.Now()
	if err == nil {
		s.kernel, err = kernel.Start(ctx, server, lang.KernelName, m.kernelOptions(s))
	}
	if err == nil {
		err = m.rt.Seal(inst)
	}
	if err != nil {
		if s.kernel == nil {
			server.Close()
		}
		m.remove(s)
		return nil, &Error{Code: CodeKernelUnavailable, Message: "the kernel did not start", Err: err}
	}
	m.log.Debug("kernel booted", "context_id", id, "container_id", inst.ContainerID, "kernel_id", s.kernel.ID(),
		"duration", time.Since(start), "container", started.Sub(start), "server", serverReady.Sub(started), "kernel", time.Since(serverReady))
	return s, nil
}

func (m *Manager) kernelOptions(s *sandbox) kernel.Options {
	return kernel.Options{
		MaxOutput:      m.cfg.MaxOutput,
		InterruptGrace: m.cfg.InterruptGrace,
		ReadyTimeout:   m.cfg.CreateTimeout,
		OnRestart:      s.kernelRestarted,
		Log:            m.log,
	}
}

// reserve counts a context about to be made against MaxContexts. When
// there is no room it waits up to FullWait for a context to go, then fails
// with CodeTooManyContexts.
func (m *Manager) reserve(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.FullWait)
	defer cancel()
	for {
		m.mu.Lock()
		if m.cfg.MaxContexts <= 0 || m.reserved < m.cfg.MaxContexts {
			m.reserved++
			m.mu.Unlock()
			return nil
		}
		freed := m.freed
		m.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return Errorf(CodeTooManyContexts, "there are %d contexts, the most this daemon allows; delete some first", m.cfg.MaxContexts)
		}
	}
}

// release gives back what reserve took, and wakes the creates waiting
// for room.
func (m *Manager) release() {
	m.mu.Lock()
	m.reserved--
	close(m.freed)
	m.freed = make(chan struct{})
	m.mu.Unlock()
}

// CheckWorkingDir checks a requested working directory; "" is the default.
// Only /workspace and /tmp are writable in a context's container, so it
// must lie in one of them. Errors: CodeInvalid.
func CheckWorkingDir(dir string) error {
	if dir == "" {
		return nil
	}
	clean := path.Clean(dir)
	for _, root := range []string{DefaultWorkingDir, "/tmp"} {
		if clean == root || strings.HasPrefix(clean, root+"/") {
			return nil
		}
	}
	return Errorf(CodeInvalid, "working_dir %q must be /workspace, /tmp or a directory below them", dir)
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// watch marks s dead when its container stops.
// A wait that fails (the engine is unreachable) is retried after these:
// the container may well be running, and its kernel serving.
const (
	watchRetry    = 500 * time.Millisecond
	watchRetryMax = 10 * time.Second
)

func (m *Manager) watch(s *sandbox) {
	m.watchers.Add(1)
	go func() {
		defer m.watchers.Done()
		retry := watchRetry
		for {
			exit, err := m.rt.Wait(m.watchCtx, s.inst)
			if m.watchCtx.Err() != nil {
				return
			}
			if err == nil {
				m.markDead(s, exit)
				return
			}
			m.log.Debug("cannot watch the context's container; retrying", "context_id", s.info.ID, "error", err)
			select {
			case <-time.After(retry):
			case <-m.watchCtx.Done():
				return
			}
			retry = min(2*retry, watchRetryMax)
		}
	}()
}

// markDead records that s's container is no longer running.
func (m *Manager) markDead(s *sandbox, exit string) {
	s.mu.Lock()
	removed := s.removed
	s.status = StatusDead
	s.mu.Unlock()
	close(s.stopped)
	if !removed {
		m.log.Warn("context container stopped", "context_id", s.info.ID, "container_id", s.inst.ContainerID, "exit", exit)
	}
}

func (m *Manager) get(id string) (*sandbox, error) {
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
	m.mu.Lock()
	s := m.contexts[id]
	delete(m.contexts, id)
	m.mu.Unlock()
	if s == nil {
		return Errorf(CodeNotFound, "Context not found")
	}
	m.release()
	m.metrics.active.Dec()
	err := m.remove(s)
	m.events.publish(Event{Type: EventContextDeleted, ContextID: id})
	return err
}

// remove closes the kernel connection and removes the container. It keeps
// going when ctx is cancelled: a half-removed context would leak.
func (m *Manager) remove(s *sandbox) error {
	s.mu.Lock()
	s.removed = true
	k := s.kernel // set by Recover under s.mu
	s.mu.Unlock()
	if k != nil {
		k.Close()
	}
	m.dropRecord(s.info.ID)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.rt.Remove(ctx, s.inst); err != nil {
		m.log.Error("remove context container", "context_id", s.info.ID, "container_id", s.inst.ContainerID, "error", err)
		return err
	}
	m.log.Info("context removed", "context_id", s.info.ID)
	return nil
}

// Execute runs code in the context with id. Executions on one context run
// one at a time, in arrival order; the timeout clock starts when the code
// starts running. Errors: CodeNotFound, CodeInvalid, CodeKernelUnavailable,
// and ctx's error when ctx ended while the request was queued.
func (m *Manager) Execute(ctx context.Context, id string, req ExecuteRequest) (Execution, error) {
	timeout := m.timeout(req.Timeout)
	s, err := m.get(id)
	if err != nil {
		return Execution{}, err
	}
	if len(req.Env) > 0 && s.lang.Override == nil {
		return Execution{}, Errorf(CodeInvalid, "%s contexts do not take env per execution; set it when creating the context", s.lang.Name)
	}

	release, err := s.takeTurn(ctx)
	if err != nil {
		return Execution{}, err
	}
	defer release()
	if err := s.prepare(ctx); err != nil {
		return Execution{}, &Error{Code: CodeKernelUnavailable, Message: "the kernel is not ready", Err: err}
	}
	var undo string
	if len(req.Env) > 0 {
		var set string
		set, undo = s.lang.Override(req.Env)
		if err := s.run(ctx, set); err != nil {
			return Execution{}, &Error{Code: CodeKernelUnavailable, Message: "could not set env", Err: err}
		}
	}

	s.setStatus(StatusBusy)
	m.events.publish(Event{Type: EventExecutionStarted, ContextID: id, Kind: KindExecution, Code: req.Code})
	start := time.Now()
	res, err := s.kernel.Execute(ctx, kernel.Request{Code: req.Code, Timeout: timeout, OnEvent: req.OnEvent})
	if err == nil && res.Error != nil && res.Error.Name == kernel.ErrKernelDied && !res.Restarted {
		// The kernel's connection went without a restart: because the
		// context was deleted (which marks it before it closes the
		// connection), or else, when the whole container stopped, its
		// watcher says so a moment later.
		s.mu.Lock()
		removed := s.removed
		s.mu.Unlock()
		if removed {
			res.Error = &kernel.Error{Name: ErrContextDeleted, Value: "the context was deleted while the code ran"}
		} else {
			select {
			case <-s.stopped:
				res.Error = &kernel.Error{Name: ErrContainerDied, Value: "the context's container stopped (killed, or removed from outside sandboxd); delete the context and create a new one"}
			case <-time.After(2 * time.Second):
			}
		}
	}
	exe := Execution{Result: res, Duration: time.Since(start)}
	// A kernel restarted after ignoring an interrupt announces nothing of its
	// own, unlike one that died.
	if res.Restarted && res.Error != nil && res.Error.Name == kernel.ErrTimeout {
		s.kernelRestarted()
	}
	if undo != "" && !res.Restarted && err == nil {
		if err := s.run(context.WithoutCancel(ctx), undo); err != nil {
			m.log.Warn("could not restore env after execution", "context_id", id, "error", err)
		}
	}
	s.mu.Lock()
	if s.status == StatusBusy {
		s.status = StatusActive
	}
	s.lastActivity = time.Now().UTC()
	s.executions++
	s.mu.Unlock()

	entry := Entry{Kind: KindExecution, StartedAt: start.UTC(), Duration: exe.Duration, Code: req.Code,
		Success: err == nil && exe.Success(), Stdout: res.Stdout, Stderr: res.Stderr, Outputs: res.Outputs, Error: res.Error, Truncated: res.Truncated}
	if err != nil {
		entry.Error = &kernel.Error{Name: "KernelUnavailable", Value: "the kernel cannot be reached"}
	}
	m.record(s, entry)
	if err != nil {
		m.metrics.executions.WithLabelValues("unavailable").Inc()
		return Execution{}, &Error{Code: CodeKernelUnavailable, Message: "the kernel cannot be reached", Err: err}
	}
	m.metrics.executions.WithLabelValues(outcome(exe)).Inc()
	m.metrics.executeSeconds.Observe(exe.Duration.Seconds())
	return exe, nil
}

// Timeout returns the timeout an execution or command asking for d runs
// with: the default for 0. Callers check requests with it before Execute
// and RunCommand, which take their timeouts as they come. Errors:
// CodeInvalid, for one out of bounds.
func (m *Manager) Timeout(d time.Duration) (time.Duration, error) {
	if d < 0 || d > m.cfg.MaxTimeout {
		return 0, Errorf(CodeInvalid, "timeout must be more than 0 and at most %v seconds", m.cfg.MaxTimeout.Seconds())
	}
	return m.timeout(d), nil
}

// timeout is d, or the default for 0.
func (m *Manager) timeout(d time.Duration) time.Duration {
	if d == 0 {
		return m.cfg.DefaultTimeout
	}
	return d
}

// takeTurn waits until s is free, in arrival order, and returns the function
// that frees it again.
func (s *sandbox) takeTurn(ctx context.Context) (release func(), err error) {
	select {
	case s.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release = func() { <-s.turn }
	s.mu.Lock()
	removed, status := s.removed, s.status
	s.mu.Unlock()
	switch {
	case removed:
		release()
		return nil, Errorf(CodeNotFound, "Context not found")
	case status == StatusDead:
		release()
		return nil, Errorf(CodeContextDead, "the context's container has stopped; delete it and create a new one")
	case status == StatusRecovering:
		release()
		return nil, ErrRecovering
	}
	return release, nil
}

// Interrupt interrupts whatever the context's kernel is running, as Ctrl-C
// does; the kernel keeps its state. Errors: CodeNotFound, CodeKernelUnavailable.
func (m *Manager) Interrupt(ctx context.Context, id string) error {
	s, err := m.get(id)
	if err != nil {
		return err
	}
	if s.snapshot().Status == StatusRecovering {
		return ErrRecovering
	}
	if err := s.kernel.Interrupt(ctx); err != nil {
		return &Error{Code: CodeKernelUnavailable, Message: "could not interrupt the kernel", Err: err}
	}
	return nil
}

// Restart restarts the context's kernel: its state is lost, its id, working
// dir and env stay. A running execution ends with a KernelDied error.
// Errors: CodeNotFound, CodeKernelUnavailable.
func (m *Manager) Restart(ctx context.Context, id string) (Info, error) {
	s, err := m.get(id)
	if err != nil {
		return Info{}, err
	}
	if s.snapshot().Status == StatusRecovering {
		return Info{}, ErrRecovering
	}
	s.kernelRestarted()
	if err := s.kernel.Restart(ctx); err != nil {
		return Info{}, &Error{Code: CodeKernelUnavailable, Message: "could not restart the kernel", Err: err}
	}
	release, err := s.takeTurn(ctx)
	if err != nil {
		return Info{}, err
	}
	defer release()
	if err := s.prepare(ctx); err != nil {
		return Info{}, &Error{Code: CodeKernelUnavailable, Message: "the kernel is not ready after its restart", Err: err}
	}
	m.log.Info("context kernel restarted", "context_id", id)
	return s.snapshot(), nil
}

func outcome(e Execution) string {
	switch {
	case e.Success():
		return "ok"
	case e.Error == nil:
		return "error"
	case e.Error.Name == kernel.ErrTimeout:
		return "timeout"
	case e.Error.Name == kernel.ErrKernelDied:
		return "kernel_died"
	}
	return "error"
}

// Close removes every context and pooled kernel, and stops the watchers.
func (m *Manager) Close() error {
	for _, p := range m.pools {
		p.close()
	}
	m.mu.Lock()
	all := make([]*sandbox, 0, len(m.contexts))
	for id, s := range m.contexts {
		all = append(all, s)
		delete(m.contexts, id)
	}
	m.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.remove(s)
			m.metrics.active.Dec()
		}()
	}
	wg.Wait()
	m.stopWatch()
	m.watchers.Wait()
	return errors.Join(errs...)
}
