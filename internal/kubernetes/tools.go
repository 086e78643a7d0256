package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Endpoint returns a dialer for a context's Jupyter server, reached as
// the daemon reaches it (Config.Transport), and the server's token. Tools
// that measure sandboxd against a bare kernel use it; the daemon itself
// keeps both from Start. It asks the API server, not the watch, so that
// any Owner will do.
func (r *Runtime) Endpoint(ctx context.Context, contextID string) (dial func(context.Context) (net.Conn, error), token string, err error) {
	name := podName(contextID)
	secret, err := r.cs.CoreV1().Secrets(r.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, "", unavailable(err, "get secret "+name)
	}
	token = string(secret.Data[secretToken])
	if token == "" {
		return nil, "", fmt.Errorf("secret %s has no token", name)
	}
	inst := contexts.Instance{ContextID: contextID, ID: name}
	if r.cfg.Transport == TransportExec {
		return func(ctx context.Context) (net.Conn, error) { return r.dialExec(ctx, inst) }, token, nil
	}
	pod, err := r.cs.CoreV1().Pods(r.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, "", unavailable(err, "get pod "+name)
	}
	if pod.Status.PodIP == "" {
		return nil, "", fmt.Errorf("pod %s has no address yet", name)
	}
	addr := net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(jupyterPort))
	return func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}, token, nil
}

// MemoryUsage returns the memory a context's pod uses now, in bytes, as
// docker stats counts a container's: its cgroup's usage less the page
// cache the kernel can drop at once (inactive files). It reads the
// container's cgroup (v2, or v1 on older nodes) from inside, so it needs
// no metrics server.
func (r *Runtime) MemoryUsage(ctx context.Context, contextID string) (uint64, error) {
	var out, stderr bytes.Buffer
	inst := contexts.Instance{ContextID: contextID, ID: podName(contextID)}
	code, err := r.exec(ctx, inst, []string{"sh", "-c", readMemory}, nil, &out, &stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("cat exited with %d: %s", code, bytes.TrimSpace(stderr.Bytes()))
	}
	if err != nil {
		return 0, fmt.Errorf("memory of %s: %w", inst.ID, err)
	}
	usage, err := parseMemory(&out)
	if err != nil {
		return 0, fmt.Errorf("memory of %s: %w", inst.ID, err)
	}
	return usage, nil
}

// readMemory prints the cgroup's usage, then its memory.stat.
const readMemory = `cd /sys/fs/cgroup && { cat memory.current memory.stat 2>/dev/null || cat memory/memory.usage_in_bytes memory/memory.stat; }`

// parseMemory reads a cgroup's usage followed by its memory.stat. v1's
// also says total_inactive_file, the same for a container's cgroup, which
// has none below it.
func parseMemory(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return 0, errors.New("no memory usage")
	}
	usage, err := strconv.ParseUint(strings.TrimSpace(sc.Text()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memory usage: %w", err)
	}
	for sc.Scan() {
		line := strings.TrimPrefix(sc.Text(), "total_")
		v, ok := strings.CutPrefix(line, "inactive_file ")
		if !ok {
			continue
		}
		inactive, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("memory.stat: inactive_file: %w", err)
		}
		if inactive < usage {
			usage -= inactive
		}
		break
	}
	return usage, sc.Err()
}
