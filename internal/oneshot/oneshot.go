// Package oneshot runs code once, statelessly, for the code executors of
// RAGFlow and Dify: each run is a fresh interpreter process in a warm
// "runner" container, and the runner is made clean again before the answer
// goes out, or removed.
//
// A runner is a container of a language's kernel image that runs no
// Jupyter server: its first process (the keeper) only sleeps, as root
// without capabilities, so that code, which runs as the context user, can
// neither signal nor trace it. Each run is one exec of runner.sh as the
// context user: it starts the interpreter in /workspace with the code on
// stdin under a timeout, kills every process the user has (kill -1: the
// detached ones too), sends the result and the artifacts, wipes every
// writable place, and checks that no file, process or IPC object is left
// and that the writable places have the modes of a fresh runner. Only a
// runner whose report says so is used again; any other is removed and
// replaced in the background.
package oneshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

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

// keeper is a runner's first process. As PID 1 it reaps what it inherits.
var keeper = []string{"sh", "-c", "while :; do sleep 2147483647; done"}

// keeperUser is the keeper's: not the context user, so that code cannot
// signal it, nor trace it, nor write its memory.
const keeperUser = "0:0"

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
		r.pools[name] = newPool(r, cfg.Languages[i], program, size)
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
	rn, err := p.take(ctx)
	if err != nil {
		return Result{}, err
	}
	// The run goes on if the client goes away, so that the runner is
	// cleaned up and used again rather than removed mid-run.
	res, unfit, err := p.run(context.WithoutCancel(ctx), rn, req)
	switch {
	case err != nil:
		p.discard(rn, err)
		return Result{}, &contexts.Error{Code: CodeRunnerFailed, Message: "the runner failed the run; retry it", Err: err}
	case unfit != nil:
		// The run went well, but left what the cleanup cannot undo.
		p.discard(rn, unfit)
	default:
		p.put(rn)
	}
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
}

// grace is how long past its timeout a run may take to report and clean
// up; a run past it is a runner gone wrong.
const grace = 15 * time.Second

// run runs req in rn. An error means the run failed; unfit, that it went
// well but rn is not clean: either way rn is not fit for another run.
func (p *pool) run(ctx context.Context, rn *runner, req Request) (res Result, unfit, err error) {
	limits := p.r.cfg.Limits
	nonce := newNonce()
	payload, err := json.Marshal(map[string]any{"code": req.Code, "preload": req.Preload, "mode": map[bool]string{true: "main", false: "script"}[req.Main], "arguments": req.Arguments})
	if err != nil {
		return Result{}, nil, contexts.Errorf(contexts.CodeInvalid, "arguments: %v", err)
	}
	stdout := bound.NewText(bound.NewBudget(limits.MaxOutput), nil)
	stderr := bound.NewText(bound.NewBudget(limits.MaxOutput), nil)
	split := &splitter{marker: []byte(nonce + "\n"), user: stdout, max: limits.MaxResultBytes + limits.MaxArtifacts*limits.MaxArtifactBytes + 1<<20}
	ctx, cancel := context.WithTimeout(ctx, req.Timeout+grace)
	defer cancel()
	code, err := p.r.cfg.Runtime.Exec(ctx, rn.inst, contexts.ExecSpec{
		Cmd:    command(req.Timeout, limits, p.program),
		User:   contexts.ContextUser,
		Stdin:  strings.NewReader(nonce + "\n" + string(payload)),
		Stdout: split,
		Stderr: stderr,
	})
	split.finish()
	stdout.Close()
	stderr.Close()
	switch {
	case err != nil:
		return Result{}, nil, err
	case code != 0:
		return Result{}, nil, fmt.Errorf("the runner's driver exited with %d: %s", code, bound.Prefix(stderr.String(), 200))
	case !split.found:
		return Result{}, nil, errors.New("the runner sent no report")
	case split.tooBig:
		return Result{}, nil, errors.New("the runner's report is too large")
	}
	rep, err := parseReport(split.report, nonce)
	if err != nil {
		return Result{}, nil, err
	}
	switch {
	case len(rep.dirty) > 0:
		unfit = fmt.Errorf("the cleanup left: %s", strings.Join(rep.dirty, "; "))
	case rn.modes != "" && rep.modes != rn.modes:
		unfit = fmt.Errorf("the writable places' modes changed from %q to %q", rn.modes, rep.modes)
	}
	if rn.modes == "" {
		rn.modes = rep.modes
	}
	res = Result{
		Stdout: stdout.String(), Stderr: stderr.String(), Truncated: stdout.Truncated() || stderr.Truncated(),
		ExitCode: rep.exitCode, Elapsed: rep.elapsed, Artifacts: rep.artifacts, Skipped: rep.skipped,
	}
	res.TimedOut = rep.exitCode == exitTimedOut || rep.exitCode == exitKilled && rep.elapsed >= req.Timeout
	res.Killed = rep.exitCode == exitKilled && !res.TimedOut
	var program struct {
		Result   *Value `json:"result"`
		MaxRSSKB int64  `json:"max_rss_kb"`
	}
	if len(rep.program) > 0 && json.Unmarshal(rep.program, &program) == nil {
		res.Value, res.MaxRSSKB = program.Result, program.MaxRSSKB
	}
	if res.ExitCode != 0 {
		res.Value = nil
	}
	return res, unfit, nil
}

func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "sandboxd-" + hex.EncodeToString(b)
}

// pool keeps size runners of one language, idle ones in idle. One
// goroutine makes them, one at a time, so that refilling never competes
// with runs for more than one core.
type pool struct {
	r       *Runners
	lang    contexts.Language
	program []string
	size    int
	idle    chan *runner
	wake    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	started bool

	mu      sync.Mutex
	live    map[*runner]bool // idle, busy, or being removed
	lastErr error            // of the last failed start, nil once one works
}

func newPool(r *Runners, lang contexts.Language, program []string, size int) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &pool{r: r, lang: lang, program: program, size: size, idle: make(chan *runner, size),
		wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{}), live: map[*runner]bool{}}
}

func (p *pool) start() {
	p.started = true
	go p.fill()
}

// retry bounds the pause after a failed start.
const retry = 30 * time.Second

func (p *pool) fill() {
	defer close(p.done)
	pause := time.Second
	for p.ctx.Err() == nil {
		p.mu.Lock()
		full := len(p.live) >= p.size
		p.mu.Unlock()
		if full {
			select {
			case <-p.wake:
			case <-p.ctx.Done():
			}
			continue
		}
		rn, err := p.make()
		p.mu.Lock()
		p.lastErr = err
		if err == nil {
			p.live[rn] = true
		}
		p.mu.Unlock()
		if err != nil {
			p.r.log.Warn("cannot make a one-shot runner; retrying", "language", p.lang.Name, "in", pause, "error", err)
			select {
			case <-time.After(pause):
			case <-p.ctx.Done():
			}
			pause = min(2*pause, retry)
			continue
		}
		pause = time.Second
		p.idle <- rn
	}
}

// makeTimeout bounds making a runner: its container, and a first run
// that checks it and learns the modes of its writable places.
const makeTimeout = 2 * time.Minute

func (p *pool) make() (*runner, error) {
	ctx, cancel := context.WithTimeout(p.ctx, makeTimeout)
	defer cancel()
	inst, err := p.r.cfg.Runtime.Start(ctx, contexts.Spec{
		ContextID: "oneshot-" + p.lang.Name + "-" + uuid.NewString()[:13],
		Image:     p.lang.Image,
		Labels:    map[string]string{contexts.LabelRole: roleRunner},
		Cmd:       keeper,
		User:      keeperUser,
	})
	if err != nil {
		return nil, err
	}
	rn := &runner{inst: inst}
	res, unfit, err := p.run(ctx, rn, Request{Timeout: 30 * time.Second})
	if err == nil {
		err = unfit
	}
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("the interpreter exited with %d: %s", res.ExitCode, bound.Prefix(res.Stderr, 500))
	}
	if err != nil {
		p.remove(rn)
		return nil, fmt.Errorf("check a new runner: %w", err)
	}
	return rn, nil
}

// take returns a free runner, waiting for one up to the configured wait.
func (p *pool) take(ctx context.Context) (*runner, error) {
	select {
	case rn := <-p.idle:
		return rn, nil
	default:
	}
	p.mu.Lock()
	none, lastErr := len(p.live) == 0, p.lastErr
	p.mu.Unlock()
	if none && lastErr != nil {
		// Waiting would not help: say why there is no runner.
		msg := lastErr.Error()
		var e *contexts.Error
		if errors.As(lastErr, &e) {
			msg = e.Message
		}
		return nil, &contexts.Error{Code: CodeRunnerFailed, Message: fmt.Sprintf("no %s runner can be made: %s", p.lang.Name, msg), Err: lastErr}
	}
	timer := time.NewTimer(p.r.cfg.Wait)
	defer timer.Stop()
	select {
	case rn := <-p.idle:
		return rn, nil
	case <-timer.C:
		return nil, contexts.Errorf(CodeBusy, "every %s runner stayed busy for %s; retry later, or start sandboxd with more --runners", p.lang.Name, p.r.cfg.Wait)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.ctx.Done():
		return nil, errors.New("the daemon is shutting down")
	}
}

// put gives back a runner whose last run left it clean.
func (p *pool) put(rn *runner) { p.idle <- rn }

// discard removes a runner that failed, and has the pool make another.
func (p *pool) discard(rn *runner, why error) {
	p.r.log.Warn("removing a one-shot runner", "language", p.lang.Name, "instance", rn.inst.ID, "reason", why)
	go func() {
		p.remove(rn)
		p.mu.Lock()
		delete(p.live, rn)
		p.mu.Unlock()
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}()
}

func (p *pool) remove(rn *runner) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := p.r.cfg.Runtime.Remove(ctx, rn.inst)
	if err != nil {
		p.r.log.Error("cannot remove a one-shot runner", "instance", rn.inst.ID, "error", err)
	}
	return err
}

func (p *pool) close() error {
	p.cancel()
	if p.started {
		<-p.done
	}
	p.mu.Lock()
	live := make([]*runner, 0, len(p.live))
	for rn := range p.live {
		live = append(live, rn)
	}
	p.live = map[*runner]bool{}
	p.mu.Unlock()
	var errs []error
	for _, rn := range live {
		errs = append(errs, p.remove(rn))
	}
	return errors.Join(errs...)
}
