package docker

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/sandboxd/sandboxd/internal/contexts"
)

// watchRetry and watchRetryMax space the retries of a wait that failed
// (the engine is unreachable): the container may well be running, and its
// kernel serving.
const (
	watchRetry    = 500 * time.Millisecond
	watchRetryMax = 10 * time.Second
)

// Watch waits for the container in a goroutine of its own, as Nomad's
// driver does, and calls ended once it no longer runs.
func (r *Runtime) Watch(inst contexts.Instance, ended func(exit string)) {
	r.watchers.Add(1)
	go func() {
		defer r.watchers.Done()
		retry := watchRetry
		for {
			exit, err := r.wait(r.watching, inst)
			if r.watching.Err() != nil {
				return
			}
			if err == nil {
				ended(exit)
				return
			}
			select {
			case <-time.After(retry):
			case <-r.watching.Done():
				return
			}
			retry = min(2*retry, watchRetryMax)
		}
	}()
}

// wait blocks until the container is no longer running and says how it
// ended, or fails when the engine cannot be asked.
func (r *Runtime) wait(ctx context.Context, inst contexts.Instance) (string, error) {
	res := r.cli.ContainerWait(ctx, inst.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case w := <-res.Result:
		if w.Error != nil {
			return fmt.Sprintf("exited with %d: %s", w.StatusCode, w.Error.Message), nil
		}
		return fmt.Sprintf("exited with %d", w.StatusCode), nil
	case err := <-res.Error:
		if cerrdefs.IsNotFound(err) {
			return "removed", nil
		}
		return "", translate(err, "wait for container")
	}
}
