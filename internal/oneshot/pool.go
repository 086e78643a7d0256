package oneshot

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/sandboxd/sandboxd/internal/bound"
	"github.com/sandboxd/sandboxd/internal/contexts"
)

// pool keeps size runners of one language, idle ones in idle. One
// goroutine makes them, one at a time, so that refilling never competes
// with runs for more than one core.
type pool struct {
	r       *Runners
	lang    contexts.Language
	program []string
	// prestart is the program spawners start ahead of each run, or nil.
	prestart []string
	size     int
	idle     chan *runner
	wake     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	started  bool

	mu      sync.Mutex
	live    map[*runner]bool // idle, busy, or being removed
	lastErr error            // of the last failed start, nil once one works
}

func newPool(r *Runners, lang contexts.Language, program, prestart []string, size int) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &pool{r: r, lang: lang, program: program, prestart: prestart, size: size, idle: make(chan *runner, size),
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
		Cmd:       append([]string{"python3", "-I", "-S", "-c", spawner}, p.prestart...),
	})
	if err != nil {
		return nil, err
	}
	rn := &runner{inst: inst}
	if rn.spawned, err = p.waitSpawner(ctx, rn); err != nil {
		p.remove(rn)
		return nil, err
	}
	res, cleaned, err := p.run(ctx, rn, 30*time.Second, []byte(`{"code":"","mode":"script"}`))
	if err == nil {
		err = <-cleaned
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
