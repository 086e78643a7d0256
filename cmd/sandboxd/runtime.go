package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/docker"
	"github.com/sandboxd/sandboxd/internal/egress"
	"github.com/sandboxd/sandboxd/internal/kubernetes"
)

// newDockerRuntime makes the Docker runtime cfg describes, checks it against the
// engine, and says in the log what it can and cannot do there: sized
// workspaces, the transport to the kernels, the engine host's addresses
// for egress.
func newDockerRuntime(ctx context.Context, cfg config, log *slog.Logger) (*docker.Runtime, error) {
	// Images are kept per daemon name, so that each prunes only its own.
	workspaceDir := filepath.Join(cfg.WorkspaceDir, cfg.Name)
	workspaceBytes := int64(cfg.WorkspaceSize)
	if workspaceBytes != 0 {
		err := docker.CheckWorkspaces(workspaceDir)
		switch {
		case err == nil && workspaceBytes < 0:
			workspaceBytes = autoWorkspaceSize
		case err != nil && workspaceBytes > 0:
			return nil, err
		case err != nil:
			log.Warn("contexts' /workspace is unbounded: sized workspaces cannot be made here", "reason", err)
			workspaceBytes = 0
		}
	}
	var egressProxy *egress.Proxy
	if cfg.AllowEgress {
		egressProxy = &egress.Proxy{Logger: log, Ports: cfg.EgressPorts, MaxConns: cfg.EgressMaxConns}
	}
	rt, err := docker.New(docker.Config{
		Owner:         cfg.Name,
		SocketDir:     cfg.SocketDir,
		Transport:     cfg.Transport,
		StateDir:      cfg.StateDir,
		Log:           log,
		Network:       cfg.Network,
		Runtime:       cfg.Runtime,
		Egress:        egressProxy,
		WorkspaceSize: workspaceBytes,
		WorkspaceDir:  workspaceDir,
		Limits: docker.Limits{
			Memory:   int64(cfg.Memory),
			CPUs:     cfg.CPUs,
			Pids:     cfg.Pids,
			NoFile:   cfg.NoFile,
			FileSize: int64(cfg.MaxFileSize),
			TmpSize:  int64(cfg.TmpSize),
		},
	})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = rt.CheckRuntime(cctx)
	cancel()
	if contexts.Code(err) == contexts.CodeRuntimeUnavailable {
		log.Warn("cannot check the runtime: the Docker engine is not answering", "runtime", cfg.Runtime)
	} else if err != nil {
		rt.Close()
		return nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	transport, err := rt.Transport(tctx, cfg.Image)
	cancel()
	switch {
	case err != nil:
		log.Warn("cannot choose how to reach contexts yet: the Docker engine is not answering; the first context chooses", "error", err)
	case transport == docker.TransportExec && cfg.WorkspaceSize > 0:
		rt.Close()
		return nil, errors.New("--workspace-size needs --transport socket: a sized workspace is a loop device of the daemon's host, which only an engine on that host can mount")
	case transport == docker.TransportExec && workspaceBytes > 0:
		log.Warn("contexts' /workspace is unbounded: sized workspaces need the engine to share the daemon's files")
	}
	if egressProxy != nil {
		// The proxy refuses its own interfaces' addresses, but in a
		// container those are not the engine host's: read the host's too.
		egressProxy.Deny = func() []netip.Prefix { return slices.Concat(cfg.EgressDeny, rt.HostAddrs()) }
		if err := rt.WatchHostAddrs(cfg.Image, 5*time.Minute, log); err != nil {
			log.Warn("egress: cannot read the Docker engine host's addresses, so where sandboxd runs in a container contexts may reach the host's public ones; list them with --egress-deny", "error", err)
		} else {
			log.Info("egress refuses the Docker engine host's addresses", "addrs", fmt.Sprint(rt.HostAddrs()))
		}
	}
	return rt, nil
}

// dockerPlatform removes, after recovery, the sized workspaces of the
// contexts that were not taken over.
type dockerPlatform struct{ *docker.Runtime }

func (p dockerPlatform) AfterRecover(ctx context.Context) error { return p.PruneWorkspaces(ctx) }

// Replicas is nil: contexts on Docker are one daemon's.
func (dockerPlatform) Replicas(context.Context, kubernetes.Adopter, string) (replicaSet, error) {
	return nil, nil
}
