package main

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

type agentRunFileJSON struct {
	Name, Path, Type, Mode, Mtime string
	Size                          int64
}

type agentRunProcessJSON struct {
	PID, PPID                         int
	Name, Cmdline, User, Status, Role string
	StartTime                         string
	Protected                         bool
}

// agentRunContext makes a sandbox as an AgentRun SDK does, and returns the
// base of its routes; code run there without a context id runs in its
// default context.
func agentRunContext(tb testing.TB, d *daemon) string {
	tb.Helper()
	return "/sandboxes/" + d.newSandbox(tb, "python")
}

// upload sends data as the SDKs' upload_file does: a multipart form of
// path and file, path first as Python's httpx orders them, or file first
// as Node.js's FormData does.
func (d *daemon) upload(tb testing.TB, base, target string, data []byte, fileFirst bool) (int, []byte) {
	tb.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	addFile := func() {
		fw, err := mw.CreateFormFile("file", "local.bin")
		if err != nil {
			tb.Fatal(err)
		}
		fw.Write(data)
	}
	if fileFirst {
		addFile()
	}
	mw.WriteField("path", target)
	if !fileFirst {
		addFile()
	}
	mw.Close()
	req, _ := http.NewRequest("POST", d.url+base+"/filesystem/upload", bytes.NewReader(body.Bytes()))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	d.validator.Check(tb, req, body.Bytes(), resp, b)
	return resp.StatusCode, b
}

// download gets path as the SDKs' download_file does.
func (d *daemon) download(tb testing.TB, base, path string) (*http.Response, []byte) {
	tb.Helper()
	req, _ := http.NewRequest("GET", d.url+base+"/filesystem/download?path="+url.QueryEscape(path), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	d.validator.Check(tb, req, nil, resp, b)
	return resp, b
}

// paths lists dir to depth, as list_directory does, and returns the paths.
func (d *daemon) paths(tb testing.TB, base, dir string, depth int) []string {
	tb.Helper()
	var list []agentRunFileJSON
	if status := d.call(tb, "GET", base+"/filesystem?path="+url.QueryEscape(dir)+"&depth="+strconv.Itoa(depth), nil, &list); status != http.StatusOK {
		tb.Fatalf("list %s to depth %d: %d", dir, depth, status)
	}
	var paths []string
	for _, f := range list {
		paths = append(paths, f.Path)
	}
	return paths
}

// The file system calls of AgentRun's SDKs, with their paths and bodies.
func TestAgentRunFileSystem(t *testing.T) {
	d := startDaemon(t, "--max-upload", "12m")
	base := agentRunContext(t, d)
	wantError := func(what string, status int, e errorJSON, wantStatus int, code string) {
		t.Helper()
		if status != wantStatus || e.Code != code {
			t.Errorf("%s: %d %+v, want %d %s", what, status, e, wantStatus, code)
		}
	}

	// mkdir, with mkdir -p's semantics by default.
	var f agentRunFileJSON
	mkdir := map[string]any{"path": "/home/user/proj/src/deep", "parents": true, "mode": "0750"}
	if status := d.call(t, "POST", base+"/filesystem/mkdir", mkdir, &f); status != http.StatusOK || f.Path != "/workspace/proj/src/deep" || f.Type != "directory" || f.Mode != "0750" {
		t.Errorf("mkdir: %d %+v", status, f)
	}
	if status := d.call(t, "POST", base+"/filesystem/mkdir", mkdir, &f); status != http.StatusOK {
		t.Errorf("mkdir -p of a directory that is there: %d", status)
	}
	var e errorJSON
	status := d.call(t, "POST", base+"/filesystem/mkdir", map[string]any{"path": "proj/src", "parents": false}, &e)
	wantError("mkdir of a directory that is there", status, e, http.StatusBadRequest, "INVALID_PATH")
	status = d.call(t, "POST", base+"/filesystem/mkdir", map[string]any{"path": "proj/nope/x", "parents": false, "mode": "0755"}, &e)
	wantError("mkdir without its parent", status, e, http.StatusNotFound, "FILE_NOT_FOUND")
	status = d.call(t, "POST", base+"/filesystem/mkdir", map[string]any{"path": "proj/x", "mode": "rwx"}, &e)
	wantError("mkdir with a bad mode", status, e, http.StatusBadRequest, "INVALID_REQUEST")

	// write_file's mode and createDir.
	write := map[string]any{"path": "/home/user/proj/run.sh", "content": "#!/bin/sh\necho ran\n", "mode": "755", "encoding": "utf-8", "createDir": false}
	if status := d.call(t, "POST", base+"/files", write, nil); status != http.StatusOK {
		t.Errorf("write with a mode: %d", status)
	}
	var ran struct{ Stdout string }
	if d.call(t, "POST", base+"/processes/cmd", map[string]string{"command": "./proj/run.sh", "cwd": "/home/user"}, &ran); ran.Stdout != "ran\n" {
		t.Errorf("run the file written with mode 755: %+v", ran)
	}
	write["path"] = "/home/user/proj/nodir/run.sh"
	status = d.call(t, "POST", base+"/files", write, &e)
	wantError("write without createDir, its parent missing", status, e, http.StatusNotFound, "FILE_NOT_FOUND")
	write["mode"] = "u+x"
	status = d.call(t, "POST", base+"/files", write, &e)
	wantError("write with a bad mode", status, e, http.StatusBadRequest, "INVALID_REQUEST")

	// A binary file round trip, uploaded in both orders of the form.
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	if status, b := d.upload(t, base, "/home/user/proj/data.bin", data, false); status != http.StatusOK || !strings.Contains(string(b), `"path":"/workspace/proj/data.bin"`) || !strings.Contains(string(b), `"size":307200`) {
		t.Errorf("upload: %d %s", status, b)
	}
	if status, b := d.upload(t, base, "proj/src/b.txt", []byte("bee"), true); status != http.StatusOK {
		t.Errorf("upload with the file first: %d %s", status, b)
	}
	resp, got := d.download(t, base, "/home/user/proj/data.bin")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) || resp.ContentLength != int64(len(data)) {
		t.Errorf("download: %d, %d bytes (Content-Length %d), equal %v", resp.StatusCode, len(got), resp.ContentLength, bytes.Equal(got, data))
	}
	if status, b := d.upload(t, base, "proj/none", nil, false); status != http.StatusOK || !strings.Contains(string(b), `"size":0`) {
		t.Errorf("upload of an empty file: %d %s", status, b)
	}
	// The bounds: --max-upload on the whole form, and 10 MiB on a file
	// held until its path comes.
	for _, tt := range []struct {
		size      int
		fileFirst bool
		status    int
	}{{10 << 20, true, http.StatusOK}, {10<<20 + 1, true, http.StatusRequestEntityTooLarge}, {12<<20 + 1, false, http.StatusRequestEntityTooLarge}} {
		if status, b := d.upload(t, base, "proj/big", make([]byte, tt.size), tt.fileFirst); status != tt.status {
			t.Errorf("upload of %d bytes, the file first %v: %d %.200s, want %d", tt.size, tt.fileFirst, status, b, tt.status)
		}
	}
	if status := d.call(t, "POST", base+"/filesystem/remove", map[string]string{"path": "proj/big"}, nil); status != http.StatusOK {
		t.Errorf("remove proj/big: %d", status)
	}

	// Listings, to a depth.
	if got, want := d.paths(t, base, "/home/user/proj", 1), []string{"/workspace/proj/data.bin", "/workspace/proj/none", "/workspace/proj/run.sh", "/workspace/proj/src"}; !slices.Equal(got, want) {
		t.Errorf("depth 1: %q, want %q", got, want)
	}
	if got, want := d.paths(t, base, "/workspace/proj", 2), []string{"/workspace/proj/data.bin", "/workspace/proj/none", "/workspace/proj/run.sh", "/workspace/proj/src", "/workspace/proj/src/b.txt", "/workspace/proj/src/deep"}; !slices.Equal(got, want) {
		t.Errorf("depth 2: %q, want %q", got, want)
	}
	var list []agentRunFileJSON
	if status := d.call(t, "GET", base+"/filesystem", nil, &list); status != http.StatusOK || len(list) != 1 || list[0].Path != "/workspace/proj" {
		t.Errorf("list with no path: %d %+v", status, list)
	}
	status = d.call(t, "GET", base+"/filesystem?path=proj&depth=33", nil, &e)
	wantError("list too deep", status, e, http.StatusBadRequest, "INVALID_REQUEST")

	// stat of a file, a directory, and what is not there.
	if status := d.call(t, "GET", base+"/filesystem/stat?path=/home/user/proj/data.bin", nil, &f); status != http.StatusOK ||
		f.Type != "file" || f.Size != int64(len(data)) || f.Mode != "0644" || f.Name != "data.bin" {
		t.Errorf("stat of a file: %d %+v", status, f)
	}
	if mtime, err := time.Parse(time.RFC3339, f.Mtime); err != nil || time.Since(mtime) > time.Hour {
		t.Errorf("mtime %q: %v", f.Mtime, err)
	}
	if status := d.call(t, "GET", base+"/filesystem/stat?path=/home/user", nil, &f); status != http.StatusOK || f.Type != "directory" || f.Path != "/workspace" {
		t.Errorf("stat of the working dir: %d %+v", status, f)
	}
	status = d.call(t, "GET", base+"/filesystem/stat?path=proj/nope", nil, &e)
	wantError("stat of a missing file", status, e, http.StatusNotFound, "FILE_NOT_FOUND")

	// move, and remove of a file and of a directory.
	move := map[string]string{"source": "/home/user/proj/src/b.txt", "destination": "/home/user/proj/moved/b.txt"}
	if status := d.call(t, "POST", base+"/filesystem/move", move, &f); status != http.StatusOK || f.Path != "/workspace/proj/moved/b.txt" || f.Size != 3 {
		t.Errorf("move: %d %+v", status, f)
	}
	var read struct{ Content string }
	if status := d.call(t, "GET", base+"/files?path=/home/user/proj/moved/b.txt", nil, &read); status != http.StatusOK || read.Content != "bee" {
		t.Errorf("read the moved file: %d %+v", status, read)
	}
	status = d.call(t, "POST", base+"/filesystem/move", move, &e)
	wantError("move what is gone", status, e, http.StatusNotFound, "FILE_NOT_FOUND")
	status = d.call(t, "POST", base+"/filesystem/move", map[string]string{"source": "proj/src", "destination": "proj/moved"}, &e)
	wantError("move a directory onto one", status, e, http.StatusBadRequest, "INVALID_PATH")
	for _, p := range []string{"/home/user/proj/data.bin", "proj/src"} {
		var removed struct{ Path, Status string }
		if status := d.call(t, "POST", base+"/filesystem/remove", map[string]string{"path": p}, &removed); status != http.StatusOK || removed.Status != "ok" {
			t.Errorf("remove %s: %d %+v", p, status, removed)
		}
	}
	if got, want := d.paths(t, base, "proj", 3), []string{"/workspace/proj/moved", "/workspace/proj/moved/b.txt", "/workspace/proj/none", "/workspace/proj/run.sh"}; !slices.Equal(got, want) {
		t.Errorf("after the moves and removes: %q, want %q", got, want)
	}
	if status, b := d.upload(t, base, "/home/user/"+strings.Repeat("d/", 2043), []byte("x"), false); status != http.StatusBadRequest || !strings.Contains(string(b), "at most 4096 bytes") {
		t.Errorf("upload to a path of 4097 bytes: %d %s", status, b)
	}
	status = d.call(t, "POST", base+"/filesystem/remove", map[string]string{"path": "proj/src"}, &e)
	wantError("remove what is gone", status, e, http.StatusNotFound, "FILE_NOT_FOUND")

	// What is refused: paths outside the working dir, through a symlink out
	// of it, and a FIFO, which would never end.
	var cmd struct{ ExitCode int }
	if d.call(t, "POST", base+"/processes/cmd", map[string]string{"command": "ln -s /etc proj/etc && mkfifo proj/fifo", "cwd": "/home/user"}, &cmd); cmd.ExitCode != 0 {
		t.Fatalf("set up: %+v", cmd)
	}
	for _, p := range []string{"/etc/passwd", "../etc/passwd", "proj/etc/passwd", "proj/etc"} {
		status := d.call(t, "GET", base+"/filesystem/stat?path="+url.QueryEscape(p), nil, &e)
		wantError("stat "+p, status, e, http.StatusBadRequest, "INVALID_PATH")
		resp, b := d.download(t, base, p)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "INVALID_PATH") {
			t.Errorf("download %s: %d %s", p, resp.StatusCode, b)
		}
	}
	status = d.call(t, "GET", base+"/filesystem?path=proj/etc", nil, &e)
	wantError("list through a symlink out", status, e, http.StatusBadRequest, "INVALID_PATH")
	if got := d.paths(t, base, "proj", 5); slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, "passwd") }) {
		t.Errorf("a deep listing went through a symlink out: %q", got)
	}
	for _, body := range []map[string]any{{"path": "proj/etc/new"}, {"path": "/tmp/new"}} {
		status := d.call(t, "POST", base+"/filesystem/mkdir", body, &e)
		wantError("mkdir "+body["path"].(string), status, e, http.StatusBadRequest, "INVALID_PATH")
	}
	status = d.call(t, "POST", base+"/filesystem/move", map[string]string{"source": "proj/none", "destination": "proj/etc/none"}, &e)
	wantError("move through a symlink out", status, e, http.StatusBadRequest, "INVALID_PATH")
	if status, b := d.upload(t, base, "proj/etc/x", []byte("x"), false); status != http.StatusBadRequest || !strings.Contains(string(b), "INVALID_PATH") {
		t.Errorf("upload through a symlink out: %d %s", status, b)
	}
	resp, b := d.download(t, base, "proj/fifo")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "INVALID_PATH") {
		t.Errorf("download a FIFO: %d %s", resp.StatusCode, b)
	}
	if status := d.call(t, "GET", base+"/filesystem/stat?path=proj/fifo", nil, &f); status != http.StatusOK || f.Type != "other" {
		t.Errorf("stat of a FIFO: %d %+v", status, f)
	}
	if status, b := d.upload(t, "/sandboxes/sb", "x", []byte("x"), false); status != http.StatusNotFound || !strings.Contains(string(b), "SANDBOX_NOT_FOUND") {
		t.Errorf("upload to an unknown sandbox: %d %s", status, b)
	}
}

// The process calls of AgentRun's SDKs: a process started in the
// background by a command is listed, got by its pid, killed and gone; the
// context's own processes cannot be killed.
func TestAgentRunProcesses(t *testing.T) {
	d := startDaemon(t)
	base := agentRunContext(t, d)
	var cmd struct{ ExitCode int }
	if d.call(t, "POST", base+"/processes/cmd", map[string]string{"command": "nohup sleep 4242 >/dev/null 2>&1 &", "cwd": "/home/user"}, &cmd); cmd.ExitCode != 0 {
		t.Fatalf("start a background process: %+v", cmd)
	}
	var started agentRunExecuteJSON
	if d.call(t, "POST", base+"/contexts/execute", map[string]any{"code": "import subprocess; child = subprocess.Popen(['sleep', '4343'])"}, &started); started.summary() != "endOfExecution:ok" {
		t.Fatalf("start a child of the kernel: %q", started.summary())
	}

	var list []agentRunProcessJSON
	if status := d.call(t, "GET", base+"/processes", nil, &list); status != http.StatusOK {
		t.Fatalf("list: %d", status)
	}
	find := func(match func(p agentRunProcessJSON) bool) agentRunProcessJSON {
		t.Helper()
		i := slices.IndexFunc(list, match)
		if i < 0 {
			t.Fatalf("not in %+v", list)
		}
		return list[i]
	}
	byRole := func(role string) agentRunProcessJSON {
		t.Helper()
		return find(func(p agentRunProcessJSON) bool { return p.Role == role })
	}
	init, server, kernel := byRole("init"), byRole("jupyter-server"), byRole("kernel")
	if init.PID != 1 || !init.Protected || !strings.Contains(server.Cmdline, "jupyter_server") || server.PPID != 1 || kernel.PPID != server.PID || !strings.Contains(kernel.Cmdline, "kernel") {
		t.Errorf("init %+v, server %+v, kernel %+v", init, server, kernel)
	}
	sleeper := find(func(p agentRunProcessJSON) bool { return p.Cmdline == "sleep 4242" })
	if sleeper.PPID != 1 || sleeper.Name != "sleep" || sleeper.User != "sandbox" || sleeper.Status != "sleeping" || sleeper.Protected || sleeper.Role != "" {
		t.Errorf("the sleeper: %+v", sleeper)
	}
	child := find(func(p agentRunProcessJSON) bool { return p.Cmdline == "sleep 4343" })
	if child.PPID != kernel.PID || child.Protected {
		t.Errorf("the kernel's child: %+v", child)
	}
	// With --transport exec, the kernel's connection goes through a relay
	// of the daemon's.
	var helpers []agentRunProcessJSON
	for _, p := range list {
		if strings.Contains(p.Cmdline, "sandboxd processes") {
			t.Errorf("the listing lists itself: %+v", p)
		}
		if strings.HasPrefix(p.Cmdline, "python3 -S -c ") {
			helpers = append(helpers, p)
			if p.Role != "sandboxd" || !p.Protected {
				t.Errorf("a helper of the daemon's: %+v", p)
			}
		}
	}
	if testenv.Transport() == "exec" && len(helpers) == 0 {
		t.Errorf("no relay in %+v", list)
	}

	var got agentRunProcessJSON
	if status := d.call(t, "GET", base+"/processes/"+strconv.Itoa(sleeper.PID), nil, &got); status != http.StatusOK || got != sleeper {
		t.Errorf("get %d: %d %+v, want %+v", sleeper.PID, status, got, sleeper)
	}
	for _, p := range []agentRunProcessJSON{sleeper, child} {
		var killed struct {
			PID    int
			Status string
		}
		if status := d.call(t, "DELETE", base+"/processes/"+strconv.Itoa(p.PID), nil, &killed); status != http.StatusOK || killed.PID != p.PID || killed.Status != "ok" {
			t.Errorf("kill %d: %d %+v", p.PID, status, killed)
		}
	}
	// Killed, it is gone once its parent reaps it: init, and the kernel's
	// code.
	d.call(t, "POST", base+"/contexts/execute", map[string]any{"code": "child.wait()"}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var e errorJSON
		status := d.call(t, "GET", base+"/processes/"+strconv.Itoa(sleeper.PID), nil, &e)
		if status == http.StatusNotFound && e.Code == "PROCESS_NOT_FOUND" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed process is still there: %d %+v", status, e)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.call(t, "GET", base+"/processes", nil, &list)
	if slices.ContainsFunc(list, func(p agentRunProcessJSON) bool { return p.PID == child.PID }) {
		t.Errorf("the kernel's killed child is still there: %+v", list)
	}

	// The context's own processes stay.
	for _, p := range append([]agentRunProcessJSON{init, server, kernel}, helpers...) {
		var e errorJSON
		if status := d.call(t, "DELETE", base+"/processes/"+strconv.Itoa(p.PID), nil, &e); status != http.StatusForbidden || e.Code != "PROCESS_PROTECTED" {
			t.Errorf("kill the %s: %d %+v", p.Role, status, e)
		}
	}
	var res agentRunExecuteJSON
	if d.call(t, "POST", base+"/contexts/execute", map[string]any{"code": "print('alive')"}, &res); res.summary() != "stdout:alive\n | endOfExecution:ok" {
		t.Errorf("after the refused kills: %q", res.summary())
	}
	for pid, want := range map[string]struct {
		status int
		code   string
	}{"999999": {http.StatusNotFound, "PROCESS_NOT_FOUND"}, "abc": {http.StatusBadRequest, "INVALID_REQUEST"}, "0": {http.StatusBadRequest, "INVALID_REQUEST"}} {
		var e errorJSON
		if status := d.call(t, "DELETE", base+"/processes/"+pid, nil, &e); status != want.status || e.Code != want.code {
			t.Errorf("kill %s: %d %+v, want %d %s", pid, status, e, want.status, want.code)
		}
	}
}
