package docker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/relay"
)

// How the daemon reaches the Jupyter server in a context's container.
const (
	// TransportSocket is the fast path: the server's unix socket, in a
	// directory of SocketDir bind-mounted into the container. The daemon
	// must see the engine host's SocketDir at the same path, so it runs on
	// that host, or in a container with that path mounted.
	TransportSocket = "socket"
	// TransportExec needs no shared path: for each connection a relay,
	// started with the engine's exec API, carries it to the socket inside
	// the container over the exec's stdin and stdout. It works wherever
	// the engine does: Docker Desktop, Podman, a remote engine.
	TransportExec = "exec"
	// TransportAuto takes the socket where the engine's containers see the
	// daemon's SocketDir, and exec where they do not.
	TransportAuto = "auto"
)

// Transport returns the transport new contexts are reached through. It
// chooses first when it is TransportAuto: a probe container, with SocketDir
// mounted, looks for a file the daemon made there. It runs from image, any
// image with a test binary. The choice is logged, once.
func (r *Runtime) Transport(ctx context.Context, image string) (string, error) {
	r.transportMu.Lock()
	defer r.transportMu.Unlock()
	if r.transportChosen {
		return r.transport, nil
	}
	how := "--transport " + r.transport
	if r.transport == TransportAuto {
		shared, err := r.sharesSocketDir(ctx, image)
		if err != nil {
			return "", err
		}
		r.transport, how = TransportExec, "the engine does not share --socket-dir with sandboxd"
		if shared {
			r.transport, how = TransportSocket, "the engine shares --socket-dir with sandboxd"
		}
	}
	r.transportChosen = true
	r.log.Info("contexts are reached through "+map[string]string{
		TransportSocket: "a unix socket in --socket-dir",
		TransportExec:   "relays over the engine's exec API",
	}[r.transport], "transport", r.transport, "because", how)
	return r.transport, nil
}

// sharesSocketDir reports whether containers of the engine see SocketDir
// as the daemon does. A mount the engine refuses (Docker Desktop shares
// only some paths) or a directory it does not have means they do not.
func (r *Runtime) sharesSocketDir(ctx context.Context, image string) (bool, error) {
	dir, err := os.MkdirTemp(r.cfg.SocketDir, "probe-")
	if err != nil {
		return false, fmt.Errorf("socket dir: %w", err)
	}
	defer os.RemoveAll(dir)
	// The probe runs as nobody.
	if err := os.Chmod(dir, 0o755); err != nil {
		return false, fmt.Errorf("socket dir: %w", err)
	}
	mark := uuid.NewString()
	if err := os.WriteFile(filepath.Join(dir, mark), nil, 0o644); err != nil {
		return false, fmt.Errorf("socket dir: %w", err)
	}
	created, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:      image,
			Entrypoint: []string{"test"},
			Cmd:        []string{"-e", "/probe/" + mark},
			User:       "65534",
			Labels:     map[string]string{labelProbe: r.cfg.Owner},
		},
		HostConfig: &container.HostConfig{
			NetworkMode:    "none",
			ReadonlyRootfs: true,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges"},
			Mounts:         []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: "/probe", ReadOnly: true}},
		},
	})
	if err != nil {
		if r.Ping(ctx) != nil {
			return false, translate(err, "create the socket dir probe")
		}
		r.log.Debug("the engine refuses to mount the socket dir", "error", err)
		return false, nil
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		r.cli.ContainerRemove(rctx, created.ID, client.ContainerRemoveOptions{Force: true})
		cancel()
	}()
	if _, err := r.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		if r.Ping(ctx) != nil {
			return false, translate(err, "start the socket dir probe")
		}
		r.log.Debug("the engine cannot mount the socket dir", "error", err)
		return false, nil
	}
	res := r.cli.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case w := <-res.Result:
		return w.StatusCode == 0, nil
	case err := <-res.Error:
		return false, translate(err, "wait for the socket dir probe")
	}
}

// dialExec connects to the unix socket at path in inst's container through
// a relay exec, as the context's user.
func (r *Runtime) dialExec(ctx context.Context, inst contexts.Instance, path string) (net.Conn, error) {
	created, err := r.cli.ExecCreate(ctx, inst.ID, client.ExecCreateOptions{
		User:         contexts.ContextUser,
		AttachStdin:  true,
		AttachStdout: true,
		AttachStderr: true,
		Cmd:          relay.Command(path),
	})
	if err != nil {
		return nil, translate(err, "create the relay in "+inst.ID)
	}
	att, err := r.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return nil, translate(err, "start the relay in "+inst.ID)
	}
	c := &execConn{Conn: att.Conn, r: att.Reader}
	// The relay says so once connected, or fails with a reason on stderr.
	stop := context.AfterFunc(ctx, func() { att.Conn.SetReadDeadline(time.Now()) })
	var ok [1]byte
	_, err = io.ReadFull(c, ok[:])
	if !stop() || err == nil && ok[0] != relay.Connected {
		err = errors.Join(err, ctx.Err(), errors.New("the relay did not connect"))
	}
	if err != nil {
		att.Close()
		if msg := c.stderr(); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return nil, fmt.Errorf("relay to %s in %s: %w", path, inst.ID, err)
	}
	att.Conn.SetReadDeadline(time.Time{})
	return c, nil
}

// execConn is a connection carried by an exec's stdin and stdout: writes
// go to its stdin as they are; reads take its stdout out of the engine's
// stream, in which each chunk of stdout or stderr comes after a header of
// 8 bytes: the stream, 3 zero bytes, and the chunk's length (big endian).
type execConn struct {
	net.Conn
	r    *bufio.Reader
	left int // of the stdout chunk being read

	mu   sync.Mutex
	errs []byte // the last of what the relay wrote to stderr
}

var _ net.Conn = (*execConn)(nil)

func (c *execConn) Read(p []byte) (int, error) {
	for c.left == 0 {
		var h [8]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			return 0, err
		}
		n := int(binary.BigEndian.Uint32(h[4:]))
		if h[0] == 1 {
			c.left = n
			continue
		}
		msg, err := io.ReadAll(io.LimitReader(c.r, int64(n)))
		c.mu.Lock()
		c.errs = append(c.errs, msg...)
		c.errs = c.errs[max(len(c.errs)-1024, 0):]
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	n, err := c.r.Read(p[:min(len(p), c.left)])
	c.left -= n
	if err == io.EOF && c.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (c *execConn) stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.errs)
}
