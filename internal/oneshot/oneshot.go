// Package oneshot runs code once, statelessly, for the code executors of
// RAGFlow and Dify: each run is a fresh interpreter process in a warm
// "runner" container, which is made clean again after the answer goes
// out, or removed.
//
// A runner is a container of a language's kernel image that runs no
// Jupyter server: its first process is spawner.py, which code can neither
// signal (it is PID 1) nor trace nor read (it is not dumpable). A run is
// runner.sh, started by the spawner over the runner's socket, or by an
// exec where the transport has no socket (exec): it starts the
// interpreter in /workspace with the code on stdin under a timeout, kills
// every process of the user (kill -1: the detached ones too), sends the
// result and the artifacts, then wipes every writable place and checks
// that no file, process or IPC object is left and that the writable
// places have the modes of a fresh runner. Over the socket, the spawner
// does the wipe and the checks itself, and ends the stream with its
// verdict, which code cannot forge; over exec, the driver's exit status
// stands for it. For Python, the spawner of a runner found clean starts
// the next run's interpreter at once, which waits for the run; the
// spawner then times the program, and runner.sh only reports.
//
// Over the socket, the answer goes out once the report is in, before the
// cleanup; over exec, once the driver has exited. Either way only a runner
// found clean is used again, and a run waits for one; any other is removed
// and replaced in the background.
package oneshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/internal/bound"
	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Error codes of runs that could not be made.
const (
	// CodeBusy says every runner of the language stayed busy for the wait.
	CodeBusy = "RUNNERS_BUSY"
	// CodeRunnerFailed says the run's runner failed it (not its code): it
	// was removed, and the run may be retried.
	CodeRunnerFailed = "RUNNER_FAILED"
)

// roleRunner marks a runner's container (contexts.LabelRole), so that a
// daemon's next run removes it rather than take it for a context's.
const roleRunner = "one-shot runner"

// Limits bound what one run sends back.
type Limits struct {
	MaxOutput        int // bytes of stdout, and of stderr
	MaxArtifacts     int // artifacts per run
	MaxArtifactBytes int // bytes of one artifact
	MaxResultBytes   int // bytes of main's value, as JSON
}

// Config says how runs are run.
type Config struct {
	Runtime contexts.Runtime
	// Languages are those whose images runners are made of; those without
	// an interpreter here (R, bash) are left out.
	Languages []contexts.Language
	// Sizes is how many runners to keep per language name; a language
	// left out or at 0 is not served.
	Sizes  map[string]int
	Limits Limits
	// Wait bounds how long a run waits for a free runner.
	Wait time.Duration
	Log  *slog.Logger
}

// Request is code to run once.
type Request struct {
	Language string // a language name: python, javascript
	Code     string
	// Preload runs first, in the same namespace (Dify's preload).
	Preload string
	// Main, when set, calls main(**Arguments) (Python) or main(Arguments)
	// (JavaScript, which may be async) after the code, and returns its
	// value; otherwise the code runs as a script.
	Main      bool
	Arguments map[string]any
	Timeout   time.Duration
}

// Value is what main returned.
type Value struct {
	Present bool            `json:"present"`
	Value   json.RawMessage `json:"value"`
	Type    string          `json:"type"`
}

// Artifact is a file the code left in artifacts/ or its working dir.
type Artifact struct {
	Name     string
	MIMEType string
	Size     int
	Content  []byte
}

// Result is how a run ended.
type Result struct {
	Stdout, Stderr string
	// Truncated says stdout or stderr was cut at Limits.MaxOutput.
	Truncated bool
	// ExitCode is the program's: 124 when it timed out.
	ExitCode int
	TimedOut bool
	// Killed says SIGKILL ended it before its timeout: out of memory.
	Killed    bool
	Elapsed   time.Duration
	MaxRSSKB  int64
	Value     *Value // nil when main did not return
	Artifacts []Artifact
	// Skipped says which artifacts were not sent, and why.
	Skipped []string
}

// Runners keeps the pools of runners and runs requests on them.
type Runners struct {
	cfg   Config
	pools map[string]*pool
	log   *slog.Logger
}

// New checks cfg and makes the pools; Start fills them.
func New(cfg Config) (*Runners, error) {
	r := &Runners{cfg: cfg, pools: map[string]*pool{}, log: cfg.Log}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for name, size := range cfg.Sizes {
		if size <= 0 {
			continue
		}
		program, ok := interpreters[name]
		if !ok {
			return nil, fmt.Errorf("no one-shot runner for language %q (there are: %s)", name, strings.Join(slices.Sorted(maps.Keys(interpreters)), ", "))
		}
		i := slices.IndexFunc(cfg.Languages, func(l contexts.Language) bool { return l.Name == name })
		if i < 0 {
			r.log.Info("no one-shot runners for a language this daemon does not serve", "language", name)
			continue
		}
		r.pools[name] = newPool(r, cfg.Languages[i], program, prestarted[name], size)
	}
	return r, nil
}

// Any reports whether runs of any language are served.
func (r *Runners) Any() bool { return len(r.pools) > 0 }

// Start fills the pools in the background. Call it after the containers a
// previous run of the daemon left are removed.
func (r *Runners) Start() {
	for _, p := range r.pools {
		p.start()
	}
}

// Close removes every runner. Runs still going fail.
func (r *Runners) Close() error {
	var errs []error
	for _, p := range r.pools {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}

// Run runs req on a free runner, waiting for one up to Config.Wait.
// Errors: CodeUnsupportedLanguage, CodeBusy, CodeRunnerFailed, and the
// runtime's when no runner can be made.
func (r *Runners) Run(ctx context.Context, req Request) (Result, error) {
	p := r.pools[req.Language]
	if p == nil {
		return Result{}, contexts.Errorf(contexts.CodeUnsupportedLanguage, "one-shot runs of %q are not served (served: %s)", req.Language, strings.Join(r.served(), ", "))
	}
	payload, err := json.Marshal(map[string]any{"code": req.Code, "preload": req.Preload, "mode": map[bool]string{true: "main", false: "script"}[req.Main], "arguments": req.Arguments})
	if err != nil {
		return Result{}, contexts.Errorf(contexts.CodeInvalid, "arguments: %v", err)
	}
	rn, err := p.take(ctx)
	if err != nil {
		return Result{}, err
	}
	// The run goes on if the client goes away, so that the runner is
	// cleaned up and used again rather than removed mid-run.
	res, cleaned, err := p.run(context.WithoutCancel(ctx), rn, req.Timeout, payload)
	if err != nil {
		p.discard(rn, err)
		return Result{}, &contexts.Error{Code: CodeRunnerFailed, Message: "the runner failed the run; retry it", Err: err}
	}
	// The answer goes out while the runner is cleaned up; only a runner
	// found clean is used again. One that is not goes, but the run's
	// answer stands.
	go func() {
		if unfit := <-cleaned; unfit != nil {
			p.discard(rn, unfit)
		} else {
			p.put(rn)
		}
	}()
	return res, nil
}

func (r *Runners) served() []string {
	var names []string
	for name := range r.pools {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// runner is a container runs are made in.
type runner struct {
	inst  contexts.Instance
	modes string // of its writable places when it was made
	// spawned says runs are started by its spawner, over a unix socket;
	// otherwise by an exec.
	spawned bool
	// prestarted says its spawner has started the next run's program,
	// which waits for the run.
	prestarted bool
}

// grace is how long past its timeout a run may take to report and clean
// up; a run past it is a runner gone wrong.
const grace = 15 * time.Second

// run runs the request payload, as runner.py and runner.js read it, in
// rn, and returns its result as soon as it is in: over the spawner, before
// the cleanup. cleaned then says how the cleanup went: nil when rn is fit
// for another run. An error means the run failed, and rn is not fit.
func (p *pool) run(ctx context.Context, rn *runner, timeout time.Duration, payload []byte) (res Result, cleaned <-chan error, err error) {
	limits := p.r.cfg.Limits
	nonce := newNonce()
	stdout := bound.NewText(bound.NewBudget(limits.MaxOutput), nil)
	stderr := bound.NewText(bound.NewBudget(limits.MaxOutput), nil)
	split := &splitter{marker: []byte(nonce + "\n"), user: stdout, max: limits.MaxResultBytes + limits.MaxArtifacts*limits.MaxArtifactBytes + 1<<20}
	ctx, cancel := context.WithTimeout(ctx, timeout+grace)
	stdin := nonce + "\n" + string(payload)
	type outcome struct {
		verdict string
		err     error
	}
	finished := make(chan outcome, 1)
	stderrDone := make(chan struct{})
	if rn.spawned {
		split.answered = make(chan struct{})
		head := map[string]any{"argv": command(timeout, limits, false, p.program)}
		if rn.prestarted {
			head = map[string]any{"argv": afterCommand(limits), "prestarted": true, "timeout": timeout.Seconds()}
		}
		go func() {
			verdict, err := p.spawn(ctx, rn, head, stdin, split, stderr, stderrDone)
			finished <- outcome{verdict, err}
		}()
	} else {
		close(stderrDone)
		go func() {
			code, err := p.r.cfg.Runtime.Exec(ctx, rn.inst, contexts.ExecSpec{Cmd: command(timeout, limits, true, p.program), User: contexts.ContextUser, Stdin: strings.NewReader(stdin), Stdout: split, Stderr: stderr})
			if err == nil && code != 0 {
				err = fmt.Errorf("the runner's driver exited with %d: %s", code, bound.Prefix(stderr.String(), 200))
			}
			finished <- outcome{err: err}
		}()
	}
	// Over the spawner, the answer is in once the report says so and the
	// program's stderr has ended; over exec, once the driver has exited.
	var o outcome
	over := false
	select {
	case <-split.answered:
		<-stderrDone
	case o = <-finished:
		over = true
	}
	answer := split.answer
	if over {
		split.finish()
		switch {
		case o.err != nil:
		case !split.found:
			o.err = errors.New("the runner sent no report")
		case split.tooBig:
			o.err = errors.New("the runner's report is too large")
		}
		if o.err != nil {
			cancel()
			return Result{}, nil, o.err
		}
		answer = split.report
	}
	stdout.Close()
	stderr.Close()
	res, err = p.result(answer, nonce, timeout, stdout, stderr)
	if err != nil {
		cancel()
		return Result{}, nil, err
	}
	done := make(chan error, 1)
	if over {
		done <- p.checkCleanup(rn, split, nonce, o.verdict)
		cancel()
	} else {
		go func() {
			defer cancel()
			o := <-finished
			if o.err != nil {
				done <- fmt.Errorf("after the answer: %w", o.err)
				return
			}
			done <- p.checkCleanup(rn, split, nonce, o.verdict)
		}()
	}
	return res, done, nil
}

// result reads the run's result from the driver's answer.
func (p *pool) result(answer []byte, nonce string, timeout time.Duration, stdout, stderr *bound.Text) (Result, error) {
	limits := p.r.cfg.Limits
	rep, _, err := parseAnswer(answer, nonce)
	if err != nil {
		return Result{}, err
	}
	res := Result{
		Stdout: stdout.String(), Stderr: stderr.String(), Truncated: stdout.Truncated() || stderr.Truncated(),
		ExitCode: rep.exitCode, Elapsed: rep.elapsed, Artifacts: rep.artifacts, Skipped: rep.skipped,
	}
	res.TimedOut = rep.exitCode == exitTimedOut || rep.exitCode == exitKilled && rep.elapsed >= timeout
	res.Killed = rep.exitCode == exitKilled && !res.TimedOut
	var program struct {
		Result   *Value `json:"result"`
		MaxRSSKB int64  `json:"max_rss_kb"`
	}
	switch {
	case len(rep.program) > limits.MaxResultBytes:
		res.Skipped = append(res.Skipped, fmt.Sprintf("result_too_large over %d bytes", limits.MaxResultBytes))
	case len(rep.program) > 0 && json.Unmarshal(rep.program, &program) == nil:
		res.Value, res.MaxRSSKB = program.Result, program.MaxRSSKB
	}
	if res.ExitCode != 0 {
		res.Value = nil
	}
	return res, nil
}

// checkCleanup reads the whole report, once the stream has ended, and
// says whether the cleanup left rn fit for another run: nil when it did.
func (p *pool) checkCleanup(rn *runner, split *splitter, nonce, verdict string) error {
	if split.tooBig {
		return errors.New("the runner's report is too large")
	}
	report := split.report
	if rn.spawned {
		// The spawner's verdict ends the stream; nothing but it may.
		i := bytes.LastIndex(report, []byte(verdict+" "))
		if i < 0 || !bytes.HasSuffix(report, []byte("\n")) || bytes.IndexByte(report[i:len(report)-1], '\n') >= 0 {
			return errors.New("the spawner gave no verdict")
		}
		if v := string(report[i+len(verdict)+1 : len(report)-1]); v != "ok" {
			return errors.New("the spawner found the runner " + bound.Prefix(v, 300))
		}
		report = report[:i]
	}
	rep, err := parseReport(report, nonce)
	switch {
	case err != nil:
		return err
	case len(rep.dirty) > 0:
		return fmt.Errorf("the cleanup left: %s", strings.Join(rep.dirty, "; "))
	case rn.modes != "" && rep.modes != rn.modes:
		return fmt.Errorf("the writable places' modes changed from %q to %q", rn.modes, rep.modes)
	}
	if rn.modes == "" {
		rn.modes = rep.modes
	}
	// A spawner that found the runner clean has started the next run's
	// program, when the language has one.
	rn.prestarted = rn.spawned && p.prestart != nil
	return nil
}

func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "sandboxd-" + hex.EncodeToString(b)
}

// waitSpawner waits for rn's spawner to listen, and reports whether runs
// can be started through it: they can when the runtime reaches it over a
// unix socket, which carries the file descriptor of the run's stderr.
// Through any other connection (the exec transport's relay), runs are
// execs.
func (p *pool) waitSpawner(ctx context.Context, rn *runner) (bool, error) {
	for {
		conn, err := p.r.cfg.Runtime.Dial(ctx, rn.inst)
		if err == nil {
			_, ok := conn.(*net.UnixConn)
			conn.Close()
			return ok, nil
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return false, fmt.Errorf("the runner's spawner does not listen: %w", err)
		}
	}
}

// spawn has rn's spawner run cmd, with stdin, and copies its output. It
// returns the nonce that starts the spawner's verdict, the last line of
// stdout.
func (p *pool) spawn(ctx context.Context, rn *runner, head map[string]any, stdin string, stdout, stderr io.Writer, stderrDone chan<- struct{}) (string, error) {
	copying := false
	defer func() {
		if !copying {
			close(stderrDone)
		}
	}()
	conn, err := p.r.cfg.Runtime.Dial(ctx, rn.inst)
	if err != nil {
		return "", err
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return "", errors.New("the runner's spawner is not reached over a unix socket")
	}
	defer uc.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer errR.Close()
	verdict := newNonce()
	head["nonce"] = verdict
	header, err := json.Marshal(head)
	if err != nil {
		errW.Close()
		return "", err
	}
	_, _, err = uc.WriteMsgUnix(binary.BigEndian.AppendUint32(nil, uint32(len(header))), syscall.UnixRights(int(errW.Fd())), nil)
	errW.Close()
	if err != nil {
		return "", fmt.Errorf("send to the spawner: %w", err)
	}
	stop := context.AfterFunc(ctx, func() {
		uc.Close()
		errR.Close()
	})
	defer stop()
	go func() {
		// A command that does not read all of its input makes this fail;
		// what it prints says the rest.
		if _, err := uc.Write(append(header, stdin...)); err == nil {
			uc.CloseWrite()
		}
	}()
	copied := make(chan struct{})
	copying = true
	go func() {
		defer close(copied)
		io.Copy(stderr, errR)
		close(stderrDone)
	}()
	_, err = io.Copy(stdout, uc)
	<-copied
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	return verdict, err
}
