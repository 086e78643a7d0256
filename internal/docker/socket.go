package docker

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// removeDir removes an empty socket directory; "" is none.
func removeDir(dir string) {
	if dir != "" {
		os.Remove(dir)
	}
}

// socketDir returns inst's socket directory, as its label names it, if it
// is the one Start makes: the directory named by the context id, in
// SocketDir. A label is never trusted to name another path: Remove deletes
// it, and /run/sandboxd/.. would be /run.
func (r *Runtime) socketDir(inst contexts.Instance) (string, bool) {
	dir, id := inst.Labels[labelSocketDir], inst.Labels[labelContextID]
	if id == "" || id == "." || id == ".." || strings.ContainsRune(id, '/') {
		return dir, false
	}
	return dir, dir == filepath.Join(r.cfg.SocketDir, id)
}

// Dial connects to the container's Jupyter server: through its socket
// directory when the container has one (TransportSocket), through a relay
// exec otherwise.
//
// Once the socket is in the directory, the directory is sealed: made
// read-only to the container, so that nothing of the container's can
// replace the socket (with a link to a socket of the host's, say) and lead
// the daemon elsewhere. A relay runs in the container as its user, so it
// can reach nothing the context's code cannot.
func (r *Runtime) Dial(ctx context.Context, inst contexts.Instance) (net.Conn, error) {
	if _, ok := inst.Labels[labelSocketDir]; !ok {
		return r.dialExec(ctx, inst, socketInContainer+"/"+jupyterSocket)
	}
	dir, ok := r.socketDir(inst)
	if !ok {
		return nil, fmt.Errorf("dial %s: no socket directory", inst.ContextID)
	}
	sock := filepath.Join(dir, jupyterSocket)
	if _, err := os.Lstat(sock); err == nil {
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, fmt.Errorf("seal %s: %w", dir, err)
		}
	}
	return (&net.Dialer{}).DialContext(ctx, "unix", sock)
}
