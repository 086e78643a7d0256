package contexts

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// A sandbox is one container, as AgentRun and E2B have it: its Jupyter
// server runs the kernels of any number of contexts, which share its files
// and processes. It is made from a template, which is a language's image;
// its contexts may be of any language whose kernelspec that image has. A
// plain context has a container of its own, and no sandbox.

// SandboxStatus is a sandbox's state.
type SandboxStatus string

// The states a sandbox can be in. Stopped and dead are final: the
// container and the contexts are gone, and the sandbox is only told of
// until it is deleted.
const (
	SandboxReady      SandboxStatus = "ready"
	SandboxStopped    SandboxStatus = "stopped" // on request, or idle past its timeout
	SandboxDead       SandboxStatus = "dead"    // its container stopped by itself
	SandboxRecovering SandboxStatus = "recovering"
)

// SandboxInfo is a snapshot of a sandbox.
type SandboxInfo struct {
	ID string
	// Template is the language whose image it runs.
	Template     string
	Status       SandboxStatus
	CreatedAt    time.Time
	LastActivity time.Time
	// EndedAt is when it stopped or died; zero while it runs.
	EndedAt time.Time
	// IdleTimeout is how long it may go unused before it is stopped; 0 is
	// never.
	IdleTimeout time.Duration
	// Contexts counts the contexts in it.
	Contexts int
}

// SandboxRequest asks for a sandbox.
type SandboxRequest struct {
	// Template is a language's name, or that name with "-sandbox" after
	// it, as AgentRun's python-sandbox.
	Template string
	// IdleTimeout of 0 takes Config.IdleTTL; a longer one than a set
	// IdleTTL is cut to it.
	IdleTimeout time.Duration
}

// MaxSandboxContexts caps the contexts of one sandbox: they share its
// container's memory, and each kernel holds a connection of the daemon's.
const MaxSandboxContexts = 16

// keepStopped is how many stopped sandboxes are still told of; older ones
// are forgotten as if deleted.
var keepStopped = 100

type sandbox struct {
	id          string
	lang        Language
	inst        Instance
	token       string
	stopped     chan struct{} // closed when the container is no longer running
	idleTimeout time.Duration
	createdAt   time.Time
	// recovered, for a sandbox of a previous run, is closed once it has
	// been taken over or given up; nil for the others.
	recovered chan struct{}
	saving    sync.Mutex // one save or drop of its record at a time

	mu           sync.Mutex
	status       SandboxStatus
	specs        []string // its server's kernelspecs; nil until asked
	contexts     map[string]*liveContext
	defaults     map[string]string // by language: the context of requests that name none
	starting     int               // contexts being made
	inFlight     int               // files and commands under way: running to target.done
	lastActivity time.Time
	endedAt      time.Time
	removeFailed bool // stopped, but its container's removal failed
}

func (b *sandbox) snapshot() SandboxInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	last, _ := b.activity()
	return SandboxInfo{
		ID: b.id, Template: b.lang.Name, Status: b.status, CreatedAt: b.createdAt, LastActivity: last,
		EndedAt: b.endedAt, IdleTimeout: b.idleTimeout, Contexts: len(b.contexts),
	}
}

// activity returns when b or a context in it was last used, and whether
// code runs in one. The caller holds b.mu.
func (b *sandbox) activity() (last time.Time, busy bool) {
	last = b.lastActivity
	for _, s := range b.contexts {
		i := s.snapshot()
		if i.LastActivity.After(last) {
			last = i.LastActivity
		}
		busy = busy || i.Status == StatusBusy
	}
	return last, busy
}

// usable fails unless contexts, files and commands can use b now. The
// caller holds b.mu.
func (b *sandbox) usable() error {
	switch b.status {
	case SandboxStopped:
		return Errorf(CodeSandboxStopped, "sandbox %s is stopped; create a new one", b.id)
	case SandboxDead:
		return Errorf(CodeSandboxStopped, "the container of sandbox %s has stopped; delete it and create a new one", b.id)
	case SandboxRecovering:
		return ErrRecovering
	}
	return nil
}

// templateLanguage returns the language a template name stands for.
func (m *Manager) templateLanguage(name string) (Language, error) {
	// A language's aliases name its template too, as js-sandbox.
	base := strings.TrimSuffix(name, "-sandbox")
	if l, ok := m.language(base); ok && base != "" {
		return l, nil
	}
	return Language{}, Errorf(CodeTemplateNotFound, "no template %q; available: %s (each also as <name>-sandbox)", name, m.languageNames())
}

// Templates lists the templates sandboxes can be made from: the
// languages, with whether each one's image is installed.
func (m *Manager) Templates(ctx context.Context) ([]LanguageStatus, error) { return m.Languages(ctx) }

// Template returns the template name stands for. Errors:
// CodeTemplateNotFound, CodeRuntimeUnavailable.
func (m *Manager) Template(ctx context.Context, name string) (LanguageStatus, error) {
	l, err := m.templateLanguage(name)
	if err != nil {
		return LanguageStatus{}, err
	}
	ok, err := m.rt.HasImage(ctx, l.Image)
	if err != nil {
		return LanguageStatus{}, err
	}
	return LanguageStatus{Name: l.Name, Image: l.Image, Installed: ok}, nil
}

// WorkingDir returns the dir the paths of files and commands given to id,
// a sandbox's or a context's, are relative to. Errors: those of files.
func (m *Manager) WorkingDir(id string) (string, error) {
	t, err := m.running(id)
	if err != nil {
		return "", err
	}
	t.done()
	return t.workDir, nil
}

// sandboxIdleTimeout is the idle timeout a sandbox asking for d gets.
func (m *Manager) sandboxIdleTimeout(d time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, Errorf(CodeInvalid, "the idle timeout must not be negative")
	case d == 0:
		return m.cfg.IdleTTL, nil
	case m.cfg.IdleTTL > 0 && d > m.cfg.IdleTTL:
		return m.cfg.IdleTTL, nil
	}
	return d, nil
}

// CreateSandbox starts a sandbox's container and returns once its Jupyter
// server answers; its contexts are made by Create. It counts as one
// against MaxContexts, however many contexts it comes to hold. Errors:
// CodeTemplateNotFound, CodeInvalid, CodeTooManyContexts,
// CodeRuntimeUnavailable, CodeKernelUnavailable.
func (m *Manager) CreateSandbox(ctx context.Context, req SandboxRequest) (SandboxInfo, error) {
	start := time.Now()
	lang, err := m.templateLanguage(req.Template)
	if err != nil {
		return SandboxInfo{}, err
	}
	idle, err := m.sandboxIdleTimeout(req.IdleTimeout)
	if err != nil {
		return SandboxInfo{}, err
	}
	if err := m.admission.reserve(ctx); err != nil {
		return SandboxInfo{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.CreateTimeout)
	defer cancel()
	now := time.Now().UTC().Truncate(time.Second)
	b := &sandbox{
		id: "sbx-" + uuid.NewString(), lang: lang, token: randomToken(), stopped: make(chan struct{}),
		idleTimeout: idle, createdAt: now, status: SandboxReady, lastActivity: now,
		contexts: map[string]*liveContext{}, defaults: map[string]string{},
	}
	b.inst, err = m.rt.Start(ctx, Spec{
		ContextID: b.id,
		Image:     lang.Image,
		Token:     b.token,
		Labels:    map[string]string{"sandboxd.language": lang.Name, "sandboxd.sandbox": "true"},
	})
	if err != nil {
		m.admission.release()
		return SandboxInfo{}, err
	}
	m.watchSandbox(b)
	// Its kernelspecs are asked for only when a context of another
	// language than the template's is: listing them takes the server a
	// second.
	if err := m.kernels.Serve(ctx, m.dialer(b.inst), b.token, b.stopped); err != nil {
		b.mu.Lock()
		b.status = SandboxStopped
		b.mu.Unlock()
		m.removeInstance(b.id, b.inst)
		m.admission.release()
		return SandboxInfo{}, &Error{Code: CodeKernelUnavailable, Message: "the sandbox's Jupyter server did not start", Err: err}
	}
	m.saveSandbox(b)
	m.mu.Lock()
	m.sandboxes[b.id] = b
	m.mu.Unlock()
	m.log.Info("sandbox created", "sandbox_id", b.id, "template", lang.Name, "instance", b.inst.ID, "duration", time.Since(start))
	return b.snapshot(), nil
}

func (m *Manager) getSandbox(id string) (*sandbox, error) {
	m.mu.RLock()
	b := m.sandboxes[id]
	m.mu.RUnlock()
	if b == nil {
		return nil, Errorf(CodeSandboxNotFound, "Sandbox not found")
	}
	return b, nil
}

// GetSandbox returns the sandbox with id, a stopped one too. Errors:
// CodeSandboxNotFound.
func (m *Manager) GetSandbox(id string) (SandboxInfo, error) {
	b, err := m.getSandbox(id)
	if err != nil {
		return SandboxInfo{}, err
	}
	return b.snapshot(), nil
}

// ListSandboxes returns all sandboxes, stopped ones too, oldest first.
func (m *Manager) ListSandboxes() []SandboxInfo {
	m.mu.RLock()
	all := make([]*sandbox, 0, len(m.sandboxes))
	for _, b := range m.sandboxes {
		all = append(all, b)
	}
	m.mu.RUnlock()
	infos := make([]SandboxInfo, len(all))
	for i, b := range all {
		infos[i] = b.snapshot()
	}
	sort.Slice(infos, func(i, j int) bool {
		if !infos[i].CreatedAt.Equal(infos[j].CreatedAt) {
			return infos[i].CreatedAt.Before(infos[j].CreatedAt)
		}
		return infos[i].ID < infos[j].ID
	})
	return infos
}

// SandboxContexts returns the contexts of the sandbox id, oldest first.
// Errors: CodeSandboxNotFound.
func (m *Manager) SandboxContexts(id string) ([]Info, error) {
	if _, err := m.getSandbox(id); err != nil {
		return nil, err
	}
	var in []Info
	for _, c := range m.List() {
		if c.SandboxID == id {
			in = append(in, c)
		}
	}
	return in, nil
}

// SandboxContext returns the context contextID of the sandbox id. Errors:
// CodeSandboxNotFound, and CodeNotFound for a context that is not in it.
func (m *Manager) SandboxContext(id, contextID string) (Info, error) {
	if _, err := m.getSandbox(id); err != nil {
		return Info{}, err
	}
	c, err := m.Get(contextID)
	if err != nil || c.SandboxID != id {
		return Info{}, Errorf(CodeNotFound, "Context not found in sandbox %s", id)
	}
	return c, nil
}

// DefaultContext returns the context of the sandbox id that requests
// naming no context run in, for language ("" is the sandbox's own), and
// makes it the first time. Errors: those of Create.
func (m *Manager) DefaultContext(ctx context.Context, id, language string) (Info, error) {
	b, err := m.getSandbox(id)
	if err != nil {
		return Info{}, err
	}
	if language == "" {
		language = b.lang.Name
	}
	if l, ok := m.language(language); ok {
		language = l.Name // one default for a language and its aliases
	}
	b.mu.Lock()
	cid, err := b.defaults[language], b.usable()
	b.mu.Unlock()
	if err != nil {
		// Its default context is dead, but the sandbox is what is gone.
		return Info{}, err
	}
	if cid != "" {
		if c, err := m.Get(cid); err == nil {
			return c, nil
		}
	}
	// Two first requests at once may each make one: the last one made is
	// kept as the default, and the other stays a context of the sandbox.
	c, err := m.Create(ctx, CreateRequest{SandboxID: id, Language: language})
	if err != nil {
		return Info{}, err
	}
	b.mu.Lock()
	b.defaults[language] = c.ID
	b.mu.Unlock()
	m.saveSandbox(b)
	return c, nil
}

// createInSandbox starts a kernel of lang on the Jupyter server of the
// sandbox req names. It is what Create does for a request with a
// SandboxID.
func (m *Manager) createInSandbox(ctx context.Context, req CreateRequest, lang Language, workDir string) (Info, error) {
	start := time.Now()
	if req.Network {
		return Info{}, Errorf(CodeInvalid, "a context in a sandbox has its container's network, which is none; create a context of its own to have one")
	}
	b, err := m.getSandbox(req.SandboxID)
	if err != nil {
		return Info{}, err
	}
	if lang.Name != b.lang.Name {
		if err := m.askSpecs(ctx, b); err != nil {
			return Info{}, err
		}
	}
	b.mu.Lock()
	err = b.usable()
	switch {
	case err != nil:
	case lang.Name != b.lang.Name && !slices.Contains(b.specs, lang.KernelName):
		err = Errorf(CodeUnsupportedLanguage, "the %s template has no %s kernel; its kernelspecs: %s", b.lang.Name, lang.Name, strings.Join(b.specs, ", "))
	case len(b.contexts)+b.starting >= MaxSandboxContexts:
		err = Errorf(CodeTooManyContexts, "sandbox %s has %d contexts, the most one sandbox holds; delete some first", b.id, MaxSandboxContexts)
	default:
		b.starting++
		b.lastActivity = time.Now().UTC()
	}
	b.mu.Unlock()
	if err != nil {
		return Info{}, err
	}
	defer func() {
		b.mu.Lock()
		b.starting--
		b.mu.Unlock()
	}()

	ctx, cancel := context.WithTimeout(ctx, m.cfg.CreateTimeout)
	defer cancel()
	// A sandbox stopped meanwhile takes the kernel with it: waiting for
	// that kernel to answer would last until the timeout.
	go func() {
		select {
		case <-b.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	s := &liveContext{
		info:    Info{ID: "ctx-" + uuid.NewString(), Type: "jupyter", Language: lang.Name, WorkingDir: DefaultWorkingDir, SandboxID: b.id},
		lang:    lang,
		turn:    make(chan struct{}, 1),
		stopped: b.stopped,
		status:  StatusActive,
		booted:  start,
		token:   b.token,
		inst:    b.inst,
		sb:      b,
	}
	s.kernel, err = m.kernels.Start(ctx, m.dialer(b.inst), b.token, lang.KernelName, b.stopped, m.kernelOptions(s))
	if err != nil {
		b.mu.Lock()
		stopped := b.usable()
		b.mu.Unlock()
		if stopped != nil {
			return Info{}, stopped
		}
		return Info{}, &Error{Code: CodeKernelUnavailable, Message: "the kernel did not start", Err: err}
	}
	s.kernelID = s.kernel.ID()
	// Its kernel starts in the server's working dir, with the image's env.
	s.mu.Lock()
	s.unprepared = true
	s.mu.Unlock()
	return m.finish(ctx, s, req, workDir, req.Env, start)
}

// askSpecs learns the kernelspecs of b's server, once.
func (m *Manager) askSpecs(ctx context.Context, b *sandbox) error {
	b.mu.Lock()
	known, err := b.specs != nil, b.usable()
	b.mu.Unlock()
	if known || err != nil {
		return err
	}
	specs, err := m.kernels.Specs(ctx, m.dialer(b.inst), b.token)
	if err != nil {
		return &Error{Code: CodeKernelUnavailable, Message: "could not list the sandbox's kernels", Err: err}
	}
	b.mu.Lock()
	b.specs = specs
	b.mu.Unlock()
	return nil
}

// addToSandbox lists s, a context of a sandbox, in it and in the manager,
// unless the sandbox stopped meanwhile. The lock order is a sandbox's b.mu,
// then m.mu: whoever holds m.mu takes no b.mu.
func (m *Manager) addToSandbox(s *liveContext) error {
	b := s.sb
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(); err != nil {
		return err
	}
	b.contexts[s.info.ID] = s
	m.mu.Lock()
	m.contexts[s.info.ID] = s
	m.mu.Unlock()
	return nil
}

// forget takes s out of its sandbox, which it leaves.
func (b *sandbox) forget(s *liveContext) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.contexts, s.info.ID)
	for lang, id := range b.defaults {
		if id == s.info.ID {
			delete(b.defaults, lang)
		}
	}
}

// StopSandbox removes the container of the sandbox id and all its
// contexts; the sandbox is still told of, as stopped, until it is deleted.
// Stopping a stopped sandbox does nothing. Errors: CodeSandboxNotFound, and
// ctx's error when it ended while a takeover after a restart ran.
func (m *Manager) StopSandbox(ctx context.Context, id string) (SandboxInfo, error) {
	b, err := m.getSandbox(id)
	if err != nil {
		return SandboxInfo{}, err
	}
	if err := m.end(ctx, b); err != nil {
		return SandboxInfo{}, err
	}
	m.forgetStopped()
	return b.snapshot(), nil
}

// DeleteSandbox removes the sandbox id, as StopSandbox does, and forgets
// it. Errors: those of StopSandbox.
func (m *Manager) DeleteSandbox(ctx context.Context, id string) error {
	b, err := m.getSandbox(id)
	if err != nil {
		return err
	}
	if err := m.end(ctx, b); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.sandboxes, id)
	m.mu.Unlock()
	return nil
}

// end stops b: its contexts go, and its container. It waits for a
// takeover of b to end first.
func (m *Manager) end(ctx context.Context, b *sandbox) error {
	if b.recovered != nil {
		select {
		case <-b.recovered:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.mu.Lock()
	if b.status == SandboxStopped {
		retry := b.removeFailed
		b.mu.Unlock()
		if retry {
			return m.removeSandboxInstance(b)
		}
		return nil
	}
	b.status = SandboxStopped
	if b.endedAt.IsZero() {
		b.endedAt = time.Now().UTC().Truncate(time.Second)
	}
	all := make([]*liveContext, 0, len(b.contexts))
	for _, s := range b.contexts {
		all = append(all, s)
	}
	clear(b.contexts)
	clear(b.defaults)
	b.mu.Unlock()

	for _, s := range all {
		// The kernels go with the container: no need to shut each down.
		k, listed := m.unlist(s)
		if !listed {
			continue // a Delete took it
		}
		if k != nil {
			k.Close()
		}
		m.store.Drop(s.info.ID)
	}
	m.admission.release()
	// After a save under way, which read b as running: one after this sees
	// it stopped and saves nothing.
	b.saving.Lock()
	m.store.Drop(b.id)
	b.saving.Unlock()
	if err := m.removeSandboxInstance(b); err != nil {
		return err
	}
	m.log.Info("sandbox stopped", "sandbox_id", b.id, "contexts", len(all))
	return nil
}

// removeSandboxInstance removes b's container, and records whether that
// failed: a stop or delete of b tries again then, rather than tell of a
// success while the container runs.
func (m *Manager) removeSandboxInstance(b *sandbox) error {
	err := m.removeInstance(b.id, b.inst)
	b.mu.Lock()
	b.removeFailed = err != nil
	b.mu.Unlock()
	return err
}

// forgetStopped forgets the oldest stopped sandboxes past keepStopped.
// It holds m.mu and a sandbox's b.mu never at once: addToSandbox takes
// them in that order, b.mu then m.mu.
func (m *Manager) forgetStopped() {
	m.mu.RLock()
	all := make([]*sandbox, 0, len(m.sandboxes))
	for _, b := range m.sandboxes {
		all = append(all, b)
	}
	m.mu.RUnlock()
	type ended struct {
		b  *sandbox
		at time.Time
	}
	var stopped []ended
	for _, b := range all {
		b.mu.Lock()
		if b.status == SandboxStopped {
			stopped = append(stopped, ended{b, b.endedAt})
		}
		b.mu.Unlock()
	}
	if len(stopped) <= keepStopped {
		return
	}
	sort.Slice(stopped, func(i, j int) bool { return stopped[i].at.Before(stopped[j].at) })
	m.mu.Lock()
	for _, e := range stopped[:len(stopped)-keepStopped] {
		if m.sandboxes[e.b.id] == e.b {
			delete(m.sandboxes, e.b.id)
		}
	}
	m.mu.Unlock()
}

// removeInstance removes a container. It keeps going when the caller's
// ctx is cancelled: a half-removed container would leak.
func (m *Manager) removeInstance(id string, inst Instance) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.rt.Remove(ctx, inst); err != nil {
		m.log.Error("remove container", "id", id, "instance", inst.ID, "error", err)
		return err
	}
	return nil
}

// watchSandbox marks b and all its contexts dead when its container stops.
func (m *Manager) watchSandbox(b *sandbox) {
	m.rt.Watch(b.inst, func(exit string) {
		b.mu.Lock()
		expected := b.status == SandboxStopped
		if !expected {
			b.status = SandboxDead
			b.endedAt = time.Now().UTC().Truncate(time.Second)
		}
		all := make([]*liveContext, 0, len(b.contexts))
		for _, s := range b.contexts {
			all = append(all, s)
		}
		b.mu.Unlock()
		for _, s := range all {
			s.died()
		}
		close(b.stopped)
		if !expected {
			m.log.Warn("sandbox container stopped", "sandbox_id", b.id, "instance", b.inst.ID, "exit", exit)
		}
	})
}

// idleSandboxes returns the sandboxes unused for longer than their idle
// timeouts at now, in which no code, command or transfer runs and no
// context is being made, and those whose container died.
func (m *Manager) idleSandboxes(now time.Time) []*sandbox {
	m.mu.RLock()
	all := make([]*sandbox, 0, len(m.sandboxes))
	for _, b := range m.sandboxes {
		all = append(all, b)
	}
	m.mu.RUnlock()
	var found []*sandbox
	for _, b := range all {
		b.mu.Lock()
		last, busy := b.activity()
		busy = busy || b.starting > 0 || b.inFlight > 0 // a context being made, a command or a transfer is use
		if (b.status == SandboxReady || b.status == SandboxDead) && b.idleTimeout > 0 && !busy && now.Sub(last) > b.idleTimeout {
			found = append(found, b)
		}
		b.mu.Unlock()
	}
	return found
}
