package docker

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/moby/moby/client"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// forwarder is the program a context with networking runs to reach the
// daemon's egress proxy; see forwarder.py. Every kernel image has Python,
// since the Jupyter server is written in it.
//
//go:embed forwarder.py
var forwarder string

// The proxy a context with networking sees: a forwarder inside its
// container listens here and passes each connection on, through the socket
// directory or a relay, to the daemon's egress proxy. The container itself keeps no
// network, so nothing but what the proxy allows gets out.
const (
	egressSocket  = "egress.sock"
	egressAddress = "127.0.0.1:3128"
)

// OpenEgress serves the daemon's egress proxy to inst and starts the
// forwarder in its container: on a socket in its socket directory
// (TransportSocket), or through relays (TransportExec).
func (r *Runtime) OpenEgress(ctx context.Context, inst contexts.Instance) (map[string]string, error) {
	if r.cfg.Egress == nil {
		return nil, contexts.ErrEgressDisabled
	}
	// A proxy served to a previous forwarder (before a restart of the
	// daemon) goes first: its socket or its address is taken anew.
	r.closeEgress(inst.ContextID)
	var l net.Listener
	var err error
	if _, ok := inst.Labels[labelSocketDir]; ok {
		l, err = r.egressOnSocket(ctx, inst)
	} else {
		l, err = r.egressOnExec(ctx, inst)
	}
	if err != nil {
		return nil, err
	}
	r.egressMu.Lock()
	r.egress[inst.ContextID] = l
	r.egressMu.Unlock()
	go func() {
		if err := r.cfg.Egress.Serve(l, inst.ContextID); err != nil && !errors.Is(err, net.ErrClosed) {
			r.log.Warn("egress proxy stopped", "context_id", inst.ContextID, "error", err)
		}
	}()
	return contexts.ProxyEnv("http://" + egressAddress), nil
}

// egressOnSocket listens on a socket in inst's socket directory and starts
// the forwarder, which connects to it for each program's connection.
func (r *Runtime) egressOnSocket(ctx context.Context, inst contexts.Instance) (net.Listener, error) {
	dir, ok := r.socketDir(inst)
	if !ok {
		return nil, fmt.Errorf("egress for %s: no socket directory", inst.ContextID)
	}
	path := filepath.Join(dir, egressSocket)
	// A socket left by a previous run of the daemon would make Listen fail.
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err == nil {
		// The container's user connects to it.
		err = os.Chmod(path, 0o666)
	}
	if err != nil {
		if l != nil {
			l.Close()
		}
		return nil, fmt.Errorf("egress socket: %w", err)
	}
	if err := r.startForwarder(ctx, inst, l.(*net.UnixListener)); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// startForwarder starts the forwarder in inst's container and waits until
// it says, by connecting to l, that it listens: the context's first code
// must find it.
func (r *Runtime) startForwarder(ctx context.Context, inst contexts.Instance, l *net.UnixListener) error {
	created, err := r.cli.ExecCreate(ctx, inst.ID, client.ExecCreateOptions{
		Cmd: []string{"python3", "-S", "-c", forwarder, "socket", socketInContainer + "/" + egressSocket},
	})
	if err == nil {
		_, err = r.cli.ExecStart(ctx, created.ID, client.ExecStartOptions{Detach: true})
	}
	if err != nil {
		return translate(err, "start the egress forwarder in "+inst.ID)
	}
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	l.SetDeadline(deadline)
	c, err := l.Accept()
	if err != nil {
		return fmt.Errorf("the egress forwarder in %s did not start: %w", inst.ID, err)
	}
	c.Close()
	return l.SetDeadline(time.Time{})
}

// closeEgress stops serving a context's egress proxy, which cuts its open
// connections.
func (r *Runtime) closeEgress(contextID string) {
	r.egressMu.Lock()
	defer r.egressMu.Unlock()
	if l := r.egress[contextID]; l != nil {
		l.Close()
		delete(r.egress, contextID)
	}
}
