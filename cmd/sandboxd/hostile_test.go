package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/docker"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// Code in a context cannot do what a sandbox must forbid; each attempt
// fails inside the container, and the context keeps serving.
func TestHostileCodeIsContained(t *testing.T) {
	d := startDaemon(t, hostileArgs(t)...)
	id := d.create(t)
	for _, tt := range hostileAttempts {
		t.Run(tt.name, func(t *testing.T) {
			e := d.execute(t, id, tt.code, 30)
			if e.Output.Stdout != tt.want {
				t.Errorf("stdout %q (stderr %q), want %q", e.Output.Stdout, e.Output.Stderr, tt.want)
			}
		})
	}
	if e := d.execute(t, id, "print('still serving')", 30); !strings.Contains(e.Output.Stdout, "still serving") {
		t.Errorf("after the attempts: %+v", e)
	}
}

// hostileArgs are the daemon flags the hostile attempts expect: a
// /workspace of 128 MiB.
func hostileArgs(t *testing.T) []string {
	return []string{"--workspace-size", "128m", "--workspace-dir", t.TempDir()}
}

// hostileAttempts are what code in a context must not get away with, and
// what it prints when it fails as it should.
var hostileAttempts = []struct {
	name, code, want string
}{
	{"io_uring", "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.syscall(425, 8, ctypes.create_string_buffer(120)), ctypes.get_errno())", "-1 1\n"},
	{"write outside workspace", "try:\n    open('/etc/owned', 'w')\nexcept OSError as e:\n    print(e.errno)", "30\n"},
	{"mount", "import subprocess\nprint(subprocess.run(['mount', '-t', 'tmpfs', 'x', '/mnt'], capture_output=True).returncode != 0)", "True\n"},
	{"raw socket", "import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\nexcept OSError as e:\n    print(e.errno)", "1\n"},
	{"network", "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=3)\nexcept OSError as e:\n    print(type(e).__name__)", "OSError\n"},
	{"ptrace", "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.ptrace(16, 1, 0, 0), ctypes.get_errno())", "-1 1\n"},
	// A link in its place would lead the daemon to a socket of the host's.
	{"replace the server's socket", "import os\ntry:\n    os.rename('/run/sandboxd/jupyter.sock', '/run/sandboxd/moved')\nexcept OSError as e:\n    print(e.errno)", "13\n"},
	{"host environ", "print(open('/proc/1/environ').read().count('SANDBOXD'))", "0\n"},
	{"connect to the host", "import socket\ntry:\n    socket.create_connection(('172.17.0.1', 2375), timeout=3)\nexcept OSError as e:\n    print(type(e).__name__)", "OSError\n"},
	{"fill /tmp", "import errno\ntry:\n    with open('/tmp/fill', 'wb') as f:\n        for _ in range(1024):\n            f.write(b'x' * (1 << 20))\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\nimport os; os.remove('/tmp/fill')", "ENOSPC\n"},
	{"fill /workspace", "import errno, os\ntry:\n    for i in range(64):\n        with open(f'fill{i}', 'wb') as f:\n            for _ in range(32):\n                f.write(b'x' * (1 << 20))\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\nfor n in os.listdir():\n    os.remove(n)", "ENOSPC\n"},
	{"one huge file in /workspace", "import errno\ntry:\n    with open('big', 'wb') as f:\n        f.seek((2 << 30) - 1)\n        f.write(b'x')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\nimport os; os.remove('big')", "EFBIG\n"},
}

// A fork bomb and a memory bomb hit their context's limits, not the host:
// another context keeps answering, and the bombed one comes back.
func TestBombsHitLimits(t *testing.T) {
	d := startDaemon(t)
	bystander, bombed := d.create(t), d.create(t)

	fork := d.execute(t, bombed, forkBomb, 60)
	if !strings.HasPrefix(fork.Output.Stdout, "stopped at the limit 11") {
		t.Errorf("fork bomb: %+v", fork)
	}
	if e := d.execute(t, bystander, "print(1)", 30); e.Output.Stdout != "1\n" {
		t.Errorf("bystander during the fork bomb: %+v", e)
	}

	mem := d.execute(t, bombed, memoryBomb, 120)
	if mem.Success || mem.Error == nil || (mem.Error.Name != "MemoryError" && mem.Error.Name != "KernelDied") {
		t.Errorf("4 GiB allocation: %+v", mem)
	}
	if e := d.execute(t, bystander, "print(2)", 30); e.Output.Stdout != "2\n" {
		t.Errorf("bystander after the memory bomb: %+v", e)
	}
	if e := d.execute(t, bombed, "print(3)", 60); e.Output.Stdout != "3\n" {
		t.Errorf("bombed context afterwards: %+v", e)
	}
}

// forkBomb forks until the process limit stops it.
const forkBomb = "import os, time\n" +
	"for i in range(2000):\n" +
	"    try:\n" +
	"        if os.fork() == 0:\n" +
	"            time.sleep(5); os._exit(0)\n" +
	"    except OSError as e:\n" +
	"        print('stopped at the limit', e.errno); break"

// memoryBomb asks for four times a context's memory.
const memoryBomb = "x = bytearray(4 << 30)\nprint('allocated')"

// With --workspace-size, /workspace is a file system of its own: it
// starts empty, fills up inside the context alone, and goes with it.
func TestWorkspaceSize(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, "--workspace-size", "64m", "--workspace-dir", dir, "--pool", "python=0")
	id := d.create(t)
	// ext4 keeps some of the 64 MiB for itself.
	e := d.execute(t, id, "import os, shutil\nprint(os.listdir(), 48 <= shutil.disk_usage('.').total >> 20 <= 64)", 30)
	if e.Output.Stdout != "[] True\n" {
		t.Errorf("a new /workspace: %+v", e)
	}
	image := filepath.Join(dir, d.owner, id+".img")
	if _, err := os.Stat(image); err != nil {
		t.Fatal(err)
	}
	loops := loopDevicesOf(t, dir)
	if len(loops) != 1 {
		t.Errorf("loop devices on %s: %v", dir, loops)
	}
	// An upload into a full /workspace fails and leaves nothing behind.
	d.execute(t, id, "import os\nf = open('full', 'wb')\ntry:\n    while True: f.write(b'x' * (1 << 20))\nexcept OSError: pass", 60)
	status, body := d.putFile(t, id, "more", bytes.NewReader(make([]byte, 4<<20)))
	if status != http.StatusInsufficientStorage || !strings.Contains(string(body), `"code":"NO_SPACE"`) {
		t.Errorf("upload into a full workspace: %d %s", status, body)
	}
	if e := d.execute(t, id, "import os\nprint(sorted(os.listdir()))", 30); e.Output.Stdout != "['full']\n" {
		t.Errorf("after the failed upload: %+v", e)
	}

	d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil)
	if _, err := os.Stat(image); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the workspace image after delete: %v", err)
	}
	if loops := loopDevicesOf(t, dir); len(loops) != 0 {
		t.Errorf("loop devices left on %s: %v", dir, loops)
	}
}

// By default a context's /workspace is 10 GiB where sized workspaces can be
// made (root, loop devices, e2fsprogs), and unbounded elsewhere.
func TestWorkspaceSizeAuto(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, "--workspace-dir", dir, "--pool", "python=0")
	e := d.execute(t, d.create(t), "import shutil\nprint(shutil.disk_usage('/workspace').total >> 30)", 30)
	sized := docker.CheckWorkspaces(dir) == nil
	if got := e.Output.Stdout; sized && got != "9\n" && got != "10\n" || !sized && (got == "9\n" || got == "10\n") {
		t.Errorf("the default /workspace is %q GiB (sized workspaces possible here: %v)", got, sized)
	}
}

// loopDevicesOf lists the loop devices whose backing file is in dir.
func loopDevicesOf(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var loops []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.HasPrefix(string(b), dir+"/") {
			loops = append(loops, strings.Split(f, "/")[3])
		}
	}
	return loops
}

// The container runs as the context's user whatever its image says: an
// image without a USER line would otherwise run the kernel as root.
func TestContainerUserIsSet(t *testing.T) {
	testenv.RequireDocker(t)
	// Any image will do for a container that need not serve: the daemon's
	// own, which `make images` builds, has no USER.
	const image = "sandboxd/sandboxd:latest"
	if out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Config.User}}", image).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("%s: USER %q: %v", image, out, err)
	}
	limits := docker.Limits{Memory: 256 << 20, CPUs: 1, Pids: 64, NoFile: 1024, TmpSize: 16 << 20}
	rt, err := docker.New(docker.Config{Owner: testenv.Owner(t), SocketDir: testenv.SocketDir(t), Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	inst, err := rt.Start(t.Context(), contexts.Spec{ContextID: "ctx-" + uuid.NewString(), Image: image, Token: "t"})
	t.Cleanup(func() { rt.Remove(context.Background(), inst) })
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("docker", "inspect", "-f", "{{.Config.User}}", inst.ID).CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != contexts.ContextUser {
		t.Errorf("Config.User %q: %v", got, err)
	}
}
