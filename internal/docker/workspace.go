package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/mount"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// A sized /workspace. No storage driver here bounds a volume (neither
// fuse-overlayfs nor overlay2 on ext4 takes --storage-opt size, which
// would not apply to a volume anyway), so with Config.WorkspaceSize set
// each context's /workspace is a file system of its own: a sparse file of
// that size, formatted ext4 and attached to a loop device, which the engine
// mounts as the container's volume. A full one answers ENOSPC inside the
// context; the host's disk never fills.
//
// The loop device clears itself once the engine unmounts the volume (when
// the container is removed); Remove then deletes the file. This needs the
// daemon to run as root on the engine's host, with loop devices and
// mkfs.ext4 and debugfs (Debian's e2fsprogs).

// workspace is a context's file system image while its container starts.
type workspace struct {
	image  string
	loop   *os.File // open until the engine has mounted it: closing an unmounted autoclear device detaches it
	volume string   // the named volume of loop, on Podman (see podman.go)
}

// CheckWorkspaces says what is missing to make sized workspaces here, with
// their images in dir, or returns nil when nothing is. It makes and
// attaches a small one, as a context's would be.
func CheckWorkspaces(dir string) error {
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("--workspace-size needs %s (Debian's e2fsprogs): %w", tool, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	image := filepath.Join(dir, "check.img")
	os.Remove(image) // left by a check that was cut short
	defer os.Remove(image)
	loop, err := makeImage(context.Background(), image, 8<<20)
	if err != nil {
		return fmt.Errorf("--workspace-size needs loop devices, and sandboxd running as root on the Docker engine's host: %w", err)
	}
	loop.Close()
	return nil
}

// makeWorkspace makes and attaches the image of context id's /workspace.
func (r *Runtime) makeWorkspace(ctx context.Context, id string) (*workspace, error) {
	image := r.workspaceImage(id)
	loop, err := makeImage(ctx, image, r.cfg.WorkspaceSize)
	if err != nil {
		return nil, fmt.Errorf("workspace of %s: %w", id, err)
	}
	w := &workspace{image: image, loop: loop}
	if err := r.createWorkspaceVolume(ctx, id, w); err != nil {
		loop.Close()
		os.Remove(image)
		return nil, err
	}
	return w, nil
}

// makeImage makes an empty file system of size bytes at image, owned by
// the contexts' user, and returns the loop device it is attached to, open.
// On failure it leaves no image behind.
func makeImage(ctx context.Context, image string, size int64) (*os.File, error) {
	f, err := os.OpenFile(image, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	f.Close()
	if err == nil {
		// No journal: the file system lives as long as its container, and a
		// crash loses nothing anyone keeps. lost+found would show in every
		// listing of /workspace.
		err = runTool(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
			"-E", "root_owner="+contexts.ContextUser, image)
	}
	if err == nil {
		err = runTool(ctx, "debugfs", "-w", "-R", "rmdir lost+found", image)
	}
	var loop *os.File
	if err == nil {
		loop, err = attachLoop(image)
	}
	if err != nil {
		os.Remove(image)
		return nil, err
	}
	return loop, nil
}

// mount is the container's /workspace: a volume of the loop device,
// removed with the container.
func (w *workspace) mount() mount.Mount {
	if w.volume != "" {
		return mount.Mount{Type: mount.TypeVolume, Source: w.volume, Target: contexts.DefaultWorkingDir}
	}
	return mount.Mount{
		Type:   mount.TypeVolume,
		Target: contexts.DefaultWorkingDir,
		VolumeOptions: &mount.VolumeOptions{DriverConfig: &mount.Driver{
			Name: "local",
			// noinit_itable: the image is sparse, so its inode tables read
			// as zeros already; writing them would only use the host's disk.
			Options: map[string]string{"type": "ext4", "device": w.loop.Name(), "o": "nosuid,nodev,noinit_itable"},
		}},
	}
}

// release lets the loop device go once nothing uses it; the image stays
// until removeWorkspace.
func (w *workspace) release() {
	if w != nil {
		w.loop.Close()
	}
}

func (r *Runtime) workspaceImage(id string) string {
	return filepath.Join(r.cfg.WorkspaceDir, id+".img")
}

// removeWorkspace deletes context id's image, if it has one, and its
// volume on Podman. Its loop device has cleared itself when the
// container's volume was unmounted.
func (r *Runtime) removeWorkspace(ctx context.Context, id string) error {
	if r.cfg.WorkspaceSize <= 0 || id == "" {
		return nil
	}
	err := r.removeWorkspaceVolume(ctx, id)
	if rerr := os.Remove(r.workspaceImage(id)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// PruneWorkspaces deletes the images of contexts that have no container:
// those a previous run left when its containers were removed behind its
// back.
func (r *Runtime) PruneWorkspaces(ctx context.Context) error {
	if r.cfg.WorkspaceSize <= 0 {
		return nil
	}
	insts, err := r.List(ctx)
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, inst := range insts {
		live[inst.ContextID] = true
	}
	images, _ := filepath.Glob(filepath.Join(r.cfg.WorkspaceDir, "ctx-*.img"))
	errs := []error{r.pruneWorkspaceVolumes(ctx, live)}
	for _, image := range images {
		if id := strings.TrimSuffix(filepath.Base(image), ".img"); !live[id] {
			errs = append(errs, os.Remove(image))
		}
	}
	return errors.Join(errs...)
}

// attachLoop attaches image to a free loop device that detaches itself
// when last closed and unmounted, and returns the device, open.
func attachLoop(image string) (*os.File, error) {
	backing, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	// Another process may take the free device first: then ask again.
	for range 10 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		loop, err := os.OpenFile("/dev/loop"+strconv.Itoa(n), os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		err = unix.IoctlLoopConfigure(int(loop.Fd()), &unix.LoopConfig{
			Fd:   uint32(backing.Fd()),
			Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR},
		})
		if err == nil {
			return loop, nil
		}
		loop.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("attach %s: %w", loop.Name(), err)
		}
	}
	return nil, errors.New("no free loop device")
}

// runTool runs a program of e2fsprogs, its output kept for the error.
func runTool(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
