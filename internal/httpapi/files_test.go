package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// fakeFiles is the part of fakeService that serves files and commands.
type fakeFiles struct {
	writeFile  func(ctx context.Context, id, path string, body io.Reader) (contexts.FileInfo, error)
	openFile   func(ctx context.Context, id, path string) (contexts.FileInfo, io.ReadCloser, error)
	listFiles  func(ctx context.Context, id, dir string) ([]contexts.FileInfo, error)
	deleteFile func(ctx context.Context, id, path string) error
	runCommand func(ctx context.Context, id string, req contexts.CommandRequest) (contexts.CommandResult, error)

	fileMu sync.Mutex
	paths  []string // the id and path of every call, as id:path
}

func (f *fakeFiles) record(id, path string) {
	f.fileMu.Lock()
	f.paths = append(f.paths, id+":"+path)
	f.fileMu.Unlock()
}

func (f *fakeFiles) WriteFile(ctx context.Context, id, path string, body io.Reader) (contexts.FileInfo, error) {
	f.record(id, path)
	if f.writeFile == nil {
		return contexts.FileInfo{}, errUnexpectedCall
	}
	return f.writeFile(ctx, id, path, body)
}

func (f *fakeFiles) OpenFile(ctx context.Context, id, path string) (contexts.FileInfo, io.ReadCloser, error) {
	f.record(id, path)
	if f.openFile == nil {
		return contexts.FileInfo{}, nil, errUnexpectedCall
	}
	return f.openFile(ctx, id, path)
}

func (f *fakeFiles) ListFiles(ctx context.Context, id, dir string) ([]contexts.FileInfo, error) {
	f.record(id, dir)
	if f.listFiles == nil {
		return nil, errUnexpectedCall
	}
	return f.listFiles(ctx, id, dir)
}

func (f *fakeFiles) DeleteFile(ctx context.Context, id, path string) error {
	f.record(id, path)
	if f.deleteFile == nil {
		return errUnexpectedCall
	}
	return f.deleteFile(ctx, id, path)
}

func (f *fakeFiles) RunCommand(ctx context.Context, id string, req contexts.CommandRequest) (contexts.CommandResult, error) {
	f.record(id, req.Cwd)
	if f.runCommand == nil {
		return contexts.CommandResult{}, errUnexpectedCall
	}
	return f.runCommand(ctx, id, req)
}

func (f *fakeFiles) calledWith() []string {
	f.fileMu.Lock()
	defer f.fileMu.Unlock()
	return append([]string(nil), f.paths...)
}

var sampleMtime = time.Date(2025, 1, 15, 11, 30, 0, 500, time.FixedZone("CET", 3600))

func sampleFile(p string, size int64) contexts.FileInfo {
	name := p[strings.LastIndexByte(p, '/')+1:]
	return contexts.FileInfo{Name: name, Path: p, Size: size, Mode: 0o644, ModTime: sampleMtime}
}

func TestPutFile(t *testing.T) {
	var got []byte
	fake := &fakeService{}
	fake.writeFile = func(_ context.Context, _, p string, body io.Reader) (contexts.FileInfo, error) {
		b, err := io.ReadAll(body)
		if err != nil {
			return contexts.FileInfo{}, &contexts.Error{Code: contexts.CodeInvalid, Message: "could not read the upload", Err: err}
		}
		got = b
		return sampleFile(p, int64(len(b))), nil
	}
	s := newTestServer(t, fake)
	// Larger than the server's MaxBodyBytes: uploads have their own cap.
	body := strings.Repeat("x", 3*maxBody)
	resp := s.do(t, request{method: http.MethodPut, path: "/api/v1/contexts/" + ctxID + "/files/data/a%20b.csv", body: body, unknownLength: true})
	checkResponse(t, resp, want{status: http.StatusCreated, contentType: ctJSON,
		json: `{"name":"a b.csv","path":"data/a b.csv","size":3072,"mode":"0644","mtime":"2025-01-15T10:30:00Z","is_dir":false}`})
	if string(got) != body {
		t.Errorf("the service got %d bytes, want %d", len(got), len(body))
	}
	if calls := fake.calledWith(); len(calls) != 1 || calls[0] != ctxID+":data/a b.csv" {
		t.Errorf("calls %q", calls)
	}
}

func TestUploadCap(t *testing.T) {
	fake := &fakeService{}
	fake.writeFile = func(_ context.Context, _, p string, body io.Reader) (contexts.FileInfo, error) {
		_, err := io.ReadAll(body)
		return contexts.FileInfo{}, &contexts.Error{Code: contexts.CodeInvalid, Message: "could not read the upload", Err: err}
	}
	reg := prometheus.NewRegistry()
	h := NewHandler(slog.New(slog.DiscardHandler), fake, Config{MaxBodyBytes: maxBody, MaxUploadBytes: 10, Registry: reg, AllowedHosts: []string{"example.com"}})
	s := &testServer{h: h, fake: fake, reg: reg, v: validator(t)}
	for _, unknownLength := range []bool{false, true} {
		resp := s.do(t, request{method: http.MethodPut, path: "/api/v1/contexts/" + ctxID + "/files/big.bin", body: "0123456789A", unknownLength: unknownLength})
		checkResponse(t, resp, want{status: http.StatusRequestEntityTooLarge, contentType: ctJSON, errCode: codeTooLarge, errMsg: "10 bytes"})
	}
	if calls := fake.calledWith(); len(calls) != 1 {
		t.Errorf("calls %q: want one, for the upload of unknown length", calls)
	}
}

func TestGetFile(t *testing.T) {
	fake := &fakeService{}
	fake.openFile = func(_ context.Context, _, p string) (contexts.FileInfo, io.ReadCloser, error) {
		switch p {
		case "dir":
			return contexts.FileInfo{}, nil, contexts.Errorf(contexts.CodeInvalidPath, "path %q is a directory", p)
		case "gone.txt":
			return contexts.FileInfo{}, nil, contexts.Errorf(contexts.CodeFileNotFound, "no such file: %s", p)
		}
		return sampleFile(p, 5), io.NopCloser(strings.NewReader("a,b\n1")), nil
	}
	s := newTestServer(t, fake)
	base := "/api/v1/contexts/" + ctxID + "/files/"
	tests := []struct {
		path string
		want want
	}{
		{"out/data.csv", want{status: 200, contentType: "text/csv; charset=utf-8", text: "a,b\n1"}},
		{"blob", want{status: 200, contentType: "application/octet-stream", text: "a,b\n1"}},
		{"dir", want{status: 400, contentType: ctJSON, errObj: errBody(`path "dir" is a directory`, contexts.CodeInvalidPath)}},
		{"gone.txt", want{status: 404, contentType: ctJSON, errObj: errBody("no such file: gone.txt", contexts.CodeFileNotFound)}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp := s.do(t, request{method: http.MethodGet, path: base + tt.path})
			checkResponse(t, resp, tt.want)
			if tt.want.status == 200 && resp.header.Get("Content-Length") != "5" {
				t.Errorf("Content-Length %q", resp.header.Get("Content-Length"))
			}
		})
	}
}

func TestListFiles(t *testing.T) {
	fake := &fakeService{}
	fake.listFiles = func(_ context.Context, _, dir string) ([]contexts.FileInfo, error) {
		if dir == "nope" {
			return nil, contexts.Errorf(contexts.CodeFileNotFound, "no such file: nope")
		}
		sub := contexts.FileInfo{Name: "sub", Path: "sub", Size: 4096, Mode: 0o755, ModTime: sampleMtime, IsDir: true}
		return []contexts.FileInfo{sampleFile("a.txt", 2), sub}, nil
	}
	s := newTestServer(t, fake)
	resp := s.do(t, request{method: http.MethodGet, path: "/api/v1/contexts/" + ctxID + "/files"})
	checkResponse(t, resp, want{status: 200, contentType: ctJSON, json: `{"files":[
		{"name":"a.txt","path":"a.txt","size":2,"mode":"0644","mtime":"2025-01-15T10:30:00Z","is_dir":false},
		{"name":"sub","path":"sub","size":4096,"mode":"0755","mtime":"2025-01-15T10:30:00Z","is_dir":true}]}`})
	resp = s.do(t, request{method: http.MethodGet, path: "/api/v1/contexts/" + ctxID + "/files?path=nope"})
	checkResponse(t, resp, want{status: 404, contentType: ctJSON, errCode: contexts.CodeFileNotFound, errMsg: "nope"})
	if calls := fake.calledWith(); strings.Join(calls, " ") != ctxID+": "+ctxID+":nope" {
		t.Errorf("calls %q", calls)
	}
}

func TestDeleteFile(t *testing.T) {
	fake := &fakeService{}
	fake.deleteFile = func(_ context.Context, id, p string) error {
		if id != ctxID {
			return contexts.Errorf(contexts.CodeNotFound, "Context not found")
		}
		return nil
	}
	s := newTestServer(t, fake)
	checkResponse(t, s.do(t, request{method: http.MethodDelete, path: "/api/v1/contexts/" + ctxID + "/files/a/b.txt"}), want{status: 204, noBody: true})
	checkResponse(t, s.do(t, request{method: http.MethodDelete, path: "/api/v1/contexts/ctx-00000000-0000-4000-8000-00000000beef/files/a.txt"}),
		want{status: 404, contentType: ctJSON, errObj: errBody("Context not found", contexts.CodeNotFound)})
}

func TestCommand(t *testing.T) {
	var got contexts.CommandRequest
	fake := &fakeService{}
	fake.runCommand = func(_ context.Context, _ string, req contexts.CommandRequest) (contexts.CommandResult, error) {
		got = req
		return contexts.CommandResult{Stdout: "hi\n", ExitCode: 3, Duration: 1500 * time.Millisecond, TimedOut: true}, nil
	}
	s := newTestServer(t, fake)
	path := "/api/v1/contexts/" + ctxID + "/commands"
	resp := s.do(t, request{method: http.MethodPost, path: path, body: `{"command":"echo hi","timeout":2.5,"env":{"FOO":"bar"},"cwd":"sub"}`})
	checkResponse(t, resp, want{status: 200, contentType: ctJSON, json: `{"stdout":"hi\n","stderr":"","exit_code":3,"execution_time":1.5,"timed_out":true}`})
	if got.Command != "echo hi" || got.Timeout != 2500*time.Millisecond || got.Env["FOO"] != "bar" || got.Cwd != "sub" || got.OnOutput != nil {
		t.Errorf("request %+v", got)
	}

	for _, tt := range []struct{ name, body, msg string }{
		{"no command", `{"timeout":1}`, `field "command" is required`},
		{"zero timeout", `{"command":"ls","timeout":0}`, `field "timeout" must be more than 0 seconds`},
		{"command not a string", `{"command":1}`, `field "command" must be a string`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.do(t, request{method: http.MethodPost, path: path, body: tt.body})
			checkResponse(t, resp, want{status: 400, contentType: ctJSON, errCode: contexts.CodeInvalid, errMsg: tt.msg})
		})
	}
}

func TestCommandStream(t *testing.T) {
	fake := &fakeService{}
	fake.runCommand = func(_ context.Context, id string, req contexts.CommandRequest) (contexts.CommandResult, error) {
		if req.Cwd == "bad" {
			return contexts.CommandResult{}, contexts.Errorf(contexts.CodeInvalidPath, "cwd %q is not a directory", req.Cwd)
		}
		req.OnOutput("stdout", "é\n")
		req.OnOutput("stderr", "oops\n")
		return contexts.CommandResult{Stdout: "é\n", Stderr: "oops\n", ExitCode: 1, Duration: time.Second}, nil
	}
	s := newTestServer(t, fake)
	path := "/api/v1/contexts/" + ctxID + "/commands"
	sse := http.Header{"Accept": {"text/event-stream"}}
	resp := s.do(t, request{method: http.MethodPost, path: path, body: `{"command":"x"}`, header: sse})
	checkResponse(t, resp, want{status: 200, contentType: "text/event-stream", text: "event: stdout\ndata: {\"text\":\"é\\n\"}\n\n" +
		"event: stderr\ndata: {\"text\":\"oops\\n\"}\n\n" +
		"event: end\ndata: {\"stdout\":\"é\\n\",\"stderr\":\"oops\\n\",\"exit_code\":1,\"execution_time\":1}\n\n"})

	// Refused before any output: a plain error with its status.
	resp = s.do(t, request{method: http.MethodPost, path: path, body: `{"command":"x","cwd":"bad"}`, header: sse})
	checkResponse(t, resp, want{status: 400, contentType: ctJSON, errObj: errBody(`cwd "bad" is not a directory`, contexts.CodeInvalidPath)})
}

func TestIsUpload(t *testing.T) {
	for _, tt := range []struct {
		method, path string
		want         bool
	}{
		{"PUT", "/api/v1/contexts/" + ctxID + "/files/a.txt", true},
		{"PUT", "/api/v1/contexts/" + ctxID + "/files/", true},
		{"POST", "/api/v1/contexts/" + ctxID + "/files/a.txt", false},
		{"PUT", "/api/v1/contexts/" + ctxID + "/execute", false},
		{"PUT", "/api/v1/contexts/x/y/files/a", false},
	} {
		if got := isUpload(httptest.NewRequest(tt.method, tt.path, nil)); got != tt.want {
			t.Errorf("isUpload(%s %s) = %v, want %v", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestDownloadHeaders(t *testing.T) {
	tests := []struct {
		name, contentType, disposition string
	}{
		{"data.csv", "text/csv; charset=utf-8", ""},
		{"notes.txt", "text/plain; charset=utf-8", ""},
		{"plot.png", "image/png", ""},
		{"page.html", "text/html; charset=utf-8", `attachment; filename=page.html`},
		{"chart.svg", "image/svg+xml", `attachment; filename=chart.svg`},
		{"report.pdf", "application/pdf", `attachment; filename=report.pdf`},
		{"app.js", "text/javascript; charset=utf-8", `attachment; filename=app.js`},
		{"blob", "application/octet-stream", `attachment; filename=blob`},
		{`a "b".html`, "text/html; charset=utf-8", `attachment; filename="a \"b\".html"`},
		{"été.xhtml", "application/xhtml+xml", `attachment; filename*=utf-8''%C3%A9t%C3%A9.xhtml`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			setDownloadHeaders(h, tt.name)
			if got := h.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type %q, want %q", got, tt.contentType)
			}
			if got := h.Get("Content-Disposition"); got != tt.disposition {
				t.Errorf("Content-Disposition %q, want %q", got, tt.disposition)
			}
			if got := h.Get("Content-Security-Policy"); !strings.Contains(got, "sandbox") || !strings.Contains(got, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", got)
			}
		})
	}
}
