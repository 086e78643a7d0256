package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sandboxd/sandboxd/internal/apitest"
	"github.com/sandboxd/sandboxd/internal/docker"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// A daemon that crashes, or stops with --keep-contexts, leaves its contexts
// running; the next run takes them over with their variables, working dir
// and env. A context whose container went meanwhile is not served.
func TestRestartKeepsContexts(t *testing.T) {
	testenv.RequireDocker(t)
	bin := buildDaemon(t)
	owner, socketDir, addr := testenv.Owner(t), testenv.SocketDir(t), freeAddr(t)
	rt, err := docker.New(docker.Config{Owner: owner, SocketDir: socketDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		insts, _ := rt.List(context.Background())
		for _, inst := range insts {
			rt.Remove(context.Background(), inst)
		}
		rt.Close()
	})
	d := &daemon{url: "http://" + addr, validator: apitest.New(t), rt: rt}
	// Egress and workspace images are the daemon's to serve and clean up
	// again after a restart.
	workspaces := t.TempDir()
	args := []string{"--allow-egress", "--workspace-size", "64m", "--workspace-dir", workspaces}

	first := startProcess(t, bin, owner, socketDir, addr, args...)
	var c contextJSON
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"working_dir": "/workspace/w", "env": map[string]string{"A": "1"}, "network": true}, &c); status != http.StatusCreated {
		t.Fatalf("create: %d", status)
	}
	gone := d.create(t)
	d.execute(t, c.ContextID, "x = 42", 0)
	first.stop(syscall.SIGKILL)

	// Removed while no daemon watched.
	if err := exec.Command("docker", "rm", "-f", "-v", "sandboxd-"+gone).Run(); err != nil {
		t.Fatal(err)
	}

	second := startProcess(t, bin, owner, socketDir, addr, append(args, "--keep-contexts")...)
	d.execute(t, c.ContextID, fetch, 0)
	const probe = "import os; print(x, os.getcwd(), os.environ['A'], fetch('http://deb.debian.org/debian/'))"
	if e := d.execute(t, c.ContextID, probe, 0); e.Output.Stdout != "42 /workspace/w 1 200\n" {
		t.Errorf("after a crash: %+v", e)
	}
	if _, err := os.Stat(filepath.Join(workspaces, owner, gone+".img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the workspace of the removed context: %v", err)
	}
	var e errorJSON
	if status := d.call(t, "GET", "/api/v1/contexts/"+gone, nil, &e); status != http.StatusNotFound {
		t.Errorf("context whose container was removed: %d %+v", status, e)
	}
	second.stop(os.Interrupt)

	startProcess(t, bin, owner, socketDir, addr, args...)
	if e := d.execute(t, c.ContextID, probe, 0); e.Output.Stdout != "42 /workspace/w 1 200\n" {
		t.Errorf("after a stop with --keep-contexts: %+v", e)
	}
	var list struct{ Contexts []contextJSON }
	if d.call(t, "GET", "/api/v1/contexts", nil, &list); len(list.Contexts) != 1 {
		t.Errorf("contexts after two restarts: %+v", list.Contexts)
	}
}

// Recovery removes a container of the daemon's it cannot take over, and
// with it the socket directory its label names: a label that climbs out
// of the socket dir must not make it remove the parent.
func TestRecoverIgnoresHostileSocketDirLabel(t *testing.T) {
	testenv.RequireDocker(t)
	parent := testenv.SocketDir(t)
	socketDir := filepath.Join(parent, "s")
	if err := os.Mkdir(socketDir, 0o711); err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(parent, "kept")
	if err := os.WriteFile(kept, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	owner := testenv.Owner(t)
	name := owner + "-hostile"
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	out, err := exec.Command("docker", "create", "--name", name, "--label", "sandboxd.owner="+owner,
		"--label", "sandboxd.context_id=..", "--label", "sandboxd.socket_dir="+socketDir+"/..", testenv.KernelImage()).CombinedOutput()
	if err != nil {
		t.Fatalf("docker create: %v: %s", err, out)
	}

	startDaemon(t, "--pool", "python=0", "--name", owner, "--socket-dir", socketDir)
	if err := exec.Command("docker", "inspect", name).Run(); err == nil {
		t.Error("the container was not removed")
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("the socket dir's parent: %v", err)
	}
}
