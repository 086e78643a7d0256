package contexts

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/kernel"
)

// Status is a context's state. It moves so:
//
//	recovering → active          taken over after a restart of the daemon
//	active → busy → active       an execution
//	any → restarting → active    a kernel restart, until it is prepared again
//	any → dead                   its container stopped: dead is final
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
	// SandboxID names the sandbox whose container the context's kernel
	// runs in; "" for a context with a container of its own.
	SandboxID string
}

// liveContext is one live context: a kernel, in its own container or in a
// sandbox's.
type liveContext struct {
	info   Info // the fields that never change
	lang   Language
	env    map[string]string
	inst   Instance
	token  string // its Jupyter server's
	kernel Kernel
	// kernelID is the kernel's id on its server, kept across restarts of
	// the daemon to find it again among the sandbox's others.
	kernelID string
	// sb is the sandbox whose container it shares; nil when the container
	// is its own. inst, token and stopped are then the sandbox's.
	sb   *sandbox
	hist *history // set before the context is listed
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

func (s *liveContext) snapshot() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.info
	i.Status = s.status
	i.LastActivity = s.lastActivity
	i.ExecutionCount = s.executions
	i.Restarts = s.restarts
	return i
}

// to moves s to st, unless s is dead: a context whose container stopped
// stays dead, whatever its kernel connection reports after. Every change
// of status but the first goes through it. The caller holds s.mu.
func (s *liveContext) to(st Status) {
	if s.status != StatusDead {
		s.status = st
	}
}

// busy records that an execution started.
func (s *liveContext) busy() {
	s.mu.Lock()
	s.to(StatusBusy)
	s.mu.Unlock()
}

// executed records that an execution ended: it is activity, and a busy
// context is active again. One whose kernel restarted meanwhile stays
// restarting until it is prepared.
func (s *liveContext) executed() {
	s.mu.Lock()
	if s.status == StatusBusy {
		s.to(StatusActive)
	}
	s.lastActivity = time.Now().UTC()
	s.executions++
	s.mu.Unlock()
}

// kernelRestarted records a restart: the kernel lost its state and needs
// preparing again.
func (s *liveContext) kernelRestarted() {
	s.mu.Lock()
	s.restarts++
	s.unprepared = true
	s.to(StatusRestarting)
	s.mu.Unlock()
}

// died records that s's container is no longer running, and reports
// whether s had been removed, which stops it on purpose. Whoever watches
// the container closes stopped.
func (s *liveContext) died() (removed bool) {
	s.mu.Lock()
	removed = s.removed
	s.to(StatusDead)
	s.mu.Unlock()
	return removed
}

// adopted makes s, taken over from a previous run, active with k as its
// kernel; false when s was removed meanwhile.
func (s *liveContext) adopted(k Kernel) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return false
	}
	s.kernel = k
	s.to(StatusActive)
	return true
}

// markRemoved records that s is being removed, so that its end is expected
// and no execution waiting for its turn runs, and returns its kernel: nil
// while it is being taken over, since adopted sets it under s.mu.
func (s *liveContext) markRemoved() Kernel {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removed = true
	return s.kernel
}

// watch marks s dead when its instance stops.
func (m *Manager) watch(s *liveContext) {
	m.rt.Watch(s.inst, func(exit string) { m.markDead(s, exit) })
}

// markDead records that s's container is no longer running.
func (m *Manager) markDead(s *liveContext, exit string) {
	removed := s.died()
	close(s.stopped)
	if !removed {
		m.log.Warn("context container stopped", "context_id", s.info.ID, "instance", s.inst.ID, "exit", exit)
	}
}

// takeTurn waits until s is free, in arrival order, and returns the function
// that frees it again.
func (s *liveContext) takeTurn(ctx context.Context) (release func(), err error) {
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

// prepare gives the kernel its working dir and env, when a restart took
// them. The caller holds the turn.
func (s *liveContext) prepare(ctx context.Context) error {
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
		s.to(StatusActive)
	}
	s.mu.Unlock()
	return nil
}

// run executes sandboxd's own code silently and fails if it did not succeed.
func (s *liveContext) run(ctx context.Context, code string) error {
	res, err := s.kernel.Execute(ctx, kernel.Request{Code: code, Timeout: 30 * time.Second, Silent: true})
	if err != nil {
		return err
	}
	if res.Error != nil || res.Status != "ok" {
		return fmt.Errorf("set-up code failed: %s", strings.TrimSpace(res.Stderr))
	}
	return nil
}
