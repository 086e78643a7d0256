package main

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// A container killed from outside ends its running execution at once with
// ContainerDied; the context then says it is dead and can be deleted.
func TestContainerKilledFromOutside(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	done := make(chan executeJSON)
	go func() { done <- d.execute(t, id, "import time; time.sleep(60)", 120) }()
	waitStatus(t, d, id, "busy")
	if out, err := exec.Command("docker", "kill", "sandboxd-"+id).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	select {
	case e := <-done:
		if e.Success || e.Error == nil || e.Error.Name != "ContainerDied" {
			t.Errorf("execution in a killed container: %+v", e)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("execution still running 30 s after its container was killed")
	}
	waitStatus(t, d, id, "dead")
	var e errorJSON
	if status := d.call(t, "POST", "/api/v1/contexts/"+id+"/execute", map[string]string{"code": "1"}, &e); status != http.StatusGone || e.Code != "CONTEXT_DEAD" {
		t.Errorf("execute in a dead context: %d %+v", status, e)
	}
	if status := d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil); status != http.StatusNoContent {
		t.Errorf("delete a dead context: %d", status)
	}
	if n := d.containers(t, id); n != 0 {
		t.Errorf("%d containers left", n)
	}
}

// A context deleted while its code runs ends that execution with an error
// of its own, not as if its container had been removed from outside.
func TestDeleteWhileExecuting(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	done := make(chan executeJSON)
	go func() { done <- d.execute(t, id, "import time; time.sleep(30)", 120) }()
	waitStatus(t, d, id, "busy")
	if status := d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil); status != http.StatusNoContent {
		t.Fatalf("delete: %d", status)
	}
	select {
	case e := <-done:
		if e.Success || e.Error == nil || e.Error.Name != "ContextDeleted" || e.Error.Value != "the context was deleted while the code ran" {
			t.Errorf("execution in a deleted context: %+v", e)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("execution still running 30 s after its context was deleted")
	}
}

// engineProxy stands between sandboxd and the Docker engine, so a test can
// take the engine away and bring it back without touching the real one.
type engineProxy struct {
	path, target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

func newEngineProxy(tb testing.TB) *engineProxy {
	tb.Helper()
	p := &engineProxy{path: filepath.Join(testenv.SocketDir(tb), "engine.sock"), target: testenv.EngineSocket(), conns: map[net.Conn]bool{}}
	p.up(tb)
	tb.Cleanup(p.down)
	return p
}

func (p *engineProxy) up(tb testing.TB) {
	tb.Helper()
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		tb.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e, err := net.Dial("unix", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[e] = true, true
			p.mu.Unlock()
			go func() { io.Copy(e, c); e.Close() }()
			go func() { io.Copy(c, e); c.Close() }()
		}
	}()
}

// down closes the listener and every connection through it.
func (p *engineProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// With the Docker engine out of reach, executions on existing contexts go
// on where they need only the kernel's socket (over exec they need the
// engine too, and answer 503 KERNEL_UNAVAILABLE), creating answers 503
// DOCKER_UNAVAILABLE, and no context is taken for dead; when the engine is
// back, creating works again, and the kernels have kept their state.
func TestEngineLoss(t *testing.T) {
	testenv.RequireDocker(t)
	proxy := newEngineProxy(t)
	t.Setenv("DOCKER_HOST", "unix://"+proxy.path)
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	d.execute(t, id, "x = 1", 0)

	proxy.down()
	var e errorJSON
	if testenv.Transport() == "exec" {
		status := d.call(t, "POST", "/api/v1/contexts/"+id+"/execute", map[string]any{"code": "print(x)"}, &e)
		if status != http.StatusServiceUnavailable || e.Code != "KERNEL_UNAVAILABLE" {
			t.Errorf("execute without the engine, over exec: %d %+v", status, e)
		}
	} else if e := d.execute(t, id, "print(x)", 0); e.Output.Stdout != "1\n" {
		t.Errorf("execute without the engine: %+v", e)
	}
	if status := d.call(t, "POST", "/api/v1/contexts", nil, &e); status != http.StatusServiceUnavailable || e.Code != "DOCKER_UNAVAILABLE" {
		t.Errorf("create without the engine: %d %+v", status, e)
	}
	resp, err := http.Get(d.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz without the engine: %d", resp.StatusCode)
	}
	time.Sleep(time.Second) // time for a watcher to take the lost engine for a stopped container
	var c contextJSON
	if d.call(t, "GET", "/api/v1/contexts/"+id, nil, &c); c.Status != "active" {
		t.Errorf("status without the engine: %q", c.Status)
	}

	proxy.up(t)
	other := d.create(t)
	if e := d.execute(t, other, "print(2)", 0); e.Output.Stdout != "2\n" {
		t.Errorf("new context after the engine came back: %+v", e)
	}
	if e := d.execute(t, id, "print(x)", 0); e.Output.Stdout != "1\n" {
		t.Errorf("old context after the engine came back: %+v", e)
	}
}
