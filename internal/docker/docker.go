// Package docker runs contexts' containers on a Docker engine. It is the
// only package that imports the Docker SDK.
package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/egress"
)

// Labels every container of ours carries. The sandboxd. prefix is ours.
const (
	labelOwner     = "sandboxd.owner"
	labelContextID = "sandboxd.context_id"
	labelSocketDir = "sandboxd.socket_dir"
)

// socketInContainer is the directory where the container's Jupyter server
// makes its socket, jupyterSocket.
const (
	socketInContainer = "/run/sandboxd"
	jupyterSocket     = "jupyter.sock"
)

// Limits are the resource limits of every context's container.
type Limits struct {
	Memory int64   // bytes
	CPUs   float64 // cores
	Pids   int64
	NoFile int64 // open files
	// FileSize caps the size of any one file a context writes, in bytes:
	// the storage driver bounds no volume, so this is what keeps one
	// runaway write from filling the host's disk.
	FileSize int64
	TmpSize  int64 // bytes of the /tmp tmpfs; it counts against Memory
}

func (l Limits) ulimits() []*container.Ulimit {
	u := []*container.Ulimit{{Name: "nofile", Soft: l.NoFile, Hard: l.NoFile}}
	if l.FileSize > 0 {
		u = append(u, &container.Ulimit{Name: "fsize", Soft: l.FileSize, Hard: l.FileSize})
	}
	return u
}

// gvisorThreadsPerProcess is how many host threads gVisor's ptrace
// platform may use for each process in the sandbox.
const gvisorThreadsPerProcess = 16

// resources are the container's cgroup limits and ulimits. Under gVisor,
// which runs the sandbox's processes on host threads of its own, the pids
// cgroup only bounds the whole sandbox, with room for those threads (at
// the limit, the sandbox itself would die); the limit on processes is
// RLIMIT_NPROC, which gVisor's kernel enforces inside. Under runc that
// rlimit would count the uid's processes in every context together.
func (r *Runtime) resources() container.Resources {
	l := r.cfg.Limits
	pids, ulimits := l.Pids, l.ulimits()
	if r.cfg.Runtime == "runsc" {
		pids = l.Pids * gvisorThreadsPerProcess
		ulimits = append(ulimits, &container.Ulimit{Name: "nproc", Soft: l.Pids, Hard: l.Pids})
	}
	return container.Resources{
		Memory:     l.Memory,
		MemorySwap: l.Memory, // no swap beyond the limit
		NanoCPUs:   int64(l.CPUs * 1e9),
		PidsLimit:  &pids,
		Ulimits:    ulimits,
	}
}

// Config says how containers are made.
type Config struct {
	// Owner names this daemon on its containers, so that several daemons can
	// share an engine and each finds only its own.
	Owner string
	// SocketDir holds one directory per context, shared with its container,
	// where the Jupyter server makes its unix socket, when Transport is
	// TransportSocket. When sandboxd itself runs in a container, it must be
	// the same path on the host.
	SocketDir string
	// Transport is how the daemon reaches the contexts' Jupyter servers:
	// TransportSocket, TransportExec, or TransportAuto ("" too).
	Transport string
	// StateDir keeps the contexts' records, for a restart of the daemon to
	// take them over; "" is SocketDir.
	StateDir string
	Network  string // the containers' network mode: none by default
	// Runtime is the OCI runtime the engine runs containers with: empty for
	// the engine's default (runc), runsc for gVisor.
	Runtime string
	// Egress serves the contexts that ask for networking; nil refuses them.
	Egress *egress.Proxy
	// WorkspaceSize, when positive, gives each context a /workspace of
	// that many bytes, as an image file in WorkspaceDir (see workspace.go).
	WorkspaceSize int64
	WorkspaceDir  string
	Limits        Limits
	Log           *slog.Logger // nil: discard
}

// Runtime runs contexts as Docker containers.
type Runtime struct {
	cli     *client.Client
	cfg     Config
	seccomp string // the containers' seccomp profile, as JSON

	egressMu sync.Mutex
	egress   map[string]net.Listener // by context id: where its proxy is served

	log *slog.Logger

	transportMu     sync.Mutex
	transport       string // TransportAuto until Transport chooses
	transportChosen bool

	hostAddrs         atomic.Pointer[[]netip.Prefix] // the engine host's, for egress
	podman            atomic.Pointer[bool]           // whether the engine is Podman, once known
	podmanProfileOnce sync.Once
	watching          context.Context // ends at Close: stops watchers
	stopWatch         context.CancelFunc
	watchers          sync.WaitGroup
}

var _ contexts.Runtime = (*Runtime)(nil)

// New connects to the engine named by the DOCKER_* environment. The API
// version is negotiated, so older engines work.
func New(cfg Config) (*Runtime, error) {
	if err := os.MkdirAll(cfg.SocketDir, 0o711); err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	}
	return Connect(cfg)
}

// Close stops serving egress and releases the client.
func (r *Runtime) Close() error {
	r.stopWatch()
	r.watchers.Wait()
	r.egressMu.Lock()
	for id, l := range r.egress {
		l.Close()
		delete(r.egress, id)
	}
	r.egressMu.Unlock()
	return r.cli.Close()
}

// Ping checks that the engine answers.
func (r *Runtime) Ping(ctx context.Context) error {
	_, err := r.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	return translate(err, "ping docker")
}

// CheckRuntime fails when the engine answers but has no runtime of the
// configured name, saying how to register gVisor's.
func (r *Runtime) CheckRuntime(ctx context.Context) error {
	if r.cfg.Runtime == "" {
		return nil
	}
	res, err := r.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return translate(err, "docker info")
	}
	if _, ok := res.Info.Runtimes[r.cfg.Runtime]; ok {
		return nil
	}
	known := slices.Sorted(maps.Keys(res.Info.Runtimes))
	msg := fmt.Sprintf("the Docker engine has no runtime %q (it has %s)", r.cfg.Runtime, strings.Join(known, ", "))
	if r.cfg.Runtime == "runsc" {
		msg += `; register gVisor in /etc/docker/daemon.json as "runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--host-uds=all", "--network=none"]}} and reload the engine (scripts/enable-gvisor.sh does both)`
	}
	return errors.New(msg)
}

// HasImage reports whether the engine has image.
func (r *Runtime) HasImage(ctx context.Context, image string) (bool, error) {
	_, err := r.cli.ImageInspect(ctx, image)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, translate(err, "inspect image "+image)
}

// Start creates and starts a context's container.
func (r *Runtime) Start(ctx context.Context, spec contexts.Spec) (contexts.Instance, error) {
	transport, err := r.Transport(ctx, spec.Image)
	if err != nil {
		return contexts.Instance{}, err
	}
	security, err := r.securityOpts(ctx, transport)
	if err != nil {
		return contexts.Instance{}, err
	}
	labels := map[string]string{
		labelOwner:     r.cfg.Owner,
		labelContextID: spec.ContextID,
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	l := r.cfg.Limits
	tmpfs := map[string]string{"/tmp": "rw,nosuid,nodev,size=" + strconv.FormatInt(l.TmpSize, 10)}
	var mounts []mount.Mount
	dir := ""
	if transport == TransportSocket {
		dir = filepath.Join(r.cfg.SocketDir, spec.ContextID)
		// The kernel runs as a uid of its own that must create its socket
		// here; the parent directory keeps everyone else out.
		if err := os.Mkdir(dir, 0o777); err != nil {
			return contexts.Instance{}, fmt.Errorf("socket dir: %w", err)
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			os.Remove(dir)
			return contexts.Instance{}, fmt.Errorf("socket dir: %w", err)
		}
		labels[labelSocketDir] = dir
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: dir, Target: socketInContainer})
	} else {
		// The root is read-only: the server makes its socket in a tmpfs of
		// the context user's own.
		opts, err := r.socketTmpfs(ctx)
		if err != nil {
			return contexts.Instance{}, err
		}
		tmpfs[socketInContainer] = opts
	}
	inst := contexts.Instance{ContextID: spec.ContextID, Labels: labels}

	// An anonymous volume: removed with the container.
	workspaceMount := mount.Mount{Type: mount.TypeVolume, Target: contexts.DefaultWorkingDir}
	// A sized workspace is a loop device of the daemon's host: only an
	// engine that shares the daemon's files can mount it.
	if r.cfg.WorkspaceSize > 0 && transport == TransportSocket {
		ws, err := r.makeWorkspace(ctx, spec.ContextID)
		if err != nil {
			removeDir(dir)
			return contexts.Instance{}, err
		}
		// Once the container started, its mount holds the loop device.
		defer ws.release()
		workspaceMount = ws.mount()
	}

	name := "sandboxd-" + spec.ContextID
	created, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:      spec.Image,
			User:       contexts.ContextUser, // an image without USER would run as root
			Entrypoint: spec.Cmd,             // nil keeps the image's
			Env:        []string{"JUPYTER_TOKEN=" + spec.Token},
			Labels:     labels,
		},
		HostConfig: &container.HostConfig{
			NetworkMode:    container.NetworkMode(r.cfg.Network),
			Runtime:        r.cfg.Runtime,
			ReadonlyRootfs: true,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    security,
			Tmpfs:          tmpfs,
			Mounts:         append(mounts, workspaceMount),
			Resources:      r.resources(),
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			// The engine may have made the container after all, and nobody
			// else knows of it: remove it by name.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			r.cli.ContainerRemove(rctx, name, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
			cancel()
		}
		removeDir(dir)
		r.removeWorkspace(context.WithoutCancel(ctx), spec.ContextID)
		if cerrdefs.IsNotFound(err) {
			return contexts.Instance{}, &contexts.Error{Code: contexts.CodeRuntimeUnavailable,
				Message: fmt.Sprintf("the kernel image %s is not in the Docker engine; build it with 'make images'", spec.Image), Err: err}
		}
		return contexts.Instance{}, translate(err, "create container")
	}
	inst.ID = created.ID
	if _, err := r.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		r.Remove(context.WithoutCancel(ctx), inst)
		return contexts.Instance{}, translate(err, "start container")
	}
	return inst, nil
}

// Store keeps the contexts' records in StateDir, which only the daemon
// reads.
func (r *Runtime) Store() contexts.Store { return contexts.DirStore(r.cfg.StateDir) }

// Remove removes the container, its volume and its socket directory. A
// container already gone counts as removed.
func (r *Runtime) Remove(ctx context.Context, inst contexts.Instance) error {
	r.closeEgress(inst.ContextID)
	var errs []error
	if inst.ID != "" {
		_, err := r.cli.ContainerRemove(ctx, inst.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !gone(err) {
			errs = append(errs, translate(err, "remove container "+inst.ID))
		}
	}
	if dir, ok := r.socketDir(inst); ok {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.removeWorkspace(ctx, inst.ContextID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// List returns the containers this daemon owns, running or not.
func (r *Runtime) List(ctx context.Context) ([]contexts.Instance, error) {
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", labelOwner+"="+r.cfg.Owner),
	})
	if err != nil {
		return nil, translate(err, "list containers")
	}
	insts := make([]contexts.Instance, 0, len(res.Items))
	for _, c := range res.Items {
		insts = append(insts, contexts.Instance{
			ContextID: c.Labels[labelContextID],
			ID:        c.ID,
			Labels:    c.Labels,
			Running:   c.State == container.StateRunning,
		})
	}
	return insts, nil
}

// gone reports whether err means the container is already removed.
func gone(err error) bool {
	return cerrdefs.IsNotFound(err) || cerrdefs.IsNotModified(err) || cerrdefs.IsConflict(err) && isRemovalInProgress(err)
}

func isRemovalInProgress(err error) bool {
	return err != nil && containsFold(err.Error(), "removal of container") && containsFold(err.Error(), "already in progress")
}

// translate names the operation and marks an unreachable engine with
// CodeRuntimeUnavailable.
func translate(err error, op string) error {
	if err == nil {
		return nil
	}
	if client.IsErrConnectionFailed(err) || errors.Is(err, context.DeadlineExceeded) || cerrdefs.IsUnavailable(err) {
		return &contexts.Error{Code: contexts.CodeRuntimeUnavailable, Message: "the Docker engine cannot be reached", Err: fmt.Errorf("%s: %w", op, err)}
	}
	return fmt.Errorf("%s: %w", op, err)
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// Connect connects to the engine like New but makes no socket directory:
// for tools that only look at the containers of a running daemon.
func Connect(cfg Config) (*Runtime, error) {
	profile, err := seccompProfile()
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if cfg.Network == "" {
		cfg.Network = "none"
	}
	switch cfg.Transport {
	case "":
		cfg.Transport = TransportAuto
	case TransportAuto, TransportSocket, TransportExec:
	default:
		return nil, fmt.Errorf("transport %q is none of auto, socket, exec", cfg.Transport)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = cfg.SocketDir
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	watching, stopWatch := context.WithCancel(context.Background())
	return &Runtime{cli: cli, cfg: cfg, seccomp: profile, log: log, transport: cfg.Transport,
		egress: map[string]net.Listener{}, watching: watching, stopWatch: stopWatch}, nil
}
