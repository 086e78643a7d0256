package contexts

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/bound"
	"github.com/sandboxd/sandboxd/internal/fileproto"
)

// CommandRequest asks to run a shell command in a context. A zero Timeout
// takes the default, any other is one Timeout accepts; an empty Cwd is the
// working dir.
type CommandRequest struct {
	Command string
	Timeout time.Duration
	// Env is added to the context's own env for this command. Its names
	// are ones ValidateEnv accepts.
	Env map[string]string
	// Cwd is relative to the working dir, or absolute in it.
	Cwd string
	// OnOutput, when set, receives output as it arrives: stream is stdout
	// or stderr, text what of it was kept under the cap, in whole runes.
	// It is called from one goroutine and must not block.
	OnOutput func(stream, text string)
}

// CommandResult is the outcome of a CommandRequest.
type CommandResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
	Duration time.Duration
	// Truncated is true when stdout or stderr went past the output cap.
	Truncated bool
	// TimedOut is true when the timeout stopped the command: its exit code
	// is then 124 (it ended on SIGTERM) or 137 (it had to be killed).
	TimedOut bool
}

// Exit codes of coreutils' timeout when it stopped the command, and how
// long it waits after SIGTERM before it sends SIGKILL.
const (
	exitTimedOut   = 124
	exitKilled     = 128 + 9
	commandKillAge = 2 * time.Second
)

// RunCommand runs req.Command with bash in the context's container, as
// its user, under the container's limits, beside the kernel: commands do
// not wait for executions, nor executions for commands. The timeout is
// enforced in the container with coreutils' timeout, which signals the
// command's whole process group, so nothing it started outlives it; the
// daemon stops waiting a little later in case even that fails. Errors:
// CodeNotFound, CodeContextDead, CodeInvalidPath, CodeFileNotFound,
// CodeRuntimeUnavailable, and ctx's error.
func (m *Manager) RunCommand(ctx context.Context, id string, req CommandRequest) (CommandResult, error) {
	timeout := m.timeout(req.Timeout)
	s, err := m.running(id)
	if err != nil {
		return CommandResult{}, err
	}
	defer s.done()
	workDir := s.workDir
	cwd, err := cleanCwd(req.Cwd, workDir)
	if err != nil {
		return CommandResult{}, err
	}
	env := s.env()
	maps.Copy(env, req.Env)

	out := newCommandOutput(m.cfg.MaxOutput, req.OnOutput)
	cmd := fileproto.Command(fileproto.OpRun, workDir, cwd,
		"timeout", "--kill-after="+seconds(commandKillAge), seconds(timeout), "bash", "-c", req.Command)
	// The daemon's own deadline, for a container too stuck to kill.
	dctx, cancel := context.WithTimeout(ctx, timeout+commandKillAge+5*time.Second)
	defer cancel()
	// Histories and their events are of contexts: a command run through a
	// sandbox's id is in none.
	if s.ctx != nil {
		m.events.publish(Event{Type: EventExecutionStarted, ContextID: id, Kind: KindCommand, Command: req.Command})
	}
	start := time.Now()
	code, err := m.rt.Exec(dctx, s.inst, ExecSpec{Cmd: cmd, Env: envList(env), User: ContextUser, Stdout: out.stdoutWriter(), Stderr: out.stderrWriter()})
	took := time.Since(start)
	out.close()
	// Every command that started is recorded, those that failed to run too.
	entry := Entry{Kind: KindCommand, StartedAt: start.UTC(), Duration: took, Command: req.Command, ExitCode: code,
		Stdout: out.stdout.String(), Stderr: out.stderr.String(), Truncated: out.stdout.Truncated() || out.stderr.Truncated()}
	defer func() {
		if s.ctx != nil {
			m.record(s.ctx, entry)
		}
	}()
	if err != nil {
		entry.ExitCode = exitKilled
		// Exec has killed the command: the client went away, or the
		// daemon's deadline passed.
		if ctx.Err() != nil || dctx.Err() == nil {
			return CommandResult{}, err
		}
		m.log.Warn("a command outlived its timeout", "context_id", id, "timeout", timeout, "error", err)
		code = exitKilled
	} else if !out.started() {
		// The command never ran: cwd did not pass.
		err := fileError(code, cwd, out.early)
		entry.Stderr = err.Error()
		return CommandResult{}, err
	}
	res := CommandResult{
		Stdout:    out.stdout.String(),
		Stderr:    out.stderr.String(),
		ExitCode:  code,
		Duration:  took,
		Truncated: out.stdout.Truncated() || out.stderr.Truncated(),
		TimedOut:  (code == exitTimedOut || code == exitKilled) && took >= timeout,
	}
	entry.Success, entry.ExitCode = code == 0, code
	return res, nil
}

// seconds formats d for coreutils' timeout: 2.5s.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// envList turns env into NAME=value pairs, sorted for stable commands.
func envList(env map[string]string) []string {
	list := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		list = append(list, k+"="+env[k])
	}
	return list
}

// commandOutput collects a command's stdout and stderr. The file
// protocol's run writes a NUL to stdout once cwd has passed its checks,
// just before the command starts: what stderr holds before it is the
// protocol's complaint, unless the NUL comes after all (the engine does not
// keep the order of the two streams), in which case it is the command's.
type commandOutput struct {
	mu             sync.Mutex
	stdout, stderr *bound.Text
	early          *bound.Buffer // stderr before the NUL
	marked         bool
}

func newCommandOutput(limit int, onOutput func(stream, text string)) *commandOutput {
	emit := func(stream string) func(string) {
		if onOutput == nil {
			return nil
		}
		return func(text string) { onOutput(stream, text) }
	}
	return &commandOutput{
		stdout: bound.NewText(bound.NewBudget(limit), emit("stdout")),
		stderr: bound.NewText(bound.NewBudget(limit), emit("stderr")),
		early:  bound.NewBuffer(max(limit, 64<<10)),
	}
}

func (o *commandOutput) started() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.marked
}

func (o *commandOutput) stdoutWriter() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		n := len(p)
		if !o.marked {
			if len(p) == 0 {
				return 0, nil
			}
			if p[0] != 0 {
				return 0, errors.New("command output did not start with its mark")
			}
			o.marked = true
			p = p[1:]
			if early := o.early.String(); early != "" {
				o.stderr.Write([]byte(early))
			}
		}
		o.stdout.Write(p)
		return n, nil
	})
}

func (o *commandOutput) stderrWriter() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if !o.marked {
			return o.early.Write(p)
		}
		return o.stderr.Write(p)
	})
}

func (o *commandOutput) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stdout.Close()
	o.stderr.Close()
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
