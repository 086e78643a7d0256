package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Podman serves the Docker engine API too (`podman system service`), with
// differences that matter here, each handled where it arises; isPodman
// tells which engine answers.

// podmanComponent is the name of the component Podman lists in /version.
const podmanComponent = "Podman Engine"

// isPodman reports whether the engine is Podman. It asks once; a failure
// to ask is not kept, so the next call asks again.
func (r *Runtime) isPodman(ctx context.Context) (bool, error) {
	if p := r.podman.Load(); p != nil {
		return *p, nil
	}
	v, err := r.cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return false, translate(err, "docker version")
	}
	p := false
	for _, c := range v.Components {
		p = p || c.Name == podmanComponent
	}
	r.podman.Store(&p)
	return p, nil
}

// securityOpts are the security options of a container reached through
// transport: no new privileges, and the seccomp profile r.seccomp.
func (r *Runtime) securityOpts(ctx context.Context, transport string) ([]string, error) {
	seccomp, err := r.seccompOpt(ctx, transport)
	if err != nil {
		return nil, err
	}
	if seccomp == "" {
		return []string{"no-new-privileges"}, nil
	}
	return []string{"no-new-privileges", seccomp}, nil
}

// seccompOpt is the security option that gives containers r.seccomp. The
// Docker engine takes the profile itself; Podman takes the path of a file
// on its host, as its CLI does, so the profile is written into the socket
// directory, which is on the engine's host with TransportSocket. With
// TransportExec no file of the daemon's is, and containers get Podman's
// default profile: "" (said in the log, once).
func (r *Runtime) seccompOpt(ctx context.Context, transport string) (string, error) {
	podman, err := r.isPodman(ctx)
	if err != nil || !podman {
		return "seccomp=" + r.seccomp, err
	}
	if transport != TransportSocket {
		r.podmanProfileOnce.Do(func() {
			r.log.Warn("contexts get Podman's default seccomp profile, which allows ptrace: Podman takes a profile only as a file on its host, and this daemon shares none with it")
		})
		return "", nil
	}
	path := filepath.Join(r.cfg.SocketDir, "seccomp-profile.json")
	// Written whole or not at all: another daemon sharing the directory
	// may be starting a container with it.
	tmp, err := os.CreateTemp(r.cfg.SocketDir, "seccomp-profile-*.tmp")
	if err == nil {
		_, err = tmp.WriteString(r.seccomp)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		return "", fmt.Errorf("write seccomp profile: %w", err)
	}
	return "seccomp=" + path, nil
}

// socketTmpfs are the options of the tmpfs the server makes its socket in,
// with TransportExec: owned by the context's user. Docker takes its uid
// and gid; Podman takes neither, but U, which gives the tmpfs to the
// container's user. A mode alone would not do: both engines copy the
// image's directory, owned by root, over it.
func (r *Runtime) socketTmpfs(ctx context.Context) (string, error) {
	const opts = "rw,nosuid,nodev,noexec,size=1m,mode=0700,"
	podman, err := r.isPodman(ctx)
	if err != nil {
		return "", err
	}
	if podman {
		return opts + "U", nil
	}
	uid, gid, _ := strings.Cut(contexts.ContextUser, ":")
	return opts + "uid=" + uid + ",gid=" + gid, nil
}

// Podman ignores the driver options of a container's anonymous volume, so
// a sized /workspace would be the host's disk. There the workspace's
// device is a named volume of its own, made before the container and
// removed after it.

// workspaceVolume names context id's workspace volume on Podman.
func workspaceVolume(id string) string { return "sandboxd-" + id + "-workspace" }

// createWorkspaceVolume makes w's named volume on Podman, and does nothing
// on Docker.
func (r *Runtime) createWorkspaceVolume(ctx context.Context, id string, w *workspace) error {
	if podman, err := r.isPodman(ctx); err != nil || !podman {
		return err
	}
	d := w.mount().VolumeOptions.DriverConfig
	_, err := r.cli.VolumeCreate(ctx, client.VolumeCreateOptions{
		Name:       workspaceVolume(id),
		Driver:     d.Name,
		DriverOpts: d.Options,
		Labels:     map[string]string{labelOwner: r.cfg.Owner, labelContextID: id},
	})
	if err != nil {
		return translate(err, "create the workspace volume of "+id)
	}
	w.volume = workspaceVolume(id)
	return nil
}

// removeWorkspaceVolume removes context id's workspace volume on Podman:
// a container's removal keeps its named volumes.
func (r *Runtime) removeWorkspaceVolume(ctx context.Context, id string) error {
	if podman, err := r.isPodman(ctx); err != nil || !podman {
		return err
	}
	_, err := r.cli.VolumeRemove(ctx, workspaceVolume(id), client.VolumeRemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return translate(err, "remove the workspace volume of "+id)
	}
	return nil
}

// pruneWorkspaceVolumes removes this daemon's workspace volumes on Podman
// whose contexts have no container.
func (r *Runtime) pruneWorkspaceVolumes(ctx context.Context, live map[string]bool) error {
	if podman, err := r.isPodman(ctx); err != nil || !podman {
		return err
	}
	res, err := r.cli.VolumeList(ctx, client.VolumeListOptions{
		Filters: make(client.Filters).Add("label", labelOwner+"="+r.cfg.Owner),
	})
	if err != nil {
		return translate(err, "list volumes")
	}
	var errs []error
	for _, v := range res.Items {
		if id := v.Labels[labelContextID]; id != "" && !live[id] && v.Name == workspaceVolume(id) {
			errs = append(errs, r.removeWorkspaceVolume(ctx, id))
		}
	}
	return errors.Join(errs...)
}
