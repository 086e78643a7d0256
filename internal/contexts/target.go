package contexts

import (
	"maps"
	"time"
)

// target is where files and commands act: a container, and the working
// dir their paths are relative to.
type target struct {
	id      string
	inst    Instance
	workDir string
	ctx     *liveContext // nil when id names a sandbox
	sb      *sandbox     // nil for a context with a container of its own
}

// running resolves id, a sandbox's or a context's, to the container files
// and commands act on: a context in a sandbox acts on the sandbox's. It
// fails unless the container can run processes, and counts the call as
// activity, so that what is used only through files and commands is not
// culled as idle. It is the one place that says what an id's files are.
func (m *Manager) running(id string) (*target, error) {
	if b, err := m.getSandbox(id); err == nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		if err := b.usable(); err != nil {
			return nil, err
		}
		b.lastActivity = time.Now().UTC()
		b.inFlight++
		return &target{id: id, inst: b.inst, workDir: DefaultWorkingDir, sb: b}, nil
	}
	// A context shares its sandbox's state: they die together, and a
	// stopped sandbox's contexts are gone.
	s, err := m.get(id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	switch {
	case s.removed:
		err = Errorf(CodeNotFound, "Context not found")
	case s.status == StatusDead:
		err = Errorf(CodeContextDead, "the context's container has stopped; delete it and create a new one")
	case s.status == StatusRecovering:
		err = ErrRecovering
	default:
		s.lastActivity = time.Now().UTC()
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if s.sb != nil { // b.mu is not taken under s.mu: activity takes them the other way
		s.sb.mu.Lock()
		s.sb.inFlight++
		s.sb.mu.Unlock()
	}
	return &target{id: id, inst: s.inst, workDir: s.info.WorkingDir, ctx: s, sb: s.sb}, nil
}

// done ends the use of t that running began: it records activity on t,
// and the sandbox may be culled again.
func (t *target) done() {
	if t.ctx != nil {
		t.ctx.touch()
	}
	if t.sb != nil {
		t.sb.mu.Lock()
		t.sb.inFlight--
		if t.ctx == nil {
			t.sb.lastActivity = time.Now().UTC()
		}
		t.sb.mu.Unlock()
	}
}

// env is what t's commands run with: its context's env.
func (t *target) env() map[string]string {
	if t.ctx == nil {
		return map[string]string{}
	}
	t.ctx.mu.Lock()
	defer t.ctx.mu.Unlock()
	return maps.Clone(t.ctx.env)
}

// touch records activity on s.
func (s *liveContext) touch() {
	s.mu.Lock()
	s.lastActivity = time.Now().UTC()
	s.mu.Unlock()
}
