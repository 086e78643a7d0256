package main

import (
	"context"
	"net"
	"time"

	"github.com/sandboxd/sandboxd/internal/docker"
	"github.com/sandboxd/sandboxd/internal/kubernetes"
)

// servers reaches contexts' Jupyter servers directly, the way the daemon
// does, for the floor, and measures contexts' memory. It is the one place
// that knows which platform the daemon runs contexts on.
type servers interface {
	// Endpoint returns a dialer for the context's server and its token.
	Endpoint(ctx context.Context, contextID string) (dial func(context.Context) (net.Conn, error), token string, err error)
	// MemoryUsage returns the bytes the context's container or pod uses.
	MemoryUsage(ctx context.Context, contextID string) (uint64, error)
	Close() error
}

// connectServers connects to the platform of the daemon measured: the
// cluster --kubeconfig names, or else the Docker engine.
func connectServers(ctx context.Context, cfg config) (servers, error) {
	if cfg.Kubeconfig == "" {
		return docker.Connect(docker.Config{SocketDir: cfg.SocketDir})
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return kubernetes.New(ctx, kubernetes.Config{
		Kubeconfig: cfg.Kubeconfig,
		Namespace:  cfg.KubeNamespace,
		Transport:  cfg.KubeTransport,
		// The bench drives no pods: it looks each one up by name.
		Owner: "sandboxd-bench",
	})
}
