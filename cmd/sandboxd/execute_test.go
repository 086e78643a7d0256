package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sandboxd/sandboxd/internal/apitest"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

type sseEvent struct {
	name string
	data string
	at   time.Time
}

// stream posts body to path with Accept: text/event-stream and returns the
// events as they arrived.
func (d *daemon) stream(tb testing.TB, path string, body any) []sseEvent {
	tb.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", d.url+path, bytes.NewReader(b))
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		tb.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var events []sseEvent
	readSSE(resp.Body, func(e sseEvent) { events = append(events, e) })
	return events
}

// eventNames lists the names of events, space-separated.
func eventNames(events []sseEvent) string {
	names := make([]string, len(events))
	for i, e := range events {
		names[i] = e.name
	}
	return strings.Join(names, " ")
}

// readSSE calls emit with each event of an event stream as it arrives,
// until the stream ends.
func readSSE(r io.Reader, emit func(sseEvent)) {
	var cur sseEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur = sseEvent{name: strings.TrimPrefix(line, "event: "), at: time.Now()}
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		case line == "" && cur.name != "":
			emit(cur)
			cur = sseEvent{}
		}
	}
}

func TestStreaming(t *testing.T) {
	d := startDaemon(t)
	id := d.create(t)

	start := time.Now()
	events := d.stream(t, "/api/v1/contexts/"+id+"/execute", map[string]any{"code": "import time\nprint('first', flush=True)\ntime.sleep(5)\nprint('second')\n1/0", "timeout": 30})
	if len(events) == 0 {
		t.Fatal("no events")
	}
	if got := eventNames(events); got != "stdout stdout error end" {
		t.Fatalf("events %q, want stdout stdout error end", got)
	}
	if events[0].data != `{"text":"first\n"}` {
		t.Errorf("first event data %s", events[0].data)
	}
	// The first line must come as it is printed, not when the run ends.
	if first, end := events[0].at.Sub(start), events[len(events)-1].at.Sub(start); end-first < 3*time.Second {
		t.Errorf("first line at %v, end at %v: not streamed", first, end)
	}
	var summary executeJSON
	if err := json.Unmarshal([]byte(events[3].data), &summary); err != nil {
		t.Fatal(err)
	}
	if summary.Success || summary.Error == nil || summary.Error.Name != "ZeroDivisionError" || summary.Output.Stdout != "first\nsecond\n" {
		t.Errorf("end event %+v", summary)
	}
}

func TestInterruptKeepsState(t *testing.T) {
	d := startDaemon(t)
	id := d.create(t)
	d.execute(t, id, "x = 7", 0)
	checkInterrupt(t, d, id, "while True: pass", "print(x)", "7\n")
}

// checkInterrupt runs code, which does not end, in context id, interrupts
// it, and checks that it ends at once with KeyboardInterrupt and that the
// kernel kept its state: probe then prints want.
func checkInterrupt(t *testing.T, d *daemon, id, code, probe, want string) {
	t.Helper()
	done := make(chan executeJSON, 1)
	go func() { done <- d.execute(t, id, code, 120) }()
	waitStatus(t, d, id, "busy")
	start := time.Now()
	if status := d.call(t, "POST", "/api/v1/contexts/"+id+"/interrupt", nil, nil); status != http.StatusNoContent {
		t.Fatalf("interrupt: %d", status)
	}
	e := <-done
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("interrupt took %v", took)
	}
	if e.Success || e.Error == nil || e.Error.Name != "KeyboardInterrupt" {
		t.Errorf("interrupted execution: %+v", e)
	}
	if e := d.execute(t, id, probe, 0); e.Output.Stdout != want {
		t.Errorf("after interrupt: %+v", e)
	}
}

func waitStatus(tb testing.TB, d *daemon, id, want string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var c contextJSON
		d.call(tb, "GET", "/api/v1/contexts/"+id, nil, &c)
		if c.Status == want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("status %q, want %q", c.Status, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// env and working_dir given at create hold in the kernel and in processes
// it starts, survive restarts, and can be overridden per execution.
func TestEnvAndWorkingDir(t *testing.T) {
	d := startDaemon(t)
	var c contextJSON
	status := d.call(t, "POST", "/api/v1/contexts", map[string]any{
		"working_dir": "/workspace/project",
		"env":         map[string]string{"GREETING": "hello 'world'\nline two", "MODE": "test"},
	}, &c)
	if status != http.StatusCreated {
		t.Fatalf("create: %d", status)
	}
	const probe = "import os, subprocess\nprint(os.getcwd())\nprint(repr(os.environ['GREETING']))\nprint(subprocess.check_output('echo $MODE', shell=True).decode().strip())"
	const want = "/workspace/project\n\"hello 'world'\\nline two\"\ntest\n"
	if e := d.execute(t, c.ContextID, probe, 0); e.Output.Stdout != want {
		t.Errorf("before restart: %q (stderr %q), want %q", e.Output.Stdout, e.Output.Stderr, want)
	}
	// Tracebacks keep the user's line numbers: set-up code is not prepended.
	if e := d.execute(t, c.ContextID, "x = 1\n1/0", 0); !strings.Contains(e.Error.Traceback, "line 2") {
		t.Errorf("traceback %q does not point at line 2", e.Error.Traceback)
	}

	var after struct {
		contextJSON
		Restarts int `json:"restarts"`
	}
	d.execute(t, c.ContextID, "y = 1", 0)
	if status := d.call(t, "POST", "/api/v1/contexts/"+c.ContextID+"/restart", nil, &after); status != 200 || after.Restarts != 1 || after.Status != "active" {
		t.Fatalf("restart: %d %+v", status, after)
	}
	if e := d.execute(t, c.ContextID, "print('y' in globals())", 0); e.Output.Stdout != "False\n" {
		t.Errorf("state survived restart: %+v", e)
	}
	if e := d.execute(t, c.ContextID, probe, 0); e.Output.Stdout != want {
		t.Errorf("after restart: %q, want %q", e.Output.Stdout, want)
	}

	var e executeJSON
	d.call(t, "POST", "/api/v1/contexts/"+c.ContextID+"/execute", map[string]any{"code": "import os; print(os.environ['MODE'], os.environ.get('EXTRA'))", "env": map[string]string{"MODE": "override", "EXTRA": "1"}}, &e)
	if e.Output.Stdout != "override 1\n" {
		t.Errorf("per-execution env: %+v", e)
	}
	if e := d.execute(t, c.ContextID, "import os; print(os.environ['MODE'], os.environ.get('EXTRA'))", 0); e.Output.Stdout != "test None\n" {
		t.Errorf("per-execution env outlived its execution: %+v", e)
	}

	var bad errorJSON
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"working_dir": "/etc"}, &bad); status != 400 || bad.Code != "INVALID_REQUEST" {
		t.Errorf("working_dir /etc: %d %+v", status, bad)
	}
}

func TestRichResults(t *testing.T) {
	d := startDaemon(t)
	id := d.create(t)
	e := d.execute(t, id, "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})", 60)
	if len(e.Results) != 1 || !strings.Contains(e.Results[0].text("text/html"), "<table") || e.Results[0].text("text/plain") == "" {
		t.Errorf("DataFrame: %+v", e.Results)
	}
	e = d.execute(t, id, "from IPython.display import display, HTML, Markdown, SVG, JSON\n"+
		"display(HTML('<b>hi</b>'))\ndisplay(Markdown('# title'))\ndisplay(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"/>'))\n"+
		"display(JSON({'k': [1, 2]}))", 60)
	var types []string
	for _, r := range e.Results {
		for mt := range r.Data {
			if mt != "text/plain" {
				types = append(types, mt)
			}
		}
	}
	if got := strings.Join(types, " "); got != "text/html text/markdown image/svg+xml application/json" {
		t.Errorf("MIME types %q", got)
	}
}

// A huge print is cut at the cap and flagged, and the daemon's memory stays
// flat while it passes through. The daemon runs as its own process here, so
// its peak RSS can be read.
func TestHugeOutputIsCappedWithFlatMemory(t *testing.T) {
	testenv.RequireDocker(t)
	bin := buildDaemon(t)
	owner, socketDir, addr := testenv.Owner(t), testenv.SocketDir(t), freeAddr(t)
	proc := startProcess(t, bin, owner, socketDir, addr)
	d := &daemon{url: "http://" + addr, validator: apitest.New(t)}
	id := d.create(t)
	d.execute(t, id, "1", 0)
	idle := memoryKiB(t, proc.pid, "VmRSS")

	e := d.execute(t, id, "print('x' * (50 << 20))", 120)
	if !e.Truncated || len(e.Output.Stdout) > 10<<20+100 || !strings.HasSuffix(e.Output.Stdout, "[output truncated]\n") {
		t.Errorf("truncated=%v, %d bytes of stdout ending %q", e.Truncated, len(e.Output.Stdout), e.Output.Stdout[max(0, len(e.Output.Stdout)-30):])
	}
	peak := memoryKiB(t, proc.pid, "VmHWM")
	t.Logf("daemon RSS idle %d MiB, peak %d MiB", idle>>10, peak>>10)
	if peak-idle > 100<<10 {
		t.Errorf("daemon peak RSS grew by %d MiB over its idle %d MiB", (peak-idle)>>10, idle>>10)
	}
	if e := d.execute(t, id, "print('still here')", 0); e.Output.Stdout != "still here\n" {
		t.Errorf("after huge output: %+v", e)
	}
}

// buildDaemon builds sandboxd for tests that run it as a process of its own.
func buildDaemon(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "sandboxd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		tb.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// process is a sandboxd running as a process of its own.
type process struct {
	pid    int
	cmd    *exec.Cmd
	exited chan struct{}
}

// stop sends sig and waits for the process to exit.
func (p *process) stop(sig os.Signal) {
	p.cmd.Process.Signal(sig)
	<-p.exited
}

// startProcess runs the sandboxd binary bin as owner and waits until it
// answers; at the end of the test it is stopped as SIGINT does.
func startProcess(tb testing.TB, bin, owner, socketDir, addr string, args ...string) *process {
	tb.Helper()
	// No one-shot runners unless the test asks, as in newDaemon.
	args = slices.Concat([]string{"--listen", addr, "--name", owner, "--kube-replica", owner, "--socket-dir", socketDir, "--workspace-dir", filepath.Join(socketDir, "workspaces"), "--image", testenv.KernelImage(), "--log-level", "warn", "--runners", "none"}, testenv.DaemonArgs(), args)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &process{pid: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() { p.stop(os.Interrupt) })
	waitHealthy(tb, "http://"+addr)
	return p
}

func waitHealthy(tb testing.TB, url string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no answer on %s/health: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memoryKiB reads a memory figure (VmRSS, VmHWM) of a process, in KiB.
func memoryKiB(tb testing.TB, pid int, field string) int {
	tb.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// Every language has its kernel image, runs code, and takes its working dir
// and env at create, kept across a restart.
func TestLanguages(t *testing.T) {
	d := startDaemon(t)
	var list struct {
		Languages []struct {
			Name      string `json:"name"`
			Installed bool   `json:"installed"`
		} `json:"languages"`
	}
	if status := d.call(t, "GET", "/api/v1/languages", nil, &list); status != 200 {
		t.Fatalf("languages: %d", status)
	}
	var names []string
	for _, l := range list.Languages {
		if !l.Installed {
			t.Errorf("%s is not installed", l.Name)
		}
		names = append(names, l.Name)
	}
	if got := strings.Join(names, " "); got != "python r bash javascript" {
		t.Errorf("languages %q", got)
	}

	for _, tt := range []struct {
		language, code, want string
		probe, probeWant     string
		fail, failName       string
	}{
		{
			language: "r", code: "print(1+1)", want: "[1] 2\n",
			probe: `cat(getwd(), Sys.getenv("GREETING"), system("echo $GREETING", intern = TRUE), sep = "\n")`, probeWant: "/workspace/sub\nit's \"here\"\nit's \"here\"\n",
			fail: "stop('boom')", failName: "ERROR",
		},
		{
			language: "bash", code: "echo $((2+2))", want: "4\n",
			probe: `pwd; echo "$GREETING"; python3 -c 'import os; print(os.environ["GREETING"])'`, probeWant: "/workspace/sub\nit's \"here\"\nit's \"here\"\n",
			fail: "false", failName: "BashError",
		},
		{
			language: "javascript", code: "console.log(2 + 2)", want: "4\n",
			probe: `console.log([process.cwd(), process.env.GREETING, require('child_process').execSync('echo "$GREETING"').toString().trim()].join('\n'))`, probeWant: "/workspace/sub\nit's \"here\"\nit's \"here\"\n",
			fail: "null.x", failName: "TypeError",
		},
	} {
		t.Run(tt.language, func(t *testing.T) {
			var c contextJSON
			status := d.call(t, "POST", "/api/v1/contexts", map[string]any{
				"language": tt.language, "working_dir": "/workspace/sub", "env": map[string]string{"GREETING": `it's "here"`},
			}, &c)
			if status != http.StatusCreated {
				t.Fatalf("create: %d", status)
			}
			if e := d.execute(t, c.ContextID, tt.code, 60); !e.Success || e.Output.Stdout != tt.want {
				t.Errorf("%s: %+v, want stdout %q", tt.code, e, tt.want)
			}
			if e := d.execute(t, c.ContextID, tt.probe, 60); e.Output.Stdout != tt.probeWant {
				t.Errorf("probe: %q (stderr %q), want %q", e.Output.Stdout, e.Output.Stderr, tt.probeWant)
			}
			if e := d.execute(t, c.ContextID, tt.fail, 60); e.Success || e.Error == nil || !strings.Contains(e.Error.Name, tt.failName) {
				t.Errorf("%s: %+v", tt.fail, e)
			}
			if status := d.call(t, "POST", "/api/v1/contexts/"+c.ContextID+"/restart", nil, nil); status != 200 {
				t.Fatalf("restart: %d", status)
			}
			if e := d.execute(t, c.ContextID, tt.probe, 60); e.Output.Stdout != tt.probeWant {
				t.Errorf("probe after restart: %q (stderr %q), want %q", e.Output.Stdout, e.Output.Stderr, tt.probeWant)
			}
		})
	}
}

// The Jupyter-protocol websocket runs code in a real kernel and relays its
// messages with the request as their parent.
func TestRelayWebsocket(t *testing.T) {
	d := startDaemon(t)
	id := d.create(t)
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(d.url, "http")+"/api/v1/contexts/"+id+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.WriteJSON(map[string]any{
		"header":        map[string]string{"msg_id": "m1", "msg_type": "execute_request", "session": "s", "version": "5.3"},
		"parent_header": map[string]any{}, "metadata": map[string]any{}, "channel": "shell",
		"content": map[string]any{"code": "print('hi')\n1+1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got []string
	for {
		var m wsMessage
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		if m.ParentHeader.MsgID != "m1" {
			t.Fatalf("message %s answers %q", m.Header.MsgType, m.ParentHeader.MsgID)
		}
		switch m.Header.MsgType {
		case "stream":
			got = append(got, "stream:"+m.Content["text"].(string))
		case "execute_result":
			got = append(got, "result:"+m.Content["data"].(map[string]any)["text/plain"].(string))
		case "execute_reply":
			got = append(got, "reply:"+m.Content["status"].(string))
		case "status":
			got = append(got, m.Content["execution_state"].(string))
		}
		if got[len(got)-1] == "idle" {
			break
		}
	}
	if want := "busy stream:hi\n result:2 reply:ok idle"; strings.Join(got, " ") != want {
		t.Errorf("messages %q, want %q", strings.Join(got, " "), want)
	}
	// The relay's executions count as the context's own.
	if e := d.execute(t, id, "print(_)", 0); e.Output.Stdout != "2\n" {
		t.Errorf("last result after the relay: %+v", e)
	}
}
