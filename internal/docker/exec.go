package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/sandboxd/sandboxd/internal/bound"
	"github.com/sandboxd/sandboxd/internal/contexts"
)

// execPreamble starts every exec: it reports the process's pid, then
// becomes the command. The engine makes each exec's process lead a session
// and process group of its own, and has no call to stop an exec, so the pid
// is what lets Exec kill one whose caller gave up, with all it started.
const execPreamble = `printf '%s\000' "$$" && exec "$@"`

// killGroup kills the process group of pid, or pid alone where it leads
// none. It is the shell's kill, as the images have no kill binary, and
// dash's takes no --.
const killGroup = `kill -KILL -"$1" 2>/dev/null || kill -KILL "$1"`

// Exec runs a process in the container through the engine's exec API, so
// it works with the container's network off, and runs under the
// container's own limits. Output is copied as it arrives, never held
// whole, so files of any size pass through. When Exec fails while the
// process still runs (ctx ended, its output could not be passed on), the
// process and its process group are killed before Exec returns.
func (r *Runtime) Exec(ctx context.Context, inst contexts.Instance, spec contexts.ExecSpec) (int, error) {
	out := &bound.HeadWriter{W: orDiscard(spec.Stdout), Max: 20}
	raw := spec
	raw.Cmd = append([]string{"sh", "-c", execPreamble, "sandboxd-exec"}, spec.Cmd...)
	raw.Stdout = out
	execID, code, err := r.exec(ctx, inst, raw)
	if err != nil && execID != "" {
		head, _ := out.Head()
		pid, _ := strconv.Atoi(string(head)) // 0 until the exec said it
		if kerr := r.kill(inst, spec.User, execID, pid); kerr != nil {
			err = errors.Join(err, kerr)
		}
	}
	return code, err
}

// kill kills an exec's process group, unless the exec has ended. pid is 0
// when the exec was abandoned before it said its pid: it is then left to
// end by itself, its output going nowhere.
func (r *Runtime) kill(inst contexts.Instance, user, execID string, pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := r.cli.ExecInspect(ctx, execID, client.ExecInspectOptions{})
	switch {
	case err != nil:
		return translate(err, "inspect exec "+execID)
	case !res.Running:
		return nil
	case pid <= 0:
		return fmt.Errorf("exec in %s: abandoned before it said its pid, so not killed", inst.ID)
	}
	_, code, err := r.exec(ctx, inst, contexts.ExecSpec{Cmd: []string{"sh", "-c", killGroup, "sh", strconv.Itoa(pid)}, User: user})
	if err == nil && code != 0 {
		err = fmt.Errorf("kill exited with %d", code)
	}
	if err != nil {
		return fmt.Errorf("kill abandoned exec in %s: %w", inst.ID, err)
	}
	return nil
}

// exec runs spec as is and returns the exec's id, once it is made, with
// what Exec returns.
func (r *Runtime) exec(ctx context.Context, inst contexts.Instance, spec contexts.ExecSpec) (string, int, error) {
	created, err := r.cli.ExecCreate(ctx, inst.ID, client.ExecCreateOptions{
		User:         spec.User,
		AttachStdin:  spec.Stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
		Env:          spec.Env,
		WorkingDir:   spec.Dir,
		Cmd:          spec.Cmd,
	})
	if cerrdefs.IsConflict(err) {
		// The container stopped before its watcher said so.
		return "", 0, &contexts.Error{Code: contexts.CodeContextDead, Message: "the context's container has stopped; delete it and create a new one", Err: err}
	}
	if err != nil {
		return "", 0, translate(err, "create exec in "+inst.ID)
	}
	att, err := r.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return created.ID, 0, translate(err, "start exec in "+inst.ID)
	}
	// Closing the connection is the only way to stop copying: a read
	// blocked on it does not watch ctx.
	var closeOnce sync.Once
	closeConn := func() { closeOnce.Do(att.Close) }
	defer closeConn()
	stop := context.AfterFunc(ctx, closeConn)
	defer stop()

	var stdin sync.WaitGroup
	if spec.Stdin != nil {
		stdin.Add(1)
		go func() {
			defer stdin.Done()
			// A process that ends without reading all of its input makes
			// this fail; its exit code tells the caller what happened.
			io.Copy(att.Conn, spec.Stdin)
			att.CloseWrite()
		}()
	}
	stdout, stderr := orDiscard(spec.Stdout), orDiscard(spec.Stderr)
	_, copyErr := stdcopy.StdCopy(stdout, stderr, att.Reader)
	if spec.Stdin != nil && errors.Is(copyErr, syscall.ECONNRESET) {
		// Podman closes the stream of a process that ended without reading
		// all of its input with that input unread, which resets it: the
		// output came whole all the same.
		copyErr = nil
	}
	closeConn()
	// The stdin copy may be reading the caller's Stdin: wait for it, so
	// that it is not read after Exec returns.
	stdin.Wait()
	if ctx.Err() != nil {
		return created.ID, 0, fmt.Errorf("exec in %s: %w", inst.ID, ctx.Err())
	}
	if copyErr != nil {
		return created.ID, 0, fmt.Errorf("copy output of exec in %s: %w", inst.ID, copyErr)
	}
	code, err := r.execExitCode(ctx, created.ID)
	return created.ID, code, err
}

// execExitCode waits for the engine to record the exec's end. Its output
// ends as the process does, but the engine may record the exit a moment
// later.
func (r *Runtime) execExitCode(ctx context.Context, execID string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	delay := 5 * time.Millisecond
	for {
		res, err := r.cli.ExecInspect(ctx, execID, client.ExecInspectOptions{})
		if err != nil {
			return 0, translate(err, "inspect exec "+execID)
		}
		if !res.Running {
			return res.ExitCode, nil
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return 0, translate(errors.Join(ctx.Err(), errors.New("the exec's output ended but it still runs")), "inspect exec "+execID)
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
