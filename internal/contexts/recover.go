package contexts

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"
)

// record is what the store keeps of s.
func (s *liveContext) record() Record {
	return Record{
		ID: s.info.ID, Language: s.info.Language, SessionName: s.info.SessionName, WorkingDir: s.info.WorkingDir,
		Env: s.env, Network: s.info.Network, CreatedAt: s.info.CreatedAt, Token: s.token, KernelID: s.kernelID,
	}
}

// persist saves what a restart of the daemon needs to take s over.
func (m *Manager) persist(s *liveContext) {
	if s.sb != nil {
		m.saveSandbox(s.sb)
		return
	}
	if err := m.store.Save(s.record()); err != nil {
		m.log.Warn("the context will not survive a restart of the daemon", "context_id", s.info.ID, "error", err)
	}
}

// saveSandbox saves b's record, with those of its contexts.
func (m *Manager) saveSandbox(b *sandbox) {
	b.saving.Lock() // one at a time, each with what b holds then
	defer b.saving.Unlock()
	b.mu.Lock()
	if b.status == SandboxStopped {
		b.mu.Unlock()
		return
	}
	r := Record{
		ID: b.id, Language: b.lang.Name, CreatedAt: b.createdAt, Token: b.token,
		Sandbox: true, IdleTimeout: b.idleTimeout, Defaults: maps.Clone(b.defaults),
	}
	for _, s := range b.contexts {
		r.Contexts = append(r.Contexts, s.record())
	}
	b.mu.Unlock()
	if err := m.store.Save(r); err != nil {
		m.log.Warn("the sandbox will not survive a restart of the daemon", "sandbox_id", b.id, "error", err)
	}
}

// recoverTimeout bounds taking one context over. Each context has its own,
// so that one that is slow (a kernel busy with a cell) holds up no other.
const recoverTimeout = 30 * time.Second

// Recover takes over the contexts a previous run of this daemon left
// running, with their kernels and variables, and removes every other
// container it left: pooled kernels, stopped containers, and those whose
// record is gone. Records without a container are dropped.
//
// Only the listing is done before it returns. The contexts it takes over
// are listed at once, with StatusRecovering, and each is taken over (or
// removed) in the background, in parallel and within its own
// recoverTimeout, so the daemon can serve meanwhile. Call it before Start
// and before serving: a container made earlier would be taken for one the
// previous run left.
func (m *Manager) Recover(ctx context.Context) error {
	insts, err := m.rt.List(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, inst := range insts {
		ids, _ := m.recoverOne(inst)
		for _, id := range ids {
			seen[id] = true
		}
	}
	m.store.Prune(func(id string) bool { return seen[id] })
	return nil
}

// recoverOne lists inst's context, or sandbox, as being taken over, and
// takes it over in the background. It returns the ids it lists, and a
// channel closed once the takeover has ended, either way.
func (m *Manager) recoverOne(inst Instance) (ids []string, done <-chan struct{}) {
	if m.holds(inst.ContextID) {
		return nil, m.heldRecovered(inst.ContextID)
	}
	if strings.HasPrefix(inst.ContextID, "sbx-") {
		b, err := m.recoveringSandbox(inst)
		if errors.Is(err, errHeld) {
			return nil, m.heldRecovered(inst.ContextID)
		}
		ids = []string{inst.ContextID}
		ended := make(chan struct{})
		if b != nil {
			for id := range b.contexts {
				ids = append(ids, id) // their histories are kept
			}
		}
		m.watchers.Add(1)
		go func() {
			defer m.watchers.Done()
			defer close(ended)
			if err == nil {
				if err = m.adoptSandbox(b); err == nil {
					return
				}
			}
			m.discardSandbox(inst, b, err)
		}()
		return ids, ended
	}
	s, err := m.recovering(inst)
	if errors.Is(err, errHeld) {
		return nil, m.heldRecovered(inst.ContextID)
	}
	ended := make(chan struct{})
	m.watchers.Add(1)
	go func() {
		defer m.watchers.Done()
		defer close(ended)
		if err == nil {
			if err = m.adopt(s); err == nil {
				close(s.recovered)
				return
			}
		}
		m.discard(inst, s, err)
	}()
	return []string{inst.ContextID}, ended
}

// holds reports whether id is a context or sandbox the Manager holds.
func (m *Manager) holds(id string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.contexts[id] != nil || m.sandboxes[id] != nil
}

// errHeld says that the Manager holds the context or sandbox already.
var errHeld = errors.New("held already")

// heldRecovered returns a channel closed once the takeover of id, a
// context or sandbox the Manager holds, has ended; closed already when it
// was not taken over.
func (m *Manager) heldRecovered(id string) <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s := m.contexts[id]; s != nil && s.recovered != nil {
		return s.recovered
	}
	if b := m.sandboxes[id]; b != nil && b.recovered != nil {
		return b.recovered
	}
	done := make(chan struct{})
	close(done)
	return done
}

// Adopt takes over inst, a context or sandbox that another replica of the
// daemon drove, as Recover takes over those a previous run left, and
// returns once it is active. One the Manager holds already counts as
// taken over. One that cannot be taken over is removed. Errors:
// CodeContextDead when it could not be taken over, and ctx's error.
func (m *Manager) Adopt(ctx context.Context, inst Instance) error {
	_, done := m.recoverOne(inst)
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !m.holds(inst.ContextID) {
		return Errorf(CodeContextDead, "%s could not be taken over from another replica", inst.ContextID)
	}
	return nil
}

// recovering lists inst's context, from its record, as one being taken
// over, or says why it cannot be. It counts against MaxContexts.
func (m *Manager) recovering(inst Instance) (*liveContext, error) {
	if role := inst.Labels[LabelRole]; role != "" {
		return nil, fmt.Errorf("a %s, not a context", role)
	}
	if !inst.Running {
		return nil, errors.New("not running")
	}
	rec, err := m.store.Load(inst.ContextID)
	if err != nil {
		return nil, fmt.Errorf("no record: %w", err)
	}
	lang, ok := m.language(rec.Language)
	if !ok || rec.Language == "" {
		return nil, fmt.Errorf("language %q is not served", rec.Language)
	}
	s := &liveContext{
		info:         Info{ID: rec.ID, Type: "jupyter", Language: lang.Name, SessionName: rec.SessionName, WorkingDir: rec.WorkingDir, CreatedAt: rec.CreatedAt, Network: rec.Network},
		lang:         lang,
		env:          rec.Env,
		token:        rec.Token,
		inst:         inst,
		turn:         make(chan struct{}, 1),
		stopped:      make(chan struct{}),
		recovered:    make(chan struct{}),
		status:       StatusRecovering,
		lastActivity: time.Now().UTC().Truncate(time.Second),
		booted:       time.Now(),
		hist:         m.newHistory(rec.ID),
	}
	m.mu.Lock()
	if m.contexts[s.info.ID] != nil {
		m.mu.Unlock()
		return nil, errHeld
	}
	m.contexts[s.info.ID] = s
	m.mu.Unlock()
	m.admission.add()
	m.metrics.active.Inc()
	return s, nil
}

// adopt connects to s's kernel and makes s active, or says why it cannot.
func (m *Manager) adopt(s *liveContext) error {
	ctx, cancel := context.WithTimeout(m.watchCtx, recoverTimeout)
	defer cancel()
	if s.info.Network {
		// The proxy is the daemon's: the one the previous run served is gone.
		if _, err := m.rt.OpenEgress(ctx, s.inst); err != nil {
			return fmt.Errorf("egress: %w", err)
		}
	}
	adopted, err := m.takeOver(ctx, s)
	if err != nil || !adopted {
		return err
	}
	m.watch(s)
	m.log.Info("context taken over from a previous run", "context_id", s.info.ID, "instance", s.inst.ID)
	return nil
}

// takeOver connects to s's kernel and makes s active; adopted is false
// when Close or Detach took s meanwhile.
func (m *Manager) takeOver(ctx context.Context, s *liveContext) (adopted bool, err error) {
	if err := s.hist.load(); err != nil {
		// Its kernel and variables are worth more than its past.
		m.log.Warn("the context's history is lost", "context_id", s.info.ID, "error", err)
	}
	k, busy, err := m.kernels.Find(ctx, m.dialer(s.inst), s.token, s.kernelID, m.kernelOptions(s))
	if err != nil {
		return false, err
	}
	if busy {
		// It runs a cell of the previous run, whose client is gone: nobody
		// can get its result. Interrupting it frees the context at once;
		// the kernel keeps its variables.
		if err := k.Interrupt(ctx); err != nil {
			m.log.Warn("could not interrupt the cell a previous run left running", "context_id", s.info.ID, "error", err)
		}
	}
	if err := k.Ready(ctx); err != nil {
		if !busy || m.watchCtx.Err() != nil {
			m.letGo(s, k)
			return false, err
		}
		// A cell that ignores interrupts: the context's next execution
		// waits for it, and restarts the kernel if its timeout runs out.
		m.log.Warn("taking over a kernel still busy with a cell of a previous run", "context_id", s.info.ID, "error", err)
	}
	if !s.adopted(k) {
		k.Close()
		return false, nil
	}
	return true, nil
}

// letGo closes k, the kernel of s that could not be taken over. On a
// sandbox's server, which goes on, it is shut down too: nobody would know
// of it. Not when the daemon detaches: its next run takes it over.
func (m *Manager) letGo(s *liveContext, k Kernel) {
	if s.sb == nil || m.watchCtx.Err() != nil {
		k.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.Shutdown(ctx); err != nil {
		m.log.Warn("could not shut down a kernel of a sandbox that could not be taken over", "context_id", s.info.ID, "sandbox_id", s.sb.id, "error", err)
	}
}

// discard removes inst, a container of a previous run that cannot be taken
// over, and s, its context if it was listed. The record goes only once the
// container is gone: with it the next start tries again.
func (m *Manager) discard(inst Instance, s *liveContext, reason error) {
	if s != nil {
		defer close(s.recovered)
		if _, listed := m.unlist(s); !listed {
			return // Close or Detach took it
		}
		m.admission.release()
	}
	m.log.Info("removing a container left by a previous run", "context_id", inst.ContextID, "instance", inst.ID, "reason", reason)
	// A fresh bound: the one that ran out taking it over must not fail this.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.rt.Remove(ctx, inst); err != nil {
		m.log.Error("could not remove a container left by a previous run; the next start tries again", "context_id", inst.ContextID, "instance", inst.ID, "error", err)
		return
	}
	m.store.Drop(inst.ContextID)
}

// recoveringSandbox lists inst's sandbox and its contexts, from its
// record, as being taken over, or says why it cannot be. The sandbox
// counts as one against MaxContexts.
func (m *Manager) recoveringSandbox(inst Instance) (*sandbox, error) {
	if !inst.Running {
		return nil, errors.New("not running")
	}
	rec, err := m.store.Load(inst.ContextID)
	if err != nil {
		return nil, fmt.Errorf("no record: %w", err)
	}
	lang, ok := m.language(rec.Language)
	if !ok || rec.Language == "" || !rec.Sandbox {
		return nil, fmt.Errorf("template %q is not served", rec.Language)
	}
	now := time.Now().UTC().Truncate(time.Second)
	b := &sandbox{
		id: rec.ID, lang: lang, inst: inst, token: rec.Token, stopped: make(chan struct{}),
		idleTimeout: rec.IdleTimeout, createdAt: rec.CreatedAt, recovered: make(chan struct{}),
		status: SandboxRecovering, lastActivity: now,
		contexts: map[string]*liveContext{}, defaults: maps.Clone(rec.Defaults),
	}
	if b.defaults == nil {
		b.defaults = map[string]string{}
	}
	for _, cr := range rec.Contexts {
		clang, ok := m.language(cr.Language)
		if !ok || cr.Language == "" {
			m.log.Warn("a context of a sandbox of a previous run has a language no longer served", "context_id", cr.ID, "sandbox_id", b.id, "language", cr.Language)
			continue
		}
		b.contexts[cr.ID] = &liveContext{
			info:         Info{ID: cr.ID, Type: "jupyter", Language: clang.Name, SessionName: cr.SessionName, WorkingDir: cr.WorkingDir, CreatedAt: cr.CreatedAt, SandboxID: b.id},
			lang:         clang,
			env:          cr.Env,
			token:        b.token,
			inst:         inst,
			sb:           b,
			kernelID:     cr.KernelID,
			turn:         make(chan struct{}, 1),
			stopped:      b.stopped,
			recovered:    make(chan struct{}),
			status:       StatusRecovering,
			lastActivity: now,
			booted:       time.Now(),
			hist:         m.newHistory(cr.ID),
		}
	}
	m.mu.Lock()
	if m.sandboxes[b.id] != nil {
		m.mu.Unlock()
		return nil, errHeld
	}
	m.sandboxes[b.id] = b
	for id, s := range b.contexts {
		m.contexts[id] = s
	}
	m.mu.Unlock()
	m.admission.add()
	m.metrics.active.Add(float64(len(b.contexts)))
	return b, nil
}

// adoptSandbox takes b's server and the kernels of its contexts over. A
// context whose kernel cannot be taken over goes alone; b goes only when
// its server does not answer.
func (m *Manager) adoptSandbox(b *sandbox) error {
	ctx, cancel := context.WithTimeout(m.watchCtx, recoverTimeout)
	err := m.kernels.Serve(ctx, m.dialer(b.inst), b.token, b.stopped)
	cancel()
	if err != nil {
		return err
	}
	b.mu.Lock()
	all := make([]*liveContext, 0, len(b.contexts))
	for _, s := range b.contexts {
		all = append(all, s)
	}
	b.mu.Unlock()
	// In parallel, each within its own recoverTimeout: a kernel busy with
	// a cell that ignores interrupts holds up no other.
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(s.recovered)
			ctx, cancel := context.WithTimeout(m.watchCtx, recoverTimeout)
			defer cancel()
			adopted, err := m.takeOver(ctx, s)
			if err != nil {
				m.log.Warn("removing a context of a sandbox whose kernel cannot be taken over", "context_id", s.info.ID, "sandbox_id", b.id, "error", err)
				m.dropRecovering(s)
			} else if adopted {
				m.log.Info("context taken over from a previous run", "context_id", s.info.ID, "sandbox_id", b.id)
			}
		}()
	}
	wg.Wait()
	b.mu.Lock()
	if b.status == SandboxRecovering {
		b.status = SandboxReady
	}
	b.mu.Unlock()
	if m.watchCtx.Err() == nil { // Detach lets go of it: nothing to watch
		m.watchSandbox(b)
	}
	m.saveSandbox(b)
	close(b.recovered)
	m.log.Info("sandbox taken over from a previous run", "sandbox_id", b.id, "instance", b.inst.ID)
	return nil
}

// dropRecovering unlists s, a context of a sandbox being taken over.
func (m *Manager) dropRecovering(s *liveContext) {
	s.sb.forget(s)
	if _, listed := m.unlist(s); listed { // else Close or Detach took it
		m.store.Drop(s.info.ID)
	}
}

// discardSandbox removes inst, a sandbox's container of a previous run
// that cannot be taken over, and b with its contexts if it was listed.
func (m *Manager) discardSandbox(inst Instance, b *sandbox, reason error) {
	if b != nil {
		defer close(b.recovered)
		m.mu.Lock()
		mine := m.sandboxes[b.id] == b
		if mine {
			delete(m.sandboxes, b.id)
		}
		m.mu.Unlock()
		b.mu.Lock()
		all := make([]*liveContext, 0, len(b.contexts))
		for _, s := range b.contexts {
			all = append(all, s)
		}
		if mine {
			b.status = SandboxStopped
		}
		b.mu.Unlock()
		for _, s := range all {
			m.dropRecovering(s)
			close(s.recovered)
		}
		if !mine {
			return // Close or Detach took it
		}
		m.admission.release()
	}
	m.discard(inst, nil, reason)
}
