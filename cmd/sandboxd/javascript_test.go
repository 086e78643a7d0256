package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// A JavaScript context keeps its state between executions, awaits at top
// level, reports values and errors as Node's REPL does, and is interrupted
// and timed out as a Python one is.
func TestJavaScript(t *testing.T) {
	d := startDaemon(t)
	var c struct {
		ContextID string `json:"context_id"`
		Language  string `json:"language"`
	}
	status := d.call(t, "POST", "/api/v1/contexts", map[string]any{
		"language": "nodejs", "working_dir": "/workspace/js", "env": map[string]string{"MODE": "test"},
	}, &c)
	if status != http.StatusCreated || c.Language != "javascript" {
		t.Fatalf("create as nodejs: %d %+v", status, c)
	}
	id := c.ContextID

	if e := d.execute(t, id, "let n = 40\nfunction inc(x) { return x + 1 }", 0); !e.Success || len(e.Results) != 0 {
		t.Errorf("declarations: %+v", e)
	}
	e := d.execute(t, id, "const v = await new Promise(r => setTimeout(() => r(inc(n)), 10))\nconsole.log('out', v)\nconsole.error('err');\n({ v, list: [1, 'a'] })", 0)
	if !e.Success || e.Output.Stdout != "out 41\n" || e.Output.Stderr != "err\n" || len(e.Results) != 1 || e.Results[0].text("text/plain") != "{ v: 41, list: [ 1, 'a' ] }" {
		t.Errorf("await, console and a value: %+v", e)
	}
	// A const declared in an awaiting cell, and a built-in module by its
	// global name, as in Node's REPL.
	if e := d.execute(t, id, "v + 1", 0); len(e.Results) != 1 || e.Results[0].text("text/plain") != "42" {
		t.Errorf("v + 1: %+v", e)
	}
	if e := d.execute(t, id, "path.join('a', require('os').platform())", 0); len(e.Results) != 1 || e.Results[0].text("text/plain") != "'a/linux'" {
		t.Errorf("built-in modules: %+v", e)
	}

	e = d.execute(t, id, "function boom() {\n  return missing + 1\n}\nboom()", 0)
	if e.Success || e.Error == nil || e.Error.Name != "ReferenceError" || e.Error.Value != "missing is not defined" ||
		!strings.HasPrefix(e.Error.Traceback, "ReferenceError: missing is not defined\n    at boom (") || !strings.Contains(e.Error.Traceback, ":2:") ||
		strings.Contains(e.Error.Traceback, "node:") {
		t.Errorf("a thrown error: %+v", e.Error)
	}
	if e := d.execute(t, id, "await Promise.reject(new RangeError('no'))", 0); e.Error == nil || e.Error.Name != "RangeError" || e.Error.Value != "no" {
		t.Errorf("a rejected await: %+v", e)
	}
	if e := d.execute(t, id, "let n = 1", 0); e.Error == nil || e.Error.Name != "SyntaxError" || e.Error.Value != "Identifier 'n' has already been declared" {
		t.Errorf("let declared again: %+v", e)
	}

	checkInterrupt(t, d, id, "while (true) {}", "console.log(n)", "40\n")
	checkInterrupt(t, d, id, "await new Promise(() => {})", "console.log(n)", "40\n")
	if e := d.execute(t, id, "n = 7; while (true) {}", 1); e.Error == nil || e.Error.Name != "TimeoutError" {
		t.Errorf("busy loop past its timeout: %+v", e)
	}
	if e := d.execute(t, id, "await new Promise(() => {})", 1); e.Error == nil || e.Error.Name != "TimeoutError" {
		t.Errorf("pending await past its timeout: %+v", e)
	}
	if e := d.execute(t, id, "console.log(n)", 0); e.Output.Stdout != "7\n" {
		t.Errorf("after the timeouts: %+v", e)
	}

	const probe = "console.log(process.cwd(), process.env.MODE, process.env.EXTRA, require('child_process').execSync('echo $MODE').toString().trim())"
	var over executeJSON
	d.call(t, "POST", "/api/v1/contexts/"+id+"/execute", map[string]any{"code": probe, "env": map[string]string{"MODE": "override", "EXTRA": "1"}}, &over)
	if over.Output.Stdout != "/workspace/js override 1 override\n" {
		t.Errorf("per-execution env: %+v", over)
	}
	if e := d.execute(t, id, probe, 0); e.Output.Stdout != "/workspace/js test undefined test\n" {
		t.Errorf("per-execution env outlived its execution: %+v", e)
	}

	// node ends: the next execution has a new one, in the same working dir
	// and env, without the env of the execution that ended it.
	d.call(t, "POST", "/api/v1/contexts/"+id+"/execute", map[string]any{"code": "console.log('bye'); process.exit(3)", "env": map[string]string{"MODE": "override"}}, &over)
	if over.Success || over.Error == nil || over.Error.Name != "NodeRestarted" || !strings.Contains(over.Error.Value, "code 3") || over.Output.Stdout != "bye\n" {
		t.Errorf("process.exit: %+v", over)
	}
	if e := d.execute(t, id, "typeof n", 0); len(e.Results) != 1 || e.Results[0].text("text/plain") != "'undefined'" {
		t.Errorf("state after process.exit: %+v", e)
	}
	if e := d.execute(t, id, probe, 0); e.Output.Stdout != "/workspace/js test undefined test\n" {
		t.Errorf("after process.exit: %q (stderr %q)", e.Output.Stdout, e.Output.Stderr)
	}
}

// Output reaches the client while the code runs: the code waits for a file
// the test writes only once it has seen the first line.
func TestJavaScriptStreaming(t *testing.T) {
	d := startDaemon(t)
	var c contextJSON
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]string{"language": "javascript"}, &c); status != http.StatusCreated {
		t.Fatalf("create: %d", status)
	}
	code := "console.log('first')\nwhile (!fs.existsSync('/workspace/go')) await new Promise(r => setTimeout(r, 20))\nconsole.error('second')\nnull.x"
	b, _ := json.Marshal(map[string]any{"code": code, "timeout": 60})
	req, _ := http.NewRequest("POST", d.url+"/api/v1/contexts/"+c.ContextID+"/execute", bytes.NewReader(b))
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []sseEvent
	readSSE(resp.Body, func(e sseEvent) {
		if len(events) == 0 && e.name == "stdout" {
			if status, b := d.putFile(t, c.ContextID, "go", bytes.NewReader([]byte("go"))); status != http.StatusCreated {
				t.Errorf("put go: %d %s", status, b)
			}
		}
		events = append(events, e)
	})
	if got := eventNames(events); got != "stdout stderr error end" {
		t.Fatalf("events %q, want stdout stderr error end", got)
	}
	var summary executeJSON
	if err := json.Unmarshal([]byte(events[3].data), &summary); err != nil {
		t.Fatal(err)
	}
	if summary.Error == nil || summary.Error.Name != "TypeError" || summary.Output.Stdout != "first\n" || !strings.HasPrefix(summary.Output.Stderr, "second\nTypeError") {
		t.Errorf("end event %s", events[3].data)
	}
}

// The aliases of javascript work on the AgentRun routes too, and the
// context reports its language by its name.
func TestJavaScriptAliasOnAgentRun(t *testing.T) {
	d := startDaemon(t)
	sb := d.newSandbox(t, "javascript")
	var e agentRunExecuteJSON
	d.call(t, "POST", "/sandboxes/"+sb+"/contexts/execute", map[string]any{"code": "[1, 2].map(x => x * 2)", "language": "js"}, &e)
	if got, want := e.summary(), "result:[ 2, 4 ] | endOfExecution:ok"; got != want {
		t.Errorf("execute as js: %q, want %q", got, want)
	}
	var c struct{ ID, Language string }
	if status := d.call(t, "GET", "/sandboxes/"+sb+"/contexts/"+e.ContextID, nil, &c); status != http.StatusOK || c.Language != "javascript" {
		t.Errorf("get: %d %+v", status, c)
	}
	// The same default context, by the language's own name.
	var again agentRunExecuteJSON
	if d.call(t, "POST", "/sandboxes/"+sb+"/execute", map[string]any{"code": "1", "language": "javascript"}, &again); again.ContextID != e.ContextID {
		t.Errorf("default context by name %s, by alias %s", again.ContextID, e.ContextID)
	}
}

// node alone, not the kernel that answers for it, is what the container
// kills first when it runs out of memory. A node that cannot start fails
// the cell with NodeUnavailable, rather than leave it without an answer.
func TestJavaScriptNodeFailures(t *testing.T) {
	d := startDaemon(t)
	var c struct {
		ContextID string `json:"context_id"`
	}
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"language": "javascript"}, &c); status != http.StatusCreated {
		t.Fatalf("create: %d", status)
	}
	id := c.ContextID
	e := d.execute(t, id, "const fs = require('fs')\n;['self', process.ppid].map(p => fs.readFileSync(`/proc/${p}/oom_score_adj`, 'utf8').trim()).join(' ')", 0)
	if len(e.Results) != 1 {
		t.Fatalf("oom scores: %+v", e)
	}
	scores := strings.Fields(strings.Trim(e.Results[0].text("text/plain"), "'"))
	if len(scores) != 2 || scores[0] != "1000" || scores[1] == "1000" {
		t.Errorf("oom_score_adj of node and of its kernel: %v, want 1000 and less", scores)
	}

	// A PATH without node: the next node cannot start.
	if e := d.execute(t, id, "process.env.PATH = '/nowhere'", 0); !e.Success {
		t.Fatalf("set PATH: %+v", e)
	}
	if e := d.execute(t, id, "process.exit(0)", 0); e.Error == nil || e.Error.Name != "NodeRestarted" {
		t.Fatalf("process.exit: %+v", e)
	}
	e = d.execute(t, id, "1", 30)
	if e.Success || e.Error == nil || e.Error.Name != "NodeUnavailable" || !strings.Contains(e.Error.Value, "node could not start") {
		t.Errorf("a cell whose node cannot start: %+v", e.Error)
	}
}
