package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/tools/remotecommand"

	"github.com/sandboxd/sandboxd/internal/bound"
	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/relay"
)

// dialExec connects to the pod's server through a relay run by the API
// server's exec, which carries the connection over the exec's stdin and
// stdout. The relay runs as the pod's user and connects from inside the
// pod, so the pod's NetworkPolicy does not see it.
func (r *Runtime) dialExec(ctx context.Context, inst contexts.Instance) (net.Conn, error) {
	executor, err := r.executor(inst, relay.Command(fmt.Sprintf("127.0.0.1:%d", jupyterPort)), true)
	if err != nil {
		return nil, err
	}
	c, err := dialRelay(ctx, executor)
	if err != nil {
		return nil, fmt.Errorf("relay to the server of %s: %w", inst.ID, err)
	}
	return c, nil
}

// dialRelay starts the relay that executor runs and returns the
// connection it carries, once the relay has connected.
func dialRelay(ctx context.Context, executor remotecommand.Executor) (net.Conn, error) {
	// The pipe's far end is the exec's stdin and stdout; the near end is
	// the connection, with deadlines, which HTTP and websocket clients set.
	near, far := net.Pipe()
	// The exec lives as long as the connection, not as long as the dial.
	streaming, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &relayConn{Conn: near, cancel: cancel, done: make(chan struct{}), stderr: bound.NewBuffer(1024)}
	go func() {
		defer close(c.done)
		c.err = executor.StreamWithContext(streaming, remotecommand.StreamOptions{Stdin: eofOnClose{far}, Stdout: far, Stderr: c.stderr})
		// The relay ended: the connection reads its end.
		far.Close()
	}()
	stop := context.AfterFunc(ctx, func() { near.SetReadDeadline(time.Now()) })
	var first [1]byte
	_, err := io.ReadFull(near, first[:])
	if !stop() || err == nil && first[0] != relay.Connected {
		err = errors.Join(err, ctx.Err(), errors.New("the relay did not connect"))
	}
	if err != nil {
		c.Close()
		if c.err != nil && !errors.Is(c.err, context.Canceled) {
			err = errors.Join(err, unavailable(c.err, "exec the relay"))
		}
		if msg := strings.TrimSpace(c.stderr.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return nil, err
	}
	near.SetReadDeadline(time.Time{})
	return c, nil
}

// closeGrace is how long Close waits for the relay to end by itself
// before it cuts the exec's stream.
const closeGrace = 2 * time.Second

// relayConn is a connection carried by a relay's exec. Closing it ends the
// exec: the relay in the pod sees its stdin end, closes its connection to
// the server and exits. Cutting the stream at once would end it as well,
// but client-go logs that as an error.
type relayConn struct {
	net.Conn
	cancel context.CancelFunc
	once   sync.Once
	done   chan struct{}
	err    error // of the exec, once done is closed
	stderr *bound.Buffer
}

func (c *relayConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		select {
		case <-c.done:
		case <-time.After(closeGrace):
		}
		c.cancel()
		<-c.done
	})
	return err
}

// eofOnClose reads the exec's stdin from the pipe, whose end closed once
// the exec has ended reads as the end of stdin.
type eofOnClose struct{ r io.Reader }

func (e eofOnClose) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if errors.Is(err, io.ErrClosedPipe) {
		err = io.EOF
	}
	return n, err
}
