package contexts

import (
	"context"
	"errors"
	"sync"
	"time"
)

// pool keeps kernels of one language started and idle, so that Create can
// hand one out at once instead of waiting seconds for a container, a
// Jupyter server and a kernel to start. One goroutine fills it, a kernel at
// a time, so refilling never competes with requests for more than one core.
type pool struct {
	m    *Manager
	lang Language
	size int

	ctx    context.Context // ends when the pool closes
	cancel context.CancelFunc
	wake   chan struct{} // a kernel was taken: fill again
	done   chan struct{} // closed when the filler has stopped

	mu       sync.Mutex
	ready    []*liveContext        // oldest first
	checking int                   // kernels take is checking: not ready, nor missing
	slow     map[*liveContext]bool // kernels whose last check timed out
	started  bool
}

// PoolStatus is how full a language's warm pool is.
type PoolStatus struct {
	Language string
	Size     int // the kernels it keeps ready
	Ready    int // the kernels ready now
}

// poolRetry bounds the pause after a failed start, so a missing image or a
// stopped engine is not retried in a tight loop.
const poolRetry = 30 * time.Second

func newPool(m *Manager, lang Language, size int) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &pool{m: m, lang: lang, size: size, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{}), slow: map[*liveContext]bool{}}
}

func (p *pool) start() {
	p.mu.Lock()
	p.started = true
	p.mu.Unlock()
	go p.fill()
}

// take returns a ready kernel, or nil when there is none (or p is nil).
// A kernel whose container stopped, or whose kernel is gone, is removed
// and the next one tried. One that is merely slow to answer, and every
// kernel checked for a request that has ended, goes back to the pool: a
// cancelled request or a loaded host says nothing against the kernel.
func (p *pool) take(ctx context.Context) *liveContext {
	if p == nil {
		return nil
	}
	defer p.signal()
	for ctx.Err() == nil {
		p.mu.Lock()
		if len(p.ready) == 0 {
			p.mu.Unlock()
			break
		}
		s := p.ready[0]
		p.ready = p.ready[1:]
		p.checking++
		p.m.metrics.poolReady.WithLabelValues(p.lang.Name).Set(float64(len(p.ready)))
		p.mu.Unlock()

		err := p.check(ctx, s)
		p.mu.Lock()
		p.checking--
		// Slow once is a loaded host; slow twice running, a stuck kernel.
		slow := err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && !p.slow[s]
		keep := (ctx.Err() != nil || slow) && p.ctx.Err() == nil
		if keep {
			// Back to the front: it is still the oldest.
			p.ready = append([]*liveContext{s}, p.ready...)
			p.m.metrics.poolReady.WithLabelValues(p.lang.Name).Set(float64(len(p.ready)))
		}
		if slow {
			p.slow[s] = true
		} else {
			delete(p.slow, s)
		}
		p.mu.Unlock()
		switch {
		case keep:
			if slow {
				p.m.log.Warn("a pooled kernel is slow to answer; leaving it in the pool", "context_id", s.info.ID, "language", p.lang.Name)
			}
			p.m.metrics.poolTakes.WithLabelValues(p.lang.Name, "miss").Inc()
			return nil
		case err == nil && ctx.Err() == nil:
			p.m.metrics.poolTakes.WithLabelValues(p.lang.Name, "hit").Inc()
			s.info.Pooled = true
			return s
		}
		p.m.log.Warn("discarding a pooled kernel that does not answer", "context_id", s.info.ID, "language", p.lang.Name, "error", err)
		go p.m.remove(s)
	}
	p.m.metrics.poolTakes.WithLabelValues(p.lang.Name, "miss").Inc()
	return nil
}

// poolCheckTimeout bounds the check of a pooled kernel: a kernel busy
// with nothing answers in milliseconds, but a loaded host can take seconds.
const poolCheckTimeout = 5 * time.Second

// check checks that a pooled kernel's container runs and its kernel
// answers a kernel_info_request.
func (p *pool) check(ctx context.Context, s *liveContext) error {
	select {
	case <-s.stopped:
		return errors.New("its container stopped")
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, poolCheckTimeout)
	defer cancel()
	return s.kernel.Ready(ctx)
}

func (p *pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pool) status() PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStatus{Language: p.lang.Name, Size: p.size, Ready: len(p.ready)}
}

// fill keeps the pool at its size until the pool closes, replacing kernels
// that waited longer than PoolMaxAge.
func (p *pool) fill() {
	defer close(p.done)
	retry := time.Second
	for {
		p.expire()
		p.mu.Lock()
		missing := len(p.ready)+p.checking < p.size
		p.mu.Unlock()
		if missing {
			// Not under p.ctx: closing the pool waits for this boot rather
			// than cut it short, since a container create that is cancelled
			// may still be carried out by the engine, and leak.
			ctx, cancel := context.WithTimeout(context.Background(), p.m.cfg.CreateTimeout)
			s, err := p.m.boot(ctx, p.lang)
			cancel()
			if p.ctx.Err() != nil {
				if s != nil {
					p.m.remove(s)
				}
				return
			}
			if err == nil {
				p.mu.Lock()
				p.ready = append(p.ready, s)
				p.m.metrics.poolReady.WithLabelValues(p.lang.Name).Set(float64(len(p.ready)))
				p.mu.Unlock()
				retry = time.Second
				continue
			}
			p.m.log.Warn("could not start a kernel for the pool", "language", p.lang.Name, "retry_in", retry, "error", err)
			select {
			case <-time.After(retry):
			case <-p.ctx.Done():
				return
			}
			retry = min(2*retry, poolRetry)
			continue
		}
		// Wake when a kernel is taken, and in time to replace one that
		// grew too old.
		recheck := time.Duration(1<<63 - 1)
		if p.m.cfg.PoolMaxAge > 0 {
			recheck = p.m.cfg.PoolMaxAge / 4
		}
		t := time.NewTimer(recheck)
		select {
		case <-p.wake:
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// expire removes the kernels that waited in the pool past PoolMaxAge.
func (p *pool) expire() {
	if p.m.cfg.PoolMaxAge <= 0 {
		return
	}
	p.mu.Lock()
	var old []*liveContext
	for len(p.ready) > 0 && time.Since(p.ready[0].booted) > p.m.cfg.PoolMaxAge {
		old = append(old, p.ready[0])
		delete(p.slow, p.ready[0])
		p.ready = p.ready[1:]
	}
	p.mu.Unlock()
	for _, s := range old {
		p.m.remove(s)
	}
}

// close stops the filler and removes the kernels still in the pool.
func (p *pool) close() {
	p.cancel()
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if started {
		<-p.done
	}
	p.mu.Lock()
	all := p.ready
	p.ready = nil
	clear(p.slow)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.m.remove(s)
		}()
	}
	wg.Wait()
}

// Pools tells how full each language's warm pool is.
func (m *Manager) Pools() []PoolStatus {
	var all []PoolStatus
	for _, l := range m.cfg.Languages {
		if p := m.pools[l.Name]; p != nil {
			all = append(all, p.status())
		}
	}
	return all
}
