package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/apitest"
	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// procDaemon is a daemon run as a process of its own, so that its memory
// can be measured and it can be killed; again and again, under one name,
// socket dir and address, as restarts of a daemon are.
type procDaemon struct {
	*daemon
	bin, owner, socketDir, addr string
}

func newProcDaemon(t *testing.T) *procDaemon {
	testenv.RequireDocker(t)
	r := &procDaemon{bin: buildDaemon(t), owner: testenv.Owner(t), socketDir: testenv.SocketDir(t), addr: freeAddr(t)}
	rt := newTestRuntime(t, r.owner, r.socketDir)
	t.Cleanup(func() {
		insts, _ := rt.List(context.Background())
		for _, inst := range insts {
			rt.Remove(context.Background(), inst)
		}
		rt.Close()
	})
	r.daemon = &daemon{url: "http://" + r.addr, validator: apitest.New(t), rt: rt}
	return r
}

// start runs the daemon once more.
func (r *procDaemon) start(t *testing.T, args ...string) *process {
	return startProcess(t, r.bin, r.owner, r.socketDir, r.addr, args...)
}

// A daemon that crashes, or stops with --keep-contexts, leaves its contexts
// running; the next run takes them over with their variables, working dir
// and env. A context whose container went meanwhile is not served.
func TestRestartKeepsContexts(t *testing.T) {
	d := newProcDaemon(t)
	// Egress and workspace images are the daemon's to serve and clean up
	// again after a restart.
	workspaces := t.TempDir()
	args := []string{"--allow-egress", "--workspace-size", "64m", "--workspace-dir", workspaces}
	if testenv.Transport() == "exec" {
		args = args[:1] // sized workspaces need the socket transport
	}

	first := d.start(t, args...)
	var c contextJSON
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"working_dir": "/workspace/w", "env": map[string]string{"A": "1"}, "network": true}, &c); status != http.StatusCreated {
		t.Fatalf("create: %d", status)
	}
	gone := d.create(t)
	d.execute(t, c.ContextID, "x = 42", 0)
	first.stop(syscall.SIGKILL)

	// Removed while no daemon watched: on Docker, the container alone, so
	// that the restarted daemon must remove its workspace image.
	if testenv.Kubeconfig() != "" {
		if err := d.rt.Remove(context.Background(), contexts.Instance{ContextID: gone, ID: "sandboxd-" + gone}); err != nil {
			t.Fatal(err)
		}
	} else if err := exec.Command("docker", "rm", "-f", "-v", "sandboxd-"+gone).Run(); err != nil {
		t.Fatal(err)
	}

	second := d.start(t, append(args, "--keep-contexts")...)
	waitStatus(t, d.daemon, c.ContextID, "active") // taken over in the background
	d.execute(t, c.ContextID, fetch, 0)
	const probe = "import os; print(x, os.getcwd(), os.environ['A'], fetch('http://deb.debian.org/debian/'))"
	if e := d.execute(t, c.ContextID, probe, 0); e.Output.Stdout != "42 /workspace/w 1 200\n" {
		t.Errorf("after a crash: %+v", e)
	}
	if _, err := os.Stat(filepath.Join(workspaces, d.owner, gone+".img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the workspace of the removed context: %v", err)
	}
	var e errorJSON
	if status := d.call(t, "GET", "/api/v1/contexts/"+gone, nil, &e); status != http.StatusNotFound {
		t.Errorf("context whose container was removed: %d %+v", status, e)
	}
	second.stop(os.Interrupt)

	d.start(t, args...)
	waitStatus(t, d.daemon, c.ContextID, "active")
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
	// Recovery goes on in the background once the daemon serves.
	for deadline := time.Now().Add(time.Minute); exec.Command("docker", "inspect", name).Run() == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the container was not removed")
		}
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("the socket dir's parent: %v", err)
	}
}

// A daemon killed while one of its contexts runs a long cell comes back
// serving at once; every context is listed from the start, recovering until
// taken over, and then all of them are back with their variables, the busy
// one included (its cell interrupted), each in its own container, none
// removed and none left over. Recovering contexts count against
// --max-contexts.
func TestRestartWithBusyKernel(t *testing.T) {
	d := newProcDaemon(t)
	const n = 6
	args := []string{"--pool", "python=0", "--max-contexts", strconv.Itoa(n)}

	first := d.start(t, args...)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = d.create(t)
		d.execute(t, ids[i], fmt.Sprintf("x = %d", i), 0)
	}
	busy := ids[0]
	go func() {
		body := strings.NewReader(`{"code": "import time; time.sleep(100)", "timeout": 200}`)
		if resp, err := http.Post(d.url+"/api/v1/contexts/"+busy+"/execute", "application/json", body); err == nil {
			resp.Body.Close()
		}
	}()
	waitStatus(t, d.daemon, busy, "busy")
	first.stop(syscall.SIGKILL)

	start := time.Now()
	d.start(t, args...)
	healthy := time.Since(start)
	var list struct{ Contexts []contextJSON }
	d.call(t, "GET", "/api/v1/contexts", nil, &list)
	if len(list.Contexts) != n {
		t.Errorf("%d contexts listed as the daemon starts, want %d: %+v", len(list.Contexts), n, list.Contexts)
	}
	for _, c := range list.Contexts {
		if c.Status != "recovering" {
			continue
		}
		// Recovering: what needs its kernel is refused, to be retried.
		req, _ := http.NewRequest("POST", d.url+"/api/v1/contexts/"+c.ContextID+"/execute", strings.NewReader(`{"code": "1"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d.validator.Check(t, req, []byte(`{"code": "1"}`), resp, b)
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After: %s", b)
		}
		break
	}
	var e errorJSON
	if status := d.call(t, "POST", "/api/v1/contexts", nil, &e); status != http.StatusTooManyRequests {
		t.Errorf("create past --max-contexts while recovering: %d %+v", status, e)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d.call(t, "GET", "/api/v1/contexts", nil, &list)
		if !slices.ContainsFunc(list.Contexts, func(c contextJSON) bool { return c.Status == "recovering" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still recovering after 2 minutes: %+v", list.Contexts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d contexts, one busy: /health after %v, all taken over after %v", n, healthy.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if healthy > 15*time.Second {
		t.Errorf("/health answered only %v after start", healthy)
	}
	if len(list.Contexts) != n {
		t.Errorf("%d contexts after recovery, want %d: %+v", len(list.Contexts), n, list.Contexts)
	}
	for i, id := range ids {
		if e := d.execute(t, id, "print(x)", 10); e.Output.Stdout != fmt.Sprintf("%d\n", i) {
			t.Errorf("context %d after the restart: %+v", i, e)
		}
	}
	if got := d.containers(t); got != n {
		t.Errorf("%d containers, want %d", got, n)
	}
}
