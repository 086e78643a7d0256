package contexts

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// record is what the store keeps of s.
func (s *sandbox) record() Record {
	return Record{
		ID: s.info.ID, Language: s.info.Language, SessionName: s.info.SessionName, WorkingDir: s.info.WorkingDir,
		Env: s.env, Network: s.info.Network, CreatedAt: s.info.CreatedAt, Token: s.token,
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
		seen[inst.ContextID] = true
		s, err := m.recovering(inst)
		m.watchers.Add(1)
		go func() {
			defer m.watchers.Done()
			if err == nil {
				if err = m.adopt(s); err == nil {
					close(s.recovered)
					return
				}
			}
			m.discard(inst, s, err)
		}()
	}
	m.store.Prune(func(id string) bool { return seen[id] })
	return nil
}

// recovering lists inst's context, from its record, as one being taken
// over, or says why it cannot be. It counts against MaxContexts.
func (m *Manager) recovering(inst Instance) (*sandbox, error) {
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
	s := &sandbox{
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
	m.contexts[s.info.ID] = s
	m.mu.Unlock()
	m.admission.add()
	m.metrics.active.Inc()
	return s, nil
}

// adopt connects to s's kernel and makes s active, or says why it cannot.
func (m *Manager) adopt(s *sandbox) error {
	ctx, cancel := context.WithTimeout(m.watchCtx, recoverTimeout)
	defer cancel()
	if s.info.Network {
		// The proxy is the daemon's: the one the previous run served is gone.
		if _, err := m.rt.OpenEgress(ctx, s.inst); err != nil {
			return fmt.Errorf("egress: %w", err)
		}
	}
	if err := s.hist.load(); err != nil {
		// Its kernel and variables are worth more than its past.
		m.log.Warn("the context's history is lost", "context_id", s.info.ID, "error", err)
	}
	k, busy, err := m.kernels.Find(ctx, m.dialer(s.inst), s.token, m.kernelOptions(s))
	if err != nil {
		return err
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
			k.Close()
			return err
		}
		// A cell that ignores interrupts: the context's next execution
		// waits for it, and restarts the kernel if its timeout runs out.
		m.log.Warn("taking over a kernel still busy with a cell of a previous run", "context_id", s.info.ID, "error", err)
	}
	if !s.adopted(k) {
		// Close or Detach took it meanwhile.
		k.Close()
		return nil
	}
	m.watch(s)
	m.log.Info("context taken over from a previous run", "context_id", s.info.ID, "instance", s.inst.ID, "was_busy", busy)
	return nil
}

// discard removes inst, a container of a previous run that cannot be taken
// over, and s, its context if it was listed. The record goes only once the
// container is gone: with it the next start tries again.
func (m *Manager) discard(inst Instance, s *sandbox, reason error) {
	if s != nil {
		defer close(s.recovered)
		m.mu.Lock()
		mine := m.contexts[s.info.ID] == s
		if mine {
			delete(m.contexts, s.info.ID)
		}
		m.mu.Unlock()
		if !mine {
			return // Close or Detach took it
		}
		m.admission.release()
		m.metrics.active.Dec()
		s.markRemoved()
		// It was listed: whoever watches the contexts sees it go.
		m.events.publish(Event{Type: EventContextDeleted, ContextID: s.info.ID})
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
