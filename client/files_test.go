package client

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

const fileJSON = `{"name":"a b.txt","path":"dir/a b.txt","size":5,"mode":"0644","mtime":"2025-01-15T10:30:00Z","is_dir":false}`

func wantFile() FileInfo {
	return FileInfo{
		Name: "a b.txt", Path: "dir/a b.txt", Size: 5, Mode: "0644",
		ModTime: time.Date(2025, 1, 15, 10, 30, 0, 0, time.UTC),
	}
}

func TestUploadFile(t *testing.T) {
	tests := []struct {
		name, path, wantURL string
	}{
		{"relative", "dir/a b.txt", "/api/v1/contexts/" + ctxID + "/files/dir/a%20b.txt"},
		{"leading slash kept, for the server to refuse", "/workspace/dir/a b.txt", "/api/v1/contexts/" + ctxID + "/files//workspace/dir/a%20b.txt"},
		{"reserved characters", "dir/50%?#.txt", "/api/v1/contexts/" + ctxID + "/files/dir/50%25%3F%23.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotURL, gotType, gotBody string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotURL, gotType = r.Method+" "+r.URL.EscapedPath(), r.Header.Get("Content-Type")
				b, _ := io.ReadAll(r.Body)
				gotBody = string(b)
				writeJSON(w, http.StatusCreated, fileJSON)
			}))
			defer srv.Close()
			got, err := New(srv.URL).UploadFile(t.Context(), ctxID, tt.path, strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if want := "PUT " + tt.wantURL; gotURL != want {
				t.Errorf("request = %s, want %s", gotURL, want)
			}
			if gotType != "application/octet-stream" || gotBody != "hello" {
				t.Errorf("body = %q of type %q", gotBody, gotType)
			}
			if !reflect.DeepEqual(*got, wantFile()) {
				t.Errorf("file = %+v, want %+v", *got, wantFile())
			}
		})
	}
}

func TestFileCalls(t *testing.T) {
	files := "/api/v1/contexts/" + ctxID + "/files"
	c := fakeServer(t, map[string]http.HandlerFunc{
		"GET " + files + "/dir/a b.txt": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			io.WriteString(w, "hello\x00")
		},
		"GET " + files + "/missing": answer(http.StatusNotFound, `{"error":"no such file: missing","code":"FILE_NOT_FOUND"}`),
		"PUT " + files + "/../x":    answer(http.StatusBadRequest, `{"error":"path escapes the context","code":"INVALID_PATH"}`),
		"GET " + files: func(w http.ResponseWriter, r *http.Request) {
			if got := r.URL.Query().Get("path"); got != "dir" {
				t.Errorf("path = %q, want dir", got)
			}
			writeJSON(w, http.StatusOK, `{"files":[`+fileJSON+`]}`)
		},
		"DELETE " + files + "/dir/a b.txt": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
	})
	ctx := t.Context()

	rc, err := c.DownloadFile(ctx, ctxID, "dir/a b.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "hello\x00" {
		t.Errorf("DownloadFile = %q, %v", b, err)
	}
	if _, err := c.DownloadFile(ctx, ctxID, "missing"); !IsCode(err, CodeFileNotFound) {
		t.Errorf("DownloadFile of a missing file: %v, want FILE_NOT_FOUND", err)
	}
	if _, err := c.UploadFile(ctx, ctxID, "../x", strings.NewReader("")); !IsCode(err, CodeInvalidPath) {
		t.Errorf("UploadFile outside the context: %v, want INVALID_PATH", err)
	}
	if got, err := c.ListFiles(ctx, ctxID, "dir"); err != nil || !reflect.DeepEqual(got, []FileInfo{wantFile()}) {
		t.Errorf("ListFiles = %+v, %v", got, err)
	}
	if err := c.DeleteFile(ctx, ctxID, "dir/a b.txt"); err != nil {
		t.Errorf("DeleteFile: %v", err)
	}
}

func TestListFilesWorkingDir(t *testing.T) {
	c := fakeServer(t, map[string]http.HandlerFunc{
		"GET /api/v1/contexts/" + ctxID + "/files": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.RawQuery != "" {
				t.Errorf("query = %q, want none", r.URL.RawQuery)
			}
			writeJSON(w, http.StatusOK, `{"files":[]}`)
		},
	})
	if got, err := c.ListFiles(t.Context(), ctxID, ""); err != nil || len(got) != 0 {
		t.Errorf("ListFiles = %+v, %v", got, err)
	}
}

func TestRunCommand(t *testing.T) {
	c := fakeServer(t, map[string]http.HandlerFunc{
		"POST /api/v1/contexts/" + ctxID + "/commands": func(w http.ResponseWriter, r *http.Request) {
			got := requestBody(t, r)
			want := map[string]any{"command": "ls -l", "timeout": 2.5, "env": map[string]any{"A": "1"}, "cwd": "/tmp"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("request body = %v, want %v", got, want)
			}
			writeJSON(w, http.StatusOK, `{"stdout":"out\n","stderr":"err\n","exit_code":2,"execution_time":0.5,"truncated":true,"timed_out":true}`)
		},
	})
	got, err := c.RunCommand(t.Context(), ctxID, CommandRequest{Command: "ls -l", Timeout: 2500 * time.Millisecond, Env: map[string]string{"A": "1"}, Cwd: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	want := CommandResponse{Stdout: "out\n", Stderr: "err\n", ExitCode: 2, ExecutionTime: 0.5, Truncated: true, TimedOut: true}
	if *got != want {
		t.Errorf("response = %+v, want %+v", *got, want)
	}
}

func TestCommandRequestOmitsDefaults(t *testing.T) {
	b, err := CommandRequest{Command: "true"}.MarshalJSON()
	if err != nil || string(b) != `{"command":"true"}` {
		t.Errorf("body = %s, %v", b, err)
	}
}
