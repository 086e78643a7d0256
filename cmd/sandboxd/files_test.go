package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

type fileEntryJSON struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Mode  string `json:"mode"`
	Mtime string `json:"mtime"`
	IsDir bool   `json:"is_dir"`
}

type commandJSON struct {
	Stdout        string  `json:"stdout"`
	Stderr        string  `json:"stderr"`
	ExitCode      int     `json:"exit_code"`
	ExecutionTime float64 `json:"execution_time"`
	Truncated     bool    `json:"truncated"`
	TimedOut      bool    `json:"timed_out"`
}

// filesURL is the URL of a file of context id; p is put in as is, so tests
// can send what a careless client would.
func (d *daemon) filesURL(id, p string) string {
	return d.url + "/api/v1/contexts/" + id + "/files/" + p
}

// putFile uploads body to p and returns the status and the answer. Small
// bodies (those given as bytes) are checked against the OpenAPI document.
func (d *daemon) putFile(tb testing.TB, id, p string, body io.Reader) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest("PUT", d.filesURL(id, p), body)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("PUT %s: %v", p, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if r, ok := body.(*bytes.Reader); ok && r.Size() < 1<<20 {
		raw := make([]byte, r.Size())
		r.ReadAt(raw, 0)
		d.validator.Check(tb, req, raw, resp, b)
	}
	return resp.StatusCode, b
}

// getFile downloads p and returns the response with its body read.
func (d *daemon) getFile(tb testing.TB, id, p string) (*http.Response, []byte) {
	tb.Helper()
	req, _ := http.NewRequest("GET", d.filesURL(id, p), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", p, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: reading the body: %v", p, err)
	}
	d.validator.Check(tb, req, nil, resp, b)
	return resp, b
}

func (d *daemon) command(tb testing.TB, id string, body map[string]any) commandJSON {
	tb.Helper()
	var c commandJSON
	if status := d.call(tb, "POST", "/api/v1/contexts/"+id+"/commands", body, &c); status != http.StatusOK {
		tb.Fatalf("command %v: status %d", body, status)
	}
	return c
}

func decodeAs[T any](tb testing.TB, b []byte) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatalf("decode %q: %v", b, err)
	}
	return v
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	return b
}

func TestFilesRoundTrip(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	for _, size := range []int{1, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := randomBytes(size, uint64(size))
			p := fmt.Sprintf("up/%d/data.bin", size)
			start := time.Now()
			status, b := d.putFile(t, id, p, bytes.NewReader(data))
			t.Logf("upload of %d bytes took %v", size, time.Since(start))
			if status != http.StatusCreated {
				t.Fatalf("PUT: %d %s", status, b)
			}
			e := decodeAs[fileEntryJSON](t, b)
			if e.Name != "data.bin" || e.Path != p || e.Size != int64(size) || e.Mode != "0644" || e.IsDir {
				t.Errorf("entry %+v", e)
			}
			if mt, err := time.Parse(time.RFC3339, e.Mtime); err != nil || time.Since(mt) > time.Minute || !strings.HasSuffix(e.Mtime, "Z") {
				t.Errorf("mtime %q: %v", e.Mtime, err)
			}
			start = time.Now()
			resp, got := d.getFile(t, id, p)
			t.Logf("download of %d bytes took %v", size, time.Since(start))
			if resp.StatusCode != 200 || !bytes.Equal(got, data) {
				t.Fatalf("GET: %d, %d bytes back of %d, equal %v", resp.StatusCode, len(got), size, bytes.Equal(got, data))
			}
			if ct, cl := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Length"); ct != "application/octet-stream" || cl != fmt.Sprint(size) {
				t.Errorf("Content-Type %q, Content-Length %q", ct, cl)
			}
		})
	}
	t.Run("replacing keeps no temporary file", func(t *testing.T) {
		d.putFile(t, id, "up/1/data.bin", strings.NewReader("new"))
		if _, b := d.getFile(t, id, "up/1/data.bin"); string(b) != "new" {
			t.Errorf("after replace: %q", b)
		}
		var list struct{ Files []fileEntryJSON }
		d.call(t, "GET", "/api/v1/contexts/"+id+"/files?path=up/1", nil, &list)
		if len(list.Files) != 1 {
			t.Errorf("files in up/1: %+v", list.Files)
		}
	})
}

// A 200 MiB file goes up and comes back byte for byte while the daemon's
// memory stays flat: it streams and is never held whole.
func TestFilesLargeWithFlatMemory(t *testing.T) {
	d := newProcDaemon(t)
	proc := d.start(t, "--pool", "python=0")
	id := d.create(t)
	d.putFile(t, id, "warm-up.txt", bytes.NewReader([]byte("x")))
	d.getFile(t, id, "warm-up.txt")
	idle := memoryKiB(t, proc.pid, "VmRSS")

	const size = 200 << 20
	sent := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), size), sent)
	start := time.Now()
	status, b := d.putFile(t, id, "big/huge.bin", src)
	t.Logf("upload of 200 MiB took %v", time.Since(start))
	if status != http.StatusCreated {
		t.Fatalf("PUT: %d %s", status, b)
	}
	if e := decodeAs[fileEntryJSON](t, b); e.Size != size {
		t.Errorf("entry %+v", e)
	}

	start = time.Now()
	resp, err := http.Get(d.filesURL(id, "big/huge.bin"))
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	t.Logf("download of 200 MiB took %v", time.Since(start))
	if err != nil || n != size || resp.Header.Get("Content-Length") != fmt.Sprint(size) {
		t.Fatalf("GET: %v, %d bytes, Content-Length %q", err, n, resp.Header.Get("Content-Length"))
	}
	if !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Error("the file came back different")
	}
	peak := memoryKiB(t, proc.pid, "VmHWM")
	t.Logf("daemon RSS idle %d MiB, peak %d MiB", idle>>10, peak>>10)
	if peak-idle > 100<<10 {
		t.Errorf("daemon peak RSS grew by %d MiB over its idle %d MiB", (peak-idle)>>10, idle>>10)
	}
}

func TestFilesPaths(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	if e := d.execute(t, id, "import os\nos.symlink('/etc', 'etc_link')\nos.symlink('/etc/passwd', 'passwd_link')\nos.makedirs('sub', exist_ok=True)\nopen('sub/in.txt', 'w').write('inside')\nos.symlink('sub/in.txt', 'in_link')", 0); !e.Success {
		t.Fatalf("set-up: %+v", e)
	}

	for _, p := range []string{"../etc/passwd", "%2e%2e/etc/passwd", "sub/../../etc/passwd", "/etc/passwd", "%2Fetc%2Fpasswd", "etc_link/passwd", "passwd_link", "etc_link", "sub"} {
		t.Run("GET "+p, func(t *testing.T) {
			resp, b := d.getFile(t, id, p)
			if e := decodeAs[errorJSON](t, b); resp.StatusCode != 400 || e.Code != "INVALID_PATH" {
				t.Errorf("%d %s", resp.StatusCode, b)
			}
		})
	}
	// So is a name longer than NAME_MAX.
	for _, p := range []string{"../x.txt", "/tmp/x.txt", "etc_link/x.txt", strings.Repeat("n", 256)} {
		t.Run("PUT "+p[:min(len(p), 20)], func(t *testing.T) {
			status, b := d.putFile(t, id, p, bytes.NewReader([]byte("x")))
			if e := decodeAs[errorJSON](t, b); status != 400 || e.Code != "INVALID_PATH" {
				t.Errorf("%d %s", status, b)
			}
		})
	}
	for _, q := range []string{"..", "etc_link", "/etc", "sub/in.txt"} {
		var e errorJSON
		if status := d.call(t, "GET", "/api/v1/contexts/"+id+"/files?path="+q, nil, &e); status != 400 || e.Code != "INVALID_PATH" {
			t.Errorf("list %s: %d %+v", q, status, e)
		}
	}
	var e errorJSON
	if status := d.call(t, "DELETE", "/api/v1/contexts/"+id+"/files/..%2Fx", nil, &e); status != 400 || e.Code != "INVALID_PATH" {
		t.Errorf("DELETE ../x: %d %+v", status, e)
	}
	// A symlink that stays inside the working dir is followed.
	if resp, b := d.getFile(t, id, "in_link"); resp.StatusCode != 200 || string(b) != "inside" {
		t.Errorf("GET in_link: %d %q", resp.StatusCode, b)
	}
	// Deleting a symlink removes the link, not what it points to.
	if status := d.call(t, "DELETE", "/api/v1/contexts/"+id+"/files/passwd_link", nil, nil); status != http.StatusNoContent {
		t.Errorf("DELETE passwd_link: %d", status)
	}
	if c := d.command(t, id, map[string]any{"command": "test -e passwd_link || echo gone; test -s /etc/passwd && echo kept"}); c.Stdout != "gone\nkept\n" {
		t.Errorf("after deleting the link: %+v", c)
	}
	if status := d.call(t, "GET", "/api/v1/contexts/ctx-00000000-0000-4000-8000-00000000beef/files", nil, &e); status != 404 || e.Code != "CONTEXT_NOT_FOUND" {
		t.Errorf("list in an unknown context: %d %+v", status, e)
	}
}

// Files written by code can be downloaded, uploaded files read by code,
// listed and deleted.
func TestFilesWithTheKernel(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)

	if e := d.execute(t, id, "open('out.txt', 'w').write('hi')", 0); !e.Success {
		t.Fatalf("write: %+v", e)
	}
	resp, b := d.getFile(t, id, "out.txt")
	if resp.StatusCode != 200 || string(b) != "hi" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("GET out.txt: %d %q %q", resp.StatusCode, b, resp.Header.Get("Content-Type"))
	}

	csv := "name,score\nada,3\nbob,5\n"
	if status, b := d.putFile(t, id, "data/scores.csv", bytes.NewReader([]byte(csv))); status != 201 {
		t.Fatalf("PUT csv: %d %s", status, b)
	}
	if e := d.execute(t, id, "import pandas as pd\nprint(pd.read_csv('data/scores.csv')['score'].sum())", 60); e.Output.Stdout != "8\n" {
		t.Errorf("pandas: %+v", e)
	}
	// The kernel may change and remove what was uploaded: it is its user's.
	if e := d.execute(t, id, "import os\nopen('data/scores.csv', 'a').write('cy,1\\n')\nprint(os.stat('data/scores.csv').st_uid)", 0); e.Output.Stdout != "61000\n" {
		t.Errorf("owner: %+v", e)
	}

	var list struct{ Files []fileEntryJSON }
	if status := d.call(t, "GET", "/api/v1/contexts/"+id+"/files", nil, &list); status != 200 {
		t.Fatalf("list: %d", status)
	}
	var names []string
	for _, f := range list.Files {
		names = append(names, fmt.Sprintf("%s:%v", f.Path, f.IsDir))
	}
	if got := strings.Join(names, " "); got != "data:true out.txt:false" {
		t.Errorf("listing %q", got)
	}
	d.call(t, "GET", "/api/v1/contexts/"+id+"/files?path=data", nil, &list)
	if len(list.Files) != 1 || list.Files[0].Path != "data/scores.csv" || list.Files[0].Size != int64(len(csv))+5 {
		t.Errorf("listing of data: %+v", list.Files)
	}

	if status := d.call(t, "DELETE", "/api/v1/contexts/"+id+"/files/out.txt", nil, nil); status != http.StatusNoContent {
		t.Errorf("DELETE: %d", status)
	}
	resp, b = d.getFile(t, id, "out.txt")
	if e := decodeAs[errorJSON](t, b); resp.StatusCode != 404 || e.Code != "FILE_NOT_FOUND" {
		t.Errorf("GET after DELETE: %d %s", resp.StatusCode, b)
	}
	var e errorJSON
	if status := d.call(t, "DELETE", "/api/v1/contexts/"+id+"/files/out.txt", nil, &e); status != 404 || e.Code != "FILE_NOT_FOUND" {
		t.Errorf("DELETE again: %d %+v", status, e)
	}
	if status := d.call(t, "DELETE", "/api/v1/contexts/"+id+"/files/data", nil, nil); status != http.StatusNoContent {
		t.Errorf("DELETE of a directory: %d", status)
	}
	if e := d.execute(t, id, "import os; print(os.listdir('.'))", 0); e.Output.Stdout != "[]\n" {
		t.Errorf("left: %+v", e)
	}
}

func TestCommands(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0", "--max-output", "1m")
	var c contextJSON
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"env": map[string]string{"CTX_VAR": "from create", "FOO": "create"}}, &c); status != 201 {
		t.Fatalf("create: %d", status)
	}
	id := c.ContextID

	t.Run("exit code", func(t *testing.T) {
		if r := d.command(t, id, map[string]any{"command": "echo out; echo err >&2; exit 3"}); r.ExitCode != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" || r.TimedOut {
			t.Errorf("%+v", r)
		}
	})
	t.Run("env", func(t *testing.T) {
		r := d.command(t, id, map[string]any{"command": "echo $FOO $CTX_VAR", "env": map[string]string{"FOO": "bar"}})
		if r.Stdout != "bar from create\n" {
			t.Errorf("%+v", r)
		}
	})
	t.Run("user", func(t *testing.T) {
		if r := d.command(t, id, map[string]any{"command": "id -u; id -g"}); r.Stdout != "61000\n61000\n" {
			t.Errorf("%+v", r)
		}
	})
	t.Run("cwd", func(t *testing.T) {
		if r := d.command(t, id, map[string]any{"command": "pwd; mkdir -p sub/deeper"}); r.Stdout != "/workspace\n" {
			t.Errorf("default cwd: %+v", r)
		}
		for _, cwd := range []string{"sub/deeper", "/workspace/sub/deeper"} {
			if r := d.command(t, id, map[string]any{"command": "pwd", "cwd": cwd}); r.Stdout != "/workspace/sub/deeper\n" {
				t.Errorf("cwd %s: %+v", cwd, r)
			}
		}
		for cwd, code := range map[string]string{"../etc": "INVALID_PATH", "/etc": "INVALID_PATH", "missing": "FILE_NOT_FOUND"} {
			var e errorJSON
			status := d.call(t, "POST", "/api/v1/contexts/"+id+"/commands", map[string]any{"command": "pwd", "cwd": cwd}, &e)
			if e.Code != code || (status != 400 && status != 404) {
				t.Errorf("cwd %s: %d %+v", cwd, status, e)
			}
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		r := d.command(t, id, map[string]any{"command": "sleep 30 & sleep 60", "timeout": 2})
		took := time.Since(start)
		if !r.TimedOut || (r.ExitCode != 124 && r.ExitCode != 137) || took > 10*time.Second {
			t.Errorf("%+v after %v", r, took)
		}
		// Nothing the command started outlives it.
		if r := d.command(t, id, map[string]any{"command": "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -c 'sleep [36]0' || true"}); r.Stdout != "0\n" {
			t.Errorf("sleeps left: %+v", r)
		}
	})
	t.Run("a command whose client went away is stopped", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		body, _ := json.Marshal(map[string]any{"command": "echo started; sleep 45", "timeout": 120})
		req, _ := http.NewRequestWithContext(ctx, "POST", d.url+"/api/v1/contexts/"+id+"/commands", bytes.NewReader(body))
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "event: stdout\n" {
			t.Fatalf("first line %q: %v", line, err)
		}
		cancel()
		resp.Body.Close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := d.command(t, id, map[string]any{"command": "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -c 'sleep 4[5]' || true"})
			if r.Stdout == "0\n" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the command still runs: %+v", r)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	t.Run("output cap", func(t *testing.T) {
		r := d.command(t, id, map[string]any{"command": "head -c 5000000 /dev/zero | tr '\\0' x; printf 'bad \\377\\n' >&2"})
		if !r.Truncated || len(r.Stdout) > 1<<20+100 || !strings.HasSuffix(r.Stdout, "\n[output truncated]\n") || r.ExitCode != 0 {
			t.Errorf("truncated %v, %d bytes of stdout, exit %d", r.Truncated, len(r.Stdout), r.ExitCode)
		}
		if r.Stderr != "bad \uFFFD\n" {
			t.Errorf("stderr %q", r.Stderr)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		var e errorJSON
		if status := d.call(t, "POST", "/api/v1/contexts/"+id+"/commands", map[string]any{"command": "ls", "timeout": 1e9}, &e); status != 400 || e.Code != "INVALID_REQUEST" {
			t.Errorf("timeout over the maximum: %d %+v", status, e)
		}
		if status := d.call(t, "POST", "/api/v1/contexts/ctx-00000000-0000-4000-8000-00000000beef/commands", map[string]any{"command": "ls"}, &e); status != 404 || e.Code != "CONTEXT_NOT_FOUND" {
			t.Errorf("unknown context: %d %+v", status, e)
		}
	})
	t.Run("stream", func(t *testing.T) {
		events := d.stream(t, "/api/v1/contexts/"+id+"/commands", map[string]any{"command": "echo first; sleep 2; printf '\\xc3'; printf '\\xa9\\n'; echo err >&2", "timeout": 30})
		var text []string
		for _, e := range events[:len(events)-1] {
			var ev struct{ Text string }
			json.Unmarshal([]byte(e.data), &ev)
			text = append(text, e.name+":"+ev.Text)
		}
		if len(events) < 3 || events[0].data != `{"text":"first\n"}` || events[len(events)-1].name != "end" {
			t.Fatalf("events %q", text)
		}
		// The first line comes before the sleep, the end after it.
		if gap := events[len(events)-1].at.Sub(events[0].at); gap < time.Second {
			t.Errorf("first line only %v before the end: not streamed", gap)
		}
		var stdout string
		for _, s := range text {
			if v, ok := strings.CutPrefix(s, "stdout:"); ok {
				stdout += v
			}
		}
		if stdout != "first\né\n" || !strings.Contains(strings.Join(text, "|"), "stderr:err\n") {
			t.Errorf("events %q", text)
		}
		end := decodeAs[commandJSON](t, []byte(events[len(events)-1].data))
		if end.Stdout != "first\né\n" || end.Stderr != "err\n" || end.ExitCode != 0 {
			t.Errorf("end %+v", end)
		}
	})
}

// A FIFO, a socket or a device is no file to download: opening a FIFO
// waits for a writer, and a device may never end. Each is refused at once,
// before any of the answer is sent, so the connection stays usable; nothing
// is left running in the container; and each is listed like any file.
func TestFilesSpecial(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	setup := "import os, socket\nos.mkfifo('fifo')\nos.symlink('fifo', 'fifo_link')\nsocket.socket(socket.AF_UNIX).bind('sock')\nos.symlink('/dev/zero', 'zero')"
	if e := d.execute(t, id, setup, 0); !e.Success {
		t.Fatalf("set-up: %+v", e)
	}
	// One connection, kept alive: a request left hanging blocks the next.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: 20 * time.Second}
	defer client.CloseIdleConnections()
	for _, p := range []string{"fifo", "fifo_link", "sock", "zero", "fifo"} {
		start := time.Now()
		resp, err := client.Get(d.filesURL(id, p))
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s: %d, then reading the body: %v", p, resp.StatusCode, err)
		}
		if e := decodeAs[errorJSON](t, b); resp.StatusCode != 400 || e.Code != "INVALID_PATH" {
			t.Errorf("GET %s: %d %s", p, resp.StatusCode, b)
		}
		t.Logf("GET %s refused in %v", p, time.Since(start))
	}
	if procs := d.processes(t, id); strings.Contains(procs, "fifo") {
		t.Errorf("left running:\n%s", procs)
	}
	var list struct{ Files []fileEntryJSON }
	if status := d.call(t, "GET", "/api/v1/contexts/"+id+"/files", nil, &list); status != 200 {
		t.Fatalf("list: %d", status)
	}
	var names []string
	for _, f := range list.Files {
		names = append(names, fmt.Sprintf("%s:%v", f.Name, f.IsDir))
	}
	if got := strings.Join(names, " "); got != "fifo:false fifo_link:false sock:false zero:false" {
		t.Errorf("listing %q", got)
	}
}

// processes returns the command lines of every process in context id's
// container or pod, one a line, read from /proc through the runtime.
func (d *daemon) processes(tb testing.TB, id string) string {
	tb.Helper()
	var out bytes.Buffer
	inst := contexts.Instance{ContextID: id, ID: "sandboxd-" + id}
	script := `for p in /proc/[0-9]*; do tr '\0' ' ' < "$p/cmdline" 2>/dev/null; echo; done`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.rt.Exec(ctx, inst, contexts.ExecSpec{Cmd: []string{"sh", "-c", script}, User: contexts.ContextUser, Stdout: &out}); err != nil {
		tb.Fatalf("list processes: %v", err)
	}
	return out.String()
}

// The engine has no call to stop an exec: one whose caller gave up (a
// file operation's, a command's) must be killed by the daemon, with all it
// started, or it runs on.
func TestAbandonedExecIsKilled(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst := contexts.Instance{ContextID: id, ID: "sandboxd-" + id}
	execErr := make(chan error, 1)
	go func() {
		_, err := d.rt.Exec(ctx, inst, contexts.ExecSpec{Cmd: []string{"sh", "-c", "sleep 41 & sleep 42"}, User: contexts.ContextUser})
		execErr <- err
	}()
	// Give up on it once it runs, as a client that goes away does.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(d.processes(t, id), "sleep 42"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the exec did not start")
		}
	}
	cancel()
	if err := <-execErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("exec: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := d.processes(t, id)
		if !strings.Contains(procs, "sleep 4") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running:\n%s", procs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// An upload whose target changes under it, so that it cannot be put in
// place, leaves no temporary file behind.
func TestFailedUploadLeavesNoTemporaryFile(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	pr, pw := io.Pipe()
	type answer struct {
		status int
		body   []byte
	}
	done := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("PUT", d.filesURL(id, "x.txt"), pr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- answer{resp.StatusCode, b}
	}()
	pw.Write([]byte("half of it"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c := d.command(t, id, map[string]any{"command": "ls -A"}); strings.Contains(c.Stdout, ".sandboxd-upload.") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the upload made no temporary file")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Meanwhile, code turns the target into a link out of the working dir.
	if e := d.execute(t, id, "import os; os.symlink('/etc/passwd', 'x.txt')", 0); !e.Success {
		t.Fatalf("symlink: %+v", e)
	}
	pw.Write([]byte(", and the rest"))
	pw.Close()
	a := <-done
	if e := decodeAs[errorJSON](t, a.body); a.status != 400 || e.Code != "INVALID_PATH" {
		t.Errorf("PUT: %d %s", a.status, a.body)
	}
	if c := d.command(t, id, map[string]any{"command": "ls -A"}); c.Stdout != "x.txt\n" {
		t.Errorf("left in the working dir: %q", c.Stdout)
	}
}
