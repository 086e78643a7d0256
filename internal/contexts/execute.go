package contexts

import (
	"context"
	"time"

	"github.com/sandboxd/sandboxd/internal/kernel"
)

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

	s.busy()
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
	s.executed()

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
