package docker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/moby/moby/client"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// execEgressSocket is where the forwarder of a context reached through
// exec takes the relays the daemon starts, inside its container.
const execEgressSocket = socketInContainer + "/" + egressSocket

// maxRelayDials bounds the relays being started for one context's egress
// at once: each is an exec, and the forwarder asks for them as programs
// connect.
const maxRelayDials = 4

// egressOnExec starts the forwarder of inst, reached through exec, and
// returns the listener its programs' connections come in on: for each one
// the forwarder asks for, a relay to it, started with the engine's exec
// API.
func (r *Runtime) egressOnExec(ctx context.Context, inst contexts.Instance) (net.Listener, error) {
	created, err := r.cli.ExecCreate(ctx, inst.ID, client.ExecCreateOptions{
		User:         contexts.ContextUser,
		AttachStdin:  true,
		AttachStdout: true,
		AttachStderr: true,
		Cmd:          []string{"python3", "-S", "-c", forwarder, "exec", execEgressSocket},
	})
	if err != nil {
		return nil, translate(err, "start the egress forwarder in "+inst.ID)
	}
	att, err := r.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return nil, translate(err, "start the egress forwarder in "+inst.ID)
	}
	ctl := &execConn{Conn: att.Conn, r: att.Reader}
	stop := context.AfterFunc(ctx, func() { att.Close() })
	lines := bufio.NewScanner(ctl)
	ready := lines.Scan() && lines.Text() == "ready"
	if !stop() || !ready {
		att.Close()
		return nil, fmt.Errorf("the egress forwarder in %s did not start: %v %s", inst.ID, lines.Err(), ctl.stderr())
	}
	l := &relayListener{conns: make(chan net.Conn), closed: make(chan struct{}), ctl: ctl}
	go func() {
		sem := make(chan struct{}, maxRelayDials)
		for lines.Scan() {
			n := lines.Text()
			select {
			case sem <- struct{}{}:
			case <-l.closed:
				return
			}
			go func() {
				defer func() { <-sem }()
				r.relayEgress(inst, n, l)
			}()
		}
		l.Close()
	}()
	return l, nil
}

// relayEgress starts the relay for the forwarder's connection number n and
// hands it to l.
func (r *Runtime) relayEgress(inst contexts.Instance, n string, l *relayListener) {
	c, err := r.dialExec(r.watching, inst, execEgressSocket)
	if err == nil {
		_, err = io.WriteString(c, n+"\n")
	}
	if err != nil {
		r.log.Warn("egress: cannot relay a connection", "context_id", inst.ContextID, "error", err)
		if c != nil {
			c.Close()
		}
		return
	}
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

// relayListener hands out the relays of one context's egress. Closing it
// ends the forwarder too: its stdin ends.
type relayListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	ctl    net.Conn
}

func (l *relayListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *relayListener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.ctl.Close()
	})
	return nil
}

func (l *relayListener) Addr() net.Addr { return l.ctl.LocalAddr() }
