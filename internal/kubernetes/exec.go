package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/sandboxd/sandboxd/internal/bound"
	"github.com/sandboxd/sandboxd/internal/contexts"
)

// execPreamble starts every exec: it reports the process's pid, moves to
// the working dir, and becomes the command with the env added. The
// container runtime makes each exec's process lead a process group of its
// own, and the API has no call to stop an exec, so the pid is what lets
// Exec kill one whose caller gave up, with all it started.
const execPreamble = `printf '%s\000' "$$" && cd "$1" && shift && exec env -- "$@"`

// killGroup kills the process group of pid, or pid alone where it leads
// none.
const killGroup = `kill -KILL -"$1" 2>/dev/null || kill -KILL "$1"`

// Exec runs a process in the pod through the API server's exec, as the
// pod's user (contexts.ContextUser: spec.User is not asked for). When Exec
// fails while the process still runs, the process and its group are killed
// before Exec returns.
func (r *Runtime) Exec(ctx context.Context, inst contexts.Instance, spec contexts.ExecSpec) (int, error) {
	dir := spec.Dir
	if dir == "" {
		dir = "."
	}
	cmd := append([]string{"sh", "-c", execPreamble, "sandboxd-exec", dir}, spec.Env...)
	cmd = append(cmd, spec.Cmd...)
	out := &bound.HeadWriter{W: orDiscard(spec.Stdout), Max: 20}
	code, err := r.exec(ctx, inst, cmd, spec.Stdin, out, orDiscard(spec.Stderr))
	if err != nil {
		// Only a whole head is a pid: a cut one could name another group.
		head, whole := out.Head()
		if pid, _ := strconv.Atoi(string(head)); whole && pid > 0 {
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, kerr := r.exec(kctx, inst, []string{"sh", "-c", killGroup, "sh", strconv.Itoa(pid)}, nil, io.Discard, io.Discard)
			cancel()
			if kerr != nil {
				err = errors.Join(err, fmt.Errorf("kill abandoned exec in %s: %w", inst.ID, kerr))
			}
		}
	}
	return code, err
}

// exec runs cmd as it is in the pod's container, and returns its exit code.
// Nothing is written to stdout or stderr once it returns: client-go's
// copies may outlive a stream that ctx ended.
func (r *Runtime) exec(ctx context.Context, inst contexts.Instance, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	executor, err := r.executor(inst, cmd, stdin != nil)
	if err != nil {
		return 0, err
	}
	var mu sync.Mutex
	done := false
	gate := func(w io.Writer) io.Writer {
		return writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			if done {
				return 0, io.ErrClosedPipe
			}
			return w.Write(p)
		})
	}
	err = executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: gate(stdout), Stderr: gate(stderr)})
	mu.Lock()
	done = true
	mu.Unlock()
	var exit utilexec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		return exit.ExitStatus(), nil
	case ctx.Err() != nil:
		return 0, fmt.Errorf("exec in %s: %w", inst.ID, ctx.Err())
	case apierrors.IsNotFound(err):
		return 0, &contexts.Error{Code: contexts.CodeContextDead, Message: "the context's pod is gone; delete it and create a new one", Err: err}
	}
	return 0, unavailable(err, "exec in "+inst.ID)
}

// executor streams an exec in the pod over a websocket, or over SPDY where
// the API server or a proxy before it does not take websockets.
func (r *Runtime) executor(inst contexts.Instance, cmd []string, stdin bool) (remotecommand.Executor, error) {
	req := r.cs.CoreV1().RESTClient().Post().
		Namespace(r.cfg.Namespace).Resource("pods").Name(podName(inst.ContextID)).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "context", Command: cmd, Stdin: stdin, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(r.rest, "GET", req.URL().String())
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", inst.ID, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(r.rest, "POST", req.URL())
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", inst.ID, err)
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
