package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Endpoint returns a dialer for a context's Jupyter server, reached as
// the daemon reaches it, and the server's token. Tools that measure
// sandboxd against a bare kernel use it; the daemon itself keeps both from
// Start. The socket of a context reached through its socket directory is
// looked for in SocketDir first, then where its label says: a tool may see
// the directory at another path than the daemon.
func (r *Runtime) Endpoint(ctx context.Context, contextID string) (dial func(context.Context) (net.Conn, error), token string, err error) {
	res, err := r.cli.ContainerInspect(ctx, "sandboxd-"+contextID, client.ContainerInspectOptions{})
	if err != nil {
		return nil, "", translate(err, "inspect container of "+contextID)
	}
	c := res.Container
	if c.Config == nil {
		return nil, "", fmt.Errorf("inspect container of %s: no config", contextID)
	}
	for _, env := range c.Config.Env {
		if v, ok := strings.CutPrefix(env, "JUPYTER_TOKEN="); ok {
			token = v
		}
	}
	if token == "" {
		return nil, "", fmt.Errorf("inspect container of %s: no JUPYTER_TOKEN", contextID)
	}
	dir, shared := c.Config.Labels[labelSocketDir]
	if !shared {
		inst := contexts.Instance{ContextID: contextID, ID: c.ID}
		return func(ctx context.Context) (net.Conn, error) {
			return r.dialExec(ctx, inst, socketInContainer+"/"+jupyterSocket)
		}, token, nil
	}
	socket := filepath.Join(r.cfg.SocketDir, contextID, jupyterSocket)
	if _, err := os.Stat(socket); err != nil {
		socket = filepath.Join(dir, jupyterSocket)
	}
	return func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}, token, nil
}

// MemoryUsage returns the memory a context's container uses now, in bytes,
// computed as docker stats does: the page cache the kernel can drop at once
// (inactive files) does not count.
func (r *Runtime) MemoryUsage(ctx context.Context, contextID string) (uint64, error) {
	res, err := r.cli.ContainerStats(ctx, "sandboxd-"+contextID, client.ContainerStatsOptions{})
	if err != nil {
		return 0, translate(err, "stats of "+contextID)
	}
	defer res.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return 0, fmt.Errorf("stats of %s: decode: %w", contextID, err)
	}
	m := s.MemoryStats
	// cgroup v1 names it total_inactive_file, v2 inactive_file; engines
	// before 19.03 subtracted the whole cache.
	for _, key := range []string{"total_inactive_file", "inactive_file", "cache"} {
		if v, ok := m.Stats[key]; ok {
			if v < m.Usage {
				return m.Usage - v, nil
			}
			break
		}
	}
	return m.Usage, nil
}
