package main

import (
	"net/http"
	"strings"
	"testing"
)

type agentRunResultJSON struct {
	Type   string `json:"type"`
	Text   string `json:"text"`
	Name   string `json:"name"`
	Status string `json:"status"`
}

type agentRunExecuteJSON struct {
	ContextID string               `json:"contextId"`
	Results   []agentRunResultJSON `json:"results"`
}

func (e agentRunExecuteJSON) summary() string {
	var parts []string
	for _, r := range e.Results {
		parts = append(parts, r.Type+":"+r.Text+r.Name+r.Status)
	}
	return strings.Join(parts, " | ")
}

// The data calls an AgentRun SDK makes, pointed at sandboxd, on a
// sandbox: contexts, executions, files and processes.
func TestAgentRunRoutes(t *testing.T) {
	d := startDaemon(t)
	sb := d.newSandbox(t, "python-sandbox")
	base := "/sandboxes/" + sb
	var c struct{ ID, Language, Cwd string }
	if status := d.call(t, "POST", base+"/contexts", map[string]string{"language": "python", "cwd": "/home/user"}, &c); status != http.StatusOK {
		t.Fatalf("create: %d", status)
	}
	if !strings.HasPrefix(c.ID, "ctx-") || c.Language != "python" || c.Cwd != "/workspace" {
		t.Errorf("created %+v", c)
	}

	execute := func(path string, body any) (e agentRunExecuteJSON) {
		d.call(t, "POST", path, body, &e)
		return e
	}
	e := execute(base+"/contexts/execute", map[string]any{"code": "x = 1\nprint('hi')\nx + 1", "contextId": c.ID, "timeout": 30})
	if got, want := e.summary(), "stdout:hi\n | result:2 | endOfExecution:ok"; e.ContextID != c.ID || got != want {
		t.Errorf("execute: %s %q, want %q", e.ContextID, got, want)
	}
	e = execute(base+"/contexts/execute", map[string]any{"code": "1/0", "contextId": c.ID})
	if got := e.summary(); !strings.Contains(got, "error:") || !strings.Contains(got, "ZeroDivisionError") || !strings.HasSuffix(got, "endOfExecution:error") {
		t.Errorf("raising: %q", got)
	}
	// A request refused for its timeout starts no default context.
	var bad errorJSON
	if status := d.call(t, "POST", base+"/contexts/execute", map[string]any{"code": "1", "language": "python", "timeout": 1e6}, &bad); status != http.StatusBadRequest || bad.Code != "INVALID_REQUEST" {
		t.Errorf("execute with too long a timeout: %d %+v", status, bad)
	}
	if list := d.list(t); len(list) != 1 {
		t.Errorf("after a refused execute, contexts %+v, want only %s", list, c.ID)
	}
	// Naming no context: the sandbox's default one of the language, made
	// once, then kept.
	e = execute(base+"/contexts/execute", map[string]any{"code": "y = 'x' in globals(); print(y)", "language": "python"})
	if e.ContextID == "" || e.ContextID == c.ID || e.summary() != "stdout:False\n | endOfExecution:ok" {
		t.Errorf("default context: %s %q", e.ContextID, e.summary())
	}
	if again := execute(base+"/execute", map[string]any{"code": "print(y)", "language": "python", "timeout": 30}); again.ContextID != e.ContextID || again.summary() != "stdout:False\n | endOfExecution:ok" {
		t.Errorf("the default context again: %s %q", again.ContextID, again.summary())
	}

	// Files and processes are the sandbox's, and a context's id stands for
	// its container.
	var w struct{ Size int }
	if status := d.call(t, "POST", base+"/files", map[string]any{"path": "/home/user/notes/a.txt", "content": "aGk=", "encoding": "base64"}, &w); status != http.StatusOK || w.Size != 2 {
		t.Errorf("write file: %d %+v", status, w)
	}
	var f struct{ Content, Encoding string }
	if status := d.call(t, "GET", "/sandboxes/"+c.ID+"/files?path=notes/a.txt", nil, &f); status != http.StatusOK || f.Content != "hi" || f.Encoding != "utf-8" {
		t.Errorf("read file through the context's id: %d %+v", status, f)
	}
	var cmd struct {
		Stdout   string
		ExitCode int
	}
	if status := d.call(t, "POST", base+"/processes/cmd", map[string]any{"command": "cat a.txt; exit 3", "cwd": "/home/user/notes", "timeout": 30}, &cmd); status != http.StatusOK || cmd.Stdout != "hi" || cmd.ExitCode != 3 {
		t.Errorf("cmd: %d %+v", status, cmd)
	}
	var nf errorJSON
	if status := d.call(t, "GET", "/sandboxes/sb1/files?path=a.txt", nil, &nf); status != http.StatusNotFound || nf.Code != "SANDBOX_NOT_FOUND" {
		t.Errorf("files of an unknown sandbox: %d %+v", status, nf)
	}
	if status := d.call(t, "POST", "/sandboxes/sb1/contexts", map[string]string{"language": "python"}, &nf); status != http.StatusNotFound || nf.Code != "SANDBOX_NOT_FOUND" {
		t.Errorf("a context in an unknown sandbox: %d %+v", status, nf)
	}

	var list []struct{ ID string }
	if d.call(t, "GET", base+"/contexts", nil, &list); len(list) != 2 {
		t.Errorf("list: %+v", list)
	}
	if status := d.call(t, "GET", base+"/contexts/"+c.ID, nil, &c); status != http.StatusOK || c.Cwd != "/workspace" {
		t.Errorf("get: %d %+v", status, c)
	}
	for _, id := range []string{c.ID, e.ContextID} {
		if status := d.call(t, "DELETE", base+"/contexts/"+id, nil, nil); status != http.StatusOK {
			t.Errorf("delete %s: %d", id, status)
		}
	}
}
