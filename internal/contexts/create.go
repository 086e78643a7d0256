package contexts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"path"
	"strings"
	"time"

	"github.com/google/uuid"
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
	// SandboxID, when set, makes the context in that sandbox's container
	// rather than in one of its own.
	SandboxID string
}

// Create makes a context and returns once its kernel is ready to execute.
// It takes a ready kernel from the warm pool when there is one, and starts
// a container otherwise. Errors: CodeInvalid (for the type),
// CodeUnsupportedLanguage, CodeEgressDisabled, CodeTooManyContexts,
// CodeRuntimeUnavailable, CodeKernelUnavailable; and, for a request with a
// SandboxID, CodeSandboxNotFound and CodeSandboxStopped.
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
	if req.SandboxID != "" {
		return m.createInSandbox(ctx, req, lang, workDir)
	}
	if req.Network && !m.cfg.AllowEgress {
		return Info{}, ErrEgressDisabled
	}
	if err := m.admission.reserve(ctx); err != nil {
		m.metrics.creates.WithLabelValues("error").Inc()
		return Info{}, err
	}
	registered := false
	defer func() {
		if !registered {
			m.admission.release()
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

	// A kernel starts in the default working dir with the image's env: a
	// context that asks for nothing else needs no set-up.
	s.mu.Lock()
	s.unprepared = s.unprepared || workDir != DefaultWorkingDir || len(env) > 0
	s.mu.Unlock()
	info, err := m.finish(ctx, s, req, workDir, env, start)
	registered = err == nil
	return info, err
}

// finish gives s, whose kernel answers, what req asks of it, and lists it.
func (m *Manager) finish(ctx context.Context, s *liveContext, req CreateRequest, workDir string, env map[string]string, start time.Time) (Info, error) {
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
	s.mu.Unlock()
	if err := s.prepare(ctx); err != nil {
		m.metrics.creates.WithLabelValues("error").Inc()
		m.remove(s)
		return Info{}, &Error{Code: CodeKernelUnavailable, Message: "could not set the working dir and env", Err: err}
	}

	s.hist = m.newHistory(s.info.ID)
	if s.sb != nil {
		if err := m.addToSandbox(s); err != nil {
			m.remove(s)
			return Info{}, err
		}
	} else {
		m.mu.Lock()
		m.contexts[s.info.ID] = s
		m.mu.Unlock()
	}
	m.persist(s)
	info := s.snapshot()
	m.events.publish(Event{Type: EventContextCreated, ContextID: info.ID, Info: &info})
	m.metrics.active.Inc()
	m.metrics.creates.WithLabelValues("ok").Inc()
	m.metrics.createSeconds.Observe(time.Since(start).Seconds())
	m.log.Info("context created", "context_id", s.info.ID, "sandbox_id", s.info.SandboxID, "instance", s.inst.ID, "pooled", s.info.Pooled, "duration", time.Since(start))
	return info, nil
}

// openEgress gives s's container its way out, and returns env with the
// proxy's variables added; the request's own env wins where both set one.
func (m *Manager) openEgress(ctx context.Context, s *liveContext, env map[string]string) (map[string]string, error) {
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
func (m *Manager) boot(ctx context.Context, lang Language) (*liveContext, error) {
	start := time.Now()
	id := "ctx-" + uuid.NewString()
	s := &liveContext{
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

	s.kernel, err = m.kernels.Start(ctx, m.dialer(inst), token, lang.KernelName, s.stopped, m.kernelOptions(s))
	if err != nil {
		m.remove(s)
		return nil, &Error{Code: CodeKernelUnavailable, Message: "the kernel did not start", Err: err}
	}
	s.kernelID = s.kernel.ID()
	m.log.Debug("kernel booted", "context_id", id, "instance", inst.ID, "kernel_id", s.kernel.ID(),
		"duration", time.Since(start), "instance_start", started.Sub(start), "kernel_start", time.Since(started))
	return s, nil
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
