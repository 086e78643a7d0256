package main

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sandboxd/sandboxd/client"
)

const (
	// warmRounds is how many single creates measure the warm pool.
	warmRounds = 10
	// warmup executions run before each latency series, so that first-call
	// costs (imports, caches, new connections) stay out of it.
	warmup = 5
	// poolWait bounds the wait for the pool to fill before a create.
	poolWait = 3 * time.Minute
	printOne = "print(1)"
	// largeCode prints 10 MiB without a newline.
	largeCode = "print('x' * (10 << 20), end='')"
)

// run takes every measurement in turn.
func (b *bench) run(ctx context.Context) (*report, error) {
	rep := &report{URL: b.cfg.URL}
	if err := b.api.Health(ctx); err != nil {
		return nil, fmt.Errorf("sandboxd at %s: %w", b.cfg.URL, err)
	}
	if b.serversErr != nil {
		b.logf("no direct kernel access, the floor is unavailable: %v", b.serversErr)
	}
	rep.Memory.RSSIdle = b.rss(ctx)

	steps := []struct {
		name string
		run  func(context.Context, *report) error
	}{
		{"warm create", b.warmCreate},
		{"create burst", b.createBurst},
		{"execute latency", b.executeLatency},
		{"throughput", b.throughput},
	}
	for _, s := range steps {
		b.logf("%s…", s.name)
		if err := s.run(ctx, rep); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return rep, nil
}

// waitPool waits until the python pool is full, so that the next create
// can be a hit. A server without a pool endpoint is not waited for.
func (b *bench) waitPool(ctx context.Context) error {
	deadline := time.Now().Add(poolWait)
	for !b.noPool {
		pools, err := b.api.Pool(ctx)
		if client.IsCode(err, client.CodeNotFound) || client.IsCode(err, client.CodeMethodNotAllowed) {
			b.logf("the server has no pool endpoint; not waiting for a pool")
			b.noPool = true
			return nil
		}
		if err != nil {
			return err
		}
		i := slices.IndexFunc(pools, func(p client.PoolStatus) bool { return p.Language == "python" })
		if i < 0 || pools[i].Ready >= pools[i].Size {
			return nil
		}
		if time.Now().After(deadline) {
			b.logf("the python pool did not fill in %v (%d of %d ready); going on", poolWait, pools[i].Ready, pools[i].Size)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// warmCreate creates and deletes one context at a time, each after the
// pool has refilled.
func (b *bench) warmCreate(ctx context.Context, rep *report) error {
	var hits []time.Duration
	for i := range warmRounds {
		if err := b.waitPool(ctx); err != nil {
			return err
		}
		c, took, err := b.create(ctx)
		if err != nil {
			return err
		}
		if c.Pool == client.PoolHit {
			hits = append(hits, took)
		}
		b.logf("  create %d/%d: %v (pool: %s)", i+1, warmRounds, took.Round(time.Millisecond), orNone(c.Pool))
		if err := b.remove(ctx, c.ID); err != nil {
			return err
		}
	}
	rep.WarmCreate = warmCreate{
		Rounds:       warmRounds,
		Hits:         len(hits),
		PoolEndpoint: !b.noPool,
		P50:          percentile(hits, 50),
		P99:          percentile(hits, 99),
	}
	return nil
}

// createBurst creates contexts back to back from a full pool, so the first
// are hits and the rest show what a create costs once the pool is drained.
func (b *bench) createBurst(ctx context.Context, rep *report) error {
	if err := b.waitPool(ctx); err != nil {
		return err
	}
	var all, misses []time.Duration
	var ids []string
	hits := 0
	for i := range b.cfg.Burst {
		c, took, err := b.create(ctx)
		if client.IsCode(err, client.CodeTooManyContexts) {
			b.logf("  the server refused context %d: %v", i+1, err)
			rep.Burst.Limited = true
			break
		}
		if err != nil {
			return err
		}
		ids = append(ids, c.ID)
		all = append(all, took)
		if c.Pool == client.PoolHit {
			hits++
		} else {
			misses = append(misses, took)
		}
		b.logf("  create %d/%d: %v (pool: %s)", i+1, b.cfg.Burst, took.Round(time.Millisecond), orNone(c.Pool))
	}
	for _, id := range ids {
		if err := b.remove(ctx, id); err != nil {
			return err
		}
	}
	rep.Burst.Creates = len(all)
	rep.Burst.Hits = hits
	rep.Burst.Misses = len(misses)
	rep.Burst.P50 = percentile(all, 50)
	rep.Burst.P99 = percentile(all, 99)
	rep.Burst.ColdP50 = percentile(misses, 50)
	return nil
}

// executeLatency times print(1) through sandboxd and straight to a kernel
// in the same container, then the return of 10 MiB of stdout.
func (b *bench) executeLatency(ctx context.Context, rep *report) error {
	c, _, err := b.create(ctx)
	if err != nil {
		return err
	}
	e := &rep.Execute
	ours := func() error { return b.printOne(ctx, c.ID) }
	var floor func() error
	k, err := b.rawKernel(ctx, c.ID)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		e.FloorError = err.Error()
		b.logf("  floor unavailable: %v", err)
	default:
		defer k.Close()
		floor = func() error { return k.Execute(printOne) }
	}

	oursTimes, floorTimes, floorErr, err := series(b.cfg.Calls, ours, floor)
	if err != nil {
		return err
	}
	e.Calls = len(oursTimes)
	e.P50, e.P90, e.P99 = percentile(oursTimes, 50), percentile(oursTimes, 90), percentile(oursTimes, 99)
	b.logf("  sandboxd: p50 %s", msText(e.P50))
	if floorErr != nil {
		e.FloorError = floorErr.Error()
		b.logf("  floor failed: %v", floorErr)
	} else if floor != nil {
		e.FloorP50, e.FloorP90, e.FloorP99 = percentile(floorTimes, 50), percentile(floorTimes, 90), percentile(floorTimes, 99)
		e.OverheadP50, e.OverheadP90 = diff(e.P50, e.FloorP50), diff(e.P90, e.FloorP90)
		b.logf("  floor: p50 %s", msText(e.FloorP50))
	}

	b.logf("10 MiB of stdout…")
	var times []time.Duration
	for range 3 {
		before := b.bytes.n.Load()
		start := time.Now()
		resp, err := b.api.Execute(ctx, c.ID, client.ExecuteRequest{Code: largeCode, Timeout: 2 * time.Minute})
		if err != nil {
			return err
		}
		times = append(times, time.Since(start))
		if !resp.Success {
			return fmt.Errorf("10 MiB of stdout: the code failed: %+v", resp.Error)
		}
		rep.LargeOutput.ResponseBytes = b.bytes.n.Load() - before
		rep.LargeOutput.StdoutBytes = len(resp.Output.Stdout)
		rep.LargeOutput.Truncated = resp.Truncated
	}
	rep.LargeOutput.Median = percentile(times, 50)
	return b.remove(ctx, c.ID)
}

// series runs ours and floor warmup times each, then n times each, timed.
// The two take turns, so that whatever else the machine does weighs on
// both alike. floor may be nil; when it fails, the rest runs without it.
func series(n int, ours, floor func() error) (oursTimes, floorTimes []time.Duration, floorErr, err error) {
	timed := func(call func() error, times *[]time.Duration, record bool) error {
		start := time.Now()
		if err := call(); err != nil {
			return err
		}
		if record {
			*times = append(*times, time.Since(start))
		}
		return nil
	}
	for i := range warmup + n {
		record := i >= warmup
		if err := timed(ours, &oursTimes, record); err != nil {
			return nil, nil, nil, err
		}
		if floor == nil {
			continue
		}
		if err := timed(floor, &floorTimes, record); err != nil {
			floor, floorTimes, floorErr = nil, nil, err
		}
	}
	return oursTimes, floorTimes, floorErr, nil
}

func (b *bench) printOne(ctx context.Context, id string) error {
	resp, err := b.api.Execute(ctx, id, client.ExecuteRequest{Code: printOne})
	if err != nil {
		return err
	}
	if !resp.Success || resp.Output.Stdout != "1\n" {
		return fmt.Errorf("print(1) gave success %v, stdout %q, error %+v", resp.Success, resp.Output.Stdout, resp.Error)
	}
	return nil
}

// rawKernel starts a kernel of the floor's own on the context's server.
func (b *bench) rawKernel(ctx context.Context, id string) (*rawKernel, error) {
	if b.servers == nil {
		return nil, b.serversErr
	}
	dial, token, err := b.servers.Endpoint(ctx, id)
	if err != nil {
		return nil, err
	}
	return startRawKernel(ctx, dial, token)
}

// throughput runs print(1) in a loop on --parallel contexts at once, then
// on as many raw kernels, one in each context's container.
func (b *bench) throughput(ctx context.Context, rep *report) error {
	n := b.cfg.Parallel
	ids := make([]string, 0, n)
	for range n {
		c, _, err := b.create(ctx)
		if err != nil {
			return err
		}
		ids = append(ids, c.ID)
	}
	for _, id := range ids {
		if err := b.printOne(ctx, id); err != nil {
			return err
		}
	}
	t := &rep.Throughput
	t.Contexts = n
	rep.Memory.RSSBeforeLoad = b.rss(ctx)
	count, took, err := loop(ctx, n, b.cfg.Duration, func(i int) error { return b.printOne(ctx, ids[i]) })
	if err != nil {
		return err
	}
	rep.Memory.RSSAfterLoad = b.rss(ctx)
	t.Seconds, t.Executions = *round(took.Seconds(), 3), count
	t.PerSecond = rate(count, took)
	b.logf("  sandboxd: %s", rateText(t.PerSecond))

	// Measured before the floor's kernels start, which would count too.
	rep.Memory.ContextMean, err = b.contextMemory(ctx, ids)
	if err != nil {
		rep.Memory.ContextError = err.Error()
	}

	count, took, err = b.floorLoop(ctx, ids)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t.FloorError = err.Error()
		b.logf("  floor unavailable: %v", err)
	} else {
		t.FloorExecs, t.FloorPerS = count, rate(count, took)
		if *t.FloorPerS > 0 {
			t.Percent = round(*t.PerSecond / *t.FloorPerS * 100, 2)
		}
		b.logf("  floor: %s", rateText(t.FloorPerS))
	}
	for _, id := range ids {
		if err := b.remove(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) floorLoop(ctx context.Context, ids []string) (int64, time.Duration, error) {
	kernels := make([]*rawKernel, 0, len(ids))
	defer func() {
		for _, k := range kernels {
			k.Close()
		}
	}()
	for _, id := range ids {
		k, err := b.rawKernel(ctx, id)
		if err != nil {
			return 0, 0, err
		}
		kernels = append(kernels, k)
		if err := k.Execute(printOne); err != nil {
			return 0, 0, err
		}
	}
	return loop(ctx, len(kernels), b.cfg.Duration, func(i int) error { return kernels[i].Execute(printOne) })
}

// loop runs call(i) over and over on n goroutines, i from 0 to n-1, until
// d has passed, and returns how many calls succeeded and how long it took
// until the last ended. The first error stops every goroutine.
func loop(ctx context.Context, n int, d time.Duration, call func(i int) error) (int64, time.Duration, error) {
	var (
		count    atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		failed   atomic.Bool
	)
	start := time.Now()
	deadline := start.Add(d)
	for i := range n {
		wg.Go(func() {
			for time.Now().Before(deadline) && !failed.Load() && ctx.Err() == nil {
				if err := call(i); err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
				count.Add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if ctx.Err() != nil {
		return 0, 0, ctx.Err()
	}
	return count.Load(), took, firstErr
}

func rate(count int64, d time.Duration) *float64 {
	return round(float64(count)/d.Seconds(), 2)
}

// contextMemory returns the mean memory usage of the contexts' containers.
func (b *bench) contextMemory(ctx context.Context, ids []string) (*int64, error) {
	if b.servers == nil {
		return nil, b.serversErr
	}
	var sum uint64
	for _, id := range ids {
		n, err := b.servers.MemoryUsage(ctx, id)
		if err != nil {
			return nil, err
		}
		sum += n
	}
	mean := int64(sum / uint64(len(ids)))
	return &mean, nil
}

// rss returns the daemon's resident memory from its metrics, or nil when
// they do not say.
func (b *bench) rss(ctx context.Context) *int64 {
	text, err := b.api.Metrics(ctx)
	if err != nil {
		b.logf("no metrics: %v", err)
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			break
		}
		n := int64(f)
		return &n
	}
	b.logf("the metrics have no process_resident_memory_bytes")
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no header"
	}
	return s
}
