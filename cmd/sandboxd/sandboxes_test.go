package main

import (
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sdkHeader is what AgentRun's Python SDK sends with every data call, and
// the account header RAGFlow's AgentRun provider adds; sandboxd ignores
// both.
var sdkHeader = http.Header{
	"Content-Type":    {"application/json"},
	"User-Agent":      {"AgentRunDataClient/1.0"},
	"X-Acs-Parent-Id": {"1234567890123456"},
}

type agentRunSandboxJSON struct {
	SandboxID                 string
	TemplateName              string
	Status                    string
	EndedAt                   string
	SandboxIdleTimeoutSeconds int
	Metadata                  struct{ Contexts int }
}

type sandboxAnswer struct {
	Code string
	Data agentRunSandboxJSON
}

// sdk sends a call as AgentRun's SDK does.
func (d *daemon) sdk(tb testing.TB, method, path string, body, out any) int {
	tb.Helper()
	return d.callWith(tb, sdkHeader, method, path, body, out)
}

// newSandbox creates a sandbox of template, as the SDK does, and returns
// its id.
func (d *daemon) newSandbox(tb testing.TB, template string) string {
	tb.Helper()
	var a sandboxAnswer
	if status := d.sdk(tb, "POST", "/sandboxes", map[string]any{"templateName": template, "sandboxIdleTimeoutSeconds": 600}, &a); status != http.StatusOK || a.Code != "SUCCESS" {
		tb.Fatalf("create sandbox: %d %+v", status, a)
	}
	return a.Data.SandboxID
}

func (d *daemon) sandbox(tb testing.TB, id string) agentRunSandboxJSON {
	tb.Helper()
	var a sandboxAnswer
	if status := d.sdk(tb, "GET", "/sandboxes/"+id, nil, &a); status != http.StatusOK {
		tb.Fatalf("get sandbox %s: %d", id, status)
	}
	return a.Data
}

// waitReady waits for the sandbox id to be taken over after a restart.
func (d *daemon) waitReady(tb testing.TB, id string) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for d.sandbox(tb, id).Status != "READY" {
		if time.Now().After(deadline) {
			tb.Fatalf("not taken over: %+v", d.sandbox(tb, id))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run executes code in the context id of the sandbox sb, and returns its
// stdout.
func (d *daemon) run(tb testing.TB, sb, id, code string) string {
	tb.Helper()
	var e agentRunExecuteJSON
	if status := d.sdk(tb, "POST", "/sandboxes/"+sb+"/contexts/execute", map[string]any{"code": code, "contextId": id, "timeout": 30}, &e); status != http.StatusOK {
		tb.Fatalf("execute %q in %s: %d", code, id, status)
	}
	var out string
	for _, r := range e.Results {
		if r.Type == "stdout" {
			out += r.Text
		}
		if r.Type == "error" {
			tb.Errorf("execute %q in %s: %s", code, id, r.Text)
		}
	}
	return out
}

// The control calls of AgentRun's SDK (templates; create, get, list,
// health, stop, delete of a sandbox), and two contexts in one sandbox
// sharing its files: deleting one leaves the other, stopping the sandbox
// removes its container.
func TestAgentRunSandbox(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0") // only the containers made here

	var templates struct {
		Code string
		Data struct {
			Items []struct{ TemplateName, TemplateType, Status string }
			Total int
		}
	}
	if status := d.sdk(t, "GET", "/templates", nil, &templates); status != http.StatusOK || templates.Code != "SUCCESS" || templates.Data.Total < 3 {
		t.Fatalf("templates: %d %+v", status, templates)
	}
	if i := slices.IndexFunc(templates.Data.Items, func(x struct{ TemplateName, TemplateType, Status string }) bool {
		return x.TemplateName == "python"
	}); i < 0 || templates.Data.Items[i].Status != "READY" || templates.Data.Items[i].TemplateType != "CodeInterpreter" {
		t.Errorf("templates: %+v", templates.Data.Items)
	}
	var tmpl struct{ Data struct{ TemplateName string } }
	if status := d.sdk(t, "GET", "/templates/python-sandbox", nil, &tmpl); status != http.StatusOK || tmpl.Data.TemplateName != "python" {
		t.Errorf("template python-sandbox: %d %+v", status, tmpl)
	}
	var e errorJSON
	if status := d.sdk(t, "POST", "/sandboxes", map[string]any{"templateName": "ruby-sandbox"}, &e); status != http.StatusNotFound || e.Code != "TEMPLATE_NOT_FOUND" || !strings.Contains(e.Error, "python, r, bash") {
		t.Errorf("unknown template: %d %+v", status, e)
	}
	if status := d.sdk(t, "GET", "/sandboxes/sbx-00000000-0000-0000-0000-000000000000", nil, &e); status != http.StatusNotFound || e.Code != "SANDBOX_NOT_FOUND" {
		t.Errorf("unknown sandbox: %d %+v", status, e)
	}

	sb := d.newSandbox(t, "python-sandbox")
	base := "/sandboxes/" + sb
	if s := d.sandbox(t, sb); s.Status != "READY" || s.TemplateName != "python" || s.SandboxIdleTimeoutSeconds != 600 {
		t.Errorf("sandbox %+v", s)
	}
	var health struct{ Status string }
	if status := d.sdk(t, "GET", base+"/health", nil, &health); status != http.StatusOK || health.Status != "ok" {
		t.Errorf("health: %d %+v", status, health)
	}
	var all struct {
		Data struct{ Items []agentRunSandboxJSON }
	}
	if d.sdk(t, "GET", "/sandboxes", nil, &all); len(all.Data.Items) != 1 || all.Data.Items[0].SandboxID != sb {
		t.Errorf("list: %+v", all)
	}

	var a, b struct{ ID string }
	d.sdk(t, "POST", base+"/contexts", map[string]string{"cwd": "/home/user", "language": "python"}, &a)
	d.sdk(t, "POST", base+"/contexts", map[string]string{"cwd": "/home/user", "language": "python"}, &b)
	if a.ID == "" || b.ID == "" || a.ID == b.ID {
		t.Fatalf("contexts %q and %q", a.ID, b.ID)
	}
	// The image has no bash kernelspec: its server was asked.
	if status := d.sdk(t, "POST", base+"/contexts", map[string]string{"language": "bash"}, &e); status != http.StatusBadRequest || e.Code != "UNSUPPORTED_LANGUAGE" || !strings.Contains(e.Error, "python3") {
		t.Errorf("a language the image has no kernel of: %d %+v", status, e)
	}
	if got := d.containers(t); got != 1 {
		t.Errorf("%d containers for a sandbox of two contexts", got)
	}

	// Two kernels, one file system.
	d.run(t, sb, a.ID, "open('shared.txt', 'w').write('from a'); secret = 1")
	if got := d.run(t, sb, b.ID, "print(open('/workspace/shared.txt').read(), 'secret' in globals())"); got != "from a False\n" {
		t.Errorf("the other context reads %q", got)
	}
	var e2 agentRunExecuteJSON
	if d.sdk(t, "POST", base+"/contexts/"+b.ID+"/execute", map[string]any{"code": "print(1 + 1)"}, &e2); e2.ContextID != b.ID || e2.summary() != "stdout:2\n | endOfExecution:ok" {
		t.Errorf("execute by path: %s %q", e2.ContextID, e2.summary())
	}
	var f struct{ Content string }
	if d.sdk(t, "GET", base+"/files?path=/home/user/shared.txt", nil, &f); f.Content != "from a" {
		t.Errorf("the sandbox's files: %+v", f)
	}

	// A context that is not the sandbox's is not found through it.
	plain := d.create(t)
	if status := d.sdk(t, "GET", base+"/contexts/"+plain, nil, &e); status != http.StatusNotFound || e.Code != "CONTEXT_NOT_FOUND" {
		t.Errorf("a plain context through the sandbox: %d %+v", status, e)
	}
	if status := d.sdk(t, "POST", base+"/contexts/execute", map[string]any{"code": "1", "contextId": plain}, &e); status != http.StatusNotFound {
		t.Errorf("executing a plain context through the sandbox: %d %+v", status, e)
	}

	// Deleting a context shuts only its kernel down.
	if status := d.sdk(t, "DELETE", base+"/contexts/"+a.ID, nil, nil); status != http.StatusOK {
		t.Fatalf("delete context: %d", status)
	}
	if got := d.run(t, sb, b.ID, "print(open('shared.txt').read())"); got != "from a\n" {
		t.Errorf("the other context after the delete: %q", got)
	}
	var list []struct{ ID string }
	if d.sdk(t, "GET", base+"/contexts", nil, &list); len(list) != 1 || list[0].ID != b.ID {
		t.Errorf("contexts after the delete: %+v", list)
	}
	if d.containers(t, sb) != 1 {
		t.Error("deleting a context removed the sandbox's container")
	}

	// Stop removes the container and the contexts; the sandbox is told of
	// as stopped until it is deleted.
	var stopped sandboxAnswer
	if status := d.sdk(t, "POST", base+"/stop", nil, &stopped); status != http.StatusOK || stopped.Data.Status != "STOPPED" || stopped.Data.EndedAt == "" {
		t.Errorf("stop: %d %+v", status, stopped)
	}
	if n := d.containers(t, sb); n != 0 {
		t.Errorf("%d containers after stop", n)
	}
	if s := d.sandbox(t, sb); s.Status != "STOPPED" || s.Metadata.Contexts != 0 {
		t.Errorf("after stop: %+v", s)
	}
	if status := d.sdk(t, "POST", base+"/execute", map[string]any{"code": "1", "language": "python"}, &e); status != http.StatusConflict || e.Code != "SANDBOX_STOPPED" {
		t.Errorf("execute in a stopped sandbox: %d %+v", status, e)
	}
	if status := d.sdk(t, "GET", base+"/health", nil, &e); status != http.StatusConflict || e.Code != "SANDBOX_STOPPED" {
		t.Errorf("health of a stopped sandbox: %d %+v", status, e)
	}
	if status := d.sdk(t, "GET", base+"/files?path=shared.txt", nil, &e); status != http.StatusConflict || e.Code != "SANDBOX_STOPPED" {
		t.Errorf("files of a stopped sandbox: %d %+v", status, e)
	}
	if status := d.call(t, "GET", "/api/v1/contexts/"+b.ID, nil, &e); status != http.StatusNotFound {
		t.Errorf("a context of a stopped sandbox: %d", status)
	}

	// Delete of a running sandbox removes its container too.
	sb2 := d.newSandbox(t, "python")
	d.sdk(t, "POST", "/sandboxes/"+sb2+"/execute", map[string]any{"code": "1", "language": "python", "timeout": 30}, nil)
	for _, id := range []string{sb, sb2} {
		var deleted sandboxAnswer
		if status := d.sdk(t, "DELETE", "/sandboxes/"+id, nil, &deleted); status != http.StatusOK || deleted.Code != "SUCCESS" || deleted.Data.Status != "STOPPED" {
			t.Errorf("delete %s: %d %+v", id, status, deleted)
		}
		if status := d.sdk(t, "GET", "/sandboxes/"+id, nil, &e); status != http.StatusNotFound || e.Code != "SANDBOX_NOT_FOUND" {
			t.Errorf("a deleted sandbox: %d %+v", status, e)
		}
	}
	if n := d.containers(t); n != 1 {
		t.Errorf("%d containers left, want the plain context's", n)
	}
}

// POST /api/v1/contexts with sandbox_id makes the context in the sandbox's
// container; without it, a container of its own as ever.
func TestNativeContextInSandbox(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	sb := d.newSandbox(t, "python")
	var in struct {
		ContextID string `json:"context_id"`
		SandboxID string `json:"sandbox_id"`
	}
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"language": "python", "sandbox_id": sb, "working_dir": "/workspace/w"}, &in); status != http.StatusCreated || in.SandboxID != sb {
		t.Fatalf("create in a sandbox: %d %+v", status, in)
	}
	var plain map[string]any
	d.call(t, "POST", "/api/v1/contexts", map[string]any{"language": "python"}, &plain)
	if _, ok := plain["sandbox_id"]; ok {
		t.Errorf("a plain context shows a sandbox: %+v", plain)
	}
	// The native files of the context are the sandbox's.
	if status, _ := d.putFile(t, in.ContextID, "note.txt", strings.NewReader("shared")); status/100 != 2 {
		t.Fatalf("upload: %d", status)
	}
	if got := d.run(t, sb, in.ContextID, "print(open('/workspace/w/note.txt').read())"); got != "shared\n" {
		t.Errorf("the context reads %q", got)
	}
	var f struct{ Content string }
	if d.sdk(t, "GET", "/sandboxes/"+sb+"/files?path=w/note.txt", nil, &f); f.Content != "shared" {
		t.Errorf("the sandbox reads %+v", f)
	}
	var e errorJSON
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"sandbox_id": "sbx-nope"}, &e); status != http.StatusNotFound || e.Code != "SANDBOX_NOT_FOUND" {
		t.Errorf("an unknown sandbox: %d %+v", status, e)
	}
	if n := d.containers(t); n != 2 {
		t.Errorf("%d containers, want the sandbox's and the plain context's", n)
	}
}

// A sandbox unused past its idle timeout is stopped, its container gone.
func TestSandboxIdleTimeout(t *testing.T) {
	d := startDaemon(t, "--idle-ttl", "1h", "--pool", "python=0")
	var a sandboxAnswer
	if status := d.sdk(t, "POST", "/sandboxes", map[string]any{"templateName": "python", "sandboxIdleTimeoutSeconds": 2}, &a); status != http.StatusOK || a.Data.SandboxIdleTimeoutSeconds != 2 {
		t.Fatalf("create: %d %+v", status, a)
	}
	sb := a.Data.SandboxID
	var e agentRunExecuteJSON
	d.sdk(t, "POST", "/sandboxes/"+sb+"/execute", map[string]any{"code": "import time; time.sleep(4)", "timeout": 30}, &e)
	if s := d.sandbox(t, sb); s.Status != "READY" {
		t.Errorf("right after code that ran past the idle timeout: %+v", s)
	}
	deadline := time.Now().Add(time.Minute)
	for d.sandbox(t, sb).Status != "STOPPED" || d.containers(t, sb) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not stopped: %+v, %d containers", d.sandbox(t, sb), d.containers(t, sb))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The daemon's --idle-ttl bounds it.
	if status := d.sdk(t, "POST", "/sandboxes", map[string]any{"templateName": "python", "sandboxIdleTimeoutSeconds": 7200}, &a); status != http.StatusOK || a.Data.SandboxIdleTimeoutSeconds != 3600 {
		t.Errorf("past --idle-ttl: %d %+v", status, a)
	}
}

// A restart with --keep-contexts takes a sandbox over with its two
// contexts, their kernels and its files.
func TestRestartKeepsSandbox(t *testing.T) {
	d := newProcDaemon(t)
	first := d.start(t, "--pool", "python=0")
	sb := d.newSandbox(t, "python")
	var a, b struct{ ID string }
	d.sdk(t, "POST", "/sandboxes/"+sb+"/contexts", map[string]string{"language": "python"}, &a)
	d.sdk(t, "POST", "/sandboxes/"+sb+"/contexts", map[string]string{"language": "python"}, &b)
	d.run(t, sb, a.ID, "x = 'a'; open('f.txt', 'w').write('file')")
	d.run(t, sb, b.ID, "x = 'b'")
	first.stop(syscall.SIGKILL)

	second := d.start(t, "--keep-contexts", "--pool", "python=0")
	d.waitReady(t, sb)
	if got := d.run(t, sb, a.ID, "print(x, open('f.txt').read())"); got != "a file\n" {
		t.Errorf("context a after the restart: %q", got)
	}
	if got := d.run(t, sb, b.ID, "print(x)"); got != "b\n" {
		t.Errorf("context b after the restart: %q", got)
	}
	var list []struct{ ID string }
	if d.sdk(t, "GET", "/sandboxes/"+sb+"/contexts", nil, &list); len(list) != 2 {
		t.Errorf("contexts after the restart: %+v", list)
	}
	// Deleting one still shuts only its kernel down.
	d.sdk(t, "DELETE", "/sandboxes/"+sb+"/contexts/"+a.ID, nil, nil)
	if got := d.run(t, sb, b.ID, "print(x)"); got != "b\n" {
		t.Errorf("context b after a's delete: %q", got)
	}
	second.stop(os.Interrupt)
	if n := d.containers(t, sb); n != 1 {
		t.Errorf("%d containers of the sandbox after a stop with --keep-contexts, want its one", n)
	}

	// A stop without --keep-contexts removes it.
	third := d.start(t, "--pool", "python=0")
	d.waitReady(t, sb)
	third.stop(os.Interrupt)
	if n := d.containers(t); n != 0 {
		t.Errorf("%d containers after a stop without --keep-contexts", n)
	}
}

// A sandbox of the javascript template runs Python and JavaScript
// contexts over one file system.
func TestSandboxPythonAndJavaScript(t *testing.T) {
	d := startDaemon(t)
	var tmpl struct{ Data struct{ Status string } }
	if status := d.sdk(t, "GET", "/templates/javascript", nil, &tmpl); status != http.StatusOK || tmpl.Data.Status != "READY" {
		t.Skipf("no javascript template installed: %d", status)
	}
	sb := d.newSandbox(t, "javascript")
	var py, js struct{ ID string }
	d.sdk(t, "POST", "/sandboxes/"+sb+"/contexts", map[string]string{"language": "python"}, &py)
	d.sdk(t, "POST", "/sandboxes/"+sb+"/contexts", map[string]string{"language": "javascript"}, &js)
	d.run(t, sb, py.ID, "open('/workspace/from-py.txt', 'w').write('hello')")
	if got := d.run(t, sb, js.ID, "console.log(require('fs').readFileSync('/workspace/from-py.txt', 'utf8'))"); got != "hello\n" {
		t.Errorf("javascript reads %q", got)
	}
}
