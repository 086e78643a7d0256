package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// post sends body as JSON to path with headers, and returns the status
// and the body of the answer.
func (d *daemon) post(tb testing.TB, path string, headers map[string]string, body any) (int, []byte) {
	tb.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		tb.Fatal(err)
	}
	return d.send(tb, "POST", path, headers, b)
}

func (d *daemon) send(tb testing.TB, method, path string, headers map[string]string, body []byte) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, d.url+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, b
}

// ragflowRun is the answer of RAGFlow's executor manager to /run.
type ragflowRun struct {
	Status            string   `json:"status"`
	Stdout            string   `json:"stdout"`
	Stderr            string   `json:"stderr"`
	ExitCode          int      `json:"exit_code"`
	Detail            *string  `json:"detail"`
	TimeUsedMS        *float64 `json:"time_used_ms"`
	MemoryUsedKB      *float64 `json:"memory_used_kb"`
	ResourceLimitType *string  `json:"resource_limit_type"`
	Artifacts         []struct {
		Name       string `json:"name"`
		MIMEType   string `json:"mime_type"`
		Size       int    `json:"size"`
		ContentB64 string `json:"content_b64"`
	} `json:"artifacts"`
	Result *struct {
		Present bool            `json:"present"`
		Value   json.RawMessage `json:"value"`
		Type    string          `json:"type"`
	} `json:"result"`
}

// ragflow runs code as RAGFlow's self_managed provider does.
func (d *daemon) ragflow(tb testing.TB, path, language, code string, args map[string]any) ragflowRun {
	tb.Helper()
	status, body := d.post(tb, path, nil, map[string]any{"code_b64": base64.StdEncoding.EncodeToString([]byte(code)), "language": language, "arguments": args})
	if status != http.StatusOK {
		tb.Fatalf("POST %s: %d %s", path, status, body)
	}
	var r ragflowRun
	if err := json.Unmarshal(body, &r); err != nil {
		tb.Fatalf("decode %s: %v", body, err)
	}
	return r
}

type difyRun struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    *struct {
		Stdout string `json:"stdout"`
		Error  string `json:"error"`
	} `json:"data"`
}

// dify runs code as Dify's code executor does, with its API key.
func (d *daemon) dify(tb testing.TB, key, language, code, preload string) difyRun {
	tb.Helper()
	status, body := d.post(tb, "/v1/sandbox/run", map[string]string{"X-Api-Key": key}, map[string]any{"language": language, "code": code, "preload": preload, "enable_network": true})
	if status != http.StatusOK {
		tb.Fatalf("dify run: %d %s", status, body)
	}
	var r difyRun
	if err := json.Unmarshal(body, &r); err != nil {
		tb.Fatalf("decode %s: %v", body, err)
	}
	if r.Code != 0 || r.Data == nil {
		tb.Fatalf("dify run %q: %s", code, body)
	}
	return r
}

// runnerIDs lists the daemon's runner containers.
func (d *daemon) runnerIDs(tb testing.TB) []string {
	tb.Helper()
	insts, err := d.rt.List(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for _, inst := range insts {
		if strings.HasPrefix(inst.ContextID, "oneshot-") {
			ids = append(ids, inst.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// waitRunners waits until the daemon has n runners that all run.
func (d *daemon) waitRunners(tb testing.TB, n int) []string {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if ids := d.runnerIDs(tb); len(ids) == n {
			return ids
		}
		if time.Now().After(deadline) {
			tb.Fatalf("runners: %v, want %d", d.runnerIDs(tb), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRAGFlowRun(t *testing.T) {
	d := startDaemon(t, "--runners", "python=1", "--run-timeout", "3s", "--max-output", "4k")
	for _, path := range []string{"/healthz", "/ragflow/healthz"} {
		status, body := d.send(t, "GET", path, nil, nil)
		if status != 200 || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
			t.Errorf("GET %s: %d %s", path, status, body)
		}
	}

	t.Run("arguments and result", func(t *testing.T) {
		for _, path := range []string{"/run", "/ragflow/run"} {
			r := d.ragflow(t, path, "python", "def main(a, b):\n    print('adding')\n    return {'sum': a + b}\n", map[string]any{"a": 2, "b": 40})
			if r.Status != "success" || r.ExitCode != 0 || r.Stdout != "adding\n" || r.Result == nil || !r.Result.Present || string(r.Result.Value) != `{"sum":42}` || r.Result.Type != "json" {
				t.Errorf("%s: %+v", path, r)
			}
			if r.TimeUsedMS == nil || *r.TimeUsedMS <= 0 || r.MemoryUsedKB == nil || *r.MemoryUsedKB <= 0 {
				t.Errorf("%s: no time or memory used: %+v", path, r)
			}
		}
	})
	t.Run("arguments of every JSON kind", func(t *testing.T) {
		args := map[string]any{"s": "quote\" back\\slash <tag> é 😀 \u2028", "l": []any{1.5, -2, true, false, nil}, "d": map[string]any{"k": map[string]any{}}, "n": nil}
		r := d.ragflow(t, "/run", "python", "def main(**kw):\n    return kw\n", args)
		want, _ := json.Marshal(args)
		var got any
		if r.Result != nil {
			json.Unmarshal(r.Result.Value, &got)
		}
		if gotJSON, _ := json.Marshal(got); r.Status != "success" || string(gotJSON) != string(want) {
			t.Errorf("%+v: got %s, want %s", r, gotJSON, want)
		}
	})
	t.Run("a value that is not JSON", func(t *testing.T) {
		for _, value := range []string{"object()", "float('nan')"} {
			r := d.ragflow(t, "/run", "python", "def main():\n    return "+value+"\n", nil)
			if r.Status != "program_error" || r.Result != nil || !strings.Contains(r.Stderr, "JSON") {
				t.Errorf("%s: %+v", value, r)
			}
		}
	})
	t.Run("exception", func(t *testing.T) {
		r := d.ragflow(t, "/run", "python", "def main():\n    raise ValueError('bad input')\n", nil)
		if r.Status != "program_error" || r.ExitCode != 1 || !strings.Contains(r.Stderr, "ValueError: bad input") || !strings.Contains(r.Stderr, `File "main.py", line 2, in main`) || r.Result != nil {
			t.Errorf("%+v", r)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		r := d.ragflow(t, "/run", "python", "import time\ndef main():\n    print('started', flush=True)\n    time.sleep(60)\n", nil)
		if r.Status != "resource_limit_exceeded" || r.ResourceLimitType == nil || *r.ResourceLimitType != "time" || r.ExitCode != -124 || !strings.Contains(r.Stderr, "Execution timeout") || r.Stdout != "started\n" {
			t.Errorf("%+v", r)
		}
		// Code that ignores SIGTERM is killed 2 seconds later.
		r = d.ragflow(t, "/run", "python", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ndef main():\n    time.sleep(60)\n", nil)
		if r.Status != "resource_limit_exceeded" || r.ResourceLimitType == nil || *r.ResourceLimitType != "time" {
			t.Errorf("SIGTERM ignored: %+v", r)
		}
	})
	t.Run("memory error", func(t *testing.T) {
		r := d.ragflow(t, "/run", "python", "def main():\n    return bytearray(1 << 50)\n", nil)
		if r.Status != "resource_limit_exceeded" || r.ResourceLimitType == nil || *r.ResourceLimitType != "memory" {
			t.Errorf("%+v", r)
		}
	})
	t.Run("artifacts", func(t *testing.T) {
		r := d.ragflow(t, "/run", "python", `import os
def main():
    with open("artifacts/plot.png", "wb") as f:
        f.write(b"\x89PNG fake")
    with open("table.csv", "w") as f:
        f.write("a,b\n1,2\n")
    with open("artifacts/notes.txt", "w") as f:
        f.write("not a kind that is sent")
    return None
`, nil)
		got := map[string]string{}
		for _, a := range r.Artifacts {
			b, _ := base64.StdEncoding.DecodeString(a.ContentB64)
			got[a.Name] = fmt.Sprintf("%s %d %q", a.MIMEType, a.Size, b)
		}
		want := map[string]string{"plot.png": `image/png 9 "\x89PNG fake"`, "table.csv": `text/csv 8 "a,b\n1,2\n"`}
		if r.Status != "success" || fmt.Sprint(got) != fmt.Sprint(want) || r.Result == nil || string(r.Result.Value) != "null" {
			t.Errorf("%+v: artifacts %v, want %v", r, got, want)
		}
	})
	t.Run("too many artifacts", func(t *testing.T) {
		r := d.ragflow(t, "/run", "python", `def main():
    for i in range(12):
        with open(f"artifacts/{i:02}.json", "w") as f:
            f.write("[]")
    return 1
`, nil)
		var names []string
		for _, a := range r.Artifacts {
			names = append(names, a.Name)
		}
		if r.Status != "success" || len(names) != 10 || r.Detail == nil || !strings.Contains(*r.Detail, "dropped 10.json; dropped 11.json") {
			t.Errorf("artifacts %v, detail %v", names, r.Detail)
		}
	})
	t.Run("too big an artifact", func(t *testing.T) {
		r := d.ragflow(t, "/run", "python", `def main():
    with open("big.csv", "wb") as f:
        f.truncate(10 * 1024 * 1024 + 1)
    with open("small.csv", "wb") as f:
        f.truncate(10 * 1024 * 1024)
    return 1
`, nil)
		if r.Status != "success" || len(r.Artifacts) != 1 || r.Artifacts[0].Name != "small.csv" || r.Artifacts[0].Size != 10<<20 || r.Detail == nil || !strings.Contains(*r.Detail, "too_large 10485761 big.csv") {
			t.Errorf("%d artifacts, detail %v", len(r.Artifacts), r.Detail)
		}
	})
	t.Run("output over the cap", func(t *testing.T) {
		r := d.ragflow(t, "/run", "python", "def main():\n    print('x' * 10000)\n    return 'done'\n", nil)
		if r.Status != "success" || !strings.HasPrefix(r.Stdout, "xxxx") || !strings.HasSuffix(r.Stdout, "[output truncated]\n") || len(r.Stdout) > 4200 || r.Detail == nil || string(r.Result.Value) != `"done"` {
			t.Errorf("stdout of %d bytes, detail %v, result %+v", len(r.Stdout), r.Detail, r.Result)
		}
	})
	t.Run("result over the cap", func(t *testing.T) {
		r := d.ragflow(t, "/run", "python", "def main():\n    return 'y' * 10000\n", nil)
		if r.Status != "success" || r.Result != nil || r.Detail == nil || !strings.Contains(*r.Detail, "result_too_large") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("invalid requests", func(t *testing.T) {
		for _, body := range []map[string]any{
			{"code_b64": "not base64!", "language": "python"},
			{"code_b64": "cHJpbnQoMSk=", "language": "cobol"},
		} {
			if status, b := d.post(t, "/run", nil, body); status != http.StatusUnprocessableEntity {
				t.Errorf("%v: %d %s", body, status, b)
			}
		}
	})
	t.Run("nodejs not served", func(t *testing.T) {
		r := d.ragflow(t, "/run", "nodejs", "function main(args) { return 1 }", nil)
		if r.Status != "program_runner_error" || !strings.Contains(r.Stderr, "not served") {
			t.Errorf("%+v", r)
		}
	})
}

func TestDifySandbox(t *testing.T) {
	d := startDaemon(t, "--runners", "python=1", "--api-key", "dify-key", "--run-timeout", "5s")
	t.Run("key", func(t *testing.T) {
		for _, key := range []string{"", "wrong"} {
			status, body := d.post(t, "/v1/sandbox/run", map[string]string{"X-Api-Key": key}, map[string]any{"language": "python3", "code": "print(1)"})
			if status != http.StatusUnauthorized || len(body) != 0 {
				t.Errorf("run with key %q: %d %q", key, status, body)
			}
			status, body = d.send(t, "GET", "/v1/sandbox/dependencies?language=python3", map[string]string{"X-Api-Key": key}, nil)
			if status != http.StatusUnauthorized || len(body) != 0 {
				t.Errorf("dependencies with key %q: %d %q", key, status, body)
			}
		}
		// The key is for Dify's routes: the others still want a bearer.
		if status, _ := d.send(t, "GET", "/api/v1/contexts", map[string]string{"X-Api-Key": "dify-key"}, nil); status != http.StatusUnauthorized {
			t.Errorf("contexts with X-Api-Key: %d", status)
		}
	})
	t.Run("run", func(t *testing.T) {
		r := d.dify(t, "dify-key", "python3", "import json\nprint(json.dumps({'n': 6 * 7}))", "")
		if r.Message != "success" || r.Data.Stdout != "{\"n\": 42}\n" || r.Data.Error != "" {
			t.Errorf("%+v", r.Data)
		}
	})
	t.Run("packages and exit", func(t *testing.T) {
		r := d.dify(t, "dify-key", "python3", "import numpy, importlib.metadata\nprint(int(numpy.arange(4).sum()), importlib.metadata.version('numpy') == numpy.__version__)\nexit(0)\nprint('not reached')", "")
		if r.Data.Stdout != "6 True\n" || r.Data.Error != "" {
			t.Errorf("%+v", r.Data)
		}
	})
	t.Run("preload", func(t *testing.T) {
		r := d.dify(t, "dify-key", "python3", "print(helper(20))", "def helper(x):\n    return x + 1\n")
		if r.Data.Stdout != "21\n" || r.Data.Error != "" {
			t.Errorf("%+v", r.Data)
		}
	})
	t.Run("error and timeout", func(t *testing.T) {
		r := d.dify(t, "dify-key", "python3", "print('before')\nraise RuntimeError('boom')", "")
		if r.Data.Stdout != "before\n" || !strings.Contains(r.Data.Error, "RuntimeError: boom") || !strings.HasSuffix(r.Data.Error, "error: exit status 1\n") {
			t.Errorf("%+v", r.Data)
		}
		r = d.dify(t, "dify-key", "python3", "import time\ntime.sleep(30)", "")
		if !strings.HasSuffix(r.Data.Error, "error: timeout\n") {
			t.Errorf("%+v", r.Data)
		}
	})
	t.Run("unsupported language", func(t *testing.T) {
		status, body := d.post(t, "/v1/sandbox/run", map[string]string{"X-Api-Key": "dify-key"}, map[string]any{"language": "ruby", "code": "1"})
		if status != http.StatusBadRequest || !strings.Contains(string(body), `"code":-400`) {
			t.Errorf("%d %s", status, body)
		}
	})
	t.Run("dependencies", func(t *testing.T) {
		for _, path := range []string{"/v1/sandbox/dependencies?language=python3", "/v1/sandbox/dependencies/refresh?language=python3"} {
			status, body := d.send(t, "GET", path, map[string]string{"X-Api-Key": "dify-key"}, nil)
			var r struct {
				Code int
				Data struct {
					Dependencies []struct{ Name, Version string }
				}
			}
			json.Unmarshal(body, &r)
			has := slices.ContainsFunc(r.Data.Dependencies, func(d struct{ Name, Version string }) bool { return d.Name == "numpy" && d.Version != "" })
			if status != 200 || r.Code != 0 || !has {
				t.Errorf("GET %s: %d %.300s", path, status, body)
			}
		}
		status, body := d.send(t, "POST", "/v1/sandbox/dependencies/update", map[string]string{"X-Api-Key": "dify-key"}, []byte(`{"language":"python3"}`))
		if status != 200 || !strings.Contains(string(body), `"code":0`) {
			t.Errorf("update: %d %s", status, body)
		}
	})
}

// Nothing one run leaves may be seen by the next: each case runs leave,
// then check, on the one runner there is, which prints "clean" or what
// it found.
func TestOneShotRunsLeaveNothing(t *testing.T) {
	d := startDaemon(t, "--runners", "python=1")
	ids := d.waitRunners(t, 1)
	for _, tt := range []struct {
		name, leave, check string
		replaced           bool // the cleanup cannot undo it: the runner goes
	}{
		{"variable", "import builtins\nsecret = 1\nbuiltins.secret = 2", "print('clean' if 'secret' not in globals() and not hasattr(__builtins__, 'secret') else 'leaked')", false},
		{"file in /tmp", "open('/tmp/secret', 'w').write('x')\nimport os; os.makedirs('/tmp/.hidden/dir'); open('/tmp/.hidden/dir/f', 'w')", "import os\nprint('clean' if sorted(os.listdir('/tmp')) == ['.matplotlib', '.sandboxd-result'] else os.listdir('/tmp'))", false},
		{"file in the working dir", "import os\nopen('secret.txt', 'w').write('x')\nos.makedirs('d/e'); os.chmod('d', 0)", "import os\nprint('clean' if os.listdir('.') == ['artifacts'] and os.listdir('artifacts') == [] and os.getcwd() == '/workspace' else os.listdir('.'))", false},
		{"file in /dev/shm", "open('/dev/shm/secret', 'w').write('x')", "import os\nprint('clean' if os.listdir('/dev/shm') == [] else 'leaked')", false},
		{"environment", "import os\nos.environ['SECRET'] = '1'\nos.putenv('SECRET2', '1')\nopen(os.path.expanduser('~/.profile'), 'w').write('export SECRET=1')", "import os, subprocess\nprint('clean' if 'SECRET' not in os.environ and subprocess.run(['sh', '-lc', 'echo -n $SECRET$SECRET2'], capture_output=True).stdout == b'' else 'leaked')", false},
		{"detached process", "import subprocess\nsubprocess.Popen(['setsid', 'sh', '-c', 'sleep 1000'])\nsubprocess.run(['sh', '-c', '(sleep 2; echo late > /tmp/late; echo late > /workspace/late) &'])",
			"import os, time\ntime.sleep(3)\nprocs = [open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit() and os.stat(f'/proc/{p}').st_uid == os.getuid() and int(p) != os.getpid() and int(p) != os.getppid()]\nprocs = [p for p in procs if p.startswith('sleep') or p.startswith('sh\\0-c\\0sleep') or p.startswith('sh\\0-c\\0(sleep')]\nprint('clean' if not procs and not os.path.exists('/tmp/late') and not os.path.exists('/workspace/late') else (procs, os.listdir('/tmp')))", false},
		{"a run asked of the spawner", `import json, os, socket, struct
c = socket.socket(socket.AF_UNIX)
c.connect("/run/sandboxd/jupyter.sock")
head = json.dumps({"argv": ["sh", "-c", "sleep 3; echo late > /tmp/spawned"], "nonce": "x"}).encode()
r, w = os.pipe()
try:
    socket.send_fds(c, [struct.pack(">I", len(head))], [w])
    c.sendall(head)
except BrokenPipeError:
    pass  # refused at once`, "import os, time\ntime.sleep(4)\nprint('clean' if not os.path.exists('/tmp/spawned') else 'leaked')", false},
		{"mode of the working dir", "import os\nos.chmod('/workspace', 0o777)", "import os\nprint('clean' if os.stat('/workspace').st_mode & 0o777 == 0o755 else oct(os.stat('/workspace').st_mode))", true},
		{"System V shared memory", "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nassert libc.shmget(0x5eed, 4096, 0o1666) >= 0", "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint('clean' if libc.shmget(0x5eed, 0, 0o666) == -1 else 'leaked')", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if r := d.dify(t, "", "python3", tt.leave, ""); r.Data.Error != "" {
				t.Fatalf("leave: %s", r.Data.Error)
			}
			if r := d.dify(t, "", "python3", tt.check, ""); r.Data.Stdout != "clean\n" || r.Data.Error != "" {
				t.Errorf("check: %q %q", r.Data.Stdout, r.Data.Error)
			}
			// A runner that went was removed before its replacement ran
			// the check.
			now := d.waitRunners(t, 1)
			if replaced := !slices.Equal(now, ids); replaced != tt.replaced {
				t.Errorf("runner replaced: %v, want %v", replaced, tt.replaced)
			}
			ids = now
		})
	}
}

// The answer goes out before the runner is cleaned up; a run that comes
// meanwhile waits for the cleanup (there is one runner) and sees nothing
// of the run before. The first run leaves many files, so that its cleanup
// takes a while; the next ones come at once, together, and each leaves a
// file and a process the others must not see.
func TestOneShotRunWaitsForCleanup(t *testing.T) {
	d := startDaemon(t, "--runners", "python=1")
	d.waitRunners(t, 1)
	leave := "import os, subprocess\nos.makedirs('many')\nfor i in range(20000):\n    open(f'many/{i}', 'w').close()\nopen('/tmp/secret', 'w').write('x')\nsubprocess.Popen(['setsid', 'sh', '-c', 'sleep 1000'])\nprint('left')"
	if r := d.dify(t, "", "python3", leave, ""); r.Data.Stdout != "left\n" || r.Data.Error != "" {
		t.Fatalf("leave: %+v", r.Data)
	}
	check := `import os, subprocess
mine = "%d"
seen = [f for f in os.listdir(".") + os.listdir("/tmp") if f not in ("artifacts", ".matplotlib", ".sandboxd-result")]
def stat(p):
    return open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
# This process's ancestors aside (the driver's, over exec), and the dead.
family, p = {1}, os.getpid()
while p > 1:
    family.add(p)
    p = int(stat(p)[1])
procs = [open(f"/proc/{p}/cmdline").read() for p in os.listdir("/proc") if p.isdigit() and os.stat("/proc/" + p).st_uid == os.getuid() and int(p) not in family and stat(p)[0] != "Z"]
open("mark-" + mine, "w").close()
subprocess.Popen(["setsid", "sh", "-c", "sleep 1000"])
print("clean" if not seen and not procs else ("leaked", seen, procs))`
	const checks = 3
	results := make(chan string, checks)
	for i := range checks {
		go func() {
			status, body := d.post(t, "/v1/sandbox/run", nil, map[string]any{"language": "python3", "code": fmt.Sprintf(check, i)})
			var r difyRun
			if json.Unmarshal(body, &r) != nil || status != http.StatusOK || r.Data == nil {
				results <- fmt.Sprintf("check %d: %d %s", i, status, body)
				return
			}
			results <- r.Data.Stdout + r.Data.Error
		}()
	}
	for range checks {
		if got := <-results; got != "clean\n" {
			t.Errorf("check: %s", got)
		}
	}
}

func TestNodeJSRun(t *testing.T) {
	d := startDaemon(t, "--runners", "javascript=1", "--run-timeout", "10s")
	if status, _ := d.send(t, "GET", "/healthz", nil, nil); status == http.StatusNotFound {
		t.Skip("this daemon has no javascript language")
	}
	r := d.ragflow(t, "/run", "nodejs", "const fs = require('fs');\nfunction main(args) {\n  console.log('hi from node');\n  fs.writeFileSync('artifacts/out.json', JSON.stringify(args));\n  return { doubled: args.n * 2 };\n}", map[string]any{"n": 21})
	if r.Status != "success" || r.Stdout != "hi from node\n" || r.Result == nil || string(r.Result.Value) != `{"doubled":42}` || len(r.Artifacts) != 1 || r.Artifacts[0].Name != "out.json" {
		t.Errorf("sync main: %+v", r)
	}
	r = d.ragflow(t, "/run", "nodejs", "async function main(args) {\n  await new Promise((resolve) => setTimeout(resolve, 50));\n  return args.word + '!';\n}", map[string]any{"word": "async"})
	if r.Status != "success" || r.Result == nil || string(r.Result.Value) != `"async!"` {
		t.Errorf("async main: %+v", r)
	}
	r = d.ragflow(t, "/run", "nodejs", "function main() { throw new Error('node broke'); }", nil)
	if r.Status != "program_error" || !strings.Contains(r.Stderr, "node broke") || r.Result != nil {
		t.Errorf("throwing main: %+v", r)
	}
	if r := d.dify(t, "", "nodejs", "globalThis.leak = 1; console.log(typeof require('fs').readFileSync)", ""); r.Data.Stdout != "function\n" || r.Data.Error != "" {
		t.Errorf("dify: %+v", r.Data)
	}
	if r := d.dify(t, "", "nodejs", "console.log(typeof globalThis.leak)", ""); r.Data.Stdout != "undefined\n" {
		t.Errorf("dify: %+v", r.Data)
	}
}

// Runners go when the daemon stops, and a runner a previous run left (it
// was killed) is removed at the next start, never listed as a context.
func TestRunnersAreRemoved(t *testing.T) {
	d := startDaemon(t, "--runners", "python=2")
	d.waitRunners(t, 2)
	d.shutdown(t)
	if ids := d.runnerIDs(t); len(ids) != 0 {
		t.Errorf("runners after shutdown: %v", ids)
	}

	owner := testenv.Owner(t)
	name := owner + "-runner"
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	out, err := exec.Command("docker", "run", "-d", "--name", name, "--network", "none", "--label", "sandboxd.owner="+owner,
		"--label", "sandboxd.context_id=oneshot-python-left", "--label", "sandboxd.role=one-shot runner",
		"--entrypoint", "sleep", testenv.KernelImage(), "1000").CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, out)
	}
	d = startDaemon(t, "--name", owner)
	for deadline := time.Now().Add(time.Minute); exec.Command("docker", "inspect", name).Run() == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the runner a previous run left was not removed")
		}
	}
	if list := d.list(t); len(list) != 0 {
		t.Errorf("contexts: %+v", list)
	}
}
